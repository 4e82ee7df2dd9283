#include "core/staged_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iterator>

#include <fmt/format.h>

namespace dfs::core {
namespace {

// Opens an anonymous file in `dir`: O_TMPFILE, else a unique name removed at once.
Result<UniqueFd> OpenStagingFile(const std::filesystem::path& dir, bool try_tmpfile) {
  if (try_tmpfile) {
    int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0) return UniqueFd(fd);
    // EISDIR: a kernel without O_TMPFILE; EOPNOTSUPP / EINVAL: a file system without it.
    if (errno != EISDIR && errno != EOPNOTSUPP && errno != EINVAL) {
      return ErrnoStatus(errno, "create staging file in " + dir.string());
    }
  }
  std::string name = (dir / ".dfs-staged-XXXXXX").string();
  int fd = ::mkostemp(name.data(), O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "create staging file " + name);
  UniqueFd owned(fd);
  if (::unlink(name.c_str()) != 0) return ErrnoStatus(errno, "unlink staging file " + name);
  return owned;
}

bool Overflows(std::uint64_t offset, std::uint64_t length) {
  return offset > StagedFile::kMaxSize || length > StagedFile::kMaxSize - offset;
}

}  // namespace

// Streams [begin, end) of the file as it will be after the commit.
class StagedFile::RegionReader final : public Reader {
 public:
  RegionReader(StagedFile& file, Range range) : file_(file), pos_(range.begin), end_(range.end) {}

  Result<std::size_t> Read(MutableByteSpan buf) override {
    if (!status_.ok()) return status_;
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), end_ - pos_));
    if (n == 0) return std::size_t{0};
    status_ = file_.Fill(pos_, buf.first(n));
    if (!status_.ok()) return status_;
    pos_ += n;
    return n;
  }

  // The first error a Read returned (a store might drop it), else OK.
  const Status& status() const { return status_; }

 private:
  StagedFile& file_;
  std::uint64_t pos_;
  std::uint64_t end_;
  Status status_;
};

Result<std::unique_ptr<StagedFile>> StagedFile::Create(const std::filesystem::path& staging_dir,
                                                       Manifest base, ChunkReader read_base) {
  return Create(staging_dir, std::move(base), std::move(read_base), true);
}

Result<std::unique_ptr<StagedFile>> StagedFile::Create(const std::filesystem::path& staging_dir,
                                                       Manifest base, ChunkReader read_base,
                                                       bool try_tmpfile) {
  if (!read_base) return Status::InvalidArgument("staged file: no base chunk reader");
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < base.chunks.size(); ++i) {
    const ChunkRef& ref = base.chunks[i];
    if (ref.size == 0 || (!ref.IsHole() && ref.size > Manifest::kMaxChunkSize)) {
      return Status::InvalidArgument(
          fmt::format("staged file: base chunk {} has invalid size {}", i, ref.size));
    }
    total += ref.size;
  }
  if (total != base.size || base.size > kMaxSize) {
    return Status::InvalidArgument(fmt::format(
        "staged file: base chunk sizes add up to {}, its size is {}", total, base.size));
  }
  DFS_ASSIGN_OR_RETURN(UniqueFd fd, OpenStagingFile(staging_dir, try_tmpfile));
  std::string name = "staging file in " + staging_dir.string();
  return std::unique_ptr<StagedFile>(
      new StagedFile(std::move(fd), std::move(name), std::move(base), std::move(read_base)));
}

StagedFile::StagedFile(UniqueFd fd, std::string name, Manifest base, ChunkReader read_base)
    : fd_(std::move(fd)), name_(std::move(name)), read_base_(std::move(read_base)) {
  SetBase(std::move(base));
}

StagedFile::~StagedFile() = default;

void StagedFile::SetBase(Manifest base) {
  base_ = std::move(base);
  starts_.clear();
  starts_.reserve(base_.chunks.size() + 1);
  std::uint64_t at = 0;
  for (const ChunkRef& ref : base_.chunks) {
    starts_.push_back(at);
    at += ref.size;
  }
  starts_.push_back(at);
  size_ = base_.size;
  base_limit_ = base_.size;
  written_.clear();
  staged_bytes_ = 0;
  ++generation_;
}

