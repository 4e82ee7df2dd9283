// DiskChunkStore: chunks as files under a root directory, at content-hash
// paths sharded two levels deep: ROOT/ab/cd/abcd<...64 hex>.
//
// Each file is a versioned record (docs/format.md, "chunk file"): a header
// with magic, version, payload length and a CRC32C of the payload, then the
// payload. Get verifies all of it. Writes are atomic: a temporary file in
// ROOT/tmp, written (writeback started at once), renamed into place. Fsyncs
// are batched into Sync(): the chunk files written since the last Sync (one
// syncfs() when there are many) and then their directories. Open() removes
// leftover temporary files, so a partial chunk is never visible after a
// process crash; after a power loss, a chunk renamed but not yet synced may
// be damaged, which Get reports as kCorrupt and which no committed manifest
// can name (manifests commit only after Sync).
//
// Thread safety: all methods may be called concurrently.
#pragma once

#include <filesystem>
#include <memory>

#include "core/chunk_store.h"

namespace dfs::core {

class DiskChunkStore final : public ChunkStore {
 public:
  // Creates ROOT (and ROOT/tmp) if missing.
  static Result<std::unique_ptr<DiskChunkStore>> Open(const std::filesystem::path& root);
  ~DiskChunkStore() override;

  Status Put(const ChunkId& id, ByteSpan data) override;
  MutableByteSpan PutBuffer(std::size_t size) override;
  using ChunkStore::Get;
  Status Get(const ChunkId& id, Bytes* out, ReadCheck check) override;
  Status View(const ChunkId& id, ReadCheck check, ReadHint hint, Bytes* scratch,
              const std::function<Status(ByteSpan)>& use) override;
  Result<bool> Has(const ChunkId& id) override;
  Status Remove(const ChunkId& id) override;
  Result<ChunkStat> Stat(const ChunkId& id) override;
  Result<bool> RemoveIfStoredBefore(const ChunkId& id,
                                    std::chrono::system_clock::time_point cutoff) override;
  Status ForEach(const std::function<bool(const ChunkId&, std::uint64_t)>& fn) override;
  Result<StoreUsage> Usage() override;
  Status Sync() override;

  // The path a chunk lives at (for tests and tools).
  std::filesystem::path PathFor(const ChunkId& id) const;

  class Impl;

 private:
  explicit DiskChunkStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dfs::core
