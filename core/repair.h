// Repair and scrub: keeping R verified copies of every chunk.
//
//   RepairPass  walks this node's chunks; for each, the holders among the
//               live members (rendezvous, core/placement.h) are asked
//               whether they have a copy, and each that lacks one is sent
//               this node's. Every node that holds a chunk does this, so a
//               chunk regains its copies as long as one survives. A node
//               runs a pass when membership has changed for good: a member
//               dead past the configured time, or a new one (Node decides).
//   Scrub       reads every local chunk with its checksum (and, where a
//               verifier is given, its authentication); a bad or
//               unreadable copy is replaced by a verified one from a peer.
//
// Both block on the network: run them on a thread of their own. Memory does
// not grow with the number of chunks. Thread-safe as their stores are.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <vector>

#include "core/chunk_store.h"
#include "core/peer_network.h"

namespace dfs::core {

// One holder's share of a pass: where the missing copies were.
struct HolderRepair {
  std::uint64_t lacked = 0;  // chunks it should hold and did not
  std::uint64_t copied = 0;  // copies sent to it
  std::uint64_t failed = 0;  // copies that could not be sent (or our copy was bad)
};

struct RepairStats {
  std::uint64_t checked = 0;           // local chunks looked at
  std::uint64_t under_replicated = 0;  // chunks that lacked a copy on a holder
  std::uint64_t copies_made = 0;       // copies sent to holders
  std::uint64_t failed = 0;            // copies that could not be made (retried next pass)
  // Holders (other than this node) that lacked anything; at most one entry
  // per live member.
  std::map<NodeId, HolderRepair> holders;
};

// Calls `progress(checked)` now and then; stops early (returning what it did)
// when `stop` becomes true.
RepairStats RepairPass(ChunkStore& local, PeerNetwork& network, std::size_t replicas,
                       std::chrono::milliseconds deadline, const std::atomic<bool>& stop,
                       const std::function<void(std::uint64_t)>& progress = {});

struct ScrubStats {
  std::uint64_t checked = 0;
  std::uint64_t bad = 0;         // failed the checksum or the verifier, or unreadable
  std::uint64_t repaired = 0;    // replaced by a verified copy from a peer
  std::uint64_t unrepaired = 0;  // no peer had a good copy
  std::vector<ChunkId> unrepaired_ids;  // the first 100 of them, to name
};

ScrubStats Scrub(ChunkStore& local, PeerNetwork& network, const ChunkVerifier& verify,
                 std::chrono::milliseconds deadline, const std::atomic<bool>& stop,
                 const std::function<void(std::uint64_t checked, std::uint64_t bad)>& progress = {});

}  // namespace dfs::core
