// The POSIX behaviour of dfsmount's read-write mount, through /dev/fuse
// with a real dfsmount process per test (skipped, saying why, without FUSE
// or root; the fixture is tests/mount_fixture.h). PosixMountTest, one
// behaviour per test, for what editors, shells and tools do to the contents
// of files: saves by rename, appends, a new file's first bytes, truncates,
// sparse, unlinked-but-open and mmap'ed files, parallel writers, copies, and
// writes past the largest offset.
// Several tests remount (a new dfsmount on the same data) and check again:
// what was written is stored, not only in the kernel's page cache.
// (tests/mount_posix_tree_test.cc holds the PosixMountTest cases of names,
// links, modes, times and extended attributes; tests/mount_workload_test.cc
// git, tar and sqlite3; tests/mount_model_test.cc the randomized model;
// tests/mount_test.cc mounting, background start and peers.)
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/mount_fixture.h"
#include "tests/test_util.h"

namespace dfs {
namespace {

using namespace testing_mount;  // also brings fs (std::filesystem) and the chrono literals

using PosixMountTest = MountFixture;

TEST_F(PosixMountTest, AnEditorSaveReplacesTheFileKeepingItsModeAndLeavesNoTemporaries) {
  std::string doc = P("notes.txt"), swp = P(".notes.txt.swp"), tmp = P("notes.txt.4913");
  ASSERT_NO_FATAL_FAILURE(Put(doc, "first version\n", 0640));
  int reader = ::open(doc.c_str(), O_RDONLY);  // someone reading the old text
  ASSERT_GE(reader, 0);

  // The swap file, written as the editing goes on.
  int sfd = ::open(swp.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(sfd, 0) << std::strerror(errno);
  std::string block(4096, 'S');
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(::pwrite(sfd, block.data(), block.size(), i * 4096), 4096);
  }
  ASSERT_EQ(::pwrite(sfd, "b0VIM 9.0", 9, 0), 9);
  ASSERT_EQ(::fsync(sfd), 0) << std::strerror(errno);

  // Save: a temporary next to the original, the original's mode, fsync,
  // then renamed over the original.
  std::string text = "second version\nwith two lines\n";
  int tfd = ::open(tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
  ASSERT_GE(tfd, 0) << std::strerror(errno);
  ASSERT_EQ(::write(tfd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ASSERT_EQ(::fchmod(tfd, 0640), 0);
  ASSERT_EQ(::fsync(tfd), 0) << std::strerror(errno);
  ASSERT_EQ(::close(tfd), 0) << std::strerror(errno);
  ASSERT_EQ(::rename(tmp.c_str(), doc.c_str()), 0) << std::strerror(errno);
  // Quit: the swap file goes.
  EXPECT_EQ(::close(sfd), 0);
  ASSERT_EQ(::unlink(swp.c_str()), 0) << std::strerror(errno);

  EXPECT_EQ(ReadAll(doc), text);
  struct stat st = Lstat(doc);
  EXPECT_EQ(st.st_mode, S_IFREG | 0640);
  EXPECT_EQ(st.st_nlink, 1u);
  EXPECT_EQ(st.st_size, static_cast<off_t>(text.size()));
  EXPECT_EQ(List(mnt_.string()), std::vector<std::string>{"notes.txt"});
  // The directory is synced too, as careful editors do.
  int dfd = ::open(mnt_.c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(dfd, 0);
  EXPECT_EQ(::fsync(dfd), 0) << std::strerror(errno);
  ::close(dfd);
  // The reader still has the replaced version, which has no name left.
  struct stat old {};
  ASSERT_EQ(::fstat(reader, &old), 0);
  EXPECT_EQ(old.st_nlink, 0u);
  char buf[64] = {};
  EXPECT_EQ(::pread(reader, buf, sizeof(buf), 0), 14);
  EXPECT_EQ(std::string(buf), "first version\n");
  ::close(reader);

  // The other way editors save: the original renamed to a backup, written
  // anew, the backup removed.
  ASSERT_EQ(::rename(doc.c_str(), P("notes.txt~").c_str()), 0);
  int fd = ::open(doc.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0640);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "third\n", 6), 6);
  ASSERT_EQ(::fsync(fd), 0);
  ASSERT_EQ(::close(fd), 0);
  EXPECT_EQ(ReadAll(P("notes.txt~")), text);
  ASSERT_EQ(::unlink(P("notes.txt~").c_str()), 0);
  EXPECT_EQ(ReadAll(doc), "third\n");
  EXPECT_EQ(Lstat(doc).st_mode, S_IFREG | 0640);
  EXPECT_EQ(List(mnt_.string()), std::vector<std::string>{"notes.txt"});
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(ReadAll(doc), "third\n");
  EXPECT_EQ(Lstat(doc).st_mode, S_IFREG | 0640);
  EXPECT_EQ(List(mnt_.string()), std::vector<std::string>{"notes.txt"});
}

TEST_F(PosixMountTest, AppendsFromTwoDescriptorsAllLandAtTheEndInOrder) {
  std::string f = P("log");
  int a = ::open(f.c_str(), O_CREAT | O_WRONLY | O_APPEND, 0644);
  int b = ::open(f.c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  std::string want;
  for (int i = 0; i < 40; ++i) {
    std::string line = fmt::format("line {} from {}\n", i, i % 2 ? 'a' : 'b');
    ASSERT_EQ(::write(i % 2 ? a : b, line.data(), line.size()), static_cast<ssize_t>(line.size()));
    want += line;
  }
  ASSERT_EQ(::lseek(a, 0, SEEK_SET), 0);  // O_APPEND ignores the offset
  ASSERT_EQ(::write(a, "end\n", 4), 4);
  want += "end\n";
  struct stat st {};
  ASSERT_EQ(::fstat(b, &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(want.size()));
  EXPECT_EQ(::close(a), 0);
  EXPECT_EQ(::close(b), 0);
  EXPECT_EQ(ReadAll(f), want);

  // A later `>>` appends to what is there.
  int c = ::open(f.c_str(), O_WRONLY | O_APPEND);
  ASSERT_EQ(::write(c, "more\n", 5), 5);
  EXPECT_EQ(::close(c), 0);
  EXPECT_EQ(ReadAll(f), want + "more\n");

  // Large appends, alternating, across chunk boundaries.
  std::string g = P("big");
  a = ::open(g.c_str(), O_CREAT | O_WRONLY | O_APPEND, 0644);
  b = ::open(g.c_str(), O_WRONLY | O_APPEND);
  std::string big;
  for (int i = 0; i < 6; ++i) {
    std::string part = Str(testing::RandomBytes((1 << 20) + 777 * i, 100 + i));
    ASSERT_EQ(::write(i % 2 ? a : b, part.data(), part.size()), static_cast<ssize_t>(part.size()));
    big += part;
  }
  EXPECT_EQ(::close(a), 0);
  EXPECT_EQ(::close(b), 0);
  EXPECT_TRUE(ReadAll(g) == big);
  EXPECT_EQ(Lstat(g).st_size, static_cast<off_t>(big.size()));
}

// fio's order: extend an empty file with ftruncate, then write it from the
// start in large blocks (streamed, not staged). The size the truncate set
// stays where the writes stop short of it; writes past it grow the file.
// A new file's first bytes, written in order, wait in memory until close
// (or until there are enough to stream): every view of the file sees them
// meanwhile, and any other access carries on from them.
TEST_F(PosixMountTest, ANewFilesFirstBytesAreSeenEverywhereBeforeClose) {
  const std::string data = Str(testing::RandomBytes(300000, 21));
  std::string f = P("head");
  int fd = ::open(f.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, data.data(), 1000), 1000);
  ASSERT_EQ(::write(fd, data.data() + 1000, 3000), 3000);
  EXPECT_EQ(Lstat(f).st_size, 4000);
  EXPECT_TRUE(ReadAll(f) == data.substr(0, 4000)) << "a second open reads them";
  ASSERT_EQ(::write(fd, data.data() + 4000, 1000), 1000);  // staged now: goes on
  ASSERT_EQ(::close(fd), 0);
  EXPECT_TRUE(ReadAll(f) == data.substr(0, 5000));

  // Many small writes in order: past the stream size they upload as they go.
  std::string g = P("many");
  fd = ::open(g.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  for (std::size_t off = 0; off < data.size(); off += 4096) {
    std::size_t n = std::min<std::size_t>(4096, data.size() - off);
    ASSERT_EQ(::write(fd, data.data() + off, n), static_cast<ssize_t>(n));
  }
  ASSERT_EQ(::fsync(fd), 0);
  ASSERT_EQ(::close(fd), 0);
  EXPECT_EQ(static_cast<std::size_t>(Lstat(g).st_size), data.size());
  EXPECT_TRUE(ReadAll(g) == data);

  // O_TRUNC from another open drops what the first had not committed yet;
  // the first's next write lands at its own offset, after a hole.
  std::string h = P("trunc");
  fd = ::open(h.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "abcdef", 6), 6);
  int fd2 = ::open(h.c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd2, 0);
  EXPECT_EQ(Lstat(h).st_size, 0);
  ASSERT_EQ(::write(fd, "gh", 2), 2);
  ASSERT_EQ(::close(fd2), 0);
  ASSERT_EQ(::close(fd), 0);
  EXPECT_EQ(ReadAll(h), std::string(6, '\0') + "gh");
}

TEST_F(PosixMountTest, AFileExtendedByTruncateThenWrittenInOrderKeepsItsSizeAndBytes) {
  const std::string data = Str(testing::RandomBytes(3 << 20, 11));
  for (std::size_t extend : {std::size_t{8} << 20, std::size_t{1} << 20}) {
    std::string f = P("fio-" + std::to_string(extend));
    int fd = ::open(f.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(extend)), 0);
    for (std::size_t off = 0; off < data.size(); off += 1 << 20) {
      ASSERT_EQ(::pwrite(fd, data.data() + off, 1 << 20, static_cast<off_t>(off)), 1 << 20);
      struct stat st {};
      ASSERT_EQ(::fstat(fd, &st), 0);
      EXPECT_EQ(static_cast<std::size_t>(st.st_size), std::max(extend, off + (1 << 20)));
    }
    ASSERT_EQ(::fsync(fd), 0);
    ASSERT_EQ(::close(fd), 0);
    const std::size_t size = std::max(extend, data.size());
    EXPECT_EQ(static_cast<std::size_t>(Lstat(f).st_size), size);
    EXPECT_TRUE(ReadAll(f) == data + std::string(size - data.size(), '\0'));
  }
  // A read in the middle of such a stream sees the bytes so far and the
  // hole after them; writing then goes on.
  std::string f = P("fio-read");
  int fd = ::open(f.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 4 << 20), 0);
  ASSERT_EQ(::pwrite(fd, data.data(), 1 << 20, 0), 1 << 20);
  std::string back(8192, 'x');
  ASSERT_EQ(::pread(fd, back.data(), back.size(), (1 << 20) - 4096), 8192);
  EXPECT_TRUE(back == data.substr((1 << 20) - 4096, 4096) + std::string(4096, '\0'));
  ASSERT_EQ(::pwrite(fd, data.data() + (1 << 20), 1 << 20, 1 << 20), 1 << 20);
  ASSERT_EQ(::close(fd), 0);
  EXPECT_TRUE(ReadAll(f) == data.substr(0, 2 << 20) + std::string(2 << 20, '\0'));
}

// Regular files under the chunk store of the mount's node.
std::size_t ChunkFiles(const fs::path& data) {
  std::size_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(data / "chunks")) {
    if (e.is_regular_file()) ++n;
  }
  return n;
}

// Whether `needle` occurs in any file under `dir`.
bool AnyFileHolds(const fs::path& dir, const std::string& needle) {
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && Str(testing::ReadFile(e.path())).find(needle) != std::string::npos) {
      return true;
    }
  }
  return false;
}

