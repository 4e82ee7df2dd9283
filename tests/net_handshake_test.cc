#include "net/handshake.h"

#include <gtest/gtest.h>

#include "net/frame_cipher.h"

namespace dfs::net {
namespace {

NetworkKey Psk(std::uint8_t b) {
  NetworkKey k;
  k.fill(b);
  return k;
}

struct Pair {
  HandshakeInitiator i;
  HandshakeResponder r;
  Pair(std::uint8_t ki, std::uint8_t kr) : i(Psk(ki)), r(Psk(kr)) {}
};

TEST(HandshakeTest, MembersAgreeOnDirectionalKeys) {
  Pair p(1, 1);
  Bytes hello = p.i.Start(), reply, finish;
  ASSERT_FALSE(p.r.OnHello(hello, &reply));
  ASSERT_FALSE(p.i.OnReply(reply, &finish));
  ASSERT_FALSE(p.r.OnFinish(finish));
  ASSERT_TRUE(p.i.keys() && p.r.keys());
  EXPECT_EQ(p.i.keys()->send, p.r.keys()->receive);
  EXPECT_EQ(p.i.keys()->receive, p.r.keys()->send);
  EXPECT_NE(p.i.keys()->send, p.i.keys()->receive);
  // A second handshake gives fresh keys.
  Pair q(1, 1);
  Bytes h2 = q.i.Start(), r2, f2;
  ASSERT_FALSE(q.r.OnHello(h2, &r2));
  ASSERT_FALSE(q.i.OnReply(r2, &f2));
  EXPECT_NE(q.i.keys()->send, p.i.keys()->send);
}

TEST(HandshakeTest, WrongNetworkKeyFailsOnBothSides) {
  {  // An outsider dials a member: the member's proof does not verify.
    Pair p(1, 2);
    Bytes hello = p.i.Start(), reply, finish;
    ASSERT_FALSE(p.r.OnHello(hello, &reply));
    EXPECT_EQ(p.i.OnReply(reply, &finish), NetError::kBadProof);
    EXPECT_FALSE(p.i.keys());
  }
  {  // An outsider that forges a finish is refused by the responder.
    Pair p(1, 2);
    Bytes hello = p.i.Start(), reply;
    ASSERT_FALSE(p.r.OnHello(hello, &reply));
    Bytes forged(32, 0x41);
    EXPECT_EQ(p.r.OnFinish(forged), NetError::kBadProof);
    EXPECT_FALSE(p.r.keys());
    EXPECT_EQ(p.r.OnFinish(forged), NetError::kHandshakeFailed) << "one attempt only";
  }
}

TEST(HandshakeTest, TamperedMessagesFail) {
  for (std::size_t i = 0; i < 80; ++i) {  // every byte of message 2
    Pair p(3, 3);
    Bytes hello = p.i.Start(), reply, finish;
    ASSERT_FALSE(p.r.OnHello(hello, &reply));
    reply[i] ^= 0x01;
    EXPECT_TRUE(p.i.OnReply(reply, &finish)) << "byte " << i;
    EXPECT_FALSE(p.i.keys());
  }
  for (std::size_t i = 1; i < 49; ++i) {  // message 1 changed in flight
    Pair p(3, 3);
    Bytes hello = p.i.Start(), reply, finish;
    hello[i] ^= 0x01;
    if (p.r.OnHello(hello, &reply)) continue;  // refused outright (weak key): fine
    EXPECT_TRUE(p.i.OnReply(reply, &finish)) << "byte " << i;
  }
  Pair p(3, 3);
  Bytes reply;
  EXPECT_EQ(p.r.OnHello(Bytes(10, 1), &reply), NetError::kHandshakeFailed);
  Bytes hello = p.i.Start();
  hello[0] = 9;
  EXPECT_EQ(p.r.OnHello(hello, &reply), NetError::kBadVersion);
}

TEST(HandshakeTest, LowOrderKeysAreRefused) {
  Pair p(4, 4);
  Bytes hello = p.i.Start(), reply;
  std::fill(hello.begin() + 1, hello.begin() + 33, 0);  // the all-zero point
  EXPECT_EQ(p.r.OnHello(hello, &reply), NetError::kWeakKey);
  Pair q(4, 4);
  Bytes h = q.i.Start(), r, finish;
  ASSERT_FALSE(q.r.OnHello(h, &r));
  std::fill(r.begin(), r.begin() + 32, 0);
  r[0] = 1;  // the point of order 1 (u = 1)
  EXPECT_EQ(q.i.OnReply(r, &finish), NetError::kWeakKey);
}

TEST(HandshakeTest, OutOfOrderCallsFail) {
  HandshakeInitiator i(Psk(5));
  Bytes finish;
  EXPECT_EQ(i.OnReply(Bytes(80, 1), &finish), NetError::kHandshakeFailed);
  HandshakeResponder r(Psk(5));
  EXPECT_EQ(r.OnFinish(Bytes(32, 1)), NetError::kHandshakeFailed);
}

class SealedFramesTest : public ::testing::Test {
 protected:
  SessionKey key_{};
  void SetUp() override { key_.fill(0x77); }
  Frame Make(std::string_view text, std::uint64_t id) {
    Frame f;
    f.type = FrameType::kRequest;
    f.request_id = id;
    f.payload.assign(text.begin(), text.end());
    return f;
  }
  // Seals, then parses the wire bytes back into a frame as a reader would.
  Frame Wire(FrameSealer& s, const Frame& f) {
    Bytes wire;
    EXPECT_FALSE(s.Seal(f, &wire));
    FrameDecoder d;
    ByteSpan in(wire);
    std::optional<Frame> out;
    EXPECT_FALSE(d.Feed(&in, &out));
    return *out;
  }
};

TEST_F(SealedFramesTest, RoundTripInOrder) {
  FrameSealer s(key_);
  FrameOpener o(key_);
  for (int i = 0; i < 5; ++i) {
    Frame w = Wire(s, Make("hello " + std::to_string(i), static_cast<std::uint64_t>(i)));
    EXPECT_EQ(std::string(w.payload.begin(), w.payload.end()).find("hello"), std::string::npos)
        << "payload travels encrypted";
    ASSERT_FALSE(o.Open(&w));
    EXPECT_EQ(std::string(w.payload.begin(), w.payload.end()), "hello " + std::to_string(i));
    EXPECT_EQ(w.request_id, static_cast<std::uint64_t>(i));
  }
}

TEST_F(SealedFramesTest, ReplayReorderFlipAndHeaderChangesFail) {
  FrameSealer s(key_);
  Frame a = Wire(s, Make("first", 1)), b = Wire(s, Make("second", 2));
  {
    FrameOpener o(key_);
    Frame b2 = b;
    EXPECT_EQ(o.Open(&b2), NetError::kAuthFailed) << "reordered";
    Frame a2 = a;
    ASSERT_FALSE(o.Open(&a2)) << "a failed open does not advance the counter";
    Frame a3 = a;
    EXPECT_EQ(o.Open(&a3), NetError::kAuthFailed) << "replayed";
  }
  {
    FrameOpener o(key_);
    Frame flipped = a;
    flipped.payload[0] ^= 1;
    EXPECT_EQ(o.Open(&flipped), NetError::kAuthFailed);
    EXPECT_TRUE(flipped.payload.empty());
    Frame other_id = a;
    other_id.request_id = 99;  // the header is authenticated
    EXPECT_EQ(o.Open(&other_id), NetError::kAuthFailed);
  }
  {
    SessionKey wrong = key_;
    wrong[0] ^= 1;
    FrameOpener o(wrong);
    Frame a2 = a;
    EXPECT_EQ(o.Open(&a2), NetError::kAuthFailed);
  }
}

// Opening a frame whose payload landed elsewhere (a stream's buffer): the
// plaintext is left at the front of that span, and the header still counts.
TEST_F(SealedFramesTest, FramesOpenInPlaceWhereTheirPayloadLanded) {
  FrameSealer s(key_);
  Frame a = Wire(s, Make("in place", 3)), b = Wire(s, Make("next", 4));
  FrameOpener o(key_);
  Bytes landing = a.payload;
  Frame header = a;
  header.payload.clear();
  ASSERT_FALSE(o.Open(header, landing));
  EXPECT_EQ(std::string(landing.begin(), landing.begin() + 8), "in place");
  // The counter moved on: the same bytes again are a replay; a header
  // changed is refused; the next frame opens.
  Bytes again = a.payload;
  EXPECT_EQ(o.Open(header, again), NetError::kAuthFailed);
  Bytes next = b.payload;
  Frame next_header = b;
  next_header.request_id = 5;
  EXPECT_EQ(o.Open(next_header, next), NetError::kAuthFailed);
  next_header.request_id = 4;
  next = b.payload;
  ASSERT_FALSE(o.Open(next_header, next));
  EXPECT_EQ(std::string(next.begin(), next.begin() + 4), "next");
  Bytes too_short(kSealOverhead - 1);
  EXPECT_EQ(o.Open(next_header, too_short), NetError::kAuthFailed);
}

}  // namespace
}  // namespace dfs::net