std::size_t StagedFile::BaseChunkAt(std::uint64_t offset) const {
  auto it = std::upper_bound(starts_.begin(), starts_.end(), offset);
  return static_cast<std::size_t>(std::distance(starts_.begin(), it)) - 1;
}

bool StagedFile::dirty() const {
  return !written_.empty() || size_ != base_.size || base_limit_ != base_.size;
}

Result<std::size_t> StagedFile::Read(std::uint64_t offset, MutableByteSpan buf) {
  if (offset >= size_) return std::size_t{0};
  std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size_ - offset));
  DFS_RETURN_IF_ERROR(Fill(offset, buf.first(n)));
  return n;
}

Status StagedFile::Fill(std::uint64_t offset, MutableByteSpan buf) {
  if (offset > size_ || buf.size() > size_ - offset) {
    return Status::InvalidArgument(fmt::format(
        "staged file: fill of {} bytes at {} passes the end {}", buf.size(), offset, size_));
  }
  while (!buf.empty()) {
    // The written range holding `offset`, or the start of the next one.
    std::uint64_t next_written = size_;
    auto it = written_.upper_bound(offset);
    if (it != written_.end()) next_written = it->first;
    if (it != written_.begin() && std::prev(it)->second > offset) {
      std::uint64_t run = std::min<std::uint64_t>(buf.size(), std::prev(it)->second - offset);
      DFS_RETURN_IF_ERROR(PRead(offset, buf.first(run)));
      offset += run;
      buf = buf.subspan(run);
      continue;
    }
    std::uint64_t run = std::min<std::uint64_t>(buf.size(), next_written - offset);
    if (offset >= base_limit_) {
      std::memset(buf.data(), 0, run);
    } else {
      std::size_t index = BaseChunkAt(offset);
      std::uint64_t chunk_end = std::min(starts_[index + 1], base_limit_);
      run = std::min(run, chunk_end - offset);
      if (base_.chunks[index].IsHole()) {
        std::memset(buf.data(), 0, run);
      } else {
        DFS_RETURN_IF_ERROR(LoadBaseChunk(index));
        std::memcpy(buf.data(), cache_.data() + (offset - starts_[index]), run);
      }
    }
    offset += run;
    buf = buf.subspan(run);
  }
  return Status::Ok();
}

Status StagedFile::LoadBaseChunk(std::size_t index) {
  const ChunkRef& ref = base_.chunks[index];
  if (cache_valid_ && cache_id_ == ref.id && cache_.size() == ref.size) return Status::Ok();
  cache_valid_ = false;
  Status s = read_base_(base_, index, &cache_);
  if (!s.ok()) return s.WithContext(fmt::format("read base chunk {}", ref.id.ShortHex()));
  if (cache_.size() != ref.size) {
    return Status::Corrupt(fmt::format("base chunk {} read back {} bytes, the manifest says {}",
                                       ref.id.ShortHex(), cache_.size(), ref.size));
  }
  cache_id_ = ref.id;
  cache_valid_ = true;
  return Status::Ok();
}

Status StagedFile::PWrite(std::uint64_t offset, ByteSpan data, std::size_t* done) {
  *done = 0;
  // No fallocate first (which would make a full disk fail before any byte
  // lands): on ext4 it makes every later truncate wait ~10 ms for the
  // unwritten extents, and Commit truncates.
  staging_used_ = true;
  while (*done < data.size()) {
    ssize_t n = ::pwrite(fd_.get(), data.data() + *done, data.size() - *done,
                         static_cast<off_t>(offset + *done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "write " + name_);
    }
    *done += static_cast<std::size_t>(n);
  }
  return Status::Ok();
}

