// One conformance suite, run against every ChunkStore implementation. Each
// implementation has a factory: it owns the store (and whatever the store
// needs, such as a scratch directory) and knows how to damage a held chunk.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/disk_chunk_store.h"
#include "core/memory_chunk_store.h"
#include "tests/test_util.h"

namespace dfs::core {
namespace {

// Ids spread over many shards: the first 8 bytes are `n`, little-endian.
ChunkId IdOf(std::uint64_t n) {
  std::array<std::uint8_t, ChunkId::kSize> a{};
  for (std::size_t i = 0; i < 8; ++i) a[i] = static_cast<std::uint8_t>(n >> (8 * i));
  a[31] = 0xee;
  return ChunkId(a);
}

struct MemoryFactory {
  MemoryChunkStore store;
  bool ok() const { return true; }
  ChunkStore& get() { return store; }
  void Corrupt(const ChunkId& id) { ASSERT_TRUE(store.CorruptForTest(id)); }
};

struct DiskFactory {
  testing::TempDir dir;
  std::unique_ptr<DiskChunkStore> store = Open(dir);
  bool ok() const { return store != nullptr; }
  ChunkStore& get() { return *store; }
  // Flips one bit in the middle of the chunk file.
  void Corrupt(const ChunkId& id) {
    const std::filesystem::path path = store->PathFor(id);
    testing::FlipByte(path, static_cast<std::streamoff>(std::filesystem::file_size(path) / 2), 0x04);
  }
  static std::unique_ptr<DiskChunkStore> Open(const testing::TempDir& dir) {
    auto opened = DiskChunkStore::Open(dir / "chunks");
    if (!opened.ok()) {
      ADD_FAILURE() << opened.status().ToString();
      return nullptr;
    }
    return std::move(opened).value();
  }
};

template <typename F>
class ChunkStoreConformance : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(factory_.ok()); }
  ChunkStore& store() { return factory_.get(); }
  StoreUsage UsageNow() {
    Result<StoreUsage> u = store().Usage();
    EXPECT_TRUE(u.ok()) << u.status().ToString();
    return u.ok() ? *u : StoreUsage{};
  }
  F factory_;
};

using Implementations = ::testing::Types<MemoryFactory, DiskFactory>;
TYPED_TEST_SUITE(ChunkStoreConformance, Implementations);

TYPED_TEST(ChunkStoreConformance, PutGetRoundTrip) {
  for (std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{4} << 20}) {
    Bytes data = testing::RandomBytes(size, size + 1);
    ChunkId id = IdOf(size + 1);
    ASSERT_TRUE(this->store().Put(id, data).ok()) << size;
    Bytes out{9, 9, 9};  // a reused buffer: replaced, not appended to
    Status s = this->store().Get(id, &out);
    ASSERT_TRUE(s.ok()) << size << ": " << s.ToString();
    EXPECT_EQ(out, data) << size;
    // The reader that authenticates the payload itself gets the same bytes.
    out.assign(7, 7);
    ASSERT_TRUE(this->store().Get(id, &out, ChunkStore::ReadCheck::kCallerAuthenticates).ok());
    EXPECT_EQ(out, data) << size;
  }
}

