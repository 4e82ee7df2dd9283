#include "core/staged_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "core/chunker.h"
#include "tests/test_util.h"

namespace dfs::core {
namespace {

namespace fs = std::filesystem;

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;
constexpr std::uint64_t kTiB = kMiB * kMiB;

// Chunks held in memory under counter ids (a re-stored chunk gets a new id,
// so an unchanged ref proves its chunk was not stored again). Cuts regions
// into fixed-size chunks, or content-defined ones with the real Chunker.
// Counts what it stores and reads.
class FakeChunks {
 public:
  explicit FakeChunks(std::size_t chunk_size) : chunk_size_(chunk_size) {}
  explicit FakeChunks(ChunkerParams params)
      : chunk_size_(params.max_size), chunker_(std::make_unique<Chunker>(42, params)) {}

  StagedFile::ChunkReader Reader() {
    return [this](const Manifest& base, std::size_t index, Bytes* plain) {
      ++chunk_reads;
      if (fail_reads) return Status::Io("injected base read failure");
      const ChunkRef& ref = base.chunks.at(index);
      EXPECT_FALSE(ref.IsHole()) << "read of hole ref " << index;
      auto it = chunks_.find(ref.id);
      if (it == chunks_.end()) return Status::NotFound("no chunk " + ref.id.ShortHex());
      *plain = it->second;
      return Status::Ok();
    };
  }

  StagedFile::RegionStore Store() {
    return [this](core::Reader& region) { return StoreRegion(region); };
  }

  Result<Manifest> StoreRegion(core::Reader& region) {
    ++store_calls;
    if (fail_store_at == store_calls) return Status::NoSpace("injected store failure");
    Manifest piece;
    if (chunker_) {
      ChunkStream stream(*chunker_, region);
      for (;;) {
        DFS_ASSIGN_OR_RETURN(std::optional<ByteSpan> chunk, stream.Next());
        if (!chunk) break;
        Add(*chunk, &piece);
      }
      return piece;
    }
    Bytes buf(chunk_size_);
    for (;;) {
      DFS_ASSIGN_OR_RETURN(std::size_t n, ReadFull(region, buf));
      if (n > 0) Add(ByteSpan(buf.data(), n), &piece);
      if (n < buf.size()) break;
    }
    return piece;
  }

  // Stores `data` as a whole file.
  Manifest StoreBytes(ByteSpan data) {
    MemoryReader reader(data);
    Result<Manifest> m = StoreRegion(reader);
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    return m.ok() ? *m : Manifest();
  }

  // The bytes a manifest names (holes as zeros); for small files.
  Bytes Contents(const Manifest& m) const {
    Bytes out;
    for (const ChunkRef& ref : m.chunks) {
      if (ref.IsHole()) {
        out.resize(out.size() + ref.size, 0);
        continue;
      }
      auto it = chunks_.find(ref.id);
      EXPECT_NE(it, chunks_.end()) << "missing chunk " << ref.id.ShortHex();
      if (it == chunks_.end()) return {};
      EXPECT_EQ(it->second.size(), ref.size);
      out.insert(out.end(), it->second.begin(), it->second.end());
    }
    EXPECT_EQ(out.size(), m.size);
    return out;
  }

  std::uint64_t stored_bytes = 0;
  std::uint64_t store_calls = 0;
  std::uint64_t chunk_reads = 0;
  std::uint64_t fail_store_at = 0;  // the store call (1-based) that fails; 0: none
  bool fail_reads = false;

 private:
  void Add(ByteSpan chunk, Manifest* piece) {
    ChunkId id = testing::TestChunkId(++next_id_);
    chunks_[id] = Bytes(chunk.begin(), chunk.end());
    piece->chunks.push_back({id, static_cast<std::uint32_t>(chunk.size())});
    piece->size += chunk.size();
    stored_bytes += chunk.size();
  }

