// libFuzzer target: arbitrary bytes, split arbitrarily, into FrameDecoder.
// Checks that no frame exceeds its type's maximum and memory stays bounded.
#include <cstdlib>

#include "net/frame.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace dfs::net;
  if (size == 0) return 0;
  std::size_t step = 1 + data[0] % 64;  // first byte picks the split size
  FrameDecoder decoder;
  decoder.set_handshake_only(data[0] & 0x80);
  std::size_t pos = 1;
  while (pos < size) {
    std::size_t n = std::min(step, size - pos);
    ByteSpan piece(data + pos, n);
    pos += n;
    while (!piece.empty()) {
      std::optional<Frame> frame;
      if (decoder.Feed(&piece, &frame)) return 0;
      if (frame && frame->payload.size() > *MaxPayload(static_cast<std::uint8_t>(frame->type))) {
        std::abort();
      }
      if (decoder.buffered() > kHeaderSize + size) std::abort();
    }
  }
  return 0;
}
