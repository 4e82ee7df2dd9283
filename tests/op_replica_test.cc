// Sealed ops: the envelope, the keyless op store, and a keyed node's op log
// replaying another node's writes — all without a network.
#include "core/op_replica.h"

#include <gtest/gtest.h>

#include "core/file_server.h"
#include "core/memory_chunk_store.h"
#include "core/op_store.h"
#include "core/volume_crypto.h"
#include "tests/test_util.h"

namespace dfs::core {
namespace {

VolumeKey TestKey(std::uint8_t fill) { return *VolumeKey::FromBytes(Bytes(VolumeKey::kSize, fill)); }

TEST(OpSealerTest, RoundTripAndEveryTamperingIsRefused) {
  VolumeCrypto crypto(TestKey(1));
  OpSealer sealer(crypto);
  NodeId a = testing::TestNodeId(1), b = testing::TestNodeId(2);
  std::string_view text = "an op with a secret file name";
  Bytes plain(text.begin(), text.end());
  Bytes blob = sealer.Seal(a, 7, plain);
  EXPECT_EQ(blob.size(), plain.size() + OpSealer::kOverhead);
  EXPECT_EQ(std::search(blob.begin(), blob.end(), plain.begin(), plain.begin() + 10), blob.end())
      << "the plaintext does not appear in the blob";
  EXPECT_NE(sealer.Seal(a, 7, plain), blob) << "random nonces: two seals differ";

  Result<Bytes> back = sealer.Unseal(a, 7, blob);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, plain);

  EXPECT_EQ(sealer.Unseal(a, 8, blob).status().code(), ErrorCode::kCorrupt) << "another position";
  EXPECT_EQ(sealer.Unseal(b, 7, blob).status().code(), ErrorCode::kCorrupt) << "another origin";
  Bytes flipped = blob;
  flipped[OpSealer::kHeaderSize + OpSealer::kNonceSize + 2] ^= 1;
  EXPECT_EQ(sealer.Unseal(a, 7, flipped).status().code(), ErrorCode::kCorrupt);
  Bytes cut(blob.begin(), blob.begin() + 20);
  EXPECT_EQ(sealer.Unseal(a, 7, cut).status().code(), ErrorCode::kCorrupt);

  VolumeCrypto other_crypto(TestKey(2));
  OpSealer other(other_crypto);
  Result<Bytes> wrong = other.Unseal(a, 7, blob);
  EXPECT_EQ(wrong.status().code(), ErrorCode::kWrongKey) << wrong.status().ToString();
}

SealedOp Blob(const NodeId& origin, std::uint64_t seq, std::size_t size = 100) {
  Bytes b = testing::RandomBytes(size, seq);
  return SealedOp{origin, seq, b};
}

TEST(OpStoreTest, KeepsEachOriginInSequenceAndSurvivesReopen) {
  testing::TempDir dir;
  NodeId a = testing::TestNodeId(1), b = testing::TestNodeId(2);
  {
    auto store = std::move(OpStore::Open(dir / "ops.db")).value();
    EXPECT_EQ(*store->Accept(Blob(a, 1)), AcceptResult::kApplied);
    EXPECT_EQ(*store->Accept(Blob(a, 1)), AcceptResult::kDuplicate);
    EXPECT_EQ(*store->Accept(Blob(a, 3)), AcceptResult::kGap);
    EXPECT_EQ(*store->Accept(Blob(a, 2)), AcceptResult::kApplied);
    EXPECT_EQ(*store->Accept(Blob(a, 3)), AcceptResult::kApplied);
    EXPECT_EQ(*store->Accept(Blob(b, 1)), AcceptResult::kApplied);
    EXPECT_EQ(store->Accept(SealedOp{a, 4, Bytes(5)}).status().code(), ErrorCode::kCorrupt)
        << "too short to be a sealed op";
  }
  auto store = std::move(OpStore::Open(dir / "ops.db")).value();
  VersionVector v = *store->Vector();
  EXPECT_EQ(v.Get(a), 3u);
  EXPECT_EQ(v.Get(b), 1u);
  std::vector<SealedOp> all = *store->Since(a, 2, 1 << 20);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].seq, 2u);
  EXPECT_EQ(all[0].blob, Blob(a, 2).blob) << "blobs are kept byte for byte";
  std::vector<SealedOp> one = *store->Since(a, 1, 50);
  EXPECT_EQ(one.size(), 1u) << "at least one op, then the byte budget holds";
}