  std::size_t chunk_size_;
  std::unique_ptr<Chunker> chunker_;
  std::uint32_t next_id_ = 0;
  std::map<ChunkId, Bytes> chunks_;
};

// Size and allocated bytes of the one open file under `dir` (the staging
// file, unlinked), found through /proc/self/fd.
std::optional<std::pair<std::uint64_t, std::uint64_t>> StagingFileUsage(const fs::path& dir) {
  for (const auto& entry : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    fs::path target = fs::read_symlink(entry.path(), ec);
    if (ec || target.string().rfind(dir.string() + "/", 0) != 0) continue;
    struct stat st {};
    if (::stat(entry.path().c_str(), &st) != 0) continue;
    return std::make_pair(static_cast<std::uint64_t>(st.st_size),
                          static_cast<std::uint64_t>(st.st_blocks) * 512);
  }
  return std::nullopt;
}

Bytes Pattern(std::size_t size, std::uint64_t seed) { return testing::RandomBytes(size, seed); }

// Reads the whole file in pieces of `step` bytes, checking each count.
Bytes ReadAll(StagedFile& file, std::size_t step = 7001) {
  Bytes out(file.size());
  for (std::uint64_t at = 0; at < out.size(); at += step) {
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(step, out.size() - at));
    Result<std::size_t> n = file.Read(at, MutableByteSpan(out.data() + at, want));
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    if (!n.ok()) return {};
    EXPECT_EQ(*n, want) << "at " << at;
  }
  Bytes past(10);
  Result<std::size_t> n = file.Read(file.size(), past);
  EXPECT_TRUE(n.ok() && *n == 0);
  return out;
}

Bytes ReadAt(StagedFile& file, std::uint64_t offset, std::size_t size) {
  Bytes out(size);
  Result<std::size_t> n = file.Read(offset, out);
  EXPECT_TRUE(n.ok()) << n.status().ToString();
  out.resize(n.ok() ? *n : 0);
  return out;
}

// Writes `data` at `offset` to the file and, when that works, to the model.
Status WriteBoth(StagedFile& file, Bytes* model, std::uint64_t offset, ByteSpan data) {
  Status s = file.Write(offset, data);
  if (s.ok() && !data.empty()) {
    if (model->size() < offset + data.size()) model->resize(offset + data.size(), 0);
    std::copy(data.begin(), data.end(), model->begin() + static_cast<std::ptrdiff_t>(offset));
  }
  return s;
}

// Every ref of `now` but those at `changed` is the one of `before`.
void ExpectRefsKept(const Manifest& now, const Manifest& before, std::set<std::size_t> changed) {
  ASSERT_EQ(now.chunks.size(), before.chunks.size());
  for (std::size_t i = 0; i < now.chunks.size(); ++i) {
    if (changed.count(i) == 0) {
      EXPECT_EQ(now.chunks[i], before.chunks[i]) << i;
    } else {
      EXPECT_NE(now.chunks[i], before.chunks[i]) << i;
    }
  }
}

class StagedFileTest : public ::testing::Test {
 protected:
  std::unique_ptr<StagedFile> Open(FakeChunks& chunks, Manifest base) {
    auto file = StagedFile::Create(dir_.path(), std::move(base), chunks.Reader());
    EXPECT_TRUE(file.ok()) << file.status().ToString();
    return file.ok() ? std::move(file).value() : nullptr;
  }

