// The POSIX behaviour of dfsmount's read-write mount, through /dev/fuse
// with a real dfsmount process per test (skipped, saying why, without FUSE
// or root):
//   - PosixMountTest: what editors, shells and tools do to files, one
//     behaviour per test: saves by rename, appends, truncates, directory
//     moves and removal, hard and symbolic links, modes, times, extended
//     attributes, name lengths, rename rules, FIFOs and devices, ctime and
//     directory mtime, sparse, unlinked-but-open and mmap'ed files, other
//     owners, listings that change while read, parallel writers, copies;
//   - WorkloadMountTest: git (200 commits, gc, fsck), tar (2500 files,
//     diff -r) and sqlite3 (10,000 rows, integrity_check) on the mount;
//   - ModelMountTest: a seeded random sequence of file operations, valid
//     and invalid alike, applied to the mount and to a local directory, must
//     give the same results and leave the same trees (DFS_MODEL_SEED and
//     DFS_MODEL_STEPS explore other runs).
// Several tests remount (a new dfsmount on the same data) and check again:
// what was written is stored, not only in the kernel's page cache.
// (tests/mount_test.cc holds mounting, background start and peers.)
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace dfs {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

using testing::Mounted;

// errno of a failed call, 0 for success (the call is evaluated first).
template <typename T>
int Err(T rc) {
  return rc < 0 ? errno : 0;
}

std::string Str(const core::Bytes& b) { return std::string(b.begin(), b.end()); }

// The whole content of `path`, or "<errno N>". `uncached`: drop the
// kernel's pages of it first, so that the bytes come from the file system.
std::string ReadAll(const std::string& path, bool uncached = false) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW);
  if (fd < 0) return fmt::format("<errno {}>", errno);
  if (uncached) (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<std::size_t>(n));
  int e = n < 0 ? errno : 0;
  ::close(fd);
  if (e != 0) return fmt::format("<errno {}>", e);
  return out;
}

// Writes `data` to a new or truncated file with `mode` (then chmod'ed to it
// exactly, past the umask); the test fails on any error.
void Put(const std::string& path, const std::string& data, mode_t mode = 0644) {
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, mode);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()))
      << std::strerror(errno);
  ASSERT_EQ(::fchmod(fd, mode), 0) << std::strerror(errno);
  ASSERT_EQ(::close(fd), 0) << std::strerror(errno);
}

struct stat Lstat(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
  return st;
}

std::vector<std::string> List(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    names.push_back(e.path().filename().string());
  EXPECT_FALSE(ec) << dir << ": " << ec.message();
  std::sort(names.begin(), names.end());
  return names;
}

std::int64_t Ns(const timespec& t) {
  return static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

std::int64_t NowNs() {
  timespec t{};
  ::clock_gettime(CLOCK_REALTIME, &t);
  return Ns(t);
}

int Renameat2(const std::string& from, const std::string& to, unsigned flags) {
  return static_cast<int>(
      ::syscall(SYS_renameat2, AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), flags));
}

// Runs `fn` in a forked child as uid/gid 1000 (no supplementary groups);
// returns what fn returned (0: all its checks held), or -1 if it died.
int RunAsUser(const std::function<int()>& fn) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(1000, 1000, 1000) != 0 ||
        ::setresuid(1000, 1000, 1000) != 0) {
      ::_exit(200);
    }
    ::_exit(fn());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// One dfsmount process (a node with one replica) mounted at mnt_ for the
// test; TearDown unmounts it and expects the process to end cleanly.
class MountFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/dev/fuse", R_OK | W_OK) != 0)
      GTEST_SKIP() << "skipped: /dev/fuse is not usable here";
    if (::geteuid() != 0) GTEST_SKIP() << "skipped: mounting needs root in this test setup";
    old_umask_ = ::umask(022);
    // Other users reach the mount (allow_other) through the scratch dir.
    ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0);
    ASSERT_EQ(Dfs({"keygen", (dir_ / "net.key").string()}).exit_code, 0);
    ASSERT_EQ(Dfs({"keygen", (dir_ / "volume.key").string()}).exit_code, 0);
    fs::create_directories(mnt_);
    ASSERT_NO_FATAL_FAILURE(Start());
  }

  void TearDown() override {
    ::umask(old_umask_);
    if (pid_ > 0) Stop();
    if (Mounted(mnt_)) testing::Run({"/bin/fusermount3", "-uz", mnt_.string()});
    if (HasFailure())
      std::cerr << "--- mount.log ---\n" << testing::Slurp(log_).substr(0, 20000) << "\n";
  }

  // Starts dfsmount on the data directory and waits for the mount.
  void Start() {
    pid_ = testing::Spawn(
        {testing::BinPath("dfsmount"), mnt_.string(), "--data", (dir_ / "data").string(),
         "--listen", "127.0.0.1:0", "--network-key", (dir_ / "net.key").string(), "--key",
         (dir_ / "volume.key").string(), "--replicas", "1", "-f", "-o", "allow_other"},
        log_.string());
    ASSERT_TRUE(testing::WaitFor([&] { return Mounted(mnt_) || Exited(); }))
        << testing::Slurp(log_);
    ASSERT_TRUE(Mounted(mnt_)) << testing::Slurp(log_);
  }

  // Unmounts; dfsmount commits what is staged, stops, and exits 0.
  void Stop() {
    if (Mounted(mnt_)) {
      testing::RunResult r = testing::Run({"/bin/fusermount3", "-u", mnt_.string()});
      if (r.exit_code != 0) {
        ADD_FAILURE() << "fusermount3 -u: " << r.err;
        testing::Run({"/bin/fusermount3", "-uz", mnt_.string()});
      }
    }
    if (!testing::WaitFor([&] { return Exited(); }, 30s, 20ms)) {
      std::string where;
      if (::access("/usr/bin/gdb", X_OK) == 0) {
        where = testing::Run({"/usr/bin/timeout", "60", "/usr/bin/gdb", "-p", std::to_string(pid_),
                              "-batch", "-ex", "thread apply all bt 20"})
                    .out;
      }
      ADD_FAILURE() << "dfsmount did not stop after the unmount; its threads:\n" << where;
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status_, 0);
      pid_ = -1;
      return;
    }
    EXPECT_TRUE(WIFEXITED(status_) && WEXITSTATUS(status_) == 0)
        << "dfsmount ended with status " << status_ << "\n"
        << testing::Slurp(log_);
  }

  // What was written is there after a restart of the node.
  void Remount() {
    Stop();
    ASSERT_NO_FATAL_FAILURE(Start());
  }

  // Whether our dfsmount has ended (reaped into status_).
  bool Exited() {
    if (pid_ <= 0) return true;
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      status_ = status;
      pid_ = -1;
      return true;
    }
    return false;
  }

  testing::RunResult Dfs(std::vector<std::string> args) {
    args.insert(args.begin(), testing::BinPath("dfs"));
    return testing::Run(args);
  }
  // Runs a shell script with $1 the mount and $2 the scratch directory;
  // killed after `limit_s` seconds (a hung mount fails the test).
  testing::RunResult Sh(const std::string& script, int limit_s = 300) {
    return testing::Run({"/usr/bin/timeout", "-k", "10", std::to_string(limit_s), "/bin/sh", "-c",
                         script, "sh", mnt_.string(), dir_.path().string()});
  }
  // A path on the mount.
  std::string P(const std::string& rel) const { return (mnt_ / rel).string(); }

  testing::TempDir dir_;
  fs::path mnt_ = dir_ / "mnt";
  fs::path log_ = dir_ / "mount.log";
  int pid_ = -1;
  int status_ = 0;
  mode_t old_umask_ = 022;
};

using PosixMountTest = MountFixture;
using WorkloadMountTest = MountFixture;
using ModelMountTest = MountFixture;

// ---------------------------------------------------------------------------
// One behaviour per test.

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

