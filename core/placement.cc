#include "core/placement.h"

#include <algorithm>
#include <cstring>

#include <cryptopp/sha.h>

namespace dfs::core {

std::uint64_t PlacementScore(const NodeId& node, const ChunkId& chunk) {
  static constexpr std::string_view kLabel = "dfs v1 placement";
  CryptoPP::SHA256 sha;
  sha.Update(reinterpret_cast<const std::uint8_t*>(kLabel.data()), kLabel.size());
  sha.Update(node.bytes().data(), node.bytes().size());
  sha.Update(chunk.bytes().data(), chunk.bytes().size());
  std::uint8_t digest[CryptoPP::SHA256::DIGESTSIZE];
  sha.Final(digest);
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | digest[i];
  return v;
}

std::vector<NodeId> RankNodes(const ChunkId& chunk, std::span<const NodeId> nodes) {
  std::vector<std::pair<std::uint64_t, NodeId>> scored;
  scored.reserve(nodes.size());
  for (const NodeId& n : nodes) scored.emplace_back(PlacementScore(n, chunk), n);
  std::sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  std::vector<NodeId> ranked;
  ranked.reserve(scored.size());
  for (const auto& [score, n] : scored) {
    if (ranked.empty() || ranked.back() != n) ranked.push_back(n);
  }
  return ranked;
}

std::vector<NodeId> Holders(const ChunkId& chunk, std::span<const NodeId> live,
                            std::size_t replicas) {
  std::vector<NodeId> ranked = RankNodes(chunk, live);
  if (ranked.size() > replicas) ranked.resize(replicas);
  return ranked;
}

std::size_t WriteQuorum(std::size_t replicas, std::size_t live) {
  return std::max<std::size_t>(1, std::min({std::size_t{2}, replicas, live}));
}

}  // namespace dfs::core
