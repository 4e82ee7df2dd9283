#include "core/file_server.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core/disk_chunk_store.h"
#include "core/memory_chunk_store.h"
#include "core/op_replica.h"
#include "tests/sync_counting_store.h"
#include "tests/test_util.h"

namespace dfs::core {
namespace {

VolumeKey TestKey(std::uint8_t fill = 7) {
  Bytes b(VolumeKey::kSize, fill);
  return *VolumeKey::FromBytes(b);
}

// Small chunks so that tests exercise many of them quickly.
FileServerOptions SmallChunks() {
  FileServerOptions o;
  o.chunker = {64 * 1024, 128 * 1024, 512 * 1024};
  o.lock_timeout = std::chrono::milliseconds(200);
  return o;
}

// A reader that fails after `limit` bytes.
class FailingReader final : public Reader {
 public:
  FailingReader(ByteSpan data, std::size_t limit) : inner_(data), limit_(limit) {}
  Result<std::size_t> Read(MutableByteSpan buf) override {
    if (pos_ >= limit_) return Status::Io("simulated read failure");
    auto n = inner_.Read(buf.first(std::min(buf.size(), limit_ - pos_)));
    if (n.ok()) pos_ += *n;
    return n;
  }

 private:
  MemoryReader inner_;
  std::size_t limit_;
  std::size_t pos_ = 0;
};

class FileServerTest : public ::testing::Test {
 protected:
  void Open(const VolumeKey& key = TestKey()) {
    auto fs = FileServer::Open(dir_.path(), key, SmallChunks());
    ASSERT_TRUE(fs.ok()) << fs.status().ToString();
    fs_ = std::move(fs).value();
  }
  void SetUp() override { Open(); }

  Status Put(std::string_view key, ByteSpan data) {
    MemoryReader r(data);
    return fs_->Store(key, r);
  }
  Result<Bytes> Read(std::string_view key) {
    MemoryWriter w;
    DFS_RETURN_IF_ERROR(fs_->Get(key, w));
    return w.data();
  }
  std::uint64_t ChunksHeld() { return fs_->Usage()->chunks; }

  testing::TempDir dir_;
  std::unique_ptr<FileServer> fs_;
};

TEST_F(FileServerTest, RoundTripsManySizes) {
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{4096}, std::size_t{4097},
                           std::size_t{65535},
                           std::size_t{3 << 20}, std::size_t{(5 << 20) + 17}}) {
    Bytes data = testing::RandomBytes(size, size);
    std::string key = fmt::format("f/{}", size);
    ASSERT_TRUE(Put(key, data).ok());
    auto back = Read(key);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_TRUE(*back == data) << "size " << size;
    auto info = fs_->Stat(key);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->size, size);
    EXPECT_EQ(info->stored_bytes, size + info->chunks * VolumeCrypto::kOverhead);
  }
}

TEST_F(FileServerTest, HasDeleteAndList) {
  ASSERT_TRUE(Put("a/1", AsBytes("one")).ok());
  ASSERT_TRUE(Put("a/2", AsBytes("two")).ok());
  ASSERT_TRUE(Put("b", AsBytes("three")).ok());
  EXPECT_TRUE(*fs_->Has("a/1"));
  EXPECT_FALSE(*fs_->Has("zzz"));
  std::vector<std::string> keys;
  ASSERT_TRUE(fs_->List("a/", [&](const FileInfo& f) {
                    keys.push_back(f.key);
                    return true;
                  }).ok());
  EXPECT_EQ(keys, (std::vector<std::string>{"a/1", "a/2"}));
  ASSERT_TRUE(fs_->Delete("a/1").ok());
  EXPECT_FALSE(*fs_->Has("a/1"));
  EXPECT_EQ(fs_->Delete("a/1").code(), ErrorCode::kNotFound);
  EXPECT_EQ(Read("a/1").status().code(), ErrorCode::kNotFound);
}

