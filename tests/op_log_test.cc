#include "core/op_log.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <random>

#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace dfs::core {
namespace {

Op MakeOp(std::uint8_t node, std::uint64_t seq, HlcTime t, std::string key, std::string value) {
  Op op;
  op.time = t;
  op.origin = testing::TestNodeId(node);
  op.seq = seq;
  op.kind = value.empty() ? Op::Kind::kDelete : Op::Kind::kPut;
  op.key = std::move(key);
  op.value.assign(value.begin(), value.end());
  return op;
}

// Three nodes issue interleaved puts and deletes on a few keys.
std::vector<Op> History(std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Op> ops;
  std::uint64_t seqs[4] = {};
  for (int i = 0; i < 300; ++i) {
    std::uint8_t node = static_cast<std::uint8_t>(1 + rng() % 3);
    HlcTime t{1000 + rng() % 200, static_cast<std::uint32_t>(rng() % 3)};  // many equal times
    std::string key = "k" + std::to_string(rng() % 7);
    std::string value = rng() % 4 == 0 ? "" : "v" + std::to_string(i);
    ops.push_back(MakeOp(node, ++seqs[node], t, key, value));
  }
  return ops;
}

TEST(OpLogTest, ReplicasConvergeWhateverTheOrderAndDuplicates) {
  for (std::uint32_t seed = 1; seed <= 20; ++seed) {
    std::vector<Op> ops = History(seed);
    KeyIndexState reference;
    for (const Op& op : ops) reference.Apply(op);
    std::mt19937 rng(seed * 7);
    for (int replica = 0; replica < 5; ++replica) {
      std::vector<Op> delivery = ops;
      // Some ops arrive twice (a retransmit), in any order.
      for (int d = 0; d < 30; ++d) delivery.push_back(ops[rng() % ops.size()]);
      std::shuffle(delivery.begin(), delivery.end(), rng);
      KeyIndexState state;
      for (const Op& op : delivery) state.Apply(op);
      EXPECT_TRUE(state == reference) << "seed " << seed << " replica " << replica;
      EXPECT_EQ(state.Keys(), reference.Keys());
    }
  }
}

TEST(OpLogTest, LastWriterWinsAndTombstonesHold) {
  KeyIndexState s;
  EXPECT_TRUE(s.Apply(MakeOp(1, 1, {10, 0}, "a", "one")));
  EXPECT_TRUE(s.Apply(MakeOp(2, 1, {20, 0}, "a", "")));  // delete, later
  EXPECT_FALSE(s.Apply(MakeOp(3, 1, {15, 0}, "a", "late but older")));
  EXPECT_FALSE(s.Lookup("a").has_value()) << "an older put must not resurrect a deleted key";
  EXPECT_TRUE(s.Apply(MakeOp(3, 2, {20, 0}, "a", "same time, higher origin")));
  EXPECT_EQ(AsString(*s.Lookup("a")), "same time, higher origin");
  EXPECT_TRUE(s.Keys() == std::vector<std::string>{"a"});
}

TEST(OpLogTest, VersionVectorsFindWhatAPeerLacks) {
  VersionVector mine, theirs;
  for (std::uint64_t s = 1; s <= 5; ++s) EXPECT_TRUE(mine.Advance(testing::TestNodeId(1), s));
  for (std::uint64_t s = 1; s <= 2; ++s) EXPECT_TRUE(mine.Advance(testing::TestNodeId(2), s));
  for (std::uint64_t s = 1; s <= 3; ++s) EXPECT_TRUE(theirs.Advance(testing::TestNodeId(1), s));
  EXPECT_TRUE(theirs.Advance(testing::TestNodeId(3), 1));
  EXPECT_FALSE(mine.Advance(testing::TestNodeId(1), 7)) << "a gap must not advance the vector";
  EXPECT_EQ(mine.Get(testing::TestNodeId(1)), 5u);
  auto missing = mine.Missing(theirs);
  ASSERT_EQ(missing.size(), 2u);
  EXPECT_EQ(missing[0], std::make_pair(testing::TestNodeId(1), std::uint64_t{4}));
  EXPECT_EQ(missing[1], std::make_pair(testing::TestNodeId(2), std::uint64_t{1}));
  auto back = theirs.Missing(mine);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0], std::make_pair(testing::TestNodeId(3), std::uint64_t{1}));
  EXPECT_TRUE(mine.Contains(MakeOp(1, 5, {}, "x", "y")));
  EXPECT_FALSE(mine.Contains(MakeOp(1, 6, {}, "x", "y")));
}

TEST(OpLogTest, EncodingRoundTripsAndMatchesTheSavedFixture) {
  Op op = MakeOp(9, 42, {0x1122334455667788ull, 7}, "docs/report.pdf", "manifest bytes");
  auto back = Op::Decode(op.Encode());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->Encode(), op.Encode());
  EXPECT_EQ(back->key, op.key);
  EXPECT_EQ(back->time, op.time);
  const auto path = std::filesystem::path(DFS_FIXTURE_DIR) / "op_v1.bin";
  if (std::getenv("DFS_WRITE_FIXTURES") != nullptr) testing::WriteFile(path, op.Encode());
  EXPECT_EQ(testing::ReadFile(path), op.Encode());
}

TEST(OpLogTest, HostileOpsAreRefused) {
  Bytes good = MakeOp(1, 1, {5, 0}, "k", "v").Encode();
  for (std::size_t i = 0; i < good.size(); ++i) {
    Bytes bad = good;
    bad[i] ^= 0x04;
    EXPECT_FALSE(Op::Decode(bad).ok()) << "byte " << i;
  }
  for (std::size_t n = 0; n < good.size(); ++n) EXPECT_FALSE(Op::Decode(ByteSpan(good.data(), n)).ok());
  for (std::string key : {std::string("../x"), std::string(""), std::string(5000, 'k')}) {
    Op op = MakeOp(1, 1, {5, 0}, key, "v");
    EXPECT_FALSE(Op::Decode(op.Encode()).ok()) << key.size();
  }
  EXPECT_FALSE(Op::Decode(MakeOp(1, 0, {5, 0}, "k", "v").Encode()).ok()) << "seq 0";
}

}  // namespace
}  // namespace dfs::core
