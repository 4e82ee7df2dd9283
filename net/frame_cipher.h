// Sealing of frames after the handshake: AES-256-GCM, one key per direction,
// 96-bit nonce = 4 zero bytes || 64-bit big-endian frame counter. The 16
// header bytes are the additional data; the payload becomes ciphertext ||
// tag. The counter is implicit (both sides count), so a replayed, dropped,
// reordered or forged frame fails to open. Not thread-safe: the writer owns
// the sealer, the reader the opener.
#pragma once

#include <array>
#include <cstdint>
#include <system_error>

#include "net/frame.h"

namespace dfs::net {

using SessionKey = std::array<std::uint8_t, 32>;

class FrameSealer {
 public:
  explicit FrameSealer(const SessionKey& key);
  ~FrameSealer();
  // Encodes `frame` sealed into `*out` (header + ciphertext + tag).
  // Errors: kFrameTooLarge, kUnknownType, kCounterExhausted.
  std::error_code Seal(const Frame& frame, Bytes* out);
  // The same for a frame given by its parts: a stream piece is sealed
  // straight from the message it is cut from.
  std::error_code Seal(FrameType type, std::uint8_t flags, std::uint64_t request_id,
                       ByteSpan payload, Bytes* out);

 private:
  SessionKey key_;
  std::uint64_t counter_ = 0;
};

class FrameOpener {
 public:
  explicit FrameOpener(const SessionKey& key);
  ~FrameOpener();
  // Opens a frame whose payload is ciphertext || tag, in place. Errors:
  // kAuthFailed (and the frame's payload is cleared), kCounterExhausted.
  std::error_code Open(Frame* frame);
  // The same for a frame whose sealed payload is `sealed` (its header's
  // fields given): the plaintext is left in its first size() - kSealOverhead
  // bytes.
  std::error_code Open(const Frame& header, MutableByteSpan sealed);

 private:
  SessionKey key_;
  std::uint64_t counter_ = 0;
};

}  // namespace dfs::net