TEST_F(FileServerTest, ChunksAreSharedAndFreedWhenUnreferenced) {
  Bytes data = testing::RandomBytes(2 << 20, 1);
  ASSERT_TRUE(Put("x", data).ok());
  std::uint64_t held = ChunksHeld();
  ASSERT_GT(held, 3u);
  ASSERT_TRUE(Put("y", data).ok());
  EXPECT_EQ(ChunksHeld(), held) << "identical content must deduplicate";
  ASSERT_TRUE(fs_->Delete("x").ok());
  EXPECT_EQ(ChunksHeld(), held);
  ASSERT_TRUE(Read("y").ok());
  // Overwriting y with other bytes frees all of its old chunks.
  ASSERT_TRUE(Put("y", testing::RandomBytes(5000, 2)).ok());
  EXPECT_EQ(ChunksHeld(), 1u);
  ASSERT_TRUE(fs_->Delete("y").ok());
  EXPECT_EQ(ChunksHeld(), 0u);
  EXPECT_EQ(fs_->Usage()->bytes, 0u);
}

// A whole file of at most 4 KiB is sealed into its manifest: no chunk file,
// nothing to replicate or count; a byte more and it is a chunk again.
TEST_F(FileServerTest, SmallFilesAreSealedIntoTheirManifest) {
  Bytes small = testing::RandomBytes(Manifest::kMaxInlineSize, 7);
  ASSERT_TRUE(Put("small", small).ok());
  EXPECT_EQ(ChunksHeld(), 0u);
  EXPECT_TRUE(*Read("small") == small);
  auto info = fs_->Stat("small");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->stored_bytes, small.size() + VolumeCrypto::kOverhead);
  Bytes larger = testing::RandomBytes(Manifest::kMaxInlineSize + 1, 8);
  ASSERT_TRUE(Put("larger", larger).ok());
  EXPECT_EQ(ChunksHeld(), 1u);
  ASSERT_TRUE(fs_->Delete("small").ok());
  EXPECT_EQ(ChunksHeld(), 1u);

  // The same through StoreData: whole files inline, regions never.
  FileServer::ChunkPins pins(fs_.get());
  MemoryReader whole(small);
  Manifest m = *fs_->StoreData(whole, &pins, FileServer::Inlining::kWholeFile);
  ASSERT_TRUE(m.is_inline());
  EXPECT_EQ(m.size, small.size());
  MemoryReader region(small);
  EXPECT_FALSE(fs_->StoreData(region, &pins, FileServer::Inlining::kRegion)->is_inline());
  EXPECT_EQ(ChunksHeld(), 2u);

  // The envelope is checked like a stored chunk's: a flipped bit is an
  // error, never other bytes.
  Bytes buf(small.size());
  ASSERT_EQ(*fs_->ReadContent(m, 0, buf), small.size());
  EXPECT_TRUE(buf == small);
  Manifest bad = m;
  bad.inline_sealed[bad.inline_sealed.size() / 2] ^= 0x10;
  Result<std::size_t> got = fs_->ReadContent(bad, 0, buf);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), ErrorCode::kCorrupt) << got.status().ToString();
}

TEST_F(FileServerTest, ReadAtMatchesSlices) {
  Bytes data = testing::RandomBytes(3 << 20, 2);
  ASSERT_TRUE(Put("r", data).ok());
  std::uint64_t x = 99;
  for (int i = 0; i < 50; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    std::uint64_t off = (x >> 20) % (data.size() + 10);
    std::size_t len = (x >> 7) % 300000;
    Bytes buf(len);
    auto n = fs_->ReadAt("r", off, buf);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    std::size_t want = off >= data.size() ? 0 : std::min<std::uint64_t>(len, data.size() - off);
    ASSERT_EQ(*n, want);
    EXPECT_TRUE(std::equal(buf.begin(), buf.begin() + static_cast<long>(want),
                           data.begin() + static_cast<long>(std::min<std::uint64_t>(off, data.size()))));
  }
}