// A new file of at most 4 KiB is sealed into its manifest: no chunk file,
// and no plaintext of it in the node's directory. Grown past that, or
// written to again, its bytes go to a chunk like any file's.
TEST_F(PosixMountTest, SmallFilesAreSealedIntoTheTreeAndGrowIntoChunks) {
  const fs::path data = dir_ / "data";
  std::size_t before = ChunkFiles(data);
  testing::RunResult r = Sh(
      "cd \"$1\" && for i in $(seq 50); do echo \"inline-marker-$i\" > s$i; done && "
      "head -c 4096 /dev/zero | tr '\\0' q > edge && head -c 4097 /dev/zero | tr '\\0' r > over");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadAll(P("s7")), "inline-marker-7\n");
  EXPECT_EQ(ReadAll(P("edge")), std::string(4096, 'q'));
  EXPECT_EQ(ChunkFiles(data), before + 1) << "only the 4097-byte file has a chunk";

  // Extended by truncate, then its first bytes written: a chunk and a hole.
  std::string t = P("extended");
  int fd = ::open(t.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 1 << 20), 0);
  ASSERT_EQ(::write(fd, "abc", 3), 3);
  ASSERT_EQ(::close(fd), 0);

  r = Sh("cd \"$1\" && echo appended >> s1 && printf X | dd of=s2 bs=1 seek=3 conv=notrunc 2>/dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(ReadAll(P("s1"), true), "inline-marker-1\nappended\n");
  EXPECT_EQ(ReadAll(P("s2"), true), "inlXne-marker-2\n");
  EXPECT_EQ(ReadAll(P("s50"), true), "inline-marker-50\n");
  EXPECT_EQ(ReadAll(P("over"), true), std::string(4097, 'r'));
  EXPECT_TRUE(ReadAll(P("extended"), true) == "abc" + std::string((1 << 20) - 3, '\0'));
  EXPECT_EQ(ChunkFiles(data), before + 4);
  EXPECT_FALSE(AnyFileHolds(data, "inline-marker-")) << "plaintext in the data directory";
}

