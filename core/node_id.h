// NodeId: the 16-byte random identity of a node, made once per data
// directory. A strong type, built only from validated bytes or hex.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/bytes.h"
#include "core/status.h"

namespace dfs::core {

class NodeId {
 public:
  static constexpr std::size_t kSize = 16;

  NodeId() = default;
  explicit NodeId(const std::array<std::uint8_t, kSize>& bytes) : bytes_(bytes) {}

  static NodeId Random();
  static Result<NodeId> FromHex(std::string_view hex);
  static Result<NodeId> FromBytes(ByteSpan bytes);

  std::string ToHex() const { return ::dfs::core::ToHex(bytes()); }
  ByteSpan bytes() const { return {bytes_.data(), bytes_.size()}; }

  auto operator<=>(const NodeId&) const = default;
  bool operator==(const NodeId&) const = default;

 private:
  std::array<std::uint8_t, kSize> bytes_{};
};

// Reads a node id (hex, one line) from `path`, or makes a random one and
// writes it there atomically. The FileServer and dfsd share DIR/node-id.
Result<NodeId> LoadOrCreateNodeId(const std::string& path);

struct NodeIdHash {
  std::size_t operator()(const NodeId& id) const {
    std::size_t h;
    std::memcpy(&h, id.bytes().data(), sizeof(h));
    return h;
  }
};

}  // namespace dfs::core