TEST_F(FileServerTest, CorruptOrMissingChunkIsAnErrorNeverWrongBytes) {
  Bytes data = testing::RandomBytes(2 << 20, 3);
  ASSERT_TRUE(Put("c", data).ok());
  // Damage the third chunk file on disk.
  std::vector<std::filesystem::path> files;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir_ / "chunks")) {
    if (e.is_regular_file() && e.path().parent_path().filename() != "tmp") files.push_back(e.path());
  }
  ASSERT_GT(files.size(), 3u);
  {
    std::fstream f(files[2], std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    char c = 0;
    f.read(&c, 1);
    f.seekp(100);
    c ^= 0x40;
    f.write(&c, 1);
  }
  MemoryWriter w;
  Status s = fs_->Get("c", w);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), ErrorCode::kCorrupt) << s.ToString();
  EXPECT_NE(s.message().find(files[2].filename().string()), std::string::npos) << s.ToString();
  // What was written before the failure is an exact prefix of the data.
  ASSERT_LE(w.data().size(), data.size());
  EXPECT_TRUE(std::equal(w.data().begin(), w.data().end(), data.begin()));

  std::filesystem::remove(files[2]);
  MemoryWriter w2;
  s = fs_->Get("c", w2);
  EXPECT_EQ(s.code(), ErrorCode::kCorrupt);
  EXPECT_NE(s.message().find("missing"), std::string::npos) << s.ToString();
}

TEST_F(FileServerTest, WrongKeyIsReportedAsWrongKey) {
  ASSERT_TRUE(Put("k", AsBytes("secret")).ok());
  fs_.reset();
  auto other = FileServer::Open(dir_.path(), TestKey(8), SmallChunks());
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), ErrorCode::kWrongKey) << other.status().ToString();
}

TEST_F(FileServerTest, SecondOpenOfTheSameDirectoryIsRefused) {
  auto again = FileServer::Open(dir_.path(), TestKey(), SmallChunks());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), ErrorCode::kUnavailable) << again.status().ToString();
}

TEST_F(FileServerTest, HostileKeysAreRefused) {
  for (std::string k : {std::string(""), std::string("../x"), std::string(10 * 1024, 'k'),
                        std::string("a\0b", 3)}) {
    EXPECT_EQ(Put(k, AsBytes("x")).code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(Read(k).status().code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(fs_->Delete(k).code(), ErrorCode::kInvalidArgument);
    EXPECT_EQ(fs_->Has(k).status().code(), ErrorCode::kInvalidArgument);
  }
}

TEST_F(FileServerTest, NoPlaintextInTheDataDirectory) {
  std::string marker = "PLAINTEXT-MARKER-0123456789-dfs-must-never-store-this-in-clear";
  std::string content;
  while (content.size() < (1 << 20)) content += marker;
  ASSERT_TRUE(Put("plain.txt", AsBytes(content)).ok());
  fs_.reset();
  for (auto& e : std::filesystem::recursive_directory_iterator(dir_.path())) {
    if (!e.is_regular_file()) continue;
    std::ifstream f(e.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(f)), {});
    EXPECT_EQ(bytes.find(marker.substr(0, 24)), std::string::npos) << e.path();
  }
}

TEST_F(FileServerTest, FailedStoreKeepsOldContentAndLeavesNoChunks) {
  ASSERT_TRUE(Put("f", AsBytes("old content")).ok());
  std::uint64_t before = ChunksHeld();
  Bytes data = testing::RandomBytes(4 << 20, 4);
  FailingReader reader(data, 3 << 20);
  Status s = fs_->Store("f", reader);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("simulated read failure"), std::string::npos);
  auto back = Read("f");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(AsString(*back), "old content");
  EXPECT_EQ(ChunksHeld(), before);
}

