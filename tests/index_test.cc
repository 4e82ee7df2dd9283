#include "core/index.h"

#include <filesystem>

#include <algorithm>
#include <deque>
#include <map>
#include <random>
#include <set>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "core/op_store.h"
#include "tests/test_util.h"

namespace dfs::core {
namespace {

ChunkId Id(std::uint8_t b) {
  std::array<std::uint8_t, ChunkId::kSize> a;
  a.fill(b);
  return ChunkId(a);
}

Manifest Make(std::initializer_list<std::uint8_t> ids) {
  Manifest m;
  for (std::uint8_t b : ids) {
    m.chunks.push_back({Id(b), 100});
    m.size += 100;
  }
  return m;
}

std::uint64_t Sealed(const ChunkRef& r) { return r.size + 32; }

class IndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto idx = Index::Open(dir_ / "index.db");
    ASSERT_TRUE(idx.ok()) << idx.status().ToString();
    index_ = std::move(idx).value();
  }
  testing::TempDir dir_;
  std::unique_ptr<Index> index_;
};

TEST_F(IndexTest, PutLookupDelete) {
  auto freed = index_->PutFile("a", Make({1, 2}), 5, Sealed);
  ASSERT_TRUE(freed.ok());
  EXPECT_TRUE(freed->empty());
  auto rec = index_->Lookup("a");
  ASSERT_TRUE(rec.ok() && rec->has_value());
  EXPECT_EQ((*rec)->manifest, Make({1, 2}));
  EXPECT_EQ((*rec)->mtime_ns, 5);
  auto gone = index_->DeleteFile("a");
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(gone->size(), 2u);
  EXPECT_FALSE(index_->Lookup("a")->has_value());
  EXPECT_EQ(index_->DeleteFile("a").status().code(), ErrorCode::kNotFound);
}

TEST_F(IndexTest, SharedChunksAreFreedOnlyWhenUnreferenced) {
  ASSERT_TRUE(index_->PutFile("a", Make({1, 2}), 0, Sealed).ok());
  ASSERT_TRUE(index_->PutFile("b", Make({2, 3, 3}), 0, Sealed).ok());
  auto totals = index_->Totals();
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(totals->files, 2u);
  EXPECT_EQ(totals->chunks, 3u);
  EXPECT_EQ(totals->stored_bytes, 3u * 132);

  auto freed = index_->DeleteFile("a");
  ASSERT_TRUE(freed.ok());
  ASSERT_EQ(freed->size(), 1u);
  EXPECT_EQ((*freed)[0], Id(1));
  EXPECT_TRUE(*index_->IsReferenced(Id(2)));
  EXPECT_FALSE(*index_->IsReferenced(Id(1)));

  // Overwrite b: chunk 2 goes, 3 stays, 4 arrives.
  freed = index_->PutFile("b", Make({3, 4}), 0, Sealed);
  ASSERT_TRUE(freed.ok());
  ASSERT_EQ(freed->size(), 1u);
  EXPECT_EQ((*freed)[0], Id(2));
  auto pending = index_->PendingFree(10);
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(pending->size(), 2u);  // 1 and 2
  ASSERT_TRUE(index_->ClearPendingFree(*pending).ok());
  EXPECT_TRUE(index_->PendingFree(10)->empty());
}

TEST_F(IndexTest, RereferencedChunkLeavesPendingFree) {
  ASSERT_TRUE(index_->PutFile("a", Make({1}), 0, Sealed).ok());
  ASSERT_TRUE(index_->DeleteFile("a").ok());
  EXPECT_EQ(index_->PendingFree(10)->size(), 1u);
  ASSERT_TRUE(index_->PutFile("b", Make({1}), 0, Sealed).ok());
  EXPECT_TRUE(index_->PendingFree(10)->empty());
  EXPECT_TRUE(*index_->IsReferenced(Id(1)));
}

TEST_F(IndexTest, ListIsOrderedPrefixedAndBatched) {
  for (int i = 0; i < 600; ++i) {
    ASSERT_TRUE(index_->PutFile(fmt::format("dir/{:04}", i), Make({1}), 0, Sealed).ok());
  }
  ASSERT_TRUE(index_->PutFile("dir0", Make({1}), 0, Sealed).ok());
  ASSERT_TRUE(index_->PutFile("other", Make({1}), 0, Sealed).ok());
  std::vector<std::string> keys;
  ASSERT_TRUE(index_->List("dir/", [&](const FileRecord& r) {
                      keys.push_back(r.key);
                      return true;
                    }).ok());
  ASSERT_EQ(keys.size(), 600u);
  EXPECT_EQ(keys.front(), "dir/0000");
  EXPECT_EQ(keys.back(), "dir/0599");
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  int seen = 0;
  ASSERT_TRUE(index_->List("", [&](const FileRecord&) { return ++seen < 3; }).ok());
  EXPECT_EQ(seen, 3);
}

