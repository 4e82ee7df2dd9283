#include "core/chunker.h"

#include <algorithm>
#include <random>
#include <set>
#include <string>

#include <cryptopp/sha.h>
#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace dfs::core {
namespace {

std::vector<std::size_t> Boundaries(const Chunker& c, ByteSpan data) {
  std::vector<std::size_t> sizes;
  while (!data.empty()) {
    std::size_t n = c.NextChunkSize(data);
    sizes.push_back(n);
    data = data.subspan(n);
  }
  return sizes;
}

std::string Digest(ByteSpan b) {
  std::uint8_t d[32];
  CryptoPP::SHA256().CalculateDigest(d, b.data(), b.size());
  return std::string(reinterpret_cast<char*>(d), 32);
}

std::vector<std::string> ChunkDigests(const Chunker& c, ByteSpan data) {
  std::vector<std::string> out;
  for (std::size_t n : Boundaries(c, data)) {
    out.push_back(Digest(data.first(n)));
    data = data.subspan(n);
  }
  return out;
}

// Returns short reads of 1..7 bytes.
class TrickleReader final : public Reader {
 public:
  explicit TrickleReader(ByteSpan data) : data_(data) {}
  Result<std::size_t> Read(MutableByteSpan buf) override {
    std::size_t n = std::min({buf.size(), data_.size() - pos_, std::size_t{1} + pos_ % 7});
    std::copy_n(data_.begin() + static_cast<long>(pos_), n, buf.begin());
    pos_ += n;
    return n;
  }

 private:
  ByteSpan data_;
  std::size_t pos_ = 0;
};

class FailAfter final : public Reader {
 public:
  Result<std::size_t> Read(MutableByteSpan buf) override {
    if (served_ > 100000) return Status::Io("disk on fire");
    std::fill(buf.begin(), buf.end(), 7);
    served_ += buf.size();
    return buf.size();
  }

 private:
  std::size_t served_ = 0;
};

const Bytes& Data64M() {
  static const Bytes data = testing::RandomBytes(64 << 20, 42);
  return data;
}

TEST(ChunkerTest, SizesAreBoundedAndSumToTheInput) {
  Chunker c(1);
  auto sizes = Boundaries(c, Data64M());
  std::size_t total = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    total += sizes[i];
    EXPECT_LE(sizes[i], c.params().max_size);
    if (i + 1 < sizes.size()) {
      EXPECT_GE(sizes[i], c.params().min_size);
    }
  }
  EXPECT_EQ(total, Data64M().size());
  double mean = static_cast<double>(total) / static_cast<double>(sizes.size());
  EXPECT_GT(mean, 0.75 * (1 << 20)) << sizes.size() << " chunks";
  EXPECT_LT(mean, 1.35 * (1 << 20)) << sizes.size() << " chunks";
}

// The unrolled scan cuts exactly where the byte-at-a-time definition does,
// for every alignment of the window ends and for small and real parameters.
TEST(ChunkerTest, CutsMatchTheByteAtATimeDefinition) {
  const Bytes data = testing::RandomBytes(8 << 20, 7);
  for (ChunkerParams params : {ChunkerParams{}, ChunkerParams{64, 256, 1021},
                               ChunkerParams{65, 128, 130}, ChunkerParams{1000, 4096, 8191}}) {
    for (std::uint64_t seed : {1u, 2u, 99u}) {
      Chunker c(seed, params);
      ByteSpan rest(data);
      std::size_t chunks = 0;
      while (!rest.empty()) {
        const std::size_t n = c.NextChunkSize(rest);
        ASSERT_EQ(n, c.ReferenceChunkSize(rest)) << "chunk " << chunks << " seed " << seed;
        // Every prefix length too: the scan's tail (fewer than 4 bytes) and
        // windows that end inside a step.
        if (chunks < 4) {
          for (std::size_t cut = 1; cut <= 9; ++cut) {
            ByteSpan part = rest.first(std::min(rest.size(), n + 1 - std::min(n, cut)));
            ASSERT_EQ(c.NextChunkSize(part), c.ReferenceChunkSize(part));
          }
        }
        rest = rest.subspan(n);
        ++chunks;
      }
      EXPECT_GT(chunks, 1u);
    }
  }
}

TEST(ChunkerTest, DeterministicPerSeed) {
  ByteSpan data(Data64M().data(), 16 << 20);
  EXPECT_EQ(Boundaries(Chunker(5), data), Boundaries(Chunker(5), data));
  EXPECT_NE(Boundaries(Chunker(5), data), Boundaries(Chunker(6), data));
}

TEST(ChunkerTest, OneInsertedByteChangesAlmostNoChunk) {
  Chunker c(9);
  const Bytes& original = Data64M();
  Bytes modified = original;
  modified.insert(modified.begin() + 1000, 0x5a);
  auto before = ChunkDigests(c, original);
  auto after = ChunkDigests(c, modified);
  std::set<std::string> now(after.begin(), after.end());
  std::size_t kept = 0;
  for (const auto& d : before) kept += now.count(d);
  EXPECT_GE(kept + 3, before.size()) << kept << " of " << before.size() << " chunks kept";
  EXPECT_GT(before.size(), 40u);
}