TEST_F(PosixMountTest, TruncatesShrinkGrowWithZerosAndAnOpenFileWritesPastTheNewEnd) {
  std::string f = P("t");
  std::string data = Str(testing::RandomBytes(300000, 7));
  ASSERT_NO_FATAL_FAILURE(Put(f, data));
  ASSERT_EQ(::truncate(f.c_str(), 1000), 0);
  EXPECT_EQ(Lstat(f).st_size, 1000);
  EXPECT_EQ(ReadAll(f), data.substr(0, 1000));
  ASSERT_EQ(::truncate(f.c_str(), 70000), 0);
  EXPECT_EQ(Lstat(f).st_size, 70000);
  EXPECT_EQ(ReadAll(f), data.substr(0, 1000) + std::string(69000, '\0'));

  // ftruncate on an open descriptor, then a write past the end.
  int fd = ::open(f.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 10), 0);
  ASSERT_EQ(::pwrite(fd, "xyz", 3, 20), 3);
  struct stat st {};
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 23);
  char buf[32];
  EXPECT_EQ(::pread(fd, buf, sizeof(buf), 0), 23);
  EXPECT_EQ(std::string(buf, 23), data.substr(0, 10) + std::string(10, '\0') + "xyz");
  EXPECT_EQ(::close(fd), 0);
  EXPECT_EQ(ReadAll(f), data.substr(0, 10) + std::string(10, '\0') + "xyz");

  // truncate(2) by path under an open descriptor: the descriptor keeps its
  // offset, and its next write leaves a hole.
  std::string data2 = Str(testing::RandomBytes(8000, 8));
  ASSERT_NO_FATAL_FAILURE(Put(f, data2));
  fd = ::open(f.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::lseek(fd, 8000, SEEK_SET), 8000);
  ASSERT_EQ(::truncate(f.c_str(), 100), 0);
  EXPECT_EQ(Lstat(f).st_size, 100);
  EXPECT_EQ(ReadAll(f), data2.substr(0, 100));
  ASSERT_EQ(::write(fd, "tail", 4), 4);
  EXPECT_EQ(::close(fd), 0);
  EXPECT_EQ(ReadAll(f), data2.substr(0, 100) + std::string(7900, '\0') + "tail");

  // O_TRUNC.
  fd = ::open(f.c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 0);
  ASSERT_EQ(::write(fd, "new", 3), 3);
  EXPECT_EQ(::close(fd), 0);
  EXPECT_EQ(ReadAll(f), "new");
  // Truncating a directory or a missing file.
  ASSERT_EQ(::mkdir(P("d").c_str(), 0755), 0);
  EXPECT_EQ(Err(::truncate(P("d").c_str(), 0)), EISDIR);
  EXPECT_EQ(Err(::truncate(P("missing").c_str(), 0)), ENOENT);
}

