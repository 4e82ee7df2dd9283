// dfsmount through /dev/fuse (skipped, saying why, where FUSE is not
// available): keys stored with `dfs put` appear as paths of the tree, bytes
// read through the mount are the bytes stored — also when they come from a
// peer — and SIGTERM, fusermount3 -u and a background start all end cleanly.
// (tests/mount_posix_test.cc and tests/mount_posix_tree_test.cc hold the
// POSIX behaviour of the mount, tests/mount_workload_test.cc applications on
// it, tests/mount_model_test.cc a randomized model of it.)
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace dfs {
namespace {

using testing::Mounted;
using testing::Slurp;
using testing::WaitFor;

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class MountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/dev/fuse", R_OK | W_OK) != 0) GTEST_SKIP() << "skipped: /dev/fuse is not usable here";
    if (::geteuid() != 0) GTEST_SKIP() << "skipped: mounting needs root in this test setup";
    ASSERT_EQ(Dfs({"keygen", (dir_ / "net.key").string()}).exit_code, 0);
    ASSERT_EQ(Dfs({"keygen", (dir_ / "volume.key").string()}).exit_code, 0);
    fs::create_directories(mnt_);
  }
  void TearDown() override {
    for (int pid : pids_) testing::Stop(pid, SIGKILL);
    if (Mounted(mnt_)) testing::Run({"/bin/fusermount3", "-uz", mnt_.string()});
  }
  testing::RunResult Dfs(std::vector<std::string> args) {
    args.insert(args.begin(), testing::BinPath("dfs"));
    return testing::Run(args);
  }
  std::vector<std::string> MountArgs(const std::string& data) {
    return {testing::BinPath("dfsmount"), mnt_.string(), "--data", (dir_ / data).string(), "--listen",
            "127.0.0.1:0", "--network-key", (dir_ / "net.key").string(), "--key",
            (dir_ / "volume.key").string()};
  }
  // dfsmount -f on data directory "m" with `extra` arguments; mounted when
  // this returns, its pid in *pid (and in pids_).
  void MountInForeground(const std::vector<std::string>& extra, int* pid,
                         const std::string& log = "mount.log") {
    std::vector<std::string> argv = MountArgs("m");
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back("-f");
    *pid = testing::Spawn(argv, (dir_ / log).string());
    pids_.push_back(*pid);
    ASSERT_TRUE(WaitFor([&] { return Mounted(mnt_); })) << Slurp(dir_ / log);
  }
  // A dfsd on `data` with `replicas`, listening on a free loopback port,
  // whose address is in *listen when this returns.
  void StartPeer(const fs::path& data, const std::string& replicas, std::string* listen) {
    pids_.push_back(testing::Spawn(
        {testing::BinPath("dfsd"), "--data", data.string(), "--listen", "127.0.0.1:0",
         "--network-key", (dir_ / "net.key").string(), "--key", (dir_ / "volume.key").string(),
         "--replicas", replicas},
        (dir_ / "peer.log").string()));
    ASSERT_TRUE(WaitFor([&] { return fs::exists(data / "control.sock"); }));
    auto status = Dfs({"--data", data.string(), "status", "--json"});
    ASSERT_NE(status.out.find("127.0.0.1:"), std::string::npos) << status.out;
    *listen = status.out.substr(status.out.find("127.0.0.1:"));
    *listen = listen->substr(0, listen->find('"'));
  }
  testing::TempDir dir_;
  fs::path mnt_ = dir_ / "mnt";
  std::vector<int> pids_;
};