// A keyless store tells the origins of one volume from another's by the
// key check in their ops' envelopes.
TEST(OpStoreTest, VectorForAKeyCheckCoversOnlyThatVolumesOrigins) {
  testing::TempDir dir;
  auto store = std::move(OpStore::Open(dir / "ops.db")).value();
  VolumeCrypto c1(TestKey(1)), c2(TestKey(2));
  OpSealer s1(c1), s2(c2);
  NodeId a = testing::TestNodeId(1), b = testing::TestNodeId(2), c = testing::TestNodeId(3);
  auto sealed = [](const OpSealer& s, const NodeId& origin, std::uint64_t seq) {
    return SealedOp{origin, seq, s.Seal(origin, seq, AsBytes("op"))};
  };
  for (std::uint64_t seq = 1; seq <= 3; ++seq) ASSERT_TRUE(store->Accept(sealed(s1, a, seq)).ok());
  ASSERT_TRUE(store->Accept(sealed(s1, b, 1)).ok());
  for (std::uint64_t seq = 1; seq <= 2; ++seq) ASSERT_TRUE(store->Accept(sealed(s2, c, seq)).ok());

  VersionVector v1 = *store->VectorFor(s1.key_check());
  EXPECT_EQ(v1.entries().size(), 2u);
  EXPECT_EQ(v1.Get(a), 3u);
  EXPECT_EQ(v1.Get(b), 1u);
  VersionVector v2 = *store->VectorFor(s2.key_check());
  EXPECT_EQ(v2.entries().size(), 1u);
  EXPECT_EQ(v2.Get(c), 2u);
  EXPECT_TRUE(store->VectorFor(KeyCheck{})->entries().empty());
}

class VolumeOpLogTest : public ::testing::Test {
 protected:
  std::unique_ptr<FileServer> Make(std::uint8_t node, std::uint8_t key = 1) {
    auto index = Index::Open(dir_ / ("index" + std::to_string(node) + ".db"));
    EXPECT_TRUE(index.ok());
    FileServerOptions o;
    o.node_id = testing::TestNodeId(node);
    auto fs = FileServer::Create(std::make_unique<MemoryChunkStore>(), std::move(*index),
                                 TestKey(key), o);
    EXPECT_TRUE(fs.ok()) << fs.status().ToString();
    return std::move(*fs);
  }
  static Status Put(FileServer& fs, std::string_view key, std::string_view text) {
    MemoryReader r(AsBytes(text));
    return fs.Store(key, r);
  }
  // Everything `from` holds that `to` lacks, through sealed ops.
  static void Sync(VolumeOpLog& from, VolumeOpLog& to) {
    VersionVector theirs = *to.Vector();
    VersionVector ours = *from.Vector();
    for (const auto& [origin, seq] : ours.Missing(theirs)) {
      std::vector<SealedOp> ops = *from.Since(origin, seq, 1 << 20);
      for (const SealedOp& op : ops) {
        auto r = to.Accept(op);
        ASSERT_TRUE(r.ok()) << r.status().ToString();
      }
    }
  }
  testing::TempDir dir_;
};

