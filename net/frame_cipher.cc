#include "net/frame_cipher.h"

#include <cstring>
#include <limits>

#include <cryptopp/aes.h>
#include <cryptopp/gcm.h>
#include <cryptopp/misc.h>

namespace dfs::net {
namespace {

void Nonce(std::uint64_t counter, std::uint8_t out[12]) {
  std::memset(out, 0, 4);
  for (int i = 0; i < 8; ++i) out[4 + i] = static_cast<std::uint8_t>(counter >> (56 - 8 * i));
}

}  // namespace

FrameSealer::FrameSealer(const SessionKey& key) : key_(key) {}
FrameSealer::~FrameSealer() { CryptoPP::SecureWipeBuffer(key_.data(), key_.size()); }

std::error_code FrameSealer::Seal(const Frame& frame, Bytes* out) {
  std::optional<std::uint32_t> max = MaxPayload(static_cast<std::uint8_t>(frame.type));
  if (!max) return NetError::kUnknownType;
  if (frame.payload.size() + kSealOverhead > *max) return NetError::kFrameTooLarge;
  if (counter_ == std::numeric_limits<std::uint64_t>::max()) return NetError::kCounterExhausted;
  const std::size_t n = frame.payload.size();
  out->resize(kHeaderSize + n + kSealOverhead);
  EncodeHeader(frame.type, frame.flags, frame.request_id,
               static_cast<std::uint32_t>(n + kSealOverhead), out->data());
  std::uint8_t nonce[12];
  Nonce(counter_++, nonce);
  CryptoPP::GCM<CryptoPP::AES>::Encryption gcm;
  gcm.SetKeyWithIV(key_.data(), key_.size(), nonce, sizeof(nonce));
  gcm.EncryptAndAuthenticate(out->data() + kHeaderSize, out->data() + kHeaderSize + n,
                             kSealOverhead, nonce, sizeof(nonce), out->data(), kHeaderSize,
                             frame.payload.data(), n);
  return {};
}

FrameOpener::FrameOpener(const SessionKey& key) : key_(key) {}
FrameOpener::~FrameOpener() { CryptoPP::SecureWipeBuffer(key_.data(), key_.size()); }

std::error_code FrameOpener::Open(Frame* frame) {
  if (frame->payload.size() < kSealOverhead) {
    frame->payload.clear();
    return NetError::kAuthFailed;
  }
  if (counter_ == std::numeric_limits<std::uint64_t>::max()) return NetError::kCounterExhausted;
  const std::size_t n = frame->payload.size() - kSealOverhead;
  std::uint8_t header[kHeaderSize];
  EncodeHeader(frame->type, frame->flags, frame->request_id,
               static_cast<std::uint32_t>(frame->payload.size()), header);
  std::uint8_t nonce[12];
  Nonce(counter_, nonce);
  CryptoPP::GCM<CryptoPP::AES>::Decryption gcm;
  gcm.SetKeyWithIV(key_.data(), key_.size(), nonce, sizeof(nonce));
  Bytes plain(n);
  bool ok = gcm.DecryptAndVerify(plain.data(), frame->payload.data() + n, kSealOverhead, nonce,
                                 sizeof(nonce), header, kHeaderSize, frame->payload.data(), n);
  if (!ok) {
    frame->payload.clear();
    return NetError::kAuthFailed;
  }
  ++counter_;  // only an authentic frame advances the expected counter
  frame->payload = std::move(plain);
  return {};
}

}  // namespace dfs::net