  testing::TempDir dir_;
};

// An inline base (a small file's one chunk, carried in its manifest) is in
// no store, so no commit may keep its ref: a write anywhere, even one that
// leaves its bytes alone, stores them again. Untouched, it stays as it is.
TEST_F(StagedFileTest, AnInlineBaseIsStoredAgainWithAnyChange) {
  FakeChunks chunks(64 * kKiB);
  Manifest base = chunks.StoreBytes(AsBytes("hello"));
  base.inline_sealed = {1, 2, 3};  // what the marker holds is not the staged file's concern
  for (int change = 0; change < 3; ++change) {
    auto file = Open(chunks, base);
    ASSERT_NE(file, nullptr);
    std::string want;
    if (change == 0) {
      ASSERT_TRUE(file->Write(5, AsBytes(" world")).ok());  // an append past the base
      want = "hello world";
    } else if (change == 1) {
      ASSERT_TRUE(file->Truncate(8).ok());  // grown by a hole
      want = std::string("hello\0\0\0", 8);
    } else {
      ASSERT_TRUE(file->Truncate(3).ok());  // cut
      want = "hel";
    }
    Result<Manifest> next = file->Commit(chunks.Store());
    ASSERT_TRUE(next.ok()) << next.status().ToString();
    EXPECT_FALSE(next->is_inline());
    for (const ChunkRef& ref : next->chunks) EXPECT_NE(ref.id, base.chunks[0].id) << change;
    EXPECT_EQ(AsString(chunks.Contents(*next)), want) << change;
  }
  auto file = Open(chunks, base);
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(AsString(ReadAll(*file)), "hello");
  Result<Manifest> same = file->Commit(chunks.Store());
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(*same, base);
}

// Random writes, truncates, reads and commits against a model, compared
// after every step; every commit's manifest must read back the model.
void RunRandomSteps(const fs::path& dir, FakeChunks& chunks, std::uint64_t seed, int steps) {
  std::mt19937_64 rng(seed);
  auto pick = [&](std::uint64_t lo, std::uint64_t hi) {  // inclusive
    return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng);
  };
  Bytes model = Pattern(static_cast<std::size_t>(pick(0, 200 * kKiB)), seed);
  Manifest base = chunks.StoreBytes(model);
  auto created = StagedFile::Create(dir, base, chunks.Reader());
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  StagedFile& file = **created;
  bool dirty = false;
  int commits = 0;
  for (int step = 0; step < steps; ++step) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed << " step " << step);
    std::uint64_t op = pick(0, 99);
    if (op < 40) {  // write, sometimes far past the end
      std::uint64_t offset = pick(0, model.size() + 8 * kKiB);
      if (pick(0, 9) == 0) offset = model.size() + pick(0, 300 * kKiB);
      std::size_t length = static_cast<std::size_t>(pick(0, 9) == 0 ? 0 : pick(1, 20 * kKiB));
      ASSERT_TRUE(WriteBoth(file, &model, offset, Pattern(length, rng())).ok());
      dirty = dirty || length > 0;
    } else if (op < 52) {  // truncate down or up
      std::uint64_t size = pick(0, model.size() * 3 / 2 + 4 * kKiB);
      ASSERT_TRUE(file.Truncate(size).ok());
      if (size != model.size()) dirty = true;
      model.resize(size, 0);
    } else if (op < 92) {  // read anywhere, also past the end
      std::uint64_t offset = pick(0, model.size() + 100);
      std::size_t length = static_cast<std::size_t>(pick(0, 30 * kKiB));
      Bytes got = ReadAt(file, offset, length);
      std::size_t begin = std::min<std::size_t>(offset, model.size());
      std::size_t end = std::min<std::size_t>(begin + length, model.size());
      ASSERT_EQ(got, Bytes(model.begin() + static_cast<std::ptrdiff_t>(begin),
                           model.begin() + static_cast<std::ptrdiff_t>(end)));
    } else {  // commit
      std::uint64_t calls = chunks.store_calls;
      Result<Manifest> m = file.Commit(chunks.Store());
      ASSERT_TRUE(m.ok()) << m.status().ToString();
      if (!dirty) {
        EXPECT_EQ(chunks.store_calls, calls);
      }
      ASSERT_EQ(m->size, model.size());
      ASSERT_EQ(chunks.Contents(*m), model);
      ASSERT_EQ(file.base(), *m);
      Result<Manifest> decoded = Manifest::Decode(m->Encode());
      ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
      auto usage = StagingFileUsage(dir);
      ASSERT_TRUE(usage.has_value());
      EXPECT_EQ(usage->first, 0u);
      EXPECT_EQ(usage->second, 0u);
      dirty = false;
      ++commits;
    }
    ASSERT_EQ(file.size(), model.size());
    ASSERT_EQ(file.dirty(), dirty);
    ASSERT_EQ(ReadAll(file, static_cast<std::size_t>(pick(1, 64 * kKiB))), model);
  }
  Result<Manifest> last = file.Commit(chunks.Store());
  ASSERT_TRUE(last.ok()) << last.status().ToString();
  ASSERT_EQ(chunks.Contents(*last), model);
  EXPECT_GT(commits, steps / 20);
}

TEST_F(StagedFileTest, RandomStepsFixedChunks) {
  FakeChunks chunks(4 * kKiB);
  RunRandomSteps(dir_.path(), chunks, 1, 3000);
}

TEST_F(StagedFileTest, RandomStepsContentDefinedChunks) {
  FakeChunks chunks(ChunkerParams{1024, 4096, 16384});
  RunRandomSteps(dir_.path(), chunks, 2, 3000);
}

TEST_F(StagedFileTest, RandomStepsMoreSeeds) {
  for (std::uint64_t seed = 3; seed < 8; ++seed) {
    FakeChunks chunks(1 * kKiB + seed);  // chunk sizes that do not divide anything
    RunRandomSteps(dir_.path(), chunks, seed, 600);
    if (HasFatalFailure()) return;
  }
}

