// MemoryChunkStore: a ChunkStore in a hash map, for tests of the layers above
// and as a building block for caches. Thread-safe.
#pragma once

#include <mutex>
#include <unordered_map>

#include "core/chunk_store.h"

namespace dfs::core {

class MemoryChunkStore final : public ChunkStore {
 public:
  Status Put(const ChunkId& id, ByteSpan data) override;
  using ChunkStore::Get;
  Status Get(const ChunkId& id, Bytes* out, ReadCheck check) override;
  Result<bool> Has(const ChunkId& id) override;
  Status Remove(const ChunkId& id) override;
  Result<ChunkStat> Stat(const ChunkId& id) override;
  Result<bool> RemoveIfStoredBefore(const ChunkId& id,
                                    std::chrono::system_clock::time_point cutoff) override;
  Status ForEach(const std::function<bool(const ChunkId&, std::uint64_t)>& fn) override;
  Result<StoreUsage> Usage() override;
  Status Sync() override { return Status::Ok(); }

  // Test hook: flips one bit of a held chunk; returns false if absent.
  bool CorruptForTest(const ChunkId& id);

 private:
  std::mutex mu_;
  std::unordered_map<ChunkId, Bytes, ChunkIdHash> chunks_;
  std::unordered_map<ChunkId, std::chrono::system_clock::time_point, ChunkIdHash> stored_;
};

}  // namespace dfs::core
