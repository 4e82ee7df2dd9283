// libFuzzer target: arbitrary bytes, split arbitrarily, into FrameDecoder.
// Checks that no frame exceeds its type's maximum and memory stays bounded.
// The first byte also picks whether a payload sink takes the StreamData
// payloads of odd request ids (as a Connection's streams do) and whether
// their rest is written straight into SinkSpace(): a sunk frame must come
// out with an empty payload, and the sink's span must be exactly filled.
#include <cstdlib>
#include <cstring>

#include "net/frame.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace dfs::net;
  if (size == 0) return 0;
  std::size_t step = 1 + data[0] % 32;  // the low bits pick the split size
  FrameDecoder decoder;
  decoder.set_handshake_only(data[0] & 0x80);
  const bool direct = data[0] & 0x20;
  Bytes landing;
  bool sinking = false;
  if (data[0] & 0x40) {
    decoder.set_payload_sink([&](const Frame& header, std::size_t length) -> MutableByteSpan {
      if (sinking) std::abort();  // offered twice for one frame
      if (header.type != FrameType::kStreamData || (header.request_id & 1) == 0) return {};
      landing.assign(length, 0);
      sinking = true;
      return landing;
    });
  }
  auto check = [&](const std::optional<Frame>& frame) {
    if (!frame) return;
    if (frame->payload.size() > *MaxPayload(static_cast<std::uint8_t>(frame->type))) std::abort();
    if (sinking && !frame->payload.empty()) std::abort();
    sinking = false;
  };
  std::size_t pos = 1;
  while (pos < size) {
    std::size_t n = std::min(step, size - pos);
    if (MutableByteSpan space = decoder.SinkSpace(); direct && !space.empty()) {
      n = std::min(n, space.size());
      std::memcpy(space.data(), data + pos, n);
      pos += n;
      std::optional<Frame> frame;
      decoder.Filled(n, &frame);
      check(frame);
      continue;
    }
    ByteSpan piece(data + pos, n);
    pos += n;
    while (!piece.empty()) {
      std::optional<Frame> frame;
      if (decoder.Feed(&piece, &frame)) return 0;
      check(frame);
      if (decoder.buffered() > kHeaderSize + size) std::abort();
    }
  }
  return 0;
}
