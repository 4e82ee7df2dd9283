#include "core/status.h"

#include <cerrno>

#include <gtest/gtest.h>

#include "core/chunk_id.h"

namespace dfs::core {
namespace {

TEST(StatusTest, ErrnoMapsToCodes) {
  EXPECT_EQ(ErrnoStatus(ENOSPC, "x").code(), ErrorCode::kNoSpace);
  EXPECT_EQ(ErrnoStatus(ENOENT, "x").code(), ErrorCode::kNotFound);
  EXPECT_EQ(ErrnoStatus(EIO, "x").code(), ErrorCode::kIo);
  EXPECT_NE(ErrnoStatus(ENOSPC, "write chunk").message().find("write chunk"), std::string::npos);
}

TEST(StatusTest, ResultCarriesValueOrStatus) {
  Result<int> good = 5;
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 5);
  Result<int> bad = Status::Corrupt("tag");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), ErrorCode::kCorrupt);
  EXPECT_EQ(bad.status().ToString(), "corrupt: tag");
}

TEST(ChunkIdTest, HexRoundTrip) {
  std::string hex(64, 'a');
  hex[5] = '0';
  auto id = ChunkId::FromHex(hex);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id->ToHex(), hex);
}

TEST(ChunkIdTest, HostileIdsAreRefused) {
  for (std::string bad : {std::string(""), std::string("../x"), std::string(64, 'A'),
                          std::string(63, 'a'), std::string(65, 'a'), std::string(10240, 'a'),
                          std::string(62, 'a') + "/a", std::string(62, 'a') + std::string(2, '\0'),
                          std::string(30, 'a') + ".." + std::string(32, 'a')}) {
    auto id = ChunkId::FromHex(bad);
    EXPECT_FALSE(id.ok()) << bad.size();
    if (!id.ok()) {
      EXPECT_EQ(id.status().code(), ErrorCode::kInvalidArgument);
    }
  }
  EXPECT_FALSE(ChunkId::FromBytes(ByteSpan()).ok());
}

}  // namespace
}  // namespace dfs::core
