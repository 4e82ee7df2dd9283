#include "core/file_server.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <thread>

#include <fmt/format.h>

#include "core/disk_chunk_store.h"
#include "core/key_names.h"

namespace dfs::core {

// Exclusive flock on DIR/lock for the life of the FileServer, so two
// processes never mutate one data directory at once.
class FileServer::DirLock {
 public:
  static Result<std::unique_ptr<DirLock>> Acquire(const std::filesystem::path& path,
                                                  std::chrono::milliseconds timeout) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoStatus(errno, "open lock file " + path.string());
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK && errno != EINTR) {
        Status s = ErrnoStatus(errno, "lock " + path.string());
        ::close(fd);
        return s;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        ::close(fd);
        return Status::Unavailable(fmt::format(
            "data directory {} is in use by another dfs process", path.parent_path().string()));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return std::unique_ptr<DirLock>(new DirLock(fd));
  }
  ~DirLock() { ::close(fd_); }

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_;
};

namespace {

constexpr char kCleanShutdown[] = "clean_shutdown";
constexpr char kKeyCheck[] = "key_check";


std::size_t WorkerCount(const FileServerOptions& o) {
  if (o.workers > 0) return o.workers;
  // One more than the cores: a worker waiting on a chunk file's direct
  // write to the device leaves its core to the others.
  return std::max<std::size_t>(3, std::thread::hardware_concurrency() + 1);
}

// One unit of pipelined work: completion is signalled through done/cv.
struct Job {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Status status;
  Bytes plain;       // Get: the opened chunk
  Bytes sealed;      // Get: as read; Store: when the store lends no buffer
  FillBuffer input;  // Store: the chunk as read
  ChunkRef ref;
  bool newly_written = false;
  bool pinned = false;

  void Finish(Status s) {
    std::lock_guard lock(mu);
    status = std::move(s);
    done = true;
    cv.notify_all();
  }
  void Wait() {
    std::unique_lock lock(mu);
    cv.wait(lock, [this] { return done; });
  }
  void Reset() {
    done = false;
    status = Status::Ok();
    newly_written = false;
    pinned = false;
  }
};

// A finished job's buffers are reused by the next chunk (no reallocation
// of multi-MiB vectors per chunk).
std::shared_ptr<Job> TakeJob(std::vector<std::shared_ptr<Job>>& spare) {
  if (spare.empty()) return std::make_shared<Job>();
  std::shared_ptr<Job> job = std::move(spare.back());
  spare.pop_back();
  job->Reset();
  return job;
}

}  // namespace

Result<std::unique_ptr<FileServer>> FileServer::Open(const std::filesystem::path& dir,
                                                     const VolumeKey& key,
                                                     FileServerOptions options) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    std::filesystem::create_directories(dir, ec);
    if (ec) return ErrnoStatus(ec.value(), "create data directory " + dir.string());
    ::chmod(dir.c_str(), 0700);  // only a directory we made: never chmod the user's own
  } else if (!std::filesystem::is_directory(dir, ec)) {
    return Status::InvalidArgument(dir.string() + " is not a directory");
  }
  DFS_ASSIGN_OR_RETURN(std::unique_ptr<DirLock> lock,
                       DirLock::Acquire(dir / "lock", options.lock_timeout));
  DFS_ASSIGN_OR_RETURN(std::unique_ptr<ChunkStore> store, DiskChunkStore::Open(dir / "chunks"));
  if (options.wrap_store) store = options.wrap_store(std::move(store));
  DFS_ASSIGN_OR_RETURN(std::unique_ptr<Index> index, Index::Open(dir / "index.db"));
  if (!options.node_id.has_value()) {
    DFS_ASSIGN_OR_RETURN(options.node_id, LoadOrCreateNodeId((dir / "node-id").string()));
  }
  std::unique_ptr<FileServer> fs(
      new FileServer(std::move(store), std::move(index), key, std::move(options)));
  fs->lock_ = std::move(lock);
  DFS_RETURN_IF_ERROR(fs->Init().WithContext(dir.string()));
  return fs;
}

Result<std::unique_ptr<FileServer>> FileServer::Create(std::unique_ptr<ChunkStore> store,
                                                       std::unique_ptr<Index> index,
                                                       const VolumeKey& key,
                                                       FileServerOptions options) {
  std::unique_ptr<FileServer> fs(
      new FileServer(std::move(store), std::move(index), key, std::move(options)));
  DFS_RETURN_IF_ERROR(fs->Init());
  return fs;
}

