// Content-defined chunking: FastCDC (Xia et al., USENIX ATC 2016) with a gear
// rolling hash and normalized chunking (two masks around the average).
// Defaults: minimum 256 KiB, average 1 MiB, maximum 4 MiB.
//
// The gear table comes from a 64-bit seed (VolumeCrypto::chunker_seed()), so
// boundaries are deterministic for one volume key. Thread safety: a Chunker
// is immutable after construction; ChunkStream is single-owner.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

#include "core/bytes.h"
#include "core/io.h"
#include "core/status.h"

namespace dfs::core {

struct ChunkerParams {
  std::size_t min_size = 256 * 1024;
  std::size_t avg_size = 1024 * 1024;  // a power of two
  std::size_t max_size = 4 * 1024 * 1024;
};

class Chunker {
 public:
  explicit Chunker(std::uint64_t seed, ChunkerParams params = {});

  // Length of the chunk that starts at data[0]. `data` holds at least
  // max_size bytes, or everything left in the stream (then the last chunk
  // may be shorter than min_size). Returns 0 only for empty `data`.
  std::size_t NextChunkSize(ByteSpan data) const;

  // The same cut found over bytes that arrive in pieces. `data` is all of
  // the chunk-to-be seen so far (it only grows between calls that share
  // `state`, which starts default-constructed), `at_end` whether the stream
  // ends with it. Returns the cut, or 0 while more bytes are needed (or
  // `data` is empty at the end). Each byte is scanned once over all calls.
  struct CutState {
    std::size_t pos = 0;  // bytes already scanned up to
    std::uint64_t h = 0;  // the gear hash there
  };
  std::size_t FindCut(ByteSpan data, bool at_end, CutState* state) const;

  // The same cut, one byte at a time: the definition NextChunkSize is
  // tested against (it is several times slower).
  std::size_t ReferenceChunkSize(ByteSpan data) const;

  const ChunkerParams& params() const { return params_; }

 private:
  ChunkerParams params_;
  std::size_t Scan(const std::uint8_t* p, std::size_t i, std::size_t end, std::uint64_t mask,
                   std::uint64_t* hp) const;

  std::uint64_t mask_small_;  // harder to match: used below the average
  std::uint64_t mask_large_;  // easier to match: used above the average
  std::array<std::uint64_t, 256> gear_;
};

// Splits a Reader into chunks. Reads go straight into the buffer the chunk
// is handed over in, a little at a time once past min_size, so that only
// the bytes read beyond a cut (less than one read) are ever copied.
class ChunkStream {
 public:
  static constexpr std::size_t kReadSize = 64 << 10;

  ChunkStream(const Chunker& chunker, Reader& reader);

  // The next chunk into `*out` (resized; its capacity is reused and grows
  // to at most max_size + kReadSize). Returns false at the end.
  Result<bool> NextInto(FillBuffer* out);

  // The same into the stream's own buffer: valid until the next call;
  // std::nullopt at the end.
  Result<std::optional<ByteSpan>> Next();

  // Bytes consumed from the reader so far.
  std::uint64_t bytes_read() const { return bytes_read_; }

  // True once the reader is exhausted and every byte was handed out: the
  // chunk NextInto gave last was the stream's last.
  bool done() const { return eof_ && carry_.empty(); }

 private:
  const Chunker& chunker_;
  Reader& reader_;
  FillBuffer carry_;  // read past the last cut: the start of the next chunk
  FillBuffer own_;    // Next()'s buffer
  bool eof_ = false;
  std::uint64_t bytes_read_ = 0;
};

}  // namespace dfs::core
