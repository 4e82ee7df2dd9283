// DiskChunkStore: one file per chunk at ROOT/ab/cd/<64 hex>, chunk file v1
// (docs/format.md, "Chunk file"). Put, Get, Remove and ForEach do their
// file I/O outside every lock; mu_ guards only the pending-sync sets and the
// usage counters. Sync() and the first Usage() scan are each serialized with
// themselves.
#include "core/disk_chunk_store.h"
#include "core/io.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>  // renameat2, RENAME_NOREPLACE
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <algorithm>
#include <cstdlib>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "core/chunk_file.h"
#include "core/encoding.h"

namespace dfs::core {
namespace {

namespace fs = std::filesystem;

using namespace chunk_file;  // the record format and its file helpers (core/chunk_file.h)

// Temporary file names are unique per process across all store instances.
std::atomic<std::uint64_t> g_tmp_counter{0};

}  // namespace

class DiskChunkStore::Impl {
 public:
  explicit Impl(fs::path root) : root_(std::move(root)), tmp_(root_ / "tmp") {}

  fs::path PathFor(const std::string& hex) const {
    return root_ / hex.substr(0, 2) / hex.substr(2, 2) / hex;
  }

  Status Open() {
    if (root_.has_parent_path()) {
      std::error_code ec;
      fs::create_directories(root_.parent_path(), ec);
      if (ec) return ErrnoStatus(ec.value(), "create directory " + root_.parent_path().string());
    }
    bool created = false;
    DFS_RETURN_IF_ERROR(MakeDir(root_, &created));
    struct stat st {};
    if (::stat(root_.c_str(), &st) != 0) return ErrnoStatus(errno, "stat " + root_.string());
    if (!S_ISDIR(st.st_mode)) return ErrnoStatus(ENOTDIR, "chunk store " + root_.string());
    DFS_RETURN_IF_ERROR(MakeDir(tmp_, &created));
    // Partial chunks from an interrupted Put are never visible: remove them.
    Dir d(tmp_);
    if (!d.ok()) return ErrnoStatus(errno, "open " + tmp_.string());
    int err = 0;
    while (const dirent* e = d.Next(&err)) {
      if (::unlinkat(d.fd(), e->d_name, 0) != 0 && errno != ENOENT) {
        return ErrnoStatus(errno, fmt::format("remove leftover {}", (tmp_ / e->d_name).string()));
      }
    }
    if (err != 0) return ErrnoStatus(err, "read " + tmp_.string());
    return Status::Ok();
  }

  // Whether a chunk file of `payload` bytes is written and read with
  // O_DIRECT (large enough, not larger than the buffer, and allowed here).
  bool Direct(std::size_t payload) const {
    return payload >= kDirectMin && payload <= kDirectMax &&
           direct_.load(std::memory_order_relaxed);
  }

  // Lends the payload part of this thread's O_DIRECT buffer: a caller that
  // seals into it saves Put the copy.
  MutableByteSpan PutBuffer(std::size_t size) {
    if (!Direct(size)) return {};
    std::uint8_t* buf = DirectBuffer(Padded(kHeaderSize + size));
    if (buf == nullptr) return {};
    return {buf + kHeaderSize, size};
  }

