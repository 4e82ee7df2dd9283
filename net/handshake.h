// The connection handshake: ephemeral X25519 with the network key mixed in
// through HKDF, in the manner of Noise's pre-shared-key modes, as two state
// machines that do no I/O (docs/protocol.md, "Handshake").
//
//   1. I -> R  kHello:       version, e_i (32), n_i (16)
//   2. R -> I  kHelloReply:  e_r (32), n_r (16), proof_r (32)
//   3. I -> R  kHelloFinish: proof_i (32)
//
//   th   = SHA-256("dfs v1 handshake" || msg1 || e_r || n_r)
//   keys = HKDF-SHA256(ikm = X25519(e_i, e_r), salt = network key,
//                      info = "dfs v1 session" || th), 128 bytes:
//          confirm_i, confirm_r, send_i2r, send_r2i
//   proof_r = HMAC-SHA256(confirm_r, th || "responder")
//   proof_i = HMAC-SHA256(confirm_i, th || "initiator")
//
// A peer without the network key cannot produce either proof; each side
// checks the other's in constant time before it trusts anything. Only the
// initiator's proof makes a responder treat it as a member.
// Not thread-safe; one per connection attempt.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <system_error>

#include "net/frame.h"
#include "net/frame_cipher.h"

namespace dfs::net {

using NetworkKey = std::array<std::uint8_t, 32>;

struct SessionKeys {
  SessionKey send;     // seals what this side sends
  SessionKey receive;  // opens what it receives
};

class HandshakeInitiator {
 public:
  explicit HandshakeInitiator(const NetworkKey& network_key);
  ~HandshakeInitiator();

  // Message 1 (payload of a kHello frame).
  Bytes Start();
  // Consumes message 2; on success returns message 3 and the keys are ready.
  // Errors: kHandshakeFailed (malformed, or out of order), kWeakKey, kBadProof.
  std::error_code OnReply(ByteSpan reply, Bytes* finish);
  const std::optional<SessionKeys>& keys() const { return keys_; }

 private:
  NetworkKey psk_;
  std::array<std::uint8_t, 32> secret_{};
  Bytes msg1_;
  bool done_ = false;
  std::optional<SessionKeys> keys_;
};

class HandshakeResponder {
 public:
  explicit HandshakeResponder(const NetworkKey& network_key);
  ~HandshakeResponder();

  // Consumes message 1; returns message 2. Errors: kBadVersion,
  // kHandshakeFailed, kWeakKey.
  std::error_code OnHello(ByteSpan hello, Bytes* reply);
  // Consumes message 3; on success the keys are ready and the peer is a member.
  // Errors: kHandshakeFailed, kBadProof.
  std::error_code OnFinish(ByteSpan finish);
  const std::optional<SessionKeys>& keys() const { return keys_; }

 private:
  NetworkKey psk_;
  std::array<std::uint8_t, 32> expected_proof_{};
  std::optional<SessionKeys> pending_;
  std::optional<SessionKeys> keys_;
};

}  // namespace dfs::net