// View shows what Get returns, checked the same way; use runs once, and
// never for a missing or damaged chunk.
TYPED_TEST(ChunkStoreConformance, ViewSeesWhatGetReturns) {
  for (std::size_t size : {std::size_t{0}, std::size_t{1000}, std::size_t{1} << 20}) {
    Bytes data = testing::RandomBytes(size, size + 7);
    ChunkId id = IdOf(size + 7);
    ASSERT_TRUE(this->store().Put(id, data).ok());
    for (auto check : {ChunkStore::ReadCheck::kChecksum,
                       ChunkStore::ReadCheck::kCallerAuthenticates}) {
    for (auto hint : {ChunkStore::ReadHint::kStreaming, ChunkStore::ReadHint::kReused}) {
      Bytes scratch;
      int calls = 0;
      Status s = this->store().View(id, check, hint, &scratch, [&](ByteSpan bytes) {
        ++calls;
        EXPECT_TRUE(Bytes(bytes.begin(), bytes.end()) == data) << size;
        return Status::Unavailable("from use");
      });
      EXPECT_EQ(calls, 1);
      EXPECT_EQ(s.code(), ErrorCode::kUnavailable) << "use's status comes back: " << s.ToString();
    }
    }
  }
  Bytes scratch;
  bool called = false;
  auto use = [&](ByteSpan) {
    called = true;
    return Status::Ok();
  };
  const auto kStreaming = ChunkStore::ReadHint::kStreaming;
  EXPECT_EQ(
      this->store().View(IdOf(999), ChunkStore::ReadCheck::kChecksum, kStreaming, &scratch, use)
          .code(),
      ErrorCode::kNotFound);
  ChunkId bad = IdOf(1000);
  ASSERT_TRUE(this->store().Put(bad, testing::RandomBytes(1 << 20, 3)).ok());
  this->factory_.Corrupt(bad);
  EXPECT_EQ(
      this->store().View(bad, ChunkStore::ReadCheck::kChecksum, kStreaming, &scratch, use).code(),
      ErrorCode::kCorrupt);
  EXPECT_FALSE(called);
}

TYPED_TEST(ChunkStoreConformance, MissingChunkIsNotFoundAndNamed) {
  Bytes out{1, 2, 3};
  Status s = this->store().Get(IdOf(1), &out);
  EXPECT_EQ(s.code(), ErrorCode::kNotFound) << s.ToString();
  EXPECT_NE(s.message().find(IdOf(1).ToHex()), std::string::npos) << s.ToString();
  EXPECT_TRUE(out.empty());
  Result<bool> has = this->store().Has(IdOf(1));
  ASSERT_TRUE(has.ok());
  EXPECT_FALSE(*has);
}

TYPED_TEST(ChunkStoreConformance, HasSeesWhatWasPut) {
  ASSERT_TRUE(this->store().Put(IdOf(5), AsBytes("five")).ok());
  EXPECT_TRUE(*this->store().Has(IdOf(5)));
  EXPECT_FALSE(*this->store().Has(IdOf(6)));
}

TYPED_TEST(ChunkStoreConformance, PutTwiceIsIdempotentAndCountedOnce) {
  // Once with the usage counters not yet running, once with them running.
  for (std::uint64_t n : {1, 2}) {
    ASSERT_TRUE(this->store().Put(IdOf(n), AsBytes("abc")).ok());
    ASSERT_TRUE(this->store().Put(IdOf(n), AsBytes("abc")).ok());
    StoreUsage u = this->UsageNow();
    EXPECT_EQ(u.chunks, n);
    EXPECT_EQ(u.bytes, 3 * n);
    Bytes out;
    ASSERT_TRUE(this->store().Get(IdOf(n), &out).ok());
    EXPECT_EQ(AsString(out), "abc");
  }
}

TYPED_TEST(ChunkStoreConformance, RemoveThenGone) {
  ASSERT_TRUE(this->store().Put(IdOf(3), AsBytes("three")).ok());
  ASSERT_TRUE(this->store().Remove(IdOf(3)).ok());
  EXPECT_FALSE(*this->store().Has(IdOf(3)));
  Bytes out;
  EXPECT_EQ(this->store().Get(IdOf(3), &out).code(), ErrorCode::kNotFound);
  Status again = this->store().Remove(IdOf(3));
  EXPECT_EQ(again.code(), ErrorCode::kNotFound) << again.ToString();
  EXPECT_NE(again.message().find(IdOf(3).ToHex()), std::string::npos) << again.ToString();
  // And it can be put back.
  ASSERT_TRUE(this->store().Put(IdOf(3), AsBytes("three")).ok());
  EXPECT_TRUE(*this->store().Has(IdOf(3)));
  ASSERT_TRUE(this->store().Sync().ok());
}