  Status Put(const ChunkId& id, ByteSpan data) {
    if (data.size() > kMaxPayload) {
      return Status::InvalidArgument(fmt::format("chunk {}: {} bytes exceed the maximum of {}",
                                                 id.ToHex(), data.size(), kMaxPayload));
    }
    const std::string hex = id.ToHex();
    const fs::path final_path = PathFor(hex);
    std::uint8_t header[kHeaderSize];
    EncodeHeader(data, header);

    // Idempotent: an intact copy is kept as it is. A file at the path whose
    // header or size does not match (say, zero length after a power loss
    // hit a chunk renamed but never synced) is replaced.
    std::uint64_t damaged_payload = 0;
    DFS_ASSIGN_OR_RETURN(Existing existing,
                         CheckExisting(final_path, header, data.size(), &damaged_payload));
    if (existing == Existing::kIntact) {
      DFS_ASSIGN_OR_RETURN(bool held, Renew(id, final_path));
      if (held) {
        // It may have been written by a process that crashed before its
        // Sync: our caller's Sync makes it durable too.
        MarkPending(id, hex);
        return Status::Ok();
      }
      existing = Existing::kAbsent;  // collected just now: written anew
    }

    const fs::path tmp = tmp_ / fmt::format("{}.{}.{}", hex, ::getpid(), g_tmp_counter++);
    const bool direct = Direct(data.size());
    UniqueFd f(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | (direct ? O_DIRECT : 0),
                      0600));
    if (!f.valid() && direct && errno == EINVAL) {  // a filesystem without O_DIRECT (tmpfs)
      direct_.store(false, std::memory_order_relaxed);
      f = UniqueFd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    }
    if (!f.valid()) return ErrnoStatus(errno, "create " + tmp.string());
    // From here on every failure removes the temporary file.
    auto fail = [&](Status s) {
      ::unlink(tmp.c_str());
      return s;
    };
    if (int err = WriteChunkFile(f.get(), header, data); err != 0) {
      return fail(ErrnoStatus(err, "write " + tmp.string()));
    }
    if (const std::array<timespec, 2> now = PreciseNow(); ::futimens(f.get(), now.data()) != 0) {
      return fail(ErrnoStatus(errno, "set the time of " + tmp.string()));
    }
    if (int err = f.Close(); err != 0) return fail(ErrnoStatus(err, "close " + tmp.string()));

    if (Status s = EnsureShard(id, hex); !s.ok()) return fail(std::move(s));