TEST_F(PosixMountTest, ASparseTenGibFileReadsZerosInItsHoles) {
  std::string f = P("sparse");
  ASSERT_NO_FATAL_FAILURE(Put(f, "head"));
  constexpr off_t kSize = 10ll << 30;
  auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(::truncate(f.c_str(), kSize), 0) << std::strerror(errno);
  EXPECT_EQ(Lstat(f).st_size, kSize);
  int fd = ::open(f.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  std::vector<char> buf(1 << 16, 'q');
  EXPECT_EQ(::pread(fd, buf.data(), buf.size(), 5ll << 30), static_cast<ssize_t>(buf.size()));
  EXPECT_TRUE(std::all_of(buf.begin(), buf.end(), [](char c) { return c == 0; }));
  EXPECT_EQ(::pread(fd, buf.data(), 8, 0), 8);
  EXPECT_EQ(std::string(buf.data(), 8), std::string("head") + std::string(4, '\0'));
  // A write near the end, and one in the middle.
  ASSERT_EQ(::pwrite(fd, "end", 3, kSize - 3), 3);
  ASSERT_EQ(::pwrite(fd, "mid", 3, 3ll << 30), 3);
  EXPECT_EQ(::close(fd), 0);
  // Read back as a new open (and, below, after a restart of the node).
  auto check = [&](const char* when) {
    EXPECT_EQ(Lstat(f).st_size, kSize) << when;
    int rfd = ::open(f.c_str(), O_RDONLY);
    ASSERT_GE(rfd, 0) << when;
    EXPECT_EQ(::pread(rfd, buf.data(), 16, kSize - 3), 3) << when;
    EXPECT_EQ(std::string(buf.data(), 3), "end") << when;
    EXPECT_EQ(::pread(rfd, buf.data(), 5, (3ll << 30) - 1), 5) << when;
    EXPECT_EQ(std::string(buf.data(), 5), std::string("\0mid\0", 5)) << when;
    std::fill(buf.begin(), buf.end(), 'q');
    EXPECT_EQ(::pread(rfd, buf.data(), buf.size(), (5ll << 30) + 12345),
              static_cast<ssize_t>(buf.size()))
        << when;
    EXPECT_TRUE(std::all_of(buf.begin(), buf.end(), [](char c) { return c == 0; })) << when;
    EXPECT_EQ(::pread(rfd, buf.data(), 16, kSize), 0) << when;
    ::close(rfd);
  };
  check("written");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s) << "holes are not stored";
  ASSERT_NO_FATAL_FAILURE(Remount());
  check("after the remount");
}

