#include "core/manifest.h"

#include <cstdlib>
#include <filesystem>

#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace dfs::core {
namespace {

Manifest FixtureManifest() {
  Manifest m;
  for (std::uint8_t i = 1; i <= 3; ++i) {
    std::array<std::uint8_t, ChunkId::kSize> id;
    id.fill(i);
    id[0] = static_cast<std::uint8_t>(0xa0 + i);
    ChunkRef ref{ChunkId(id), 1000u * i};
    m.chunks.push_back(ref);
    m.size += ref.size;
  }
  return m;
}

const std::filesystem::path kFixture = std::filesystem::path(DFS_FIXTURE_DIR) / "manifest_v1.bin";

TEST(ManifestTest, RoundTrip) {
  Manifest m = FixtureManifest();
  Result<Manifest> back = Manifest::Decode(m.Encode());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, m);
  Result<Manifest> empty = Manifest::Decode(Manifest().Encode());
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->size, 0u);
}

// The saved fixture pins format v1: if the encoding changes, this fails and
// the change needs a new version number.
TEST(ManifestTest, DecodesSavedFixture) {
  if (std::getenv("DFS_WRITE_FIXTURES") != nullptr) {
    testing::WriteFile(kFixture, FixtureManifest().Encode());
  }
  Bytes saved = testing::ReadFile(kFixture);
  ASSERT_FALSE(saved.empty()) << "missing fixture " << kFixture;
  Result<Manifest> m = Manifest::Decode(saved);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(*m, FixtureManifest());
  EXPECT_EQ(saved, FixtureManifest().Encode());
}

TEST(ManifestTest, EveryFlippedByteIsRejected) {
  Bytes good = FixtureManifest().Encode();
  for (std::size_t i = 0; i < good.size(); ++i) {
    Bytes bad = good;
    bad[i] ^= 0x01;
    EXPECT_FALSE(Manifest::Decode(bad).ok()) << "byte " << i;
  }
}

TEST(ManifestTest, TruncatedAndPaddedAreRejected) {
  Bytes good = FixtureManifest().Encode();
  for (std::size_t n = 0; n < good.size(); ++n) {
    EXPECT_FALSE(Manifest::Decode(ByteSpan(good.data(), n)).ok()) << n;
  }
  Bytes padded = good;
  padded.push_back(0);
  EXPECT_FALSE(Manifest::Decode(padded).ok());
}

TEST(ManifestTest, UnknownVersionIsInvalidArgument) {
  Bytes bad = FixtureManifest().Encode();
  bad[4] = 9;
  Result<Manifest> m = Manifest::Decode(bad);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("version 9"), std::string::npos);
}

Manifest InlineManifest(std::uint32_t size, std::size_t sealed_size) {
  Manifest m;
  std::array<std::uint8_t, ChunkId::kSize> id;
  id.fill(0x42);
  m.chunks.push_back(ChunkRef{ChunkId(id), size});
  m.size = size;
  m.inline_sealed = testing::RandomBytes(sealed_size, size);
  return m;
}

TEST(ManifestTest, AnInlineChunkRoundTripsAndEveryByteOfItIsChecked) {
  Manifest m = InlineManifest(100, 132);
  Bytes enc = m.Encode();
  EXPECT_EQ(enc.size(), 20u + 36u + 132u + 4u);
  Result<Manifest> back = Manifest::Decode(enc);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, m);
  EXPECT_TRUE(back->is_inline());
  EXPECT_FALSE(FixtureManifest().is_inline());
  for (std::size_t i = 0; i < enc.size(); ++i) {
    Bytes bad = enc;
    bad[i] ^= 0x01;
    EXPECT_FALSE(Manifest::Decode(bad).ok()) << "byte " << i;
  }
  for (std::size_t n = 0; n < enc.size(); ++n) {
    EXPECT_FALSE(Manifest::Decode(ByteSpan(enc.data(), n)).ok()) << n;
  }
}

TEST(ManifestTest, InlineManifestsThatBreakTheRulesAreCorrupt) {
  auto code = [](const Manifest& m) { return Manifest::Decode(m.Encode()).status().code(); };
  Manifest two = InlineManifest(100, 132);  // an inline manifest names exactly one chunk
  two.chunks.push_back(two.chunks[0]);
  two.size += 100;
  EXPECT_EQ(code(two), ErrorCode::kCorrupt);
  Manifest none = InlineManifest(100, 132);
  none.chunks.clear();
  none.size = 0;
  EXPECT_EQ(code(none), ErrorCode::kCorrupt);
  Manifest hole = InlineManifest(100, 132);  // a hole has nothing to carry
  hole.chunks[0] = ChunkRef::Hole(100);
  EXPECT_EQ(code(hole), ErrorCode::kCorrupt);
  Manifest big = InlineManifest(Manifest::kMaxInlineSize + 1, Manifest::kMaxInlineSize + 33);
  EXPECT_EQ(code(big), ErrorCode::kCorrupt);
  Manifest fat = InlineManifest(100, Manifest::kMaxInlineSealed + 1);  // absurd envelope
  EXPECT_EQ(code(fat), ErrorCode::kCorrupt);
  EXPECT_TRUE(Manifest::Decode(InlineManifest(Manifest::kMaxInlineSize,
                                              Manifest::kMaxInlineSealed).Encode()).ok());
}

TEST(ManifestTest, LocateFindsTheChunk) {
  Manifest m = FixtureManifest();  // sizes 1000, 2000, 3000
  EXPECT_EQ(m.Locate(0), (std::pair<std::size_t, std::uint64_t>{0, 0}));
  EXPECT_EQ(m.Locate(999), (std::pair<std::size_t, std::uint64_t>{0, 0}));
  EXPECT_EQ(m.Locate(1000), (std::pair<std::size_t, std::uint64_t>{1, 1000}));
  EXPECT_EQ(m.Locate(5999), (std::pair<std::size_t, std::uint64_t>{2, 3000}));
  EXPECT_EQ(m.Locate(6000).first, 3u);
}

}  // namespace
}  // namespace dfs::core
