// The chunk collector without a network: real FileServers, op logs and op
// stores; the peers answer through AnswerRefs as a node's chunk server does.
#include "core/chunk_gc.h"

#include <map>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "core/file_server.h"
#include "core/memory_chunk_store.h"
#include "core/op_store.h"
#include "core/volume_crypto.h"
#include "tests/test_util.h"

namespace dfs::core {
namespace {

VolumeKey TestKey(std::uint8_t fill) { return *VolumeKey::FromBytes(Bytes(VolumeKey::kSize, fill)); }

// Peers that answer with AnswerRefs over their own replica and FileServer.
class FakePeers final : public GcPeers {
 public:
  struct Peer {
    OpReplica* replica;
    FileServer* files;  // nullptr: keyless
    bool down = false;
  };
  std::vector<NodeId> LivePeers() override {
    std::vector<NodeId> out;
    for (const auto& [id, p] : peers) out.push_back(id);
    return out;
  }
  Result<RefsAnswer> AskRefs(const NodeId& peer, const KeyCheck& volume, const VersionVector& mine,
                             const std::vector<ChunkId>& ids) override {
    ++asked;
    Peer& p = peers.at(peer);
    if (p.down) return Status::Unavailable("peer down");
    return AnswerRefs(*p.replica, p.files, volume, mine, ids);
  }
  std::map<NodeId, Peer> peers;
  int asked = 0;
};

class ChunkGcTest : public ::testing::Test {
 protected:
  struct Keyed {
    std::unique_ptr<FileServer> fs;
    std::unique_ptr<VolumeOpLog> log;
  };
  Keyed MakeKeyed(std::uint8_t node, std::uint8_t key = 1) {
    auto index = Index::Open(dir_ / ("index" + std::to_string(node) + ".db"));
    EXPECT_TRUE(index.ok());
    FileServerOptions o;
    o.node_id = testing::TestNodeId(node);
    o.chunker = {.min_size = 2048, .avg_size = 4096, .max_size = 16384};
    auto fs = FileServer::Create(std::make_unique<MemoryChunkStore>(), std::move(*index),
                                 TestKey(key), o);
    EXPECT_TRUE(fs.ok()) << fs.status().ToString();
    Keyed k{std::move(*fs), nullptr};
    k.log = std::make_unique<VolumeOpLog>(*k.fs);
    return k;
  }
  std::unique_ptr<OpStore> MakeOpStore(const std::string& name) {
    return std::move(OpStore::Open(dir_ / name)).value();
  }
  static void Put(FileServer& fs, std::string_view key, const Bytes& data) {
    MemoryReader r(data);
    ASSERT_TRUE(fs.Store(key, r).ok());
  }
  // The chunks `put` adds to `store`.
  template <typename Fn>
  static std::vector<ChunkId> NewChunks(ChunkStore& store, Fn put) {
    std::set<ChunkId> before;
    EXPECT_TRUE(store.ForEach([&](const ChunkId& id, std::uint64_t) {
                       before.insert(id);
                       return true;
                     }).ok());
    put();
    std::vector<ChunkId> out;
    EXPECT_TRUE(store.ForEach([&](const ChunkId& id, std::uint64_t) {
                       if (before.count(id) == 0) out.push_back(id);
                       return true;
                     }).ok());
    return out;
  }
  // Copies every chunk of `from` into `to`, as replication puts them on a holder.
  static void CopyChunks(ChunkStore& from, ChunkStore& to) {
    ASSERT_TRUE(from.ForEach([&](const ChunkId& id, std::uint64_t) {
                      Bytes b;
                      EXPECT_TRUE(from.Get(id, &b).ok());
                      EXPECT_TRUE(to.Put(id, b).ok());
                      return true;
                    }).ok());
  }
  // Everything `from` holds that `to` lacks, through sealed ops.
  static void SyncOps(OpReplica& from, OpReplica& to) {
    VersionVector theirs = *to.Vector();
    for (const auto& [origin, seq] : from.Vector()->Missing(theirs)) {
      std::vector<SealedOp> ops = *from.Since(origin, seq, 1 << 20);
      for (const SealedOp& op : ops) {
        auto r = to.Accept(op);
        ASSERT_TRUE(r.ok()) << r.status().ToString();
      }
    }
  }
  static std::uint64_t Count(ChunkStore& store) { return store.Usage()->chunks; }
  static GcOptions NoGrace() {
    GcOptions o;
    o.grace = std::chrono::seconds(0);
    return o;
  }
  // Chunk times are compared with a cutoff of "now": step past the puts.
  static void Settle() { std::this_thread::sleep_for(std::chrono::milliseconds(5)); }

