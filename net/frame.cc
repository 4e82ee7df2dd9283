#include "net/frame.h"

#include <algorithm>
#include <cstring>

namespace dfs::net {

std::optional<std::uint32_t> MaxPayload(std::uint8_t type) {
  constexpr std::uint32_t kTag = kSealOverhead;
  switch (static_cast<FrameType>(type)) {
    case FrameType::kHello:
    case FrameType::kHelloReply:
    case FrameType::kHelloFinish: return 256;
    case FrameType::kPing:
    case FrameType::kPong: return 64 + kTag;
    case FrameType::kRequest:
    case FrameType::kResponse: return (64u << 10) + kTag;
    case FrameType::kError: return (4u << 10) + kTag;
    case FrameType::kStreamOpen: return (4u << 10) + kTag;
    case FrameType::kStreamData: return kMaxChunkFramePayload + kTag;
    case FrameType::kStreamCredit: return 64 + kTag;
    case FrameType::kStreamClose:
    case FrameType::kStreamCancel: return (4u << 10) + kTag;
    case FrameType::kGossip: return (64u << 10) + kTag;
    case FrameType::kChunkRequest:
    case FrameType::kChunkResponse: return kMaxChunkFramePayload + kTag;
    case FrameType::kOpPull: return (64u << 10) + kTag;  // 4 + 40 per origin
    case FrameType::kOpPullReply:
    case FrameType::kOpPush: return kMaxChunkFramePayload + kTag;
    case FrameType::kOpAck: return 64 + kTag;
  }
  return std::nullopt;
}

void EncodeHeader(FrameType type, std::uint8_t flags, std::uint64_t request_id,
                  std::uint32_t payload_size, std::uint8_t out[kHeaderSize]) {
  out[0] = kProtocolVersion;
  out[1] = static_cast<std::uint8_t>(type);
  out[2] = flags;
  out[3] = 0;
  for (int i = 0; i < 8; ++i) out[4 + i] = static_cast<std::uint8_t>(request_id >> (8 * i));
  for (int i = 0; i < 4; ++i) out[12 + i] = static_cast<std::uint8_t>(payload_size >> (8 * i));
}

std::error_code EncodeFrame(const Frame& frame, Bytes* out) {
  std::optional<std::uint32_t> max = MaxPayload(static_cast<std::uint8_t>(frame.type));
  if (!max) return NetError::kUnknownType;
  if (frame.payload.size() > *max) return NetError::kFrameTooLarge;
  out->resize(kHeaderSize + frame.payload.size());
  EncodeHeader(frame.type, frame.flags, frame.request_id,
               static_cast<std::uint32_t>(frame.payload.size()), out->data());
  if (!frame.payload.empty()) {
    std::memcpy(out->data() + kHeaderSize, frame.payload.data(), frame.payload.size());
  }
  return {};
}

std::error_code FrameDecoder::Feed(ByteSpan* data, std::optional<Frame>* out) {
  out->reset();
  if (error_) return error_;
  while (!data->empty()) {
    if (!in_payload_) {
      std::size_t n = std::min(kHeaderSize - header_fill_, data->size());
      std::memcpy(header_ + header_fill_, data->data(), n);
      header_fill_ += n;
      *data = data->subspan(n);
      if (header_fill_ < kHeaderSize) return {};
      // Whole header: validate everything before allocating.
      if (header_[0] != kProtocolVersion) return error_ = NetError::kBadVersion;
      std::optional<std::uint32_t> max = MaxPayload(header_[1]);
      if (!max) return error_ = NetError::kUnknownType;
      if (header_[3] != 0) return error_ = NetError::kBadHeader;
      std::uint32_t len = 0;
      for (int i = 3; i >= 0; --i) len = len << 8 | header_[12 + i];
      if (len > *max) return error_ = NetError::kFrameTooLarge;
      frame_.type = static_cast<FrameType>(header_[1]);
      frame_.flags = header_[2];
      frame_.request_id = 0;
      for (int i = 7; i >= 0; --i) frame_.request_id = frame_.request_id << 8 | header_[4 + i];
      if (handshake_only_ && frame_.type != FrameType::kHello &&
          frame_.type != FrameType::kHelloReply && frame_.type != FrameType::kHelloFinish) {
        return error_ = NetError::kHandshakeFailed;
      }
      expected_ = len;
      payload_fill_ = 0;
      in_payload_ = true;
      sunk_ = {};
      if (sink_ && len > 0) {
        sunk_ = sink_(frame_, len);
        if (sunk_.size() != len) sunk_ = {};
      }
      // Grow with the bytes that actually arrive: a peer that declares 4 MiB
      // and sends nothing costs nothing.
      payload_ = Bytes();
      if (sunk_.empty()) payload_.reserve(std::min<std::size_t>(len, 64 << 10));
    }
    std::size_t n = std::min(expected_ - payload_fill_, data->size());
    if (n > 0 && !sunk_.empty()) {
      std::memcpy(sunk_.data() + payload_fill_, data->data(), n);
    } else if (n > 0) {
      std::size_t at = payload_.size();
      payload_.resize(at + n);
      std::memcpy(payload_.data() + at, data->data(), n);
    }
    *data = data->subspan(n);
    Filled(n, out);
    if (*out) return {};
  }
  return {};
}

MutableByteSpan FrameDecoder::SinkSpace() const {
  if (!in_payload_ || sunk_.empty()) return {};
  return sunk_.subspan(payload_fill_);
}

void FrameDecoder::Filled(std::size_t n, std::optional<Frame>* out) {
  payload_fill_ += n;
  if (payload_fill_ == expected_) Complete(out);
}

void FrameDecoder::Complete(std::optional<Frame>* out) {
  frame_.payload = std::move(payload_);
  payload_ = Bytes();
  *out = std::move(frame_);
  frame_ = Frame();
  header_fill_ = 0;
  payload_fill_ = 0;
  in_payload_ = false;
  sunk_ = {};
}

}  // namespace dfs::net