    if (existing == Existing::kAbsent) {
      // No-replace rename: of two concurrent Puts of one id exactly one
      // installs its file, so the usage counters count the chunk once.
      if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_path.c_str(), RENAME_NOREPLACE) == 0) {
        Installed(id, hex, data.size(), /*replaced=*/false, /*old_size=*/0);
        return Status::Ok();
      }
      if (errno == EEXIST) {  // a concurrent Put of the same id won
        Result<bool> held = Renew(id, final_path);
        if (held.ok() && !*held &&
            ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_path.c_str(), RENAME_NOREPLACE) ==
                0) {  // and was collected since: ours goes in
          Installed(id, hex, data.size(), /*replaced=*/false, /*old_size=*/0);
          return Status::Ok();
        }
        ::unlink(tmp.c_str());
        if (!held.ok()) return held.status();
        MarkPending(id, hex);
        return Status::Ok();
      }
      if (errno != EINVAL && errno != ENOSYS) {
        return fail(ErrnoStatus(errno, "rename into " + final_path.string()));
      }
      // The filesystem has no RENAME_NOREPLACE: plain rename below (a race
      // of two Puts of one id may then count it twice in Usage()).
    }
    if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
      return fail(ErrnoStatus(errno, "rename into " + final_path.string()));
    }
    Installed(id, hex, data.size(), existing == Existing::kDamaged, damaged_payload);
    return Status::Ok();
  }

  // Writes header and payload to the new file `fd`. Opened with O_DIRECT,
  // the whole blocks go from an aligned per-thread buffer straight to the
  // device and only the last partial block through the page cache: no copy
  // of the bulk into the page cache,
  // which costs more CPU than sealing on some machines. Otherwise buffered,
  // with writeback started at once. Durability is Sync()'s either way.
  // Returns 0 or the errno.
  int WriteChunkFile(int fd, const std::uint8_t* header, ByteSpan data) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0 && (flags & O_DIRECT) != 0) {
      const std::size_t total = kHeaderSize + data.size();
      const std::size_t whole = total / kDirectAlign * kDirectAlign;
      // The same buffer PutBuffer lent for this size (no reallocation).
      std::uint8_t* buf = DirectBuffer(Padded(total));
      if (buf != nullptr && whole > 0) {
        std::memcpy(buf, header, kHeaderSize);
        if (!data.empty() && data.data() != buf + kHeaderSize) {
          std::memcpy(buf + kHeaderSize, data.data(), data.size());
        }
        iovec iov{buf, whole};
        int err = WriteFully(fd, &iov, 1);
        if (err == 0) {
          // The last partial block through the page cache: the file is
          // exactly its size without an ftruncate (which costs more).
          if (total == whole) return 0;
          if (::fcntl(fd, F_SETFL, flags & ~O_DIRECT) != 0) return errno;
          iovec tail{buf + whole, total - whole};
          return WriteFully(fd, &tail, 1);
        }
        if (err != EINVAL) return err;
        // The device wants another alignment: buffered from the start.
        direct_.store(false, std::memory_order_relaxed);
      }
      if (::fcntl(fd, F_SETFL, flags & ~O_DIRECT) != 0 || ::ftruncate(fd, 0) != 0 ||
          ::lseek(fd, 0, SEEK_SET) != 0) {
        return errno;
      }
    }
    iovec iov[2] = {{const_cast<std::uint8_t*>(header), kHeaderSize},
                    {const_cast<std::uint8_t*>(data.data()), data.size()}};
    if (int err = WriteFully(fd, iov, data.empty() ? 1 : 2); err != 0) return err;
    (void)::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    return 0;
  }

  // A small chunk is read straight into `*out` (header and payload in one
  // preadv); a large one is read direct and copied out of the aligned buffer.
  Status Get(const ChunkId& id, Bytes* out, ReadCheck check) {
    return View(id, check, ReadHint::kStreaming, out, [&](ByteSpan payload) {
      if (payload.data() != out->data()) out->assign(payload.begin(), payload.end());
      return Status::Ok();
    });
  }

  Status View(const ChunkId& id, ReadCheck check, ReadHint hint, Bytes* scratch,
              const std::function<Status(ByteSpan)>& use) {
    ByteSpan payload;
    Status s = GetImpl(id, scratch, check, hint, &payload);
    if (!s.ok()) {
      scratch->clear();
      return s;
    }
    return use(payload);
  }

  Result<bool> Has(const ChunkId& id) {
    const fs::path path = PathFor(id.ToHex());
    if (::access(path.c_str(), F_OK) == 0) return true;
    if (errno == ENOENT) return false;
    return ErrnoStatus(errno, "stat chunk " + path.string());
  }

  Status Remove(const ChunkId& id) {
    return RemoveIf(id, [](const struct stat&) { return true; }).status();
  }

  Result<ChunkStat> Stat(const ChunkId& id) {
    const std::string hex = id.ToHex();
    const fs::path path = PathFor(hex);
    UniqueFd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    struct stat st {};
    if (!f.valid() || ::fstat(f.get(), &st) != 0) {
      if (errno == ENOENT) return Status::NotFound(fmt::format("chunk {} not found", hex));
      return ErrnoStatus(errno, "stat chunk " + path.string());
    }
    ChunkStat out;
    out.size = PayloadSizeOf(static_cast<std::uint64_t>(st.st_size));
    out.stored = StoredTime(st);
    ssize_t n = ::pread(f.get(), out.head.data(), out.head.size(), kHeaderSize);
    if (n < 0) return ErrnoStatus(errno, "read chunk " + path.string());
    std::fill(out.head.begin() + n, out.head.end(), 0);
    return out;
  }

  Result<bool> RemoveIfStoredBefore(const ChunkId& id, std::chrono::system_clock::time_point cutoff) {
    return RemoveIf(id, [&](const struct stat& st) { return StoredTime(st) < cutoff; });
  }

  // A chunk's last Put time is its file's mtime: set when it is written,
  // renewed (Renew) by a Put that finds it held. Set from the precise clock:
  // the kernel's own timestamps come from a coarse one (a tick behind), and
  // a Put just after a collection's cutoff must not look older than it.
  static std::array<timespec, 2> PreciseNow() {
    timespec t{};
    ::clock_gettime(CLOCK_REALTIME, &t);
    return {t, t};
  }

  static std::chrono::system_clock::time_point StoredTime(const struct stat& st) {
    return std::chrono::system_clock::time_point(std::chrono::duration_cast<
        std::chrono::system_clock::duration>(std::chrono::seconds(st.st_mtim.tv_sec) +
                                             std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
  }

  // Renews the Put time of the chunk at `path`; false when it is gone (a
  // collection removed it). Under the id's lock, so that a conditional
  // removal sees either the old time and removes, or the new one and keeps.
  Result<bool> Renew(const ChunkId& id, const fs::path& path) {
    std::lock_guard lock(IdLock(id));
    const std::array<timespec, 2> now = PreciseNow();
    if (::utimensat(AT_FDCWD, path.c_str(), now.data(), AT_SYMLINK_NOFOLLOW) == 0) return true;
    if (errno == ENOENT) return false;
    return ErrnoStatus(errno, "renew chunk " + path.string());
  }

  // Removes the chunk if `remove(its stat)` says so; whether it did.
  template <typename Pred>
  Result<bool> RemoveIf(const ChunkId& id, Pred remove) {
    const std::string hex = id.ToHex();
    const fs::path path = PathFor(hex);
    struct stat st {};
    {
      std::lock_guard lock(IdLock(id));
      // Missing at the stat: NotFound, without an unlink that could remove a
      // copy a concurrent Put installs in between (and that we did not count).
      if (::stat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) return Status::NotFound(fmt::format("chunk {} not found", hex));
        return ErrnoStatus(errno, "stat chunk " + path.string());
      }
      if (!remove(st)) return false;
      if (::unlink(path.c_str()) != 0) {
        if (errno == ENOENT) return Status::NotFound(fmt::format("chunk {} not found", hex));
        return ErrnoStatus(errno, "remove chunk " + path.string());
      }
    }
    std::lock_guard lock(mu_);
    dirty_dirs_.insert(path.parent_path());
    chunks_delta_ -= 1;
    bytes_delta_ -=
        static_cast<std::int64_t>(PayloadSizeOf(static_cast<std::uint64_t>(st.st_size)));
    return true;
  }

  std::mutex& IdLock(const ChunkId& id) { return id_locks_[id.bytes()[0] % id_locks_.size()]; }

  // Walks ROOT/??/??/ one directory at a time: memory is three DIR streams,
  // whatever the number of chunks. Names that are not two lowercase hex
  // digits, or not a ChunkId whose hex starts with its shard's, are skipped.
  Status ForEach(const std::function<bool(const ChunkId&, std::uint64_t)>& fn) {
    Dir d1(root_);
    if (!d1.ok()) return ErrnoStatus(errno, "open " + root_.string());
    int err = 0;
    bool go = true;
    while (go) {
      const dirent* e1 = d1.Next(&err);
      if (e1 == nullptr) break;
      if (!IsHexByteName(e1->d_name)) continue;  // "tmp", junk
      const fs::path p1 = root_ / e1->d_name;
      Dir d2(p1);
      if (!d2.ok()) {
        if (errno == ENOENT || errno == ENOTDIR) continue;  // removed, or a junk file
        return ErrnoStatus(errno, "open " + p1.string());
      }
      while (go) {
        const dirent* e2 = d2.Next(&err);
        if (e2 == nullptr) break;
        if (!IsHexByteName(e2->d_name)) continue;
        const fs::path p2 = p1 / e2->d_name;
        Dir d3(p2);
        if (!d3.ok()) {
          if (errno == ENOENT || errno == ENOTDIR) continue;
          return ErrnoStatus(errno, "open " + p2.string());
        }
        const char prefix[4] = {e1->d_name[0], e1->d_name[1], e2->d_name[0], e2->d_name[1]};
        while (go) {
          const dirent* e3 = d3.Next(&err);
          if (e3 == nullptr) break;
          Result<ChunkId> chunk = ChunkId::FromHex(e3->d_name);
          if (!chunk.ok() || std::memcmp(e3->d_name, prefix, 4) != 0) continue;
          struct stat st {};
          if (::fstatat(d3.fd(), e3->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) continue;  // removed during the walk
            return ErrnoStatus(errno, "stat " + (p2 / e3->d_name).string());
          }
          if (!S_ISREG(st.st_mode)) continue;
          go = fn(*chunk, PayloadSizeOf(static_cast<std::uint64_t>(st.st_size)));
        }
        if (err != 0) return ErrnoStatus(err, "read " + p2.string());
      }
      if (err != 0) return ErrnoStatus(err, "read " + p1.string());
    }
    if (err != 0) return ErrnoStatus(err, "read " + root_.string());
    return Status::Ok();
  }

  // Put and Remove keep signed deltas from the moment the store was opened;
  // the first call scans the store once (ForEach) and fixes the base as the
  // scan's totals minus the deltas so far. After that, Usage() is O(1) and
  // exact. A Put or Remove that overlaps that first scan may be counted twice
  // or missed (the scan may or may not have seen its file); nothing else is.
  Result<StoreUsage> Usage() {
    {
      std::lock_guard lock(mu_);
      if (usage_known_) return UsageLocked();
    }
    std::lock_guard scan(scan_mu_);
    {
      std::lock_guard lock(mu_);
      if (usage_known_) return UsageLocked();  // another thread scanned meanwhile
    }
    std::int64_t chunks = 0, bytes = 0;
    DFS_RETURN_IF_ERROR(ForEach([&](const ChunkId&, std::uint64_t size) {
      ++chunks;
      bytes += static_cast<std::int64_t>(size);
      return true;
    }));
    std::lock_guard lock(mu_);
    // Changes made during the scan are taken as seen by it.
    chunks_base_ = chunks - chunks_delta_;
    bytes_base_ = bytes - bytes_delta_;
    usage_known_ = true;
    return UsageLocked();
  }

  // One Sync at a time (sync_mu_): a second caller must not return while
  // the first is still syncing what the second's Puts left pending. Put,
  // Get and Remove never wait for it.
  Status Sync() {
    std::lock_guard one_at_a_time(sync_mu_);
    std::vector<ChunkId> files;
    bool all = false;
    std::set<fs::path> dirs;
    {
      std::lock_guard lock(mu_);
      files.swap(pending_files_);
      std::swap(all, pending_syncfs_);
      dirs.swap(dirty_dirs_);
    }
    Status s = SyncNow(files, all, dirs);
    if (!s.ok()) {  // keep it all pending for the next Sync
      std::lock_guard lock(mu_);
      for (const ChunkId& id : files) AddPendingFileLocked(id);
      pending_syncfs_ = pending_syncfs_ || all;
      dirty_dirs_.merge(dirs);
    }
    return s;
  }

 private:
  enum class Existing { kAbsent, kIntact, kDamaged };

  // Whether an intact copy of the chunk whose header is `header` is at
  // `path`: exact size and identical header bytes.
  static Result<Existing> CheckExisting(const fs::path& path, const std::uint8_t* header,
                                        std::size_t size, std::uint64_t* damaged_payload) {
    UniqueFd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!f.valid()) {
      if (errno == ENOENT) return Existing::kAbsent;
      if (errno == ELOOP) return Existing::kDamaged;  // a symlink: replaced by the chunk
      return ErrnoStatus(errno, "open chunk " + path.string());
    }
    struct stat st {};
    if (::fstat(f.get(), &st) != 0) return ErrnoStatus(errno, "stat chunk " + path.string());
    if (!S_ISREG(st.st_mode)) return Existing::kDamaged;
    auto file_size = static_cast<std::uint64_t>(st.st_size);
    *damaged_payload = PayloadSizeOf(file_size);
    if (file_size != kHeaderSize + size) return Existing::kDamaged;
    std::uint8_t have[kHeaderSize];
    iovec iov{have, kHeaderSize};
    int err = ReadFully(f.get(), &iov, 1);
    if (err > 0) return ErrnoStatus(err, "read chunk " + path.string());
    if (err < 0 || std::memcmp(have, header, kHeaderSize) != 0) return Existing::kDamaged;
    return Existing::kIntact;
  }

  // Creates ROOT/ab and ROOT/ab/cd if this process has not seen them yet.
  // Until a shard is known, its parents are marked dirty, so that a Sync
  // after any Put into it also makes the shard's own directory entries
  // durable (whichever thread or process created them).
  Status EnsureShard(const ChunkId& id, const std::string& hex) {
    const std::size_t shard = std::size_t{id.bytes()[0]} << 8 | id.bytes()[1];
    if (known_shards_[shard].load(std::memory_order_acquire)) return Status::Ok();
    const fs::path level1 = root_ / hex.substr(0, 2);
    bool created = false;
    DFS_RETURN_IF_ERROR(MakeDir(level1, &created));
    DFS_RETURN_IF_ERROR(MakeDir(level1 / hex.substr(2, 2), &created));
    {
      std::lock_guard lock(mu_);
      dirty_dirs_.insert(root_);
      dirty_dirs_.insert(level1);
    }
    known_shards_[shard].store(true, std::memory_order_release);
    return Status::Ok();
  }

  // A chunk file is in place: its data and its directory await Sync.
  void MarkPending(const ChunkId& id, const std::string& hex) {
    // An intact chunk found in place: its shard exists, so EnsureShard only
    // marks the parents dirty (once) and cannot fail for want of space.
    (void)EnsureShard(id, hex);
    std::lock_guard lock(mu_);
    AddPendingFileLocked(id);
    dirty_dirs_.insert(root_ / hex.substr(0, 2) / hex.substr(2, 2));
  }

  void Installed(const ChunkId& id, const std::string& hex, std::uint64_t size, bool replaced,
                 std::uint64_t old_size) {
    std::lock_guard lock(mu_);
    AddPendingFileLocked(id);
    dirty_dirs_.insert(root_ / hex.substr(0, 2) / hex.substr(2, 2));
    if (!replaced) chunks_delta_ += 1;
    bytes_delta_ += static_cast<std::int64_t>(size) - static_cast<std::int64_t>(old_size);
  }

  StoreUsage UsageLocked() const {
    StoreUsage u;
    u.chunks = static_cast<std::uint64_t>(std::max<std::int64_t>(0, chunks_base_ + chunks_delta_));
    u.bytes = static_cast<std::uint64_t>(std::max<std::int64_t>(0, bytes_base_ + bytes_delta_));
    return u;
  }

  void AddPendingFileLocked(const ChunkId& id) {
    if (pending_syncfs_) return;
    if (pending_files_.size() >= kSyncfsThreshold) {
      pending_syncfs_ = true;
      pending_files_.clear();
      pending_files_.shrink_to_fit();
      return;
    }
    pending_files_.push_back(id);
  }

  Status SyncNow(const std::vector<ChunkId>& files, bool all, const std::set<fs::path>& dirs) {
    // Chunk data first. Many files: one syncfs() of the store's filesystem
    // costs one journal commit instead of one per file.
    if (all) {
      UniqueFd root(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!root.valid()) return ErrnoStatus(errno, "open " + root_.string());
      if (::syncfs(root.get()) != 0) return ErrnoStatus(errno, "syncfs " + root_.string());
    } else {
      for (const ChunkId& id : files) {
        const fs::path path = PathFor(id.ToHex());
        UniqueFd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!f.valid()) {
          if (errno == ENOENT) continue;  // removed since
          return ErrnoStatus(errno, "open " + path.string());
        }
        if (::fdatasync(f.get()) != 0) return ErrnoStatus(errno, "fsync " + path.string());
      }
    }
    // syncfs() wrote every dirty inode of the filesystem, directories
    // included, and committed the journal: nothing left to fsync.
    if (all) return Status::Ok();
    // Deepest first (ROOT/ab/cd sorts after ROOT/ab, which sorts after
    // ROOT), so a new shard directory is durable before its parent's entry.
    for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
      Status s = FsyncDir(*it);
      if (!s.ok() && s.code() != ErrorCode::kNotFound) return s;
    }
    return Status::Ok();
  }

  // A large chunk file read whole with O_DIRECT into this thread's aligned
  // buffer (the one PutBuffer lends; no Put is between its PutBuffer and Put
  // on a thread): no page cache fill and copy, which on this kind of VM cost
  // more CPU than the decryption. The mount's page cache holds the file's
  // plaintext anyway. nullptr: read it the buffered way (small, refused, or
  // the file changed size under us, which the buffered read reports).
  std::uint8_t* ReadDirect(int fd, std::uint64_t size) {
    if (!Direct(size - kHeaderSize)) return nullptr;
    std::uint8_t* buf = DirectBuffer(Padded(size));
    const int flags = ::fcntl(fd, F_GETFL);
    if (buf == nullptr || flags < 0 || ::fcntl(fd, F_SETFL, flags | O_DIRECT) != 0) return nullptr;
    std::uint64_t got = 0;
    while (got < size) {
      ssize_t r = ::pread(fd, buf + got, Padded(size) - got, static_cast<off_t>(got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += static_cast<std::uint64_t>(r);
      if (got % kDirectAlign != 0) break;  // the end of the file
    }
    if (got == size) return buf;
    (void)::fcntl(fd, F_SETFL, flags);  // the buffered read goes over it again
    return nullptr;
  }

  // Reads and checks the chunk; `*payload` is its payload: in `*out`, or in
  // this thread's direct-read buffer (valid until the thread's next read or
  // PutBuffer).
  Status GetImpl(const ChunkId& id, Bytes* out, ReadCheck check, ReadHint hint,
                 ByteSpan* payload) {
    const std::string hex = id.ToHex();
    const fs::path path = PathFor(hex);
    auto corrupt = [&](std::string_view what) {
      return Status::Corrupt(fmt::format("chunk {}: {}", hex, what));
    };
    // O_NOFOLLOW: the store only ever creates regular files.
    UniqueFd f(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!f.valid()) {
      if (errno == ENOENT) return Status::NotFound(fmt::format("chunk {} not found", hex));
      if (errno == ELOOP) return corrupt("a symbolic link, not a chunk file");
      return ErrnoStatus(errno, "open chunk " + path.string());
    }
    struct stat st {};
    if (::fstat(f.get(), &st) != 0) return ErrnoStatus(errno, "stat chunk " + path.string());
    if (!S_ISREG(st.st_mode)) return corrupt("not a regular file");
    auto size = static_cast<std::uint64_t>(st.st_size);
    if (size < kHeaderSize) {
      return corrupt(
          fmt::format("truncated: {} bytes, shorter than the {}-byte header", size, kHeaderSize));
    }
    if (size > kHeaderSize + kMaxPayload) {
      return corrupt(fmt::format("file of {} bytes is larger than any chunk", size));
    }
    std::uint8_t header_buf[kHeaderSize];
    const std::uint8_t* header = header_buf;
    std::uint8_t* direct = hint == ReadHint::kStreaming ? ReadDirect(f.get(), size) : nullptr;
    if (direct != nullptr) {
      header = direct;  // read past the page cache
      *payload = ByteSpan(direct + kHeaderSize, size - kHeaderSize);
    } else {
      out->resize(size - kHeaderSize);
      iovec iov[2] = {{header_buf, kHeaderSize}, {out->data(), out->size()}};
      if (int err = ReadFully(f.get(), iov, out->empty() ? 1 : 2); err != 0) {
        if (err < 0) return corrupt("truncated while reading");
        return ErrnoStatus(err, "read chunk " + path.string());
      }
      *payload = *out;
    }
    if (std::memcmp(header, kMagic, 4) != 0) return corrupt("not a chunk file (bad magic)");
    if (LoadLe(header + 20, 4) != Crc32c(header, 20)) return corrupt("header checksum mismatch");
    if (header[4] != kVersion) {
      return corrupt(fmt::format("unsupported chunk file version {}", header[4]));
    }
    const std::uint64_t len = LoadLe(header + 8, 8);
    if (len > payload->size()) {
      return corrupt(
          fmt::format("truncated: {} payload bytes, header says {}", payload->size(), len));
    }
    if (len < payload->size()) {
      return corrupt(
          fmt::format("{} extra bytes after the {}-byte payload", payload->size() - len, len));
    }
    if (check == ReadCheck::kChecksum && LoadLe(header + 16, 4) != Crc32c(payload->data(), len)) {
      return corrupt("payload checksum mismatch");
    }
    return Status::Ok();
  }

  const fs::path root_;
  const fs::path tmp_;
  // Cleared once the filesystem refuses O_DIRECT: buffered writes from then on.
  std::atomic<bool> direct_{true};
  // Shard directories ROOT/ab/cd known to exist, indexed by 0xabcd.
  std::unique_ptr<std::atomic<bool>[]> known_shards_ { new std::atomic<bool>[ 65536 ]() };
  std::mutex scan_mu_;                  // one first-Usage() scan at a time
  std::mutex sync_mu_;                  // one Sync() at a time
  // Orders a conditional removal of a chunk with Puts renewing it (striped by id).
  std::array<std::mutex, 64> id_locks_;
  std::mutex mu_;                       // guards everything below
  std::vector<ChunkId> pending_files_;  // installed since the last Sync (at most the threshold)
  bool pending_syncfs_ = false;         // more than that: Sync does one syncfs()
  std::set<fs::path> dirty_dirs_;       // at most 1 + 256 + 65536 entries
  // Usage = base + delta. The deltas count every install and removal since
  // Open; the base is fixed by the first Usage() scan (usage_known_).
  bool usage_known_ = false;
  std::int64_t chunks_base_ = 0;
  std::int64_t bytes_base_ = 0;
  std::int64_t chunks_delta_ = 0;
  std::int64_t bytes_delta_ = 0;
};

Result<std::unique_ptr<DiskChunkStore>> DiskChunkStore::Open(const fs::path& root) {
  auto impl = std::make_unique<Impl>(root);
  DFS_RETURN_IF_ERROR(impl->Open());
  return std::unique_ptr<DiskChunkStore>(new DiskChunkStore(std::move(impl)));
}

DiskChunkStore::DiskChunkStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DiskChunkStore::~DiskChunkStore() = default;

Status DiskChunkStore::Put(const ChunkId& id, ByteSpan data) { return impl_->Put(id, data); }
MutableByteSpan DiskChunkStore::PutBuffer(std::size_t size) { return impl_->PutBuffer(size); }
Status DiskChunkStore::Get(const ChunkId& id, Bytes* out, ReadCheck check) {
  return impl_->Get(id, out, check);
}
Status DiskChunkStore::View(const ChunkId& id, ReadCheck check, ReadHint hint, Bytes* scratch,
                            const std::function<Status(ByteSpan)>& use) {
  return impl_->View(id, check, hint, scratch, use);
}
Result<bool> DiskChunkStore::Has(const ChunkId& id) { return impl_->Has(id); }
Status DiskChunkStore::Remove(const ChunkId& id) { return impl_->Remove(id); }
Result<ChunkStat> DiskChunkStore::Stat(const ChunkId& id) { return impl_->Stat(id); }
Result<bool> DiskChunkStore::RemoveIfStoredBefore(const ChunkId& id,
                                                  std::chrono::system_clock::time_point cutoff) {
  return impl_->RemoveIfStoredBefore(id, cutoff);
}
Status DiskChunkStore::ForEach(const std::function<bool(const ChunkId&, std::uint64_t)>& fn) {
  return impl_->ForEach(fn);
}
Result<StoreUsage> DiskChunkStore::Usage() { return impl_->Usage(); }
Status DiskChunkStore::Sync() { return impl_->Sync(); }
fs::path DiskChunkStore::PathFor(const ChunkId& id) const { return impl_->PathFor(id.ToHex()); }

}  // namespace dfs::core