  testing::TempDir dir_;
};

// The keyless peer drops exactly the chunks of the removed file once a keyed
// peer that has seen every op it holds says nothing references them.
TEST_F(ChunkGcTest, AKeylessPeerCollectsWhatNoFileReferencesAnyMore) {
  Keyed a = MakeKeyed(1);
  std::vector<ChunkId> keep = NewChunks(a.fs->chunk_store(), [&] {
    Put(*a.fs, "keep", testing::RandomBytes(60000, 1));
  });
  std::vector<ChunkId> drop = NewChunks(a.fs->chunk_store(), [&] {
    Put(*a.fs, "drop", testing::RandomBytes(60000, 2));
  });
  ASSERT_GT(drop.size(), 3u);

  MemoryChunkStore k_store;
  auto k_ops = MakeOpStore("k.db");
  CopyChunks(a.fs->chunk_store(), k_store);
  ASSERT_TRUE(a.fs->Delete("drop").ok());
  ASSERT_TRUE(a.fs->Flush().ok());
  SyncOps(*a.log, *k_ops);
  ASSERT_EQ(Count(k_store), keep.size() + drop.size());

  FakePeers peers;
  peers.peers[testing::TestNodeId(1)] = {a.log.get(), a.fs.get()};

  // Within the grace period nothing goes.
  GcOptions grace;
  grace.grace = std::chrono::hours(1);
  Result<GcStats> young = ChunkCollector(k_store, *k_ops, nullptr, peers, grace).Run();
  ASSERT_TRUE(young.ok()) << young.status().ToString();
  EXPECT_EQ(young->young, keep.size() + drop.size());
  EXPECT_EQ(young->removed, 0u);
  EXPECT_EQ(peers.asked, 0);

  Settle();
  std::uint64_t progressed = 0;
  Result<GcStats> st = ChunkCollector(k_store, *k_ops, nullptr, peers, NoGrace())
                           .Run([&](std::uint64_t n) { progressed = n; });
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->chunks, keep.size() + drop.size());
  EXPECT_EQ(progressed, st->chunks);
  EXPECT_EQ(st->removed, drop.size());
  EXPECT_EQ(st->live, keep.size());
  EXPECT_EQ(st->unanswered, 0u);
  EXPECT_GT(st->removed_bytes, 60000u);
  for (const ChunkId& id : drop) EXPECT_FALSE(*k_store.Has(id));
  for (const ChunkId& id : keep) EXPECT_TRUE(*k_store.Has(id));
  // The keyed node still reads what it keeps.
  MemoryWriter w;
  EXPECT_TRUE(a.fs->Get("keep", w).ok());
  EXPECT_EQ(w.data(), testing::RandomBytes(60000, 1));
}

// A keyed peer that lacks ops the asker holds cannot say a chunk is unused:
// the file naming it may be in those ops. Nothing is removed.
TEST_F(ChunkGcTest, AnAnswerFromAPeerBehindTheAskerDoesNotCount) {
  Keyed a = MakeKeyed(1), b = MakeKeyed(2);  // b: the same volume, has seen nothing
  Put(*a.fs, "f", testing::RandomBytes(40000, 3));
  ASSERT_TRUE(a.fs->Flush().ok());
  MemoryChunkStore k_store;
  auto k_ops = MakeOpStore("k.db");
  CopyChunks(a.fs->chunk_store(), k_store);
  SyncOps(*a.log, *k_ops);

  FakePeers peers;
  peers.peers[testing::TestNodeId(2)] = {b.log.get(), b.fs.get()};
  Settle();
  Result<GcStats> st = ChunkCollector(k_store, *k_ops, nullptr, peers, NoGrace()).Run();
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->removed, 0u);
  EXPECT_EQ(st->unanswered, Count(k_store));
  ASSERT_EQ(st->notes.size(), 1u);
  EXPECT_NE(st->notes[0].find("lack ops"), std::string::npos) << st->notes[0];

