#include "core/node_id.h"

#include <cstdio>
#include <fstream>

#include <cryptopp/osrng.h>
#include <fmt/format.h>

#include "core/chunk_id.h"

namespace dfs::core {

NodeId NodeId::Random() {
  std::array<std::uint8_t, kSize> b;
  CryptoPP::OS_GenerateRandomBlock(false, b.data(), b.size());
  return NodeId(b);
}

Result<NodeId> NodeId::FromBytes(ByteSpan bytes) {
  if (bytes.size() != kSize) {
    return Status::InvalidArgument(fmt::format("node id must be {} bytes, got {}", kSize, bytes.size()));
  }
  std::array<std::uint8_t, kSize> b;
  std::copy(bytes.begin(), bytes.end(), b.begin());
  return NodeId(b);
}

Result<NodeId> NodeId::FromHex(std::string_view hex) {
  if (hex.size() != 2 * kSize) {
    return Status::InvalidArgument(fmt::format("node id must be {} hex characters", 2 * kSize));
  }
  // Reuse the strict chunk id parser on a zero-padded copy.
  std::string padded(hex);
  padded.append(ChunkId::kHexSize - padded.size(), '0');
  DFS_ASSIGN_OR_RETURN(ChunkId parsed, ChunkId::FromHex(padded));
  return FromBytes(parsed.bytes().first(kSize));
}

Result<NodeId> LoadOrCreateNodeId(const std::string& path) {
  std::ifstream in(path);
  if (in) {
    std::string hex;
    in >> hex;
    Result<NodeId> id = NodeId::FromHex(hex);
    if (!id.ok()) return id.status().WithContext(path);
    return id;
  }
  NodeId id = NodeId::Random();
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << id.ToHex() << "\n";
    if (!out.flush()) return ErrnoStatus(errno, "write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return ErrnoStatus(errno, "rename " + tmp);
  return id;
}

}  // namespace dfs::core
