#include "core/index.h"

#include <algorithm>

#include <fmt/format.h>
#include <gtest/gtest.h>

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
