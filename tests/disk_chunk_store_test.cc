// DiskChunkStore specifics: layout, damaged files, leftovers, junk, reopen,
// full disk. What every store must do is in chunk_store_conformance_test.cc.
#include "core/disk_chunk_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace dfs::core {
namespace {

namespace fs = std::filesystem;

// Ids in the shard ab/cd, told apart by byte 2 (and the filler).
ChunkId IdOf(std::uint8_t b) {
  std::array<std::uint8_t, ChunkId::kSize> a;
  a.fill(b);
  a[0] = 0xab;
  a[1] = 0xcd;
  a[2] = b;
  return ChunkId(a);
}

int ModeOf(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return static_cast<int>(st.st_mode & 07777);
}

class DiskChunkStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void Reopen() {
    store_.reset();
    auto s = DiskChunkStore::Open(root());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }
  fs::path root() const { return dir_ / "chunks"; }
  // Get into a non-empty buffer; a failed Get must leave it empty.
  Status GetStatus(const ChunkId& id,
                   ChunkStore::ReadCheck check = ChunkStore::ReadCheck::kChecksum) {
    Bytes out{1};
    Status s = store_->Get(id, &out, check);
    if (!s.ok()) {
      EXPECT_TRUE(out.empty()) << "failed Get left bytes in the buffer";
    }
    return s;
  }
  testing::TempDir dir_;
  std::unique_ptr<DiskChunkStore> store_;
};

TEST_F(DiskChunkStoreTest, ShardedLayoutAndModes) {
  ChunkId id = IdOf(1);
  ASSERT_TRUE(store_->Put(id, AsBytes("x")).ok());
  fs::path want = root() / "ab" / "cd" / id.ToHex();
  EXPECT_EQ(store_->PathFor(id), want);
  EXPECT_TRUE(fs::is_regular_file(want));
  EXPECT_EQ(fs::file_size(want), 24u + 1);
  EXPECT_EQ(ModeOf(want), 0600);
  EXPECT_EQ(ModeOf(root()), 0700);
  EXPECT_EQ(ModeOf(root() / "tmp"), 0700);
  EXPECT_EQ(ModeOf(root() / "ab"), 0700);
  EXPECT_TRUE(fs::is_empty(root() / "tmp"));
  ASSERT_TRUE(store_->Sync().ok());
}

TEST_F(DiskChunkStoreTest, DamagedFilesAreCorruptAndSayWhat) {
  Bytes data = testing::RandomBytes(100000, 1);
  struct Damage {
    const char* name;
    std::function<void(const fs::path&)> apply;
    const char* says;  // in the message
  };
  auto flip_at = [](std::streamoff off) { return [off](const fs::path& p) { testing::FlipByte(p, off); }; };
  const Damage cases[] = {
      {"flipped payload byte", flip_at(5000), "payload checksum mismatch"},
      {"flipped last payload byte", flip_at(24 + 99999), "payload checksum mismatch"},
      {"flipped magic", flip_at(0), "bad magic"},
      {"flipped version", flip_at(4), "header checksum mismatch"},
      {"flipped reserved byte", flip_at(6), "header checksum mismatch"},
      {"flipped header length", flip_at(9), "header checksum mismatch"},
      {"flipped payload crc", flip_at(17), "header checksum mismatch"},
      {"flipped header crc", flip_at(22), "header checksum mismatch"},
      {"truncated", [](const fs::path& p) { fs::resize_file(p, fs::file_size(p) - 10); },
       "truncated"},
      {"truncated into header", [](const fs::path& p) { fs::resize_file(p, 10); }, "truncated"},
      {"header only", [](const fs::path& p) { fs::resize_file(p, 24); }, "truncated"},
      {"zero length", [](const fs::path& p) { fs::resize_file(p, 0); }, "truncated"},
      {"extra bytes", [](const fs::path& p) { std::ofstream(p, std::ios::app) << "tail"; },
       "extra bytes"},
      {"huge sparse file", [](const fs::path& p) { fs::resize_file(p, std::uint64_t{1} << 30); },
       "larger than any chunk"},
      {"a directory",
       [](const fs::path& p) {
         fs::remove(p);
         fs::create_directory(p);
       },
       "not a regular file"},
      {"a symlink",
       [](const fs::path& p) {
         fs::remove(p);
         fs::create_symlink("../x", p);
       },
       "symbolic link"},
  };
  std::uint8_t n = 10;
  for (const Damage& d : cases) {
    ChunkId id = IdOf(n++);
    ASSERT_TRUE(store_->Put(id, data).ok());
    d.apply(store_->PathFor(id));
    Status s = GetStatus(id);
    EXPECT_EQ(s.code(), ErrorCode::kCorrupt) << d.name << ": " << s.ToString();
    EXPECT_NE(s.message().find(id.ToHex()), std::string::npos) << d.name << ": " << s.ToString();
    EXPECT_NE(s.message().find(d.says), std::string::npos) << d.name << ": " << s.ToString();
  }
}