  // Once b has caught up it answers, and the file's chunks are live.
  SyncOps(*a.log, *b.log);
  st = ChunkCollector(k_store, *k_ops, nullptr, peers, NoGrace()).Run();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->removed, 0u);
  EXPECT_EQ(st->live, Count(k_store));
}

// Without a live peer that holds the volume's key (another volume's node, a
// keyless one, or one that does not answer), everything is kept.
TEST_F(ChunkGcTest, NoPeerWithTheKeyMeansNothingIsRemoved) {
  Keyed a = MakeKeyed(1, 1), other = MakeKeyed(2, 2);
  Put(*a.fs, "f", testing::RandomBytes(40000, 4));
  ASSERT_TRUE(a.fs->Delete("f").ok());  // unreferenced, but nobody here can say so
  MemoryChunkStore k_store;
  auto k_ops = MakeOpStore("k.db"), k2_ops = MakeOpStore("k2.db");
  // (a freed its own copies: seal some under its key straight into k's store)
  for (int i = 0; i < 5; ++i) {
    Bytes plain = testing::RandomBytes(3000, 10 + i), sealed;
    ChunkId id = a.fs->crypto().ComputeId(plain);
    a.fs->crypto().Seal(id, plain, &sealed);
    ASSERT_TRUE(k_store.Put(id, sealed).ok());
  }
  ASSERT_TRUE(k_store.Put(testing::TestChunkId(99), AsBytes("not a sealed chunk at all")).ok());

  FakePeers peers;
  peers.peers[testing::TestNodeId(2)] = {other.log.get(), other.fs.get()};
  peers.peers[testing::TestNodeId(3)] = {k2_ops.get(), nullptr};
  peers.peers[testing::TestNodeId(4)] = {a.log.get(), a.fs.get(), /*down=*/true};
  Settle();
  Result<GcStats> st = ChunkCollector(k_store, *k_ops, nullptr, peers, NoGrace()).Run();
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->removed, 0u);
  EXPECT_EQ(st->unanswered, 5u);
  EXPECT_EQ(st->unknown, 1u);
  ASSERT_EQ(st->notes.size(), 1u);
  EXPECT_NE(st->notes[0].find("no live peer holds its key"), std::string::npos) << st->notes[0];
  EXPECT_EQ(Count(k_store), 6u);

  // The keyed node back: all five go; the stranger stays.
  peers.peers[testing::TestNodeId(4)].down = false;
  st = ChunkCollector(k_store, *k_ops, nullptr, peers, NoGrace()).Run();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->removed, 5u);
  EXPECT_EQ(Count(k_store), 1u);
}

// A node with the key sweeps orphans of its own volume (chunks nothing
// references: an interrupted write, a copy that came after the op that freed
// it) — but only while no live peer holds ops it has not applied.
TEST_F(ChunkGcTest, AKeyedNodeSweepsItsOwnOrphansOnlyWhenCurrent) {
  Keyed a = MakeKeyed(1), b = MakeKeyed(2);
  Put(*a.fs, "f", testing::RandomBytes(40000, 5));
  ASSERT_TRUE(a.fs->Flush().ok());
  const std::uint64_t referenced = Count(a.fs->chunk_store());
  std::vector<ChunkId> orphans;
  for (int i = 0; i < 4; ++i) {
    Bytes plain = testing::RandomBytes(3000, 20 + i), sealed;
    ChunkId id = a.fs->crypto().ComputeId(plain);
    a.fs->crypto().Seal(id, plain, &sealed);
    ASSERT_TRUE(a.fs->chunk_store().Put(id, sealed).ok());
    orphans.push_back(id);
  }
  // b wrote something a has not applied.
  Put(*b.fs, "g", testing::RandomBytes(10000, 6));
  ASSERT_TRUE(b.fs->Flush().ok());
  FakePeers peers;
  peers.peers[testing::TestNodeId(2)] = {b.log.get(), b.fs.get()};
  Settle();
  Result<GcStats> st =
      ChunkCollector(a.fs->chunk_store(), *a.log, a.fs.get(), peers, NoGrace()).Run();
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->removed, 0u);
  EXPECT_EQ(st->unanswered, referenced + orphans.size());
  ASSERT_EQ(st->notes.size(), 1u);
  EXPECT_NE(st->notes[0].find("not applied"), std::string::npos) << st->notes[0];

  SyncOps(*b.log, *a.log);
  st = ChunkCollector(a.fs->chunk_store(), *a.log, a.fs.get(), peers, NoGrace()).Run();
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->removed, orphans.size());
  EXPECT_EQ(st->live, referenced);
  for (const ChunkId& id : orphans) EXPECT_FALSE(*a.fs->chunk_store().Has(id));
  MemoryWriter w;
  EXPECT_TRUE(a.fs->Get("f", w).ok());
  EXPECT_EQ(w.data(), testing::RandomBytes(40000, 5));
}

