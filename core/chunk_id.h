// ChunkId: the 32-byte address of a chunk (HMAC-SHA256 of its plaintext
// under the volume's id subkey). A strong type: it is never a bare string.
//
// An id read from anywhere outside this process (a file name, a manifest,
// the command line, later the wire) goes through ChunkId::FromHex or
// ChunkId::FromBytes, which accept exactly 64 lowercase hex characters or
// exactly 32 bytes; so an id can never carry "..", a separator or a NUL into
// a path.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>

#include "core/bytes.h"
#include "core/status.h"

namespace dfs::core {

class ChunkId {
 public:
  static constexpr std::size_t kSize = 32;
  static constexpr std::size_t kHexSize = 2 * kSize;

  ChunkId() = default;  // all zero; never the id of real data in practice
  explicit ChunkId(const std::array<std::uint8_t, kSize>& bytes) : bytes_(bytes) {}

  static Result<ChunkId> FromHex(std::string_view hex);
  static Result<ChunkId> FromBytes(ByteSpan bytes);

  std::string ToHex() const;
  // First 12 hex characters, for log lines and error messages.
  std::string ShortHex() const { return ToHex().substr(0, 12); }
  ByteSpan bytes() const { return {bytes_.data(), bytes_.size()}; }
  const std::array<std::uint8_t, kSize>& array() const { return bytes_; }

  auto operator<=>(const ChunkId&) const = default;
  bool operator==(const ChunkId&) const = default;

 private:
  std::array<std::uint8_t, kSize> bytes_{};
};

struct ChunkIdHash {
  std::size_t operator()(const ChunkId& id) const {
    std::size_t h;
    std::memcpy(&h, id.bytes().data(), sizeof(h));  // ids are uniformly random
    return h;
  }
};

}  // namespace dfs::core
