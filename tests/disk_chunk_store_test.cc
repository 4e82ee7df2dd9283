// DiskChunkStore specifics: layout, damaged files, leftovers, junk, full disk.
#include "core/disk_chunk_store.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>

#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace dfs::core {
namespace {

namespace fs = std::filesystem;

ChunkId IdOf(std::uint8_t b) {
  std::array<std::uint8_t, ChunkId::kSize> a;
  a.fill(b);
  a[0] = 0xab;
  a[1] = 0xcd;
  a[2] = b;
  return ChunkId(a);
}

class DiskChunkStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    store_.reset();
    auto s = DiskChunkStore::Open(dir_ / "chunks");
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }
  Status GetStatus(const ChunkId& id) {
    Bytes out{1};
    Status s = store_->Get(id, &out);
    if (!s.ok()) {
      EXPECT_TRUE(out.empty()) << "failed Get left bytes in the buffer";
    }
    return s;
  }
  testing::TempDir dir_;
  std::unique_ptr<DiskChunkStore> store_;
};

TEST_F(DiskChunkStoreTest, ShardedLayout) {
  ChunkId id = IdOf(1);
  ASSERT_TRUE(store_->Put(id, AsBytes("x")).ok());
  fs::path want = dir_ / "chunks" / "ab" / "cd" / id.ToHex();
  EXPECT_EQ(store_->PathFor(id), want);
  EXPECT_TRUE(fs::is_regular_file(want));
  EXPECT_EQ(fs::file_size(want), 24u + 1);
}

TEST_F(DiskChunkStoreTest, DamagedFilesAreCorruptNeverWrongBytes) {
  Bytes data = testing::RandomBytes(100000, 1);
  struct Damage {
    const char* name;
    std::function<void(const fs::path&)> apply;
  };
  auto flip_at = [](std::streamoff off) {
    return [off](const fs::path& p) {
      std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
      f.seekg(off);
      char c;
      f.read(&c, 1);
      c = static_cast<char>(c ^ 0x10);
      f.seekp(off);
      f.write(&c, 1);
    };
  };
  const Damage cases[] = {
      {"flipped payload byte", flip_at(5000)},
      {"flipped header length", flip_at(9)},
      {"flipped magic", flip_at(0)},
      {"truncated", [](const fs::path& p) { fs::resize_file(p, fs::file_size(p) - 10); }},
      {"truncated into header", [](const fs::path& p) { fs::resize_file(p, 10); }},
      {"zero length", [](const fs::path& p) { fs::resize_file(p, 0); }},
      {"extra bytes", [](const fs::path& p) { std::ofstream(p, std::ios::app) << "tail"; }},
  };
  std::uint8_t n = 10;
  for (const Damage& d : cases) {
    ChunkId id = IdOf(n++);
    ASSERT_TRUE(store_->Put(id, data).ok());
    d.apply(store_->PathFor(id));
    Status s = GetStatus(id);
    EXPECT_EQ(s.code(), ErrorCode::kCorrupt) << d.name << ": " << s.ToString();
    EXPECT_NE(s.message().find(id.ToHex()), std::string::npos) << d.name << ": " << s.ToString();
  }
}

TEST_F(DiskChunkStoreTest, CallerAuthenticatedReadsStillCheckFraming) {
  Bytes data = testing::RandomBytes(50000, 3);
  ChunkId id = IdOf(40);
  ASSERT_TRUE(store_->Put(id, data).ok());
  Bytes out;
  ASSERT_TRUE(store_->Get(id, &out, ChunkStore::ReadCheck::kCallerAuthenticates).ok());
  EXPECT_EQ(out, data);
  fs::resize_file(store_->PathFor(id), 1000);
  EXPECT_EQ(store_->Get(id, &out, ChunkStore::ReadCheck::kCallerAuthenticates).code(),
            ErrorCode::kCorrupt);
  EXPECT_TRUE(out.empty());
}