// Every single-byte flip of the header, and a sweep over the payload, is
// caught: a damaged chunk is never served as good bytes.
// Both read paths: a small chunk is read buffered, a large one with O_DIRECT.
TEST_F(DiskChunkStoreTest, NoSingleByteFlipIsServed) {
  for (std::size_t size : {std::size_t{4096}, std::size_t{300000}}) {
  SCOPED_TRACE(size);
  Bytes data = testing::RandomBytes(size, 9);
  ChunkId id = IdOf(size > 4096 ? 51 : 50);
  ASSERT_TRUE(store_->Put(id, data).ok());
  const fs::path path = store_->PathFor(id);
  const Bytes good = testing::ReadFile(path);
  for (std::size_t off = 0; off < good.size(); off += off < 24 ? 1 : 97 * (size / 4096)) {
    testing::FlipByte(path, static_cast<std::streamoff>(off));
    EXPECT_EQ(GetStatus(id).code(), ErrorCode::kCorrupt) << "flip at " << off;
    if (off < 24) {  // the framing is checked even when the caller authenticates
      EXPECT_EQ(GetStatus(id, ChunkStore::ReadCheck::kCallerAuthenticates).code(),
                ErrorCode::kCorrupt)
          << "flip at " << off;
    }
    testing::FlipByte(path, static_cast<std::streamoff>(off));
  }
  Bytes out;
  ASSERT_TRUE(store_->Get(id, &out).ok());
  EXPECT_EQ(out, data);
  }
}

// Pages of `path` in the page cache.
std::size_t CachedPages(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return SIZE_MAX;
  const std::size_t size = fs::file_size(path);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return SIZE_MAX;
  std::vector<unsigned char> resident((size + 4095) / 4096);
  std::size_t n = SIZE_MAX;
  if (::mincore(map, size, resident.data()) == 0) {
    n = static_cast<std::size_t>(std::count_if(resident.begin(), resident.end(),
                                               [](unsigned char r) { return (r & 1) != 0; }));
  }
  ::munmap(map, size);
  return n;
}

// A large chunk is read past the page cache (O_DIRECT): reading a file
// through the mount then holds its bytes once (the mount's pages), not twice.
// A read hinted kReused (random access) goes through the page cache.
TEST_F(DiskChunkStoreTest, LargeChunksAreReadPastThePageCache) {
  Bytes data = testing::RandomBytes(1 << 20, 12);
  ChunkId id = IdOf(60);
  ASSERT_TRUE(store_->Put(id, data).ok());
  const fs::path path = store_->PathFor(id);
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT);
  if (fd < 0) GTEST_SKIP() << "skipped: this file system has no O_DIRECT (" << path << ")";
  ::close(fd);
  fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::fsync(fd), 0);  // (the tail block was written buffered)
  ASSERT_EQ(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
  ::close(fd);
  ASSERT_EQ(CachedPages(path), 0u);
  for (auto check : {ChunkStore::ReadCheck::kChecksum, ChunkStore::ReadCheck::kCallerAuthenticates}) {
    Bytes out;
    ASSERT_TRUE(store_->Get(id, &out, check).ok());
    EXPECT_TRUE(out == data);
    Bytes scratch;
    ASSERT_TRUE(store_
                    ->View(id, check, ChunkStore::ReadHint::kStreaming, &scratch,
                           [&](ByteSpan b) {
                             EXPECT_TRUE(Bytes(b.begin(), b.end()) == data);
                             return Status::Ok();
                           })
                    .ok());
  }
  EXPECT_EQ(CachedPages(path), 0u);
  Bytes scratch;
  ASSERT_TRUE(store_
                  ->View(id, ChunkStore::ReadCheck::kCallerAuthenticates,
                         ChunkStore::ReadHint::kReused, &scratch,
                         [&](ByteSpan b) {
                           EXPECT_TRUE(Bytes(b.begin(), b.end()) == data);
                           return Status::Ok();
                         })
                  .ok());
  EXPECT_EQ(CachedPages(path), fs::file_size(path) / 4096 + 1);
}

