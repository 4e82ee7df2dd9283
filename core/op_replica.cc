#include "core/op_replica.h"

#include <cstring>

#include <cryptopp/aes.h>
#include <cryptopp/gcm.h>
#include <cryptopp/misc.h>

#include "core/io.h"
#include <fmt/format.h>

#include "core/encoding.h"
#include "core/file_server.h"
#include "core/volume_crypto.h"

namespace dfs::core {
namespace {

constexpr char kMagic[4] = {'D', 'F', 'S', 'X'};
constexpr std::uint8_t kVersion = 1;
constexpr std::uint8_t kAlgAes256Gcm = 1;
constexpr std::string_view kInfoOpSeal = "dfs v1 op-seal";

// Additional data: header || origin || seq (LE).
constexpr std::size_t kAadSize = OpSealer::kHeaderSize + NodeId::kSize + 8;
void Aad(const std::uint8_t* header, const NodeId& origin, std::uint64_t seq,
         std::uint8_t out[kAadSize]) {
  std::memcpy(out, header, OpSealer::kHeaderSize);
  std::memcpy(out + OpSealer::kHeaderSize, origin.bytes().data(), NodeId::kSize);
  StoreLe(out + OpSealer::kHeaderSize + NodeId::kSize, seq, 8);
}

}  // namespace

OpSealer::OpSealer(const VolumeCrypto& crypto) {
  Bytes k = crypto.DeriveSubkey(kInfoOpSeal, key_.size());
  std::memcpy(key_.data(), k.data(), key_.size());
  CryptoPP::SecureWipeBuffer(k.data(), k.size());
  std::memcpy(key_check_.data(), crypto.key_check().data(), key_check_.size());
}

OpSealer::~OpSealer() { CryptoPP::SecureWipeBuffer(key_.data(), key_.size()); }

Bytes OpSealer::Seal(const NodeId& origin, std::uint64_t seq, ByteSpan plain) const {
  Bytes out(plain.size() + kOverhead);
  std::uint8_t* header = out.data();
  std::memcpy(header, kMagic, 4);
  header[4] = kVersion;
  header[5] = kAlgAes256Gcm;
  header[6] = header[7] = 0;
  std::memcpy(header + 8, key_check_.data(), key_check_.size());
  std::uint8_t* nonce = out.data() + kHeaderSize;
  // A random nonce: an (origin, seq) pair can be reused with other content
  // by a node that lost its log, so nothing derived from it may be the nonce.
  FillRandom(nonce, kNonceSize);
  std::uint8_t aad[kAadSize];
  Aad(header, origin, seq, aad);
  CryptoPP::GCM<CryptoPP::AES>::Encryption gcm;
  gcm.SetKeyWithIV(key_.data(), key_.size(), nonce, kNonceSize);
  std::uint8_t* ct = nonce + kNonceSize;
  gcm.EncryptAndAuthenticate(ct, ct + plain.size(), kTagSize, nonce, kNonceSize, aad, sizeof(aad),
                             plain.data(), plain.size());
  return out;
}

Result<Bytes> OpSealer::Unseal(const NodeId& origin, std::uint64_t seq, ByteSpan blob) const {
  auto name = [&] { return fmt::format("op {} of node {}", seq, origin.ToHex().substr(0, 8)); };
  if (blob.size() < kOverhead || std::memcmp(blob.data(), kMagic, 4) != 0) {
    return Status::Corrupt(name() + " is not a sealed dfs op");
  }
  if (blob[4] != kVersion || blob[5] != kAlgAes256Gcm) {
    return Status::InvalidArgument(
        fmt::format("{} uses unsupported envelope version {} / algorithm {}", name(), blob[4], blob[5]));
  }
  if (!CryptoPP::VerifyBufsEqual(blob.data() + 8, key_check_.data(), key_check_.size())) {
    return Status::WrongKey(name() + " was sealed under a different volume key");
  }
  const std::uint8_t* nonce = blob.data() + kHeaderSize;
  const std::uint8_t* ct = nonce + kNonceSize;
  std::size_t n = blob.size() - kOverhead;
  std::uint8_t aad[kAadSize];
  Aad(blob.data(), origin, seq, aad);
  Bytes plain(n);
  CryptoPP::GCM<CryptoPP::AES>::Decryption gcm;
  gcm.SetKeyWithIV(key_.data(), key_.size(), nonce, kNonceSize);
  if (!gcm.DecryptAndVerify(plain.data(), ct + n, kTagSize, nonce, kNonceSize, aad, sizeof(aad),
                            ct, n)) {
    return Status::Corrupt(name() + " failed authentication");
  }
  return plain;
}

VolumeOpLog::VolumeOpLog(FileServer& files) : files_(files), sealer_(files.crypto()) {}

// Our own ops are shown to peers only once durable (FileServer::Flush): a
// power loss could otherwise lose an op a peer holds and reuse its number.
Result<VersionVector> VolumeOpLog::Vector() {
  DFS_ASSIGN_OR_RETURN(VersionVector v, files_.index().Vector());
  v.Cap(files_.node_id(), files_.DurableSeq());
  return v;
}

Result<VersionVector> VolumeOpLog::VectorFor(const KeyCheck& key_check) {
  if (key_check != sealer_.key_check()) return VersionVector();
  return Vector();
}

Result<AcceptResult> VolumeOpLog::Accept(const SealedOp& sealed) {
  DFS_ASSIGN_OR_RETURN(Bytes plain, sealer_.Unseal(sealed.origin, sealed.seq, sealed.blob));
  DFS_ASSIGN_OR_RETURN(Op op, Op::Decode(plain));
  if (op.origin != sealed.origin || op.seq != sealed.seq) {
    return Status::Corrupt(fmt::format("op {} of node {} carries another position ({} of {})",
                                       sealed.seq, sealed.origin.ToHex().substr(0, 8), op.seq,
                                       op.origin.ToHex().substr(0, 8)));
  }
  Result<bool> applied = files_.ApplyRemoteOp(op);
  if (!applied.ok()) {
    if (applied.status().code() == ErrorCode::kUnavailable) return AcceptResult::kGap;
    return applied.status();
  }
  return *applied ? AcceptResult::kApplied : AcceptResult::kDuplicate;
}

Status VolumeOpLog::Sync() { return files_.index().SyncLog(); }

Result<std::vector<SealedOp>> VolumeOpLog::Since(const NodeId& origin, std::uint64_t from_seq,
                                                 std::size_t max_bytes) {
  std::vector<SealedOp> out;
  std::size_t bytes = 0;
  const std::uint64_t last = origin == files_.node_id() ? files_.DurableSeq() : UINT64_MAX;
  while (bytes < max_bytes && from_seq <= last) {
    DFS_ASSIGN_OR_RETURN(std::vector<Op> ops, files_.index().OpsSince(origin, from_seq, 64));
    if (ops.empty()) break;
    for (const Op& op : ops) {
      if (op.seq > last) return out;
      if (bytes >= max_bytes && !out.empty()) break;
      out.push_back(SealLocal(op));
      bytes += out.back().blob.size();
      from_seq = op.seq + 1;
    }
    if (ops.size() < 64) break;
  }
  return out;
}

SealedOp VolumeOpLog::SealLocal(const Op& op) const {
  return SealedOp{op.origin, op.seq, sealer_.Seal(op.origin, op.seq, op.Encode())};
}

}  // namespace dfs::core