TEST_F(IndexTest, SurvivesReopen) {
  ASSERT_TRUE(index_->PutFile("a", Make({7}), 0, Sealed).ok());
  ASSERT_TRUE(index_->SetMeta("x", AsBytes("y")).ok());
  index_.reset();
  auto idx = Index::Open(dir_ / "index.db");
  ASSERT_TRUE(idx.ok());
  EXPECT_TRUE((*idx)->Lookup("a")->has_value());
  auto meta = (*idx)->GetMeta("x");
  ASSERT_TRUE(meta.ok() && meta->has_value());
  EXPECT_EQ(AsString(**meta), "y");
}

TEST_F(IndexTest, GarbageFileIsReportedNotTrusted) {
  testing::WriteFile(dir_ / "junk.db", AsBytes(std::string(8192, 'j')));
  auto idx = Index::Open(dir_ / "junk.db");
  ASSERT_FALSE(idx.ok());
  EXPECT_EQ(idx.status().code(), ErrorCode::kCorrupt) << idx.status().ToString();
}

}  // namespace
}  // namespace dfs::core

namespace dfs::core {
namespace {

// Ops from three origins, each origin's in sequence, on a handful of keys.
std::vector<Op> OpHistory(std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Op> ops;
  std::uint64_t seqs[4] = {};
  for (int i = 0; i < 120; ++i) {
    auto o = static_cast<std::uint8_t>(1 + rng() % 3);
    Op op;
    op.origin = testing::TestNodeId(o);
    op.seq = ++seqs[o];
    op.time = {1000 + rng() % 50, static_cast<std::uint32_t>(rng() % 2)};
    op.key = "dir/k" + std::to_string(rng() % 6);
    op.kind = rng() % 4 == 0 ? Op::Kind::kDelete : Op::Kind::kPut;
    if (op.kind == Op::Kind::kPut) op.value = Make({static_cast<std::uint8_t>(1 + rng() % 9)}).Encode();
    ops.push_back(std::move(op));
  }
  return ops;
}

// Delivers `ops` keeping each origin's order but interleaving origins at random.
std::vector<Op> Interleave(const std::vector<Op>& ops, std::uint32_t seed) {
  std::map<NodeId, std::deque<Op>> per;
  for (const Op& op : ops) per[op.origin].push_back(op);
  std::mt19937 rng(seed);
  std::vector<Op> out;
  while (!per.empty()) {
    auto it = per.begin();
    std::advance(it, static_cast<long>(rng() % per.size()));
    out.push_back(it->second.front());
    it->second.pop_front();
    if (it->second.empty()) per.erase(it);
  }
  return out;
}

std::map<std::string, Manifest> Files(Index& index) {
  std::map<std::string, Manifest> files;
  EXPECT_TRUE(index.List("", [&](const FileRecord& r) {
                     files[r.key] = r.manifest;
                     return true;
                   }).ok());
  return files;
}

TEST_F(IndexTest, ReplicasApplyingTheSameOpsConverge) {
  for (std::uint32_t seed = 1; seed <= 8; ++seed) {
    std::vector<Op> ops = OpHistory(seed);
    KeyIndexState reference;
    for (const Op& op : ops) reference.Apply(op);
    std::map<std::string, Manifest> first;
    for (int replica = 0; replica < 3; ++replica) {
      testing::TempDir dir;
      auto idx = Index::Open(dir / "r.db");
      ASSERT_TRUE(idx.ok());
      for (const Op& op : Interleave(ops, seed * 10 + static_cast<std::uint32_t>(replica))) {
        std::vector<ChunkId> freed;
        auto applied = (*idx)->ApplyOp(op, &freed, Sealed);
        ASSERT_TRUE(applied.ok()) << applied.status().ToString();
        EXPECT_TRUE(*applied);
      }
      auto files = Files(**idx);
      std::vector<std::string> keys;
      for (const auto& [k, m] : files) {
        keys.push_back(k);
        EXPECT_EQ(m.Encode(), *reference.Lookup(k)) << k;
      }
      EXPECT_EQ(keys, reference.Keys()) << "seed " << seed << " replica " << replica;
      if (replica == 0) first = files;
      EXPECT_EQ(files, first);
      // Reference counts follow the surviving manifests only.
      std::set<ChunkId> live;
      for (const auto& [k, m] : files) {
        for (const ChunkRef& r : m.chunks) live.insert(r.id);
      }
      EXPECT_EQ((*idx)->Totals()->chunks, live.size());
    }
  }
}

TEST_F(IndexTest, OpsAreAppliedOnceAndInSequence) {
  Op op;
  op.origin = testing::TestNodeId(1);
  op.seq = 1;
  op.time = {10, 0};
  op.key = "a";
  op.value = Make({1}).Encode();
  std::vector<ChunkId> freed;
  EXPECT_TRUE(*index_->ApplyOp(op, &freed, Sealed));
  EXPECT_FALSE(*index_->ApplyOp(op, &freed, Sealed)) << "a duplicate changes nothing";
  Op gap = op;
  gap.seq = 3;
  auto r = index_->ApplyOp(gap, &freed, Sealed);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kUnavailable) << "a gap is 'not yet', not bad input";
  Op del = op;
  del.seq = 2;
  del.time = {20, 0};
  del.kind = Op::Kind::kDelete;
  del.value.clear();
  EXPECT_TRUE(*index_->ApplyOp(del, &freed, Sealed));
  EXPECT_FALSE(index_->Lookup("a")->has_value());
  EXPECT_EQ(freed.size(), 1u);
  // An older put from another origin arrives late: the tombstone holds.
  Op late = op;
  late.origin = testing::TestNodeId(2);
  late.time = {15, 0};
  EXPECT_TRUE(*index_->ApplyOp(late, &freed, Sealed));
  EXPECT_FALSE(index_->Lookup("a")->has_value());