TEST_F(DiskChunkStoreTest, CallerAuthenticatedReadsStillCheckFraming) {
  Bytes data = testing::RandomBytes(50000, 3);
  ChunkId id = IdOf(40);
  ASSERT_TRUE(store_->Put(id, data).ok());
  Bytes out;
  ASSERT_TRUE(store_->Get(id, &out, ChunkStore::ReadCheck::kCallerAuthenticates).ok());
  EXPECT_EQ(out, data);
  fs::resize_file(store_->PathFor(id), 1000);
  EXPECT_EQ(GetStatus(id, ChunkStore::ReadCheck::kCallerAuthenticates).code(), ErrorCode::kCorrupt);
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

TEST_F(DiskChunkStoreTest, SecondPutDoesNotRewrite) {
  ChunkId id = IdOf(2);
  ASSERT_TRUE(store_->Put(id, AsBytes("same")).ok());
  struct stat before {};
  ASSERT_EQ(::stat(store_->PathFor(id).c_str(), &before), 0);
  ASSERT_TRUE(store_->Put(id, AsBytes("same")).ok());
  struct stat after {};
  ASSERT_EQ(::stat(store_->PathFor(id).c_str(), &after), 0);
  EXPECT_EQ(before.st_ino, after.st_ino);
  EXPECT_TRUE(fs::is_empty(root() / "tmp"));
}

// A file at the chunk's path that is not an intact copy (say, empty after a
// power loss hit a chunk that was renamed but never synced) is replaced.
TEST_F(DiskChunkStoreTest, PutReplacesADamagedCopy) {
  Bytes data = testing::RandomBytes(3000, 4);
  ChunkId id = IdOf(3);
  ASSERT_TRUE(store_->Put(id, data).ok());
  EXPECT_EQ(store_->Usage()->bytes, 3000u);
  fs::resize_file(store_->PathFor(id), 0);
  Reopen();  // the damage comes with a crash; the usage scan sees it
  ASSERT_EQ(GetStatus(id).code(), ErrorCode::kCorrupt);
  EXPECT_EQ(store_->Usage()->bytes, 0u);
  ASSERT_TRUE(store_->Put(id, data).ok());
  Bytes out;
  ASSERT_TRUE(store_->Get(id, &out).ok());
  EXPECT_EQ(out, data);
  EXPECT_EQ(store_->Usage()->chunks, 1u);
  EXPECT_EQ(store_->Usage()->bytes, 3000u);
}

TEST_F(DiskChunkStoreTest, LeftoverTempFilesAreRemovedOnOpen) {
  ChunkId id = IdOf(7);
  std::ofstream(root() / "tmp" / (id.ToHex() + ".123.0")) << "half a chunk";
  std::ofstream(root() / "tmp" / "anything") << "x";
  Reopen();
  EXPECT_TRUE(fs::is_empty(root() / "tmp"));
  EXPECT_FALSE(*store_->Has(id));
  EXPECT_EQ(store_->Usage()->chunks, 0u);
}

TEST_F(DiskChunkStoreTest, OpenRefusesAFileAsRoot) {
  testing::WriteFile(dir_ / "file", AsBytes("not a directory"));
  auto opened = DiskChunkStore::Open(dir_ / "file");
  EXPECT_FALSE(opened.ok());
}

TEST_F(DiskChunkStoreTest, JunkIsIgnoredByForEach) {
  ChunkId id = IdOf(1);
  ASSERT_TRUE(store_->Put(id, AsBytes("x")).ok());
  const fs::path shard = root() / "ab" / "cd";
  const std::string hex = id.ToHex();
  std::string upper = IdOf(2).ToHex();
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::ofstream(shard / "zz") << "junk";
  std::ofstream(shard / std::string(63, 'a')) << "junk";
  std::ofstream(shard / std::string(65, 'a')) << "junk";
  std::ofstream(shard / upper) << "uppercase hex";
  std::ofstream(shard / (hex.substr(0, 63) + "g")) << "not hex";
  std::ofstream(shard / (IdOf(4).ToHex() + ".tmp")) << "suffix";
  std::ofstream(shard / std::string(64, 'f')) << "valid id, wrong shard";
  fs::create_directories(shard / IdOf(5).ToHex());      // a directory named like a chunk
  fs::create_symlink("../x", shard / IdOf(6).ToHex());  // a symlink named like one
  fs::create_directories(root() / "zz" / "..x");
  fs::create_directories(root() / "AB" / "CD");
  fs::create_directories(root() / "ab" / "c");
  std::ofstream(root() / "ef") << "a file where a shard directory would be";
  std::ofstream(root() / "ab" / "ce") << "a file where a shard directory would be";
  std::ofstream(root() / "tmp" / hex) << "temporary files are not chunks";
  int seen = 0;
  ASSERT_TRUE(store_
                  ->ForEach([&](const ChunkId& got, std::uint64_t size) {
                    EXPECT_EQ(got, id);
                    EXPECT_EQ(size, 1u);
                    ++seen;
                    return true;
                  })
                  .ok());
  EXPECT_EQ(seen, 1);
  auto u = store_->Usage();
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->chunks, 1u);
}

