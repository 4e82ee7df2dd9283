#include "core/chunk_id.h"

#include <algorithm>

#include <fmt/format.h>

namespace dfs::core {

std::string ToHex(ByteSpan b) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(b.size() * 2, '\0');
  for (std::size_t i = 0; i < b.size(); ++i) {
    out[2 * i] = kDigits[b[i] >> 4];
    out[2 * i + 1] = kDigits[b[i] & 0xf];
  }
  return out;
}

namespace {
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // uppercase refused: one spelling per id
}
}  // namespace

Result<ChunkId> ChunkId::FromHex(std::string_view hex) {
  if (hex.size() != kHexSize) {
    return Status::InvalidArgument(
        fmt::format("chunk id must be {} lowercase hex characters, got {} characters", kHexSize,
                    hex.size()));
  }
  std::array<std::uint8_t, kSize> bytes;
  for (std::size_t i = 0; i < kSize; ++i) {
    int hi = HexValue(hex[2 * i]);
    int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return Status::InvalidArgument("chunk id contains a character that is not lowercase hex");
    }
    bytes[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return ChunkId(bytes);
}

Result<ChunkId> ChunkId::FromBytes(ByteSpan b) {
  if (b.size() != kSize) {
    return Status::InvalidArgument(
        fmt::format("chunk id must be {} bytes, got {}", kSize, b.size()));
  }
  std::array<std::uint8_t, kSize> bytes;
  std::copy(b.begin(), b.end(), bytes.begin());
  return ChunkId(bytes);
}

std::string ChunkId::ToHex() const { return ::dfs::core::ToHex(bytes()); }

}  // namespace dfs::core
