// TreeMount: the volume's file tree (core/namespace.h) as a writable POSIX
// directory through the libfuse3 low-level API. Every call maps onto the
// FileServer: lookups, listings and attribute changes onto its tree methods,
// file data onto StoreData / CommitContent / ReadContent. fuse/ holds no
// storage or network logic.
//
// Inodes: the kernel's node ids come from a table (FileId <-> node id) with
// exact lookup counts; node ids are never reused within a mount, so the
// generation is always 1. Hard links share one node id (one inode).
//
// Data: an open regular file is an OpenFile shared by its handles. Writes
// and truncates go to a core::StagedFile (a sparse staging file in
// DIR/staging); flush (every close), fsync and the last release commit it:
// only the touched regions are re-chunked, sealed and replicated (fsync
// returns once the store's write quorum holds them), then the new manifest
// commits as one tree op. A failed upload keeps the data staged and
// surfaces as the error of that flush / fsync / close. A file written in
// order from offset 0 (cp) skips the staging file: its bytes go straight to
// an UploadStream; if that upload fails, every later call on the open file
// fails with its error (OpenFile::lost), since those bytes are gone. Each
// open sees the tree's current content (close-to-open, like NFS), unless
// this mount has uncommitted changes of its own; when a peer's op changes
// the content of a file open here, the next read reloads
// it (the kernel keeps one size per inode, so handles read one whole
// version, never a mix). The page cache is kept across opens while the
// content is unchanged.
//
// Ops from peers invalidate what the kernel caches of the names and inodes
// they touch (fuse_lowlevel_notify_inval_entry / _inode), on a thread of
// their own.
//
// Threading: libfuse's worker threads call in concurrently; the tables are
// locked; each OpenFile has its own lock. Lock order: the table lock (mu_)
// before a file's lock, never the other way round; the FileServer's locks
// after both.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/file_server.h"
#include "core/op_log.h"
#include "core/staged_file.h"
#include "core/upload_stream.h"
#include "core/status.h"

struct fuse_session;

namespace dfs::fuse {

struct MountOptions {
  std::vector<std::string> fuse_options;  // passed as -o (e.g. allow_other, auto_unmount)
  bool debug = false;
  // Where staging files go (created if missing); statfs reports this file
  // system's space.
  std::filesystem::path staging_dir;
  // Called after fsync and fsyncdir have made the changes durable here and
  // before they return (the node waits for its peers to hold the ops).
  std::function<void()> after_sync;
};

// errno for a core status.
int Errno(const core::Status& s);

class TreeMount {
 public:
  // Mounts the tree of `files` at `mountpoint`. Errors: kInvalidArgument
  // (bad options), kIo (the kernel refused the mount; the message says why).
  static core::Result<std::unique_ptr<TreeMount>> Mount(core::FileServer& files,
                                                        const std::filesystem::path& mountpoint,
                                                        const MountOptions& options);
  ~TreeMount();  // commits what is still staged, unmounts

  // Serves requests until unmounted (fusermount3 -u) or Exit(). Installs
  // libfuse's SIGINT/SIGTERM/SIGHUP handlers for the time it runs.
  core::Status Run();
  void Exit();

  // An op from a peer was applied: drop what the kernel caches of it. Any
  // thread; does not block on the kernel.
  void OnRemoteOp(const core::Op& op);

  // --- used by the low-level operations (fuse/tree_mount_ops.cc) ---
  // Bytes of a file that held none yet, written in order from 0 and kept
  // in memory while they are few; counted against the mount's budget.
  struct Head {
    core::Bytes bytes;
    std::atomic<std::size_t>* budget = nullptr;  // set by the first Append
    Head() = default;
    Head(const Head&) = delete;
    Head& operator=(const Head&) = delete;
    ~Head() { Clear(); }
    // False (nothing kept) when the budget would be exceeded.
    bool Append(core::ByteSpan data, std::atomic<std::size_t>& total, std::size_t cap);
    void Clear();
  };
  struct OpenFile {
    std::mutex mu;
    core::FileId inode;
    int handles = 0;
    // As of the first open, or the last commit. Shared and immutable: a read
    // takes the pointer, not a copy of a list that grows with the file.
    std::shared_ptr<const core::Manifest> content = std::make_shared<const core::Manifest>();
    std::unique_ptr<core::FileServer::ChunkPins> pins;  // content's chunks, while open
    std::unique_ptr<core::StagedFile> staged;  // on the first write or truncate
    // A file written in order from 0 uploads as it is written (cp); the
    // first other access turns what was uploaded into the staged file's base.
    std::unique_ptr<core::UploadStream> stream;
    // Why the stream's upload failed, once it has: the bytes it had taken
    // are gone, so every later write, read, flush, fsync and close of the
    // file through this open file fails with it (never a success that
    // drops written bytes), until a truncation to nothing (Empty). The
    // tree keeps the last committed content.
    core::Status lost;
    // Before the stream: a new file's first bytes while under kStreamFrom,
    // committed as one small upload at close (no staging file); any other
    // access stages them. Never at the same time as stream or staged.
    Head head;
    std::unique_ptr<core::FileServer::ChunkPins> base_pins;  // of a base not yet committed
    bool base_uncommitted = false;  // staged->base() is not the tree's content yet
    bool content_dirty = false;     // `content` (emptied by O_TRUNC) is not the tree's yet
    std::atomic<bool> stale{false};  // a peer's op changed the content since it was loaded
    std::int64_t mtime_ns = 0;  // of the last write
    bool append_seen = false;
  };
  struct Handle {
    std::shared_ptr<OpenFile> file;
    std::mutex mu;  // guards cursor
    core::FileServer::ReadCursor cursor;
    bool writable = false;
    bool append = false;
  };

