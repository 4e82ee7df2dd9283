// One conformance suite, run against every ChunkStore implementation.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "core/disk_chunk_store.h"
#include "core/memory_chunk_store.h"
#include "tests/test_util.h"

namespace dfs::core {
namespace {

ChunkId IdOf(std::uint64_t n) {
  std::array<std::uint8_t, ChunkId::kSize> a{};
  for (int i = 0; i < 8; ++i) a[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(n >> (8 * i));
  a[31] = 0xee;
  return ChunkId(a);
}

struct MemoryFactory {
  std::unique_ptr<MemoryChunkStore> store = std::make_unique<MemoryChunkStore>();
  ChunkStore& get() { return *store; }
  void Corrupt(const ChunkId& id) { ASSERT_TRUE(store->CorruptForTest(id)); }
};

struct DiskFactory {
  testing::TempDir dir;
  std::unique_ptr<DiskChunkStore> store = std::move(DiskChunkStore::Open(dir / "chunks")).value();
  ChunkStore& get() { return *store; }
  void Corrupt(const ChunkId& id) {
    std::fstream f(store->PathFor(id), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-1, std::ios::end);
    char c = 0x33;
    f.write(&c, 1);
  }
};

template <typename F>
class ChunkStoreConformance : public ::testing::Test {
 protected:
  F factory_;
  ChunkStore& store() { return factory_.get(); }
};

using Implementations = ::testing::Types<MemoryFactory, DiskFactory>;
TYPED_TEST_SUITE(ChunkStoreConformance, Implementations);

TYPED_TEST(ChunkStoreConformance, PutGetRoundTrip) {
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{4} << 20}) {
    Bytes data = testing::RandomBytes(size, size + 1);
    ChunkId id = IdOf(size);
    ASSERT_TRUE(this->store().Put(id, data).ok());
    Bytes out{9, 9};
    ASSERT_TRUE(this->store().Get(id, &out).ok());
    EXPECT_EQ(out, data);
  }
}

TYPED_TEST(ChunkStoreConformance, MissingIsNotFound) {
  Bytes out;
  Status s = this->store().Get(IdOf(1), &out);
  EXPECT_EQ(s.code(), ErrorCode::kNotFound);
  EXPECT_NE(s.message().find(IdOf(1).ToHex()), std::string::npos);
  EXPECT_FALSE(*this->store().Has(IdOf(1)));
  EXPECT_EQ(this->store().Remove(IdOf(1)).code(), ErrorCode::kNotFound);
}

TYPED_TEST(ChunkStoreConformance, PutIsIdempotent) {
  ASSERT_TRUE(this->store().Put(IdOf(1), AsBytes("abc")).ok());
  ASSERT_TRUE(this->store().Put(IdOf(1), AsBytes("abc")).ok());
  auto u = this->store().Usage();
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->chunks, 1u);
  EXPECT_EQ(u->bytes, 3u);
}

TYPED_TEST(ChunkStoreConformance, RemoveAndUsage) {
  for (std::uint64_t i = 0; i < 5; ++i) {
    ASSERT_TRUE(this->store().Put(IdOf(i), Bytes(100 + i, 1)).ok());
  }
  EXPECT_EQ(this->store().Usage()->chunks, 5u);
  EXPECT_EQ(this->store().Usage()->bytes, 510u);
  ASSERT_TRUE(this->store().Remove(IdOf(2)).ok());
  EXPECT_FALSE(*this->store().Has(IdOf(2)));
  EXPECT_TRUE(*this->store().Has(IdOf(3)));
  EXPECT_EQ(this->store().Usage()->chunks, 4u);
  EXPECT_EQ(this->store().Usage()->bytes, 408u);
  ASSERT_TRUE(this->store().Sync().ok());
}

TYPED_TEST(ChunkStoreConformance, ForEachSeesExactlyWhatIsHeld) {
  std::set<ChunkId> want;
  for (std::uint64_t i = 0; i < 50; ++i) {
    ASSERT_TRUE(this->store().Put(IdOf(i * 7919), Bytes(i, 2)).ok());
    want.insert(IdOf(i * 7919));
  }
  std::set<ChunkId> seen;
  ASSERT_TRUE(this->store().ForEach([&](const ChunkId& id, std::uint64_t) {
                                seen.insert(id);
                                return true;
                              }).ok());
  EXPECT_EQ(seen, want);
  int calls = 0;
  ASSERT_TRUE(this->store().ForEach([&](const ChunkId&, std::uint64_t) { return ++calls < 3; }).ok());
  EXPECT_EQ(calls, 3);
}

TYPED_TEST(ChunkStoreConformance, CorruptionIsDetected) {
  Bytes data = testing::RandomBytes(10000, 5);
  ASSERT_TRUE(this->store().Put(IdOf(77), data).ok());
  this->factory_.Corrupt(IdOf(77));
  Bytes out;
  Status s = this->store().Get(IdOf(77), &out);
  EXPECT_EQ(s.code(), ErrorCode::kCorrupt) << s.ToString();
  EXPECT_NE(s.message().find(IdOf(77).ToHex()), std::string::npos) << s.ToString();
  EXPECT_TRUE(out.empty());
}

TYPED_TEST(ChunkStoreConformance, ConcurrentOverlappingPutsAndGets) {
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Bytes out;
      for (std::uint64_t i = 0; i < 40; ++i) {
        std::uint64_t n = (i + static_cast<std::uint64_t>(t)) % 20;  // overlapping ids
        Bytes data = testing::RandomBytes(5000, n);
        if (!this->store().Put(IdOf(n), data).ok()) ++bad;
        if (!this->store().Get(IdOf(n), &out).ok() || out != data) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(this->store().Usage()->chunks, 20u);
}

}  // namespace
}  // namespace dfs::core
