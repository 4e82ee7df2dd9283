// A model of dfsmount's read-write mount, through /dev/fuse with a real
// dfsmount process per test (skipped, saying why, without FUSE or root; the
// fixture is tests/mount_fixture.h). ModelMountTest: a seeded random
// sequence of file operations, valid and invalid alike, applied to the
// mount and to a local directory, must give the same results and leave the
// same trees, also after a remount (DFS_MODEL_SEED and DFS_MODEL_STEPS
// explore other runs).
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/mount_fixture.h"
#include "tests/test_util.h"

namespace dfs {
namespace {

using namespace testing_mount;  // also brings fs (std::filesystem) and the chrono literals

using ModelMountTest = MountFixture;

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