FileServer::FileServer(std::unique_ptr<ChunkStore> store, std::unique_ptr<Index> index,
                       const VolumeKey& key, FileServerOptions options)
    : store_(std::move(store)),
      index_(std::move(index)),
      crypto_(key),
      chunker_(crypto_.chunker_seed(), options.chunker),
      options_(std::move(options)),
      pool_(WorkerCount(options_)),
      node_id_(options_.node_id.value_or(NodeId::Random())) {
  if (options_.pipeline_depth == 0) options_.pipeline_depth = 1;
  if (options_.metrics != nullptr) {
    store_metric_ = AddOpMetric(*options_.metrics, "dfs_file", "FileServer", "store");
    get_metric_ = AddOpMetric(*options_.metrics, "dfs_file", "FileServer", "get");
    delete_metric_ = AddOpMetric(*options_.metrics, "dfs_file", "FileServer", "delete");
  }
}

FileServer::~FileServer() {
  {
    std::lock_guard lock(op_mu_);
    stop_ = true;
  }
  flush_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  // The last flush publishes nothing: whoever listened may be gone already
  // (peers pull these ops later; a node flushes while its network runs).
  SetOpListener(nullptr);
  // Only a shutdown with nothing half-done is clean; callers have returned.
  if (Flush().ok() && store_->Sync().ok()) {
    (void)index_->SetMeta(kCleanShutdown, AsBytes("1"));
  }
}

Status FileServer::Init() {
  DFS_RETURN_IF_ERROR(CheckKey());
  // What an earlier process committed is made durable before the chunks it
  // freed go, and before its ops may leave this node.
  DFS_RETURN_IF_ERROR(index_->SyncLog());
  DFS_ASSIGN_OR_RETURN(VersionVector v, index_->Vector());
  durable_seq_ = v.Get(node_id_);
  DFS_RETURN_IF_ERROR(FinishPendingFrees());
  DFS_ASSIGN_OR_RETURN(std::optional<Bytes> clean, index_->GetMeta(kCleanShutdown));
  if (clean.has_value() && AsString(*clean) == "0" && options_.sweep_orphans) {
    DFS_RETURN_IF_ERROR(SweepOrphans());
  }
  DFS_RETURN_IF_ERROR(index_->SetMeta(kCleanShutdown, AsBytes("0")));
  DFS_RETURN_IF_ERROR(index_->SyncLog());
  flusher_ = std::thread([this] { FlushLoop(); });
  return Status::Ok();
}

Status FileServer::Flush() {
  std::lock_guard flush(flush_mu_);
  std::uint64_t target;
  {
    std::lock_guard lock(op_mu_);
    target = commits_;
  }
  if (durable_commits_.load() >= target) return Status::Ok();
  // Chunks first: every commit up to `target` names only chunks whose Put
  // returned before it, so after this no durable op names a chunk that is
  // not (docs/architecture.md, "Crash safety").
  DFS_RETURN_IF_ERROR(store_->Sync());
  DFS_RETURN_IF_ERROR(index_->SyncLog());
  std::vector<Op> publish;
  std::vector<ChunkId> freed;
  {
    std::lock_guard lock(op_mu_);
    while (!unpublished_.empty() && unpublished_.front().first <= target) {
      publish.push_back(std::move(unpublished_.front().second));
      unpublished_.pop_front();
    }
    while (!deferred_.empty() && deferred_.front().first <= target) {
      freed.insert(freed.end(), deferred_.front().second.begin(), deferred_.front().second.end());
      deferred_.pop_front();
    }
  }
  durable_commits_ = target;
  if (!publish.empty()) durable_seq_ = publish.back().seq;
  for (const Op& op : publish) {
    if (listener_) listener_(op, /*local=*/true);
  }
  return FreeChunks(freed);
}