// A write into the middle of a 64 MiB base of 1 MiB chunks re-chunks only
// the chunks it touches; every other ref stays as it was.
TEST_F(StagedFileTest, MiddleWriteRechunksOnlyTouchedChunks) {
  FakeChunks chunks(kMiB);
  Bytes model = Pattern(64 * kMiB, 7);
  Manifest base = chunks.StoreBytes(model);
  ASSERT_EQ(base.chunks.size(), 64u);
  auto file = Open(chunks, base);

  // Inside chunk 32.
  ASSERT_TRUE(WriteBoth(*file, &model, 32 * kMiB + 12345, Pattern(1000, 8)).ok());
  chunks.stored_bytes = 0;
  chunks.chunk_reads = 0;
  Result<Manifest> m = file->Commit(chunks.Store());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_LE(chunks.stored_bytes, kMiB + 1000);
  EXPECT_EQ(chunks.store_calls, 2u);  // the base, then one region
  EXPECT_EQ(chunks.chunk_reads, 1u);  // only chunk 32 was read back
  ExpectRefsKept(*m, base, {32});
  EXPECT_EQ(chunks.Contents(*m), model);

  // Across the boundary of chunks 39 and 40: those two.
  base = *m;
  ASSERT_TRUE(WriteBoth(*file, &model, 40 * kMiB - 500, Pattern(1000, 9)).ok());
  chunks.stored_bytes = 0;
  m = file->Commit(chunks.Store());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_LE(chunks.stored_bytes, 2 * kMiB + 1000);
  ExpectRefsKept(*m, base, {39, 40});
  EXPECT_EQ(chunks.Contents(*m), model);
  EXPECT_EQ(ReadAll(*file, 1 << 20), model);
}

// Two writes in one chunk and one exactly on a chunk boundary: one region
// each touched chunk, merged where adjacent.
TEST_F(StagedFileTest, AdjacentTouchedChunksAreOneRegion) {
  FakeChunks chunks(64 * kKiB);
  Bytes model = Pattern(16 * 64 * kKiB, 10);
  Manifest base = chunks.StoreBytes(model);
  auto file = Open(chunks, base);
  auto write = [&](std::uint64_t offset, std::size_t size, std::uint64_t seed) {
    ASSERT_TRUE(WriteBoth(*file, &model, offset, Pattern(size, seed)).ok());
  };
  write(3 * 64 * kKiB + 10, 10, 1);    // chunk 3
  write(3 * 64 * kKiB + 100, 10, 2);   // chunk 3 again
  write(4 * 64 * kKiB, 64 * kKiB, 3);  // exactly chunk 4: adjacent to chunk 3's region
  write(9 * 64 * kKiB + 5, 1, 4);      // chunk 9 alone
  std::uint64_t calls = chunks.store_calls;
  chunks.stored_bytes = 0;
  Result<Manifest> m = file->Commit(chunks.Store());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(chunks.store_calls - calls, 2u);
  EXPECT_EQ(chunks.stored_bytes, 3 * 64 * kKiB);
  ExpectRefsKept(*m, base, {3, 4, 9});
  EXPECT_EQ(chunks.Contents(*m), model);
}

TEST_F(StagedFileTest, TruncateToTerabyteIsHolesOnly) {
  FakeChunks chunks(4 * kKiB);
  Bytes data = Pattern(10 * kKiB, 11);
  Manifest base = chunks.StoreBytes(data);
  auto file = Open(chunks, base);
  ASSERT_TRUE(file->Truncate(kTiB).ok());
  EXPECT_EQ(file->size(), kTiB);
  EXPECT_TRUE(file->dirty());
  EXPECT_EQ(ReadAt(*file, kTiB - 4096, 8192), Bytes(4096, 0));
  EXPECT_EQ(ReadAt(*file, kTiB / 2, 100), Bytes(100, 0));
  Bytes head = ReadAt(*file, 0, 12 * kKiB);
  EXPECT_TRUE(std::equal(data.begin(), data.end(), head.begin()));
  EXPECT_EQ(Bytes(head.begin() + static_cast<std::ptrdiff_t>(data.size()), head.end()),
            Bytes(2 * kKiB, 0));

  std::uint64_t calls = chunks.store_calls;
  chunks.stored_bytes = 0;
  Result<Manifest> m = file->Commit(chunks.Store());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(chunks.store_calls, calls);
  EXPECT_EQ(chunks.stored_bytes, 0u);
  EXPECT_EQ(m->size, kTiB);
  ASSERT_GT(m->chunks.size(), base.chunks.size());
  EXPECT_TRUE(std::equal(base.chunks.begin(), base.chunks.end(), m->chunks.begin()));
  std::uint64_t holes = 0;
  for (std::size_t i = base.chunks.size(); i < m->chunks.size(); ++i) {
    EXPECT_TRUE(m->chunks[i].IsHole()) << i;
    holes += m->chunks[i].size;
  }
  EXPECT_EQ(holes, kTiB - data.size());
  EXPECT_EQ(m->chunks.size(),
            base.chunks.size() + (holes + Manifest::kMaxHoleSize - 1) / Manifest::kMaxHoleSize);
  EXPECT_FALSE(file->dirty());
  EXPECT_EQ(ReadAt(*file, kTiB - 10, 100), Bytes(10, 0));
  EXPECT_EQ(ReadAt(*file, 0, data.size()), data);
}

