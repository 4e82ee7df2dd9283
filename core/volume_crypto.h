// VolumeCrypto: everything the volume key is used for.
//
// Subkeys are derived from the volume key with HKDF-SHA256 (distinct info
// strings, docs/format.md): an id key, a sealing key, a chunker seed and a
// key check value.
//   - ComputeId: chunk id = HMAC-SHA256(id key, plaintext).
//   - Seal: AES-256-GCM under a per-chunk key HKDF(sealing key, info = label
//     || id), so no (key, nonce) pair ever repeats for different plaintexts;
//     the envelope header and the id are authenticated data. Versioned
//     envelope (docs/format.md, "sealed chunk envelope").
//   - Unseal: checks version, the key check value carried in the envelope
//     (kWrongKey when the chunk was sealed under a different key, before any
//     decryption), and the GCM tag (kCorrupt). It never returns wrong bytes.
//
// Thread safety: const methods are safe to call concurrently; each call uses
// its own Crypto++ objects.
#pragma once

#include <array>
#include <cstdint>

#include "core/bytes.h"
#include "core/chunk_id.h"
#include "core/key_file.h"
#include "core/status.h"

namespace dfs::core {

class VolumeCrypto {
 public:
  static constexpr std::size_t kKeyCheckSize = 8;
  static constexpr std::size_t kEnvelopeHeaderSize = 16;
  static constexpr std::size_t kTagSize = 16;
  static constexpr std::size_t kOverhead = kEnvelopeHeaderSize + kTagSize;

  explicit VolumeCrypto(const VolumeKey& key);
  ~VolumeCrypto();  // wipes subkeys
  VolumeCrypto(const VolumeCrypto&) = delete;
  VolumeCrypto& operator=(const VolumeCrypto&) = delete;

  ChunkId ComputeId(ByteSpan plaintext) const;

  // Seals `plaintext` (whose id is `id`) into `*out` (resized to
  // plaintext.size() + kOverhead; capacity reused).
  void Seal(const ChunkId& id, ByteSpan plaintext, Bytes* out) const;

  // The same into `out`, which is exactly plaintext.size() + kOverhead
  // bytes (a buffer lent by ChunkStore::PutBuffer) and does not overlap it.
  void SealInto(const ChunkId& id, ByteSpan plaintext, MutableByteSpan out) const;

  // Opens an envelope into `*out`. Errors: kWrongKey, kCorrupt,
  // kInvalidArgument (not an envelope / unknown version).
  Status Unseal(const ChunkId& id, ByteSpan sealed, Bytes* out) const;

  // Identifies the key without revealing it (HKDF output, not the key).
  const std::array<std::uint8_t, kKeyCheckSize>& key_check() const { return key_check_; }

  // The key check in the first kEnvelopeHeaderSize bytes of a sealed chunk
  // (no key needed: keyless peers tell volumes apart by it); false when
  // `head` is not the header of an envelope of a known version.
  static bool EnvelopeKeyCheck(ByteSpan head, std::array<std::uint8_t, kKeyCheckSize>* out);

  // 64-bit seed for the content-defined chunker's gear table, so chunk
  // boundaries depend on the key and do not fingerprint known files.
  std::uint64_t chunker_seed() const { return chunker_seed_; }

  // Derives `size` bytes from the volume key with HKDF-SHA256 and `info`
  // (for later subsystems: index encryption, network identities).
  Bytes DeriveSubkey(std::string_view info, std::size_t size) const;

 private:
  Status Open(const ChunkId& id, ByteSpan sealed, Bytes* out) const;

  std::array<std::uint8_t, 32> master_{};
  std::array<std::uint8_t, 32> id_key_{};
  std::array<std::uint8_t, 32> seal_key_{};
  std::array<std::uint8_t, kKeyCheckSize> key_check_{};
  std::uint64_t chunker_seed_ = 0;
};

}  // namespace dfs::core