void FileServer::FlushLoop() {
  std::unique_lock lock(op_mu_);
  for (;;) {
    flusher_idle_ = true;
    flush_cv_.wait(lock, [&] { return stop_ || commits_ > durable_commits_.load(); });
    flusher_idle_ = false;
    if (stop_) return;
    // Gather what commits in the next moment into the same sync (commits
    // meanwhile do not wake us: see NotifyFlusherLocked).
    flush_cv_.wait_for(lock, options_.flush_delay, [&] { return stop_; });
    lock.unlock();
    Status s = Flush();
    lock.lock();
    // A failing disk: the next commit or the next second tries again; the
    // ops stay committed locally and unpublished meanwhile.
    if (!s.ok()) flush_cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stop_; });
  }
}

Status FileServer::CheckKey() {
  std::string want = ToHex(ByteSpan(crypto_.key_check()));
  DFS_ASSIGN_OR_RETURN(std::optional<Bytes> have, index_->GetMeta(kKeyCheck));
  if (!have.has_value()) return index_->SetMeta(kKeyCheck, AsBytes(want));
  if (AsString(*have) != want) {
    return Status::WrongKey(fmt::format(
        "the volume key does not match this data directory (key check {}, directory expects {})",
        want, AsString(*have)));
  }
  return Status::Ok();
}

Status FileServer::FinishPendingFrees() {
  for (;;) {
    DFS_ASSIGN_OR_RETURN(std::vector<ChunkId> ids, index_->PendingFree(1024));
    if (ids.empty()) return Status::Ok();
    DFS_RETURN_IF_ERROR(RemoveIfUnused(ids));
    DFS_RETURN_IF_ERROR(index_->ClearPendingFree(ids));
  }
}

Status FileServer::SweepOrphans() {
  // After an unclean shutdown, chunks written by an interrupted Store are on
  // disk without a reference. Collect in bounded batches, then remove.
  for (;;) {
    std::vector<ChunkId> orphans;
    Status lookup = Status::Ok();
    DFS_RETURN_IF_ERROR(store_->ForEach([&](const ChunkId& id, std::uint64_t) {
      Result<bool> ref = index_->IsReferenced(id);
      if (!ref.ok()) {
        lookup = ref.status();
        return false;
      }
      if (!*ref) orphans.push_back(id);
      return orphans.size() < 4096;
    }));
    DFS_RETURN_IF_ERROR(lookup);
    if (orphans.empty()) return store_->Sync();
    DFS_RETURN_IF_ERROR(RemoveIfUnused(orphans));
    if (orphans.size() < 4096) return store_->Sync();
  }
}

void FileServer::Pin(const ChunkId& id) {
  std::lock_guard lock(gc_mu_);
  ++pinned_[id];
}

void FileServer::Unpin(const std::vector<ChunkId>& ids) {
  std::lock_guard lock(gc_mu_);
  for (const ChunkId& id : ids) {
    auto it = pinned_.find(id);
    if (it != pinned_.end() && --it->second == 0) pinned_.erase(it);
  }
}

Status FileServer::RemoveIfUnused(const std::vector<ChunkId>& ids) {
  for (const ChunkId& id : ids) {
    // Holding gc_mu_ across the check and the removal orders us with Pin():
    // a Store that pins after this point finds the chunk gone and rewrites it.
    std::lock_guard lock(gc_mu_);
    DFS_ASSIGN_OR_RETURN(bool in_use, InUseLocked(id));
    if (in_use) continue;
    Status s = store_->Remove(id);
    if (!s.ok() && s.code() != ErrorCode::kNotFound) return s;
  }
  return store_->Sync();
}

Result<bool> FileServer::InUseLocked(const ChunkId& id) {
  if (pinned_.count(id) > 0) return true;
  return index_->IsReferenced(id);
}

Result<std::vector<bool>> FileServer::InUse(const std::vector<ChunkId>& ids) {
  std::vector<bool> out(ids.size());
  std::lock_guard lock(gc_mu_);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    DFS_ASSIGN_OR_RETURN(bool in_use, InUseLocked(ids[i]));
    out[i] = in_use;
  }
  return out;
}

Result<std::vector<bool>> FileServer::CollectUnused(const std::vector<ChunkId>& ids,
                                                    std::chrono::system_clock::time_point cutoff) {
  std::vector<bool> removed(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) {
    std::lock_guard lock(gc_mu_);
    DFS_ASSIGN_OR_RETURN(bool in_use, InUseLocked(ids[i]));
    if (in_use) continue;
    Result<bool> r = store_->RemoveIfStoredBefore(ids[i], cutoff);
    if (!r.ok() && r.status().code() != ErrorCode::kNotFound) return r.status();
    removed[i] = r.ok() && *r;
  }
  DFS_RETURN_IF_ERROR(store_->Sync());
  return removed;
}