TYPED_TEST(ChunkStoreConformance, RemoveMissingIsNotFound) {
  EXPECT_EQ(this->store().Remove(IdOf(404)).code(), ErrorCode::kNotFound);
}

TYPED_TEST(ChunkStoreConformance, UsageTotals) {
  EXPECT_EQ(this->UsageNow().chunks, 0u);
  for (std::uint64_t i = 0; i < 5; ++i) {
    ASSERT_TRUE(this->store().Put(IdOf(i), Bytes(100 + i, 1)).ok());
  }
  StoreUsage u = this->UsageNow();
  EXPECT_EQ(u.chunks, 5u);
  EXPECT_EQ(u.bytes, 510u);
  ASSERT_TRUE(this->store().Remove(IdOf(2)).ok());
  EXPECT_EQ(this->store().Remove(IdOf(2)).code(), ErrorCode::kNotFound);
  u = this->UsageNow();
  EXPECT_EQ(u.chunks, 4u);
  EXPECT_EQ(u.bytes, 408u);
  ASSERT_TRUE(this->store().Sync().ok());
}

TYPED_TEST(ChunkStoreConformance, ForEachSeesExactlyWhatIsHeld) {
  std::set<ChunkId> want;
  for (std::uint64_t i = 0; i < 50; ++i) {
    ASSERT_TRUE(this->store().Put(IdOf(i * 7919), Bytes(i, 2)).ok());
    want.insert(IdOf(i * 7919));
  }
  ASSERT_TRUE(this->store().Remove(IdOf(7919)).ok());
  want.erase(IdOf(7919));
  std::set<ChunkId> seen;
  std::uint64_t bytes = 0;
  ASSERT_TRUE(this->store()
                  .ForEach([&](const ChunkId& id, std::uint64_t size) {
                    EXPECT_TRUE(seen.insert(id).second) << "seen twice: " << id.ToHex();
                    bytes += size;
                    return true;
                  })
                  .ok());
  EXPECT_EQ(seen, want);
  EXPECT_EQ(bytes, 49u * 50 / 2 - 1);  // 0 + 2 + 3 + ... + 49
  EXPECT_EQ(this->UsageNow().bytes, bytes);
}

TYPED_TEST(ChunkStoreConformance, ForEachStopsWhenAsked) {
  for (std::uint64_t i = 0; i < 20; ++i) ASSERT_TRUE(this->store().Put(IdOf(i), Bytes(1, 1)).ok());
  int calls = 0;
  ASSERT_TRUE(
      this->store().ForEach([&](const ChunkId&, std::uint64_t) { return ++calls < 3; }).ok());
  EXPECT_EQ(calls, 3);
}

