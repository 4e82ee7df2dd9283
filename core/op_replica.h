// Op replication without the network: what a node holds of the volume's op
// log, in the form that travels between nodes.
//
// Ops travel sealed (SealedOp): origin and sequence number in the clear, so
// that every node — a keyless storage peer too — can keep each origin's ops
// in order, swap version vectors and stream what a peer lacks; the op itself
// (key, time, manifest) is sealed under the volume key (OpSealer), so a
// keyless peer stores and forwards ciphertext it cannot read.
//
//   OpReplica      the interface the network layer (net/op_sync.h) drives.
//   VolumeOpLog    a node with the volume key: unseals and applies each op
//                  to its FileServer (which keeps the plain ops in its index)
//                  and seals what it sends.
//   OpStore        (core/op_store.h) a keyless node: stores the sealed ops.
//
// Thread safety: implementations are thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "core/bytes.h"
#include "core/node_id.h"
#include "core/op_log.h"
#include "core/status.h"

namespace dfs::core {

class FileServer;
class VolumeCrypto;

struct SealedOp {
  NodeId origin;
  std::uint64_t seq = 0;
  Bytes blob;  // OpSealer envelope of Op::Encode()
};

enum class AcceptResult {
  kApplied,    // new: stored (and applied, on a node with the key)
  kDuplicate,  // already held
  kGap,        // an earlier op of its origin is missing: fetch those first
};

// The 8 bytes that name a volume key in every envelope sealed under it
// (VolumeCrypto::key_check): chunks and ops of one volume carry the same.
using KeyCheck = std::array<std::uint8_t, 8>;

class OpReplica {
 public:
  virtual ~OpReplica() = default;
  // Highest contiguous sequence number held per origin.
  virtual Result<VersionVector> Vector() = 0;
  // The same, for the origins whose ops are sealed under the volume key
  // `key_check` names (a node writes under one key, so each origin's ops
  // all carry the same).
  virtual Result<VersionVector> VectorFor(const KeyCheck& key_check) = 0;
  // Takes one op from a peer. Errors: kCorrupt / kWrongKey (a blob that does
  // not open under this volume's key), kNoSpace, kIo.
  virtual Result<AcceptResult> Accept(const SealedOp& op) = 0;
  // Makes every op Accept took so far durable (before a node acknowledges
  // them to their origin).
  virtual Status Sync() = 0;
  // `origin`'s ops from `from_seq` on, in order, until about `max_bytes`
  // of blobs (at least one op when there is one).
  virtual Result<std::vector<SealedOp>> Since(const NodeId& origin, std::uint64_t from_seq,
                                              std::size_t max_bytes) = 0;
};

// The sealed-op envelope (docs/format.md, "sealed op"): magic "DFSX",
// version 1, algorithm 1 (AES-256-GCM), 2 reserved bytes, the volume's
// 8-byte key check, a random 12-byte nonce, ciphertext, 16-byte tag. The
// key is HKDF(volume key, "dfs v1 op-seal"); the additional data is the
// 16-byte header || origin || seq (little-endian), so a blob cannot be
// replayed under another origin or position.
class OpSealer {
 public:
  static constexpr std::size_t kHeaderSize = 16;
  static constexpr std::size_t kNonceSize = 12;
  static constexpr std::size_t kTagSize = 16;
  static constexpr std::size_t kOverhead = kHeaderSize + kNonceSize + kTagSize;

  explicit OpSealer(const VolumeCrypto& crypto);
  ~OpSealer();
  OpSealer(const OpSealer&) = delete;
  OpSealer& operator=(const OpSealer&) = delete;

  Bytes Seal(const NodeId& origin, std::uint64_t seq, ByteSpan plain) const;
  // Errors: kWrongKey (sealed under another volume key), kCorrupt (bad
  // framing or failed authentication), kInvalidArgument (unknown version).
  Result<Bytes> Unseal(const NodeId& origin, std::uint64_t seq, ByteSpan blob) const;
  const KeyCheck& key_check() const { return key_check_; }

 private:
  std::array<std::uint8_t, 32> key_{};
  KeyCheck key_check_{};
};

class VolumeOpLog final : public OpReplica {
 public:
  explicit VolumeOpLog(FileServer& files);

  Result<VersionVector> Vector() override;
  // Vector() for this volume's key check; empty for any other (a node with
  // the key refuses ops sealed under another).
  Result<VersionVector> VectorFor(const KeyCheck& key_check) override;
  Result<AcceptResult> Accept(const SealedOp& op) override;
  // Syncs the index's log (applied ops commit without waiting for the disk).
  Status Sync() override;
  Result<std::vector<SealedOp>> Since(const NodeId& origin, std::uint64_t from_seq,
                                      std::size_t max_bytes) override;

  const KeyCheck& key_check() const { return sealer_.key_check(); }

  // Seals one of this node's ops for broadcast.
  SealedOp SealLocal(const Op& op) const;

 private:
  FileServer& files_;
  OpSealer sealer_;
};

}  // namespace dfs::core
