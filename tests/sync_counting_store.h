// A ChunkStore over a MemoryChunkStore that counts the chunks put since its
// last Sync and the Syncs themselves: tests of when the layers above make
// chunks durable.
#pragma once

#include <atomic>

#include "core/chunk_store.h"
#include "core/memory_chunk_store.h"

namespace dfs::core {

class SyncCountingStore final : public ChunkStore {
 public:
  Status Put(const ChunkId& id, ByteSpan data) override {
    ++unsynced;
    return inner.Put(id, data);
  }
  using ChunkStore::Get;
  Status Get(const ChunkId& id, Bytes* out, ReadCheck check) override {
    return inner.Get(id, out, check);
  }
  Result<bool> Has(const ChunkId& id) override { return inner.Has(id); }
  Status Remove(const ChunkId& id) override { return inner.Remove(id); }
  Result<ChunkStat> Stat(const ChunkId& id) override { return inner.Stat(id); }
  Result<bool> RemoveIfStoredBefore(const ChunkId& id,
                                    std::chrono::system_clock::time_point cutoff) override {
    return inner.RemoveIfStoredBefore(id, cutoff);
  }
  Status ForEach(const std::function<bool(const ChunkId&, std::uint64_t)>& fn) override {
    return inner.ForEach(fn);
  }
  Result<StoreUsage> Usage() override { return inner.Usage(); }
  Status Sync() override {
    ++syncs;
    unsynced = 0;
    return inner.Sync();
  }
  MemoryChunkStore inner;
  std::atomic<int> unsynced{0};
  std::atomic<int> syncs{0};
};

}  // namespace dfs::core
