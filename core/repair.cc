#include "core/repair.h"

#include <vector>

#include "core/placement.h"

namespace dfs::core {
namespace {

// Chunk ids in batches, so that no store iteration is held open across
// network calls and memory stays bounded.
template <typename Fn>
void ForEachBatch(ChunkStore& store, const std::atomic<bool>& stop, Fn fn) {
  constexpr std::size_t kBatch = 1024;
  std::vector<ChunkId> batch;
  batch.reserve(kBatch);
  auto flush = [&] {
    for (const ChunkId& id : batch) {
      if (stop.load()) return;
      fn(id);
    }
    batch.clear();
  };
  (void)store.ForEach([&](const ChunkId& id, std::uint64_t) {
    batch.push_back(id);
    if (batch.size() == kBatch) flush();
    return !stop.load();
  });
  flush();
}

}  // namespace

RepairStats RepairPass(ChunkStore& local, PeerNetwork& network, std::size_t replicas,
                       std::chrono::milliseconds deadline, const std::atomic<bool>& stop,
                       const std::function<void(std::uint64_t)>& progress) {
  RepairStats stats;
  std::vector<NodeId> live = network.LiveMembers();
  NodeId self = network.self();
  Bytes sealed;
  ForEachBatch(local, stop, [&](const ChunkId& id) {
    ++stats.checked;
    bool lacking = false;
    for (const NodeId& holder : Holders(id, live, replicas)) {
      if (holder == self) continue;
      Result<bool> has = network.HasChunk(holder, id, deadline);
      if (has.ok() && *has) continue;
      lacking = true;
      HolderRepair& where = stats.holders[holder];
      ++where.lacked;
      if (sealed.empty() && !local.Get(id, &sealed).ok()) {
        ++stats.failed;  // our copy is bad: scrub's business
        ++where.failed;
        continue;
      }
      if (network.PutChunk(holder, id, sealed, deadline).ok()) {
        ++stats.copies_made;
        ++where.copied;
      } else {
        ++stats.failed;
        ++where.failed;
      }
    }
    sealed.clear();
    if (lacking) ++stats.under_replicated;
    if (progress && stats.checked % 256 == 0) progress(stats.checked);
  });
  if (progress) progress(stats.checked);
  return stats;
}

ScrubStats Scrub(ChunkStore& local, PeerNetwork& network, const ChunkVerifier& verify,
                 std::chrono::milliseconds deadline, const std::atomic<bool>& stop,
                 const std::function<void(std::uint64_t, std::uint64_t)>& progress) {
  ScrubStats stats;
  std::vector<NodeId> live = network.LiveMembers();
  NodeId self = network.self();
  Bytes data;
  ForEachBatch(local, stop, [&](const ChunkId& id) {
    ++stats.checked;
    Status s = local.Get(id, &data, ChunkStore::ReadCheck::kChecksum);
    if (s.ok() && verify) s = verify(id, data);
    if (s.code() == ErrorCode::kNotFound) return;  // removed meanwhile
    if (!s.ok()) {
      ++stats.bad;
      bool fixed = false;
      for (const NodeId& peer : RankNodes(id, live)) {
        if (peer == self) continue;
        if (!network.GetChunk(peer, id, &data, deadline).ok()) continue;
        if (verify && !verify(id, data).ok()) continue;
        fixed = ReplaceChunk(local, id, data).ok();
        break;
      }
      if (fixed) {
        ++stats.repaired;
      } else {
        ++stats.unrepaired;
        if (stats.unrepaired_ids.size() < 100) stats.unrepaired_ids.push_back(id);
      }
    }
    if (progress && stats.checked % 64 == 0) progress(stats.checked, stats.bad);
  });
  if (progress) progress(stats.checked, stats.bad);
  return stats;
}

}  // namespace dfs::core