Status FileServer::StoreChunks(Reader& reader, std::string_view what, const ProgressFn& progress,
                               Inlining inlining, Manifest* manifest, std::vector<ChunkId>* pinned,
                               std::vector<ChunkId>* written) {
  ChunkStream stream(chunker_, reader);
  std::deque<std::shared_ptr<Job>> window;
  std::vector<std::shared_ptr<Job>> spare;
  Status failed = Status::Ok();

  auto collect = [&](Job& job) {
    job.Wait();
    if (job.pinned) pinned->push_back(job.ref.id);
    if (!job.status.ok()) {
      if (failed.ok()) failed = job.status;
      return;
    }
    manifest->chunks.push_back(job.ref);
    manifest->size += job.ref.size;
    if (job.newly_written) written->push_back(job.ref.id);
    if (progress) progress(manifest->size);
  };
  auto retire_front = [&] {
    std::shared_ptr<Job> job = std::move(window.front());
    window.pop_front();
    collect(*job);
    spare.push_back(std::move(job));
  };

  for (;;) {
    // Read the next chunk before waiting for the oldest: the read overlaps
    // the workers (depth + 1 input buffers).
    std::shared_ptr<Job> job = TakeJob(spare);
    Result<bool> more = stream.NextInto(&job->input);
    if (!more.ok()) {
      failed = more.status().WithContext(what);
      break;
    }
    if (!*more) break;
    if (window.size() >= options_.pipeline_depth) retire_front();
    if (!failed.ok()) break;
    job->ref.size = static_cast<std::uint32_t>(job->input.size());
    auto work = [this, job] {
      // Pin before looking: a concurrent delete then cannot remove the chunk
      // between our Has() and the commit that references it.
      job->ref.id = crypto_.ComputeId(job->input);
      Pin(job->ref.id);
      job->pinned = true;
      Result<bool> has = store_->HasAsPut(job->ref.id);
      if (!has.ok()) return job->Finish(has.status());
      if (*has) return job->Finish(Status::Ok());
      // Sealed straight into the store's write buffer when it lends one.
      MutableByteSpan out = store_->PutBuffer(job->input.size() + VolumeCrypto::kOverhead);
      if (!out.empty()) {
        crypto_.SealInto(job->ref.id, job->input, out);
      } else {
        crypto_.Seal(job->ref.id, job->input, &job->sealed);
        out = job->sealed;
      }
      Status s = store_->Put(job->ref.id, out);
      job->newly_written = s.ok();
      job->Finish(std::move(s));
    };
    window.push_back(job);
    // A stream of one chunk (a small file) is done on this thread: a hand-off
    // to a worker and back would cost more than the work. A small enough
    // whole file is sealed into the manifest itself.
    if (window.size() == 1 && stream.done()) {
      if (inlining == Inlining::kWholeFile && job->input.size() <= Manifest::kMaxInlineSize) {
        job->ref.id = crypto_.ComputeId(job->input);
        crypto_.Seal(job->ref.id, job->input, &manifest->inline_sealed);
        job->Finish(Status::Ok());
      } else {
        work();
      }
    } else {
      pool_.Submit(std::move(work));
    }
  }
  while (!window.empty()) retire_front();
  // No Sync here: the chunks become durable in the Flush that makes the
  // commit naming them durable (fsync, put, or the flusher a moment later).
  return failed;
}

Status FileServer::Store(std::string_view key, Reader& reader, const ProgressFn& progress) {
  ScopedOpTimer timer(&store_metric_);
  DFS_RETURN_IF_ERROR(ValidateKey(key));
  Manifest manifest;
  std::vector<ChunkId> pinned;
  std::vector<ChunkId> written;
  Status failed = StoreChunks(reader, fmt::format("store '{}'", key), progress,
                              Inlining::kWholeFile, &manifest,
                              &pinned, &written);
  if (failed.ok()) failed = CommitPath(key, manifest);
  Unpin(pinned);
  if (!failed.ok()) {
    (void)RemoveIfUnused(written);  // best effort; the next unclean open sweeps the rest
    return failed.WithContext(fmt::format("store '{}'", key));
  }
  return Flush();  // durable and on its way to peers when we return
}