TEST_F(StagedFileTest, WriteFarPastEndLeavesHoleRef) {
  FakeChunks chunks(4 * kKiB);
  Bytes data = Pattern(10 * kKiB, 12);
  Manifest base = chunks.StoreBytes(data);
  auto file = Open(chunks, base);
  Bytes tail = Pattern(100, 13);
  ASSERT_TRUE(file->Write(kTiB, tail).ok());
  EXPECT_EQ(file->size(), kTiB + tail.size());
  EXPECT_EQ(ReadAt(*file, kTiB - 50, 50), Bytes(50, 0));
  EXPECT_EQ(ReadAt(*file, kTiB, 1000), tail);
  EXPECT_EQ(ReadAt(*file, 0, data.size()), data);
  EXPECT_EQ(file->staged_bytes(), tail.size());

  chunks.stored_bytes = 0;
  Result<Manifest> m = file->Commit(chunks.Store());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(chunks.stored_bytes, tail.size());
  ASSERT_GE(m->chunks.size(), base.chunks.size() + 2);
  EXPECT_TRUE(std::equal(base.chunks.begin(), base.chunks.end(), m->chunks.begin()));
  std::uint64_t holes = 0;
  for (std::size_t i = base.chunks.size(); i + 1 < m->chunks.size(); ++i) {
    EXPECT_TRUE(m->chunks[i].IsHole()) << i;
    holes += m->chunks[i].size;
  }
  EXPECT_EQ(holes, kTiB - data.size());
  EXPECT_FALSE(m->chunks.back().IsHole());
  EXPECT_EQ(m->chunks.back().size, tail.size());
  EXPECT_EQ(ReadAt(*file, kTiB, 1000), tail);
  EXPECT_EQ(ReadAt(*file, kTiB - 50, 50), Bytes(50, 0));
}

// A write inside a base hole splits the hole; it is not widened to the hole's ends.
TEST_F(StagedFileTest, WriteIntoBaseHoleSplitsIt) {
  FakeChunks chunks(4 * kKiB);
  Manifest base = chunks.StoreBytes(Pattern(5000, 14));
  base.AppendHole(kTiB);
  auto file = Open(chunks, base);
  Bytes data = Pattern(3000, 15);
  std::uint64_t offset = kTiB / 2 + 12345;
  ASSERT_TRUE(file->Write(offset, data).ok());
  chunks.stored_bytes = 0;
  Result<Manifest> m = file->Commit(chunks.Store());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(chunks.stored_bytes, data.size());
  EXPECT_EQ(m->size, base.size);
  EXPECT_EQ(m->chunks[0], base.chunks[0]);
  EXPECT_EQ(m->chunks[1], base.chunks[1]);
  EXPECT_EQ(ReadAt(*file, offset - 10, 3020), [&] {
    Bytes want(10, 0);
    want.insert(want.end(), data.begin(), data.end());
    want.resize(3020, 0);
    return want;
  }());
}