TEST_F(PosixMountTest, MkdirParentsMoveADirectoryWithItsContentsAndRemoveRecursively) {
  testing::RunResult r = testing::Run({"/bin/mkdir", "-p", P("a/b/c/d")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = testing::Run({"/bin/mkdir", "-p", P("a/b/c/d")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_NO_FATAL_FAILURE(Put(P("a/b/f1"), "one"));
  ASSERT_NO_FATAL_FAILURE(Put(P("a/b/c/f2"), "two"));
  ASSERT_NO_FATAL_FAILURE(Put(P("a/b/c/d/f3"), "three"));
  ASSERT_EQ(::mkdir(P("a/b/e").c_str(), 0755), 0);
  EXPECT_EQ(Lstat(P("a")).st_nlink, 3u);
  EXPECT_EQ(Lstat(P("a/b")).st_nlink, 4u);  // ., c, e

  r = testing::Run({"/bin/mv", P("a/b"), P("moved")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(P("a/b")));
  EXPECT_EQ(ReadAll(P("moved/f1")), "one");
  EXPECT_EQ(ReadAll(P("moved/c/f2")), "two");
  EXPECT_EQ(ReadAll(P("moved/c/d/f3")), "three");
  EXPECT_EQ(List(P("moved")), (std::vector<std::string>{"c", "e", "f1"}));
  EXPECT_EQ(Lstat(P("a")).st_nlink, 2u);
  EXPECT_EQ(Lstat(P("")).st_nlink, 4u);  // ., a, moved

  // Into a directory, and (refused) under itself.
  ASSERT_EQ(::rename(P("moved").c_str(), P("a/again").c_str()), 0) << std::strerror(errno);
  EXPECT_EQ(ReadAll(P("a/again/c/d/f3")), "three");
  EXPECT_EQ(Err(::rename(P("a").c_str(), P("a/again/c/x").c_str())), EINVAL);
  EXPECT_EQ(Err(::rmdir(P("a").c_str())), ENOTEMPTY);

  r = testing::Run({"/bin/rm", "-r", P("a")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(fs::exists(P("a")));
  EXPECT_TRUE(List(mnt_.string()).empty());
  EXPECT_EQ(Lstat(P("")).st_nlink, 2u);
}

TEST_F(PosixMountTest, HardLinksShareOneInodeAndCountNames) {
  std::string f = P("f"), g = P("g");
  ASSERT_NO_FATAL_FAILURE(Put(f, "shared bytes"));
  testing::RunResult ln = testing::Run({"/bin/ln", f, g});
  ASSERT_EQ(ln.exit_code, 0) << ln.err;
  ASSERT_EQ(::mkdir(P("sub").c_str(), 0755), 0);
  ASSERT_EQ(::link(g.c_str(), P("sub/h").c_str()), 0) << std::strerror(errno);
  struct stat sf = Lstat(f), sg = Lstat(g), sh = Lstat(P("sub/h"));
  EXPECT_EQ(sf.st_nlink, 3u);
  EXPECT_EQ(sg.st_nlink, 3u);
  EXPECT_EQ(sh.st_nlink, 3u);
  EXPECT_EQ(sf.st_ino, sg.st_ino);
  EXPECT_EQ(sf.st_ino, sh.st_ino);

  // A write through one name shows through the others.
  int fd = ::open(g.c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, " and more", 9), 9);
  ASSERT_EQ(::close(fd), 0);
  EXPECT_EQ(ReadAll(f), "shared bytes and more");
  EXPECT_EQ(ReadAll(P("sub/h")), "shared bytes and more");

  ASSERT_EQ(::unlink(f.c_str()), 0);
  EXPECT_EQ(Lstat(g).st_nlink, 2u);
  ASSERT_EQ(::unlink(P("sub/h").c_str()), 0);
  EXPECT_EQ(Lstat(g).st_nlink, 1u);
  EXPECT_EQ(ReadAll(g), "shared bytes and more");
  EXPECT_EQ(List(mnt_.string()), (std::vector<std::string>{"g", "sub"}));

  EXPECT_EQ(Err(::link(P("sub").c_str(), P("dirlink").c_str())), EPERM);
  EXPECT_EQ(Err(::link(g.c_str(), P("sub").c_str())), EEXIST);
  EXPECT_EQ(Err(::link(P("missing").c_str(), P("x").c_str())), ENOENT);
  // A hard link to a symlink is a link to the symlink itself.
  ASSERT_EQ(::symlink("g", P("sym").c_str()), 0);
  ASSERT_EQ(::link(P("sym").c_str(), P("sym2").c_str()), 0) << std::strerror(errno);
  struct stat ss = Lstat(P("sym2"));
  EXPECT_TRUE(S_ISLNK(ss.st_mode));
  EXPECT_EQ(ss.st_nlink, 2u);
}

TEST_F(PosixMountTest, RenameOverOneOfSeveralLinksKeepsTheLinkCountsExact) {
  std::string a = P("a"), b = P("b"), c = P("c"), o = P("o");
  ASSERT_NO_FATAL_FAILURE(Put(a, "A"));
  ASSERT_EQ(::link(a.c_str(), b.c_str()), 0);
  ASSERT_EQ(::link(a.c_str(), c.c_str()), 0);
  EXPECT_EQ(Lstat(a).st_nlink, 3u);
  ASSERT_NO_FATAL_FAILURE(Put(o, "O"));

  ASSERT_EQ(::rename(o.c_str(), b.c_str()), 0) << std::strerror(errno);
  EXPECT_EQ(Lstat(a).st_nlink, 2u);
  EXPECT_EQ(Lstat(c).st_nlink, 2u);
  EXPECT_EQ(Lstat(b).st_nlink, 1u);
  EXPECT_EQ(ReadAll(b), "O");
  EXPECT_EQ(ReadAll(a), "A");

  // Two names of one inode: rename succeeds and does nothing (POSIX).
  ASSERT_EQ(::rename(a.c_str(), c.c_str()), 0) << std::strerror(errno);
  EXPECT_EQ(List(mnt_.string()), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(Lstat(a).st_nlink, 2u);

  ASSERT_EQ(::rename(c.c_str(), P("d").c_str()), 0);
  EXPECT_EQ(Lstat(a).st_nlink, 2u);
  EXPECT_EQ(Lstat(P("d")).st_nlink, 2u);
  ASSERT_EQ(::unlink(a.c_str()), 0);
  EXPECT_EQ(Lstat(P("d")).st_nlink, 1u);
  EXPECT_EQ(ReadAll(P("d")), "A");
  EXPECT_EQ(List(mnt_.string()), (std::vector<std::string>{"b", "d"}));
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(Lstat(P("d")).st_nlink, 1u);
  EXPECT_EQ(ReadAll(P("d")), "A");
  EXPECT_EQ(ReadAll(P("b")), "O");
}

TEST_F(PosixMountTest, SymlinksKeepTheirTargetsUpToPathMax) {
  std::string l = P("l");
  ASSERT_EQ(::symlink("target.txt", l.c_str()), 0) << std::strerror(errno);
  char buf[8192];
  ssize_t n = ::readlink(l.c_str(), buf, sizeof(buf));
  ASSERT_EQ(n, 10);
  EXPECT_EQ(std::string(buf, 10), "target.txt");
  struct stat st = Lstat(l);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(st.st_size, 10);
  struct stat through {};
  EXPECT_EQ(Err(::stat(l.c_str(), &through)), ENOENT);  // dangling
  ASSERT_NO_FATAL_FAILURE(Put(P("target.txt"), "t"));
  EXPECT_EQ(ReadAll(P("target.txt")), "t");
  int fd = ::open(l.c_str(), O_RDONLY);  // followed
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::read(fd, buf, 10), 1);
  ::close(fd);
  ASSERT_EQ(::mkdir(P("sub").c_str(), 0755), 0);
  ASSERT_EQ(::symlink("../target.txt", P("sub/up").c_str()), 0);
  fd = ::open(P("sub/up").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ::close(fd);
  testing::RunResult ln = testing::Run({"/bin/ln", "-s", "sub", P("dirlink")});
  ASSERT_EQ(ln.exit_code, 0) << ln.err;
  ln = testing::Run({"/bin/readlink", P("dirlink")});
  EXPECT_EQ(ln.out, "sub\n");
  EXPECT_EQ(List(P("dirlink")), std::vector<std::string>{"up"});

  std::string longest;
  for (int i = 0; longest.size() < 4095; ++i) longest += fmt::format("component{}/", i);
  longest.resize(4095);
  ASSERT_EQ(::symlink(longest.c_str(), P("long").c_str()), 0) << std::strerror(errno);
  n = ::readlink(P("long").c_str(), buf, sizeof(buf));
  ASSERT_EQ(n, 4095);
  EXPECT_EQ(std::string(buf, 4095), longest);
  EXPECT_EQ(Lstat(P("long")).st_size, 4095);
  EXPECT_EQ(Err(::symlink((longest + "x").c_str(), P("toolong").c_str())), ENAMETOOLONG);
  EXPECT_EQ(Err(::readlink(P("target.txt").c_str(), buf, sizeof(buf))), EINVAL);
  EXPECT_EQ(Err(::symlink("x", P("l").c_str())), EEXIST);
}

TEST_F(PosixMountTest, ChmodAndCreationModesAreExact) {
  std::string f = P("f");
  ASSERT_NO_FATAL_FAILURE(Put(f, "x", 0644));
  for (mode_t m : {0751, 04755, 02711, 0, 0600, 01644, 07777}) {
    ASSERT_EQ(::chmod(f.c_str(), m), 0) << std::oct << m;
    EXPECT_EQ(Lstat(f).st_mode, S_IFREG | m) << std::oct << m;
  }
  int fd = ::open(f.c_str(), O_RDONLY);
  ASSERT_EQ(::fchmod(fd, 0440), 0);
  struct stat st {};
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_mode, S_IFREG | 0440);
  ::close(fd);
  testing::RunResult r = testing::Run({"/bin/chmod", "u+w,o+r", f});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Lstat(f).st_mode, S_IFREG | 0644);

  // Creation: the requested mode minus the umask.
  ::umask(027);
  ASSERT_EQ(::mkdir(P("d").c_str(), 0777), 0);
  EXPECT_EQ(Lstat(P("d")).st_mode, S_IFDIR | 0750);
  ASSERT_EQ(::mkdir(P("sticky").c_str(), 01777), 0);
  EXPECT_EQ(Lstat(P("sticky")).st_mode, S_IFDIR | 01750);
  fd = ::open(P("new").c_str(), O_CREAT | O_WRONLY, 0666);
  ASSERT_GE(fd, 0);
  ::close(fd);
  EXPECT_EQ(Lstat(P("new")).st_mode, S_IFREG | 0640);
  ::umask(0);
  ASSERT_EQ(::mkdir(P("open").c_str(), 0777), 0);
  EXPECT_EQ(Lstat(P("open")).st_mode, S_IFDIR | 0777);
  ASSERT_EQ(::mkdir(P("odd").c_str(), 0501), 0);
  EXPECT_EQ(Lstat(P("odd")).st_mode, S_IFDIR | 0501);
  ::umask(022);
  ASSERT_EQ(::chmod(P("d").c_str(), 02755), 0);
  EXPECT_EQ(Lstat(P("d")).st_mode, S_IFDIR | 02755);
  // A symlink's mode is fixed; chmod through it changes the target.
  ASSERT_EQ(::symlink("f", P("l").c_str()), 0);
  ASSERT_EQ(::chmod(P("l").c_str(), 0604), 0);
  EXPECT_EQ(Lstat(f).st_mode, S_IFREG | 0604);
  EXPECT_EQ(Lstat(P("l")).st_mode, S_IFLNK | 0777);
}

TEST_F(PosixMountTest, TouchSetsModificationAndAccessTimes) {
  std::string f = P("f");
  ASSERT_NO_FATAL_FAILURE(Put(f, "x"));
  testing::RunResult r = testing::Run({"/usr/bin/touch", "-d", "@981173106.5", f});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  struct stat st = Lstat(f);
  EXPECT_EQ(Ns(st.st_mtim), 981173106500000000);
  EXPECT_EQ(Ns(st.st_atim), 981173106500000000);
  r = testing::Run({"/usr/bin/touch", "-a", "-d", "@1000000000", f});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  st = Lstat(f);
  EXPECT_EQ(Ns(st.st_atim), 1000000000000000000);
  EXPECT_EQ(Ns(st.st_mtim), 981173106500000000);

  timespec ts[2] = {{100, 1}, {200, 999999999}};
  ASSERT_EQ(::utimensat(AT_FDCWD, f.c_str(), ts, 0), 0);
  st = Lstat(f);
  EXPECT_EQ(Ns(st.st_atim), 100000000001);
  EXPECT_EQ(Ns(st.st_mtim), 200999999999);
  timespec omit[2] = {{0, UTIME_OMIT}, {300, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, f.c_str(), omit, 0), 0);
  st = Lstat(f);
  EXPECT_EQ(Ns(st.st_atim), 100000000001);
  EXPECT_EQ(Ns(st.st_mtim), 300000000000);
  // Before 1970 too.
  timespec old[2] = {{-86400, 5}, {-1, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, f.c_str(), old, 0), 0);
  st = Lstat(f);
  EXPECT_EQ(Ns(st.st_atim), -86400 * 1000000000ll + 5);
  EXPECT_EQ(Ns(st.st_mtim), -1000000000ll);
  std::int64_t before = NowNs();
  ASSERT_EQ(::utimensat(AT_FDCWD, f.c_str(), nullptr, 0), 0);
  std::int64_t after = NowNs();
  st = Lstat(f);
  EXPECT_GE(Ns(st.st_mtim), before);
  EXPECT_LE(Ns(st.st_mtim), after);
  EXPECT_GE(Ns(st.st_atim), before);
  EXPECT_LE(Ns(st.st_atim), after);

  // A write moves mtime to now.
  ASSERT_EQ(::utimensat(AT_FDCWD, f.c_str(), ts, 0), 0);
  before = NowNs();
  int fd = ::open(f.c_str(), O_WRONLY | O_APPEND);
  ASSERT_EQ(::write(fd, "y", 1), 1);
  ASSERT_EQ(::close(fd), 0);
  st = Lstat(f);
  EXPECT_GE(Ns(st.st_mtim), before);
  EXPECT_LE(Ns(st.st_mtim), NowNs());

  // On a symlink itself, when the file system supports it.
  ASSERT_EQ(::utimensat(AT_FDCWD, f.c_str(), ts, 0), 0);
  ASSERT_EQ(::symlink("f", P("l").c_str()), 0);
  timespec lt[2] = {{5000, 6}, {7000, 8}};
  if (::utimensat(AT_FDCWD, P("l").c_str(), lt, AT_SYMLINK_NOFOLLOW) == 0) {
    struct stat ls = Lstat(P("l"));
    EXPECT_EQ(Ns(ls.st_atim), 5000000000006);
    EXPECT_EQ(Ns(ls.st_mtim), 7000000000008);
    st = Lstat(f);
    EXPECT_EQ(Ns(st.st_atim), 100000000001) << "the target is left alone";
    EXPECT_EQ(Ns(st.st_mtim), 200999999999);
  } else {
    EXPECT_TRUE(errno == EOPNOTSUPP || errno == EPERM) << std::strerror(errno);
  }
  r = testing::Run({"/usr/bin/touch", "-h", "-d", "@1234567890", P("l")});
  if (r.exit_code == 0) {
    EXPECT_EQ(Lstat(P("l")).st_mtim.tv_sec, 1234567890);
  }
  // touch on a new name creates it.
  r = testing::Run({"/usr/bin/touch", P("created")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Lstat(P("created")).st_size, 0);
}

TEST_F(PosixMountTest, ExtendedAttributesFollowSetxattrSemantics) {
  std::string f = P("f");
  ASSERT_NO_FATAL_FAILURE(Put(f, "x"));
  const char* v1 = "value one";
  ASSERT_EQ(::setxattr(f.c_str(), "user.one", v1, std::strlen(v1), 0), 0) << std::strerror(errno);
  std::string v2 = Str(testing::RandomBytes(4000, 9));
  ASSERT_EQ(::setxattr(f.c_str(), "user.two", v2.data(), v2.size(), XATTR_CREATE), 0);
  ASSERT_EQ(::setxattr(f.c_str(), "user.empty", "", 0, 0), 0);

  EXPECT_EQ(::getxattr(f.c_str(), "user.one", nullptr, 0), static_cast<ssize_t>(std::strlen(v1)));
  char buf[8192];
  ssize_t n = ::getxattr(f.c_str(), "user.two", buf, sizeof(buf));
  ASSERT_EQ(n, 4000);
  EXPECT_TRUE(std::string(buf, 4000) == v2);
  EXPECT_EQ(::getxattr(f.c_str(), "user.empty", buf, sizeof(buf)), 0);
  EXPECT_EQ(Err(::getxattr(f.c_str(), "user.two", buf, 10)), ERANGE);
  EXPECT_EQ(Err(::getxattr(f.c_str(), "user.none", buf, sizeof(buf))), ENODATA);

  EXPECT_EQ(Err(::setxattr(f.c_str(), "user.one", "z", 1, XATTR_CREATE)), EEXIST);
  EXPECT_EQ(Err(::setxattr(f.c_str(), "user.none", "z", 1, XATTR_REPLACE)), ENODATA);
  ASSERT_EQ(::setxattr(f.c_str(), "user.one", "replaced", 8, XATTR_REPLACE), 0);
  n = ::getxattr(f.c_str(), "user.one", buf, sizeof(buf));
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(std::max<ssize_t>(n, 0))), "replaced");

  ssize_t len = ::listxattr(f.c_str(), nullptr, 0);
  ASSERT_GT(len, 0);
  n = ::listxattr(f.c_str(), buf, sizeof(buf));
  ASSERT_EQ(n, len);
  std::vector<std::string> names;
  for (ssize_t at = 0; at < n; at += static_cast<ssize_t>(std::strlen(buf + at)) + 1)
    names.emplace_back(buf + at);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"user.empty", "user.one", "user.two"}));
  EXPECT_EQ(Err(::listxattr(f.c_str(), buf, 3)), ERANGE);

  ASSERT_EQ(::removexattr(f.c_str(), "user.one"), 0);
  EXPECT_EQ(Err(::getxattr(f.c_str(), "user.one", buf, sizeof(buf))), ENODATA);
  EXPECT_EQ(Err(::removexattr(f.c_str(), "user.one")), ENODATA);
  EXPECT_EQ(::listxattr(f.c_str(), buf, sizeof(buf)),
            static_cast<ssize_t>(std::strlen("user.empty") + 1 + std::strlen("user.two") + 1));

  // On directories too; a value at the limit; and a content rewrite keeps them.
  ASSERT_EQ(::mkdir(P("d").c_str(), 0755), 0);
  std::string max = Str(testing::RandomBytes(65536, 10));
  ASSERT_EQ(::setxattr(P("d").c_str(), "user.max", max.data(), max.size(), 0), 0)
      << std::strerror(errno);
  std::vector<char> big(70000);
  EXPECT_EQ(::getxattr(P("d").c_str(), "user.max", big.data(), big.size()), 65536);
  EXPECT_TRUE(std::string(big.data(), 65536) == max);
  ASSERT_NO_FATAL_FAILURE(Put(f, "rewritten"));
  EXPECT_EQ(::getxattr(f.c_str(), "user.two", nullptr, 0), 4000);
  // And through a hard link they are the inode's.
  ASSERT_EQ(::link(f.c_str(), P("g").c_str()), 0);
  EXPECT_EQ(::getxattr(P("g").c_str(), "user.two", nullptr, 0), 4000);
}

// POSIX ACLs and security-module labels would be stored but not enforced:
// they are refused as unsupported, which also makes `ls -l` stop asking for
// them after the first file. File capabilities are kept (the kernel reads
// them through getxattr).
TEST_F(PosixMountTest, AclsAndLabelsAreUnsupportedCapabilitiesAreKept) {
  const std::string f = P("f");
  ASSERT_NO_FATAL_FAILURE(Put(f, "x"));
  char buf[64];
  // A well-formed access ACL (user::rw- group::r-- other::r--), v2 format.
  const std::uint8_t acl[] = {2, 0, 0, 0,                          // version
                              0x01, 0, 06, 0, 0xff, 0xff, 0xff, 0xff,  // USER_OBJ rw
                              0x04, 0, 04, 0, 0xff, 0xff, 0xff, 0xff,  // GROUP_OBJ r
                              0x20, 0, 04, 0, 0xff, 0xff, 0xff, 0xff};  // OTHER r
  for (const char* name : {"system.posix_acl_access", "security.selinux", "security.SMACK64"}) {
    EXPECT_EQ(Err(::getxattr(f.c_str(), name, buf, sizeof(buf))), EOPNOTSUPP) << name;
    EXPECT_EQ(Err(::setxattr(f.c_str(), name, acl, sizeof(acl), 0)), EOPNOTSUPP) << name;
  }
  EXPECT_EQ(Err(::removexattr(f.c_str(), "security.selinux")), EOPNOTSUPP);
  EXPECT_EQ(Err(::getxattr(f.c_str(), "security.capability", buf, sizeof(buf))), ENODATA);
  // vfs_cap_data revision 2: magic, then permitted/inheritable words.
  const std::uint8_t cap[20] = {0, 0, 0, 2, 0x00, 0x04, 0, 0};  // cap_net_bind_service
  ASSERT_EQ(::setxattr(f.c_str(), "security.capability", cap, sizeof(cap), 0), 0)
      << std::strerror(errno);
  EXPECT_EQ(::getxattr(f.c_str(), "security.capability", buf, sizeof(buf)), 20);
  ssize_t n = ::listxattr(f.c_str(), buf, sizeof(buf));
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(n)), std::string("security.capability\0", 20));
}