TYPED_TEST(ChunkStoreConformance, ForEachCallbackMayUseTheStore) {
  for (std::uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(this->store().Put(IdOf(i), Bytes(10, 1)).ok());
  int held = 0;
  ASSERT_TRUE(this->store()
                  .ForEach([&](const ChunkId& id, std::uint64_t) {
                    Bytes out;
                    if (this->store().Get(id, &out).ok() && out == Bytes(10, 1)) ++held;
                    return true;
                  })
                  .ok());
  EXPECT_EQ(held, 5);
}

TYPED_TEST(ChunkStoreConformance, CorruptChunkIsReportedNeverServed) {
  Bytes data = testing::RandomBytes(10000, 5);
  ASSERT_TRUE(this->store().Put(IdOf(77), data).ok());
  this->factory_.Corrupt(IdOf(77));
  Bytes out{1, 2, 3};
  Status s = this->store().Get(IdOf(77), &out);
  EXPECT_EQ(s.code(), ErrorCode::kCorrupt) << s.ToString();
  EXPECT_NE(s.message().find(IdOf(77).ToHex()), std::string::npos) << s.ToString();
  EXPECT_TRUE(out.empty());
  // Other chunks are unaffected.
  ASSERT_TRUE(this->store().Put(IdOf(78), data).ok());
  ASSERT_TRUE(this->store().Get(IdOf(78), &out).ok());
  EXPECT_EQ(out, data);
}

// 4 threads put and get overlapping ids; exactly 20 chunks result, counted
// once each whether the usage counters were running during the puts or not.
TYPED_TEST(ChunkStoreConformance, ConcurrentOverlappingPutsAndGets) {
  for (bool counters_running : {false, true}) {
    const std::uint64_t base = counters_running ? 1000 : 0;
    if (counters_running) {
      ASSERT_EQ(this->UsageNow().chunks, 20u);
    }
    std::vector<std::thread> threads;
    std::atomic<int> bad{0};
    for (std::uint64_t t = 0; t < 4; ++t) {
      threads.emplace_back([&, t] {
        Bytes out;
        for (std::uint64_t i = 0; i < 40; ++i) {
          const std::uint64_t n = base + (i + 5 * t) % 20;  // overlapping ids
          Bytes data = testing::RandomBytes(5000 + n % 7, n);
          if (!this->store().Put(IdOf(n), data).ok()) ++bad;
          if (!this->store().Get(IdOf(n), &out).ok() || out != data) ++bad;
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_EQ(this->UsageNow().chunks, counters_running ? 40u : 20u);
  }
  ASSERT_TRUE(this->store().Sync().ok());
}

// Puts, gets and removes of the same ids race; afterwards every held chunk
// reads back intact and the counters agree with a full walk.
TYPED_TEST(ChunkStoreConformance, ConcurrentPutGetRemoveOfSameIds) {
  EXPECT_EQ(this->UsageNow().chunks, 0u);  // counters run from here on
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  auto data_of = [](std::uint64_t n) { return testing::RandomBytes(3000 + n, n); };
  for (std::uint64_t t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Bytes out;
      for (std::uint64_t i = 0; i < 200; ++i) {
        const std::uint64_t n = (i * 3 + t) % 8;
        switch ((i + t) % 3) {
          case 0:
            if (!this->store().Put(IdOf(n), data_of(n)).ok()) ++bad;
            break;
          case 1: {
            Status s = this->store().Get(IdOf(n), &out);
            if (s.ok() ? out != data_of(n) : s.code() != ErrorCode::kNotFound) ++bad;
            break;
          }
          default: {
            Status s = this->store().Remove(IdOf(n));
            if (!s.ok() && s.code() != ErrorCode::kNotFound) ++bad;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  StoreUsage walked;
  ASSERT_TRUE(this->store()
                  .ForEach([&](const ChunkId& id, std::uint64_t size) {
                    ++walked.chunks;
                    walked.bytes += size;
                    Bytes out;
                    EXPECT_TRUE(this->store().Get(id, &out).ok());
                    return true;
                  })
                  .ok());
  StoreUsage u = this->UsageNow();
  EXPECT_EQ(u.chunks, walked.chunks);
  EXPECT_EQ(u.bytes, walked.bytes);
  ASSERT_TRUE(this->store().Sync().ok());
}

// Stat shows the payload size, the last Put time and the first 16 bytes
// (zeros past the end of a shorter chunk), without reading the rest.
TYPED_TEST(ChunkStoreConformance, StatShowsSizePutTimeAndHead) {
  const auto before = std::chrono::system_clock::now() - std::chrono::milliseconds(50);
  Bytes data = testing::RandomBytes(100000, 9);
  ASSERT_TRUE(this->store().Put(IdOf(1), data).ok());
  Bytes small = {1, 2, 3, 4, 5};
  ASSERT_TRUE(this->store().Put(IdOf(2), small).ok());
  const auto after = std::chrono::system_clock::now() + std::chrono::milliseconds(50);

  Result<ChunkStat> st = this->store().Stat(IdOf(1));
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->size, data.size());
  EXPECT_TRUE(std::equal(st->head.begin(), st->head.end(), data.begin()));
  EXPECT_GE(st->stored, before);
  EXPECT_LE(st->stored, after);

  st = this->store().Stat(IdOf(2));
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->size, 5u);
  std::array<std::uint8_t, 16> want{1, 2, 3, 4, 5};
  EXPECT_EQ(st->head, want);

  EXPECT_EQ(this->store().Stat(IdOf(3)).status().code(), ErrorCode::kNotFound);
}

// A conditional removal removes only what was last put before the cutoff;
// a Put of a chunk already held renews its time.
TYPED_TEST(ChunkStoreConformance, RemoveIfStoredBeforeKeepsWhatWasPutSince) {
  EXPECT_EQ(this->UsageNow().chunks, 0u);
  Bytes data = testing::RandomBytes(70000, 4);
  ASSERT_TRUE(this->store().Put(IdOf(1), data).ok());
  ASSERT_TRUE(this->store().Put(IdOf(2), data).ok());
  const auto put_at = std::chrono::system_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(60));  // past timestamp granularity
  const auto between = std::chrono::system_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  ASSERT_TRUE(this->store().Put(IdOf(2), data).ok());  // held: renewed, not rewritten

  // Put before the cutoff: removed. Renewed after it: kept.
  Result<bool> r = this->store().RemoveIfStoredBefore(IdOf(1), between);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(*r);
  EXPECT_FALSE(*this->store().Has(IdOf(1)));
  r = this->store().RemoveIfStoredBefore(IdOf(2), between);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(*r);
  Bytes out;
  ASSERT_TRUE(this->store().Get(IdOf(2), &out).ok());
  EXPECT_EQ(out, data);
  EXPECT_GT(this->store().Stat(IdOf(2))->stored, put_at);
  EXPECT_EQ(this->UsageNow().chunks, 1u);
  EXPECT_EQ(this->UsageNow().bytes, data.size());

  r = this->store().RemoveIfStoredBefore(IdOf(2), std::chrono::system_clock::now() + std::chrono::hours(1));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(*r);
  EXPECT_EQ(this->UsageNow().chunks, 0u);
  EXPECT_EQ(this->store().RemoveIfStoredBefore(IdOf(2), between).status().code(),
            ErrorCode::kNotFound);
}

// Puts racing with removals of chunks stored before the cutoff: a Put that
// returned has the chunk held, whichever came first.
TYPED_TEST(ChunkStoreConformance, APutThatReturnedIsNeverCollectedByAnOlderCutoff) {
  EXPECT_EQ(this->UsageNow().chunks, 0u);
  auto data_of = [](std::uint64_t n) { return testing::RandomBytes(2000 + n, n); };
  constexpr std::uint64_t kIds = 200;
  for (std::uint64_t n = 0; n < kIds; ++n) ASSERT_TRUE(this->store().Put(IdOf(n), data_of(n)).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  const auto cutoff = std::chrono::system_clock::now();
  std::atomic<int> bad{0};
  std::thread putter([&] {
    Bytes out;
    for (std::uint64_t n = 0; n < kIds; ++n) {
      if (!this->store().Put(IdOf(n), data_of(n)).ok()) ++bad;
      if (!this->store().Get(IdOf(n), &out).ok() || out != data_of(n)) ++bad;
    }
  });
  std::thread collector([&] {
    for (std::uint64_t i = 0; i < kIds; ++i) {
      Result<bool> r = this->store().RemoveIfStoredBefore(IdOf(kIds - 1 - i), cutoff);
      if (!r.ok() && r.status().code() != ErrorCode::kNotFound) ++bad;
    }
  });
  putter.join();
  collector.join();
  EXPECT_EQ(bad.load(), 0);
  for (std::uint64_t n = 0; n < kIds; ++n) EXPECT_TRUE(*this->store().Has(IdOf(n))) << n;
  EXPECT_EQ(this->UsageNow().chunks, kIds);
}

}  // namespace
}  // namespace dfs::core