TEST_F(StagedFileTest, AppendKeepsEveryBaseRef) {
  FakeChunks chunks(4 * kKiB);
  Bytes model = Pattern(10 * kKiB, 16);
  auto file = Open(chunks, chunks.StoreBytes(model));
  for (int round = 0; round < 5; ++round) {
    Manifest before = file->base();
    Bytes more = Pattern(3000 + 1000 * round, 17 + round);
    ASSERT_TRUE(WriteBoth(*file, &model, file->size(), more).ok());
    EXPECT_EQ(ReadAll(*file), model);
    chunks.stored_bytes = 0;
    Result<Manifest> m = file->Commit(chunks.Store());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(chunks.stored_bytes, more.size());
    EXPECT_TRUE(std::equal(before.chunks.begin(), before.chunks.end(), m->chunks.begin()));
    EXPECT_EQ(chunks.Contents(*m), model);
  }
}

// Down into the middle of chunk 3: only that chunk's head is stored again.
// Then, with `up_again`, back up to the old size: the cut-off base bytes read
// as zeros and become a hole, not the old data.
TEST_F(StagedFileTest, TruncateDownIntoChunkMiddle) {
  for (bool up_again : {false, true}) {
    SCOPED_TRACE(up_again ? "down, then up again" : "down");
    FakeChunks chunks(1024);
    Bytes model = Pattern(8 * 1024, 18);
    Manifest base = chunks.StoreBytes(model);
    auto file = Open(chunks, base);
    ASSERT_TRUE(file->Truncate(3 * 1024 + 512).ok());
    model.resize(3 * 1024 + 512);
    if (up_again) {
      ASSERT_TRUE(file->Truncate(base.size).ok());
      model.resize(base.size, 0);
    }
    EXPECT_EQ(file->size(), model.size());
    EXPECT_TRUE(file->dirty());
    EXPECT_EQ(ReadAll(*file, 1000), model);
    chunks.stored_bytes = 0;
    Result<Manifest> m = file->Commit(chunks.Store());
    ASSERT_TRUE(m.ok()) << m.status().ToString();
    EXPECT_EQ(chunks.stored_bytes, 512u);  // the head of chunk 3
    ASSERT_EQ(m->chunks.size(), up_again ? 5u : 4u);
    for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(m->chunks[i], base.chunks[i]);
    EXPECT_EQ(m->chunks[3].size, 512u);
    if (up_again) {
      EXPECT_TRUE(m->chunks[4].IsHole());
      EXPECT_EQ(m->chunks[4].size, 4 * 1024 + 512u);
    }
    EXPECT_EQ(chunks.Contents(*m), model);
  }
}

TEST_F(StagedFileTest, FailedCommitChangesNothingAndRetrySucceeds) {
  FakeChunks chunks(4 * kKiB);
  Bytes model = Pattern(40 * kKiB, 20);
  Manifest base = chunks.StoreBytes(model);
  auto file = Open(chunks, base);
  ASSERT_TRUE(WriteBoth(*file, &model, 1000, Pattern(100, 21)).ok());
  ASSERT_TRUE(WriteBoth(*file, &model, 50 * kKiB, Pattern(5000, 22)).ok());
  ASSERT_TRUE(file->Truncate(60 * kKiB).ok());
  model.resize(60 * kKiB, 0);
  ASSERT_EQ(ReadAll(*file), model);

  chunks.fail_store_at = chunks.store_calls + 2;  // the second region fails
  Result<Manifest> failed = file->Commit(chunks.Store());
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), ErrorCode::kNoSpace) << failed.status().ToString();
  EXPECT_EQ(file->base(), base);
  EXPECT_TRUE(file->dirty());
  EXPECT_EQ(file->size(), model.size());
  EXPECT_EQ(ReadAll(*file), model);

  // A base chunk that cannot be read fails the commit, even through a store
  // that drops the reader's error.
  chunks.fail_reads = true;
  Result<Manifest> dropped = file->Commit([](Reader& region) -> Result<Manifest> {
    Bytes buf(1000);
    (void)region.Read(buf);
    Manifest none;
    none.AppendHole(4 * kKiB);
    return none;
  });
  ASSERT_FALSE(dropped.ok());
  EXPECT_EQ(dropped.status().code(), ErrorCode::kIo) << dropped.status().ToString();
  chunks.fail_reads = false;
  // A store that returns the wrong number of bytes.
  Result<Manifest> short_piece =
      file->Commit([](Reader&) -> Result<Manifest> { return Manifest(); });
  EXPECT_EQ(short_piece.status().code(), ErrorCode::kCorrupt);
  EXPECT_EQ(file->base(), base);
  EXPECT_EQ(ReadAll(*file), model);

  Result<Manifest> m = file->Commit(chunks.Store());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(chunks.Contents(*m), model);
  EXPECT_FALSE(file->dirty());
  EXPECT_EQ(ReadAll(*file), model);
}

