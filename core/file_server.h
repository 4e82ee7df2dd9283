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

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "core/chunk_store.h"
#include "core/chunker.h"
#include "core/hlc.h"
#include "core/node_id.h"
#include "core/index.h"
#include "core/io.h"
#include "core/key_file.h"
#include "core/metrics.h"
#include "core/namespace.h"
#include "core/status.h"
#include "core/volume_crypto.h"
#include "core/worker_pool.h"

namespace dfs::core {

struct FileServerOptions {
  // This node's identity in the op log; Open() uses DIR/node-id when unset.
  std::optional<NodeId> node_id;
  ChunkerParams chunker;
  std::size_t pipeline_depth = 4;  // chunks in flight per Store / Get
  std::size_t workers = 0;         // 0: one per core plus one, at least 3
  // How long Open waits for another process to release the data directory.
  std::chrono::milliseconds lock_timeout{30000};
  // Group commit: how long the flusher gathers commits before one sync of
  // the index log (Flush() does not wait for it).
  std::chrono::milliseconds flush_delay{10};
  // After an unclean shutdown, remove chunks no file references. A node in a
  // network turns this off: chunks that peers pushed to it may arrive before
  // the op that references them.
  bool sweep_orphans = true;
  // Open() hands the data directory's chunk store to this, when set, and
  // uses what it returns (a network node layers a ReplicatedChunkStore).
  std::function<std::unique_ptr<ChunkStore>(std::unique_ptr<ChunkStore> local)> wrap_store;
  // The largest op this node makes (peers could not be sent a larger one).
  // A file's content whose manifest does not fit travels as pieces, one op
  // each (TreeStep::kContentPart); a manifest past max_manifest_bytes, or
  // any other change past max_op_bytes, is refused with kFileTooLarge
  // before anything commits. Tests set both lower.
  std::size_t max_op_bytes = Op::kMaxEncodedSize;
  std::size_t max_manifest_bytes = kManifestMax;
  // Where Store, Get and Delete count and time themselves (dfs_file_*);
  // must outlive the FileServer. None: not measured.
  MetricsRegistry* metrics = nullptr;
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

  // Called for every op: remote ones (`local` false, e.g. to invalidate
  // caches) as they commit, on the committing thread; local ones (`local`
  // true, in sequence order, e.g. to broadcast them) once they are durable,
  // on the flushing thread. An internal lock is held either way: it must not
  // call back into the FileServer. Set it before the first write.
  using OpListener = std::function<void(const Op& op, bool local)>;
  void SetOpListener(OpListener listener) {
    std::scoped_lock lock(flush_mu_, op_mu_);
    listener_ = std::move(listener);
  }

  // Group commit. The tree's changes commit without waiting for the disk; a
  // flusher thread then syncs the index log for all of them at once, and
  // only then are our ops handed to the listener (to peers) and the chunks
  // they freed removed, so a power loss can neither reuse a sequence number
  // a peer has seen nor lose chunks a surviving state still needs. Flush()
  // makes everything committed so far durable before it returns (fsync
  // calls it); Store and Delete flush before they return.
  Status Flush();
  // Our highest op that is durable (and so may leave this node).
  std::uint64_t DurableSeq() const { return durable_seq_.load(); }

  // ---- The file tree (what the mount serves; core/namespace.h) ----
  // Every change below is one local tree op: checked and committed under
  // one lock, so the checks (exists, empty, ...) hold when it commits.
  // Errors besides those named: kNoSpace, kIo.

  // kNotFound if the inode does not exist (or no longer has a name).
  Result<Attr> GetAttr(const FileId& inode);
  // The entry `name` of directory `dir`. Errors: kNotFound, kNotDirectory,
  // kNameTooLong, kInvalidArgument.
  Result<DirEntry> LookupName(const FileId& dir, std::string_view name);
  // Lists `dir` from position `offset` on (0: the start) in name order; fn
  // gets each entry and the offset of the one after it, until it returns
  // false. Memory does not grow with the directory.
  Status ReadDir(const FileId& dir, std::uint64_t offset,
                 const std::function<bool(const DirEntry&, std::uint64_t next)>& fn);
  // Creates `name` in `dir`. Errors: kExists, kNotFound (no dir),
  // kNotDirectory, kNameTooLong, kInvalidArgument.
  Result<DirEntry> MakeNode(const FileId& dir, std::string_view name, const NewNode& node);
  // A new name for an existing non-directory inode. Errors as MakeNode, and
  // kIsDirectory (inode is a directory: hard links to directories are refused).
  Result<DirEntry> Link(const FileId& inode, const FileId& dir, std::string_view name);
  // Removes a non-directory name. Errors: kNotFound, kIsDirectory.
  Status Unlink(const FileId& dir, std::string_view name);
  // Removes an empty directory. Errors: kNotFound, kNotDirectory, kNotEmpty.
  Status RemoveDir(const FileId& dir, std::string_view name);
  // rename(2) with renameat2 flags: kRenameNoReplace (kExists if the target
  // exists) or kRenameExchange (both must exist; they swap). Otherwise a
  // target is replaced when POSIX allows it: a directory only by a directory
  // and only when empty (kNotEmpty), kIsDirectory / kNotDirectory when the
  // types differ; kInvalidArgument when a directory would move under itself.
  static constexpr unsigned kRenameNoReplace = 1;
  static constexpr unsigned kRenameExchange = 2;
  Status Rename(const FileId& dir, std::string_view name, const FileId& new_dir,
                std::string_view new_name, unsigned flags = 0);
  Result<Attr> SetAttr(const FileId& inode, const AttrChange& change);
  // The target of a symlink. Errors: kNotFound, kInvalidArgument (not a symlink).
  Result<std::string> ReadLink(const FileId& inode);