TEST(ChunkerTest, StreamMatchesWholeBufferEvenWithTinyReads) {
  Chunker c(3, {4096, 16384, 65536});
  Bytes data = testing::RandomBytes(1 << 20, 3);
  auto want = Boundaries(c, data);
  TrickleReader reader(data);
  ChunkStream stream(c, reader);
  std::vector<std::size_t> got;
  Bytes joined;
  for (;;) {
    auto next = stream.Next();
    ASSERT_TRUE(next.ok());
    if (!next->has_value()) break;
    got.push_back((*next)->size());
    joined.insert(joined.end(), (*next)->begin(), (*next)->end());
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(joined, data);
  EXPECT_EQ(stream.bytes_read(), data.size());
}

TEST(ChunkerTest, CutsFoundPieceByPieceMatchTheWholeBuffer) {
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    Chunker c(seed, {4096, 16384, 65536});
    const Bytes data = testing::RandomBytes(1 << 20, seed);
    std::mt19937 rng(static_cast<std::uint32_t>(seed));
    std::size_t start = 0;
    while (start < data.size()) {
      const ByteSpan rest = ByteSpan(data).subspan(start);
      const std::size_t want = c.NextChunkSize(rest);
      // Grow the view by random steps (1 byte to 20 KiB) until a cut shows.
      Chunker::CutState state;
      std::size_t seen = 0, cut = 0;
      while (cut == 0) {
        seen = std::min(rest.size(), seen + 1 + rng() % 20000);
        cut = c.FindCut(rest.first(seen), /*at_end=*/seen == rest.size(), &state);
      }
      ASSERT_EQ(cut, want) << "seed " << seed << " at " << start;
      ASSERT_LE(cut, seen);
      start += cut;
    }
  }
  Chunker c(1, {4096, 16384, 65536});
  Chunker::CutState state;
  EXPECT_EQ(c.FindCut({}, /*at_end=*/true, &state), 0u);
  const Bytes small = testing::RandomBytes(100, 1);
  EXPECT_EQ(c.FindCut(small, /*at_end=*/false, &state), 0u) << "might continue";
  EXPECT_EQ(c.FindCut(small, /*at_end=*/true, &state), 100u);
}

TEST(ChunkerTest, NextIntoHandsEachChunkOverInTheCallersBuffer) {
  Chunker c(5, {4096, 16384, 65536});
  const Bytes data = testing::RandomBytes(3 << 20, 5);
  auto want = Boundaries(c, data);
  MemoryReader reader(data);
  ChunkStream stream(c, reader);
  FillBuffer buf;
  std::vector<std::size_t> got;
  Bytes joined;
  for (;;) {
    Result<bool> more = stream.NextInto(&buf);
    ASSERT_TRUE(more.ok());
    if (!*more) break;
    got.push_back(buf.size());
    EXPECT_EQ(stream.done(), got.size() == want.size()) << "done exactly after the last chunk";
    EXPECT_LE(buf.capacity(), 65536 + ChunkStream::kReadSize) << "bounded";
    joined.insert(joined.end(), buf.begin(), buf.end());
  }
  EXPECT_EQ(got, want);
  EXPECT_EQ(joined, data);
  EXPECT_TRUE(buf.empty());
  EXPECT_EQ(stream.bytes_read(), data.size());
}

TEST(ChunkerTest, EmptyAndTinyInputs) {
  Chunker c(1);
  MemoryReader empty(ByteSpan{});
  ChunkStream s1(c, empty);
  auto n = s1.Next();
  ASSERT_TRUE(n.ok());
  EXPECT_FALSE(n->has_value());

  Bytes one{42};
  MemoryReader r(one);
  ChunkStream s2(c, r);
  auto first = s2.Next();
  ASSERT_TRUE(first.ok() && first->has_value());
  EXPECT_EQ((*first)->size(), 1u);
  EXPECT_FALSE(s2.Next()->has_value());
}

TEST(ChunkerTest, ReaderErrorsPropagate) {
  Chunker c(1);
  FailAfter reader;
  ChunkStream s(c, reader);
  Result<std::optional<ByteSpan>> r = s.Next();
  while (r.ok() && r->has_value()) r = s.Next();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "disk on fire");
}

TEST(ChunkerTest, InvalidParamsAreRefused) {
  EXPECT_THROW(Chunker(1, ChunkerParams{1024, 1000, 4096}), std::invalid_argument);
  EXPECT_THROW(Chunker(1, ChunkerParams{8192, 4096, 16384}), std::invalid_argument);
  EXPECT_THROW(Chunker(1, ChunkerParams{1024, 4096, 2048}), std::invalid_argument);
}

}  // namespace
}  // namespace dfs::core