Status StagedFile::PRead(std::uint64_t offset, MutableByteSpan buf) {
  while (!buf.empty()) {
    ssize_t n = ::pread(fd_.get(), buf.data(), buf.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "read " + name_);
    }
    if (n == 0) return Status::Io(fmt::format("{} ends before offset {}", name_, offset));
    offset += static_cast<std::uint64_t>(n);
    buf = buf.subspan(static_cast<std::size_t>(n));
  }
  return Status::Ok();
}

Status StagedFile::Write(std::uint64_t offset, ByteSpan data) {
  if (Overflows(offset, data.size())) {
    return Status::FileTooLarge(fmt::format(
        "write of {} bytes at offset {} passes the largest file size", data.size(), offset));
  }
  if (data.empty()) return Status::Ok();
  // Bytes in the staging file outside the written ranges are never read. A
  // write that fails part way (a full disk) keeps the prefix it wrote, as a
  // short write would: the file then reads consistently, with that prefix.
  std::size_t done = 0;
  Status s = PWrite(offset, data, &done);
  if (done > 0) {
    ++generation_;
    AddWritten(offset, offset + done);
    size_ = std::max(size_, offset + done);
  }
  return s;
}

Status StagedFile::Truncate(std::uint64_t size) {
  if (size > kMaxSize) {
    return Status::FileTooLarge(
        fmt::format("truncate to {} passes the largest file size", size));
  }
  if (size < size_) {
    if (!written_.empty() && std::prev(written_.end())->second > size) {
      // Frees the staged blocks past the new end.
      if (::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) {
        return ErrnoStatus(errno, "truncate " + name_);
      }
    }
    ClipWritten(size);
    base_limit_ = std::min(base_limit_, size);
  }
  if (size != size_) ++generation_;
  size_ = size;
  return Status::Ok();
}

void StagedFile::AddWritten(std::uint64_t begin, std::uint64_t end) {
  auto it = written_.upper_bound(begin);
  if (it != written_.begin() && std::prev(it)->second >= begin) --it;
  while (it != written_.end() && it->first <= end) {
    begin = std::min(begin, it->first);
    end = std::max(end, it->second);
    staged_bytes_ -= it->second - it->first;
    it = written_.erase(it);
  }
  written_.emplace(begin, end);
  staged_bytes_ += end - begin;
}

void StagedFile::ClipWritten(std::uint64_t size) {
  auto it = written_.lower_bound(size);
  for (auto drop = it; drop != written_.end(); ++drop) staged_bytes_ -= drop->second - drop->first;
  written_.erase(it, written_.end());
  if (!written_.empty()) {
    auto last = std::prev(written_.end());
    if (last->second > size) {
      staged_bytes_ -= last->second - size;
      last->second = size;
    }
  }
}

std::vector<StagedFile::Range> StagedFile::TouchedRegions() const {
  std::vector<Range> touched;
  touched.reserve(written_.size() + 1);
  for (const auto& [begin, end] : written_) touched.push_back({begin, end});
  // A truncate that cut a base data chunk: its remaining head is re-chunked.
  if (base_limit_ < base_.size) {
    std::size_t index = BaseChunkAt(base_limit_);
    if (starts_[index] < base_limit_ && !base_.chunks[index].IsHole()) {
      Range cut{starts_[index], base_limit_};
      auto at = std::lower_bound(touched.begin(), touched.end(), cut,
                                 [](const Range& a, const Range& b) { return a.begin < b.begin; });
      touched.insert(at, cut);
    }
  }
  // An inline base chunk is in no store: a commit cannot keep it by
  // reference, so whatever of it is left is stored again with the changes.
  if (base_.is_inline() && base_limit_ > 0) touched.insert(touched.begin(), Range{0, base_limit_});
  // Widen to the boundaries of the base data chunks around each range (a
  // hole is split where the range starts and ends instead), then merge
  // ranges that overlap or touch. Widening is monotone, so order holds.
  std::vector<Range> regions;
  for (Range r : touched) {
    if (r.begin < base_limit_) {
      std::size_t index = BaseChunkAt(r.begin);
      if (!base_.chunks[index].IsHole()) r.begin = starts_[index];
    }
    if (r.end - 1 < base_limit_) {
      std::size_t index = BaseChunkAt(r.end - 1);
      if (!base_.chunks[index].IsHole()) r.end = std::min(starts_[index + 1], base_limit_);
    }
    if (!regions.empty() && r.begin <= regions.back().end) {
      regions.back().end = std::max(regions.back().end, r.end);
    } else {
      regions.push_back(r);
    }
  }
  return regions;
}

