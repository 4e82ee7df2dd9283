#include "net/handshake.h"

#include <cstring>

#include <cryptopp/hkdf.h>
#include <cryptopp/hmac.h>
#include <cryptopp/misc.h>
#include <cryptopp/osrng.h>
#include <cryptopp/sha.h>
#include <cryptopp/xed25519.h>

namespace dfs::net {
namespace {

constexpr std::size_t kKey = 32;
constexpr std::size_t kNonce = 16;
constexpr std::size_t kProof = 32;
constexpr std::size_t kMsg1 = 1 + kKey + kNonce;
constexpr std::size_t kMsg2 = kKey + kNonce + kProof;
constexpr std::size_t kMsg3 = kProof;

struct Derived {
  std::array<std::uint8_t, 32> th{};
  std::array<std::uint8_t, 32> confirm_i{}, confirm_r{};
  SessionKey i2r{}, r2i{};
  ~Derived() {
    CryptoPP::SecureWipeBuffer(confirm_i.data(), 32);
    CryptoPP::SecureWipeBuffer(confirm_r.data(), 32);
    CryptoPP::SecureWipeBuffer(i2r.data(), 32);
    CryptoPP::SecureWipeBuffer(r2i.data(), 32);
  }
};

// Computes the shared secret and the whole key schedule. False for a weak
// (low-order) peer key or an all-zero shared secret.
bool Derive(const NetworkKey& psk, const std::uint8_t* my_secret, const std::uint8_t* their_public,
            ByteSpan msg1, const std::uint8_t* e_r_and_nonce, Derived* d) {
  CryptoPP::x25519 x;
  if (x.IsSmallOrder(their_public)) return false;
  std::uint8_t shared[kKey];
  if (!x.Agree(shared, my_secret, their_public, /*validateOtherPublicKey=*/true)) return false;
  static constexpr std::uint8_t kZero[kKey] = {};
  if (CryptoPP::VerifyBufsEqual(shared, kZero, kKey)) return false;

  static constexpr std::string_view kLabel = "dfs v1 handshake";
  CryptoPP::SHA256 sha;
  sha.Update(reinterpret_cast<const std::uint8_t*>(kLabel.data()), kLabel.size());
  sha.Update(msg1.data(), msg1.size());
  sha.Update(e_r_and_nonce, kKey + kNonce);
  sha.Final(d->th.data());

  static constexpr std::string_view kInfo = "dfs v1 session";
  std::uint8_t info[kInfo.size() + 32];
  std::memcpy(info, kInfo.data(), kInfo.size());
  std::memcpy(info + kInfo.size(), d->th.data(), 32);
  std::uint8_t okm[128];
  CryptoPP::HKDF<CryptoPP::SHA256>().DeriveKey(okm, sizeof(okm), shared, sizeof(shared), psk.data(),
                                               psk.size(), info, sizeof(info));
  std::memcpy(d->confirm_i.data(), okm, 32);
  std::memcpy(d->confirm_r.data(), okm + 32, 32);
  std::memcpy(d->i2r.data(), okm + 64, 32);
  std::memcpy(d->r2i.data(), okm + 96, 32);
  CryptoPP::SecureWipeBuffer(okm, sizeof(okm));
  CryptoPP::SecureWipeBuffer(shared, sizeof(shared));
  return true;
}

void Proof(const std::array<std::uint8_t, 32>& key, const std::array<std::uint8_t, 32>& th,
           std::string_view role, std::uint8_t out[kProof]) {
  CryptoPP::HMAC<CryptoPP::SHA256> hmac(key.data(), key.size());
  hmac.Update(th.data(), th.size());
  hmac.Update(reinterpret_cast<const std::uint8_t*>(role.data()), role.size());
  hmac.Final(out);
}

}  // namespace

HandshakeInitiator::HandshakeInitiator(const NetworkKey& network_key) : psk_(network_key) {}
HandshakeInitiator::~HandshakeInitiator() {
  CryptoPP::SecureWipeBuffer(secret_.data(), secret_.size());
  CryptoPP::SecureWipeBuffer(psk_.data(), psk_.size());
}

Bytes HandshakeInitiator::Start() {
  CryptoPP::AutoSeededRandomPool rng;
  CryptoPP::x25519 x;
  msg1_.assign(kMsg1, 0);
  msg1_[0] = kProtocolVersion;
  x.GeneratePrivateKey(rng, secret_.data());
  x.GeneratePublicKey(rng, secret_.data(), msg1_.data() + 1);
  rng.GenerateBlock(msg1_.data() + 1 + kKey, kNonce);
  return msg1_;
}

std::error_code HandshakeInitiator::OnReply(ByteSpan reply, Bytes* finish) {
  if (msg1_.empty() || done_) return NetError::kHandshakeFailed;
  done_ = true;  // one reply only, right or wrong
  if (reply.size() != kMsg2) return NetError::kHandshakeFailed;
  Derived d;
  if (!Derive(psk_, secret_.data(), reply.data(), msg1_, reply.data(), &d)) {
    return NetError::kWeakKey;
  }
  std::uint8_t want[kProof];
  Proof(d.confirm_r, d.th, "responder", want);
  if (!CryptoPP::VerifyBufsEqual(want, reply.data() + kKey + kNonce, kProof)) {
    return NetError::kBadProof;
  }
  finish->assign(kMsg3, 0);
  Proof(d.confirm_i, d.th, "initiator", finish->data());
  keys_ = SessionKeys{d.i2r, d.r2i};
  return {};
}

HandshakeResponder::HandshakeResponder(const NetworkKey& network_key) : psk_(network_key) {}
HandshakeResponder::~HandshakeResponder() {
  CryptoPP::SecureWipeBuffer(psk_.data(), psk_.size());
  CryptoPP::SecureWipeBuffer(expected_proof_.data(), expected_proof_.size());
}

std::error_code HandshakeResponder::OnHello(ByteSpan hello, Bytes* reply) {
  if (pending_ || keys_) return NetError::kHandshakeFailed;
  if (hello.size() != kMsg1) return NetError::kHandshakeFailed;
  if (hello[0] != kProtocolVersion) return NetError::kBadVersion;
  CryptoPP::AutoSeededRandomPool rng;
  CryptoPP::x25519 x;
  std::uint8_t secret[kKey];
  reply->assign(kMsg2, 0);
  x.GeneratePrivateKey(rng, secret);
  x.GeneratePublicKey(rng, secret, reply->data());
  rng.GenerateBlock(reply->data() + kKey, kNonce);
  Derived d;
  bool ok = Derive(psk_, secret, hello.data() + 1, hello, reply->data(), &d);
  CryptoPP::SecureWipeBuffer(secret, sizeof(secret));
  if (!ok) {
    reply->clear();
    return NetError::kWeakKey;
  }
  Proof(d.confirm_r, d.th, "responder", reply->data() + kKey + kNonce);
  Proof(d.confirm_i, d.th, "initiator", expected_proof_.data());
  pending_ = SessionKeys{d.r2i, d.i2r};
  return {};
}

std::error_code HandshakeResponder::OnFinish(ByteSpan finish) {
  if (!pending_ || keys_) return NetError::kHandshakeFailed;
  std::optional<SessionKeys> pending = std::move(pending_);
  pending_.reset();  // one attempt only
  if (finish.size() != kMsg3) return NetError::kHandshakeFailed;
  if (!CryptoPP::VerifyBufsEqual(expected_proof_.data(), finish.data(), kProof)) {
    return NetError::kBadProof;
  }
  keys_ = std::move(pending);
  return {};
}

}  // namespace dfs::net