  // Extended attributes. Get: kNoAttribute when unset. Set: flags are
  // XATTR_CREATE (kExists when set) / XATTR_REPLACE (kNoAttribute when not);
  // kNameTooLong / kInvalidArgument for names and values past the limits.
  Result<Bytes> GetXattr(const FileId& inode, std::string_view name);
  Status SetXattr(const FileId& inode, std::string_view name, ByteSpan value, int flags);
  Result<std::vector<std::string>> ListXattr(const FileId& inode);
  Status RemoveXattr(const FileId& inode, std::string_view name);

  // The content of a regular file. Errors: kNotFound, kIsDirectory.
  Result<Manifest> Content(const FileId& inode);
  // How logs name an inode: one of its paths and its id ("/a/b (1f2e3d4c)"),
  // or the id alone when it has no name (or the index fails).
  std::string Describe(const FileId& inode);

  // Chunks that a write has stored but not yet committed: removal of them
  // (by a concurrent delete of another file that shared them) waits until
  // the pins are released, which the destructor does.
  class ChunkPins {
   public:
    explicit ChunkPins(FileServer* fs) : fs_(fs) {}
    ~ChunkPins();
    ChunkPins(const ChunkPins&) = delete;
    ChunkPins& operator=(const ChunkPins&) = delete;

   private:
    friend class FileServer;
    FileServer* fs_;
    std::vector<ChunkId> ids_;
    std::vector<ChunkId> written_;  // newly written (removed again if never committed)
    bool committed_ = false;
  };
  // Keeps the chunks of `manifest` from being removed while `pins` lives
  // (an open file whose name another process removes stays readable).
  void PinContent(const Manifest& manifest, ChunkPins* pins);
  // Whether stored data may come back as an inline manifest (one chunk of at
  // most Manifest::kMaxInlineSize bytes, sealed into the manifest, no store
  // put): only when the data is a whole file's content, never a region that
  // is spliced into a larger manifest.
  enum class Inlining { kWholeFile, kRegion };
  // Chunks, seals and stores everything `reader` yields, pipelined (memory
  // bounded by the pipeline depth); returns its manifest. The chunks stay
  // pinned in `pins`.
  Result<Manifest> StoreData(Reader& reader, ChunkPins* pins,
                             Inlining inlining = Inlining::kRegion);
  // Sets the content of a regular file to `manifest` (whose chunks are in
  // the store: StoreData, or chunks of the file's current content) and its
  // mtime; marks `pins` committed. Errors: kNotFound, kIsDirectory.
  Status CommitContent(const FileId& inode, const Manifest& manifest, std::int64_t mtime_ns,
                       ChunkPins* pins = nullptr);

  // The decrypted chunk a reader looked at last, so that sequential reads
  // smaller than a chunk decrypt each chunk once.
  // Sequential readers also get the next kReadAhead chunks fetched and
  // decrypted on the worker pool while they copy this one.
  static constexpr std::size_t kReadAhead = 4;
  struct ReadCursor {
    ReadCursor() = default;
    ReadCursor(const ReadCursor&) = delete;
    ReadCursor& operator=(const ReadCursor&) = delete;
    ~ReadCursor();
    std::size_t index = SIZE_MAX;
    ChunkId id;
    Bytes plain;
    Bytes sealed;
    struct Ahead;
    std::deque<std::shared_ptr<Ahead>> ahead;
    // Finished read-ahead slots kept with their buffers: no fresh (zeroed,
    // faulted-in) multi-MiB buffers per chunk.
    std::vector<std::shared_ptr<Ahead>> spare;
  };
  // Reads up to buf.size() bytes of `manifest` at `offset` (holes read as
  // zeros); returns the count (0 at or past the end). Errors as Get.
  Result<std::size_t> ReadContent(const Manifest& manifest, std::uint64_t offset,
                                  MutableByteSpan buf, ReadCursor* cursor = nullptr);
  // Chunk `index` of `manifest`, verified and decrypted (a hole: zeros).
  Status ReadChunk(const Manifest& manifest, std::size_t index, Bytes* plain) {
    Bytes sealed;
    return FetchChunk(manifest, index, "file", &sealed, plain, ChunkStore::ReadHint::kReused);
  }