// A change whose op could not travel to peers (a manifest past the op size
// limit) is refused with EFBIG before it commits: the old content stays,
// the new chunks go.
TEST_F(FileServerTest, UncleanShutdownSweepsOrphanChunks) {
  Bytes kept = testing::RandomBytes(10000, 4);  // large enough for a chunk of its own
  ASSERT_TRUE(Put("keep", kept).ok());
  fs_.reset();
  {  // What a kill -9 mid-Store leaves: a chunk with no reference, unclean flag.
    auto store = DiskChunkStore::Open(dir_ / "chunks");
    ASSERT_TRUE(store.ok());
    std::array<std::uint8_t, 32> raw;
    raw.fill(0x5a);
    ASSERT_TRUE((*store)->Put(ChunkId(raw), AsBytes("orphan")).ok());
    auto index = Index::Open(dir_ / "index.db");
    ASSERT_TRUE(index.ok());
    ASSERT_TRUE((*index)->SetMeta("clean_shutdown", AsBytes("0")).ok());
  }
  Open();
  EXPECT_EQ(ChunksHeld(), 1u);
  auto back = Read("keep");
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(*back == kept);
}

TEST_F(FileServerTest, ConcurrentStoresAndGets) {
  Bytes shared = testing::RandomBytes(1 << 20, 5);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        Bytes own = testing::RandomBytes(300000, static_cast<std::uint64_t>(100 * t + i));
        std::string k = fmt::format("t{}/{}", t, i);
        if (!Put(k, own).ok() || !Put(k + ".shared", shared).ok()) ++failures;
        auto back = Read(k);
        if (!back.ok() || *back != own) ++failures;
        if (i % 2 == 0 && !fs_->Delete(k + ".shared").ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  auto back = Read("t3/3.shared");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == shared);
}

TEST(FileServerMemoryTest, WorksOverAMemoryStore) {
  testing::TempDir dir;
  auto index = Index::Open(dir / "index.db");
  ASSERT_TRUE(index.ok());
  auto fs = FileServer::Create(std::make_unique<MemoryChunkStore>(), std::move(index).value(),
                               TestKey(), SmallChunks());
  ASSERT_TRUE(fs.ok()) << fs.status().ToString();
  Bytes data = testing::RandomBytes(1 << 20, 6);
  MemoryReader r(data);
  ASSERT_TRUE((*fs)->Store("m", r).ok());
  MemoryWriter w;
  ASSERT_TRUE((*fs)->Get("m", w).ok());
  EXPECT_TRUE(w.data() == data);
}

}  // namespace
}  // namespace dfs::core

