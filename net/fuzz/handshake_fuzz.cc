// libFuzzer target: hostile handshake messages and sealed frames. A peer
// without the network key must never complete a handshake, and no input may
// crash either side.
#include <cstdlib>

#include "net/frame_cipher.h"
#include "net/handshake.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace dfs::net;
  NetworkKey psk;
  psk.fill(0x5a);
  std::size_t half = size / 2;
  dfs::core::ByteSpan first(data, half), second(data + half, size - half);

  // As responder: fuzz bytes are message 1 and message 3.
  HandshakeResponder responder(psk);
  Bytes reply;
  if (!responder.OnHello(first, &reply)) {
    if (!responder.OnFinish(second)) std::abort();  // forged a proof without the key
  }
  // As initiator: fuzz bytes are message 2.
  HandshakeInitiator initiator(psk);
  initiator.Start();
  Bytes finish;
  if (!initiator.OnReply(first, &finish)) std::abort();
  // Sealed frames: random payloads never open.
  SessionKey key;
  key.fill(0x11);
  FrameOpener opener(key);
  Frame frame;
  frame.type = FrameType::kRequest;
  frame.payload.assign(second.begin(), second.end());
  if (!opener.Open(&frame)) std::abort();
  return 0;
}
