// Conflicting changes made at once on two mounts of one volume, as real
// processes on 127.0.0.1 (skipped, saying why, without /dev/fuse or root):
// two dfsmount nodes A and B and a keyless dfsd C, peered through C (the
// fixture is tests/mount_cluster_fixture.h). Conflicting renames, moves and
// writes made at once on both mounts converge on one tree with no cycle
// that loses nothing.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <barrier>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "tests/mount_cluster_fixture.h"
#include "tests/test_util.h"

namespace dfs {
namespace {

using namespace testing_cluster;  // also brings fs (std::filesystem) and the chrono literals

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

}  // namespace
}  // namespace dfs