Status FileServer::FreeChunks(const std::vector<ChunkId>& freed) {
  if (freed.empty()) return Status::Ok();
  DFS_RETURN_IF_ERROR(RemoveIfUnused(freed));
  return index_->ClearPendingFree(freed);
}

FileServer::ChunkPins::~ChunkPins() {
  fs_->Unpin(ids_);
  if (!committed_) (void)fs_->RemoveIfUnused(written_);
}

void FileServer::PinContent(const Manifest& manifest, ChunkPins* pins) {
  pins->committed_ = true;  // nothing of ours to remove on release
  if (manifest.is_inline()) return;  // no stored chunk to keep
  for (const ChunkRef& ref : manifest.chunks) {
    if (ref.IsHole()) continue;
    Pin(ref.id);
    pins->ids_.push_back(ref.id);
  }
}

Result<Manifest> FileServer::StoreData(Reader& reader, ChunkPins* pins, Inlining inlining) {
  Manifest manifest;
  DFS_RETURN_IF_ERROR(StoreChunks(reader, "write", {}, inlining, &manifest, &pins->ids_,
                                  &pins->written_));
  return manifest;
}

Status FileServer::CommitOpLocked(Op::Kind kind, std::string key, Bytes value) {
  if (next_seq_ == 0) {
    DFS_ASSIGN_OR_RETURN(VersionVector v, index_->Vector());
    next_seq_ = v.Get(node_id_) + 1;
  }
  Op op;
  op.time = clock_.Now();
  op.origin = node_id_;
  op.seq = next_seq_;
  op.kind = kind;
  op.key = std::move(key);
  op.value = std::move(value);
  // A change too large to travel to peers is refused, not made here alone.
  // (Only ops near the limit pay for an encoding to measure.)
  if (op.value.size() + op.key.size() + 4096 > options_.max_op_bytes &&
      op.Encode().size() > options_.max_op_bytes) {
    return Status::FileTooLarge(fmt::format(
        "the change is {} bytes as an op, more than the {} that one op may be",
        op.Encode().size(), options_.max_op_bytes));
  }
  std::vector<ChunkId> freed;
  DFS_ASSIGN_OR_RETURN(bool applied, index_->ApplyOp(op, &freed, [](const ChunkRef& ref) {
    return static_cast<std::uint64_t>(ref.size) + VolumeCrypto::kOverhead;
  }));
  if (!applied) return Status::Io("local op was already in the log (node id reused?)");
  ++next_seq_;
  unpublished_.emplace_back(++commits_, std::move(op));
  DeferFreeLocked(std::move(freed));
  NotifyFlusherLocked();
  return Status::Ok();
}

Result<bool> FileServer::ApplyRemoteOp(const Op& op) {
  std::vector<ChunkId> freed;
  {
    std::lock_guard lock(op_mu_);
    DFS_ASSIGN_OR_RETURN(bool applied, index_->ApplyOp(op, &freed, [](const ChunkRef& ref) {
      return static_cast<std::uint64_t>(ref.size) + VolumeCrypto::kOverhead;
    }));
    if (!applied) return false;
    // Our own op given back (this node lost part of its log): never reuse its number.
    if (op.origin == node_id_ && next_seq_ != 0 && op.seq >= next_seq_) next_seq_ = op.seq + 1;
    // A time far ahead of our clock is applied (convergence needs every op)
    // but not followed; Observe refuses it.
    (void)clock_.Observe(op.time);
    if (listener_) listener_(op, /*local=*/false);
    ++commits_;
    DeferFreeLocked(std::move(freed));
    NotifyFlusherLocked();
  }
  return true;
}

void FileServer::NotifyFlusherLocked() {
  if (flusher_idle_) flush_cv_.notify_one();  // a wake-up per commit costs two context switches
}

void FileServer::DeferFreeLocked(std::vector<ChunkId> freed) {
  if (!freed.empty()) deferred_.emplace_back(commits_, std::move(freed));
}

Status FileServer::FetchChunk(const FileRecord& rec, std::size_t i, Bytes* sealed, Bytes* out) {
  return FetchChunk(rec.manifest, i, rec.key, sealed, out);
}