TEST_F(PosixMountTest, NamesOf255BytesWorkAnd256AreTooLong) {
  std::string n255(255, 'n'), n256(256, 'n');
  int fd = ::open(P(n255).c_str(), O_CREAT | O_WRONLY, 0644);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(::write(fd, "long", 4), 4);
  ASSERT_EQ(::close(fd), 0);
  EXPECT_EQ(ReadAll(P(n255)), "long");
  EXPECT_EQ(Err(::open(P(n256).c_str(), O_CREAT | O_WRONLY, 0644)), ENAMETOOLONG);
  EXPECT_EQ(List(mnt_.string()), std::vector<std::string>{n255});

  std::string d255(255, 'd');
  ASSERT_EQ(::mkdir(P(d255).c_str(), 0755), 0) << std::strerror(errno);
  EXPECT_EQ(Err(::mkdir(P(std::string(256, 'd')).c_str(), 0755)), ENAMETOOLONG);
  ASSERT_NO_FATAL_FAILURE(Put(P(d255 + "/" + n255), "deep"));
  EXPECT_EQ(ReadAll(P(d255 + "/" + n255)), "deep");

  std::string r255(255, 'r');
  ASSERT_EQ(::rename(P(n255).c_str(), P(r255).c_str()), 0) << std::strerror(errno);
  EXPECT_EQ(ReadAll(P(r255)), "long");
  EXPECT_EQ(Err(::rename(P(r255).c_str(), P(std::string(256, 'r')).c_str())), ENAMETOOLONG);
  EXPECT_EQ(ReadAll(P(r255)), "long");
  EXPECT_EQ(Err(::link(P(r255).c_str(), P(n256).c_str())), ENAMETOOLONG);
  EXPECT_EQ(Err(::symlink("x", P(n256).c_str())), ENAMETOOLONG);
  EXPECT_EQ(Err(::mknod(P(n256).c_str(), S_IFIFO | 0644, 0)), ENAMETOOLONG);
  ASSERT_EQ(::symlink("x", P(std::string(255, 's')).c_str()), 0);
  // Multibyte: 127 two-byte characters and one more byte.
  std::string utf;
  for (int i = 0; i < 127; ++i) utf += "\xc3\xa9";
  utf += "x";
  ASSERT_EQ(utf.size(), 255u);
  ASSERT_NO_FATAL_FAILURE(Put(P(utf), "utf"));
  EXPECT_EQ(Err(::open(P(utf + "y").c_str(), O_CREAT | O_WRONLY, 0644)), ENAMETOOLONG);
  EXPECT_EQ(List(mnt_.string()),
            (std::vector<std::string>{d255, r255, std::string(255, 's'), utf}));
}

