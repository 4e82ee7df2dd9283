// Mounts of one volume on several nodes, as real processes on 127.0.0.1
// (skipped, saying why, without /dev/fuse or root): two dfsmount nodes A and
// B and a keyless dfsd C, peered through C. A gigabyte goes in through `cp`
// on one mount and comes out byte for byte through `cat` on the other, with
// every node's peak memory bounded; conflicting renames, moves and writes
// made at once on both mounts converge on one tree with no cycle that loses
// nothing; a mount goes on serving and accepting writes while another node
// is killed with SIGKILL, and that node's remount catches up; and a change
// on one mount reaches the other's kernel caches within seconds. (The 1 GiB
// test takes about a minute on 2 cores; the rest take seconds.)
#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"

namespace dfs {
namespace {

using testing::WaitFor;

namespace fs = std::filesystem;
using namespace std::chrono_literals;

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

using testing::Mounted;
using testing::Slurp;

// Whole-file I/O by syscalls, reporting errno instead of throwing: the
// files live on mounts that other nodes change under us.
int WriteContent(const fs::path& p, const std::string& data,
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

int ReadContent(const fs::path& p, std::string* out) {
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

std::uint64_t Fnv(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// What a test message shows of some bytes: the label line of Content(),
// the size and a hash (never the bytes themselves).
std::string Label(const std::string& s) {
  std::string head = s.substr(0, std::min<std::size_t>(s.find('\n'), 40));
  for (char& c : head) {
    if (static_cast<unsigned char>(c) < 32 || static_cast<unsigned char>(c) > 126) c = '?';
  }
  return fmt::format("\"{}\" ({} bytes, fnv {:016x})", head, s.size(), Fnv(s));
}

std::string ReadOrError(const fs::path& p) {
  std::string s;
  int e = ReadContent(p, &s);
  return e == 0 ? s : "<" + std::string(std::strerror(e)) + ">";
}

bool Exists(const fs::path& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

// Distinct, recognisable file contents: a label, then deterministic bytes.
std::string Content(const std::string& label, std::size_t size) {
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

void WalkDir(const fs::path& root, const std::string& rel, std::set<std::pair<dev_t, ino_t>>& seen,
             int depth, Tree* t) {
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

Tree Walk(const fs::path& root) {
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

// VmHWM (peak resident set) of a live process, in KiB; -1 if unknown.
long PeakRssKib(int pid) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
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

// --- 1. A gigabyte through cp on A, out through cat on B ----------------

TEST_F(MountClusterTest, AGigabyteCopiedInOnOneMountCatsOutIdenticalOnAnother) {
  constexpr std::uint64_t kSize = 1ull << 30;
  ASSERT_NO_FATAL_FAILURE(StartCluster(/*replicas=*/2));

  // The source: xorshift bytes, streamed to disk (no 1 GiB buffer).
  auto t0 = std::chrono::steady_clock::now();
  {
    std::FILE* f = std::fopen((dir_ / "src").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    std::vector<std::uint64_t> buf(1 << 19);  // 4 MiB
    std::uint64_t x = 0x9E3779B97F4A7C15ull;
    for (std::uint64_t done = 0; done < kSize; done += buf.size() * 8) {
      for (auto& w : buf) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w = x;
      }
      ASSERT_EQ(std::fwrite(buf.data(), 8, buf.size(), f), buf.size());
    }
    ASSERT_EQ(std::fclose(f), 0);
  }
  double gen_s = Seconds(t0);
  t0 = std::chrono::steady_clock::now();
  testing::RunResult src_hash = Sh("sha256sum < " + (dir_ / "src").string());
  ASSERT_EQ(src_hash.exit_code, 0) << src_hash.err;
  std::string want = src_hash.out.substr(0, 64);
  double hash_s = Seconds(t0);

  t0 = std::chrono::steady_clock::now();
  testing::RunResult cp =
      testing::Run({"/bin/cp", (dir_ / "src").string(), (Mnt("a") / "big").string()});
  double cp_s = Seconds(t0);
  ASSERT_EQ(cp.exit_code, 0) << cp.err << Logs();

  // The op reaches B on its own; no read of B's until the name is there.
  t0 = std::chrono::steady_clock::now();
  struct stat st {};
  ASSERT_TRUE(WaitFor(
      [&] { return ::stat((Mnt("b") / "big").c_str(), &st) == 0 && st.st_size == (off_t)kSize; },
      30s, 200ms))
      << "B does not show the file: size " << st.st_size << "\n"
      << Logs();
  double appear_s = Seconds(t0);

  t0 = std::chrono::steady_clock::now();
  testing::RunResult cat = Sh("cat " + (Mnt("b") / "big").string() + " | sha256sum");
  double cat_s = Seconds(t0);
  ASSERT_EQ(cat.exit_code, 0) << cat.err << Logs();
  EXPECT_EQ(cat.out.substr(0, 64), want)
      << "the bytes cat reads on B are not the bytes cp wrote on A\n"
      << Logs();

  std::map<std::string, long> rss;
  for (const char* n : {"a", "b", "c"}) rss[n] = PeakRssKib(Pid(n));
  std::cout << fmt::format(
      "[ timing ] 1 GiB: generate {:.1f} s, sha256 {:.1f} s, cp on A {:.1f} s ({:.0f} MiB/s), on B "
      "after "
      "{:.1f} s, cat|sha256sum on B {:.1f} s ({:.0f} MiB/s); peak RSS A (dfsmount) {} MiB, B "
      "(dfsmount) {} "
      "MiB, C (dfsd) {} MiB\n",
      gen_s, hash_s, cp_s, 1024 / cp_s, appear_s, cat_s, 1024 / cat_s, rss["a"] / 1024,
      rss["b"] / 1024, rss["c"] / 1024);
  RecordProperty("cp_seconds", fmt::format("{:.1f}", cp_s));
  RecordProperty("cat_seconds", fmt::format("{:.1f}", cat_s));
  for (const auto& [n, kib] : rss) {
    RecordProperty("peak_rss_kib_" + n, std::to_string(kib));
    EXPECT_GT(kib, 0) << n;
    EXPECT_LT(kib, 256 * 1024) << "node " << n << " peaked at " << kib / 1024 << " MiB";
  }
}

// --- 2. Conflicting changes made at once on both mounts -------------------

// One side's part of a conflict round: what it did and what it wrote.
struct Side {
  fs::path m;                                        // its mount / the round's directory
  std::string who;                                   // "A" or "B"
  std::vector<std::pair<std::string, int>> results;  // step -> errno (0: done)
  std::set<std::string> written;                     // contents whose write and close succeeded
  std::string shared;                                // what it wrote to shared.txt, if it did

  bool Ok(const std::string& step) const {
    for (const auto& [w, e] : results) {
      if (w == step) return e == 0;
    }
    return false;
  }
};

// The entries of `t` under `prefix` + "/", with the prefix taken off.
Tree Subtree(const Tree& t, const std::string& prefix) {
  Tree sub;
  std::string p = prefix + "/";
  for (const auto& [path, e] : t.entries) {
    if (path.rfind(p, 0) == 0) sub.entries[path.substr(p.size())] = e;
  }
  for (const auto& [path, c] : t.contents) {
    if (path.rfind(p, 0) == 0) sub.contents[path.substr(p.size())] = c;
  }
  return sub;
}

// The starting tree of a round, under `dir` of a mount.
void MakeRoundTree(const fs::path& dir) {
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  ASSERT_EQ(WriteContent(dir / "r.txt", Content("r original", 3000)), 0);
  ASSERT_EQ(::mkdir((dir / "x").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir / "y").c_str(), 0755), 0);
  ASSERT_EQ(WriteContent(dir / "x" / "mark", Content("x marker", 100)), 0);
  ASSERT_EQ(WriteContent(dir / "y" / "mark", Content("y marker", 100)), 0);
  ASSERT_EQ(WriteContent(dir / "shared.txt", Content("shared original", 5000)), 0);
  ASSERT_EQ(::mkdir((dir / "gone").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir / "keep").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir / "saved").c_str(), 0755), 0);
  ASSERT_EQ(WriteContent(dir / "keep" / "victim.txt", Content("victim", 700)), 0);
  ASSERT_EQ(::mkdir((dir / "deep").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((dir / "deep" / "sub").c_str(), 0755), 0);
  ASSERT_EQ(WriteContent(dir / "deep" / "sub" / "g", Content("deep g", 100)), 0);
  for (const char* c : {"c1", "c2", "c3"}) {
    ASSERT_EQ(::mkdir((dir / c).c_str(), 0755), 0);
    ASSERT_EQ(WriteContent(dir / c / "mark", Content(std::string(c) + " marker", 100)), 0);
  }
  ASSERT_EQ(::mkdir((dir / "mv").c_str(), 0755), 0);
}
constexpr std::size_t kRoundTreeEntries = 21;  // with the round's directory

// The conflicting steps of one round. Each step starts on both sides at one
// moment (a barrier between steps); B starts each `skew` later, so that with
// skew 0 neither side has the other's op yet and with a larger skew the
// ops have mostly arrived.
void RunRound(Side& s, bool is_a, std::barrier<>& sync, std::chrono::milliseconds skew) {
  auto step = [&](const std::string& what, const std::function<int()>& fn) {
    sync.arrive_and_wait();
    if (!is_a && skew.count() > 0) std::this_thread::sleep_for(skew);
    s.results.emplace_back(what, fn());
  };
  auto write = [&](const fs::path& p, const std::string& data,
                   int flags = O_WRONLY | O_CREAT | O_TRUNC) {
    int e = WriteContent(p, data, flags);
    if (e == 0) s.written.insert(data);
    return e;
  };
  auto err = [](int r) { return r == 0 ? 0 : errno; };
  const std::string me = s.who;
  // Both rename one file, to different names.
  step("rename r.txt", [&] {
    return err(::rename((s.m / "r.txt").c_str(), (s.m / ("r-by-" + me + ".txt")).c_str()));
  });
  // A moves x into y while B moves y into x.
  step("cross moves", [&] {
    return is_a ? err(::rename((s.m / "x").c_str(), (s.m / "y" / "x").c_str()))
                : err(::rename((s.m / "y").c_str(), (s.m / "x" / "y").c_str()));
  });
  // Both overwrite one file (a last-writer-wins register).
  step("overwrite shared.txt", [&] {
    std::string data = Content("shared from " + me, is_a ? 4000 : 5000);
    int e = WriteContent(s.m / "shared.txt", data);
    if (e == 0) s.shared = data;
    return e;
  });
  // A removes an empty directory while B creates a file in it.
  step("rmdir gone / create in it", [&] {
    return is_a ? err(::rmdir((s.m / "gone").c_str()))
                : write(s.m / "gone" / "born.txt", Content("born in gone", 2000));
  });
  // Both create one new name (exclusively: a side that finds the other's
  // file there already has written nothing).
  step("create same.txt", [&] {
    return write(s.m / "same.txt", Content("same from " + me, 6000), O_WRONLY | O_CREAT | O_EXCL);
  });
  // Both make one new directory, each a file in it.
  step("mkdir newdir + file", [&] {
    if (::mkdir((s.m / "newdir").c_str(), 0755) != 0 && errno != EEXIST) return errno;
    return write(s.m / "newdir" / ("from-" + me + ".txt"), Content("newdir file from " + me, 1500));
  });
  // A removes a file that B moves to another directory.
  step("unlink / rename victim", [&] {
    return is_a ? err(::unlink((s.m / "keep" / "victim.txt").c_str()))
                : err(::rename((s.m / "keep" / "victim.txt").c_str(),
                               (s.m / "saved" / "victim.txt").c_str()));
  });
  // A removes a whole subtree (rm -r, bottom up) while B makes a file at
  // its bottom.
  step("rm -r deep / create in deep/sub", [&] {
    if (!is_a) return write(s.m / "deep" / "sub" / "new.txt", Content("new in deep/sub", 900));
    int e = err(::unlink((s.m / "deep" / "sub" / "g").c_str()));
    if (e == 0) e = err(::rmdir((s.m / "deep" / "sub").c_str()));
    if (e == 0) e = err(::rmdir((s.m / "deep").c_str()));
    return e;
  });
  // A three-cycle of moves: c1 into c2 on A; c2 into c3, c3 into c1 on B.
  step("three-cycle moves", [&] {
    if (is_a) return err(::rename((s.m / "c1").c_str(), (s.m / "c2" / "c1").c_str()));
    int e = err(::rename((s.m / "c2").c_str(), (s.m / "c3" / "c2").c_str()));
    if (e == 0) e = err(::rename((s.m / "c3").c_str(), (s.m / "c1" / "c3").c_str()));
    return e;
  });
  // A renames a directory while B makes a file in it.
  step("rename mv / create in mv", [&] {
    return is_a ? err(::rename((s.m / "mv").c_str(), (s.m / "mv2").c_str()))
                : write(s.m / "mv" / "inside.txt", Content("inside mv", 800));
  });
  // A batch with no barrier: both fill one new directory while B renames it.
  step("batch", [&] {
    int first = 0;
    auto keep = [&](int e) {
      if (first == 0) first = e;
    };
    if (::mkdir((s.m / "batch").c_str(), 0755) != 0 && errno != EEXIST) keep(errno);
    for (int i = 0; i < 5; ++i) {
      keep(write(s.m / "batch" / fmt::format("{}-{}.txt", me, i),
                 Content(fmt::format("batch {} {}", me, i), 300)));
    }
    if (!is_a) keep(err(::rename((s.m / "batch").c_str(), (s.m / "batch-renamed").c_str())));
    return first;
  });
}

// What must hold of a round's part `t` of the converged tree.
void CheckRound(const Tree& t, const Side& a, const Side& b, const std::string& context) {
  std::multiset<std::string> found;
  for (const auto& [p, c] : t.contents) found.insert(c);
  // Nothing written is lost (shared.txt aside: one overwrite wins, whole).
  for (const Side* s : {&a, &b}) {
    for (const std::string& c : s->written) {
      EXPECT_EQ(found.count(c), 1u)
          << s->who << " wrote " << Label(c) << ", not found exactly once\n"
          << context;
    }
  }
  // The renamed file is in one place, under one of the two new names.
  EXPECT_FALSE(t.entries.contains("r.txt")) << context;
  EXPECT_EQ(found.count(Content("r original", 3000)), 1u) << context;
  EXPECT_TRUE(t.contents.contains("r-by-A.txt") != t.contents.contains("r-by-B.txt")) << context;
  // One of the crossing moves wins, the other is skipped: no cycle, both
  // directories reachable, each marker once.
  bool x_in_y = t.contents.contains("y/x/mark") && t.contents.contains("y/mark");
  bool y_in_x = t.contents.contains("x/y/mark") && t.contents.contains("x/mark");
  EXPECT_TRUE(x_in_y != y_in_x) << context;
  EXPECT_EQ(found.count(Content("x marker", 100)), 1u) << context;
  EXPECT_EQ(found.count(Content("y marker", 100)), 1u) << context;
  // shared.txt holds exactly one side's bytes, whole.
  std::set<std::string> shared_ok = {a.shared, b.shared};
  shared_ok.erase("");
  EXPECT_EQ(shared_ok.size(), 2u) << "both overwrites succeed\n" << context;
  ASSERT_TRUE(t.contents.contains("shared.txt")) << context;
  EXPECT_TRUE(shared_ok.contains(t.contents.at("shared.txt")))
      << "shared.txt is " << Label(t.contents.at("shared.txt")) << "\n"
      << context;
  // A file created in a directory removed at the same time brings it back.
  if (b.Ok("rmdir gone / create in it")) {
    EXPECT_TRUE(t.contents.contains("gone/born.txt")) << context;
  }
  // Concurrent creates of one name: both kept, the older as name~<8 hex>.
  std::regex clash(R"(same\.txt(~[0-9a-f]{8})?)");
  std::vector<std::string> same;
  for (const auto& [p, c] : t.contents) {
    if (std::regex_match(p, clash)) same.push_back(p);
  }
  int creates = a.Ok("create same.txt") + b.Ok("create same.txt");
  EXPECT_GE(creates, 1) << context;
  EXPECT_EQ(static_cast<int>(same.size()), creates) << context;
  if (same.size() == 2) {
    EXPECT_EQ(same[0], "same.txt") << context;
  }
  // The three-cycle is broken: each marker once, no cycle (the walk
  // checked that).
  for (const char* c : {"c1", "c2", "c3"}) {
    EXPECT_EQ(found.count(Content(std::string(c) + " marker", 100)), 1u) << c << "\n" << context;
  }
  // The file made in the renamed directory is in it under its new name.
  if (b.Ok("rename mv / create in mv") && a.Ok("rename mv / create in mv")) {
    EXPECT_TRUE(t.contents.contains("mv2/inside.txt")) << context;
  }
  // A file removed on one side and moved on the other: at most once.
  EXPECT_LE(found.count(Content("victim", 700)), 1u) << context;
  if (!a.Ok("unlink / rename victim")) {
    EXPECT_EQ(found.count(Content("victim", 700)), 1u) << context;
  }
}

TEST_F(MountClusterTest, ConflictingChangesOnTwoMountsConvergeWithNoCycleAndNothingLost) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(/*replicas=*/2));
  const std::vector<std::chrono::milliseconds> skews = {0ms, 0ms, 2ms, 20ms, 500ms};
  for (std::size_t r = 0; r < skews.size(); ++r) {
    ASSERT_NO_FATAL_FAILURE(MakeRoundTree(Mnt("a") / fmt::format("round{}", r)));
  }
  Tree ta, tb;
  ASSERT_TRUE(
      Converge(&ta, &tb, 30s,
               [&](const Tree& t) { return t.entries.size() == skews.size() * kRoundTreeEntries; }))
      << "A:\n"
      << ta.Dump() << "B:\n"
      << tb.Dump() << Logs();

  std::vector<Side> as, bs;
  for (std::size_t r = 0; r < skews.size(); ++r) {
    std::string round = fmt::format("round{}", r);
    as.push_back(Side{Mnt("a") / round, "A", {}, {}, {}});
    bs.push_back(Side{Mnt("b") / round, "B", {}, {}, {}});
  }
  std::barrier sync(2);
  std::thread thread_a([&] {
    for (std::size_t r = 0; r < skews.size(); ++r) RunRound(as[r], true, sync, skews[r]);
  });
  std::thread thread_b([&] {
    for (std::size_t r = 0; r < skews.size(); ++r) RunRound(bs[r], false, sync, skews[r]);
  });
  thread_a.join();
  thread_b.join();
  std::vector<std::string> reports(skews.size());
  std::string all_reports;
  for (std::size_t r = 0; r < skews.size(); ++r) {
    for (std::size_t i = 0; i < as[r].results.size(); ++i) {
      int ea = as[r].results[i].second, eb = bs[r].results[i].second;
      reports[r] += fmt::format("  {:<28} A: {:<28} B: {}\n", as[r].results[i].first,
                                ea ? std::strerror(ea) : "ok", eb ? std::strerror(eb) : "ok");
    }
    all_reports += fmt::format("round{} (B {} ms later):\n{}", r, skews[r].count(), reports[r]);
  }

  ASSERT_TRUE(Converge(&ta, &tb, 30s)) << "the mounts do not converge\n"
                                       << all_reports << "A:\n"
                                       << ta.Dump() << "B:\n"
                                       << tb.Dump() << Logs();
  std::cout << "[ conflict ] " << all_reports << "[ conflict ] converged tree:\n" << ta.Dump();
  std::size_t in_rounds = skews.size();
  for (std::size_t r = 0; r < skews.size(); ++r)
    in_rounds += Subtree(ta, fmt::format("round{}", r)).entries.size();
  EXPECT_EQ(ta.entries.size(), in_rounds) << "nothing outside the rounds' directories\n"
                                          << ta.Dump();
  for (std::size_t r = 0; r < skews.size(); ++r) {
    std::string round = fmt::format("round{}", r);
    Tree t = Subtree(ta, round);
    SCOPED_TRACE(round);
    CheckRound(t, as[r], bs[r],
               fmt::format("{} (B {} ms later):\n{}tree:\n{}", round, skews[r].count(), reports[r],
                           t.Dump()));
  }
}

// --- 3. A node killed under its mount --------------------------------------

TEST_F(MountClusterTest, AKilledMountLeavesTheOtherServingAndItsRemountCatchesUp) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(/*replicas=*/2));
  fs::path ma = Mnt("a"), mb = Mnt("b");
  const std::string before1 = Content("before the kill 1", 8 << 20);
  const std::string before2 = Content("before the kill 2", 40000);
  ASSERT_EQ(::mkdir((ma / "dir").c_str(), 0755), 0);
  ASSERT_EQ(WriteContent(ma / "dir" / "before1", before1), 0);
  ASSERT_EQ(WriteContent(ma / "before2", before2), 0);
  // B sees the names and sizes (and reads nothing yet: its kernel caches no
  // data of them).
  struct stat st {};
  ASSERT_TRUE(WaitFor(
      [&] {
        return ::stat((mb / "dir" / "before1").c_str(), &st) == 0 &&
               st.st_size == (off_t)before1.size() && ::stat((mb / "before2").c_str(), &st) == 0 &&
               st.st_size == (off_t)before2.size();
      },
      30s, 200ms))
      << Logs();

  auto chunks = [&](const std::string& n) {
    nlohmann::json j = Status(n);
    return j.is_object() && j["chunks"].is_number() ? j["chunks"].get<int>() : -1;
  };
  std::cout << fmt::format("[ chunks ] before the kill: A holds {}, B {}, C {}\n", chunks("a"),
                           chunks("b"), chunks("c"));
  Kill("a");
  EXPECT_TRUE(Mounted(ma)) << "a killed FUSE server leaves its mount behind";

  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(Label(ReadOrError(mb / "dir" / "before1")), Label(before1)) << Logs();
  EXPECT_EQ(Label(ReadOrError(mb / "before2")), Label(before2)) << Logs();
  double read_s = Seconds(t0);

  const std::string after1 = Content("after the kill 1", 5 << 20);
  const std::string after2 = Content("after the kill 2", 1000);
  t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(WriteContent(mb / "after1", after1), 0) << Logs();
  EXPECT_EQ(::mkdir((mb / "newdir").c_str(), 0755), 0);
  EXPECT_EQ(WriteContent(mb / "newdir" / "after2", after2), 0) << Logs();
  EXPECT_EQ(::rename((mb / "before2").c_str(), (mb / "dir" / "before2-moved").c_str()), 0);
  double write_s = Seconds(t0);
  EXPECT_EQ(Label(ReadOrError(mb / "after1")), Label(after1));
  std::cout << fmt::format(
      "[ timing ] with A dead: B read 8 MiB + 40 KB in {:.1f} s, wrote 5 MiB + 1 KB in {:.1f} s\n",
      read_s, write_s);

  // A comes back on its data directory, on a fresh mount.
  auto un = testing::Run({"/bin/fusermount3", "-uz", ma.string()});
  ASSERT_EQ(un.exit_code, 0) << un.err;
  ASSERT_TRUE(Start("a")) << Logs();
  t0 = std::chrono::steady_clock::now();
  Tree ta, tb;
  ASSERT_TRUE(
      Converge(&ta, &tb, 30s, [&](const Tree& t) { return t.contents.contains("newdir/after2"); }))
      << "A:\n"
      << ta.Dump() << "B:\n"
      << tb.Dump() << Logs();
  std::cout << fmt::format("[ timing ] A's remount caught up in {:.1f} s\n", Seconds(t0));
  EXPECT_EQ(Label(ta.contents["after1"]), Label(after1));
  EXPECT_EQ(Label(ta.contents["newdir/after2"]), Label(after2));
  EXPECT_EQ(Label(ta.contents["dir/before1"]), Label(before1));
  EXPECT_EQ(Label(ta.contents["dir/before2-moved"]), Label(before2));
  EXPECT_FALSE(ta.entries.contains("before2")) << ta.Dump();
  EXPECT_EQ(ta.entries.size(), 6u) << ta.Dump();
}

// --- 4. A change on A reaches B's kernel caches -----------------------------

TEST_F(MountClusterTest, AnOverwriteOrRenameOnOneMountReachesTheOthersCachesWithinSeconds) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(/*replicas=*/2));
  fs::path ma = Mnt("a"), mb = Mnt("b");
  // Equal sizes, so that only the content says which version B shows.
  const std::string v1 = Content("version 1", 200000), v2 = Content("version 2", 200000);
  ASSERT_EQ(WriteContent(ma / "f", v1), 0);
  auto cat = [&](const fs::path& p) { return testing::Run({"/bin/cat", p.string()}).out; };
  // (The name may show first, empty: the create is an op of its own, the
  // content commits at close.)
  ASSERT_TRUE(WaitFor([&] { return cat(mb / "f") == v1; }, 30s, 100ms))
      << "B shows " << Label(cat(mb / "f")) << "\n"
      << Logs();
  ASSERT_EQ(Label(cat(mb / "f")), Label(v1));  // now from B's page cache