Status FileServer::FetchChunk(const Manifest& manifest, std::size_t i, std::string_view name,
                              Bytes* sealed, Bytes* out, ChunkStore::ReadHint hint) {
  if (manifest.is_inline()) {
    const ChunkRef& ref = manifest.chunks[i];
    Status s = crypto_.Unseal(ref.id, manifest.inline_sealed, out);
    if (s.ok() && out->size() != ref.size) {
      s = Status::Corrupt(fmt::format("inline chunk holds {} bytes, the manifest says {}",
                                      out->size(), ref.size));
    }
    if (!s.ok()) return s.WithContext(fmt::format("'{}' inline content", name));
    return s;
  }
  return FetchRef(manifest.chunks[i],
                  fmt::format("'{}' chunk {} of {}", name, i + 1, manifest.chunks.size()), sealed,
                  out, hint);
}

Status FileServer::FetchRef(const ChunkRef& ref, const std::string& place, Bytes* sealed,
                            Bytes* out, ChunkStore::ReadHint hint) {
  if (ref.IsHole()) {
    out->assign(ref.size, 0);
    return Status::Ok();
  }
  // Store and crypto errors name the chunk id; this adds the file and place.
  auto where = [&] { return place; };
  // The GCM tag authenticates every byte; the store's checksum would be a
  // second pass over the same bytes. Opened where the store holds it.
  Status opened = Status::Ok();
  Status s = store_->View(ref.id, ChunkStore::ReadCheck::kCallerAuthenticates, hint, sealed,
                          [&](ByteSpan bytes) {
                            opened = crypto_.Unseal(ref.id, bytes, out);
                            return Status::Ok();
                          });
  if (s.code() == ErrorCode::kNotFound) {
    return Status::Corrupt(
        fmt::format("{}: chunk {} is missing from the chunk store", where(), ref.id.ToHex()));
  }
  if (!s.ok()) return s.WithContext(where());
  s = opened;
  if (s.code() == ErrorCode::kCorrupt || s.code() == ErrorCode::kWrongKey) {
    // A bad copy. Ask again with every check on: a replicated store then
    // verifies each copy it considers and can fall back to a good one.
    if (store_->Get(ref.id, sealed, ChunkStore::ReadCheck::kChecksum).ok()) {
      s = crypto_.Unseal(ref.id, *sealed, out);
    }
  }
  if (!s.ok()) return s.WithContext(where());
  if (out->size() != ref.size) {
    std::size_t got = out->size();
    out->clear();
    return Status::Corrupt(fmt::format("{}: chunk {} holds {} bytes, the manifest says {}",
                                       where(), ref.id.ToHex(), got, ref.size));
  }
  return Status::Ok();
}

Status FileServer::Get(std::string_view key, Writer& writer, const ProgressFn& progress) {
  ScopedOpTimer timer(&get_metric_);
  DFS_ASSIGN_OR_RETURN(FileRecord rec, LookupExisting(key));
  auto shared = std::make_shared<FileRecord>(std::move(rec));
  std::deque<std::shared_ptr<Job>> window;
  std::vector<std::shared_ptr<Job>> spare;
  std::uint64_t done = 0;
  Status failed = Status::Ok();
  std::size_t next = 0;
  const std::size_t n = shared->manifest.chunks.size();

  while ((next < n && failed.ok()) || !window.empty()) {
    while (next < n && failed.ok() && window.size() < options_.pipeline_depth) {
      std::shared_ptr<Job> job = TakeJob(spare);
      std::size_t i = next++;
      pool_.Submit([this, job, shared, i] {
        job->Finish(FetchChunk(*shared, i, &job->sealed, &job->plain));
      });
      window.push_back(std::move(job));
    }
    std::shared_ptr<Job> job = std::move(window.front());
    window.pop_front();
    job->Wait();
    if (failed.ok()) {
      if (!job->status.ok()) {
        failed = job->status;
      } else {
        failed = writer.Write(job->plain);
        done += job->plain.size();
        if (failed.ok() && progress) progress(done);
      }
    }
    spare.push_back(std::move(job));
  }
  return failed;
}

Result<std::size_t> FileServer::ReadAt(std::string_view key, std::uint64_t offset,
                                       MutableByteSpan buf) {
  DFS_ASSIGN_OR_RETURN(FileRecord rec, LookupExisting(key));
  return ReadContent(rec.manifest, offset, buf);
}