TEST_F(PosixMountTest, AnUnlinkedFileStaysReadableAndWritableWhileOpen) {
  std::string data = Str(testing::RandomBytes(3 << 20, 11));
  ASSERT_NO_FATAL_FAILURE(Put(P("f"), data));
  ASSERT_NO_FATAL_FAILURE(Remount());  // nothing of it in the page cache
  int fd = ::open(P("f").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::unlink(P("f").c_str()), 0);
  struct stat st {};
  EXPECT_EQ(Err(::stat(P("f").c_str(), &st)), ENOENT);
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_nlink, 0u);
  EXPECT_EQ(st.st_size, static_cast<off_t>(data.size()));
  std::string got(data.size(), '\0');
  std::size_t at = 0;
  ssize_t n;
  while (at < got.size() &&
         (n = ::pread(fd, got.data() + at, got.size() - at, static_cast<off_t>(at))) > 0) {
    at += static_cast<std::size_t>(n);
  }
  EXPECT_EQ(at, data.size());
  EXPECT_TRUE(got == data);
  ::close(fd);

  // Written after the unlink, read back through the same descriptor.
  fd = ::open(P("g").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "before", 6), 6);
  ASSERT_EQ(::fsync(fd), 0);
  ASSERT_EQ(::unlink(P("g").c_str()), 0);
  ASSERT_EQ(::write(fd, " after", 6), 6);
  EXPECT_EQ(::fsync(fd), 0) << std::strerror(errno);
  char buf[32];
  EXPECT_EQ(::pread(fd, buf, sizeof(buf), 0), 12);
  EXPECT_EQ(std::string(buf, 12), "before after");
  EXPECT_EQ(::close(fd), 0) << std::strerror(errno);
  EXPECT_TRUE(List(mnt_.string()).empty());
  // The name is free for a new file.
  ASSERT_NO_FATAL_FAILURE(Put(P("g"), "new"));
  EXPECT_EQ(ReadAll(P("g")), "new");
  // O_TMPFILE: a file that never had a name, where supported.
  fd = ::open(mnt_.c_str(), O_TMPFILE | O_RDWR, 0600);
  if (fd >= 0) {
    ASSERT_EQ(::write(fd, "tmp", 3), 3);
    ASSERT_EQ(::linkat(fd, "", AT_FDCWD, P("named").c_str(), AT_EMPTY_PATH), 0)
        << std::strerror(errno);
    ::close(fd);
    EXPECT_EQ(ReadAll(P("named")), "tmp");
  } else {
    EXPECT_EQ(errno, EOPNOTSUPP) << std::strerror(errno);
  }
}