TEST_F(PosixMountTest, RenameFollowsPosixRulesAndRenameat2Flags) {
  ASSERT_EQ(::mkdir(P("full").c_str(), 0755), 0);
  ASSERT_NO_FATAL_FAILURE(Put(P("full/x"), "x"));
  ASSERT_EQ(::mkdir(P("empty").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(P("src").c_str(), 0755), 0);
  ASSERT_NO_FATAL_FAILURE(Put(P("src/inside"), "inside"));
  ASSERT_NO_FATAL_FAILURE(Put(P("f"), "f"));
  ASSERT_NO_FATAL_FAILURE(Put(P("g"), "g"));

  EXPECT_EQ(Err(::rename(P("src").c_str(), P("full").c_str())), ENOTEMPTY);
  EXPECT_EQ(Err(::rename(P("src").c_str(), P("f").c_str())), ENOTDIR);
  EXPECT_EQ(Err(::rename(P("f").c_str(), P("empty").c_str())), EISDIR);
  EXPECT_EQ(Err(::rename(P("src").c_str(), P("src/sub").c_str())), EINVAL);
  EXPECT_EQ(Err(::rename(P("missing").c_str(), P("h").c_str())), ENOENT);
  EXPECT_EQ(Err(::rename(P("f").c_str(), P("nodir/h").c_str())), ENOENT);
  EXPECT_EQ(Err(::rename(P("f").c_str(), P("g/h").c_str())), ENOTDIR);
  EXPECT_EQ(ReadAll(P("f")), "f");
  EXPECT_EQ(ReadAll(P("full/x")), "x");
  ASSERT_EQ(::rename(P("f").c_str(), P("f").c_str()), 0);
  EXPECT_EQ(ReadAll(P("f")), "f");

  // A directory over an empty one.
  ASSERT_EQ(::rename(P("src").c_str(), P("empty").c_str()), 0) << std::strerror(errno);
  EXPECT_EQ(ReadAll(P("empty/inside")), "inside");
  EXPECT_FALSE(fs::exists(P("src")));
  EXPECT_EQ(Lstat(P("")).st_nlink, 4u);  // ., full, empty
  // A file over a file.
  ASSERT_EQ(::rename(P("g").c_str(), P("f").c_str()), 0);
  EXPECT_EQ(ReadAll(P("f")), "g");
  EXPECT_FALSE(fs::exists(P("g")));

  // RENAME_NOREPLACE.
  ASSERT_NO_FATAL_FAILURE(Put(P("g"), "g2"));
  EXPECT_EQ(Err(Renameat2(P("g"), P("f"), RENAME_NOREPLACE)), EEXIST);
  EXPECT_EQ(Err(Renameat2(P("g"), P("full"), RENAME_NOREPLACE)), EEXIST);
  EXPECT_EQ(ReadAll(P("f")), "g");
  ASSERT_EQ(Renameat2(P("g"), P("h"), RENAME_NOREPLACE), 0) << std::strerror(errno);
  EXPECT_EQ(ReadAll(P("h")), "g2");

  // RENAME_EXCHANGE: a file and a directory trade places.
  ASSERT_EQ(Renameat2(P("h"), P("full"), RENAME_EXCHANGE), 0) << std::strerror(errno);
  EXPECT_EQ(ReadAll(P("full")), "g2");
  EXPECT_EQ(ReadAll(P("h/x")), "x");
  EXPECT_TRUE(S_ISDIR(Lstat(P("h")).st_mode));
  EXPECT_TRUE(S_ISREG(Lstat(P("full")).st_mode));
  // Across directories.
  ASSERT_EQ(Renameat2(P("f"), P("h/x"), RENAME_EXCHANGE), 0) << std::strerror(errno);
  EXPECT_EQ(ReadAll(P("f")), "x");
  EXPECT_EQ(ReadAll(P("h/x")), "g");
  EXPECT_EQ(Err(Renameat2(P("f"), P("nothing"), RENAME_EXCHANGE)), ENOENT);
  EXPECT_EQ(Err(Renameat2(P("f"), P("h"), RENAME_EXCHANGE | RENAME_NOREPLACE)), EINVAL);
  EXPECT_EQ(List(mnt_.string()), (std::vector<std::string>{"empty", "f", "full", "h"}));
}

TEST_F(PosixMountTest, MknodMakesFifosDevicesAndRegularFiles) {
  ASSERT_EQ(::mkfifo(P("fifo").c_str(), 0640), 0) << std::strerror(errno);
  struct stat st = Lstat(P("fifo"));
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_size, 0);
  // The kernel runs the pipe.
  int fd = ::open(P("fifo").c_str(), O_RDWR | O_NONBLOCK);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(::write(fd, "ping", 4), 4);
  char buf[8];
  EXPECT_EQ(::read(fd, buf, sizeof(buf)), 4);
  EXPECT_EQ(std::string(buf, 4), "ping");
  ::close(fd);

  ASSERT_EQ(::mknod(P("reg").c_str(), S_IFREG | 0600, 0), 0) << std::strerror(errno);
  st = Lstat(P("reg"));
  EXPECT_EQ(st.st_mode, S_IFREG | 0600);
  EXPECT_EQ(st.st_size, 0);
  EXPECT_EQ(ReadAll(P("reg")), "");
  ASSERT_EQ(::mknod(P("null").c_str(), S_IFCHR | 0644, makedev(1, 3)), 0) << std::strerror(errno);
  st = Lstat(P("null"));
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(1, 3));
  ASSERT_EQ(::mknod(P("blk").c_str(), S_IFBLK | 0600, makedev(7, 9)), 0);
  EXPECT_EQ(Lstat(P("blk")).st_rdev, makedev(7, 9));
  ASSERT_EQ(::mknod(P("sock").c_str(), S_IFSOCK | 0600, 0), 0);
  EXPECT_TRUE(S_ISSOCK(Lstat(P("sock")).st_mode));
  EXPECT_EQ(Err(::mkfifo(P("fifo").c_str(), 0640)), EEXIST);
  // Renamed and removed like any name.
  ASSERT_EQ(::rename(P("fifo").c_str(), P("fifo2").c_str()), 0);
  EXPECT_TRUE(S_ISFIFO(Lstat(P("fifo2")).st_mode));
  ASSERT_EQ(::unlink(P("fifo2").c_str()), 0);
  EXPECT_EQ(List(mnt_.string()), (std::vector<std::string>{"blk", "null", "reg", "sock"}));
}

