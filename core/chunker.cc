#include "core/chunker.h"

#include <bit>
#include <cstring>
#include <stdexcept>

namespace dfs::core {
namespace {

std::uint64_t SplitMix64(std::uint64_t* state) {
  std::uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// `bits` one-bits at the top of the word. With h = (h << 1) + gear[b], bit k
// of h depends on the last k + 1 bytes, so the top bits see a 64-byte window.
std::uint64_t TopMask(int bits) { return ~std::uint64_t{0} << (64 - bits); }

}  // namespace

Chunker::Chunker(std::uint64_t seed, ChunkerParams params) : params_(params) {
  if (params.min_size < 64 || params.min_size > params.avg_size ||
      params.avg_size > params.max_size || !std::has_single_bit(params.avg_size)) {
    throw std::invalid_argument("chunker: need 64 <= min <= avg <= max, avg a power of two");
  }
  int avg_bits = std::countr_zero(params.avg_size);
  // Normalized chunking, level 2: harder to cut below the average, easier above.
  mask_small_ = TopMask(avg_bits + 2);
  mask_large_ = TopMask(avg_bits - 2);
  std::uint64_t state = seed;
  for (std::uint64_t& g : gear_) g = SplitMix64(&state);
}

std::size_t Chunker::NextChunkSize(ByteSpan data) const {
  const std::size_t n = data.size();
  if (n <= params_.min_size) return n;
  const std::size_t end = std::min(n, params_.max_size);
  const std::size_t normal = std::min(end, params_.avg_size);
  const std::uint8_t* p = data.data();
  std::uint64_t h = 0;
  std::size_t i = params_.min_size;
  for (; i < normal; ++i) {
    h = (h << 1) + gear_[p[i]];
    if ((h & mask_small_) == 0) return i + 1;
  }
  for (; i < end; ++i) {
    h = (h << 1) + gear_[p[i]];
    if ((h & mask_large_) == 0) return i + 1;
  }
  return end;
}

ChunkStream::ChunkStream(const Chunker& chunker, Reader& reader)
    : chunker_(chunker), reader_(reader) {}

Result<std::optional<ByteSpan>> ChunkStream::Next() {
  const std::size_t max = chunker_.params().max_size;
  if (buf_.empty()) buf_.resize(2 * max);
  if (!eof_ && end_ - begin_ < max) {
    // Slide what is left to the front, then fill to the end of the buffer.
    if (begin_ > 0) {
      std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    Result<std::size_t> n = ReadFull(reader_, MutableByteSpan(buf_).subspan(end_));
    if (!n.ok()) return n.status();
    end_ += *n;
    bytes_read_ += *n;
    if (end_ < buf_.size()) eof_ = true;
  }
  if (begin_ == end_) return std::optional<ByteSpan>();
  ByteSpan avail(buf_.data() + begin_, end_ - begin_);
  std::size_t len = chunker_.NextChunkSize(avail);
  begin_ += len;
  return std::optional<ByteSpan>(avail.first(len));
}

}  // namespace dfs::core
