// Manifest: what a stored file is made of — its size and the ordered list of
// (chunk id, plaintext length) pairs. A small file's one chunk may be carried
// inline instead: its sealed envelope travels in the manifest (so in the tree
// op) and no chunk store holds it. Encoded in a versioned binary format
// (docs/format.md, "manifest") with a CRC32C trailer; Decode validates every
// field before trusting it. A value type; thread-compatible.
//
// Size: 36 bytes per chunk (about 36 bytes per MiB of file with the default
// chunker), so a manifest is held in memory whole; see docs/architecture.md.
#pragma once

#include <cstdint>
#include <vector>

#include "core/bytes.h"
#include "core/chunk_id.h"
#include "core/status.h"

namespace dfs::core {

struct ChunkRef {
  ChunkId id;
  std::uint32_t size = 0;  // plaintext bytes
  bool operator==(const ChunkRef&) const = default;

  // A hole of a sparse file: `size` zero bytes that nothing stores. Its id
  // is all zero (HMAC-SHA256 output is never that in practice).
  bool IsHole() const { return id == ChunkId(); }
  static ChunkRef Hole(std::uint32_t size) { return ChunkRef{ChunkId(), size}; }
};

struct Manifest {
  static constexpr std::uint8_t kVersion = 1;
  static constexpr std::uint32_t kMaxChunkSize = 64u << 20;  // sanity bound on a decoded entry
  static constexpr std::uint32_t kMaxHoleSize = 0xffffffffu;  // a longer hole is several refs
  // Encoded bytes per ref (chunk id and size) and of everything else.
  static constexpr std::size_t kRefBytes = ChunkId::kSize + 4;
  static constexpr std::size_t kFixedBytes = 24;

  // The largest content carried inline (plaintext bytes): a small file costs
  // no chunk file, no chunk replication and no reference count.
  static constexpr std::uint32_t kMaxInlineSize = 4096;
  // Bound on a decoded inline envelope (plaintext + the seal's overhead).
  static constexpr std::uint32_t kMaxInlineSealed = kMaxInlineSize + 256;

  std::uint64_t size = 0;  // sum of chunk sizes
  std::vector<ChunkRef> chunks;
  // When not empty: chunks holds exactly one data ref and this is its sealed
  // envelope (VolumeCrypto::Seal under that ref's id); the chunk is in no store.
  Bytes inline_sealed;

  bool is_inline() const { return !inline_sealed.empty(); }

  Bytes Encode() const;
  // Errors: kCorrupt (bad magic, truncated, checksum, sizes that do not add
  // up), kInvalidArgument (unknown version).
  static Result<Manifest> Decode(ByteSpan data);

  // Index of the chunk holding byte `offset` and that chunk's start offset;
  // chunks.size() if offset >= size.
  std::pair<std::size_t, std::uint64_t> Locate(std::uint64_t offset) const;

  // Appends `n` bytes of holes (merged into a trailing hole, split at kMaxHoleSize).
  void AppendHole(std::uint64_t n);

  bool operator==(const Manifest&) const = default;
};

}  // namespace dfs::core
