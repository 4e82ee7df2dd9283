#include "core/disk_chunk_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>
#include <unordered_set>

#include <fmt/format.h>

#include "core/encoding.h"

namespace dfs::core {
namespace {

namespace fs = std::filesystem;

// Chunk file v1 (docs/format.md): magic "DFSK", version, 3 reserved bytes,
// payload length u64 LE, payload CRC32C u32 LE, header CRC32C u32 LE.
constexpr char kMagic[4] = {'D', 'F', 'S', 'K'};
constexpr std::uint8_t kVersion = 1;
constexpr std::size_t kHeaderSize = 24;
constexpr std::size_t kSyncfsThreshold = 16;

bool IsHexByteName(const char* name) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); };
  return hex(name[0]) && hex(name[1]) && name[2] == '\0';
}

Status FsyncDir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "open directory " + dir.string());
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus(err, "fsync directory " + dir.string());
  return Status::Ok();
}

Status MakeDir(const fs::path& dir, bool* created) {
  if (::mkdir(dir.c_str(), 0700) == 0) {
    *created = true;
    return Status::Ok();
  }
  if (errno == EEXIST) return Status::Ok();
  return ErrnoStatus(errno, "create directory " + dir.string());
}

// Closes a descriptor on scope exit.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

class DiskChunkStore::Impl {
 public:
  explicit Impl(fs::path root) : root_(std::move(root)), tmp_(root_ / "tmp") {}

  fs::path ShardDir(const std::string& hex) const {
    return root_ / hex.substr(0, 2) / hex.substr(2, 2);
  }
  fs::path PathFor(const ChunkId& id) const {
    std::string hex = id.ToHex();
    return ShardDir(hex) / hex;
  }