// The saved fixture pins chunk file format v1 byte for byte.
TEST_F(DiskChunkStoreTest, ChunkFileMatchesTheSavedFixture) {
  const fs::path fixture = fs::path(DFS_FIXTURE_DIR) / "chunk_v1.bin";
  ChunkId id = IdOf(0x33);
  ASSERT_TRUE(store_->Put(id, AsBytes("dfs chunk file fixture v1")).ok());
  if (std::getenv("DFS_WRITE_FIXTURES") != nullptr) {
    testing::WriteFile(fixture, testing::ReadFile(store_->PathFor(id)));
  }
  EXPECT_EQ(testing::ReadFile(store_->PathFor(id)), testing::ReadFile(fixture));
  // And a store reads the saved file back.
  ChunkId other = IdOf(0x34);
  fs::create_directories(store_->PathFor(other).parent_path());
  fs::copy_file(fixture, store_->PathFor(other));
  Bytes out;
  ASSERT_TRUE(store_->Get(other, &out).ok());
  EXPECT_EQ(AsString(out), "dfs chunk file fixture v1");
}

TEST_F(DiskChunkStoreTest, LeftoverTempFilesAreRemovedOnOpen) {
  std::ofstream(dir_ / "chunks" / "tmp" / "partial.123.0") << "half a chunk";
  Reopen();
  EXPECT_TRUE(fs::is_empty(dir_ / "chunks" / "tmp"));
}

TEST_F(DiskChunkStoreTest, JunkIsIgnoredByForEach) {
  ASSERT_TRUE(store_->Put(IdOf(1), AsBytes("x")).ok());
  fs::path shard = dir_ / "chunks" / "ab" / "cd";
  std::ofstream(shard / "zz") << "junk";
  std::ofstream(shard / std::string(63, 'a')) << "junk";
  std::ofstream(shard / std::string(64, 'A')) << "junk";
  std::ofstream(shard / std::string(64, 'f')) << "wrong shard for this name";
  fs::create_directories(dir_ / "chunks" / "zz" / "..x");
  fs::create_directories(dir_ / "chunks" / "ab" / "cd" / std::string(64, 'b'));
  int seen = 0;
  ASSERT_TRUE(store_->ForEach([&](const ChunkId& id, std::uint64_t size) {
                      EXPECT_EQ(id, IdOf(1));
                      EXPECT_EQ(size, 1u);
                      ++seen;
                      return true;
                    }).ok());
  EXPECT_EQ(seen, 1);
}

TEST_F(DiskChunkStoreTest, ReopenSeesSameChunksAndUsage) {
  for (std::uint8_t i = 1; i <= 5; ++i) ASSERT_TRUE(store_->Put(IdOf(i), Bytes(i, i)).ok());
  ASSERT_TRUE(store_->Sync().ok());
  Reopen();
  auto u = store_->Usage();
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->chunks, 5u);
  EXPECT_EQ(u->bytes, 15u);
  Bytes out;
  ASSERT_TRUE(store_->Get(IdOf(3), &out).ok());
  EXPECT_EQ(out, Bytes(3, 3));
}

TEST_F(DiskChunkStoreTest, FullDiskIsNoSpaceAndLeavesNoTempFiles) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a 1 MiB tmpfs";
  fs::path small = dir_ / "small";
  testing::ScopedTmpfs tmpfs(small, "1m");
  ASSERT_TRUE(tmpfs.ok());
  auto opened = DiskChunkStore::Open(small / "chunks");
  ASSERT_TRUE(opened.ok());
  auto& store = **opened;
  Bytes data = testing::RandomBytes(100000, 2);
  Status s;
  std::uint8_t n = 0;
  std::vector<ChunkId> stored;
  for (; n < 100 && s.ok(); ++n) {
    s = store.Put(IdOf(n), data);
    if (s.ok()) stored.push_back(IdOf(n));
  }
  ASSERT_FALSE(s.ok()) << "a 1 MiB tmpfs took 10 MB";
  EXPECT_EQ(s.code(), ErrorCode::kNoSpace) << s.ToString();
  EXPECT_TRUE(fs::is_empty(small / "chunks" / "tmp"));
  ASSERT_FALSE(stored.empty());
  for (const ChunkId& id : stored) {
    Bytes out;
    ASSERT_TRUE(store.Get(id, &out).ok());
    EXPECT_EQ(out, data);
  }
}

}  // namespace
}  // namespace dfs::core