TEST_F(MountTest, KeysReadBackThroughTheMountAndSigtermUnmounts) {
  int pid = 0;
  ASSERT_NO_FATAL_FAILURE(MountInForeground({}, &pid));
  core::Bytes data = testing::RandomBytes(5 << 20, 1);
  testing::WriteFile(dir_ / "in", data);
  ASSERT_EQ(Dfs({"--data", (dir_ / "m").string(), "put", "docs/a/file.bin", (dir_ / "in").string()}).exit_code, 0);
  ASSERT_EQ(Dfs({"--data", (dir_ / "m").string(), "put", "top.txt", (dir_ / "in").string()}).exit_code, 0);

  EXPECT_TRUE(testing::ReadFile(mnt_ / "docs" / "a" / "file.bin") == data);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(mnt_)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"docs", "top.txt"}));
  EXPECT_TRUE(fs::is_directory(mnt_ / "docs" / "a"));
  EXPECT_EQ(fs::file_size(mnt_ / "top.txt"), data.size());

  // Written through the mount, read with dfs get; long names and missing
  // ones get their own errors.
  core::Bytes small = testing::RandomBytes(100000, 3);
  testing::WriteFile(mnt_ / "docs" / "new.bin", small);
  auto got = Dfs({"--data", (dir_ / "m").string(), "get", "docs/new.bin", (dir_ / "out").string()});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_TRUE(testing::ReadFile(dir_ / "out") == small);
  struct stat st {};
  EXPECT_EQ(::stat((mnt_ / std::string(300, 'x')).c_str(), &st), -1);
  EXPECT_EQ(errno, ENAMETOOLONG);
  EXPECT_EQ(::stat((mnt_ / "nope").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);

  EXPECT_EQ(testing::Stop(pid, SIGTERM), 0) << Slurp(dir_ / "mount.log");
  pids_.clear();
  EXPECT_FALSE(Mounted(mnt_));
}

// SIGINT ends a mount as SIGTERM does, after flushing: what a process
// still holds open and has written is committed before the unmount, and
// the data directory then reads it without the node.
TEST_F(MountTest, SigintCommitsWhatAnOpenFileHoldsAndUnmounts) {
  int pid = 0;
  ASSERT_NO_FATAL_FAILURE(MountInForeground({}, &pid));
  const std::string big(300000, 'b');  // past the in-memory head: it streams
  testing::WriteFile(dir_ / "big.in", core::Bytes(big.begin(), big.end()));
  int holder = testing::Spawn(
      {"/bin/sh", "-c",
       "exec 3>\"$0/held\" 4>\"$0/held-big\"; printf 'still open' >&3; cat \"$1\" >&4; "
       "touch \"$2\"; exec sleep 60",
       mnt_.string(), (dir_ / "big.in").string(), (dir_ / "ready").string()},
      (dir_ / "holder.log").string());
  ASSERT_TRUE(WaitFor([&] { return fs::exists(dir_ / "ready"); })) << Slurp(dir_ / "holder.log");
  EXPECT_EQ(testing::Stop(pid, SIGINT), 0) << Slurp(dir_ / "mount.log");
  pids_.clear();
  testing::Stop(holder, SIGKILL);
  EXPECT_FALSE(Mounted(mnt_));
  const std::string key = (dir_ / "volume.key").string();
  auto got = Dfs({"--data", (dir_ / "m").string(), "--key", key, "get", "held", (dir_ / "out").string()});
  ASSERT_EQ(got.exit_code, 0) << got.err << Slurp(dir_ / "mount.log");
  EXPECT_EQ(Slurp(dir_ / "out"), "still open");
  got = Dfs({"--data", (dir_ / "m").string(), "--key", key, "get", "held-big", (dir_ / "out-big").string()});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(Slurp(dir_ / "out-big"), big);
}

// A mount whose node dies at once (kill -9) never hangs its callers: the
// kernel fails every call on it with ENOTCONN until it is unmounted, and
// with -o auto_unmount it is unmounted by itself.
TEST_F(MountTest, ACrashedMountFailsCallersAtOnceAndAutoUnmountRemovesIt) {
  int pid = 0;
  ASSERT_NO_FATAL_FAILURE(MountInForeground({"-o", "auto_unmount"}, &pid));
  testing::WriteFile(mnt_ / "kept", core::Bytes(1000, 7));
  testing::Stop(pid, SIGKILL);
  pids_.clear();
  EXPECT_TRUE(WaitFor([&] { return !Mounted(mnt_); }, std::chrono::seconds(10)))
      << "-o auto_unmount left the mount of a killed node behind";

  // Without auto_unmount the mount stays until unmounted, and fails fast.
  ASSERT_NO_FATAL_FAILURE(MountInForeground({}, &pid, "mount2.log"));
  EXPECT_EQ(Slurp(mnt_ / "kept"), std::string(1000, 7)) << "the closed file outlived the kill";
  testing::Stop(pid, SIGKILL);
  pids_.clear();
  ASSERT_TRUE(Mounted(mnt_));
  // In a child under `timeout`: a hung call would hang this test otherwise.
  auto t0 = std::chrono::steady_clock::now();
  testing::RunResult stat = testing::Run({"/usr/bin/timeout", "20", "/usr/bin/stat", (mnt_ / "kept").string()});
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(stat.exit_code, 1) << stat.err << " (124: the call hung)";
  EXPECT_NE(stat.err.find("Transport endpoint is not connected"), std::string::npos) << stat.err;
  EXPECT_LT(took, 5.0) << "stat on the dead mount took " << took << " s";
  EXPECT_EQ(testing::Run({"/bin/fusermount3", "-uz", mnt_.string()}).exit_code, 0);
  EXPECT_FALSE(Mounted(mnt_));
}