  // Node ids.
  std::uint64_t Remember(const core::FileId& inode, std::uint64_t parent_ino, const std::string& name);
  void Forget(std::uint64_t ino, std::uint64_t n);
  bool Find(std::uint64_t ino, core::FileId* out);
  // The open file of `ino`, created (content loaded) for the first handle.
  core::Result<std::shared_ptr<OpenFile>> Acquire(std::uint64_t ino, const core::FileId& inode);
  // One handle fewer; the last one commits and drops it.
  core::Status Release(std::uint64_t ino, const std::shared_ptr<OpenFile>& file);
  std::shared_ptr<OpenFile> FindOpen(std::uint64_t ino);
  // Makes `file` staged (its lock held).
  core::Status Stage(OpenFile& file);
  // Reloads the content of a file without changes of this mount's own (its lock held).
  core::Status Refresh(OpenFile& file);
  // Ends an upload in progress; what it uploaded becomes the staged base.
  core::Status Unstream(OpenFile& file);
  // Truncates to nothing a file with nothing staged (its lock held): the
  // content is empty (committed at the next flush), and a failed upload's
  // error goes with the bytes it had dropped.
  void Empty(OpenFile& file);
  // Writes at `offset` (its lock held): to the upload when the file is
  // written in order from 0, else staged.
  core::Status Write(OpenFile& file, std::uint64_t offset, core::ByteSpan data);
  std::uint64_t Size(OpenFile& file);
  // Commits what `file` has staged (its lock held).
  core::Status Commit(OpenFile& file);
  // Commits a file's in-memory head (its lock held).
  core::Status CommitHead(OpenFile& file);
  // `next` is the tree's content of `file` now: the open file follows it.
  void Committed(OpenFile& file, core::Manifest next);
  // Whether the content of `inode` changed since this mount last opened it.
  bool ContentChanged(std::uint64_t ino, const core::Manifest& content);

  core::FileServer& files() { return files_; }
  // The count and latency of low-level operation `op` (a no-op metric when
  // the FileServer has no registry).
  const core::OpMetric* op_metric(int op) const { return &op_metrics_[static_cast<std::size_t>(op)]; }
  const std::filesystem::path& staging_dir() const { return options_.staging_dir; }
  // fsync and fsyncdir: Flush, then the after_sync hook.
  core::Status SyncAll() {
    DFS_RETURN_IF_ERROR(files_.Flush());
    if (options_.after_sync) options_.after_sync();
    return core::Status::Ok();
  }

 private:
  TreeMount(core::FileServer& files, MountOptions options)
      : files_(files), options_(std::move(options)) {}
  void NotifyLoop();
  struct Inval;
  std::vector<Inval> Invalidations(const core::Op& op);

  core::FileServer& files_;
  MountOptions options_;
  fuse_session* session_ = nullptr;
  std::filesystem::path mountpoint_;
  std::vector<core::OpMetric> op_metrics_;  // by operation, set before the mount
  // Bytes held in open files' heads, all together (at most kHeadBudget).
  static constexpr std::size_t kHeadBudget = 32 << 20;
  std::atomic<std::size_t> head_bytes_{0};

  struct Node {
    core::FileId inode;
    std::uint64_t lookups = 0;
    std::uint64_t parent = 0;  // where it was last looked up, for invalidation
    std::string name;
    std::size_t content_hash = 0;  // of the manifest at the last open
    // The kernel may cache bytes the tree does not hold (a commit failed):
    // the next open drops its pages whatever the content.
    bool cache_suspect = false;
  };
  std::mutex mu_;
  std::uint64_t next_ino_ = 2;
  std::map<std::uint64_t, Node> nodes_;
  std::map<core::FileId, std::uint64_t> by_inode_;
  std::map<std::uint64_t, std::shared_ptr<OpenFile>> open_;

  // Invalidations for the kernel, done off the applying thread.
  struct Inval {
    std::uint64_t ino = 0;     // inode to invalidate (0: none)
    std::uint64_t parent = 0;  // with name: an entry to invalidate
    std::string name;
  };
  std::mutex notify_mu_;
  std::condition_variable notify_cv_;
  std::deque<core::Op> notify_ops_;  // from peers, waiting to be turned into Invals
  bool notify_stop_ = false;
  std::thread notify_thread_;
};

}  // namespace dfs::fuse