  ASSERT_EQ(WriteContent(ma / "f", v2), 0);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(WaitFor([&] { return cat(mb / "f") == v2; }, 5s, 50ms))
      << "B still shows " << Label(cat(mb / "f")) << "\n"
      << Logs();
  double overwrite_s = Seconds(t0);

  // A longer version: B's cached size must not cut it short.
  const std::string v3 = Content("version 3", 300000);
  struct stat st {};
  ASSERT_EQ(::stat((mb / "f").c_str(), &st), 0);
  ASSERT_EQ(WriteContent(ma / "f", v3), 0);
  t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(WaitFor(
      [&] {
        return ::stat((mb / "f").c_str(), &st) == 0 && st.st_size == (off_t)v3.size() &&
               cat(mb / "f") == v3;
      },
      5s, 50ms))
      << "B shows " << Label(cat(mb / "f")) << ", size " << st.st_size << "\n"
      << Logs();
  double grow_s = Seconds(t0);

  // A rename on A: the old name goes away on B, the new one shows v3.
  ASSERT_EQ(::stat((mb / "f").c_str(), &st), 0);  // B's kernel caches the entry
  ASSERT_EQ(::rename((ma / "f").c_str(), (ma / "g").c_str()), 0);
  t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(WaitFor([&] { return !Exists(mb / "f") && Exists(mb / "g"); }, 5s, 50ms)) << Logs();
  double rename_s = Seconds(t0);
  EXPECT_EQ(Label(cat(mb / "g")), Label(v3));
  errno = 0;
  EXPECT_EQ(::open((mb / "f").c_str(), O_RDONLY), -1);
  EXPECT_EQ(errno, ENOENT);
  std::cout << fmt::format(
      "[ timing ] B saw the overwrite after {:.2f} s, the longer one after {:.2f} s, the rename "
      "after {:.2f} s\n",
      overwrite_s, grow_s, rename_s);
}

// Close-to-open holds per open, also while another process keeps the file
// open on B: a fresh open sees the new bytes, and the held handle reads one
// whole version, never a mix. (The kernel keeps one size per inode, so a
// handle cannot keep reading a longer old version, as on NFS.)
TEST_F(MountClusterTest, AFreshOpenSeesARemoteOverwriteWhileAnotherHandleIsHeld) {
  ASSERT_NO_FATAL_FAILURE(StartCluster(/*replicas=*/2));
  fs::path ma = Mnt("a"), mb = Mnt("b");
  // A shorter v2: B's kernel takes the new size and reads the old bytes up
  // to it, a torn mix of the two.
  const std::string v1 = Content("version 1", 200000), v2 = Content("version 2", 100000);
  ASSERT_EQ(WriteContent(ma / "f", v1), 0);
  auto cat = [&](const fs::path& p) { return testing::Run({"/bin/cat", p.string()}).out; };
  ASSERT_TRUE(WaitFor([&] { return cat(mb / "f") == v1; }, 30s, 100ms)) << Logs();
  int held = ::open((mb / "f").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(held, 0);

  ASSERT_EQ(WriteContent(ma / "f", v2), 0);
  EXPECT_TRUE(WaitFor([&] { return cat(mb / "f") == v2; }, 10s, 50ms))
      << "a fresh open on B still shows " << Label(cat(mb / "f")) << "\n"
      << Logs();
  std::string snapshot(v1.size(), '\0');
  ssize_t n = ::pread(held, snapshot.data(), snapshot.size(), 0);
  ASSERT_GE(n, 0);
  snapshot.resize(static_cast<std::size_t>(n));
  EXPECT_TRUE(snapshot == v1 || snapshot == v2)
      << "the held handle reads a torn mix: " << Label(snapshot);
  ::close(held);
  EXPECT_EQ(Label(cat(mb / "f")), Label(v2));
}

}  // namespace
}  // namespace dfs
