// ChunkStore: where sealed chunks live, addressed by ChunkId.
//
// A store holds opaque bytes (envelopes from VolumeCrypto::Seal); it never
// needs the volume key, so keyless storage peers use the same stores.
// Implementations: DiskChunkStore (content-hash paths on disk) and
// MemoryChunkStore (tests, caches). One typed conformance suite
// (tests/chunk_store_conformance_test.cc) runs against every implementation.
//
// Thread safety: all methods may be called concurrently from any thread.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>

#include "core/bytes.h"
#include "core/chunk_id.h"
#include "core/status.h"

namespace dfs::core {

struct StoreUsage {
  std::uint64_t chunks = 0;
  std::uint64_t bytes = 0;  // payload bytes (sealed chunk sizes), not counting headers
};

// What the chunk collector (core/chunk_gc.h) needs to know of a chunk
// without reading it.
struct ChunkStat {
  std::uint64_t size = 0;  // payload bytes
  // When it was last Put: its first store, or a later Put of the same id
  // (a writer that found it held), whichever is newer.
  std::chrono::system_clock::time_point stored{};
  // The payload's first bytes (zeros past its end): a sealed chunk's
  // envelope header, which names the volume key that sealed it.
  std::array<std::uint8_t, 16> head{};
};

class ChunkStore {
 public:
  virtual ~ChunkStore() = default;

  // Stores `data` under `id`. Idempotent: putting an id that is already held
  // succeeds without rewriting it (it only renews its Put time, see Stat). When Put returns the chunk is complete and
  // visible to Get; it is durable (bytes and directory entry) after the next
  // Sync(), which callers issue before committing anything that names it.
  // Errors: kNoSpace, kIo, kPermission.
  virtual Status Put(const ChunkId& id, ByteSpan data) = 0;

  // A place to build the bytes of this thread's next Put: `size` writable
  // bytes that Put takes without copying when they come back as its `data`
  // (a disk store's aligned buffer for direct I/O). Valid on this thread
  // until its next PutBuffer or Put call on any store. Empty when the store
  // has no such buffer for `size`: the caller uses its own.
  virtual MutableByteSpan PutBuffer(std::size_t size) {
    (void)size;
    return {};
  }

  // How much of a chunk Get checks. Every read checks the record's framing
  // (length, header); kChecksum also checks the payload checksum. A reader
  // that authenticates the payload itself (the FileServer opens every chunk
  // with AES-GCM, a far stronger check) passes kCallerAuthenticates and
  // saves a pass over the bytes.
  enum class ReadCheck { kChecksum, kCallerAuthenticates };

  // Reads the chunk into `*out` (resized; its capacity is reused) and checks
  // its integrity. Errors: kNotFound (missing), kCorrupt (flipped, truncated,
  // or a header that does not match; the message names the chunk), kIo.
  // On error `*out` is empty.
  virtual Status Get(const ChunkId& id, Bytes* out, ReadCheck check) = 0;
  Status Get(const ChunkId& id, Bytes* out) { return Get(id, out, ReadCheck::kChecksum); }

  // Whether a chunk read now is likely to be read again soon: kStreaming
  // (a file read in order, a copy to a peer, a scrub: the disk store reads
  // it past the page cache, as Get does) or kReused (random access into a
  // file: the page cache keeps it).
  enum class ReadHint { kStreaming, kReused };

  // Calls `use` once with the chunk's bytes, checked as Get checks them and
  // valid only during the call; returns Get's error (use not called) or
  // what `use` returned. A store that holds the bytes in a buffer of its own
  // (the disk store's direct reads) saves the copy into `*scratch`; others
  // Get into it (its capacity reused).
  virtual Status View(const ChunkId& id, ReadCheck check, ReadHint hint, Bytes* scratch,
                      const std::function<Status(ByteSpan)>& use) {
    (void)hint;
    DFS_RETURN_IF_ERROR(Get(id, scratch, check));
    return use(*scratch);
  }

  // Whether the chunk is held (no integrity check).
  virtual Result<bool> Has(const ChunkId& id) = 0;

  // Whether a Put of the chunk would add nothing, so a writer may skip it:
  // held as durably as a Put makes it. A store that spreads copies says no
  // for a chunk whose last Put missed its copies (the writer then puts it
  // again) though its own copy is there.
  virtual Result<bool> HasAsPut(const ChunkId& id) { return Has(id); }

  // Removes the chunk. Errors: kNotFound, kIo.
  virtual Status Remove(const ChunkId& id) = 0;

  // The chunk's size, last Put time and first bytes (no integrity check).
  // Errors: kNotFound, kIo.
  virtual Result<ChunkStat> Stat(const ChunkId& id) = 0;

  // Removes the chunk only if its last Put was before `cutoff`; returns
  // whether it did. Atomic with Put: a Put of the same id that returned
  // before this call keeps the chunk (its time is newer), and one that
  // starts after it finds the chunk gone and writes it anew.
  // Errors: kNotFound, kIo.
  virtual Result<bool> RemoveIfStoredBefore(const ChunkId& id,
                                            std::chrono::system_clock::time_point cutoff) = 0;

  // Calls `fn(id, size)` for every chunk held, in no particular order,
  // until it returns false. Chunks added or removed during the walk may or
  // may not be seen. Memory is bounded: it does not list everything first.
  virtual Status ForEach(const std::function<bool(const ChunkId&, std::uint64_t)>& fn) = 0;

  // Totals over everything held.
  virtual Result<StoreUsage> Usage() = 0;

  // Makes every Put and Remove so far durable (for disk: fsyncs the chunk
  // files and the directories they touched, batched).
  virtual Status Sync() = 0;
};

// A check of a copy beyond the store's own (a node with the volume key: the
// chunk opens under it). Used when choosing among copies.
using ChunkVerifier = std::function<Status(const ChunkId&, ByteSpan)>;

// Puts a verified copy in place of a bad one and makes it durable. A copy
// damaged without changing its size looks intact to Put, so it goes first.
inline Status ReplaceChunk(ChunkStore& store, const ChunkId& id, ByteSpan data) {
  Status removed = store.Remove(id);
  if (!removed.ok() && removed.code() != ErrorCode::kNotFound) return removed;
  DFS_RETURN_IF_ERROR(store.Put(id, data));
  return store.Sync();
}

}  // namespace dfs::core