  // For the chunk collector (core/chunk_gc.h): whether a file references
  // each chunk or a write has it pinned.
  Result<std::vector<bool>> InUse(const std::vector<ChunkId>& ids);
  // Removes each of `ids` that no file references, no write has pinned and
  // the store last put before `cutoff`; returns which it removed. Ordered
  // with pinning, as RemoveIfUnused: a write that pins one afterwards finds
  // it gone and stores it again.
  Result<std::vector<bool>> CollectUnused(const std::vector<ChunkId>& ids,
                                          std::chrono::system_clock::time_point cutoff);

  Result<IndexTotals> Totals() { return index_->Totals(); }
  const NodeId& node_id() const { return node_id_; }
  Index& index() { return *index_; }
  Result<StoreUsage> Usage() { return store_->Usage(); }

  ChunkStore& chunk_store() { return *store_; }
  const VolumeCrypto& crypto() const { return crypto_; }
  MetricsRegistry* metrics() const { return options_.metrics; }

  class DirLock;

 private:
  FileServer(std::unique_ptr<ChunkStore> store, std::unique_ptr<Index> index,
             const VolumeKey& key, FileServerOptions options);

  Status Init();  // key check, pending frees, orphan sweep
  Status CheckKey();
  Status SweepOrphans();
  Status FinishPendingFrees();
  // Whether a Store has pinned the chunk or a file references it; gc_mu_ held.
  Result<bool> InUseLocked(const ChunkId& id);
  // Removes each chunk that no file references and no Store has pinned.
  Status RemoveIfUnused(const std::vector<ChunkId>& ids);
  void Pin(const ChunkId& id);
  void Unpin(const std::vector<ChunkId>& ids);
  // Reads, verifies and decrypts chunk `index` of `rec` into `*out`.
  Status FetchChunk(const FileRecord& rec, std::size_t index, Bytes* sealed, Bytes* out);
  Status FetchChunk(const Manifest& manifest, std::size_t index, std::string_view name,
                    Bytes* sealed, Bytes* out,
                    ChunkStore::ReadHint hint = ChunkStore::ReadHint::kStreaming);
  Status FetchRef(const ChunkRef& ref, const std::string& place, Bytes* sealed, Bytes* out,
                  ChunkStore::ReadHint hint);
  // Chunks, seals and stores what `reader` yields into *manifest, pipelined.
  Status StoreChunks(Reader& reader, std::string_view what, const ProgressFn& progress,
                     Inlining inlining, Manifest* manifest, std::vector<ChunkId>* pinned,
                     std::vector<ChunkId>* written);
  // Removes freed chunks from the store and clears them from pending_free.
  Status FreeChunks(const std::vector<ChunkId>& freed);
  // Commits the next op of this node's log; op_mu_ held. The chunks it
  // frees are removed once it is durable (Flush).
  Status CommitOpLocked(Op::Kind kind, std::string key, Bytes value);
  // Commits a tree op; op_mu_ held.
  Status CommitTreeLocked(const TreeOp& op);
  // Queues chunks freed by the op just committed for the next Flush; op_mu_ held.
  void DeferFreeLocked(std::vector<ChunkId> freed);
  // A directory that exists and is reachable from the root.
  Result<Attr> LiveDir(const FileId& dir);
  Status RemoveName(const FileId& dir, std::string_view name, bool directory);
  Status SetXattrStep(const FileId& inode, std::string_view name, ByteSpan value, int flags,
                      bool present);
  // The regular file at path `key` in the tree, with its content.
  Result<FileRecord> LookupExisting(std::string_view key);
  // The entry at path `key` (components from the root).
  Result<DirEntry> ResolvePath(std::string_view key);
  // Makes `key` a regular file with content `manifest`, creating missing
  // parent directories, in one tree op.
  Status CommitPath(std::string_view key, const Manifest& manifest);
  Status ListDir(const FileId& dir, const std::string& path, std::string_view prefix,
                 const std::function<bool(const FileInfo&)>& fn, bool* stop);

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

  // Group commit (Flush): op_mu_ guards commits_, unpublished_, deferred_
  // and stop_; flush_mu_ orders flushes.
  void FlushLoop();
  std::mutex flush_mu_;
  std::condition_variable flush_cv_;
  std::uint64_t commits_ = 0;  // ops committed since open, local and remote
  std::deque<std::pair<std::uint64_t, Op>> unpublished_;  // (commit number, our op)
  std::deque<std::pair<std::uint64_t, std::vector<ChunkId>>> deferred_;  // chunks freed
  std::atomic<std::uint64_t> durable_commits_{0};
  std::atomic<std::uint64_t> durable_seq_{0};
  bool stop_ = false;
  bool flusher_idle_ = false;  // waiting for a commit (not gathering or syncing)
  void NotifyFlusherLocked();
  std::thread flusher_;

  OpMetric store_metric_, get_metric_, delete_metric_;  // empty without a registry

  std::mutex gc_mu_;  // guards pinned_ and serializes chunk removal with pinning
  std::unordered_map<ChunkId, int, ChunkIdHash> pinned_;
};

}  // namespace dfs::core
