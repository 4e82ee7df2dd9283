// Frames: the unit of the dfs wire protocol (docs/protocol.md).
//
//   offset size
//   0      1    version (1)
//   1      1    type (FrameType)
//   2      1    flags
//   3      1    reserved, zero
//   4      8    request id, little-endian (0: none)
//   12     4    payload length, little-endian
//   16     n    payload
//
// FrameDecoder is the seed's "custom decoder" done properly: it checks the
// version, the type and the length against the type's maximum before it
// allocates anything, and once it fails it stays failed (the connection is
// closed). Memory: one header and at most one frame's payload, grown only
// as its bytes arrive. It does no I/O.
// Not thread-safe: one decoder per connection, used by its reader.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <system_error>

#include "core/bytes.h"
#include "net/errors.h"

namespace dfs::net {

using core::ByteSpan;
using core::Bytes;
using core::MutableByteSpan;

enum class FrameType : std::uint8_t {
  kHello = 1,          // handshake message 1 (initiator -> responder), clear
  kHelloReply = 2,     // handshake message 2, clear
  kHelloFinish = 3,    // handshake message 3, clear
  kPing = 16,          // heartbeats; every frame from here on is sealed
  kPong = 17,
  kRequest = 32,       // a small request with a request id and a deadline
  kResponse = 33,
  kError = 34,
  kStreamOpen = 48,    // streams: many per connection, flow-controlled
  kStreamData = 49,
  kStreamCredit = 50,
  kStreamClose = 51,
  kStreamCancel = 52,
  kGossip = 64,        // one-way membership messages (announce, peer lists)
  kChunkRequest = 80,  // put or get one sealed chunk (up to 4 MiB)
  kChunkResponse = 81,
  kOpPull = 96,        // request: the sender's version vector ("send me what I lack")
  kOpPullReply = 97,   // response: a batch of sealed ops
  kOpPush = 98,        // one-way: new ops, as they commit
  kOpAck = 99,         // one-way, to an ops' origin: how far its ops are durable here
};

inline constexpr std::uint8_t kProtocolVersion = 1;
inline constexpr std::size_t kHeaderSize = 16;
inline constexpr std::size_t kSealOverhead = 16;  // GCM tag on sealed frames
// The largest payload of any type: a 4 MiB chunk, its envelope and stream framing.
inline constexpr std::uint32_t kMaxChunkFramePayload = (4u << 20) + (64u << 10);

// The largest payload a frame of `type` may declare (sealed frames include
// their tag), or nullopt for a type not in the table.
std::optional<std::uint32_t> MaxPayload(std::uint8_t type);

struct Frame {
  FrameType type = FrameType::kPing;
  std::uint8_t flags = 0;
  std::uint64_t request_id = 0;
  Bytes payload;
};

// The 16 header bytes of a frame (also the additional data of a sealed one).
void EncodeHeader(FrameType type, std::uint8_t flags, std::uint64_t request_id,
                  std::uint32_t payload_size, std::uint8_t out[kHeaderSize]);

// Header + payload. Fails (kFrameTooLarge) if the payload exceeds the type's
// maximum: we never send what a peer must refuse.
std::error_code EncodeFrame(const Frame& frame, Bytes* out);

class FrameDecoder {
 public:
  // Consumes bytes from the front of `*data` until one frame is complete
  // (then `*out` holds it and the rest of `*data` is left for the next call)
  // or `*data` is used up. Returns an error once a header is invalid; every
  // later call returns the same error.
  std::error_code Feed(ByteSpan* data, std::optional<Frame>* out);

  // Lets a payload land straight in the caller's memory instead of the
  // decoder's buffer (no copy): once a header is valid, `sink` is given it
  // (type, flags, request id) and the payload's length, and returns a span
  // of exactly that length or an empty span (then the decoder keeps it).
  // A frame that landed in a sink comes out with an empty payload.
  using PayloadSink = std::function<MutableByteSpan(const Frame& header, std::size_t length)>;
  void set_payload_sink(PayloadSink sink) { sink_ = std::move(sink); }
  // What is left to fill of a payload landing in a sink (else empty): the
  // caller may read into it directly and then account for it with Filled.
  MutableByteSpan SinkSpace() const;
  // `n` bytes were written at the front of SinkSpace(); `*out` holds the
  // frame once it is complete.
  void Filled(std::size_t n, std::optional<Frame>* out);

  // Before the handshake completes only handshake frames are accepted;
  // anything else fails the decoder (kHandshakeFailed).
  void set_handshake_only(bool on) { handshake_only_ = on; }

  bool failed() const { return static_cast<bool>(error_); }
  // Bytes held for the frame being assembled (for tests of the memory bound).
  std::size_t buffered() const { return header_fill_ + payload_fill_; }
  std::size_t capacity() const { return payload_.capacity(); }

 private:
  std::error_code error_;
  std::uint8_t header_[kHeaderSize] = {};
  std::size_t header_fill_ = 0;
  Frame frame_;
  Bytes payload_;
  PayloadSink sink_;
  MutableByteSpan sunk_;  // the sink's span for the frame being assembled
  std::size_t payload_fill_ = 0;
  std::size_t expected_ = 0;
  bool in_payload_ = false;
  bool handshake_only_ = false;

  void Complete(std::optional<Frame>* out);
};

}  // namespace dfs::net
