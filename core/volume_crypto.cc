#include "core/volume_crypto.h"

#include <cstring>

#include <cryptopp/aes.h>
#include <cryptopp/gcm.h>
#include <cryptopp/hkdf.h>
#include <cryptopp/hmac.h>
#include <cryptopp/misc.h>
#include <cryptopp/sha.h>
#include <fmt/format.h>

namespace dfs::core {
namespace {

// Envelope v1 (docs/format.md): magic "DFSE", version, algorithm, 2 reserved
// bytes, 8-byte key check, then ciphertext, then the 16-byte GCM tag.
constexpr char kMagic[4] = {'D', 'F', 'S', 'E'};
constexpr std::uint8_t kEnvelopeVersion = 1;
constexpr std::uint8_t kAlgAes256Gcm = 1;
constexpr std::uint8_t kZeroNonce[12] = {};

constexpr std::string_view kInfoId = "dfs v1 chunk-id";
constexpr std::string_view kInfoSeal = "dfs v1 chunk-seal";
constexpr std::string_view kInfoKeyCheck = "dfs v1 key-check";
constexpr std::string_view kInfoChunker = "dfs v1 chunker-seed";
constexpr std::string_view kInfoChunkKey = "dfs v1 chunk-key";

void Hkdf(ByteSpan ikm, ByteSpan info, std::uint8_t* out, std::size_t n) {
  CryptoPP::HKDF<CryptoPP::SHA256> hkdf;
  hkdf.DeriveKey(out, n, ikm.data(), ikm.size(), nullptr, 0, info.data(), info.size());
}

// The AES-256 key for one chunk: HKDF(seal key, "dfs v1 chunk-key" || id).
void ChunkKey(const std::array<std::uint8_t, 32>& seal_key, const ChunkId& id,
              std::uint8_t out[32]) {
  std::uint8_t info[kInfoChunkKey.size() + ChunkId::kSize];
  std::memcpy(info, kInfoChunkKey.data(), kInfoChunkKey.size());
  std::memcpy(info + kInfoChunkKey.size(), id.bytes().data(), ChunkId::kSize);
  Hkdf(ByteSpan(seal_key), ByteSpan(info, sizeof(info)), out, 32);
}

// AAD = envelope header || id.
void Aad(const std::uint8_t* header, const ChunkId& id, std::uint8_t out[]) {
  std::memcpy(out, header, VolumeCrypto::kEnvelopeHeaderSize);
  std::memcpy(out + VolumeCrypto::kEnvelopeHeaderSize, id.bytes().data(), ChunkId::kSize);
}

}  // namespace

VolumeCrypto::VolumeCrypto(const VolumeKey& key) {
  std::memcpy(master_.data(), key.secret().data(), master_.size());
  Hkdf(ByteSpan(master_), AsBytes(kInfoId), id_key_.data(), id_key_.size());
  Hkdf(ByteSpan(master_), AsBytes(kInfoSeal), seal_key_.data(), seal_key_.size());
  Hkdf(ByteSpan(master_), AsBytes(kInfoKeyCheck), key_check_.data(), key_check_.size());
  std::uint8_t seed[8];
  Hkdf(ByteSpan(master_), AsBytes(kInfoChunker), seed, sizeof(seed));
  for (int i = 7; i >= 0; --i) chunker_seed_ = chunker_seed_ << 8 | seed[i];
}

VolumeCrypto::~VolumeCrypto() {
  CryptoPP::SecureWipeBuffer(master_.data(), master_.size());
  CryptoPP::SecureWipeBuffer(id_key_.data(), id_key_.size());
  CryptoPP::SecureWipeBuffer(seal_key_.data(), seal_key_.size());
}

ChunkId VolumeCrypto::ComputeId(ByteSpan plaintext) const {
  CryptoPP::HMAC<CryptoPP::SHA256> hmac(id_key_.data(), id_key_.size());
  hmac.Update(plaintext.data(), plaintext.size());
  std::array<std::uint8_t, ChunkId::kSize> digest;
  hmac.Final(digest.data());
  return ChunkId(digest);
}

void VolumeCrypto::Seal(const ChunkId& id, ByteSpan plaintext, Bytes* out) const {
  out->resize(plaintext.size() + kOverhead);
  SealInto(id, plaintext, *out);
}

void VolumeCrypto::SealInto(const ChunkId& id, ByteSpan plaintext, MutableByteSpan out) const {
  if (out.size() != plaintext.size() + kOverhead) {
    throw std::logic_error("SealInto: output is not plaintext + kOverhead bytes");
  }
  std::uint8_t* header = out.data();
  std::memcpy(header, kMagic, 4);
  header[4] = kEnvelopeVersion;
  header[5] = kAlgAes256Gcm;
  header[6] = header[7] = 0;
  std::memcpy(header + 8, key_check_.data(), kKeyCheckSize);

  std::uint8_t key[32];
  ChunkKey(seal_key_, id, key);
  std::uint8_t aad[kEnvelopeHeaderSize + ChunkId::kSize];
  Aad(header, id, aad);
  CryptoPP::GCM<CryptoPP::AES>::Encryption gcm;
  gcm.SetKeyWithIV(key, sizeof(key), kZeroNonce, sizeof(kZeroNonce));
  gcm.EncryptAndAuthenticate(out.data() + kEnvelopeHeaderSize,
                             out.data() + kEnvelopeHeaderSize + plaintext.size(), kTagSize,
                             kZeroNonce, sizeof(kZeroNonce), aad, sizeof(aad), plaintext.data(),
                             plaintext.size());
  CryptoPP::SecureWipeBuffer(key, sizeof(key));
}

Status VolumeCrypto::Unseal(const ChunkId& id, ByteSpan sealed, Bytes* out) const {
  // Every failure leaves *out empty. It is not cleared up front: resizing a
  // reused buffer then only zero-fills what it grows by.
  Status s = Open(id, sealed, out);
  if (!s.ok()) out->clear();
  return s;
}

bool VolumeCrypto::EnvelopeKeyCheck(ByteSpan head, std::array<std::uint8_t, kKeyCheckSize>* out) {
  if (head.size() < kEnvelopeHeaderSize || std::memcmp(head.data(), kMagic, 4) != 0 ||
      head[4] != kEnvelopeVersion || head[5] != kAlgAes256Gcm) {
    return false;
  }
  std::copy_n(head.data() + 8, kKeyCheckSize, out->begin());
  return true;
}

Status VolumeCrypto::Open(const ChunkId& id, ByteSpan sealed, Bytes* out) const {
  if (sealed.size() < 4 || std::memcmp(sealed.data(), kMagic, 4) != 0) {
    return Status::Corrupt(fmt::format("chunk {} is not a sealed dfs chunk (bad magic)", id.ToHex()));
  }
  if (sealed.size() < kOverhead) {
    return Status::Corrupt(fmt::format("chunk {} is truncated ({} bytes)", id.ToHex(), sealed.size()));
  }
  const std::uint8_t* header = sealed.data();
  if (header[4] != kEnvelopeVersion || header[5] != kAlgAes256Gcm) {
    return Status::InvalidArgument(fmt::format(
        "chunk {} uses unsupported envelope version {} / algorithm {}", id.ToHex(), header[4],
        header[5]));
  }
  if (!CryptoPP::VerifyBufsEqual(header + 8, key_check_.data(), kKeyCheckSize)) {
    return Status::WrongKey(
        fmt::format("chunk {} was sealed under a different volume key", id.ToHex()));
  }
  std::size_t n = sealed.size() - kOverhead;
  std::uint8_t key[32];
  ChunkKey(seal_key_, id, key);
  std::uint8_t aad[kEnvelopeHeaderSize + ChunkId::kSize];
  Aad(header, id, aad);
  out->resize(n);
  CryptoPP::GCM<CryptoPP::AES>::Decryption gcm;
  gcm.SetKeyWithIV(key, sizeof(key), kZeroNonce, sizeof(kZeroNonce));
  bool ok = gcm.DecryptAndVerify(out->data(), sealed.data() + kEnvelopeHeaderSize + n, kTagSize,
                                 kZeroNonce, sizeof(kZeroNonce), aad, sizeof(aad),
                                 sealed.data() + kEnvelopeHeaderSize, n);
  CryptoPP::SecureWipeBuffer(key, sizeof(key));
  if (!ok) {
    CryptoPP::SecureWipeBuffer(out->data(), out->size());
    return Status::Corrupt(fmt::format("chunk {} failed authentication", id.ToHex()));
  }
  return Status::Ok();
}

Bytes VolumeCrypto::DeriveSubkey(std::string_view info, std::size_t size) const {
  Bytes out(size);
  Hkdf(ByteSpan(master_), AsBytes(info), out.data(), out.size());
  return out;
}

}  // namespace dfs::core
