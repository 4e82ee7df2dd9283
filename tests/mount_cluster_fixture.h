// The fixture of the tests of one volume mounted on several nodes
// (mount_cluster_test.cc, mount_cluster_conflict_test.cc): two dfsmount
// nodes A and B and a keyless dfsd C as real processes on 127.0.0.1, peered
// through C (skipped, saying why, without /dev/fuse or root); and the
// helpers those tests share to write, label and walk the files on a mount.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/test_util.h"

namespace dfs::testing_cluster {

// The tests say `using namespace testing_cluster;`, which brings these too.
namespace fs = std::filesystem;
using namespace std::chrono_literals;

using testing::Mounted;
using testing::Slurp;
using testing::WaitFor;

// Whole-file I/O by syscalls, reporting errno instead of throwing: the
// files live on mounts that other nodes change under us.
inline int WriteContent(const fs::path& p, const std::string& data,
                        int flags = O_WRONLY | O_CREAT | O_TRUNC) {
  int fd = ::open(p.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return e;
    }
    done += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0) return errno;
  return 0;
}

inline int ReadContent(const fs::path& p, std::string* out) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  out->clear();
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return e;
    }
    if (n == 0) break;
    out->append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return 0;
}

inline std::uint64_t Fnv(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// What a test message shows of some bytes: the label line of Content(),
// the size and a hash (never the bytes themselves).
inline std::string Label(const std::string& s) {
  std::string head = s.substr(0, std::min<std::size_t>(s.find('\n'), 40));
  for (char& c : head) {
    if (static_cast<unsigned char>(c) < 32 || static_cast<unsigned char>(c) > 126) c = '?';
  }
  return fmt::format("\"{}\" ({} bytes, fnv {:016x})", head, s.size(), Fnv(s));
}

// Distinct, recognisable file contents: a label, then deterministic bytes.
inline std::string Content(const std::string& label, std::size_t size) {
  core::Bytes b = testing::RandomBytes(size, Fnv(label));
  std::string s = label + "\n";
  s.append(reinterpret_cast<const char*>(b.data()), b.size());
  return s;
}

// One mount's tree: path -> "d" for a directory, "f SIZE HASH" for a
// regular file, "other MODE" for anything else; and every file's bytes.
struct Tree {
  std::map<std::string, std::string> entries;
  std::map<std::string, std::string> contents;  // path -> bytes
  std::string error;                            // set when the walk failed (an I/O error, a cycle)

  std::string Dump() const {
    std::string s;
    for (const auto& [p, e] : entries) s += "  " + p + "  " + e + "\n";
    return s + (error.empty() ? "" : "  error: " + error + "\n");
  }
};

inline void WalkDir(const fs::path& root, const std::string& rel,
                    std::set<std::pair<dev_t, ino_t>>& seen, int depth, Tree* t) {
  if (!t->error.empty()) return;
  if (depth > 32) {
    t->error = "deeper than 32 levels at " + rel + " (a cycle?)";
    return;
  }
  fs::path dir = rel.empty() ? root : root / rel;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    t->error = fmt::format("opendir {}: {}", rel, std::strerror(errno));
    return;
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (const std::string& n : names) {
    std::string path = rel.empty() ? n : rel + "/" + n;
    struct stat st {};
    if (::lstat((root / path).c_str(), &st) != 0) {
      t->error = fmt::format("lstat {}: {}", path, std::strerror(errno));
      return;
    }
    if (S_ISDIR(st.st_mode)) {
      if (!seen.insert({st.st_dev, st.st_ino}).second) {
        t->error = "directory " + path + " reached twice (a cycle)";
        return;
      }
      t->entries[path] = "d";
      WalkDir(root, path, seen, depth + 1, t);
      if (!t->error.empty()) return;
    } else if (S_ISREG(st.st_mode)) {
      std::string data;
      if (int err = ReadContent(root / path, &data); err != 0) {
        t->error = fmt::format("read {}: {}", path, std::strerror(err));
        return;
      }
      t->entries[path] = fmt::format("f {} {:016x}", data.size(), Fnv(data));
      if (static_cast<std::uint64_t>(st.st_size) != data.size()) {
        t->entries[path] += fmt::format(" (stat says {})", st.st_size);
      }
      t->contents[path] = std::move(data);
    } else {
      t->entries[path] = fmt::format("other {:o}", st.st_mode);
    }
  }
}

inline Tree Walk(const fs::path& root) {
  Tree t;
  std::set<std::pair<dev_t, ino_t>> seen;
  struct stat st {};
  if (::stat(root.c_str(), &st) != 0) {
    t.error = fmt::format("stat {}: {}", root.string(), std::strerror(errno));
    return t;
  }
  seen.insert({st.st_dev, st.st_ino});
  WalkDir(root, "", seen, 0, &t);
  return t;
}

class MountClusterTest : public ::testing::Test {
 protected:
  struct Node {
    int pid = 0;
    bool mount = false;
    std::vector<std::string> argv;
  };

  void SetUp() override {
    if (::access("/dev/fuse", R_OK | W_OK) != 0)
      GTEST_SKIP() << "skipped: /dev/fuse is not usable here";
    if (::geteuid() != 0) GTEST_SKIP() << "skipped: mounting needs root in this test setup";
    ASSERT_EQ(Dfs({"keygen", (dir_ / "net.key").string()}).exit_code, 0);
    ASSERT_EQ(Dfs({"keygen", (dir_ / "volume.key").string()}).exit_code, 0);
  }

  void TearDown() override {
    for (auto& [name, n] : nodes_) {
      if (n.pid > 0) testing::Stop(n.pid, SIGKILL);
      n.pid = 0;
    }
    for (auto& [name, n] : nodes_) {
      if (n.mount && Mounted(Mnt(name)))
        testing::Run({"/bin/fusermount3", "-uz", Mnt(name).string()});
    }
  }

  testing::RunResult Dfs(std::vector<std::string> args) {
    args.insert(args.begin(), testing::BinPath("dfs"));
    return testing::Run(args);
  }
  testing::RunResult Sh(const std::string& script) {
    return testing::Run({"/bin/sh", "-c", script});
  }

  std::string Data(const std::string& name) { return (dir_ / name).string(); }
  fs::path Mnt(const std::string& name) { return dir_ / (name + "-mnt"); }
  std::string Log(const std::string& name) { return Slurp(dir_ / (name + ".log")); }
  std::string Logs() {
    std::string s;
    for (const auto& [name, n] : nodes_) {
      std::string log = Log(name);
      if (log.size() > 6000) log = "...\n" + log.substr(log.size() - 6000);
      s += "--- " + name + ".log\n" + log;
    }
    return s;
  }

  nlohmann::json Status(const std::string& name) {
    auto r = Dfs({"--data", Data(name), "status", "--json"});
    if (r.exit_code != 0) return nlohmann::json();
    try {
      return nlohmann::json::parse(r.out);
    } catch (const std::exception&) {
      return nlohmann::json();
    }
  }
  std::string Address(const std::string& name) {
    nlohmann::json s = Status(name);
    return s.is_object() && s["listen"].is_string() ? s["listen"].get<std::string>() : "";
  }
  // How many of its peers `name` sees alive (-1: no answer).
  int AlivePeers(const std::string& name) {
    nlohmann::json s = Status(name);
    if (!s.is_object() || !s["peers"].is_array()) return -1;
    return static_cast<int>(
        std::count_if(s["peers"].begin(), s["peers"].end(),
                      [](const nlohmann::json& p) { return p["alive"].get<bool>(); }));
  }

  std::vector<std::string> NodeArgs(const std::string& name, const std::vector<std::string>& peers,
                                    int replicas, bool keyed) {
    std::vector<std::string> a = {"--data",        Data(name),
                                  "--listen",      "127.0.0.1:0",
                                  "--network-key", (dir_ / "net.key").string(),
                                  "--replicas",    std::to_string(replicas)};
    if (keyed) a.insert(a.end(), {"--key", (dir_ / "volume.key").string()});
    for (const auto& p : peers) a.insert(a.end(), {"--peer", p});
    return a;
  }

  // Starts (or restarts, with the same arguments) node `name`; true once it
  // answers status (and, for a mount, once it is mounted).
  bool Start(const std::string& name) {
    Node& n = nodes_[name];
    n.pid = testing::Spawn(n.argv, (dir_ / (name + ".log")).string());
    return WaitFor([&] { return (!n.mount || Mounted(Mnt(name))) && !Address(name).empty(); }, 20s,
                   100ms);
  }
  bool StartDfsd(const std::string& name, const std::vector<std::string>& peers, int replicas) {
    Node& n = nodes_[name];
    n.argv = {testing::BinPath("dfsd")};
    for (auto& a : NodeArgs(name, peers, replicas, /*keyed=*/false)) n.argv.push_back(a);
    return Start(name);
  }
  bool StartMount(const std::string& name, const std::vector<std::string>& peers, int replicas) {
    fs::create_directories(Mnt(name));
    Node& n = nodes_[name];
    n.mount = true;
    n.argv = {testing::BinPath("dfsmount"), Mnt(name).string()};
    for (auto& a : NodeArgs(name, peers, replicas, /*keyed=*/true)) n.argv.push_back(a);
    n.argv.push_back("-f");
    return Start(name);
  }
  int Pid(const std::string& name) { return nodes_[name].pid; }
  // SIGKILL, as a crash: the mount is left dead (ENOTCONN) until unmounted.
  void Kill(const std::string& name) {
    Node& n = nodes_[name];
    EXPECT_EQ(testing::Stop(n.pid, SIGKILL), 128 + SIGKILL);
    n.pid = 0;
  }

  // A and B (mounts) and C (a keyless dfsd), A and B peered through C;
  // returns once every node sees both others alive (a fatal failure if not).
  void StartCluster(int replicas) {
    ASSERT_TRUE(StartDfsd("c", {}, replicas)) << Logs();
    std::string c = Address("c");
    ASSERT_TRUE(StartMount("a", {c}, replicas)) << Logs();
    ASSERT_TRUE(StartMount("b", {c}, replicas)) << Logs();
    ASSERT_TRUE(WaitFor(
        [&] { return AlivePeers("a") == 2 && AlivePeers("b") == 2 && AlivePeers("c") == 2; }, 20s,
        100ms))
        << "a sees " << AlivePeers("a") << ", b " << AlivePeers("b") << ", c " << AlivePeers("c")
        << "\n"
        << Logs();
  }

  // Polls until both mounts show the same tree (and `also` holds of it).
  bool Converge(Tree* a, Tree* b, std::chrono::milliseconds limit,
                const std::function<bool(const Tree&)>& also = nullptr) {
    return WaitFor(
        [&] {
          *a = Walk(Mnt("a"));
          *b = Walk(Mnt("b"));
          return a->error.empty() && b->error.empty() && a->entries == b->entries &&
                 (!also || also(*a));
        },
        limit, 500ms);
  }

  testing::TempDir dir_;
  std::map<std::string, Node> nodes_;
};

}  // namespace dfs::testing_cluster