Status StagedFile::AppendUntouched(std::uint64_t begin, std::uint64_t end, Manifest* out) const {
  std::uint64_t at = begin;
  std::uint64_t base_end = std::min(end, base_limit_);
  while (at < base_end) {
    std::size_t index = BaseChunkAt(at);
    const ChunkRef& ref = base_.chunks[index];
    std::uint64_t stop = std::min(starts_[index + 1], base_end);
    if (ref.IsHole()) {
      out->AppendHole(stop - at);
    } else if (at == starts_[index] && stop == starts_[index + 1]) {
      out->chunks.push_back(ref);
      out->size += ref.size;
    } else {
      // TouchedRegions widens every touched range to data chunk boundaries.
      return Status::Corrupt(fmt::format(
          "staged file: untouched range [{}, {}) splits base chunk {}", begin, end, index));
    }
    at = stop;
  }
  if (end > std::max(begin, base_limit_)) out->AppendHole(end - std::max(begin, base_limit_));
  return Status::Ok();
}

Result<Manifest> StagedFile::Commit(const RegionStore& store) {
  DFS_ASSIGN_OR_RETURN(PreparedCommit prepared, PrepareCommit(store));
  DFS_RETURN_IF_ERROR(FinishCommit(prepared));
  return std::move(prepared.manifest);
}

Result<StagedFile::PreparedCommit> StagedFile::PrepareCommit(const RegionStore& store) {
  if (!dirty()) return PreparedCommit{base_, generation_};
  Manifest next;
  std::uint64_t at = 0;
  for (const Range& region : TouchedRegions()) {
    DFS_RETURN_IF_ERROR(AppendUntouched(at, region.begin, &next));
    RegionReader reader(*this, region);
    Result<Manifest> piece = store(reader);
    DFS_RETURN_IF_ERROR(reader.status());
    if (!piece.ok()) return piece.status();
    const std::uint64_t length = region.end - region.begin;
    std::uint64_t sum = 0;
    for (const ChunkRef& ref : piece->chunks) {
      if (ref.size == 0 || (!ref.IsHole() && ref.size > Manifest::kMaxChunkSize)) {
        return Status::Corrupt(
            fmt::format("store returned a chunk of invalid size {} for region [{}, {})", ref.size,
                        region.begin, region.end));
      }
      sum += ref.size;
    }
    if (piece->size != length || sum != length) {
      return Status::Corrupt(
          fmt::format("store returned a piece of {} bytes (chunks: {}) for region [{}, {}) of {}",
                      piece->size, sum, region.begin, region.end, length));
    }
    for (const ChunkRef& ref : piece->chunks) {
      if (ref.IsHole()) {
        next.AppendHole(ref.size);
      } else {
        next.chunks.push_back(ref);
        next.size += ref.size;
      }
    }
    at = region.end;
  }
  DFS_RETURN_IF_ERROR(AppendUntouched(at, size_, &next));
  if (next.size != size_) {
    return Status::Corrupt(
        fmt::format("staged file: commit built {} bytes of a {} byte file", next.size, size_));
  }
  return PreparedCommit{std::move(next), generation_};
}

Status StagedFile::FinishCommit(const PreparedCommit& prepared) {
  if (prepared.generation != generation_) {
    return Status::InvalidArgument(
        "staged file: the prepared commit is stale (written or truncated since)");
  }
  // Frees the staging space; the one step that can fail, before any change.
  if (staging_used_) {
    if (::ftruncate(fd_.get(), 0) != 0) return ErrnoStatus(errno, "truncate " + name_);
    staging_used_ = false;
  }
  if (dirty()) SetBase(prepared.manifest);
  return Status::Ok();
}

}  // namespace dfs::core