TEST_F(PosixMountTest, CtimeMovesOnChmodLinkRenameWriteAndXattr) {
  std::string f = P("f");
  ASSERT_NO_FATAL_FAILURE(Put(f, "x"));
  auto ctime = [&](const std::string& p) { return Ns(Lstat(p).st_ctim); };
  auto pause = [] { std::this_thread::sleep_for(20ms); };
  std::int64_t c0 = ctime(f);
  std::int64_t m0 = Ns(Lstat(f).st_mtim);
  pause();
  ASSERT_EQ(::chmod(f.c_str(), 0600), 0);
  std::int64_t c1 = ctime(f);
  EXPECT_GT(c1, c0) << "chmod";
  EXPECT_EQ(Ns(Lstat(f).st_mtim), m0) << "chmod leaves mtime";
  pause();
  ASSERT_EQ(::link(f.c_str(), P("g").c_str()), 0);
  std::int64_t c2 = ctime(f);
  EXPECT_GT(c2, c1) << "link";
  pause();
  ASSERT_EQ(::rename(P("g").c_str(), P("h").c_str()), 0);
  std::int64_t c3 = ctime(f);
  EXPECT_GT(c3, c2) << "rename";
  pause();
  int fd = ::open(f.c_str(), O_WRONLY | O_APPEND);
  ASSERT_EQ(::write(fd, "y", 1), 1);
  ASSERT_EQ(::close(fd), 0);
  std::int64_t c4 = ctime(f);
  EXPECT_GT(c4, c3) << "write";
  pause();
  ASSERT_EQ(::setxattr(f.c_str(), "user.a", "b", 1, 0), 0);
  std::int64_t c5 = ctime(f);
  EXPECT_GT(c5, c4) << "setxattr";
  pause();
  ASSERT_EQ(::unlink(P("h").c_str()), 0);
  std::int64_t c6 = ctime(f);
  EXPECT_GT(c6, c5) << "unlink of another name";
  pause();
  ASSERT_EQ(::truncate(f.c_str(), 0), 0);
  EXPECT_GT(ctime(f), c6) << "truncate";
  // A directory's ctime moves when a name is added to it.
  ASSERT_EQ(::mkdir(P("d").c_str(), 0755), 0);
  std::int64_t d0 = ctime(P("d"));
  pause();
  ASSERT_NO_FATAL_FAILURE(Put(P("d/x"), "x"));
  EXPECT_GT(ctime(P("d")), d0) << "create in a directory";
  // And its mtime, on each change of its names.
  auto mtime = [&](const std::string& p) { return Ns(Lstat(p).st_mtim); };
  std::int64_t m1 = mtime(P("d"));
  pause();
  ASSERT_EQ(::rename(P("d/x").c_str(), P("d/y").c_str()), 0);
  std::int64_t m2 = mtime(P("d"));
  EXPECT_GT(m2, m1) << "rename in a directory";
  pause();
  ASSERT_EQ(::rename(P("d/y").c_str(), P("y").c_str()), 0);
  std::int64_t m3 = mtime(P("d"));
  EXPECT_GT(m3, m2) << "rename out of a directory";
  pause();
  ASSERT_EQ(::link(P("y").c_str(), P("d/z").c_str()), 0);
  std::int64_t m4 = mtime(P("d"));
  EXPECT_GT(m4, m3) << "link into a directory";
  pause();
  ASSERT_EQ(::unlink(P("d/z").c_str()), 0);
  EXPECT_GT(mtime(P("d")), m4) << "unlink in a directory";
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

TEST_F(PosixMountTest, ADirectoryListedWhileItChangesShowsEveryUntouchedNameOnce) {
  // A listing takes many readdir calls; names removed or added meanwhile
  // must not make it skip or repeat the others.
  ASSERT_EQ(::mkdir(P("big").c_str(), 0755), 0);
  constexpr int kN = 600;
  for (int i = 0; i < kN; ++i) {
    ASSERT_EQ(::mknod(P(fmt::format("big/entry-{:04}", i)).c_str(), S_IFREG | 0644, 0), 0)
        << std::strerror(errno);
  }
  DIR* d = ::opendir(P("big").c_str());
  ASSERT_NE(d, nullptr);
  std::map<std::string, int> seen;
  int added = 0;
  long middle = -1;
  std::string at_middle;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    ++seen[name];
    if (seen.size() == kN / 2 && middle < 0) {
      middle = ::telldir(d);
      dirent* next = ::readdir(d);
      ASSERT_NE(next, nullptr);
      at_middle = next->d_name;
      ::seekdir(d, middle);
    }
    // Every third name read is removed at once (as rm does); now and then
    // a new one is made.
    if (name.rfind("entry-", 0) == 0 && std::stoi(name.substr(6)) % 3 == 0) {
      ASSERT_EQ(::unlink(P("big/" + name).c_str()), 0);
    }
    if (seen.size() % 50 == 0) {
      ASSERT_EQ(::mknod(P(fmt::format("big/new-{}", added++)).c_str(), S_IFREG | 0644, 0), 0);
    }
  }
  ::closedir(d);
  for (int i = 0; i < kN; ++i) {
    std::string name = fmt::format("entry-{:04}", i);
    EXPECT_EQ(seen.count(name), 1u) << name << " was not listed";
  }
  for (const auto& [name, n] : seen) EXPECT_EQ(n, 1) << name << " listed more than once";
  EXPECT_FALSE(at_middle.empty());
  EXPECT_EQ(List(P("big")).size(), static_cast<std::size_t>(kN - kN / 3 + added));
  // seekdir to a remembered place goes on from there.
  d = ::opendir(P("big").c_str());
  ASSERT_NE(d, nullptr);
  std::vector<std::string> first;
  long pos = -1;
  while (dirent* e = ::readdir(d)) {
    first.push_back(e->d_name);
    if (first.size() == 100) pos = ::telldir(d);
  }
  ::seekdir(d, pos);
  dirent* e = ::readdir(d);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(std::string(e->d_name), first[100]);
  ::rewinddir(d);
  e = ::readdir(d);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(std::string(e->d_name), first[0]);
  ::closedir(d);
  testing::RunResult r = testing::Run({"/bin/rm", "-r", P("big")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(List(mnt_.string()).empty());
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

TEST_F(PosixMountTest, AWritePastTheLargestStagedOffsetFailsWithEfbig) {
  // The staging file system refuses it (ext4: offsets past 16 TiB): EFBIG,
  // not EIO, and the file is still usable.
  int fd = ::open(P("huge").c_str(), O_CREAT | O_RDWR, 0644);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(Err(::pwrite(fd, "x", 1, 1ll << 50)), EFBIG);
  EXPECT_EQ(::pwrite(fd, "ok", 2, 0), 2);
  EXPECT_EQ(::close(fd), 0);
  EXPECT_EQ(ReadAll(P("huge")), "ok");
}

TEST_F(PosixMountTest, FilesMadeByAnotherUserAreTheirs) {
  ASSERT_EQ(::mkdir(P("pub").c_str(), 0777), 0);
  ASSERT_EQ(::chmod(P("pub").c_str(), 0777), 0);
  ASSERT_NO_FATAL_FAILURE(Put(P("rootfile"), "root's", 0644));
  ASSERT_EQ(::mkdir(P("sg").c_str(), 0777), 0);
  ASSERT_EQ(::chown(P("sg").c_str(), 0, 1234), 0);
  ASSERT_EQ(::chmod(P("sg").c_str(), 02777), 0);
  ASSERT_NO_FATAL_FAILURE(Put(P("pub/suid"), "s", 0755));
  ASSERT_EQ(::chown(P("pub/suid").c_str(), 1000, 1000), 0);
  ASSERT_EQ(::chmod(P("pub/suid").c_str(), 06755), 0);

  std::string pub = P("pub"), root_file = P("rootfile"), sg = P("sg"), suid = P("pub/suid");
  int rc = RunAsUser([&]() -> int {
    int fd = ::open((pub + "/mine").c_str(), O_CREAT | O_WRONLY, 0644);
    if (fd < 0 || ::write(fd, "hi", 2) != 2 || ::close(fd) != 0) return 1;
    if (::mkdir((pub + "/dir").c_str(), 0755) != 0) return 2;
    if (::symlink("mine", (pub + "/link").c_str()) != 0) return 3;
    if (::mkfifo((pub + "/fifo").c_str(), 0600) != 0) return 4;
    if (::open(root_file.c_str(), O_WRONLY) >= 0 || errno != EACCES) return 5;
    if (::chmod(root_file.c_str(), 0666) == 0 || errno != EPERM) return 6;
    if (::unlink(root_file.c_str()) == 0 || errno != EACCES) return 7;
    fd = ::open((sg + "/f").c_str(), O_CREAT | O_WRONLY, 0644);
    if (fd < 0 || ::close(fd) != 0) return 8;
    if (::mkdir((sg + "/d").c_str(), 0755) != 0) return 9;
    if (::chmod((pub + "/mine").c_str(), 0600) != 0) return 10;
    if (::chown((pub + "/mine").c_str(), 0, 0) == 0 || errno != EPERM) return 11;
    fd = ::open(suid.c_str(), O_WRONLY | O_APPEND);
    if (fd < 0 || ::write(fd, "x", 1) != 1 || ::close(fd) != 0) return 12;
    return 0;
  });
  ASSERT_EQ(rc, 0) << "step " << rc << " of the other user failed";

  for (const char* name : {"pub/mine", "pub/dir", "pub/link", "pub/fifo"}) {
    struct stat st = Lstat(P(name));
    EXPECT_EQ(st.st_uid, 1000u) << name;
    EXPECT_EQ(st.st_gid, 1000u) << name;
  }
  EXPECT_EQ(Lstat(P("pub/mine")).st_mode, S_IFREG | 0600);
  EXPECT_EQ(ReadAll(P("pub/mine")), "hi");
  // A set-group-ID directory passes on its group (and the bit, to directories).
  struct stat f = Lstat(P("sg/f")), d = Lstat(P("sg/d"));
  EXPECT_EQ(f.st_uid, 1000u);
  EXPECT_EQ(f.st_gid, 1234u);
  EXPECT_EQ(d.st_gid, 1234u);
  EXPECT_EQ(d.st_mode, S_IFDIR | 02755);
  // A write by an unprivileged user clears set-user-ID (and set-group-ID,
  // as group execute is set).
  EXPECT_EQ(Lstat(P("pub/suid")).st_mode, S_IFREG | 0755);
  EXPECT_EQ(ReadAll(P("pub/suid")), "sx");

  // Root gives a file away; chown clears set-user-ID.
  ASSERT_EQ(::chmod(root_file.c_str(), 04755), 0);
  ASSERT_EQ(::chown(root_file.c_str(), 1000, 1000), 0);
  struct stat r = Lstat(root_file);
  EXPECT_EQ(r.st_uid, 1000u);
  EXPECT_EQ(r.st_gid, 1000u);
  EXPECT_EQ(r.st_mode, S_IFREG | 0755);
  testing::RunResult priv = testing::Run({"/usr/bin/setpriv", "--reuid=1000", "--regid=1000",
                                          "--clear-groups", "/usr/bin/touch", P("pub/bysetpriv")});
  EXPECT_EQ(priv.exit_code, 0) << priv.err;
  EXPECT_EQ(Lstat(P("pub/bysetpriv")).st_uid, 1000u);
}

// ---------------------------------------------------------------------------
// Tools.

TEST_F(WorkloadMountTest, GitMakes200CommitsGcsAndFsckPasses) {
  const char* script = R"SH(
set -e
cd "$1"
git init -q repo
cd repo
g() { git -c user.name=t -c user.email=t@t -c gc.auto=0 "$@"; }
i=1
while [ $i -le 200 ]; do
  echo "change $i" >> "f$((i % 7)).txt"
  if [ $((i % 25)) -eq 0 ]; then
    mkdir -p "dir$i/sub" && echo "$i" > "dir$i/sub/file" && g add -A
  fi
  if [ $i -le 7 ]; then g add -A; fi
  if [ $((i % 40)) -eq 0 ]; then
    g mv "f$((i % 7)).txt" "moved$i.txt" && echo "again $i" > "f$((i % 7)).txt" && g add -A
  fi
  g commit -q -a -m "commit $i"
  i=$((i + 1))
done
test "$(git rev-list --count HEAD)" = 200
g gc -q
git fsck --strict --no-progress
test -z "$(git status --porcelain)"
g checkout -q HEAD~150
g checkout -q -
test "$(git rev-list --count HEAD)" = 200
g fsck --strict --no-progress
)SH";
  auto start = std::chrono::steady_clock::now();
  testing::RunResult r = Sh(script);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_NO_FATAL_FAILURE(Remount());
  r =
      Sh("set -e; cd \"$1/repo\"; git fsck --strict --no-progress; test \"$(git rev-list --count "
         "HEAD)\" = 200; "
         "test -z \"$(git status --porcelain)\"");
  EXPECT_EQ(r.exit_code, 0) << "after the remount: " << r.out << r.err;
  std::cerr << "git workload: "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - start)
                   .count()
            << " ms\n";
}

TEST_F(WorkloadMountTest, TarOfThousandsOfFilesExtractsIdentically) {
  fs::path src = dir_ / "src";
  std::mt19937_64 rng(42);
  std::vector<std::string> files;
  // 2500 files in 275 directories (extraction costs some 15-30 ms a file).
  constexpr int kTop = 25;
  for (int d = 0; d < kTop; ++d) {
    for (int s = 0; s < 10; ++s) {
      fs::path leaf = src / fmt::format("d{:02}", d) / fmt::format("s{}", s);
      fs::create_directories(leaf);
      for (int f = 0; f < 10; ++f) {
        fs::path p = leaf / fmt::format("file{}.dat", f);
        std::size_t size = rng() % 3000;
        ASSERT_NO_FATAL_FAILURE(
            Put(p.string(), Str(testing::RandomBytes(size, rng())), f % 3 ? 0644 : 0755));
        files.push_back(p.string());
      }
    }
  }
  // Some symlinks and hard links.
  for (int i = 0; i < 20; ++i) {
    fs::path leaf = src / fmt::format("d{:02}", i) / "s0";
    ASSERT_EQ(::symlink("file1.dat", (leaf / "link").c_str()), 0);
    ASSERT_EQ(::link((leaf / "file2.dat").c_str(), (leaf / "hard").c_str()), 0);
  }
  testing::RunResult r =
      testing::Run({"/usr/bin/tar", "-cf", (dir_ / "src.tar").string(), "-C", src.string(), "."});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(::mkdir(P("x").c_str(), 0755), 0);
  auto start = std::chrono::steady_clock::now();
  std::string laps;
  auto lap = [&](const char* what) {
    auto now = std::chrono::steady_clock::now();
    laps += fmt::format("{} {} ms, ", what,
                        std::chrono::duration_cast<std::chrono::milliseconds>(now - start).count());
    start = now;
  };
  r = testing::Run({"/usr/bin/timeout", "-k", "10", "300", "/usr/bin/tar", "-xf",
                    (dir_ / "src.tar").string(), "-C", P("x")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  lap("extract");
  r = testing::Run({"/usr/bin/diff", "-r", "--no-dereference", src.string(), P("x")});
  EXPECT_EQ(r.exit_code, 0) << r.out.substr(0, 4000) << r.err;
  lap("diff");
  ASSERT_NO_FATAL_FAILURE(Remount());
  r = testing::Run({"/usr/bin/diff", "-r", "--no-dereference", src.string(), P("x")});
  EXPECT_EQ(r.exit_code, 0) << "after the remount: " << r.out.substr(0, 4000) << r.err;
  lap("remount and diff");

  // Modes, times, link counts and symlinks as tar set them.
  int checked = 0;
  int failed_before =
      ::testing::UnitTest::GetInstance()->current_test_info()->result()->total_part_count();
  for (auto it = fs::recursive_directory_iterator(src); it != fs::recursive_directory_iterator();
       ++it) {
    std::string rel = it->path().lexically_relative(src).string();
    struct stat a = Lstat(it->path().string()), b = Lstat(P("x/" + rel));
    EXPECT_EQ(a.st_mode, b.st_mode) << rel;
    EXPECT_EQ(a.st_mtim.tv_sec, b.st_mtim.tv_sec) << rel;
    if (!S_ISDIR(a.st_mode)) {
      EXPECT_EQ(a.st_nlink, b.st_nlink) << rel;
      EXPECT_EQ(a.st_size, b.st_size) << rel;
    }
    ++checked;
    if (::testing::UnitTest::GetInstance()->current_test_info()->result()->total_part_count() >
        failed_before)
      break;
  }
  EXPECT_EQ(checked, static_cast<int>(files.size()) + kTop * 11 + 40);
  lap("stat walk");
  std::cerr << "tar of " << files.size() << " files: " << laps << "\n";
}

TEST_F(WorkloadMountTest, Sqlite3KeepsTenThousandRowsIntact) {
  const char* script = R"SH(
set -e
cd "$1"
sqlite3 rollback.db <<'EOF'
CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000)
INSERT INTO t SELECT x, hex(randomblob(40)), x * 7 FROM c;
COMMIT;
CREATE INDEX t_n ON t(n);
UPDATE t SET v = 'even' WHERE id % 2 = 0;
DELETE FROM t WHERE id % 1000 = 1;
INSERT INTO t(id, v, n) SELECT id + 20000, v, n FROM t WHERE id % 1000 = 2;
EOF
echo "rollback: $(sqlite3 rollback.db 'PRAGMA integrity_check;') $(sqlite3 rollback.db 'SELECT count(*) FROM t;')"
sqlite3 wal.db <<'EOF'
PRAGMA journal_mode=WAL;
CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000)
INSERT INTO t SELECT x, randomblob(100) FROM c;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
EOF
echo "wal: $(sqlite3 wal.db 'PRAGMA integrity_check;') $(sqlite3 wal.db 'SELECT count(*) FROM t;')"
)SH";
  testing::RunResult r = Sh(script);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("rollback: ok 10000\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("wal: ok 10000\n"), std::string::npos) << r.out;
  std::vector<std::string> names = List(mnt_.string());
  EXPECT_EQ(std::count(names.begin(), names.end(), "rollback.db-journal"), 0)
      << "the journal is gone";
  ASSERT_NO_FATAL_FAILURE(Remount());
  r =
      Sh("cd \"$1\" && for db in rollback wal; do sqlite3 $db.db 'PRAGMA integrity_check; SELECT "
         "count(*) FROM t;'; done");
  EXPECT_EQ(r.out, "ok\n10000\nok\n10000\n") << "after the remount: " << r.err;
}

// ---------------------------------------------------------------------------
// The model: the same random operations on the mount and on a local
// directory give the same results.

// What a model run does: how many names, how deep, how large the writes,
// and how often each kind of operation comes (weights).
struct Profile {
  int names = 4;
  int max_depth = 3;
  std::uint64_t max_offset = 120000;
  std::uint64_t max_len = 200000;  // a quarter of the writes; the rest up to 6000
  std::map<std::string, int> weights;
};

class Model {
 public:
  Model(std::string mount, std::string local, std::uint64_t seed, Profile profile)
      : roots_{std::move(mount), std::move(local)}, rng_(seed), profile_(std::move(profile)) {
    for (const auto& [kind, w] : profile_.weights) total_weight_ += w;
  }

  ~Model() {
    for (Slot& s : slots_) {
      for (int& fd : s.fd) {
        if (fd >= 0) ::close(fd);
      }
    }
  }

  // Runs `steps` operations, comparing the whole trees every `full_every`;
  // returns false (after adding a failure) at the first divergence.
  bool Run(int steps, int full_every) {
    for (int i = 0; i < steps; ++i) {
      step_ = i;
      if (!Step()) return false;
      if ((i + 1) % full_every == 0 && !CompareTrees()) return false;
    }
    for (std::size_t k = 0; k < slots_.size(); ++k) {
      Outcome o[2];
      for (int side = 0; side < 2; ++side) {
        o[side] = Outcome(slots_[k].fd[side] < 0 ? 0 : Err(::close(slots_[k].fd[side])));
        slots_[k].fd[side] = -1;
      }
      if (!(o[0] == o[1])) return Diverged(fmt::format("final close of slot {}", k), o);
    }
    return CompareTrees();
  }

  // Compares the whole trees (after a remount, say).
  bool Same() { return CompareTrees(); }

  // Per kind of operation: how many ran, and how many succeeded.
  std::string Summary() const {
    std::string s;
    for (const auto& [k, v] : counts_)
      s += fmt::format("{} {}/{}, ", k, ok_counts_.count(k) ? ok_counts_.at(k) : 0, v);
    return s;
  }
  std::size_t names_at_end() const { return names_at_end_; }

 private:
  struct Outcome {
    Outcome() = default;
    explicit Outcome(int e, long v = 0, std::string d = {})
        : err(e), value(v), data(std::move(d)) {}
    int err = 0;       // errno, 0 for success
    long value = 0;    // a count (bytes written or read)
    std::string data;  // what was read
    bool operator==(const Outcome& o) const {
      return err == o.err && value == o.value && data == o.data;
    }
  };
  struct Slot {
    int fd[2] = {-1, -1};
  };

  std::uint64_t Rand(std::uint64_t n) { return n == 0 ? 0 : rng_() % n; }

  // Mostly a name that exists (or a new name in a directory that exists),
  // else any name of the profile's.
  std::string RandPath() {
    static const char* kNames[] = {"a", "b", "c", "d", "e", "f"};
    std::uint64_t pick = Rand(10);
    if (pick < 7) {
      std::vector<std::pair<std::string, bool>> all;
      Existing("", &all);
      if (!all.empty()) {
        const auto& [rel, is_dir] = all[Rand(all.size())];
        if (pick < 4 || !is_dir) return rel;
        return rel + "/" + kNames[Rand(static_cast<std::uint64_t>(profile_.names))];
      }
    }
    int depth = 1 + static_cast<int>(Rand(static_cast<std::uint64_t>(profile_.max_depth)));
    if (depth > 1 && Rand(3) == 0) --depth;  // shallow names more often
    std::string p;
    for (int i = 0; i < depth; ++i) {
      if (i) p += "/";
      p += kNames[Rand(static_cast<std::uint64_t>(profile_.names))];
    }
    return p;
  }

  // The names under `rel` of the local tree (symlinks not followed).
  void Existing(const std::string& rel, std::vector<std::pair<std::string, bool>>* out) const {
    for (const std::string& n : Names(Abs(1, rel))) {
      std::string child = rel.empty() ? n : rel + "/" + n;
      struct stat st {};
      bool dir = ::lstat(Abs(1, child).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
      out->emplace_back(child, dir);
      if (dir) Existing(child, out);
    }
  }

  // A new name (mostly): some name in a directory that exists.
  std::string RandNewPath() {
    static const char* kNames[] = {"a", "b", "c", "d", "e", "f"};
    std::vector<std::pair<std::string, bool>> all;
    Existing("", &all);
    std::vector<std::string> dirs = {""};
    for (const auto& [rel, is_dir] : all) {
      if (is_dir) dirs.push_back(rel + "/");
    }
    return dirs[Rand(dirs.size())] + kNames[Rand(static_cast<std::uint64_t>(profile_.names))];
  }

  off_t RandOffset() { return static_cast<off_t>(Rand(3) == 0 ? 0 : Rand(profile_.max_offset)); }

  std::string RandData() {
    std::size_t len = Rand(4) == 0 ? Rand(profile_.max_len) : Rand(6000);
    return Str(testing::RandomBytes(len, rng_()));
  }

  static std::string Parent(const std::string& rel) {
    std::size_t slash = rel.rfind('/');
    return slash == std::string::npos ? "" : rel.substr(0, slash);
  }

  std::string Abs(int side, const std::string& rel) const {
    return rel.empty() ? roots_[side] : roots_[side] + "/" + rel;
  }

  static std::string Hash(const std::string& s) {
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return fmt::format("{:016x}", h);
  }

  static std::vector<std::string> Names(const std::string& dir) {
    std::vector<std::string> names;
    if (DIR* d = ::opendir(dir.c_str())) {
      while (dirent* e = ::readdir(d)) {
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
          names.emplace_back(e->d_name);
      }
      ::closedir(d);
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  // What one name is, for comparison: type and mode, links, owner, size
  // and bytes of files, symlink targets, directory listings (no times, no
  // directory sizes: those differ between file systems).
  std::string Describe(int side, const std::string& rel) const {
    std::string p = Abs(side, rel);
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) return fmt::format("lstat errno {}", errno);
    std::string d = fmt::format("mode {:o} nlink {} uid {} gid {}", st.st_mode, st.st_nlink,
                                st.st_uid, st.st_gid);
    if (S_ISREG(st.st_mode)) {
      std::string data = ReadAll(p, /*uncached=*/side == 0);
      d += fmt::format(" size {} read {} hash {}", st.st_size, data.size(), Hash(data));
    } else if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t n = ::readlink(p.c_str(), buf, sizeof(buf));
      d += fmt::format(" size {} -> '{}'", st.st_size,
                       n < 0 ? "?" : std::string(buf, static_cast<std::size_t>(n)));
    } else if (S_ISDIR(st.st_mode)) {
      d += " [";
      for (const std::string& n : Names(p)) d += n + " ";
      d += "]";
    }
    return d;
  }

  void Walk(int side, const std::string& rel, std::map<std::string, std::string>* out) const {
    (*out)[rel.empty() ? "." : rel] = Describe(side, rel);
    struct stat st {};
    if (::lstat(Abs(side, rel).c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return;
    for (const std::string& n : Names(Abs(side, rel)))
      Walk(side, rel.empty() ? n : rel + "/" + n, out);
  }

  bool CompareTrees() {
    std::map<std::string, std::string> t[2];
    for (int side = 0; side < 2; ++side) Walk(side, "", &t[side]);
    names_at_end_ = t[1].size();
    if (t[0] == t[1]) return true;
    std::string diff;
    int shown = 0;
    std::set<std::string> keys;
    for (const auto& side : t) {
      for (const auto& [k, v] : side) keys.insert(k);
    }
    for (const std::string& k : keys) {
      auto a = t[0].find(k), b = t[1].find(k);
      std::string va = a == t[0].end() ? "(none)" : a->second,
                  vb = b == t[1].end() ? "(none)" : b->second;
      if (va == vb) continue;
      diff += fmt::format("  {}:\n    mount: {}\n    local: {}\n", k, va, vb);
      if (++shown >= 10) break;
    }
    ADD_FAILURE() << "trees differ after step " << step_ << ":\n" << diff << History();
    return false;
  }

  std::string History() const {
    std::string h = "last operations:\n";
    for (const std::string& s : history_) h += "  " + s + "\n";
    return h;
  }

  bool Diverged(const std::string& what, const Outcome o[2]) {
    ADD_FAILURE() << "step " << step_ << ": " << what << ":\n  mount: errno " << o[0].err
                  << " value " << o[0].value << " data " << o[0].data.size() << " bytes "
                  << Hash(o[0].data) << "\n  local: errno " << o[1].err << " value " << o[1].value
                  << " data " << o[1].data.size() << " bytes " << Hash(o[1].data) << "\n"
                  << History();
    return false;
  }

  static Outcome WriteOutcome(int fd, const std::string& data, off_t off, bool positional) {
    ssize_t n = positional ? ::pwrite(fd, data.data(), data.size(), off)
                           : ::write(fd, data.data(), data.size());
    return Outcome(Err(n), static_cast<long>(n));
  }

  static Outcome ReadOutcome(int fd, std::size_t len, off_t off) {
    std::string buf(len, '\0');
    ssize_t n = ::pread(fd, buf.data(), len, off);
    if (n < 0) return Outcome(errno);
    buf.resize(static_cast<std::size_t>(n));
    return Outcome(0, static_cast<long>(n), std::move(buf));
  }

  // Opens (never blocking on a FIFO), does `fn` with the descriptor,
  // closes; the outcome of all three.
  static Outcome WithOpen(const std::string& path, int flags, mode_t mode,
                          const std::function<Outcome(int)>& fn) {
    int fd = ::open(path.c_str(), flags | O_NONBLOCK, mode);
    if (fd < 0) return Outcome(errno, -1);
    Outcome o = fn(fd);
    int c = Err(::close(fd));
    if (c != 0) o.err = 1000 + c;
    return o;
  }

  std::string PickKind() {
    std::uint64_t r = Rand(static_cast<std::uint64_t>(total_weight_));
    for (const auto& [kind, w] : profile_.weights) {
      if (r < static_cast<std::uint64_t>(w)) return kind;
      r -= static_cast<std::uint64_t>(w);
    }
    return profile_.weights.begin()->first;
  }

  bool Step() {
    std::string kind = PickKind(), what;
    // Names that should be new, for the operations that make them.
    bool p_new =
        (kind == "mkdir" || kind == "symlink" || kind == "mkfifo" || kind == "create") && Rand(2);
    bool q_new = (kind == "link" || kind == "rename") && Rand(3) != 0;
    std::string p = p_new ? RandNewPath() : RandPath();
    std::string q = q_new ? RandNewPath() : RandPath();
    std::vector<std::string> touched = {p};
    std::function<Outcome(int side)> op;
    static const mode_t kModes[] = {0644, 0600,  0755,  0700,  0444, 0555,
                                    0711, 04755, 02775, 01777, 0640};
    mode_t mode = kModes[Rand(std::size(kModes))];
    if (kind == "create") {
      int flags = O_CREAT | O_WRONLY;
      if (Rand(5) == 0) flags |= O_EXCL;
      if (Rand(3) == 0) flags |= O_TRUNC;
      std::string data = RandData();
      off_t off = Rand(2) ? 0 : RandOffset();
      what = fmt::format("create {} flags {:o} mode {:o}, write {} at {}", p, flags, mode,
                         data.size(), off);
      op = [=, this](int side) {
        return WithOpen(Abs(side, p), flags, mode,
                        [&](int fd) { return WriteOutcome(fd, data, off, true); });
      };
    } else if (kind == "write") {
      std::string data = RandData();
      off_t off = RandOffset();
      what = fmt::format("write {} at {} to {}", data.size(), off, p);
      op = [=, this](int side) {
        return WithOpen(Abs(side, p), O_WRONLY, 0,
                        [&](int fd) { return WriteOutcome(fd, data, off, true); });
      };
    } else if (kind == "append") {
      std::string data = RandData();
      what = fmt::format("append {} to {}", data.size(), p);
      op = [=, this](int side) {
        return WithOpen(Abs(side, p), O_WRONLY | O_APPEND, 0,
                        [&](int fd) { return WriteOutcome(fd, data, 0, false); });
      };
    } else if (kind == "truncate") {
      off_t len = RandOffset();
      what = fmt::format("truncate {} to {}", p, len);
      op = [=, this](int side) { return Outcome(Err(::truncate(Abs(side, p).c_str(), len))); };
    } else if (kind == "unlink") {
      what = fmt::format("unlink {}", p);
      op = [=, this](int side) { return Outcome(Err(::unlink(Abs(side, p).c_str()))); };
    } else if (kind == "mkdir") {
      mode_t dmode = Rand(2) ? 0755 : mode;
      what = fmt::format("mkdir {} {:o}", p, dmode);
      op = [=, this](int side) { return Outcome(Err(::mkdir(Abs(side, p).c_str(), dmode))); };
    } else if (kind == "rmdir") {
      what = fmt::format("rmdir {}", p);
      op = [=, this](int side) { return Outcome(Err(::rmdir(Abs(side, p).c_str()))); };
    } else if (kind == "rename") {
      unsigned flags = 0;
      std::uint64_t f = Rand(10);
      if (f == 0) flags = RENAME_NOREPLACE;
      if (f == 1) flags = RENAME_EXCHANGE;
      what = fmt::format("rename {} {} flags {}", p, q, flags);
      touched.push_back(q);
      op = [=, this](int side) {
        return Outcome(Err(Renameat2(Abs(side, p), Abs(side, q), flags)));
      };
    } else if (kind == "link") {
      what = fmt::format("link {} {}", p, q);
      touched.push_back(q);
      op = [=, this](int side) {
        return Outcome(Err(::link(Abs(side, p).c_str(), Abs(side, q).c_str())));
      };
    } else if (kind == "symlink") {
      // Relative targets that stay inside the tree (no "..").
      static const char* kTargets[] = {"a", "b", "c/d", "d/a/b", "zz", ".", "a/b"};
      std::string target = kTargets[Rand(std::size(kTargets))];
      what = fmt::format("symlink {} -> {}", p, target);
      op = [=, this](int side) {
        return Outcome(Err(::symlink(target.c_str(), Abs(side, p).c_str())));
      };
    } else if (kind == "chmod") {
      what = fmt::format("chmod {} {:o}", p, mode);
      op = [=, this](int side) { return Outcome(Err(::chmod(Abs(side, p).c_str(), mode))); };
    } else if (kind == "mkfifo") {
      what = fmt::format("mkfifo {}", p);
      op = [=, this](int side) { return Outcome(Err(::mkfifo(Abs(side, p).c_str(), 0644))); };
    } else if (kind == "read") {
      std::size_t len = Rand(profile_.max_offset + profile_.max_len);
      off_t off = RandOffset();
      what = fmt::format("read {} at {} of {}", len, off, p);
      op = [=, this](int side) {
        return WithOpen(Abs(side, p), O_RDONLY, 0,
                        [&](int fd) { return ReadOutcome(fd, len, off); });
      };
    } else if (kind == "xattr") {
      std::string name = fmt::format("user.k{}", Rand(3));
      std::string value = Str(testing::RandomBytes(Rand(100), rng_()));
      int flags = static_cast<int>(Rand(4));  // 0, XATTR_CREATE, XATTR_REPLACE, or remove
      what = fmt::format("{}xattr {} {} {} bytes flags {}", flags == 3 ? "remove" : "set", p, name,
                         value.size(), flags);
      op = [=, this](int side) {
        std::string path = Abs(side, p);
        Outcome o(Err(flags == 3 ? ::removexattr(path.c_str(), name.c_str())
                                 : ::setxattr(path.c_str(), name.c_str(), value.data(),
                                              value.size(), flags)));
        char buf[256];
        ssize_t n = ::getxattr(path.c_str(), name.c_str(), buf, sizeof(buf));
        o.value = n < 0 ? -errno : n;
        if (n > 0) o.data.assign(buf, static_cast<std::size_t>(n));
        n = ::listxattr(path.c_str(), buf, sizeof(buf));
        std::vector<std::string> names;
        for (ssize_t at = 0; at < n; at += static_cast<ssize_t>(std::strlen(buf + at)) + 1) {
          if (std::strncmp(buf + at, "user.", 5) == 0) names.emplace_back(buf + at);
        }
        std::sort(names.begin(), names.end());
        for (const std::string& x : names) o.data += "|" + x;
        return o;
      };
    } else {
      // "slot": descriptors held across operations.
      std::size_t k = Rand(slots_.size());
      std::uint64_t sub = Rand(100);
      touched.clear();
      if (slots_[k].fd[0] < 0 || sub < 25) {
        static const int kFlags[] = {O_RDWR, O_RDONLY, O_WRONLY | O_APPEND, O_RDWR | O_CREAT,
                                     O_RDWR | O_TRUNC};
        int flags = kFlags[Rand(std::size(kFlags))];
        what = fmt::format("slot {} open {} flags {:o}", k, p, flags);
        touched.push_back(p);
        op = [=, this](int side) {
          Outcome o;
          if (slots_[k].fd[side] >= 0) o.value = Err(::close(slots_[k].fd[side]));
          slots_[k].fd[side] = ::open(Abs(side, p).c_str(), flags | O_NONBLOCK, 0644);
          o.err = Err(slots_[k].fd[side]);
          return o;
        };
      } else if (sub < 50) {
        std::string data = RandData();
        off_t off = RandOffset();
        bool positional = Rand(2);
        what = fmt::format("slot {} {} {} at {}", k, positional ? "pwrite" : "write", data.size(),
                           off);
        op = [=, this](int side) {
          return WriteOutcome(slots_[k].fd[side], data, off, positional);
        };
      } else if (sub < 65) {
        std::size_t len = Rand(profile_.max_offset);
        off_t off = RandOffset();
        what = fmt::format("slot {} pread {} at {}", k, len, off);
        op = [=, this](int side) { return ReadOutcome(slots_[k].fd[side], len, off); };
      } else if (sub < 75) {
        off_t len = RandOffset();
        what = fmt::format("slot {} ftruncate {}", k, len);
        op = [=, this](int side) { return Outcome(Err(::ftruncate(slots_[k].fd[side], len))); };
      } else if (sub < 82) {
        what = fmt::format("slot {} fsync + fstat", k);
        op = [=, this](int side) {
          Outcome o(Err(::fsync(slots_[k].fd[side])));
          struct stat st {};
          if (::fstat(slots_[k].fd[side], &st) == 0) {
            o.data = fmt::format("mode {:o} nlink {} size {}", st.st_mode, st.st_nlink,
                                 S_ISDIR(st.st_mode) ? 0 : st.st_size);
          }
          return o;
        };
      } else {
        what = fmt::format("slot {} close", k);
        op = [=, this](int side) {
          Outcome o(Err(::close(slots_[k].fd[side])));
          slots_[k].fd[side] = -1;
          return o;
        };
      }
    }
    ++counts_[kind];
    history_.push_back(fmt::format("{}: {}", step_, what));
    if (history_.size() > 25) history_.pop_front();

    Outcome o[2] = {op(0), op(1)};
    if (!(o[0] == o[1])) return Diverged(what, o);
    if (o[1].err == 0) ++ok_counts_[kind];
    // The names it touched, and their directories.
    for (const std::string& t : touched) {
      for (const std::string& c : {t, Parent(t)}) {
        std::string a = Describe(0, c), b = Describe(1, c);
        if (a != b) {
          ADD_FAILURE() << "step " << step_ << ": after " << what << ", '" << c
                        << "' differs:\n  mount: " << a << "\n  local: " << b << "\n"
                        << History();
          return false;
        }
      }
    }
    return true;
  }

  std::string roots_[2];
  std::mt19937_64 rng_;
  Profile profile_;
  int total_weight_ = 0;
  std::vector<Slot> slots_ = std::vector<Slot>(3);
  std::deque<std::string> history_;
  std::map<std::string, int> counts_, ok_counts_;
  std::size_t names_at_end_ = 0;
  int step_ = 0;
};

// Runs a model under mnt/NAME and dir/NAME; DFS_MODEL_SEED overrides the
// seed (to explore), DFS_MODEL_STEPS the number of steps.
void RunModel(const std::string& mount_root, const fs::path& local_root, std::uint64_t seed,
              int steps, const Profile& profile, const std::function<void()>& remount) {
  if (const char* s = std::getenv("DFS_MODEL_SEED")) seed = std::stoull(s);
  if (const char* s = std::getenv("DFS_MODEL_STEPS")) steps = std::stoi(s);
  ASSERT_EQ(::mkdir(mount_root.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(local_root.c_str(), 0755), 0);
  Model model(mount_root, local_root.string(), seed, profile);
  auto start = std::chrono::steady_clock::now();
  // A write to a FIFO nobody reads any more is EPIPE, compared like any errno.
  struct sigaction ignore {
  }, old{};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &old);
  bool same = model.Run(steps, 100);
  ::sigaction(SIGPIPE, &old, nullptr);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  start)
                .count();
  std::cerr << "model (seed " << seed << ", " << steps
            << " steps): " << (same ? "same" : "diverged") << " in " << ms << " ms, "
            << model.names_at_end() << " names at the end; ok/run: " << model.Summary() << "\n";
  ASSERT_TRUE(same);
  // And all of it after a restart of the node (and with a cold page cache).
  remount();
  EXPECT_TRUE(model.Same()) << "after the remount";
}

TEST_F(ModelMountTest, RandomTreeOperationsMatchALocalDirectory) {
  Profile tree;
  tree.weights = {{"create", 14}, {"write", 8},  {"append", 6},  {"truncate", 5}, {"unlink", 6},
                  {"mkdir", 8},   {"rmdir", 5},  {"rename", 10}, {"link", 4},     {"symlink", 4},
                  {"chmod", 4},   {"mkfifo", 2}, {"read", 4},    {"xattr", 3},    {"slot", 18}};
  RunModel(P("tree"), dir_ / "tree", 20240611, 2000, tree, [&] { Remount(); });
}

TEST_F(ModelMountTest, RandomContentOperationsOnLargeFilesMatchALocalDirectory) {
  // Few names and files of several chunks: writes, truncates and held
  // descriptors re-chunk parts of files and leave holes.
  Profile content;
  content.names = 3;
  content.max_depth = 1;
  content.max_offset = 6 << 20;
  content.max_len = 3 << 20;
  content.weights = {{"create", 6}, {"write", 14}, {"append", 6}, {"truncate", 6}, {"unlink", 2},
                     {"rename", 3}, {"link", 2},   {"read", 6},   {"slot", 30}};
  RunModel(P("content"), dir_ / "content", 77, 400, content, [&] { Remount(); });
}

}  // namespace
}  // namespace dfs
