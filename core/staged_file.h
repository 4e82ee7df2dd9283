// StagedFile: the write side of one open regular file of the mount.
//
// Writes land in a local, sparse staging file (created with O_TMPFILE in a
// staging directory, or under a unique name unlinked at once, so nothing is
// left behind after a crash). Reads see the base manifest overlaid with the
// staged writes and truncates. Commit re-chunks only what writes and
// truncates touched: each touched range, widened to the base's chunk
// boundaries around it (never across a hole ref, which is split instead),
// is streamed through `store`; every other base chunk ref is kept as it is,
// and bytes past the old end that no write touched become hole refs. An
// inline base (a small file's chunk carried in its manifest) counts as
// touched: `store` is given it again with the changes.
//
// Memory: one cached base chunk, the read buffer of `store`, and the range
// bookkeeping (one map entry per disjoint written range); never the file.
//
// Thread-compatible: the caller serializes all calls on one StagedFile.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "core/bytes.h"
#include "core/io.h"
#include "core/manifest.h"
#include "core/status.h"

namespace dfs::core {

class StagedFile {
 public:
  // Reads plaintext chunk `index` of the base manifest into *plain (never called for hole refs).
  using ChunkReader = std::function<Status(const Manifest& base, std::size_t index, Bytes* plain)>;
  // Chunks and stores a region's bytes; returns the manifest piece for exactly those bytes.
  using RegionStore = std::function<Result<Manifest>(Reader& region)>;

  // The largest file size and write end: 16 TiB, as on ext4. It bounds a
  // manifest (a sparse file of this size is 4,096 hole refs, 147 KiB) and so
  // the memory and the op a truncate can cost.
  static constexpr std::uint64_t kMaxSize = std::uint64_t{1} << 44;

  // `staging_dir` exists; the staging file is created there with O_TMPFILE
  // (falling back to a unique name unlinked at once where the file system
  // lacks O_TMPFILE). Errors: kInvalidArgument (a base whose chunk sizes do
  // not add up, no reader), errno statuses from the staging file.
  static Result<std::unique_ptr<StagedFile>> Create(const std::filesystem::path& staging_dir,
                                                    Manifest base, ChunkReader read_base);
  // The same; `try_tmpfile` false goes straight to the named-and-unlinked
  // fallback (tests).
  static Result<std::unique_ptr<StagedFile>> Create(const std::filesystem::path& staging_dir,
                                                    Manifest base, ChunkReader read_base,
                                                    bool try_tmpfile);

  StagedFile(const StagedFile&) = delete;
  StagedFile& operator=(const StagedFile&) = delete;
  ~StagedFile();

  // Reads up to buf.size() bytes at `offset`: 0 at or after the end, holes
  // and truncated-then-extended ranges read as zeros.
  Result<std::size_t> Read(std::uint64_t offset, MutableByteSpan buf);
  // Writes all of `data` at `offset`; may extend the file, leaving a hole
  // between the old end and `offset`. A write that fails part way through
  // (kNoSpace when the staging file system is full, kIo) keeps the prefix
  // that reached the staging file, like a short write: the file reads as
  // before with that prefix written (staged_bytes() grows by its size at
  // most). kFileTooLarge when offset + size > kMaxSize.
  Status Write(std::uint64_t offset, ByteSpan data);
  // Sets the size: down drops staged bytes past it, up adds zeros (holes).
  // kFileTooLarge above kMaxSize.
  Status Truncate(std::uint64_t size);

  std::uint64_t size() const { return size_; }
  // Something was written or the content was truncated since Create / the
  // last Commit (a truncate to the current size changes nothing).
  bool dirty() const;
  const Manifest& base() const { return base_; }
  // Bytes held in the staging file's written ranges (for commit policies).
  std::uint64_t staged_bytes() const { return staged_bytes_; }

  // Builds the new manifest (see the file comment) and makes it the base;
  // the staged ranges are dropped and the staging file is truncated to 0.
  // Not dirty: returns base() without calling `store`. On failure nothing
  // changes and the commit can be retried. Errors: those of `store`, of the
  // base chunk reader and the staging file, kCorrupt when `store` returns a
  // piece whose size differs from the region it was given.
  Result<Manifest> Commit(const RegionStore& store);

  // Commit in two steps, for a caller that records the manifest elsewhere
  // (the index) before the staged bytes may be dropped: PrepareCommit builds
  // the manifest and changes nothing; FinishCommit makes it the base, the
  // same as a successful Commit. If recording fails, the caller skips
  // FinishCommit and the file stays dirty. FinishCommit refuses
  // (kInvalidArgument) a commit prepared before a later Write, Truncate or
  // commit.
  struct PreparedCommit {
    Manifest manifest;
    std::uint64_t generation = 0;
  };
  Result<PreparedCommit> PrepareCommit(const RegionStore& store);
  Status FinishCommit(const PreparedCommit& prepared);

 private:
  class RegionReader;
  struct Range {
    std::uint64_t begin;
    std::uint64_t end;
  };

  StagedFile(UniqueFd fd, std::string name, Manifest base, ChunkReader read_base);

  void SetBase(Manifest base);
  // Index of the base chunk holding `offset` (< base_.size).
  std::size_t BaseChunkAt(std::uint64_t offset) const;
  // Fills `buf` (offset + buf.size() <= size_) from staged, base and zero bytes.
  Status Fill(std::uint64_t offset, MutableByteSpan buf);
  // Loads base chunk `index` (a data ref) into the one-chunk cache.
  Status LoadBaseChunk(std::size_t index);
  // Writes `data` at `offset`; *done is how much of it was written, also on failure.
  Status PWrite(std::uint64_t offset, ByteSpan data, std::size_t* done);
  Status PRead(std::uint64_t offset, MutableByteSpan buf);

  // The touched ranges, widened to base chunk boundaries and merged.
  std::vector<Range> TouchedRegions() const;
  // Appends the untouched content of [begin, end) to `out`: base refs kept
  // as they are, holes past base_limit_.
  Status AppendUntouched(std::uint64_t begin, std::uint64_t end, Manifest* out) const;

  // Written ranges: begin -> end, disjoint and not adjacent. Their bytes are
  // in the staging file at the same offsets.
  void AddWritten(std::uint64_t begin, std::uint64_t end);
  void ClipWritten(std::uint64_t size);

  UniqueFd fd_;
  std::string name_;  // for error messages
  Manifest base_;
  std::vector<std::uint64_t> starts_;  // start offset of each base chunk, then base_.size
  ChunkReader read_base_;

  std::uint64_t size_ = 0;
  // Base bytes below this offset are still visible; at and past it, bytes
  // that no write staged are zeros (the lowest size truncated to since the
  // last commit, capped at the base size).
  std::uint64_t base_limit_ = 0;
  std::map<std::uint64_t, std::uint64_t> written_;
  std::uint64_t staged_bytes_ = 0;
  std::uint64_t generation_ = 0;  // counts changes and commits (stale PreparedCommit check)
  bool staging_used_ = false;     // written to since the staging file was last emptied

  // The last base chunk read, by id (content-addressed, so valid across commits).
  bool cache_valid_ = false;
  ChunkId cache_id_;
  Bytes cache_;
};

}  // namespace dfs::core