  Status Open() {
    bool created = false;
    std::error_code ec;
    fs::create_directories(root_, ec);
    if (ec) return ErrnoStatus(ec.value(), "create chunk store " + root_.string());
    DFS_RETURN_IF_ERROR(MakeDir(tmp_, &created));
    // Partial chunks from an interrupted write are never visible.
    DIR* d = ::opendir(tmp_.c_str());
    if (d == nullptr) return ErrnoStatus(errno, "open " + tmp_.string());
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      ::unlinkat(::dirfd(d), e->d_name, 0);
    }
    ::closedir(d);
    return Status::Ok();
  }

  Status Put(const ChunkId& id, ByteSpan data) {
    fs::path final_path = PathFor(id);
    if (::access(final_path.c_str(), F_OK) == 0) return Status::Ok();

    std::uint8_t header[kHeaderSize] = {};
    std::memcpy(header, kMagic, 4);
    header[4] = kVersion;
    StoreLe(header + 8, data.size(), 8);
    StoreLe(header + 16, Crc32c(data.data(), data.size()), 4);
    StoreLe(header + 20, Crc32c(header, 20), 4);

    fs::path tmp = tmp_ / fmt::format("{}.{}.{}", id.ToHex(), ::getpid(), counter_++);
    Fd f;
    f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (f.fd < 0) return ErrnoStatus(errno, "create " + tmp.string());
    auto fail = [&](int err, std::string_view what) {
      Status s = ErrnoStatus(err, fmt::format("{} chunk {}", what, tmp.string()));
      ::unlink(tmp.c_str());
      return s;
    };
    iovec iov[2] = {{header, kHeaderSize},
                    {const_cast<std::uint8_t*>(data.data()), data.size()}};
    std::size_t total = kHeaderSize + data.size(), done = 0;
    while (done < total) {
      // Advance the iovecs past what was written.
      iovec v[2];
      int n = 0;
      std::size_t skip = done;
      for (const iovec& one : iov) {
        if (skip >= one.iov_len) {
          skip -= one.iov_len;
          continue;
        }
        v[n++] = {static_cast<std::uint8_t*>(one.iov_base) + skip, one.iov_len - skip};
        skip = 0;
      }
      ssize_t w = ::writev(f.fd, v, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        return fail(errno, "write");
      }
      done += static_cast<std::size_t>(w);
    }
    // Start writeback now so that Sync() finds little left to do; durability
    // itself is batched into Sync().
    ::sync_file_range(f.fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    if (::close(f.fd) != 0) {
      f.fd = -1;
      return fail(errno, "close");
    }
    f.fd = -1;

    std::string hex = id.ToHex();
    fs::path level1 = root_ / hex.substr(0, 2);
    fs::path level2 = level1 / hex.substr(2, 2);
    bool made1 = false, made2 = false;
    std::string shard = hex.substr(0, 4);
    bool known;
    {
      std::lock_guard lock(mu_);
      known = known_shards_.count(shard) > 0;
    }
    if (!known) {
      Status s = MakeDir(level1, &made1);
      if (s.ok()) s = MakeDir(level2, &made2);
      if (!s.ok()) {
        ::unlink(tmp.c_str());
        return s;
      }
    }
    if (::rename(tmp.c_str(), final_path.c_str()) != 0) return fail(errno, "rename");
    {
      std::lock_guard lock(mu_);
      known_shards_.insert(shard);  // at most 65536 entries
      unsynced_.push_back(final_path);
      dirty_.insert(level2);
      if (made2) dirty_.insert(level1);
      if (made1) dirty_.insert(root_);
      if (usage_known_) {
        ++usage_.chunks;
        usage_.bytes += data.size();
      }
    }
    return Status::Ok();
  }

  // `*out` is not cleared first: resizing a reused buffer only zero-fills
  // what it grows by (clearing first cost a memset of every chunk read).
  Status Get(const ChunkId& id, Bytes* out, ReadCheck check) {
    fs::path path = PathFor(id);
    Fd f;
    f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (f.fd < 0) {
      out->clear();
      if (errno == ENOENT) return Status::NotFound(fmt::format("chunk {} not found", id.ToHex()));
      return ErrnoStatus(errno, "open chunk " + path.string());
    }
    struct stat st {};
    if (::fstat(f.fd, &st) != 0) {
      out->clear();
      return ErrnoStatus(errno, "stat chunk " + path.string());
    }
    auto corrupt = [&](std::string_view what) {
      out->clear();
      return Status::Corrupt(fmt::format("chunk {}: {}", id.ToHex(), what));
    };
    auto size = static_cast<std::uint64_t>(st.st_size);
    if (size < kHeaderSize) return corrupt(fmt::format("truncated ({} bytes)", size));
    std::uint8_t header[kHeaderSize];
    if (Status s = ReadAll(f.fd, header, kHeaderSize, 0, path); !s.ok()) {
      out->clear();
      return s;
    }
    if (std::memcmp(header, kMagic, 4) != 0) return corrupt("not a chunk file (bad magic)");
    if (LoadLe(header + 20, 4) != Crc32c(header, 20)) return corrupt("header checksum mismatch");
    if (header[4] != kVersion) return corrupt(fmt::format("unknown chunk file version {}", header[4]));
    std::uint64_t len = LoadLe(header + 8, 8);
    if (size != kHeaderSize + len) {
      return corrupt(fmt::format("file is {} bytes, header says {} (truncated or extended)", size,
                                 kHeaderSize + len));
    }
    out->resize(len);
    if (Status s = ReadAll(f.fd, out->data(), len, kHeaderSize, path); !s.ok()) {
      out->clear();
      return s;
    }
    if (check == ReadCheck::kChecksum && LoadLe(header + 16, 4) != Crc32c(out->data(), out->size())) {
      return corrupt("payload checksum mismatch");
    }
    return Status::Ok();
  }

  Result<bool> Has(const ChunkId& id) {
    fs::path path = PathFor(id);
    if (::access(path.c_str(), F_OK) == 0) return true;
    if (errno == ENOENT) return false;
    return ErrnoStatus(errno, "stat chunk " + path.string());
  }

  Status Remove(const ChunkId& id) {
    fs::path path = PathFor(id);
    struct stat st {};
    bool sized = ::stat(path.c_str(), &st) == 0;
    if (::unlink(path.c_str()) != 0) {
      if (errno == ENOENT) return Status::NotFound(fmt::format("chunk {} not found", id.ToHex()));
      return ErrnoStatus(errno, "remove chunk " + path.string());
    }
    std::lock_guard lock(mu_);
    dirty_.insert(path.parent_path());
    if (usage_known_ && sized) {
      --usage_.chunks;
      usage_.bytes -= std::min<std::uint64_t>(usage_.bytes,
                                              static_cast<std::uint64_t>(st.st_size) - kHeaderSize);
    }
    return Status::Ok();
  }

  Status ForEach(const std::function<bool(const ChunkId&, std::uint64_t)>& fn) {
    DIR* d1 = ::opendir(root_.c_str());
    if (d1 == nullptr) return ErrnoStatus(errno, "open " + root_.string());
    bool go = true;
    while (go) {
      dirent* e1 = ::readdir(d1);
      if (e1 == nullptr) break;
      if (!IsHexByteName(e1->d_name)) continue;  // skips tmp, junk, "." and ".."
      fs::path p1 = root_ / e1->d_name;
      DIR* d2 = ::opendir(p1.c_str());
      if (d2 == nullptr) continue;
      while (go) {
        dirent* e2 = ::readdir(d2);
        if (e2 == nullptr) break;
        if (!IsHexByteName(e2->d_name)) continue;
        fs::path p2 = p1 / e2->d_name;
        DIR* d3 = ::opendir(p2.c_str());
        if (d3 == nullptr) continue;
        std::string prefix = std::string(e1->d_name) + e2->d_name;
        while (go) {
          dirent* e3 = ::readdir(d3);
          if (e3 == nullptr) break;
          Result<ChunkId> id = ChunkId::FromHex(e3->d_name);
          if (!id.ok() || id->ToHex().compare(0, 4, prefix) != 0) continue;
          struct stat st {};
          if (::fstatat(::dirfd(d3), e3->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
              !S_ISREG(st.st_mode)) {
            continue;
          }
          auto size = static_cast<std::uint64_t>(st.st_size);
          go = fn(*id, size >= kHeaderSize ? size - kHeaderSize : 0);
        }
        ::closedir(d3);
      }
      ::closedir(d2);
    }
    ::closedir(d1);
    return Status::Ok();
  }

  Result<StoreUsage> Usage() {
    {
      std::lock_guard lock(mu_);
      if (usage_known_) return usage_;
    }
    // First call: one scan, then counters kept by Put and Remove. A Put or
    // Remove racing with the scan may be counted twice or missed; the scan
    // holds scan_mu_ so at least two scans never overlap.
    std::lock_guard scan(scan_mu_);
    StoreUsage u;
    DFS_RETURN_IF_ERROR(ForEach([&](const ChunkId&, std::uint64_t size) {
      ++u.chunks;
      u.bytes += size;
      return true;
    }));
    std::lock_guard lock(mu_);
    if (!usage_known_) {
      usage_ = u;
      usage_known_ = true;
    }
    return usage_;
  }

  Status Sync() {
    std::set<fs::path> dirs;
    std::vector<fs::path> files;
    {
      std::lock_guard lock(mu_);
      dirs.swap(dirty_);
      files.swap(unsynced_);
    }
    // Chunk data first. Many files: one syncfs() of the store's filesystem
    // costs one journal commit instead of one per file.
    if (files.size() > kSyncfsThreshold) {
      Fd root;
      root.fd = ::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (root.fd < 0) return ErrnoStatus(errno, "open " + root_.string());
      if (::syncfs(root.fd) != 0) return ErrnoStatus(errno, "syncfs " + root_.string());
    } else {
      for (const fs::path& file : files) {
        Fd f;
        f.fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
        if (f.fd < 0) {
          if (errno == ENOENT) continue;  // removed since
          return ErrnoStatus(errno, "open " + file.string());
        }
        if (::fdatasync(f.fd) != 0) return ErrnoStatus(errno, "fsync " + file.string());
      }
    }
    // Deepest first, so a new shard directory is durable before its parent
    // entry is.
    for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) {
      Status s = FsyncDir(*it);
      if (!s.ok() && s.code() != ErrorCode::kNotFound) return s;
    }
    return Status::Ok();
  }

 private:
  static Status ReadAll(int fd, std::uint8_t* p, std::size_t n, off_t off, const fs::path& path) {
    while (n > 0) {
      ssize_t r = ::pread(fd, p, n, off);
      if (r < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus(errno, "read chunk " + path.string());
      }
      if (r == 0) return Status::Corrupt(fmt::format("chunk file {} is truncated", path.string()));
      p += r;
      n -= static_cast<std::size_t>(r);
      off += r;
    }
    return Status::Ok();
  }

  const fs::path root_;
  const fs::path tmp_;
  std::atomic<std::uint64_t> counter_{0};
  std::mutex scan_mu_;
  std::mutex mu_;  // guards dirty_ and usage_
  std::set<fs::path> dirty_;
  std::vector<fs::path> unsynced_;
  std::unordered_set<std::string> known_shards_;  // "abcd" shard directories that exist  // chunk files renamed into place, not yet fsynced
  bool usage_known_ = false;
  StoreUsage usage_;
};

