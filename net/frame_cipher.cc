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
  return Seal(frame.type, frame.flags, frame.request_id, frame.payload, out);
}

std::error_code FrameSealer::Seal(FrameType type, std::uint8_t flags, std::uint64_t request_id,
                                  ByteSpan payload, Bytes* out) {
  std::optional<std::uint32_t> max = MaxPayload(static_cast<std::uint8_t>(type));
  if (!max) return NetError::kUnknownType;
  if (payload.size() + kSealOverhead > *max) return NetError::kFrameTooLarge;
  if (counter_ == std::numeric_limits<std::uint64_t>::max()) return NetError::kCounterExhausted;
  const std::size_t n = payload.size();
  out->resize(kHeaderSize + n + kSealOverhead);
  EncodeHeader(type, flags, request_id, static_cast<std::uint32_t>(n + kSealOverhead),
               out->data());
  std::uint8_t nonce[12];
  Nonce(counter_++, nonce);
  CryptoPP::GCM<CryptoPP::AES>::Encryption gcm;
  gcm.SetKeyWithIV(key_.data(), key_.size(), nonce, sizeof(nonce));
  gcm.EncryptAndAuthenticate(out->data() + kHeaderSize, out->data() + kHeaderSize + n,
                             kSealOverhead, nonce, sizeof(nonce), out->data(), kHeaderSize,
                             payload.data(), n);
  return {};
}

FrameOpener::FrameOpener(const SessionKey& key) : key_(key) {}
FrameOpener::~FrameOpener() { CryptoPP::SecureWipeBuffer(key_.data(), key_.size()); }

std::error_code FrameOpener::Open(Frame* frame) {
  std::error_code ec = Open(*frame, frame->payload);
  if (ec == NetError::kAuthFailed) {
    frame->payload.clear();
  } else if (!ec) {
    frame->payload.resize(frame->payload.size() - kSealOverhead);
  }
  return ec;
}

std::error_code FrameOpener::Open(const Frame& header_of, MutableByteSpan sealed) {
  if (sealed.size() < kSealOverhead) return NetError::kAuthFailed;
  if (counter_ == std::numeric_limits<std::uint64_t>::max()) return NetError::kCounterExhausted;
  const std::size_t n = sealed.size() - kSealOverhead;
  std::uint8_t header[kHeaderSize];
  EncodeHeader(header_of.type, header_of.flags, header_of.request_id,
               static_cast<std::uint32_t>(sealed.size()), header);
  std::uint8_t nonce[12];
  Nonce(counter_, nonce);
  CryptoPP::GCM<CryptoPP::AES>::Decryption gcm;
  gcm.SetKeyWithIV(key_.data(), key_.size(), nonce, sizeof(nonce));
  // In place: GCM authenticates each block of ciphertext before it
  // decrypts it over itself; a failed frame closes the connection.
  std::uint8_t* data = sealed.data();
  if (!gcm.DecryptAndVerify(data, data + n, kSealOverhead, nonce, sizeof(nonce), header,
                            kHeaderSize, data, n)) {
    return NetError::kAuthFailed;
  }
  ++counter_;  // only an authentic frame advances the expected counter
  return {};
}

}  // namespace dfs::net
