// End-to-end tests of the `dfs` program: real processes, real files.
#include <fcntl.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <algorithm>
#include <fstream>
#include <iterator>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/test_util.h"

namespace dfs {
namespace {

namespace fs = std::filesystem;
using testing::RunResult;

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = (dir_ / "volume.key").string();
    data_ = (dir_ / "data").string();
    RunResult r = Dfs({"keygen", key_});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  RunResult Dfs(std::vector<std::string> args, const std::string& stdin_path = "") {
    std::vector<std::string> argv = {testing::BinPath("dfs")};
    if (args.empty() || args[0] != "keygen") {
      argv.insert(argv.end(), {"--data", data_, "--key", key_});
    }
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::Run(argv, stdin_path);
  }

  // Writes `size` deterministic bytes to `path` without holding them all.
  static void MakeFile(const fs::path& path, std::size_t size, std::uint64_t seed) {
    std::ofstream f(path, std::ios::binary);
    constexpr std::size_t kBlock = 8 << 20;
    for (std::size_t done = 0; done < size; done += kBlock) {
      core::Bytes b = testing::RandomBytes(std::min(kBlock, size - done), seed + done);
      f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    }
  }
  static bool SameFiles(const fs::path& a, const fs::path& b) {
    return testing::Run({"/usr/bin/cmp", "-s", a.string(), b.string()}).exit_code == 0;
  }
  std::size_t ChunkFiles() {
    std::size_t n = 0;
    for (auto& e : fs::recursive_directory_iterator(fs::path(data_) / "chunks")) {
      if (e.is_regular_file() && e.path().parent_path().filename() != "tmp") ++n;
    }
    return n;
  }
  std::size_t TmpFiles() {
    fs::path tmp = fs::path(data_) / "chunks" / "tmp";
    if (!fs::exists(tmp)) return 0;
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(tmp), {}));
  }

  testing::TempDir dir_;
  std::string key_;
  std::string data_;
};