// A chunk read ahead of a sequential reader, on the worker pool.
struct FileServer::ReadCursor::Ahead {
  std::size_t index = 0;
  ChunkId id;
  Job job;
};

FileServer::ReadCursor::~ReadCursor() {
  for (auto& a : ahead) a->job.Wait();  // the workers write into them
}

Result<std::size_t> FileServer::ReadContent(const Manifest& manifest, std::uint64_t offset,
                                            MutableByteSpan buf, ReadCursor* cursor) {
  ReadCursor local;
  if (cursor == nullptr) cursor = &local;
  auto [i, start] = manifest.Locate(offset);
  std::size_t copied = 0;
  while (copied < buf.size() && i < manifest.chunks.size()) {
    const ChunkRef& ref = manifest.chunks[i];
    std::uint64_t in_chunk = offset + copied - start;
    std::size_t n = std::min<std::uint64_t>(buf.size() - copied, ref.size - in_chunk);
    if (ref.IsHole()) {
      std::memset(buf.data() + copied, 0, n);
    } else if (cursor->index != i || cursor->id != ref.id) {
      bool sequential = cursor->index != SIZE_MAX && i == cursor->index + 1;
      cursor->index = SIZE_MAX;
      // Drop what was read ahead for chunks before this one (or for another manifest).
      auto stale = [&](const ReadCursor::Ahead& a) {
        return a.index < i || a.index >= manifest.chunks.size() ||
               a.id != manifest.chunks[a.index].id;
      };
      while (!cursor->ahead.empty() && stale(*cursor->ahead.front())) {
        cursor->ahead.front()->job.Wait();
        cursor->ahead.pop_front();
      }
      if (!cursor->ahead.empty() && cursor->ahead.front()->index == i) {
        std::shared_ptr<ReadCursor::Ahead> a = std::move(cursor->ahead.front());
        cursor->ahead.pop_front();
        a->job.Wait();
        DFS_RETURN_IF_ERROR(a->job.status);
        std::swap(cursor->plain, a->job.plain);
        cursor->spare.push_back(std::move(a));
      } else {
        // Random access keeps its chunks in the page cache; a sequential
        // reader's go past it (what it reads again is in the mount's pages).
        DFS_RETURN_IF_ERROR(FetchChunk(manifest, i, "file", &cursor->sealed, &cursor->plain,
                                       sequential ? ChunkStore::ReadHint::kStreaming
                                                  : ChunkStore::ReadHint::kReused));
      }
      cursor->index = i;
      cursor->id = ref.id;
      if (sequential) {
        // Keep the next chunks coming while the reader copies this one.
        std::size_t next = cursor->ahead.empty() ? i + 1 : cursor->ahead.back()->index + 1;
        for (; next < manifest.chunks.size() && next <= i + kReadAhead; ++next) {
          std::shared_ptr<ReadCursor::Ahead> a;
          if (cursor->spare.empty()) {
            a = std::make_shared<ReadCursor::Ahead>();
          } else {
            a = std::move(cursor->spare.back());
            cursor->spare.pop_back();
            a->job.Reset();
          }
          a->index = next;
          a->id = manifest.chunks[next].id;
          ChunkRef r = manifest.chunks[next];
          pool_.Submit([this, a, r] {
            a->job.Finish(FetchRef(r, fmt::format("file chunk {}", a->index + 1), &a->job.sealed,
                                   &a->job.plain, ChunkStore::ReadHint::kStreaming));
          });
          cursor->ahead.push_back(std::move(a));
        }
      }
    }
    if (!ref.IsHole()) std::memcpy(buf.data() + copied, cursor->plain.data() + in_chunk, n);
    copied += n;
    start += ref.size;
    ++i;
  }
  return copied;
}

Result<FileInfo> FileServer::Stat(std::string_view key) {
  DFS_ASSIGN_OR_RETURN(FileRecord rec, LookupExisting(key));
  FileInfo info;
  info.key = rec.key;
  info.size = rec.manifest.size;
  info.chunks = rec.manifest.chunks.size();
  info.mtime_ns = rec.mtime_ns;
  DFS_ASSIGN_OR_RETURN(info.stored_bytes, index_->StoredBytes(rec.manifest));
  return info;
}

}  // namespace dfs::core
