// Repair and scrub over the in-memory network: lost copies come back on the
// new holders, bad copies are replaced by verified ones.
#include "core/repair.h"

#include <gtest/gtest.h>

#include "core/memory_chunk_store.h"
#include "core/placement.h"
#include "core/replicated_chunk_store.h"
#include "tests/test_util.h"

namespace dfs::core {
namespace {

struct Cluster {
  void Add(std::uint8_t n) {
    NodeId id = testing::TestNodeId(n);
    ids.push_back(id);
    stores.push_back(std::make_unique<MemoryChunkStore>());
    net.Join(id, stores.back().get());
    views.push_back(net.ViewFor(id));
  }
  int CopiesOn(const ChunkId& id, const std::vector<NodeId>& nodes) {
    int copies = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (std::find(nodes.begin(), nodes.end(), ids[i]) != nodes.end()) copies += *stores[i]->Has(id);
    }
    return copies;
  }
  InMemoryNetwork net;
  std::vector<NodeId> ids;
  std::vector<std::unique_ptr<MemoryChunkStore>> stores;
  std::vector<std::unique_ptr<PeerNetwork>> views;
};

TEST(RepairTest, AfterANodeIsLostEveryChunkRegainsThreeCopiesIncludingOnANewcomer) {
  Cluster c;
  for (std::uint8_t n = 1; n <= 3; ++n) c.Add(n);
  ReplicatedChunkStore writer(*c.stores[0], *c.views[0], ReplicationOptions{});
  constexpr std::uint32_t kChunks = 60;
  for (std::uint32_t i = 0; i < kChunks; ++i) {
    ASSERT_TRUE(writer.Put(testing::TestChunkId(i), testing::RandomBytes(500, i)).ok());
  }
  // Node 3 is gone for good; node 4 joins empty.
  c.net.SetAlive(c.ids[2], false);
  c.Add(4);
  std::vector<NodeId> live = {c.ids[0], c.ids[1], c.ids[3]};
  std::atomic<bool> stop{false};
  RepairStats total;
  for (std::size_t i : {0u, 1u, 3u}) {
    RepairStats s = RepairPass(*c.stores[i], *c.views[i], 3, std::chrono::seconds(1), stop);
    EXPECT_EQ(s.checked, kChunks);
    EXPECT_EQ(s.failed, 0u);
    total.copies_made += s.copies_made;
    total.under_replicated += s.under_replicated;
    // Where: only the newcomer lacked copies, and each was sent.
    for (const auto& [holder, where] : s.holders) {
      EXPECT_EQ(holder, c.ids[3]);
      EXPECT_EQ(where.lacked, where.copied);
      EXPECT_EQ(where.failed, 0u);
      total.holders[holder].lacked += where.lacked;
    }
  }
  EXPECT_EQ(total.copies_made, kChunks) << "the newcomer needs one copy of each, made once";
  EXPECT_EQ(total.holders[c.ids[3]].lacked, kChunks);
  for (std::uint32_t i = 0; i < kChunks; ++i) {
    EXPECT_EQ(c.CopiesOn(testing::TestChunkId(i), live), 3) << i;
    Bytes copy;
    ASSERT_TRUE(c.stores[3]->Get(testing::TestChunkId(i), &copy).ok());
    EXPECT_EQ(copy, testing::RandomBytes(500, i));
  }
  // A second pass finds nothing to do.
  RepairStats again = RepairPass(*c.stores[0], *c.views[0], 3, std::chrono::seconds(1), stop);
  EXPECT_EQ(again.copies_made, 0u);
  EXPECT_EQ(again.under_replicated, 0u);
  EXPECT_TRUE(again.holders.empty());
}

TEST(RepairTest, ScrubReplacesABadCopyWithAVerifiedOneAndNamesWhatItCannotFix) {
  Cluster c;
  for (std::uint8_t n = 1; n <= 3; ++n) c.Add(n);
  ReplicatedChunkStore writer(*c.stores[0], *c.views[0], ReplicationOptions{});
  Bytes good = testing::RandomBytes(3000, 1);
  ASSERT_TRUE(writer.Put(testing::TestChunkId(1), good).ok());
  ASSERT_TRUE(writer.Put(testing::TestChunkId(2), testing::RandomBytes(3000, 2)).ok());
  // Chunk 1 is bad here and on node 2; node 3 has the only good copy.
  ASSERT_TRUE(c.stores[0]->CorruptForTest(testing::TestChunkId(1)));
  ASSERT_TRUE(c.stores[1]->CorruptForTest(testing::TestChunkId(1)));
  // Chunk 3 exists only here, and badly.
  ASSERT_TRUE(c.stores[0]->Put(testing::TestChunkId(3), testing::RandomBytes(100, 3)).ok());
  ASSERT_TRUE(c.stores[0]->CorruptForTest(testing::TestChunkId(3)));
  std::atomic<bool> stop{false};
  std::uint64_t last_checked = 0;
  ScrubStats s = Scrub(*c.stores[0], *c.views[0], {}, std::chrono::seconds(1), stop,
                       [&](std::uint64_t checked, std::uint64_t) { last_checked = checked; });
  EXPECT_EQ(s.checked, 3u);
  EXPECT_EQ(last_checked, 3u);
  EXPECT_EQ(s.bad, 2u);
  EXPECT_EQ(s.repaired, 1u);
  EXPECT_EQ(s.unrepaired, 1u);
  ASSERT_EQ(s.unrepaired_ids.size(), 1u);
  EXPECT_EQ(s.unrepaired_ids[0], testing::TestChunkId(3));
  Bytes out;
  ASSERT_TRUE(c.stores[0]->Get(testing::TestChunkId(1), &out).ok());
  EXPECT_EQ(out, good);
}

TEST(RepairTest, ScrubUsesTheVerifierForDamageTheChecksumCannotSee) {
  Cluster c;
  for (std::uint8_t n = 1; n <= 2; ++n) c.Add(n);
  Bytes good = testing::RandomBytes(1000, 5), forged = testing::RandomBytes(1000, 6);
  ASSERT_TRUE(c.stores[0]->Put(testing::TestChunkId(5), forged).ok());
  ASSERT_TRUE(c.stores[1]->Put(testing::TestChunkId(5), good).ok());
  ChunkVerifier verify = [&](const ChunkId&, ByteSpan data) {
    return Bytes(data.begin(), data.end()) == good ? Status::Ok() : Status::Corrupt("forged");
  };
  std::atomic<bool> stop{false};
  ScrubStats s = Scrub(*c.stores[0], *c.views[0], verify, std::chrono::seconds(1), stop);
  EXPECT_EQ(s.bad, 1u);
  EXPECT_EQ(s.repaired, 1u);
  Bytes out;
  ASSERT_TRUE(c.stores[0]->Get(testing::TestChunkId(5), &out).ok());
  EXPECT_EQ(out, good);
}

}  // namespace
}  // namespace dfs::core