// An upload that misses its write quorum is never silent: fsync and close
// fail with EIO while the one peer that must take the second copy cannot
// (its disk is full), the mount stays up, and once the peer has room again
// the same file writes and reads back.
TEST_F(MountTest, AnUploadThatMissesItsQuorumFailsFsyncAndCloseWithEio) {
  fs::path peer_data = dir_ / "p";
  testing::ScopedTmpfs tmpfs(peer_data, "48m");
  if (!tmpfs.ok()) GTEST_SKIP() << "mount -t tmpfs failed (no CAP_SYS_ADMIN here?)";
  std::string listen;
  ASSERT_NO_FATAL_FAILURE(StartPeer(peer_data, "2", &listen));
  int pid = 0;
  ASSERT_NO_FATAL_FAILURE(MountInForeground({"--peer", listen, "--replicas", "2"}, &pid));
  ASSERT_TRUE(WaitFor([&] {
    return Dfs({"--data", peer_data.string(), "peers", "--json"}).out.find("\"alive\": true") !=
           std::string::npos;
  }));

  const core::Bytes before = testing::RandomBytes(3 << 20, 11);
  testing::WriteFile(mnt_ / "before", before);  // the quorum of two holds

  // The peer's disk fills up: no second copy can be made.
  testing::Run({"/bin/sh", "-c", "cat /dev/zero > \"$0/filler\"", peer_data.string()});
  const core::Bytes data = testing::RandomBytes(4 << 20, 12);
  int fd = ::open((mnt_ / "new").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  errno = 0;
  EXPECT_EQ(::fsync(fd), -1) << "fsync acknowledged a write only one node holds";
  EXPECT_EQ(errno, EIO);
  // What the failed upload had taken is gone: the open file says so to
  // every later call instead of committing the rest as if it were whole.
  errno = 0;
  EXPECT_EQ(::pwrite(fd, "more", 4, static_cast<off_t>(data.size())), -1);
  EXPECT_EQ(errno, EIO);
  errno = 0;
  EXPECT_EQ(::fsync(fd), -1) << "a second fsync acknowledged the lost write";
  EXPECT_EQ(errno, EIO);
  errno = 0;
  EXPECT_EQ(::close(fd), -1) << "close acknowledged a write only one node holds";
  EXPECT_EQ(errno, EIO);
  EXPECT_TRUE(Mounted(mnt_));
  EXPECT_TRUE(testing::ReadFile(mnt_ / "before") == before);
  std::string log = Slurp(dir_ / "mount.log");
  EXPECT_NE(log.find("required copies"), std::string::npos) << log;
  struct stat st {};
  ASSERT_EQ(::stat((mnt_ / "new").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0) << "the tree keeps the last committed content (the empty new file)";

  // Truncating such a file to nothing cuts what was dropped anyway: through
  // a second descriptor (O_TRUNC) the file is written afresh (small enough
  // to travel in its op, no chunk), and the first descriptor's close has
  // nothing left to fail.
  fd = ::open((mnt_ / "again").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  EXPECT_EQ(::fsync(fd), -1);
  int fresh = ::open((mnt_ / "again").c_str(), O_WRONLY | O_TRUNC);
  ASSERT_GE(fresh, 0) << std::strerror(errno);
  ASSERT_EQ(::write(fresh, "fresh", 5), 5);
  EXPECT_EQ(::close(fresh), 0) << std::strerror(errno);
  EXPECT_EQ(::close(fd), 0) << std::strerror(errno);
  EXPECT_EQ(Slurp(mnt_ / "again"), "fresh");

  // A file changed in place (staged here) keeps its bytes and tries again
  // at each flush: the chunks the failed fsync left on this node are put
  // again, not taken for stored, so close fails too while the peer is full.
  const core::Bytes patch = testing::RandomBytes(256 << 10, 13);
  fd = ::open((mnt_ / "before").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, patch.data(), patch.size(), 1 << 20), static_cast<ssize_t>(patch.size()));
  errno = 0;
  EXPECT_EQ(::fsync(fd), -1);
  EXPECT_EQ(errno, EIO);
  errno = 0;
  EXPECT_EQ(::close(fd), -1) << "close took chunks with one copy for stored";
  EXPECT_EQ(errno, EIO);
  // The tree kept the committed content; once the file's release has
  // dropped what failed, reads through the mount see it again too (the
  // kernel's pages that held the patch are not kept).
  auto got = Dfs({"--data", (dir_ / "m").string(), "get", "before", (dir_ / "out").string()});
  ASSERT_EQ(got.exit_code, 0) << got.err;
  EXPECT_TRUE(testing::ReadFile(dir_ / "out") == before);
  EXPECT_TRUE(WaitFor([&] { return testing::ReadFile(mnt_ / "before") == before; }, 5s));

  // Room again: the same write goes through and reads back.
  fs::remove(peer_data / "filler");
  testing::WriteFile(mnt_ / "new", data);
  fd = ::open((mnt_ / "new").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(::fsync(fd), 0);
  ::close(fd);
  EXPECT_TRUE(testing::ReadFile(mnt_ / "new") == data);
  EXPECT_EQ(testing::Stop(pid, SIGTERM), 0) << Slurp(dir_ / "mount.log");
  std::erase(pids_, pid);
}

// What a shell's `echo x > new` costs in the replicated log: the create and
// the content, two ops per file; O_TRUNC on a file just made adds none (it
// used to add a third). Rewriting an existing file with O_TRUNC commits its
// truncation and new content as one op.
TEST_F(MountTest, ANewFileWrittenWithOTruncCostsTwoOps) {
  int pid = 0;
  ASSERT_NO_FATAL_FAILURE(MountInForeground({}, &pid));
  auto write = [&](const std::string& name, const std::string& text) {
    int fd = ::open((mnt_ / name).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0) << name;
    ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ASSERT_EQ(::close(fd), 0);
  };
  for (int i = 0; i < 10; ++i) write("f" + std::to_string(i), "small " + std::to_string(i));
  write("f0", "again");  // an existing file: truncate and content, one op
  EXPECT_EQ(Slurp(mnt_ / "f0"), "again");
  EXPECT_EQ(testing::Stop(pid, SIGTERM), 0) << Slurp(dir_ / "mount.log");
  pids_.clear();
  auto count = testing::Run({"/usr/bin/sqlite3", (dir_ / "m" / "index.db").string(),
                             "select count(*) from ops"});
  ASSERT_EQ(count.exit_code, 0) << count.err;
  EXPECT_EQ(std::stoi(count.out), 10 * 2 + 1) << "ops in the log";
}

TEST_F(MountTest, InTheBackgroundAFileWrittenOnAPeerIsReadFromIt) {
  std::string listen;
  ASSERT_NO_FATAL_FAILURE(StartPeer(dir_ / "p", "1", &listen));
  std::vector<std::string> argv = MountArgs("m");
  argv.insert(argv.end(), {"--peer", listen});
  testing::RunResult started = testing::Run(argv);  // returns once mounted
  ASSERT_EQ(started.exit_code, 0) << started.err;
  EXPECT_TRUE(Mounted(mnt_));
  core::Bytes data = testing::RandomBytes(3 << 20, 2);
  testing::WriteFile(dir_ / "in", data);
  ASSERT_EQ(Dfs({"--data", (dir_ / "p").string(), "put", "from-peer", (dir_ / "in").string()}).exit_code, 0);
  ASSERT_TRUE(WaitFor([&] { return fs::exists(mnt_ / "from-peer"); }));
  EXPECT_TRUE(testing::ReadFile(mnt_ / "from-peer") == data);
  auto unmount = testing::Run({"/bin/fusermount3", "-u", mnt_.string()});
  EXPECT_EQ(unmount.exit_code, 0) << unmount.err;
  EXPECT_TRUE(WaitFor([&] { return !fs::exists(dir_ / "m" / "control.sock"); }))
      << "the background node stops after the unmount";
}

TEST_F(MountTest, StartupErrorsReachTheTerminal) {
  std::vector<std::string> argv = MountArgs("m");
  argv[1] = (dir_ / "no-such-dir").string();
  testing::RunResult r = testing::Run(argv);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot mount"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir_ / "m" / "control.sock"));
}

}  // namespace
}  // namespace dfs