TEST_F(DiskChunkStoreTest, ReopenSeesSameChunksAndUsage) {
  for (std::uint8_t i = 1; i <= 5; ++i) ASSERT_TRUE(store_->Put(IdOf(i), Bytes(i, i)).ok());
  ASSERT_TRUE(store_->Remove(IdOf(4)).ok());
  ASSERT_TRUE(store_->Sync().ok());
  Reopen();
  auto u = store_->Usage();
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->chunks, 4u);
  EXPECT_EQ(u->bytes, 11u);
  for (std::uint8_t i = 1; i <= 5; ++i) {
    Bytes out;
    Status s = store_->Get(IdOf(i), &out);
    if (i == 4) {
      EXPECT_EQ(s.code(), ErrorCode::kNotFound);
    } else {
      ASSERT_TRUE(s.ok()) << s.ToString();
      EXPECT_EQ(out, Bytes(i, i));
    }
  }
  // The counters keep running after the scan.
  ASSERT_TRUE(store_->Put(IdOf(9), Bytes(9, 9)).ok());
  EXPECT_EQ(store_->Usage()->chunks, 5u);
  EXPECT_EQ(store_->Usage()->bytes, 20u);
}

// Many chunks in many shards between two Syncs (the syncfs path), then
// removals; Sync succeeds each time and nothing is lost.
TEST_F(DiskChunkStoreTest, SyncAfterManyPutsAndRemoves) {
  std::vector<ChunkId> ids;
  for (std::uint32_t i = 0; i < 100; ++i) ids.push_back(testing::TestChunkId(i * 2654435761u));
  for (const ChunkId& id : ids) ASSERT_TRUE(store_->Put(id, id.bytes()).ok());
  ASSERT_TRUE(store_->Sync().ok());
  for (std::size_t i = 0; i < ids.size(); i += 2) ASSERT_TRUE(store_->Remove(ids[i]).ok());
  ASSERT_TRUE(store_->Sync().ok());
  ASSERT_TRUE(store_->Sync().ok());  // nothing pending
  Reopen();
  EXPECT_EQ(store_->Usage()->chunks, 50u);
  Bytes out;
  ASSERT_TRUE(store_->Get(ids[1], &out).ok());
  EXPECT_EQ(out, Bytes(ids[1].bytes().begin(), ids[1].bytes().end()));
}

TEST_F(DiskChunkStoreTest, OversizedPutIsRefused) {
  Bytes big((std::size_t{65} << 20), 0);
  Status s = store_->Put(IdOf(8), big);
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument) << s.ToString();
  EXPECT_FALSE(*store_->Has(IdOf(8)));
  EXPECT_TRUE(fs::is_empty(root() / "tmp"));
}

// Chunks of 64 KiB and more are written with O_DIRECT from a padded,
// block-aligned buffer and then cut to size; smaller ones are buffered.
// Sizes on both sides of each edge come back whole, files hold exactly
// header + payload, and a reopened store agrees.
TEST_F(DiskChunkStoreTest, SizesAroundTheDirectWriteEdgesRoundTrip) {
  const std::vector<std::size_t> sizes = {0,         1,         4071,      4072,
                                          4073,      65535,     65536,     65537,
                                          1 << 20,   (1 << 20) + 4073, (4 << 20) + 32,
                                          8 << 20,   (8 << 20) + 1};
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const Bytes data = testing::RandomBytes(sizes[i], 100 + i);
    const ChunkId id = IdOf(static_cast<std::uint8_t>(i));
    ASSERT_TRUE(store_->Put(id, data).ok()) << sizes[i];
    EXPECT_EQ(fs::file_size(root() / "ab" / "cd" / id.ToHex()), sizes[i] + 24) << sizes[i];
    total += sizes[i];
  }
  ASSERT_TRUE(store_->Sync().ok());
  Reopen();
  EXPECT_EQ(store_->Usage()->chunks, sizes.size());
  EXPECT_EQ(store_->Usage()->bytes, total);
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    Bytes out;
    ASSERT_TRUE(store_->Get(IdOf(static_cast<std::uint8_t>(i)), &out).ok()) << sizes[i];
    EXPECT_EQ(out, testing::RandomBytes(sizes[i], 100 + i)) << sizes[i];
  }
  EXPECT_TRUE(fs::is_empty(root() / "tmp"));
}

