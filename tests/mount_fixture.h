// The fixture of the single-node mount tests (mount_posix_test.cc,
// mount_posix_tree_test.cc, mount_workload_test.cc, mount_model_test.cc):
// one dfsmount process per test, mounted through /dev/fuse (skipped, saying
// why, without FUSE or root), and the syscall helpers those tests share.
#pragma once

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <string>
#include <system_error>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace dfs::testing_mount {

// The tests say `using namespace testing_mount;`, which brings these too.
namespace fs = std::filesystem;
using namespace std::chrono_literals;

using testing::Mounted;

// errno of a failed call, 0 for success (the call is evaluated first).
template <typename T>
int Err(T rc) {
  return rc < 0 ? errno : 0;
}

inline std::string Str(const core::Bytes& b) { return std::string(b.begin(), b.end()); }

// The whole content of `path`, or "<errno N>". `uncached`: drop the
// kernel's pages of it first, so that the bytes come from the file system.
inline std::string ReadAll(const std::string& path, bool uncached = false) {
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
inline void Put(const std::string& path, const std::string& data, mode_t mode = 0644) {
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, mode);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()))
      << std::strerror(errno);
  ASSERT_EQ(::fchmod(fd, mode), 0) << std::strerror(errno);
  ASSERT_EQ(::close(fd), 0) << std::strerror(errno);
}

inline struct stat Lstat(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
  return st;
}

inline std::vector<std::string> List(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    names.push_back(e.path().filename().string());
  EXPECT_FALSE(ec) << dir << ": " << ec.message();
  std::sort(names.begin(), names.end());
  return names;
}

inline std::int64_t Ns(const timespec& t) {
  return static_cast<std::int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

inline std::int64_t NowNs() {
  timespec t{};
  ::clock_gettime(CLOCK_REALTIME, &t);
  return Ns(t);
}

inline int Renameat2(const std::string& from, const std::string& to, unsigned flags) {
  return static_cast<int>(
      ::syscall(SYS_renameat2, AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), flags));
}

// Runs `fn` in a forked child as uid/gid 1000 (no supplementary groups);
// returns what fn returned (0: all its checks held), or -1 if it died.
inline int RunAsUser(const std::function<int()>& fn) {
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

}  // namespace dfs::testing_mount
