// Byte buffers and views used across dfs::core.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace dfs::core {

using Bytes = std::vector<std::uint8_t>;
using ByteSpan = std::span<const std::uint8_t>;
using MutableByteSpan = std::span<std::uint8_t>;

inline ByteSpan AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
inline std::string_view AsString(ByteSpan b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Lowercase hex of `b`.
std::string ToHex(ByteSpan b);

}  // namespace dfs::core
