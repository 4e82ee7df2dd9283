// Index: the persistent, crash-safe map from key to manifest, plus the
// reference count of every chunk, in SQLite (WAL mode, synchronous=FULL).
//
// Every change is one transaction, so after a crash the index holds each key's
// old manifest or its new one, and chunk reference counts always match the
// manifests. Chunks whose count reaches zero are moved to a `pending_free`
// table in the same transaction; the FileServer removes them from the chunk
// store afterwards and then clears them, so a crash between the two leaves
// work that the next open finishes, never a dangling reference.
//
// The schema (docs/format.md, "index database") is versioned in the `meta`
// table; the mount issue grows it into the replicated file tree (inodes,
// directory entries and an op log beside `files`).
//
// Thread safety: all methods may be called from any thread; they serialize
// on one connection.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/manifest.h"
#include "core/op_log.h"
#include "core/io.h"
#include "core/status.h"

struct sqlite3;

namespace dfs::core {

struct FileRecord {
  std::string key;
  std::int64_t mtime_ns = 0;  // when it was stored
  Manifest manifest;
};

struct IndexTotals {
  std::uint64_t files = 0;
  std::uint64_t logical_bytes = 0;  // sum of file sizes
  std::uint64_t chunks = 0;         // distinct chunks referenced
  std::uint64_t stored_bytes = 0;   // sum of their sealed sizes
};

class Index {
 public:
  // 2 added the file tree (core/tree_db.h); a version 1 database is
  // upgraded in place on open.
  static constexpr int kSchemaVersion = 2;

  // Opens or creates the database. Errors: kInvalidArgument (a newer schema
  // version), kCorrupt (not a database), kNoSpace, kIo.
  static Result<std::unique_ptr<Index>> Open(const std::filesystem::path& path);
  ~Index();

  Result<std::optional<Bytes>> GetMeta(std::string_view name);
  Status SetMeta(std::string_view name, ByteSpan value);

  Result<std::optional<FileRecord>> Lookup(std::string_view key);

  // Sets `key` to `manifest` in one transaction: chunks of the new manifest
  // gain a reference (created with `stored_size(ref)` bytes when new, and
  // taken out of pending_free), the old manifest's chunks lose one. Returns
  // the chunks that are no longer referenced (now in pending_free).
  Result<std::vector<ChunkId>> PutFile(std::string_view key, const Manifest& manifest,
                                       std::int64_t mtime_ns,
                                       const std::function<std::uint64_t(const ChunkRef&)>& stored_size);

  // Removes `key`; returns the chunks no longer referenced. kNotFound if absent.
  Result<std::vector<ChunkId>> DeleteFile(std::string_view key);

  // Calls fn for every key starting with `prefix`, in byte order, until it
  // returns false. Rows are read in batches, so memory does not grow with
  // the number of keys.
  Status List(std::string_view prefix, const std::function<bool(const FileRecord&)>& fn);

  // Whether the chunk is referenced by any file.
  Result<bool> IsReferenced(const ChunkId& id);

  // Sum of the sealed sizes of the distinct chunks in `manifest`.
  Result<std::uint64_t> StoredBytes(const Manifest& manifest);

  Result<IndexTotals> Totals();

  // Up to `limit` chunks awaiting removal from the chunk store.
  Result<std::vector<ChunkId>> PendingFree(std::size_t limit);
  Status ClearPendingFree(const std::vector<ChunkId>& ids);

  // The replicated key index (docs/format.md, "op"). Applies one op in one
  // transaction: it joins the op log, and if it is the newest write to its
  // key (Op::WinsOver) the file row follows it — set for a put, removed for
  // a delete — with reference counts as in PutFile/DeleteFile (chunks no
  // longer referenced are appended to *freed and queued in pending_free).
  // Each origin's ops must arrive in sequence: an op already applied
  // returns false; one after a gap is kUnavailable (not yet: fetch
  // the ops before it first).
  Result<bool> ApplyOp(const Op& op, std::vector<ChunkId>* freed,
                       const std::function<std::uint64_t(const ChunkRef&)>& stored_size);
  // Runs `fn` with the connection under the index lock: the file tree's
  // queries (core/tree_db.h) read through this.
  template <typename F>
  auto WithDb(F&& fn) {
    std::lock_guard lock(mu_);
    return fn(db_);
  }

  // Commits are written to the log (WAL) but synced lazily (synchronous=
  // NORMAL): a process crash loses nothing, a power loss may lose the last
  // commits. SyncLog makes every commit so far durable (one fdatasync of
  // the log); FileServer::Flush decides when (group commit).
  Status SyncLog();

  // Highest op applied per origin: what to swap with a peer on connect.
  Result<VersionVector> Vector();
  // Up to `limit` ops of `origin` from `from_seq` on, in order: what a peer lacks.
  Result<std::vector<Op>> OpsSince(const NodeId& origin, std::uint64_t from_seq, std::size_t limit);

 private:
  explicit Index(sqlite3* db) : db_(db) {}
  Status Exec(const char* sql);
  Status DecrementRefs(const Manifest& manifest, std::vector<ChunkId>* freed);
  Status RefChunksLocked(const Manifest& manifest,
                         const std::function<std::uint64_t(const ChunkRef&)>& stored_size);
  // The bodies of PutFile and DeleteFile, inside a caller's transaction.
  Status PutFileLocked(std::string_view key, const Manifest& manifest, std::int64_t mtime_ns,
                       const std::function<std::uint64_t(const ChunkRef&)>& stored_size,
                       std::vector<ChunkId>* freed);
  Status DeleteFileLocked(std::string_view key, std::vector<ChunkId>* freed);

  std::mutex mu_;
  sqlite3* db_;
  std::filesystem::path wal_path_;  // the log SyncLog syncs
  std::mutex wal_mu_;
  UniqueFd wal_fd_;  // kept open: the log is only ever truncated while we hold it
};

}  // namespace dfs::core