TEST_F(VolumeOpLogTest, AnotherNodeReplaysWritesAndConverges) {
  auto a = Make(1), b = Make(2);
  VolumeOpLog la(*a), lb(*b);
  std::vector<Op> published;
  a->SetOpListener([&](const Op& op, bool local) {
    if (local) published.push_back(op);
  });
  ASSERT_TRUE(Put(*a, "x", "one").ok());
  ASSERT_TRUE(Put(*a, "y", "two").ok());
  ASSERT_TRUE(a->Delete("x").ok());
  ASSERT_TRUE(Put(*b, "z", "three").ok());
  ASSERT_EQ(published.size(), 3u);
  EXPECT_EQ(published[2].seq, 3u);
  EXPECT_EQ(published[2].kind, Op::Kind::kTree);  // every write is a tree op

  // A pushed op after a gap is refused as a gap; pulling fills it.
  EXPECT_EQ(*lb.Accept(la.SealLocal(published[1])), AcceptResult::kGap);
  Sync(la, lb);
  Sync(lb, la);
  for (FileServer* fs : {a.get(), b.get()}) {
    EXPECT_FALSE(*fs->Has("x"));
    EXPECT_TRUE(*fs->Has("y"));
    EXPECT_TRUE(*fs->Has("z"));
  }
  EXPECT_EQ(la.Vector()->entries(), lb.Vector()->entries());
  EXPECT_EQ(*lb.Accept(la.SealLocal(published[0])), AcceptResult::kDuplicate);
}

TEST_F(VolumeOpLogTest, VectorForIsTheVectorForItsOwnKeyCheckOnly) {
  auto a = Make(1, 1);
  VolumeOpLog la(*a);
  ASSERT_TRUE(Put(*a, "x", "one").ok());
  ASSERT_TRUE(a->Flush().ok());
  VolumeCrypto other(TestKey(2));
  EXPECT_EQ(la.key_check(), OpSealer(a->crypto()).key_check());
  EXPECT_EQ(la.VectorFor(la.key_check())->entries(), la.Vector()->entries());
  EXPECT_EQ(la.Vector()->Get(testing::TestNodeId(1)), 1u);
  EXPECT_TRUE(la.VectorFor(OpSealer(other).key_check())->entries().empty());
}

TEST_F(VolumeOpLogTest, OpsOfAnotherVolumeAreRefusedAsWrongKey) {
  auto a = Make(1, 1), b = Make(2, 2);
  VolumeOpLog la(*a), lb(*b);
  ASSERT_TRUE(Put(*a, "x", "one").ok());
  std::vector<SealedOp> ops = *la.Since(testing::TestNodeId(1), 1, 1 << 20);
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(lb.Accept(ops[0]).status().code(), ErrorCode::kWrongKey);
  EXPECT_FALSE(*b->Has("x"));
}

TEST_F(VolumeOpLogTest, OurOwnOpsGivenBackAreNeverRenumbered) {
  auto a = Make(1);
  VolumeOpLog la(*a);
  ASSERT_TRUE(Put(*a, "x", "one").ok());
  ASSERT_TRUE(Put(*a, "y", "two").ok());
  std::vector<SealedOp> ops = *la.Since(testing::TestNodeId(1), 1, 1 << 20);
  ASSERT_EQ(ops.size(), 2u);
  // The same node on an older copy of its index (a restored backup): a peer
  // gives its ops back before it writes again.
  a.reset();
  std::filesystem::remove(dir_ / "index1.db");
  auto again = Make(1);
  VolumeOpLog lagain(*again);
  ASSERT_FALSE(*again->Has("x"));
  EXPECT_EQ(*lagain.Accept(ops[0]), AcceptResult::kApplied);
  EXPECT_EQ(*lagain.Accept(ops[1]), AcceptResult::kApplied);
  ASSERT_TRUE(Put(*again, "v", "next").ok());
  std::vector<SealedOp> mine = *lagain.Since(testing::TestNodeId(1), 3, 1 << 20);
  ASSERT_EQ(mine.size(), 1u) << "the next local op follows the ones given back";
  EXPECT_TRUE(*again->Has("v"));
  EXPECT_TRUE(*again->Has("y"));
}

}  // namespace
}  // namespace dfs::core
