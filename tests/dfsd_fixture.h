// The dfsd test fixture: real dfsd processes on 127.0.0.1 in a scratch
// directory, and the `dfs` command line that talks to them. Shared by the
// dfsd_*_test.cc files.
#pragma once

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/test_util.h"

namespace dfs {

namespace dfsd_test {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class DfsdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(Dfs({"keygen", (dir_ / "net.key").string()}).exit_code, 0);
    ASSERT_EQ(Dfs({"keygen", (dir_ / "other.key").string()}).exit_code, 0);
    ASSERT_EQ(Dfs({"keygen", (dir_ / "volume.key").string()}).exit_code, 0);
  }
  // A node holding the volume key.
  int StartKeyed(const std::string& name, const std::vector<std::string>& peers,
                 const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"--key", (dir_ / "volume.key").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    return StartNode(name, peers, "net.key", args);
  }
  void TearDown() override {
    for (int pid : pids_) testing::Stop(pid, SIGKILL);
  }
  testing::RunResult Dfs(std::vector<std::string> args) {
    args.insert(args.begin(), testing::BinPath("dfs"));
    return testing::Run(args);
  }
  // Starts a node; returns its pid once its control socket answers.
  int StartNode(const std::string& name, const std::vector<std::string>& peers,
                const std::string& key = "net.key", const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {testing::BinPath("dfsd"), "--data", Data(name), "--listen",
                                     "127.0.0.1:0", "--network-key", (dir_ / key).string()};
    for (const auto& p : peers) argv.insert(argv.end(), {"--peer", p});
    argv.insert(argv.end(), extra.begin(), extra.end());
    int pid = testing::Spawn(argv, (dir_ / (name + ".log")).string());
    pids_.push_back(pid);
    for (int i = 0; i < 100 && !fs::exists(fs::path(Data(name)) / "control.sock"); ++i) {
      std::this_thread::sleep_for(50ms);
    }
    return pid;
  }
  std::string Data(const std::string& name) { return (dir_ / name).string(); }
  nlohmann::json Status(const std::string& name) {
    auto r = Dfs({"--data", Data(name), "status", "--json"});
    if (r.exit_code != 0) return nlohmann::json();
    return nlohmann::json::parse(r.out);
  }
  std::string Address(const std::string& name) { return Status(name)["listen"]; }
  int AlivePeers(const std::string& name) {
    auto r = Dfs({"--data", Data(name), "peers", "--json"});
    if (r.exit_code != 0) return -1;
    int n = 0;
    for (const auto& p : nlohmann::json::parse(r.out)) n += p["alive"].get<bool>();
    return n;
  }
  void Forget(int pid) { std::erase(pids_, pid); }

  testing::TempDir dir_;
  std::vector<int> pids_;
};

// Writes `mib` MiB of pseudo-random bytes to `path`, 1 MiB at a time.
inline void WriteRandomFile(const fs::path& path, int mib, std::uint64_t seed) {
  std::ofstream out(path, std::ios::binary);
  for (int i = 0; i < mib; ++i) {
    core::Bytes block = testing::RandomBytes(1 << 20, seed * 100000 + static_cast<std::uint64_t>(i));
    out.write(reinterpret_cast<const char*>(block.data()), static_cast<std::streamsize>(block.size()));
  }
}

inline bool SameFile(const fs::path& a, const fs::path& b) {
  std::ifstream fa(a, std::ios::binary), fb(b, std::ios::binary);
  if (!fa || !fb || fs::file_size(a) != fs::file_size(b)) return false;
  std::vector<char> ba(1 << 20), bb(1 << 20);
  while (fa && fb) {
    fa.read(ba.data(), static_cast<std::streamsize>(ba.size()));
    fb.read(bb.data(), static_cast<std::streamsize>(bb.size()));
    if (fa.gcount() != fb.gcount() || !std::equal(ba.begin(), ba.begin() + fa.gcount(), bb.begin())) {
      return false;
    }
  }
  return true;
}

// The chunk files under a node's data directory, sorted.
inline std::vector<fs::path> ChunkFiles(const std::string& data) {
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(data) / "chunks")) {
    if (e.is_regular_file() && e.path().filename().string().size() == 64) {
      files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace dfsd_test
}  // namespace dfs
