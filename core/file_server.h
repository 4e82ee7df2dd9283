// FileServer: the face of dfs — Store(key, reader), Get(key), Delete(key),
// Has(key) — over a chunk store, the index and the volume key.
//
// Store streams: read -> content-defined chunks -> (on the worker pool) id,
// seal, chunk store put -> one index transaction that commits the manifest
// as the next op of this node's op log (Index::ApplyOp), ready to replicate.
// At most `pipeline_depth` chunks are in flight, so memory is bounded by
// configuration (about 2 * depth * max chunk size), never by the file.
// Chunks are shared between files (dedup by id) and removed from the chunk
// store when no file references them any more.
//
// Crash safety: chunk files are durable (fsync + directory fsync) before the
// manifest commits; the commit is one SQLite transaction. After a crash the
// key holds its old or its new content; chunks written by an interrupted
// Store are swept on the next open (the index records whether the last
// shutdown was clean).
//
// Thread safety: all methods may be called concurrently from any thread.
// Errors: see each method; every message names the key or chunk involved.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "core/chunk_store.h"
#include "core/chunker.h"
#include "core/hlc.h"
#include "core/node_id.h"
#include "core/index.h"
#include "core/io.h"
#include "core/key_file.h"
#include "core/status.h"
#include "core/volume_crypto.h"
#include "core/worker_pool.h"

namespace dfs::core {

struct FileServerOptions {
  // This node's identity in the op log; Open() uses DIR/node-id when unset.
  std::optional<NodeId> node_id;
  ChunkerParams chunker;
  std::size_t pipeline_depth = 4;  // chunks in flight per Store / Get
  std::size_t workers = 0;         // 0: one per core, at least 2
  // How long Open waits for another process to release the data directory.
  std::chrono::milliseconds lock_timeout{30000};
  // After an unclean shutdown, remove chunks no file references. A node in a
  // network turns this off: chunks that peers pushed to it may arrive before
  // the op that references them.
  bool sweep_orphans = true;
  // Open() hands the data directory's chunk store to this, when set, and
  // uses what it returns (a network node layers a ReplicatedChunkStore).
  std::function<std::unique_ptr<ChunkStore>(std::unique_ptr<ChunkStore> local)> wrap_store;
};

struct FileInfo {
  std::string key;
  std::uint64_t size = 0;
  std::uint64_t chunks = 0;
  std::uint64_t stored_bytes = 0;  // sealed bytes of its distinct chunks
  std::int64_t mtime_ns = 0;
};

// Called with the number of plaintext bytes done so far.
using ProgressFn = std::function<void(std::uint64_t)>;

class FileServer {
 public:
  // Opens (creating if needed, mode 0700) the data directory `dir`:
  // DIR/lock (held exclusively while open), DIR/index.db, DIR/chunks/.
  // Errors: kWrongKey (the directory belongs to another volume key),
  // kUnavailable (another process holds it past lock_timeout), kNoSpace, kIo.
  static Result<std::unique_ptr<FileServer>> Open(const std::filesystem::path& dir,
                                                  const VolumeKey& key,
                                                  FileServerOptions options = {});

  // Assembles a FileServer from parts (tests use a MemoryChunkStore).
  static Result<std::unique_ptr<FileServer>> Create(std::unique_ptr<ChunkStore> store,
                                                    std::unique_ptr<Index> index,
                                                    const VolumeKey& key,
                                                    FileServerOptions options = {});
  ~FileServer();  // records a clean shutdown

  // Stores everything `reader` yields under `key`, replacing what was there
  // once it is durable. Errors: kInvalidArgument (bad key), kNoSpace, kIo,
  // and any error of the reader.
  Status Store(std::string_view key, Reader& reader, const ProgressFn& progress = {});

  // Writes the content of `key` to `writer`, verifying every chunk before
  // any of its bytes are written. Errors: kNotFound (no such key), kCorrupt
  // (a chunk is missing, truncated or fails authentication; names it),
  // kWrongKey, and any error of the writer.
  Status Get(std::string_view key, Writer& writer, const ProgressFn& progress = {});

  // Reads up to buf.size() bytes of `key` at `offset`; returns the count (0
  // at or past the end). Errors as Get.
  Result<std::size_t> ReadAt(std::string_view key, std::uint64_t offset, MutableByteSpan buf);

  // Removes `key`; its chunks are freed once nothing references them.
  // Errors: kNotFound, kInvalidArgument.
  Status Delete(std::string_view key);

  Result<bool> Has(std::string_view key);

  // Calls fn for each key starting with `prefix`, in byte order, until it
  // returns false. Memory does not grow with the number of keys.
  Status List(std::string_view prefix, const std::function<bool(const FileInfo&)>& fn);

  Result<FileInfo> Stat(std::string_view key);

  // Applies an op of another node's log (or one of ours that a peer gives
  // back after we lost it): index, clock, and the chunks it frees. Returns
  // false for an op already applied. Errors: kUnavailable (an earlier op of
  // its origin is missing), kCorrupt (a manifest that does not decode), kIo.
  Result<bool> ApplyRemoteOp(const Op& op);

  // Called after every op commits — local ones (`local` true, in sequence
  // order, e.g. to broadcast them) and remote ones (e.g. to invalidate
  // caches) — on the committing thread, with an internal lock held: it must
  // not call back into the FileServer. Set it before the first write.
  using OpListener = std::function<void(const Op& op, bool local)>;
  void SetOpListener(OpListener listener) { listener_ = std::move(listener); }

  Result<IndexTotals> Totals() { return index_->Totals(); }
  const NodeId& node_id() const { return node_id_; }
  Index& index() { return *index_; }
  Result<StoreUsage> Usage() { return store_->Usage(); }

  ChunkStore& chunk_store() { return *store_; }
  const VolumeCrypto& crypto() const { return crypto_; }

  class DirLock;

 private:
  FileServer(std::unique_ptr<ChunkStore> store, std::unique_ptr<Index> index,
             const VolumeKey& key, FileServerOptions options);

  Status Init();  // key check, pending frees, orphan sweep
  Status CheckKey();
  Status SweepOrphans();
  Status FinishPendingFrees();
  // Removes each chunk that no file references and no Store has pinned.
  Status RemoveIfUnused(const std::vector<ChunkId>& ids);
  void Pin(const ChunkId& id);
  void Unpin(const std::vector<ChunkId>& ids);
  // Reads, verifies and decrypts chunk `index` of `rec` into `*out`.
  Status FetchChunk(const FileRecord& rec, std::size_t index, Bytes* sealed, Bytes* out);
  // Records a local write as the next op of this node's log and applies it
  // (one index transaction). Returns the chunks it freed.
  Result<std::vector<ChunkId>> CommitLocalOp(Op::Kind kind, std::string_view key,
                                             const Manifest* manifest);
  Result<FileRecord> LookupExisting(std::string_view key);

  std::unique_ptr<DirLock> lock_;
  std::unique_ptr<ChunkStore> store_;
  std::unique_ptr<Index> index_;
  VolumeCrypto crypto_;
  Chunker chunker_;
  FileServerOptions options_;
  WorkerPool pool_;

  NodeId node_id_;
  HybridClock clock_;
  std::mutex op_mu_;  // ops commit one at a time; local ones take sequence numbers in order
  OpListener listener_;
  std::uint64_t next_seq_ = 0;  // 0: not read from the index yet

  std::mutex gc_mu_;  // guards pinned_ and serializes chunk removal with pinning
  std::unordered_map<ChunkId, int, ChunkIdHash> pinned_;
};

}  // namespace dfs::core
