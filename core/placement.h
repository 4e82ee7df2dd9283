// Placement: which nodes hold a chunk. Rendezvous (highest-random-weight)
// hashing: every node scores every chunk with a hash of (node id, chunk id)
// and the R best-scoring live nodes hold it. Every node computes the same
// answer from the same membership, and when a node joins or leaves only the
// chunks it wins or held move.
//
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/chunk_id.h"
#include "core/node_id.h"

namespace dfs::core {

// The weight of `node` for `chunk`: the first 8 bytes of
// SHA-256("dfs v1 placement" || node || chunk), big-endian.
std::uint64_t PlacementScore(const NodeId& node, const ChunkId& chunk);

// All of `nodes`, best holder first (ties, which need a hash collision, by
// node id). Duplicates in `nodes` are kept once.
std::vector<NodeId> RankNodes(const ChunkId& chunk, std::span<const NodeId> nodes);

// The first min(replicas, live nodes) of RankNodes.
std::vector<NodeId> Holders(const ChunkId& chunk, std::span<const NodeId> live,
                            std::size_t replicas);

// Copies that must be durable before a write is acknowledged: 2, or 1 when
// only one node is live (and never more than the replicas asked for).
std::size_t WriteQuorum(std::size_t replicas, std::size_t live);

}  // namespace dfs::core
