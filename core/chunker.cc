#include "core/chunker.h"

#include <algorithm>
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

// Finds the first i in [i, end) where the gear hash h, advanced over p[i],
// has no bit of `mask` set; returns i + 1, or 0 when there is none (*h then
// covers p[..end)). Four bytes per step: with t_k the gear values of the
// step's bytes folded as h is, h after byte k is (h << (k + 1)) + t_k, so
// the loop-carried chain is one shift and one add per four bytes and the
// four tests are independent. Cut points are exactly those of the plain
// byte-at-a-time loop (tests/chunker_test.cc checks against it).
std::size_t Chunker::Scan(const std::uint8_t* p, std::size_t i, std::size_t end,
                          std::uint64_t mask, std::uint64_t* hp) const {
  std::uint64_t h = *hp;
  for (; i + 4 <= end; i += 4) {
    const std::uint64_t t0 = gear_[p[i]];
    const std::uint64_t t1 = (t0 << 1) + gear_[p[i + 1]];
    const std::uint64_t t2 = (t1 << 1) + gear_[p[i + 2]];
    const std::uint64_t t3 = (t2 << 1) + gear_[p[i + 3]];
    const std::uint64_t h0 = (h << 1) + t0;
    const std::uint64_t h1 = (h << 2) + t1;
    const std::uint64_t h2 = (h << 3) + t2;
    const std::uint64_t h3 = (h << 4) + t3;
    if (__builtin_expect(!((h0 & mask) && (h1 & mask) && (h2 & mask) && (h3 & mask)), 0)) {
      if ((h0 & mask) == 0) return i + 1;
      if ((h1 & mask) == 0) return i + 2;
      if ((h2 & mask) == 0) return i + 3;
      return i + 4;
    }
    h = h3;
  }
  for (; i < end; ++i) {
    h = (h << 1) + gear_[p[i]];
    if ((h & mask) == 0) return i + 1;
  }
  *hp = h;
  return 0;
}

std::size_t Chunker::NextChunkSize(ByteSpan data) const {
  CutState state;
  return FindCut(data, /*at_end=*/true, &state);
}

std::size_t Chunker::FindCut(ByteSpan data, bool at_end, CutState* state) const {
  const std::size_t n = data.size();
  // With max_size bytes in hand the cut is known whatever follows.
  const bool final = at_end || n >= params_.max_size;
  if (n <= params_.min_size) return final ? n : 0;
  const std::size_t end = std::min(n, params_.max_size);
  // Below the average the harder mask; a stream that ends before the
  // average never reaches the easier one, as in ReferenceChunkSize.
  std::size_t i = std::max(state->pos, params_.min_size);
  std::uint64_t h = state->h;
  const std::size_t normal = std::min(end, params_.avg_size);
  if (i < normal) {
    if (std::size_t cut = Scan(data.data(), i, normal, mask_small_, &h)) return cut;
    i = normal;
  }
  if (i < end) {
    if (std::size_t cut = Scan(data.data(), i, end, mask_large_, &h)) return cut;
    i = end;
  }
  state->pos = i;
  state->h = h;
  return final ? end : 0;
}

std::size_t Chunker::ReferenceChunkSize(ByteSpan data) const {
  const std::size_t n = data.size();
  if (n <= params_.min_size) return n;
  const std::size_t end = std::min(n, params_.max_size);
  const std::size_t normal = std::min(end, params_.avg_size);
  std::uint64_t h = 0;
  for (std::size_t i = params_.min_size; i < end; ++i) {
    h = (h << 1) + gear_[data[i]];
    if ((h & (i < normal ? mask_small_ : mask_large_)) == 0) return i + 1;
  }
  return end;
}

ChunkStream::ChunkStream(const Chunker& chunker, Reader& reader)
    : chunker_(chunker), reader_(reader) {}

Result<bool> ChunkStream::NextInto(FillBuffer* out) {
  // Once, at its final size: growing by steps would copy what was read.
  out->reserve(chunker_.params().max_size + kReadSize);
  out->assign(carry_.begin(), carry_.end());
  carry_.clear();
  Chunker::CutState state;
  for (;;) {
    const std::size_t cut = chunker_.FindCut(*out, eof_, &state);
    if (cut > 0) {
      carry_.assign(out->begin() + static_cast<std::ptrdiff_t>(cut), out->end());
      out->resize(cut);
      return true;
    }
    if (eof_) return false;  // nothing left
    // Up to min_size in one read (no cut can fall before it), then a
    // little at a time, so that little is read past the cut.
    const std::size_t have = out->size();
    const std::size_t want =
        have < chunker_.params().min_size ? chunker_.params().min_size - have + kReadSize : kReadSize;
    out->resize(have + want);
    Result<std::size_t> n = ReadFull(reader_, MutableByteSpan(out->data() + have, want));
    if (!n.ok()) {
      out->clear();
      return n.status();
    }
    out->resize(have + *n);
    bytes_read_ += *n;
    if (*n < want) eof_ = true;
  }
}

Result<std::optional<ByteSpan>> ChunkStream::Next() {
  Result<bool> more = NextInto(&own_);
  if (!more.ok()) return more.status();
  if (!*more) return std::optional<ByteSpan>();
  return std::optional<ByteSpan>(ByteSpan(own_));
}

}  // namespace dfs::core