TEST_F(CliTest, PutGetLsStatHasRm) {
  fs::path in = dir_ / "in.bin", out = dir_ / "out.bin";
  MakeFile(in, (3 << 20) + 5, 1);
  RunResult r = Dfs({"put", "docs/in.bin", in.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "") << "no progress output when stderr is not a terminal";
  r = Dfs({"get", "docs/in.bin", out.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(SameFiles(in, out));

  r = Dfs({"ls"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("docs/in.bin"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(std::to_string((3 << 20) + 5)), std::string::npos) << r.out;

  r = Dfs({"ls", "--json", "docs/"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["key"], "docs/in.bin");
  EXPECT_EQ(j[0]["size"], (3 << 20) + 5);
  EXPECT_EQ(nlohmann::json::parse(Dfs({"ls", "--json", "nothing/"}).out).size(), 0u);

  r = Dfs({"stat", "--json", "docs/in.bin"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["size"], (3 << 20) + 5);
  EXPECT_GE(j["chunks"].get<int>(), 1);
  EXPECT_GT(j["stored_bytes"].get<std::uint64_t>(), (3u << 20) + 5);

  EXPECT_EQ(Dfs({"has", "docs/in.bin"}).exit_code, 0);
  EXPECT_EQ(Dfs({"has", "docs/nope"}).exit_code, 1);
  EXPECT_EQ(Dfs({"has", "../x"}).exit_code, 2);

  ASSERT_EQ(Dfs({"rm", "docs/in.bin"}).exit_code, 0);
  EXPECT_EQ(Dfs({"has", "docs/in.bin"}).exit_code, 1);
  EXPECT_EQ(ChunkFiles(), 0u);
  r = Dfs({"rm", "docs/in.bin"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no such key"), std::string::npos) << r.err;
}

TEST_F(CliTest, StdinAndStdout) {
  fs::path in = dir_ / "in.bin";
  MakeFile(in, 100000, 2);
  ASSERT_EQ(Dfs({"put", "piped"}, in.string()).exit_code, 0);
  RunResult r = Dfs({"get", "piped"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  core::Bytes want = testing::ReadFile(in);
  EXPECT_EQ(r.out, std::string(want.begin(), want.end()));
  ASSERT_EQ(Dfs({"put", "dash", "-"}, in.string()).exit_code, 0);
  EXPECT_EQ(Dfs({"get", "dash", "-"}).out, r.out);
}

TEST_F(CliTest, ErrorsAreOneClearLine) {
  auto one_line = [](const RunResult& r) {
    return !r.err.empty() && r.err.find('\n') == r.err.size() - 1;
  };
  RunResult r = testing::Run({testing::BinPath("dfs"), "--data", data_, "--key",
                              (dir_ / "missing.key").string(), "ls"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(one_line(r)) << r.err;
  EXPECT_NE(r.err.find("missing.key"), std::string::npos) << r.err;

  r = Dfs({"get", "unknown"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(one_line(r)) << r.err;
  EXPECT_NE(r.err.find("no such key"), std::string::npos) << r.err;

  r = Dfs({"keygen", key_});  // refuses to overwrite
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(one_line(r)) << r.err;

  ASSERT_EQ(Dfs({"put", "k", key_}).exit_code, 0);
  std::string other = (dir_ / "other.key").string();
  ASSERT_EQ(Dfs({"keygen", other}).exit_code, 0);
  r = testing::Run({testing::BinPath("dfs"), "--data", data_, "--key", other, "get", "k"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(one_line(r)) << r.err;
  EXPECT_NE(r.err.find("wrong key"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty());

  for (std::string bad : {std::string("../x"), std::string(""), std::string(10240, 'a')}) {
    r = Dfs({"put", bad, key_});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(one_line(r)) << r.err;
    EXPECT_NE(r.err.find("invalid argument"), std::string::npos) << r.err;
  }
}

TEST_F(CliTest, CorruptTruncatedOrMissingChunkFailsGet) {
  fs::path in = dir_ / "in.bin", out = dir_ / "out.bin";
  MakeFile(in, 6 << 20, 3);
  ASSERT_EQ(Dfs({"put", "c", in.string()}).exit_code, 0);
  std::vector<fs::path> chunks;
  for (auto& e : fs::recursive_directory_iterator(fs::path(data_) / "chunks")) {
    if (e.is_regular_file() && e.path().parent_path().filename() != "tmp") chunks.push_back(e.path());
  }
  ASSERT_FALSE(chunks.empty());
  fs::path victim = chunks.front();
  fs::path saved = dir_ / "saved.chunk";
  fs::copy_file(victim, saved);
  auto expect_integrity_error = [&](const std::string& what) {
    RunResult r = Dfs({"get", "c", out.string()});
    EXPECT_EQ(r.exit_code, 1) << what;
    EXPECT_NE(r.err.find("corrupt"), std::string::npos) << what << ": " << r.err;
    EXPECT_NE(r.err.find(victim.filename().string()), std::string::npos) << what << ": " << r.err;
    EXPECT_FALSE(fs::exists(out)) << what << ": a failed get left a file behind";
    RunResult piped = Dfs({"get", "c"});
    EXPECT_EQ(piped.exit_code, 1);
    core::Bytes want = testing::ReadFile(in);
    ASSERT_LE(piped.out.size(), want.size());
    EXPECT_EQ(std::memcmp(piped.out.data(), want.data(), piped.out.size()), 0)
        << what << ": bytes written before the error must be correct";
  };
  {  // flipped byte
    std::fstream f(victim, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(4000);
    char c;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 1);
    f.seekp(4000);
    f.write(&c, 1);
  }
  expect_integrity_error("flipped byte");
  fs::resize_file(victim, fs::file_size(saved) / 2);
  expect_integrity_error("truncated");
  fs::remove(victim);
  expect_integrity_error("missing");
  fs::copy_file(saved, victim);
  ASSERT_EQ(Dfs({"get", "c", out.string()}).exit_code, 0);
  EXPECT_TRUE(SameFiles(in, out));
}

TEST_F(CliTest, NoPlaintextOnDisk) {
  fs::path in = dir_ / "text.txt";
  {
    std::ofstream f(in);
    for (int i = 0; i < 200000; ++i) f << "the quick brown fox line " << i << "\n";
  }
  ASSERT_EQ(Dfs({"put", "text.txt", in.string()}).exit_code, 0);
  for (auto& e : fs::recursive_directory_iterator(data_)) {
    if (!e.is_regular_file()) continue;
    std::ifstream f(e.path(), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(f)), {});
    EXPECT_EQ(bytes.find("quick brown fox"), std::string::npos) << e.path();
  }
}

// kill -9 in the middle of a put: the store opens, the key holds its old or
// new content, and no partial or orphan chunk is left.
TEST_F(CliTest, KillDuringPutLosesNothing) {
  fs::path old_in = dir_ / "old.bin", new_in = dir_ / "new.bin", out = dir_ / "out.bin";
  MakeFile(old_in, 2 << 20, 4);
  MakeFile(new_in, 400 << 20, 5);
  ASSERT_EQ(Dfs({"put", "k", old_in.string()}).exit_code, 0);
  for (int delay_ms : {50, 300, 900}) {
    pid_t pid = ::fork();
    if (pid == 0) {
      int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, 1);
      ::dup2(null, 2);
      std::string bin = testing::BinPath("dfs");
      ::execl(bin.c_str(), bin.c_str(), "--data", data_.c_str(), "--key", key_.c_str(), "put", "k",
              new_in.c_str(), nullptr);
      ::_exit(127);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    ::kill(pid, SIGKILL);
    int status;
    ::waitpid(pid, &status, 0);

    RunResult r = Dfs({"get", "k", out.string()});
    ASSERT_EQ(r.exit_code, 0) << "after kill at " << delay_ms << " ms: " << r.err;
    EXPECT_TRUE(SameFiles(out, old_in) || SameFiles(out, new_in)) << delay_ms;
    EXPECT_EQ(TmpFiles(), 0u);
    auto st = nlohmann::json::parse(Dfs({"stat", "--json", "k"}).out);
    EXPECT_EQ(ChunkFiles(), st["chunks"].get<std::size_t>()) << "orphan chunks after " << delay_ms;
  }
}

// 1 GiB through put and get with bounded memory. Run by the heavy label.
TEST_F(CliTest, GiBPutAndGetWithBoundedMemory) {
  fs::path in = dir_ / "big.bin", out = dir_ / "big.out";
  MakeFile(in, std::size_t{1} << 30, 6);
  RunResult put = Dfs({"put", "big", in.string()});
  ASSERT_EQ(put.exit_code, 0) << put.err;
  RunResult get = Dfs({"get", "big", out.string()});
  ASSERT_EQ(get.exit_code, 0) << get.err;
  EXPECT_TRUE(SameFiles(in, out));
  EXPECT_LT(put.max_rss_kib, 64 * 1024) << "put peak RSS " << put.max_rss_kib << " KiB";
  EXPECT_LT(get.max_rss_kib, 64 * 1024) << "get peak RSS " << get.max_rss_kib << " KiB";
  std::printf("peak RSS: put %lld KiB, get %lld KiB\n", static_cast<long long>(put.max_rss_kib),
              static_cast<long long>(get.max_rss_kib));
}

// A full disk: a clear "no space" error, nothing stored before is lost, and
// no temporary files stay behind. Needs root for a small tmpfs.
TEST_F(CliTest, FullDiskIsReportedAndLosesNothing) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a small tmpfs";
  fs::path small = dir_ / "small";
  testing::ScopedTmpfs tmpfs(small, "24m");
  ASSERT_TRUE(tmpfs.ok());
  data_ = (small / "data").string();
  fs::path first = dir_ / "first.bin", big = dir_ / "big.bin", out = dir_ / "out.bin";
  MakeFile(first, 4 << 20, 7);
  MakeFile(big, 64 << 20, 8);
  ASSERT_EQ(Dfs({"put", "first", first.string()}).exit_code, 0);
  RunResult r = Dfs({"put", "big", big.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no space"), std::string::npos) << r.err;
  EXPECT_EQ(Dfs({"has", "big"}).exit_code, 1);
  ASSERT_EQ(Dfs({"get", "first", out.string()}).exit_code, 0);
  EXPECT_TRUE(SameFiles(first, out));
  EXPECT_EQ(TmpFiles(), 0u);
}

TEST_F(CliTest, ProgressIsShownOnATerminal) {
  fs::path in = dir_ / "in.bin";
  MakeFile(in, 32 << 20, 9);
  int master = -1;
  pid_t pid = ::forkpty(&master, nullptr, nullptr, nullptr);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    std::string bin = testing::BinPath("dfs");
    ::execl(bin.c_str(), bin.c_str(), "--data", data_.c_str(), "--key", key_.c_str(), "put", "p",
            in.c_str(), nullptr);
    ::_exit(127);
  }
  std::string seen;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(master, buf, sizeof(buf));
    if (n <= 0) break;  // EIO once the child has exited
    seen.append(buf, static_cast<std::size_t>(n));
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(master);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << seen;
  EXPECT_NE(seen.find("put p"), std::string::npos) << seen;
  EXPECT_NE(seen.find("100%"), std::string::npos) << seen;
  EXPECT_NE(seen.find("32.0 MiB"), std::string::npos) << seen;
}

TEST_F(CliTest, ExistingDataDirectoryKeepsItsMode) {
  fs::create_directories(data_);
  fs::permissions(data_, fs::perms(0755));
  ASSERT_EQ(Dfs({"put", "k", key_}).exit_code, 0);
  EXPECT_EQ(fs::status(data_).permissions(), fs::perms(0755));
  fs::remove_all(data_);
  ASSERT_EQ(Dfs({"put", "k", key_}).exit_code, 0);
  EXPECT_EQ(fs::status(data_).permissions(), fs::perms(0700)) << "a new data directory is private";
  RunResult r = testing::Run({testing::BinPath("dfs"), "--data", key_, "--key", key_, "ls"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not a directory"), std::string::npos) << r.err;
}

TEST_F(CliTest, EveryCommandHasHelp) {
  for (std::string cmd : {"keygen", "put", "get", "rm", "has", "ls", "stat"}) {
    RunResult r = testing::Run({testing::BinPath("dfs"), cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0) << cmd;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << cmd << ": " << r.out;
  }
  for (std::string prog : {"dfs", "dfsd", "dfsmount"}) {
    RunResult r = testing::Run({testing::BinPath(prog), "--help"});
    EXPECT_EQ(r.exit_code, 0) << prog;
  }
}

}  // namespace
}  // namespace dfs