  auto v = index_->Vector();
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->Get(testing::TestNodeId(1)), 2u);
  EXPECT_EQ(v->Get(testing::TestNodeId(2)), 1u);
  VersionVector empty;
  EXPECT_EQ(v->Missing(empty).size(), 2u);
  auto since = index_->OpsSince(testing::TestNodeId(1), 2, 10);
  ASSERT_TRUE(since.ok());
  ASSERT_EQ(since->size(), 1u);
  EXPECT_EQ((*since)[0].kind, Op::Kind::kDelete);
  EXPECT_EQ(index_->OpsSince(testing::TestNodeId(1), 1, 10)->size(), 2u);
}

// SQLite checkpoints the write-ahead log every 1000 pages only when no
// statement still holds a read open; the op path left one on its row past
// COMMIT, and the log grew by every page ever written (190 MB for 10,000
// empty files in a mount).
constexpr std::uintmax_t kWalBound = 32u << 20;  // journal_size_limit

TEST_F(IndexTest, WriteAheadLogStaysBoundedUnderManyOps) {
  std::vector<ChunkId> freed;
  std::uint64_t seq = 0;
  for (int i = 0; i < 4000; ++i) {
    Op op;
    op.origin = testing::TestNodeId(1);
    op.seq = ++seq;
    op.time = {static_cast<std::uint64_t>(100 + i), 0};
    // Rewrites of a few hundred keys: both the new-key and the
    // last-writer-wins paths, with deletes among them.
    op.key = fmt::format("dir/file-{:04}-{}", i % 300, std::string(200, 'x'));
    op.kind = i % 7 == 6 ? Op::Kind::kDelete : Op::Kind::kPut;
    if (op.kind == Op::Kind::kPut) {
      op.value = Make({static_cast<std::uint8_t>(i), static_cast<std::uint8_t>(i / 256)}).Encode();
    }
    auto applied = index_->ApplyOp(op, &freed, Sealed);
    ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  }
  EXPECT_LT(std::filesystem::file_size(dir_ / "index.db-wal"), kWalBound);
  EXPECT_EQ(index_->Vector()->Get(testing::TestNodeId(1)), seq);
}

TEST(OpStoreTest, WriteAheadLogStaysBoundedUnderManyOps) {
  testing::TempDir dir;
  auto store = OpStore::Open(dir / "ops.db");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  for (std::uint64_t seq = 1; seq <= 4000; ++seq) {
    SealedOp op{testing::TestNodeId(1), seq, Bytes(2000, static_cast<std::uint8_t>(seq))};
    auto r = (*store)->Accept(op);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(*r, AcceptResult::kApplied);
  }
  EXPECT_LT(std::filesystem::file_size(dir / "ops.db-wal"), kWalBound);
}

}  // namespace
}  // namespace dfs::core