Result<std::unique_ptr<DiskChunkStore>> DiskChunkStore::Open(const fs::path& root) {
  auto impl = std::make_unique<Impl>(root);
  DFS_RETURN_IF_ERROR(impl->Open());
  return std::unique_ptr<DiskChunkStore>(new DiskChunkStore(std::move(impl)));
}

DiskChunkStore::DiskChunkStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DiskChunkStore::~DiskChunkStore() = default;

Status DiskChunkStore::Put(const ChunkId& id, ByteSpan data) { return impl_->Put(id, data); }
Status DiskChunkStore::Get(const ChunkId& id, Bytes* out, ReadCheck check) {
  return impl_->Get(id, out, check);
}
Result<bool> DiskChunkStore::Has(const ChunkId& id) { return impl_->Has(id); }
Status DiskChunkStore::Remove(const ChunkId& id) { return impl_->Remove(id); }
Status DiskChunkStore::ForEach(const std::function<bool(const ChunkId&, std::uint64_t)>& fn) {
  return impl_->ForEach(fn);
}
Result<StoreUsage> DiskChunkStore::Usage() { return impl_->Usage(); }
Status DiskChunkStore::Sync() { return impl_->Sync(); }
fs::path DiskChunkStore::PathFor(const ChunkId& id) const { return impl_->PathFor(id); }

}  // namespace dfs::core
