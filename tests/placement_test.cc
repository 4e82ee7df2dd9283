#include "core/placement.h"

#include <map>

#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace dfs::core {
namespace {

TEST(PlacementTest, SameAnswerWhateverTheOrderOfMembers) {
  std::vector<NodeId> a = {testing::TestNodeId(1), testing::TestNodeId(2), testing::TestNodeId(3), testing::TestNodeId(4), testing::TestNodeId(5)};
  std::vector<NodeId> b = {testing::TestNodeId(4), testing::TestNodeId(2), testing::TestNodeId(5), testing::TestNodeId(1), testing::TestNodeId(3), testing::TestNodeId(2)};
  for (std::uint32_t c = 0; c < 100; ++c) {
    EXPECT_EQ(Holders(testing::TestChunkId(c), a, 3), Holders(testing::TestChunkId(c), b, 3));
  }
}

TEST(PlacementTest, HoldersAreTheTopOfTheRankingAndDistinct) {
  std::vector<NodeId> nodes = {testing::TestNodeId(1), testing::TestNodeId(2), testing::TestNodeId(3)};
  for (std::uint32_t c = 0; c < 50; ++c) {
    auto h = Holders(testing::TestChunkId(c), nodes, 3);
    ASSERT_EQ(h.size(), 3u);
    EXPECT_NE(h[0], h[1]);
    EXPECT_NE(h[1], h[2]);
    EXPECT_NE(h[0], h[2]);
    EXPECT_GE(PlacementScore(h[0], testing::TestChunkId(c)), PlacementScore(h[1], testing::TestChunkId(c)));
  }
  EXPECT_EQ(Holders(testing::TestChunkId(1), nodes, 5).size(), 3u) << "fewer live nodes than replicas";
  EXPECT_TRUE(Holders(testing::TestChunkId(1), {}, 3).empty());
}

TEST(PlacementTest, LosingANodeMovesOnlyItsChunks) {
  std::vector<NodeId> all = {testing::TestNodeId(1), testing::TestNodeId(2), testing::TestNodeId(3), testing::TestNodeId(4), testing::TestNodeId(5)};
  std::vector<NodeId> without3 = {testing::TestNodeId(1), testing::TestNodeId(2), testing::TestNodeId(4), testing::TestNodeId(5)};
  int moved = 0;
  for (std::uint32_t c = 0; c < 2000; ++c) {
    auto before = Holders(testing::TestChunkId(c), all, 2);
    auto after = Holders(testing::TestChunkId(c), without3, 2);
    bool held_by_3 = before[0] == testing::TestNodeId(3) || before[1] == testing::TestNodeId(3);
    if (!held_by_3) {
      EXPECT_EQ(before, after) << "chunk " << c << " moved though its holders stayed";
    } else {
      ++moved;
      // The surviving holder keeps it.
      NodeId survivor = before[0] == testing::TestNodeId(3) ? before[1] : before[0];
      EXPECT_TRUE(after[0] == survivor || after[1] == survivor);
    }
  }
  EXPECT_GT(moved, 2000 * 2 / 5 * 7 / 10);  // about 2/5 of chunks involve node 3
}

TEST(PlacementTest, LoadIsSpreadEvenly) {
  std::vector<NodeId> nodes = {testing::TestNodeId(1), testing::TestNodeId(2), testing::TestNodeId(3), testing::TestNodeId(4)};
  std::map<NodeId, int> primary;
  for (std::uint32_t c = 0; c < 8000; ++c) ++primary[Holders(testing::TestChunkId(c), nodes, 1)[0]];
  for (const auto& [n, count] : primary) {
    EXPECT_GT(count, 1700);
    EXPECT_LT(count, 2300);
  }
}

TEST(PlacementTest, WriteQuorum) {
  EXPECT_EQ(WriteQuorum(3, 1), 1u);
  EXPECT_EQ(WriteQuorum(3, 2), 2u);
  EXPECT_EQ(WriteQuorum(3, 5), 2u);
  EXPECT_EQ(WriteQuorum(1, 5), 1u);
  EXPECT_EQ(WriteQuorum(3, 0), 1u);
}

}  // namespace
}  // namespace dfs::core
