// The replicated tree's move operation: creation, deletion to the trash,
// concurrent moves that would form a cycle, name clashes, and convergence
// of replicas that receive the same moves in different orders.
#include "core/tree.h"

#include <algorithm>
#include <random>
#include <set>

#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace dfs::core {
namespace {

FileId Id(std::uint8_t n) {
  FileId id;
  id.bytes.fill(n);
  return id;
}

Move M(std::uint64_t t, std::uint8_t origin, std::uint64_t seq, FileId child, FileId parent,
       std::string name) {
  return Move{HlcTime{t, 0}, testing::TestNodeId(origin), seq, child, parent, std::move(name)};
}

// No node is its own ancestor: every chain ends at the root or the trash.
bool Acyclic(const TreeState& t, const std::vector<FileId>& ids) {
  for (const FileId& id : ids) {
    FileId at = id;
    std::set<FileId> seen;
    while (at != FileId::Root() && at != FileId::Trash()) {
      if (!seen.insert(at).second) return false;
      auto loc = t.Location(at);
      if (!loc) break;  // never created
      at = loc->first;
    }
  }
  return true;
}

TEST(TreeTest, CreateMoveAndDelete) {
  TreeState t;
  FileId docs = Id(1), a = Id(2);
  EXPECT_TRUE(t.Apply(M(1, 1, 1, docs, FileId::Root(), "docs")));
  EXPECT_TRUE(t.Apply(M(2, 1, 2, a, docs, "a.txt")));
  EXPECT_FALSE(t.Apply(M(2, 1, 2, a, docs, "a.txt"))) << "a move applies once";
  EXPECT_EQ(t.Lookup(docs, "a.txt"), a);
  EXPECT_TRUE(t.IsLive(a));
  t.Apply(M(3, 1, 3, a, FileId::Root(), "b.txt"));  // mv docs/a.txt b.txt
  EXPECT_FALSE(t.Lookup(docs, "a.txt").has_value());
  EXPECT_EQ(t.Lookup(FileId::Root(), "b.txt"), a);
  t.Apply(M(4, 1, 4, docs, FileId::Trash(), "docs"));  // rm -r docs
  EXPECT_FALSE(t.IsLive(docs));
  EXPECT_TRUE(t.IsLive(a)) << "a was moved out before the delete";
  ASSERT_EQ(t.Children(FileId::Root()).size(), 1u);
}

TEST(TreeTest, ConcurrentMovesThatWouldFormACycleConvergeWithoutOne) {
  // Kleppmann's example: A moves a under b while B moves b under a.
  FileId a = Id(1), b = Id(2);
  std::vector<Move> base = {M(1, 1, 1, a, FileId::Root(), "a"), M(2, 1, 2, b, FileId::Root(), "b")};
  Move a_under_b = M(10, 1, 3, a, b, "a"), b_under_a = M(11, 2, 1, b, a, "b");
  TreeState one, two;
  for (const Move& m : base) {
    one.Apply(m);
    two.Apply(m);
  }
  one.Apply(a_under_b);
  one.Apply(b_under_a);
  two.Apply(b_under_a);
  two.Apply(a_under_b);  // arrives late: b's move is undone, a's done, b's skipped on redo
  EXPECT_TRUE(one == two);
  EXPECT_TRUE(Acyclic(one, {a, b}));
  EXPECT_EQ(one.Location(a)->first, b) << "the earlier move wins; the later one is skipped";
  EXPECT_EQ(one.Location(b)->first, FileId::Root());
}

TEST(TreeTest, ANameClashResolvesTheSameWayEverywhere) {
  FileId x = Id(1), y = Id(2);
  TreeState one, two;
  Move mx = M(5, 1, 1, x, FileId::Root(), "notes"), my = M(6, 2, 1, y, FileId::Root(), "notes");
  one.Apply(mx);
  one.Apply(my);
  two.Apply(my);
  two.Apply(mx);
  auto kids = one.Children(FileId::Root());
  EXPECT_EQ(kids, two.Children(FileId::Root()));
  ASSERT_EQ(kids.size(), 2u);
  EXPECT_EQ(one.Lookup(FileId::Root(), "notes"), y) << "the later create keeps the name";
  EXPECT_EQ(one.Lookup(FileId::Root(), "notes~" + x.ShortHex()), x) << "nothing is lost";
}

TEST(TreeTest, RootAndTrashNeverMove) {
  TreeState t;
  FileId a = Id(1);
  t.Apply(M(1, 1, 1, a, FileId::Root(), "a"));
  t.Apply(M(2, 1, 2, FileId::Root(), a, "loop"));
  t.Apply(M(3, 1, 3, FileId::Trash(), a, "loop"));
  EXPECT_FALSE(t.Location(FileId::Root()).has_value());
  EXPECT_FALSE(t.Location(FileId::Trash()).has_value());
  EXPECT_TRUE(t.IsLive(a));
}

TEST(TreeTest, RandomConcurrentMovesConvergeInAnyOrder) {
  std::mt19937_64 rng(20261125);
  for (int round = 0; round < 30; ++round) {
    // Three replicas make random creates, moves and deletes over 12 ids;
    // then four replicas get all moves, each in its own shuffled order.
    std::vector<FileId> ids;
    for (std::uint8_t i = 1; i <= 12; ++i) ids.push_back(Id(i));
    std::vector<Move> all;
    std::uint64_t seq[3] = {0, 0, 0};
    for (int step = 0; step < 60; ++step) {
      std::size_t r = rng() % 3;
      FileId child = ids[rng() % ids.size()];
      FileId parent = rng() % 4 == 0 ? FileId::Root() : ids[rng() % ids.size()];
      if (rng() % 10 == 0) parent = FileId::Trash();
      all.push_back(M(1000 + rng() % 50, static_cast<std::uint8_t>(r + 1), ++seq[r], child, parent,
                      "n" + std::to_string(rng() % 4)));
    }
    std::vector<TreeState> replicas(4);
    for (std::size_t k = 0; k < replicas.size(); ++k) {
      std::vector<Move> order = all;
      std::shuffle(order.begin(), order.end(), rng);
      for (const Move& m : order) replicas[k].Apply(m);
      if (k == 3) {
        for (const Move& m : all) EXPECT_FALSE(replicas[k].Apply(m)) << "duplicates change nothing";
      }
    }
    for (std::size_t k = 1; k < replicas.size(); ++k) {
      ASSERT_TRUE(replicas[k] == replicas[0]) << "round " << round << " replica " << k;
      ASSERT_EQ(replicas[k].Children(FileId::Root()), replicas[0].Children(FileId::Root()));
    }
    ASSERT_TRUE(Acyclic(replicas[0], ids)) << "round " << round;
    EXPECT_EQ(replicas[0].log_size(), all.size());
  }
}

}  // namespace
}  // namespace dfs::core