// Whether files under `dir` can be opened with O_DIRECT (not on tmpfs).
bool DirectIoWorks(const fs::path& dir) {
  const fs::path probe = dir / "direct-probe";
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  ::close(fd);
  ::unlink(probe.c_str());
  return true;
}

TEST_F(DiskChunkStoreTest, BytesBuiltInTheLentBufferAreStoredWithoutACopy) {
  // Outside the direct-write sizes there is nothing to lend.
  EXPECT_TRUE(store_->PutBuffer(100).empty());
  EXPECT_TRUE(store_->PutBuffer((64 << 20)).empty());
  if (!DirectIoWorks(dir_.path())) GTEST_SKIP() << "no O_DIRECT on " << dir_.path();
  const std::vector<std::size_t> sizes = {65536, 65536 + 4072, 65536 + 4073, (1 << 20) + 4073,
                                          (4 << 20) + 32, 8 << 20};
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    MutableByteSpan lent = store_->PutBuffer(sizes[i]);
    ASSERT_EQ(lent.size(), sizes[i]);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(lent.data() - 24) % 4096, 0u)
        << "the header and payload start on a block";
    const Bytes data = testing::RandomBytes(sizes[i], 200 + i);
    std::memcpy(lent.data(), data.data(), data.size());
    const ChunkId id = IdOf(static_cast<std::uint8_t>(i));
    ASSERT_TRUE(store_->Put(id, lent).ok()) << sizes[i];
    EXPECT_EQ(fs::file_size(root() / "ab" / "cd" / id.ToHex()), sizes[i] + 24) << sizes[i];
    Bytes out;
    ASSERT_TRUE(store_->Get(id, &out).ok()) << sizes[i];
    EXPECT_EQ(out, data) << sizes[i];
  }
  // A lent buffer passed to another size's Put, or a Put of other bytes,
  // still stores exactly what it was given.
  MutableByteSpan lent = store_->PutBuffer(1 << 20);
  const Bytes data = testing::RandomBytes(1 << 20, 300);
  std::memcpy(lent.data(), data.data(), data.size());
  ASSERT_TRUE(store_->Put(IdOf(40), lent.first(100000)).ok());
  Bytes out;
  ASSERT_TRUE(store_->Get(IdOf(40), &out).ok());
  EXPECT_EQ(out, Bytes(data.begin(), data.begin() + 100000));
  ASSERT_TRUE(store_->Sync().ok());
  Reopen();
  EXPECT_EQ(store_->Usage()->chunks, sizes.size() + 1);
}

TEST_F(DiskChunkStoreTest, FullDiskIsNoSpaceAndLeavesNoTempFiles) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a 1 MiB tmpfs";
  fs::path small = dir_ / "small";
  testing::ScopedTmpfs tmpfs(small, "1m");  // unmounted on every way out
  if (!tmpfs.ok()) GTEST_SKIP() << "mount -t tmpfs failed (no CAP_SYS_ADMIN in this container?)";
  auto opened = DiskChunkStore::Open(small / "chunks");
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  DiskChunkStore& store = **opened;
  Bytes data = testing::RandomBytes(100000, 2);
  Status s;
  std::vector<ChunkId> stored;
  ChunkId failed;
  for (std::uint8_t n = 0; n < 100 && s.ok(); ++n) {
    s = store.Put(IdOf(n), data);
    if (s.ok()) {
      stored.push_back(IdOf(n));
    } else {
      failed = IdOf(n);
    }
  }
  ASSERT_FALSE(s.ok()) << "a 1 MiB tmpfs took 10 MB";
  EXPECT_EQ(s.code(), ErrorCode::kNoSpace) << s.ToString();
  EXPECT_TRUE(fs::is_empty(small / "chunks" / "tmp"));
  EXPECT_FALSE(*store.Has(failed));
  ASSERT_FALSE(stored.empty());
  for (const ChunkId& id : stored) {
    Bytes out;
    ASSERT_TRUE(store.Get(id, &out).ok());
    EXPECT_EQ(out, data);
  }
  EXPECT_EQ(store.Usage()->chunks, stored.size());
  // Freeing space makes room again.
  ASSERT_TRUE(store.Remove(stored.back()).ok());
  ASSERT_TRUE(store.Remove(stored.front()).ok());
  ASSERT_TRUE(store.Put(failed, data).ok());
  ASSERT_TRUE(store.Sync().ok());
}

}  // namespace
}  // namespace dfs::core