TEST_F(PosixMountTest, MmapWritesReachTheFileAfterMsync) {
  std::string f = P("mapped");
  constexpr std::size_t kLen = 5 * 4096 + 100;
  int fd = ::open(f.c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, kLen), 0);
  void* p = ::mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(p, MAP_FAILED) << std::strerror(errno);
  std::string pattern = Str(testing::RandomBytes(kLen, 12));
  std::memcpy(p, pattern.data(), kLen);
  EXPECT_EQ(::msync(p, kLen, MS_SYNC), 0) << std::strerror(errno);
  EXPECT_EQ(::munmap(p, kLen), 0);
  EXPECT_EQ(::close(fd), 0) << std::strerror(errno);
  EXPECT_TRUE(ReadAll(f) == pattern);

  // A change of one page through a second mapping, after a read(2).
  fd = ::open(f.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  p = ::mmap(nullptr, kLen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(p, MAP_FAILED);
  EXPECT_EQ(std::memcmp(p, pattern.data(), kLen), 0);
  std::memset(static_cast<char*>(p) + 4096 * 2 + 10, 'Z', 50);
  pattern.replace(4096 * 2 + 10, 50, std::string(50, 'Z'));
  EXPECT_EQ(::msync(p, kLen, MS_SYNC), 0);
  EXPECT_EQ(::munmap(p, kLen), 0);
  EXPECT_EQ(::close(fd), 0);
  EXPECT_TRUE(ReadAll(f) == pattern);
  EXPECT_EQ(Lstat(f).st_size, static_cast<off_t>(kLen));
}

TEST_F(PosixMountTest, ParallelWritersAppendersAndCreatorsLoseNothing) {
  ASSERT_EQ(::mkdir(P("par").c_str(), 0755), 0);
  std::string log = P("par/log");
  std::vector<int> fds;
  for (int t = 0; t < 4; ++t) {
    fds.push_back(::open(log.c_str(), O_CREAT | O_WRONLY | O_APPEND, 0644));
    ASSERT_GE(fds.back(), 0);
  }
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::string record(1000, static_cast<char>('A' + t));
      for (int i = 0; i < 150; ++i) {
        if (::write(fds[t], record.data(), record.size()) != 1000) ++errors;
      }
      for (int i = 0; i < 20; ++i) {
        std::string name = fmt::format("{}/t{}-{}", P("par"), t, i);
        int fd = ::open(name.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
        std::string body(static_cast<std::size_t>(i * 37), static_cast<char>('a' + t));
        if (fd < 0 || ::write(fd, body.data(), body.size()) != static_cast<ssize_t>(body.size()) ||
            ::close(fd) != 0) {
          ++errors;
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int fd : fds) EXPECT_EQ(::close(fd), 0);
  EXPECT_EQ(errors.load(), 0);
  std::string all = ReadAll(log);
  ASSERT_EQ(all.size(), 4u * 150 * 1000);
  std::map<char, int> records;
  for (std::size_t at = 0; at < all.size(); at += 1000) {
    std::string rec = all.substr(at, 1000);
    EXPECT_EQ(rec, std::string(1000, rec[0])) << "a record torn at " << at;
    ++records[rec[0]];
  }
  EXPECT_EQ(records, (std::map<char, int>{{'A', 150}, {'B', 150}, {'C', 150}, {'D', 150}}));
  EXPECT_EQ(List(P("par")).size(), 81u);
  for (int t = 0; t < 4; ++t) {
    for (int i = 0; i < 20; ++i) {
      EXPECT_EQ(ReadAll(fmt::format("{}/t{}-{}", P("par"), t, i), true),
                std::string(static_cast<std::size_t>(i * 37), static_cast<char>('a' + t)));
    }
  }
  // Disjoint regions of one file from four threads through one descriptor.
  int fd = ::open(P("par/regions").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  threads.clear();
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::string block(4096, static_cast<char>('0' + t));
      for (int i = 0; i < 50; ++i) {
        if (::pwrite(fd, block.data(), block.size(), (i * 4 + t) * 4096) != 4096) ++errors;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(::close(fd), 0);
  EXPECT_EQ(errors.load(), 0);
  std::string regions = ReadAll(P("par/regions"), true);
  ASSERT_EQ(regions.size(), 200u * 4096);
  for (int k = 0; k < 200; ++k) {
    EXPECT_EQ(regions.substr(static_cast<std::size_t>(k) * 4096, 4096),
              std::string(4096, static_cast<char>('0' + k % 4)))
        << "block " << k;
  }
}

TEST_F(PosixMountTest, CopiesThroughCpCopyFileRangeAndSendfileAreExact) {
  std::string data = Str(testing::RandomBytes((3 << 20) + 12345, 13));
  ASSERT_NO_FATAL_FAILURE(Put(P("src"), data));
  testing::RunResult r = testing::Run({"/bin/cp", "--reflink=auto", P("src"), P("cp")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(ReadAll(P("cp"), true) == data);
  int in = ::open(P("src").c_str(), O_RDONLY);
  int out = ::open(P("cfr").c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(in, 0);
  ASSERT_GE(out, 0);
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::copy_file_range(in, nullptr, out, nullptr, data.size() - done, 0);
    ASSERT_GT(n, 0) << std::strerror(errno);
    done += static_cast<std::size_t>(n);
  }
  EXPECT_EQ(::close(out), 0);
  EXPECT_TRUE(ReadAll(P("cfr"), true) == data);
  out = ::open(P("sendfile").c_str(), O_CREAT | O_WRONLY, 0644);
  off_t off = 0;
  while (off < static_cast<off_t>(data.size())) {
    ssize_t n = ::sendfile(out, in, &off, data.size() - static_cast<std::size_t>(off));
    ASSERT_GT(n, 0) << std::strerror(errno);
  }
  EXPECT_EQ(::close(out), 0);
  ::close(in);
  EXPECT_TRUE(ReadAll(P("sendfile"), true) == data);
  // O_DIRECT goes past the page cache both ways.
  int fd = ::open(P("direct").c_str(), O_CREAT | O_RDWR | O_DIRECT, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  void* buf = nullptr;
  ASSERT_EQ(::posix_memalign(&buf, 4096, 8192), 0);
  std::memcpy(buf, data.data(), 8192);
  EXPECT_EQ(::pwrite(fd, buf, 8192, 4096), 8192) << std::strerror(errno);
  std::memset(buf, 0, 8192);
  EXPECT_EQ(::pread(fd, buf, 8192, 4096), 8192) << std::strerror(errno);
  EXPECT_EQ(std::memcmp(buf, data.data(), 8192), 0);
  ::free(buf);
  EXPECT_EQ(::close(fd), 0);
  EXPECT_TRUE(ReadAll(P("direct"), true) == std::string(4096, '\0') + data.substr(0, 8192));
  // df: the mount reports space and the name limit.
  struct statvfs vfs {};
  ASSERT_EQ(::statvfs(mnt_.c_str(), &vfs), 0);
  EXPECT_EQ(vfs.f_namemax, 255u);
  EXPECT_GT(vfs.f_bsize, 0u);
  EXPECT_GT(vfs.f_blocks, 0u);
  r = testing::Run({"/bin/df", "-P", mnt_.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// The node's directory on a small file system that fills up: the writer
// gets ENOSPC (from write or close), nothing written before is lost, the
// mount goes on serving, and space freed by rm can be written again.
TEST_F(PosixMountTest, AFullDiskGivesEnospcAndLosesNothingWritten) {
  const fs::path data = dir_ / "data";
  const fs::path saved = dir_ / "data.before";
  Stop();
  fs::rename(data, saved);
  fs::create_directories(data);
  ASSERT_EQ(testing::Run({"/bin/mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", data.string()})
                .exit_code, 0);
  struct Unmount {
    std::function<void()> fn;
    ~Unmount() { fn(); }
  } unmount{[&] {
    if (pid_ > 0) Stop();
    testing::Run({"/bin/umount", "-l", data.string()});
  }};
  ASSERT_EQ(testing::Run({"/bin/cp", "-a", saved.string() + "/.", data.string()}).exit_code, 0);
  ASSERT_NO_FATAL_FAILURE(Start());

  const std::string keep = Str(testing::RandomBytes(3 << 20, 31));
  testing::WriteFile(dir_ / "keep.src", core::AsBytes(keep));
  ASSERT_EQ(testing::Run({"/bin/cp", (dir_ / "keep.src").string(), P("keep")}).exit_code, 0);
  ASSERT_EQ(ReadAll(P("small")).rfind("<errno", 0), 0u);  // (nothing there yet)
  ASSERT_EQ(Sh("echo small > \"$1/small\"").exit_code, 0);

  testing::RunResult full =
      Sh("head -c 100000000 /dev/urandom > \"$1/big\"", 120);
  EXPECT_NE(full.exit_code, 0) << "100 MB fit on a 40 MiB disk?";
  EXPECT_NE(full.err.find("No space left on device"), std::string::npos) << full.err;
  EXPECT_TRUE(Mounted(mnt_));
  EXPECT_TRUE(ReadAll(P("keep"), true) == keep);
  EXPECT_EQ(ReadAll(P("small"), true), "small\n");
  // The log names the call, the file and the error.
  std::string log = testing::Slurp(log_);
  EXPECT_NE(log.find(" of /big ("), std::string::npos) << log;
  EXPECT_NE(log.find("o space"), std::string::npos) << log;

  // Filled to the last byte by someone else: new files and names fail
  // with ENOSPC (never EIO), what is there stays readable.
  testing::Run({"/bin/sh", "-c", "cat /dev/zero > \"$0/filler\"", data.string()});
  testing::RunResult tight = Sh(
      "cd \"$1\" && for i in $(seq 200); do echo tight$i > t$i || exit 1; mkdir d$i || exit 1; done");
  EXPECT_NE(tight.exit_code, 0) << "200 files and directories on a full disk?";
  EXPECT_NE(tight.err.find("No space left on device"), std::string::npos) << tight.err;
  EXPECT_EQ(tight.err.find("Input/output error"), std::string::npos) << tight.err;
  EXPECT_TRUE(ReadAll(P("keep"), true) == keep);
  fs::remove(data / "filler");

  // rm gives the space back; the same write of a smaller file then works.
  ASSERT_EQ(::unlink(P("big").c_str()), 0);
  testing::RunResult again = Sh("head -c 8000000 /dev/urandom > \"$1/after\" && sync \"$1/after\"");
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(Lstat(P("after")).st_size, 8000000);

  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_TRUE(ReadAll(P("keep"), true) == keep);
  EXPECT_EQ(ReadAll(P("small"), true), "small\n");
  EXPECT_EQ(Lstat(P("after")).st_size, 8000000);
}

TEST_F(PosixMountTest, WritesAndTruncatesPastSixteenTibFailWithEfbig) {
  // Files end at 16 TiB, as on ext4 (a larger sparse file would cost a
  // manifest, and memory, without bound): EFBIG, not EIO or a dead mount,
  // and the file is still usable.
  int fd = ::open(P("huge").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(Err(::pwrite(fd, "x", 1, 1ll << 50)), EFBIG);
  EXPECT_EQ(Err(::pwrite(fd, "xy", 2, (1ll << 44) - 1)), EFBIG);
  EXPECT_EQ(Err(::ftruncate(fd, (1ll << 44) + 1)), EFBIG);
  EXPECT_EQ(Err(::truncate(P("huge").c_str(), 7ll << 60)), EFBIG);
  EXPECT_EQ(::pwrite(fd, "ok", 2, 0), 2);
  EXPECT_EQ(::close(fd), 0);
  EXPECT_EQ(ReadAll(P("huge")), "ok");
  ASSERT_EQ(::truncate(P("huge").c_str(), 1ll << 44), 0);  // the largest size itself
  EXPECT_EQ(Lstat(P("huge")).st_size, 1ll << 44);
  fd = ::open(P("huge").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  char tail[4] = {1, 1, 1, 1};
  EXPECT_EQ(::pread(fd, tail, sizeof(tail), (1ll << 44) - 2), 2);
  EXPECT_EQ(tail[0] | tail[1], 0);
  EXPECT_EQ(::close(fd), 0);
}

}  // namespace
}  // namespace dfs