// A pass asked to stop (the node is stopping) ends without judging more.
TEST_F(ChunkGcTest, AStoppedPassRemovesNothingMore) {
  Keyed a = MakeKeyed(1);
  for (int i = 0; i < 3; ++i) {
    Bytes plain = testing::RandomBytes(3000, 40 + i), sealed;
    ChunkId id = a.fs->crypto().ComputeId(plain);
    a.fs->crypto().Seal(id, plain, &sealed);
    ASSERT_TRUE(a.fs->chunk_store().Put(id, sealed).ok());
  }
  FakePeers peers;
  Settle();
  std::atomic<bool> stop{true};
  Result<GcStats> st =
      ChunkCollector(a.fs->chunk_store(), *a.log, a.fs.get(), peers, NoGrace()).Run({}, &stop);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->removed, 0u);
  EXPECT_EQ(Count(a.fs->chunk_store()), 3u);
  stop = false;
  st = ChunkCollector(a.fs->chunk_store(), *a.log, a.fs.get(), peers, NoGrace()).Run({}, &stop);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->removed, 3u) << "alone, current, and nothing references them";
}

// Small batches and a cap of one waiting volume still judge every chunk by
// its own volume.
TEST_F(ChunkGcTest, BatchesOfManyVolumesAreEachAskedOfTheirOwn) {
  Keyed a = MakeKeyed(1, 1), c = MakeKeyed(3, 3);
  MemoryChunkStore k_store;
  auto k_ops = MakeOpStore("k.db");
  std::vector<ChunkId> unused;
  for (Keyed* node : {&a, &c}) {
    Put(*node->fs, "live", testing::RandomBytes(30000, 7));
    ASSERT_TRUE(node->fs->Flush().ok());
    CopyChunks(node->fs->chunk_store(), k_store);
    SyncOps(*node->log, *k_ops);
    for (int i = 0; i < 7; ++i) {
      Bytes plain = testing::RandomBytes(2000, 30 + i), sealed;
      ChunkId id = node->fs->crypto().ComputeId(plain);
      node->fs->crypto().Seal(id, plain, &sealed);
      ASSERT_TRUE(k_store.Put(id, sealed).ok());
      unused.push_back(id);
    }
  }
  const std::uint64_t total = Count(k_store);
  FakePeers peers;
  peers.peers[testing::TestNodeId(1)] = {a.log.get(), a.fs.get()};
  peers.peers[testing::TestNodeId(3)] = {c.log.get(), c.fs.get()};
  GcOptions o = NoGrace();
  o.batch = 3;
  o.max_volumes = 1;
  Settle();
  Result<GcStats> st = ChunkCollector(k_store, *k_ops, nullptr, peers, o).Run();
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->removed, unused.size());
  EXPECT_EQ(st->live, total - unused.size());
  EXPECT_EQ(Count(k_store), total - unused.size());
  for (const ChunkId& id : unused) EXPECT_FALSE(*k_store.Has(id));
}

}  // namespace
}  // namespace dfs::core