// PrepareCommit changes nothing; FinishCommit adopts the manifest, but not
// one prepared before a later change.
TEST_F(StagedFileTest, TwoStepCommit) {
  FakeChunks chunks(4 * kKiB);
  Bytes model = Pattern(20 * kKiB, 30);
  Manifest base = chunks.StoreBytes(model);
  auto file = Open(chunks, base);
  ASSERT_TRUE(WriteBoth(*file, &model, 5000, Pattern(100, 31)).ok());

  Result<StagedFile::PreparedCommit> prepared = file->PrepareCommit(chunks.Store());
  ASSERT_TRUE(prepared.ok()) << prepared.status().ToString();
  EXPECT_EQ(chunks.Contents(prepared->manifest), model);
  EXPECT_TRUE(file->dirty());
  EXPECT_EQ(file->base(), base);
  EXPECT_EQ(ReadAll(*file), model);

  // Not finished (say the index refused it): still dirty, and a later
  // change makes the prepared commit stale.
  ASSERT_TRUE(file->Truncate(15 * kKiB).ok());
  model.resize(15 * kKiB);
  Status stale = file->FinishCommit(*prepared);
  EXPECT_EQ(stale.code(), ErrorCode::kInvalidArgument) << stale.ToString();
  EXPECT_TRUE(file->dirty());
  EXPECT_EQ(ReadAll(*file), model);

  prepared = file->PrepareCommit(chunks.Store());
  ASSERT_TRUE(prepared.ok()) << prepared.status().ToString();
  ASSERT_TRUE(file->FinishCommit(*prepared).ok());
  EXPECT_FALSE(file->dirty());
  EXPECT_EQ(file->base(), prepared->manifest);
  EXPECT_EQ(chunks.Contents(file->base()), model);
  EXPECT_EQ(ReadAll(*file), model);
  EXPECT_EQ(file->FinishCommit(*prepared).code(), ErrorCode::kInvalidArgument);
}

TEST_F(StagedFileTest, CleanCommitStoresNothing) {
  FakeChunks chunks(4 * kKiB);
  Manifest base = chunks.StoreBytes(Pattern(20 * kKiB, 23));
  auto file = Open(chunks, base);
  ASSERT_TRUE(file->Truncate(base.size).ok());
  ASSERT_TRUE(file->Write(5, {}).ok());
  EXPECT_FALSE(file->dirty());
  std::uint64_t calls = chunks.store_calls;
  Result<Manifest> m = file->Commit(chunks.Store());
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, base);
  EXPECT_EQ(chunks.store_calls, calls);
}

TEST_F(StagedFileTest, SequentialSmallReadsReadEachChunkOnce) {
  FakeChunks chunks(64 * kKiB);
  Bytes model = Pattern(4 * 64 * kKiB, 24);
  auto file = Open(chunks, chunks.StoreBytes(model));
  chunks.chunk_reads = 0;
  EXPECT_EQ(ReadAll(*file, 4096), model);
  EXPECT_EQ(chunks.chunk_reads, 4u);
}

TEST_F(StagedFileTest, StagingFileLeavesNothingBehind) {
  for (bool tmpfile : {true, false}) {
    SCOPED_TRACE(tmpfile ? "O_TMPFILE" : "named and unlinked");
    FakeChunks chunks(4 * kKiB);
    fs::path dir = dir_ / (tmpfile ? "a" : "b");
    fs::create_directories(dir);
    auto created = StagedFile::Create(dir, Manifest(), chunks.Reader(), tmpfile);
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    StagedFile& file = **created;
    EXPECT_TRUE(fs::is_empty(dir));
    Bytes data = Pattern(kMiB, 25);
    ASSERT_TRUE(file.Write(0, data).ok());
    EXPECT_TRUE(fs::is_empty(dir));
    auto usage = StagingFileUsage(dir);
    ASSERT_TRUE(usage.has_value());
    EXPECT_GE(usage->second, kMiB);
    // Truncating down frees the staged bytes past the new end.
    ASSERT_TRUE(file.Truncate(kMiB / 2).ok());
    usage = StagingFileUsage(dir);
    ASSERT_TRUE(usage.has_value());
    EXPECT_LE(usage->first, kMiB / 2);
    EXPECT_EQ(file.staged_bytes(), kMiB / 2);
    ASSERT_TRUE(file.Commit(chunks.Store()).ok());
    usage = StagingFileUsage(dir);
    ASSERT_TRUE(usage.has_value());
    EXPECT_EQ(usage->first, 0u);
    EXPECT_EQ(usage->second, 0u);
    EXPECT_EQ(file.staged_bytes(), 0u);
    created = Result<std::unique_ptr<StagedFile>>(Status::Io("closed"));
    EXPECT_TRUE(fs::is_empty(dir));
    EXPECT_FALSE(StagingFileUsage(dir).has_value());
  }
}

