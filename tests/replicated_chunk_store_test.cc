// Replication over the in-memory network: where chunks land, reads after a
// node is lost, quorum failures, bad copies, the cache bound.
#include "core/replicated_chunk_store.h"

#include <algorithm>

#include <gtest/gtest.h>

#include "core/memory_chunk_store.h"
#include "core/placement.h"
#include "tests/sync_counting_store.h"
#include "tests/test_util.h"

namespace dfs::core {
namespace {

// A verifier that accepts exactly `good` (as if only it authenticated).
ReplicatedChunkStore::Verifier AcceptOnly(Bytes good) {
  return [good = std::move(good)](const ChunkId&, ByteSpan b) {
    return Bytes(b.begin(), b.end()) == good ? Status::Ok() : Status::Corrupt("forged");
  };
}

// A cluster of `n` nodes with memory stores and replicated views.
struct Cluster {
  explicit Cluster(int n, std::size_t replicas, ReplicatedChunkStore::Verifier verify = {},
                   std::size_t cache = 64 << 20) {
    for (int i = 0; i < n; ++i) {
      NodeId id = testing::TestNodeId(static_cast<std::uint8_t>(i + 1));
      ids.push_back(id);
      stores.push_back(std::make_unique<MemoryChunkStore>());
      net.Join(id, stores.back().get());
    }
    for (int i = 0; i < n; ++i) {
      views.push_back(net.ViewFor(ids[static_cast<std::size_t>(i)]));
      ReplicationOptions o;
      o.replicas = replicas;
      o.cache_bytes = cache;
      nodes.push_back(std::make_unique<ReplicatedChunkStore>(*stores[static_cast<std::size_t>(i)],
                                                             *views.back(), o, verify));
    }
  }
  int CopiesOf(const ChunkId& id) {
    int n = 0;
    for (auto& s : stores) n += *s->Has(id);
    return n;
  }
  InMemoryNetwork net;
  std::vector<NodeId> ids;
  std::vector<std::unique_ptr<MemoryChunkStore>> stores;
  std::vector<std::unique_ptr<PeerNetwork>> views;
  std::vector<std::unique_ptr<ReplicatedChunkStore>> nodes;
};

TEST(ReplicatedChunkStoreTest, ThreeNodesHoldEveryChunk) {
  Cluster c(3, 3);
  for (std::uint32_t i = 0; i < 20; ++i) {
    ASSERT_TRUE(c.nodes[0]->Put(testing::TestChunkId(i), testing::RandomBytes(1000, i)).ok());
    EXPECT_EQ(c.CopiesOf(testing::TestChunkId(i)), 3);
  }
}

TEST(ReplicatedChunkStoreTest, ChunksLandOnTheirHoldersAndSurviveTheWriter) {
  Cluster c(5, 2);
  for (std::uint32_t i = 0; i < 30; ++i) {
    Bytes data = testing::RandomBytes(2000, i);
    ASSERT_TRUE(c.nodes[0]->Put(testing::TestChunkId(i), data).ok());
    std::vector<NodeId> holders = Holders(testing::TestChunkId(i), c.ids, 2);
    for (std::size_t n = 0; n < c.ids.size(); ++n) {
      bool holder = std::find(holders.begin(), holders.end(), c.ids[n]) != holders.end();
      bool writer = n == 0;
      EXPECT_EQ(*c.stores[n]->Has(testing::TestChunkId(i)), holder || writer) << "chunk " << i << " node " << n;
    }
  }
  // The writer is lost: every other node still reads every chunk.
  c.net.SetAlive(c.ids[0], false);
  for (std::uint32_t i = 0; i < 30; ++i) {
    for (std::size_t n = 1; n < c.ids.size(); ++n) {
      Bytes out;
      Status s = c.nodes[n]->Get(testing::TestChunkId(i), &out);
      ASSERT_TRUE(s.ok()) << s.ToString();
      EXPECT_EQ(out, testing::RandomBytes(2000, i));
    }
  }
}

// The writer's own copy becomes durable with Sync() (the FileServer's
// Flush, before anything is acknowledged), not with a sync per chunk: that
// halved a put through a node. Peers still hold their copies when Put
// returns.
TEST(ReplicatedChunkStoreTest, PutLeavesTheLocalSyncToSync) {
  InMemoryNetwork net;
  SyncCountingStore local;
  MemoryChunkStore peer_store;
  const NodeId self = testing::TestNodeId(1), peer = testing::TestNodeId(2);
  net.Join(self, &local);
  net.Join(peer, &peer_store);
  auto view = net.ViewFor(self);
  ReplicationOptions o;
  o.replicas = 2;
  ReplicatedChunkStore store(local, *view, o);
  for (std::uint32_t i = 0; i < 5; ++i) {
    const ChunkId id = testing::TestChunkId(i);
    ASSERT_TRUE(store.Put(id, testing::RandomBytes(1000, i)).ok());
    EXPECT_TRUE(*peer_store.Has(id)) << "the peer's copy is there when Put returns";
  }
  EXPECT_EQ(local.syncs.load(), 0);
  EXPECT_EQ(local.unsynced.load(), 5);
  ASSERT_TRUE(store.Sync().ok());
  EXPECT_EQ(local.syncs.load(), 1);
  EXPECT_EQ(local.unsynced.load(), 0);
}

TEST(ReplicatedChunkStoreTest, WithoutAQuorumPutFails) {
  Cluster c(3, 3);
  c.net.SetAlive(c.ids[1], false);
  c.net.SetAlive(c.ids[2], false);
  // Alone: a quorum of one, and it is met.
  EXPECT_TRUE(c.nodes[0]->Put(testing::TestChunkId(1), AsBytes("alone")).ok());
  // Members that look alive but cannot store: the quorum of two is missed.
  c.net.SetAlive(c.ids[1], true);
  class Refusing final : public PeerNetwork {
   public:
    explicit Refusing(PeerNetwork& inner) : inner_(inner) {}
    NodeId self() const override { return inner_.self(); }
    std::vector<NodeId> LiveMembers() override { return inner_.LiveMembers(); }
    Status PutChunk(const NodeId& to, const ChunkId& id, ByteSpan data,
                    std::chrono::milliseconds d) override {
      if (refuse) return Status::NoSpace("peer disk full");
      return inner_.PutChunk(to, id, data, d);
    }
    bool refuse = true;
    Status GetChunk(const NodeId& f, const ChunkId& id, Bytes* out,
                    std::chrono::milliseconds d) override {
      return inner_.GetChunk(f, id, out, d);
    }
    Result<bool> HasChunk(const NodeId& on, const ChunkId& id, std::chrono::milliseconds d) override {
      return inner_.HasChunk(on, id, d);
    }
   private:
    PeerNetwork& inner_;
  } refusing(*c.views[0]);
  ReplicatedChunkStore writer(*c.stores[0], refusing, ReplicationOptions{});
  Status s = writer.Put(testing::TestChunkId(2), AsBytes("needs two copies"));
  EXPECT_EQ(s.code(), ErrorCode::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("1 of 2"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("peer disk full"), std::string::npos) << s.ToString();
  // The local copy is there, but a writer must not take the chunk for
  // stored: it puts it again, and once the peer has room the copies are made.
  EXPECT_TRUE(*writer.Has(testing::TestChunkId(2)));
  EXPECT_FALSE(*writer.HasAsPut(testing::TestChunkId(2)));
  EXPECT_FALSE(*c.stores[1]->Has(testing::TestChunkId(2)));
  refusing.refuse = false;
  ASSERT_TRUE(writer.Put(testing::TestChunkId(2), AsBytes("needs two copies")).ok());
  EXPECT_TRUE(*writer.HasAsPut(testing::TestChunkId(2)));
  EXPECT_TRUE(*c.stores[1]->Has(testing::TestChunkId(2))) << "the retry made the second copy";
}

TEST(ReplicatedChunkStoreTest, ABadCopyIsSkippedForAGoodOne) {
  Bytes good = testing::RandomBytes(5000, 9);
  auto verify = AcceptOnly(good);
  Cluster c(4, 3, verify);
  ChunkId id = testing::TestChunkId(7);
  ASSERT_TRUE(c.nodes[0]->Put(id, good).ok());
  // Corrupt the copy of the best-ranked holder other than the writer; the
  // reader is a node with no copy.
  std::vector<NodeId> ranked = RankNodes(id, c.ids);
  std::size_t reader = 0;
  for (std::size_t n = 1; n < c.ids.size(); ++n) {
    if (!*c.stores[n]->Has(id)) reader = n;
  }
  ASSERT_NE(reader, 0u) << "with 4 nodes and R=3 one node has no copy";
  for (const NodeId& r : ranked) {
    std::size_t n = static_cast<std::size_t>(std::find(c.ids.begin(), c.ids.end(), r) - c.ids.begin());
    if (n != reader) {
      ASSERT_TRUE(c.stores[n]->Remove(id).ok());
      ASSERT_TRUE(c.stores[n]->Put(id, AsBytes("forged bytes")).ok());
      break;
    }
  }
  Bytes out;
  Status s = c.nodes[reader]->Get(id, &out);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(out, good);
}

TEST(ReplicatedChunkStoreTest, ABadLocalCopyIsHealedFromAVerifiedOne) {
  Bytes good = testing::RandomBytes(5000, 3);
  auto verify = AcceptOnly(good);
  Cluster c(3, 3, verify);
  ChunkId id = testing::TestChunkId(8);
  ASSERT_TRUE(c.nodes[0]->Put(id, good).ok());
  // Same-size damage that the store's checksum cannot see (a forgery).
  ASSERT_TRUE(c.stores[0]->Remove(id).ok());
  Bytes forged = good;
  forged[10] ^= 1;
  ASSERT_TRUE(c.stores[0]->Put(id, forged).ok());
  Bytes out;
  // The caller that authenticates gets the local bytes as they are...
  ASSERT_TRUE(c.nodes[0]->Get(id, &out, ChunkStore::ReadCheck::kCallerAuthenticates).ok());
  EXPECT_EQ(out, forged);
  // ...and, asking again with every check, a verified copy, which also heals ours.
  ASSERT_TRUE(c.nodes[0]->Get(id, &out, ChunkStore::ReadCheck::kChecksum).ok());
  EXPECT_EQ(out, good);
  ASSERT_TRUE(c.stores[0]->Get(id, &out).ok());
  EXPECT_EQ(out, good);
}

// View: the local copy in place; a chunk held only by peers fetched first;
// a copy missing everywhere NotFound without calling `use`.
TEST(ReplicatedChunkStoreTest, ViewReadsLocallyOrFromAPeer) {
  Bytes good = testing::RandomBytes(5000, 4);
  Cluster c(3, 3, AcceptOnly(good));
  ChunkId id = testing::TestChunkId(9);
  ASSERT_TRUE(c.nodes[0]->Put(id, good).ok());
  ASSERT_TRUE(c.stores[1]->Remove(id).ok());
  for (std::size_t n : {std::size_t{0}, std::size_t{1}}) {
    for (auto check : {ChunkStore::ReadCheck::kChecksum,
                       ChunkStore::ReadCheck::kCallerAuthenticates}) {
      Bytes scratch, seen;
      Status s = c.nodes[n]->View(id, check, ChunkStore::ReadHint::kStreaming, &scratch,
                                  [&](ByteSpan b) {
        seen.assign(b.begin(), b.end());
        return Status::Ok();
      });
      ASSERT_TRUE(s.ok()) << n << ": " << s.ToString();
      EXPECT_EQ(seen, good) << n;
    }
  }
  Bytes scratch;
  bool called = false;
  Status s = c.nodes[1]->View(testing::TestChunkId(99), ChunkStore::ReadCheck::kCallerAuthenticates,
                              ChunkStore::ReadHint::kReused, &scratch, [&](ByteSpan) {
                                called = true;
                                return Status::Ok();
                              });
  EXPECT_EQ(s.code(), ErrorCode::kNotFound) << s.ToString();
  EXPECT_FALSE(called);
}

TEST(ReplicatedChunkStoreTest, MissingEverywhereIsNotFound) {
  Cluster c(3, 3);
  Bytes out;
  Status s = c.nodes[1]->Get(testing::TestChunkId(99), &out);
  EXPECT_EQ(s.code(), ErrorCode::kNotFound) << s.ToString();
  EXPECT_TRUE(out.empty());
}

TEST(ReplicatedChunkStoreTest, FetchedChunksAreCachedWithinTheBound) {
  Cluster c(3, 1, {}, /*cache=*/10000);
  // R=1: node 0 writes, and at most one other node holds each chunk.
  std::vector<ChunkId> remote;
  for (std::uint32_t i = 0; remote.size() < 5 && i < 1000; ++i) {
    ASSERT_TRUE(c.nodes[0]->Put(testing::TestChunkId(i), testing::RandomBytes(3000, i)).ok());
    if (!*c.stores[2]->Has(testing::TestChunkId(i))) remote.push_back(testing::TestChunkId(i));
  }
  ASSERT_EQ(remote.size(), 5u);
  Bytes out;
  ASSERT_TRUE(c.nodes[2]->Get(remote[0], &out).ok());
  int gets_before = c.net.served_gets(c.ids[0]) + c.net.served_gets(c.ids[1]);
  ASSERT_TRUE(c.nodes[2]->Get(remote[0], &out).ok());
  EXPECT_EQ(c.net.served_gets(c.ids[0]) + c.net.served_gets(c.ids[1]), gets_before)
      << "a second read comes from the cache";
  for (const ChunkId& id : remote) ASSERT_TRUE(c.nodes[2]->Get(id, &out).ok());
  EXPECT_LE(c.nodes[2]->cached_bytes(), 10000u);
  EXPECT_GT(c.nodes[2]->cached_bytes(), 0u);
}

}  // namespace
}  // namespace dfs::core