namespace dfs::core {
namespace {

// Local writes become this node's ops; another replica that applies them
// (and holds the chunks) serves the same files.
TEST(FileServerOpsTest, LocalWritesBecomeOpsThatAnotherReplicaApplies) {
  testing::TempDir dir;
  auto make = [&](const std::string& name, std::uint8_t id) {
    FileServerOptions o = SmallChunks();
    std::array<std::uint8_t, NodeId::kSize> raw{};
    raw.fill(id);
    o.node_id = NodeId(raw);
    auto index = Index::Open(dir / (name + ".db"));
    EXPECT_TRUE(index.ok());
    auto fs = FileServer::Create(std::make_unique<MemoryChunkStore>(), std::move(index).value(),
                                 TestKey(), o);
    EXPECT_TRUE(fs.ok());
    return std::move(fs).value();
  };
  auto a = make("a", 1), b = make("b", 2);
  auto put = [](FileServer& fs, std::string_view key, const Bytes& data) {
    MemoryReader r(data);
    ASSERT_TRUE(fs.Store(key, r).ok());
  };
  auto ship = [](FileServer& from, FileServer& to) {  // chunks, then ops
    Status copied = testing::CopyChunks(from.chunk_store(), to.chunk_store());
    ASSERT_TRUE(copied.ok()) << copied.ToString();
    auto ops = from.index().OpsSince(from.node_id(), 1, 1000);
    ASSERT_TRUE(ops.ok());
    for (const Op& op : *ops) {
      std::vector<ChunkId> freed;
      auto r = to.index().ApplyOp(op, &freed, [](const ChunkRef& c) { return c.size + 32ull; });
      ASSERT_TRUE(r.ok()) << r.status().ToString();
    }
  };
  Bytes x = testing::RandomBytes(700000, 11), y = testing::RandomBytes(300000, 12);
  put(*a, "x", x);
  put(*a, "y", y);
  ASSERT_TRUE(a->Delete("y").ok());
  auto ops = a->index().OpsSince(a->node_id(), 1, 100);
  ASSERT_TRUE(ops.ok());
  ASSERT_EQ(ops->size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ((*ops)[i].seq, i + 1);
  for (const Op& op : *ops) EXPECT_EQ(op.kind, Op::Kind::kTree);  // writes of the file tree
  EXPECT_LT((*ops)[0].time, (*ops)[1].time);

  ship(*a, *b);
  MemoryWriter w;
  ASSERT_TRUE(b->Get("x", w).ok());
  EXPECT_TRUE(w.data() == x);
  EXPECT_FALSE(*b->Has("y"));

  // And back: b's own write is b's op 1, which a applies.
  put(*b, "z", y);
  auto bops = b->index().OpsSince(b->node_id(), 1, 100);
  ASSERT_EQ(bops->size(), 1u);
  EXPECT_EQ((*bops)[0].origin, b->node_id());
  ship(*b, *a);
  EXPECT_TRUE(*a->Has("z"));
  auto va = a->index().Vector(), vb = b->index().Vector();
  EXPECT_EQ(va->Get(a->node_id()), 3u);
  EXPECT_EQ(va->Get(b->node_id()), 1u);
  EXPECT_TRUE(vb->Missing(*va).empty()) << "b has all it gave a";
}

// Group commit: tree changes commit at once but leave the node (listener,
// the op log peers read) and free chunks only once Flush made them durable.
TEST(FileServerOpsTest, OpsLeaveTheNodeAndChunksGoOnlyOnceDurable) {
  testing::TempDir dir;
  FileServerOptions o = SmallChunks();
  o.flush_delay = std::chrono::hours(1);  // the flusher never gets there first
  auto opened = FileServer::Open(dir.path(), TestKey(), o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  FileServer& fs = **opened;
  std::mutex mu;
  std::vector<std::uint64_t> published;
  fs.SetOpListener([&](const Op& op, bool local) {
    std::lock_guard lock(mu);
    if (local) published.push_back(op.seq);
  });
  auto seen = [&] {
    std::lock_guard lock(mu);
    return published;
  };
  // Store and Delete are durable (and published) when they return.
  Bytes data = testing::RandomBytes(400000, 3);
  MemoryReader r(data);
  ASSERT_TRUE(fs.Store("a", r).ok());
  EXPECT_EQ(seen(), std::vector<std::uint64_t>{1});
  EXPECT_EQ(fs.DurableSeq(), 1u);
  const std::uint64_t chunks = fs.Usage()->chunks;
  ASSERT_GT(chunks, 1u);

  // Tree calls are not: visible here at once, to peers only after Flush.
  NewNode sub;
  sub.type = FileType::kDirectory;
  ASSERT_TRUE(fs.MakeNode(FileId::Root(), "d", sub).ok());
  ASSERT_TRUE(fs.Unlink(FileId::Root(), "a").ok());
  EXPECT_TRUE(fs.LookupName(FileId::Root(), "d").ok());
  EXPECT_FALSE(fs.LookupName(FileId::Root(), "a").ok());
  EXPECT_EQ(fs.index().Vector()->Get(fs.node_id()), 3u);
  EXPECT_EQ(seen(), std::vector<std::uint64_t>{1});
  EXPECT_EQ(fs.DurableSeq(), 1u);
  VolumeOpLog log(fs);
  EXPECT_EQ(log.Vector()->Get(fs.node_id()), 1u) << "peers are shown only durable ops";
  EXPECT_TRUE(log.Since(fs.node_id(), 2, 1 << 20)->empty());
  EXPECT_EQ(fs.Usage()->chunks, chunks) << "chunks freed by an op that is not durable yet";

  ASSERT_TRUE(fs.Flush().ok());
  EXPECT_EQ(seen(), (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_EQ(fs.DurableSeq(), 3u);
  EXPECT_EQ(log.Vector()->Get(fs.node_id()), 3u);
  auto since = log.Since(fs.node_id(), 2, 1 << 20);
  ASSERT_TRUE(since.ok());
  ASSERT_EQ(since->size(), 2u);
  EXPECT_EQ((*since)[1].seq, 3u);
  EXPECT_EQ(fs.Usage()->chunks, 0u);
}

TEST(FileServerOpsTest, ChunksAreSyncedByTheFlushThatMakesTheirOpDurable) {
  testing::TempDir dir;
  auto index = Index::Open(dir / "index.db");
  ASSERT_TRUE(index.ok());
  auto owned = std::make_unique<SyncCountingStore>();
  SyncCountingStore& store = *owned;
  FileServerOptions o = SmallChunks();
  o.flush_delay = std::chrono::hours(1);  // the flusher never gets there first
  auto opened = FileServer::Create(std::move(owned), std::move(index).value(), TestKey(), o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  FileServer& fs = **opened;
  std::atomic<int> unsynced_at_publish{-1};
  fs.SetOpListener([&](const Op&, bool local) {
    if (local) unsynced_at_publish = store.unsynced.load();
  });

  // A mount's upload: chunks stored and committed, no sync of its own.
  Bytes data = testing::RandomBytes(300000, 9);
  MemoryReader r(data);
  FileServer::ChunkPins pins(&fs);
  Result<Manifest> m = fs.StoreData(r, &pins);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_GT(m->chunks.size(), 1u);
  EXPECT_EQ(store.syncs.load(), 0) << "no sync per closed file";
  EXPECT_EQ(store.unsynced.load(), static_cast<int>(m->chunks.size()));
  NewNode file;
  file.type = FileType::kRegular;
  ASSERT_TRUE(fs.MakeNode(FileId::Root(), "f", file).ok());
  EXPECT_EQ(unsynced_at_publish.load(), -1) << "nothing published before a flush";

  // The flush syncs the chunks before the log: the op leaves with none unsynced.
  ASSERT_TRUE(fs.Flush().ok());
  EXPECT_GE(store.syncs.load(), 1);
  EXPECT_EQ(unsynced_at_publish.load(), 0);

  // A put (the CLI's) is durable when it returns, chunks included.
  Bytes other = testing::RandomBytes(300000, 10);
  MemoryReader r2(other);
  unsynced_at_publish = -1;
  ASSERT_TRUE(fs.Store("g", r2).ok());
  EXPECT_EQ(store.unsynced.load(), 0);
  EXPECT_EQ(unsynced_at_publish.load(), 0);
}

TEST(FileServerOpsTest, SequenceNumbersSurviveReopen) {
  testing::TempDir dir;
  Bytes data = testing::RandomBytes(1000, 3);
  for (int round = 0; round < 3; ++round) {
    auto fs = FileServer::Open(dir.path(), TestKey(), SmallChunks());
    ASSERT_TRUE(fs.ok()) << fs.status().ToString();
    MemoryReader r(data);
    ASSERT_TRUE((*fs)->Store("k" + std::to_string(round), r).ok());
    auto v = (*fs)->index().Vector();
    EXPECT_EQ(v->Get((*fs)->node_id()), static_cast<std::uint64_t>(round + 1));
  }
}

}  // namespace
}  // namespace dfs::core
