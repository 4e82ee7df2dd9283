#include "core/manifest.h"

#include <algorithm>

#include <cstring>

#include <fmt/format.h>

#include "core/encoding.h"

namespace dfs::core {
namespace {

constexpr char kMagic[4] = {'D', 'F', 'S', 'M'};
constexpr std::size_t kHeaderSize = 20;  // magic, version, flags, reserved, size, count
constexpr std::size_t kEntrySize = Manifest::kRefBytes;
constexpr std::size_t kTrailerSize = 4;
static_assert(kHeaderSize + kTrailerSize == Manifest::kFixedBytes);
constexpr std::uint8_t kFlagInline = 1;  // one data entry, its sealed envelope before the trailer

std::uint32_t Get32(const std::uint8_t* p) { return static_cast<std::uint32_t>(LoadLe(p, 4)); }
std::uint64_t Get64(const std::uint8_t* p) { return LoadLe(p, 8); }

}  // namespace

Bytes Manifest::Encode() const {
  Bytes out(kHeaderSize + chunks.size() * kEntrySize + inline_sealed.size() + kTrailerSize);
  std::uint8_t* p = out.data();
  std::memcpy(p, kMagic, 4);
  p[4] = kVersion;
  p[5] = is_inline() ? kFlagInline : 0;
  p[6] = p[7] = 0;
  StoreLe(p + 8, size, 8);
  StoreLe(p + 16, chunks.size(), 4);
  p += kHeaderSize;
  for (const ChunkRef& c : chunks) {
    std::memcpy(p, c.id.bytes().data(), ChunkId::kSize);
    StoreLe(p + ChunkId::kSize, c.size, 4);
    p += kEntrySize;
  }
  if (is_inline()) {
    std::memcpy(p, inline_sealed.data(), inline_sealed.size());
    p += inline_sealed.size();
  }
  StoreLe(p, Crc32c(out.data(), out.size() - kTrailerSize), 4);
  return out;
}

Result<Manifest> Manifest::Decode(ByteSpan data) {
  if (data.size() < kHeaderSize + kTrailerSize) {
    return Status::Corrupt(fmt::format("manifest truncated ({} bytes)", data.size()));
  }
  const std::uint8_t* p = data.data();
  if (std::memcmp(p, kMagic, 4) != 0) return Status::Corrupt("not a manifest (bad magic)");
  if (p[4] != kVersion) {
    return Status::InvalidArgument(fmt::format("unsupported manifest version {}", p[4]));
  }
  if ((p[5] & ~kFlagInline) != 0 || p[6] != 0 || p[7] != 0) {
    return Status::InvalidArgument("manifest has unknown flags set");
  }
  const bool inlined = (p[5] & kFlagInline) != 0;
  std::uint64_t count = Get32(p + 16);
  if (inlined && count != 1) {
    return Status::Corrupt(fmt::format("inline manifest with {} chunks", count));
  }
  const std::uint64_t fixed = kHeaderSize + count * kEntrySize + kTrailerSize;
  if (inlined ? data.size() <= fixed || data.size() - fixed > kMaxInlineSealed
              : data.size() != fixed) {
    return Status::Corrupt(fmt::format("manifest length {} does not fit {} chunks{}", data.size(),
                                       count, inlined ? " and an inline chunk" : ""));
  }
  std::uint32_t want = Get32(data.data() + data.size() - kTrailerSize);
  if (Crc32c(data.data(), data.size() - kTrailerSize) != want) {
    return Status::Corrupt("manifest checksum mismatch");
  }
  Manifest m;
  m.size = Get64(p + 8);
  m.chunks.reserve(count);
  std::uint64_t total = 0;
  p += kHeaderSize;
  for (std::uint64_t i = 0; i < count; ++i, p += kEntrySize) {
    ChunkRef ref;
    ref.id = *ChunkId::FromBytes(ByteSpan(p, ChunkId::kSize));
    ref.size = Get32(p + ChunkId::kSize);
    if (ref.size == 0 || (!ref.IsHole() && ref.size > kMaxChunkSize)) {
      return Status::Corrupt(fmt::format("manifest chunk {} has invalid size {}", i, ref.size));
    }
    if (inlined && (ref.IsHole() || ref.size > kMaxInlineSize)) {
      return Status::Corrupt(fmt::format("inline manifest chunk has invalid size {}", ref.size));
    }
    total += ref.size;
    m.chunks.push_back(ref);
  }
  if (inlined) m.inline_sealed.assign(p, data.data() + data.size() - kTrailerSize);
  if (total != m.size) {
    return Status::Corrupt(
        fmt::format("manifest chunk sizes add up to {}, file size is {}", total, m.size));
  }
  return m;
}

void Manifest::AppendHole(std::uint64_t n) {
  size += n;
  if (n > 0 && !chunks.empty() && chunks.back().IsHole()) {
    std::uint64_t room = kMaxHoleSize - chunks.back().size;
    std::uint64_t take = std::min(room, n);
    chunks.back().size += static_cast<std::uint32_t>(take);
    n -= take;
  }
  while (n > 0) {
    std::uint64_t take = std::min<std::uint64_t>(n, kMaxHoleSize);
    chunks.push_back(ChunkRef::Hole(static_cast<std::uint32_t>(take)));
    n -= take;
  }
}

std::pair<std::size_t, std::uint64_t> Manifest::Locate(std::uint64_t offset) const {
  std::uint64_t start = 0;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    if (offset < start + chunks[i].size) return {i, start};
    start += chunks[i].size;
  }
  return {chunks.size(), start};
}

}  // namespace dfs::core