TEST_F(StagedFileTest, RejectsBadArguments) {
  FakeChunks chunks(4 * kKiB);
  auto file = Open(chunks, chunks.StoreBytes(Pattern(1000, 26)));
  Bytes one(1, 1);
  EXPECT_EQ(file->Write(StagedFile::kMaxSize, one).code(), ErrorCode::kFileTooLarge);
  EXPECT_EQ(file->Write(~std::uint64_t{0}, one).code(), ErrorCode::kFileTooLarge);
  EXPECT_EQ(file->Write(std::uint64_t{1} << 63, {}).code(), ErrorCode::kFileTooLarge);
  EXPECT_EQ(file->Truncate(std::uint64_t{1} << 63).code(), ErrorCode::kFileTooLarge);
  EXPECT_EQ(file->Truncate(StagedFile::kMaxSize + 1).code(), ErrorCode::kFileTooLarge);
  EXPECT_FALSE(file->dirty());
  EXPECT_EQ(file->size(), 1000u);
  Bytes buf(10);
  Result<std::size_t> n = file->Read(~std::uint64_t{0}, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);

  Manifest bad;
  bad.chunks.push_back({testing::TestChunkId(1), 100});
  bad.size = 99;
  EXPECT_EQ(StagedFile::Create(dir_.path(), bad, chunks.Reader()).status().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(StagedFile::Create(dir_ / "missing", Manifest(), chunks.Reader()).status().code(),
            ErrorCode::kNotFound);
  EXPECT_EQ(StagedFile::Create(dir_.path(), Manifest(), nullptr).status().code(),
            ErrorCode::kInvalidArgument);
}

TEST_F(StagedFileTest, BaseReadErrorReachesReader) {
  FakeChunks chunks(4 * kKiB);
  auto file = Open(chunks, chunks.StoreBytes(Pattern(10 * kKiB, 27)));
  chunks.fail_reads = true;
  Bytes buf(100);
  Result<std::size_t> n = file->Read(5000, buf);
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), ErrorCode::kIo);
  chunks.fail_reads = false;
  n = file->Read(5000, buf);
  EXPECT_TRUE(n.ok());
}

// A full staging file system: kNoSpace, and the file reads as before with
// at most the prefix of the write that landed (a short write).
TEST_F(StagedFileTest, FullStagingDiskIsNoSpace) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a 1 MiB tmpfs";
  fs::path small = dir_ / "small";
  testing::ScopedTmpfs tmpfs(small, "1m");
  if (!tmpfs.ok()) GTEST_SKIP() << "mount -t tmpfs failed";
  FakeChunks chunks(4 * kKiB);
  Bytes model = Pattern(10 * kKiB, 28);
  auto created = StagedFile::Create(small, chunks.StoreBytes(model), chunks.Reader());
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  StagedFile& file = **created;
  Bytes big = Pattern(4 * kMiB, 29);
  Status s = file.Write(2000, big);
  EXPECT_EQ(s.code(), ErrorCode::kNoSpace) << s.ToString();
  std::size_t landed = static_cast<std::size_t>(file.staged_bytes());
  EXPECT_LT(landed, big.size());
  if (model.size() < 2000 + landed) model.resize(2000 + landed, 0);
  std::copy(big.begin(), big.begin() + static_cast<std::ptrdiff_t>(landed), model.begin() + 2000);
  EXPECT_EQ(file.size(), model.size());
  EXPECT_EQ(ReadAll(file), model);
  // A commit empties the staging file; then writes fit again.
  Result<Manifest> m = file.Commit(chunks.Store());
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(chunks.Contents(*m), model);
  ASSERT_TRUE(file.Write(0, AsBytes("hello")).ok());
  std::memcpy(model.data(), "hello", 5);
  EXPECT_EQ(ReadAll(file), model);
}

}  // namespace
}  // namespace dfs::core
