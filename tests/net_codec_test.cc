#include "net/frame.h"
#include "net/chunk_exchange.h"

#include <algorithm>
#include <functional>
#include <random>

#include <gtest/gtest.h>

#include "tests/test_util.h"

namespace dfs::net {
namespace {

const FrameType kAllTypes[] = {
    FrameType::kHello,       FrameType::kHelloReply,  FrameType::kHelloFinish, FrameType::kPing,
    FrameType::kPong,        FrameType::kRequest,     FrameType::kResponse,    FrameType::kError,
    FrameType::kStreamOpen,  FrameType::kStreamData,  FrameType::kStreamCredit,
    FrameType::kStreamClose, FrameType::kStreamCancel, FrameType::kGossip,
    FrameType::kChunkRequest, FrameType::kChunkResponse, FrameType::kOpPull,
    FrameType::kOpPullReply, FrameType::kOpPush,    FrameType::kOpAck};

Bytes Encode(const Frame& f) {
  Bytes out;
  EXPECT_FALSE(EncodeFrame(f, &out));
  return out;
}

// Feeds `wire` in pieces of the sizes `split` returns; collects frames.
std::vector<Frame> DecodeAll(FrameDecoder& d, const Bytes& wire,
                             const std::function<std::size_t()>& split, std::error_code* err) {
  std::vector<Frame> frames;
  std::size_t pos = 0;
  while (pos < wire.size()) {
    std::size_t n = std::min(split(), wire.size() - pos);
    ByteSpan piece(wire.data() + pos, n);
    pos += n;
    while (!piece.empty()) {
      std::optional<Frame> f;
      *err = d.Feed(&piece, &f);
      if (*err) return frames;
      if (f) frames.push_back(std::move(*f));
    }
  }
  return frames;
}

TEST(FrameCodecTest, EveryTypeRoundTripsWhateverTheSplits) {
  Bytes wire;
  std::vector<Frame> sent;
  std::uint64_t id = 1;
  for (FrameType t : kAllTypes) {
    Frame f;
    f.type = t;
    f.flags = static_cast<std::uint8_t>(id);
    f.request_id = id * 0x0101010101ull;
    f.payload.assign(std::min<std::size_t>(*MaxPayload(static_cast<std::uint8_t>(t)), 3000 * id), 
                     static_cast<std::uint8_t>(id));
    ++id;
    Bytes one = Encode(f);
    wire.insert(wire.end(), one.begin(), one.end());
    sent.push_back(std::move(f));
  }
  std::mt19937 rng(7);
  std::vector<std::function<std::size_t()>> splits = {
      [] { return std::size_t{1}; }, [&] { return std::size_t{1} + rng() % 37; },
      [] { return std::size_t{1} << 30; }};
  for (auto& split : splits) {
    FrameDecoder d;
    std::error_code err;
    auto got = DecodeAll(d, wire, split, &err);
    ASSERT_FALSE(err) << err.message();
    ASSERT_EQ(got.size(), sent.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].type, sent[i].type);
      EXPECT_EQ(got[i].flags, sent[i].flags);
      EXPECT_EQ(got[i].request_id, sent[i].request_id);
      EXPECT_EQ(got[i].payload, sent[i].payload);
    }
  }
}

// A payload sink takes the payloads it is offered, whether they arrive fed
// in pieces or read straight into SinkSpace(); what it declines, and the
// frames around, the decoder keeps as before.
TEST(FrameCodecTest, PayloadsLandInTheSinkThatTakesThem) {
  Frame big{FrameType::kStreamData, 0, 7, Bytes(300000)};
  for (std::size_t i = 0; i < big.payload.size(); ++i) big.payload[i] = static_cast<std::uint8_t>(i * 31);
  Frame small{FrameType::kRequest, 1, 8, Bytes(500, 5)};
  Frame declined{FrameType::kStreamData, 0, 9, Bytes(1000, 6)};
  Bytes wire = Encode(big), tail = Encode(small), last = Encode(declined);
  wire.insert(wire.end(), tail.begin(), tail.end());
  wire.insert(wire.end(), last.begin(), last.end());

  for (bool direct : {false, true}) {
    SCOPED_TRACE(direct ? "read into SinkSpace" : "fed in pieces");
    Bytes landing(big.payload.size());
    std::vector<std::uint64_t> offered;
    FrameDecoder d;
    d.set_payload_sink([&](const Frame& header, std::size_t length) -> MutableByteSpan {
      offered.push_back(header.request_id);
      if (header.request_id != 7) return {};
      EXPECT_EQ(length, landing.size());
      return landing;
    });
    std::vector<Frame> got;
    std::size_t pos = 0;
    while (pos < wire.size()) {
      std::optional<Frame> f;
      if (MutableByteSpan space = d.SinkSpace(); direct && !space.empty()) {
        std::size_t n = std::min<std::size_t>({space.size(), 4096, wire.size() - pos});
        std::copy_n(wire.begin() + static_cast<std::ptrdiff_t>(pos), n, space.begin());
        pos += n;
        d.Filled(n, &f);
      } else {
        ByteSpan piece(wire.data() + pos, std::min<std::size_t>(777, wire.size() - pos));
        std::size_t before = piece.size();
        ASSERT_FALSE(d.Feed(&piece, &f));
        pos += before - piece.size();
      }
      if (f) got.push_back(std::move(*f));
    }
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].request_id, 7u);
    EXPECT_TRUE(got[0].payload.empty()) << "a sunk payload is not also in the frame";
    EXPECT_TRUE(landing == big.payload);
    EXPECT_EQ(got[1].payload, small.payload);
    EXPECT_EQ(got[2].payload, declined.payload) << "a declined payload stays with the decoder";
    EXPECT_EQ(offered, (std::vector<std::uint64_t>{7, 8, 9}));
    EXPECT_TRUE(d.SinkSpace().empty());
  }
}

TEST(FrameCodecTest, TruncatedInputYieldsNothingAndNoError) {
  Frame f;
  f.type = FrameType::kRequest;
  f.payload.assign(1000, 9);
  Bytes wire = Encode(f);
  FrameDecoder d;
  ByteSpan part(wire.data(), wire.size() - 1);
  std::optional<Frame> out;
  EXPECT_FALSE(d.Feed(&part, &out));
  EXPECT_FALSE(out.has_value());
  ByteSpan last(wire.data() + wire.size() - 1, 1);
  EXPECT_FALSE(d.Feed(&last, &out));
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->payload, f.payload);
}

TEST(FrameCodecTest, OversizedLengthIsRefusedBeforeAllocating) {
  for (FrameType t : kAllTypes) {
    std::uint32_t max = *MaxPayload(static_cast<std::uint8_t>(t));
    std::uint8_t header[kHeaderSize];
    EncodeHeader(t, 0, 1, max + 1, header);
    FrameDecoder d;
    ByteSpan in(header, sizeof(header));
    std::optional<Frame> out;
    EXPECT_EQ(d.Feed(&in, &out), NetError::kFrameTooLarge) << static_cast<int>(t);
    EXPECT_LT(d.capacity(), 1024u);
    EXPECT_TRUE(d.failed());
    // Stays failed: a valid frame afterwards is not accepted.
    Frame ok;
    ok.type = FrameType::kPing;
    Bytes good = Encode(ok);
    ByteSpan more(good);
    EXPECT_EQ(d.Feed(&more, &out), NetError::kFrameTooLarge);
    EXPECT_FALSE(out.has_value());
  }
  Frame big;
  big.type = FrameType::kPing;
  big.payload.assign(1000, 0);
  Bytes out;
  EXPECT_EQ(EncodeFrame(big, &out), NetError::kFrameTooLarge) << "we never send what peers refuse";
}

TEST(FrameCodecTest, DeclaredButUnsentPayloadCostsLittle) {
  std::uint8_t header[kHeaderSize];
  EncodeHeader(FrameType::kStreamData, 0, 1, kMaxChunkFramePayload, header);
  FrameDecoder d;
  ByteSpan in(header, sizeof(header));
  std::optional<Frame> out;
  EXPECT_FALSE(d.Feed(&in, &out));
  EXPECT_LE(d.capacity(), 64u << 10) << "4 MiB declared, nothing sent: no 4 MiB buffer";
}

TEST(FrameCodecTest, UnknownTypeVersionAndReservedBitsAreRejected) {
  struct Case {
    std::size_t offset;
    std::uint8_t value;
    NetError want;
  };
  for (Case c : {Case{0, 2, NetError::kBadVersion}, Case{0, 0, NetError::kBadVersion},
                 Case{1, 100, NetError::kUnknownType}, Case{1, 0, NetError::kUnknownType},
                 Case{3, 1, NetError::kBadHeader}}) {
    Frame f;
    f.type = FrameType::kPing;
    Bytes wire = Encode(f);
    wire[c.offset] = c.value;
    FrameDecoder d;
    ByteSpan in(wire);
    std::optional<Frame> out;
    EXPECT_EQ(d.Feed(&in, &out), c.want) << c.offset << "=" << int(c.value);
  }
}

TEST(FrameCodecTest, HandshakeOnlyDecoderRefusesOtherFrames) {
  Frame f;
  f.type = FrameType::kRequest;
  Bytes wire = Encode(f);
  FrameDecoder d;
  d.set_handshake_only(true);
  ByteSpan in(wire);
  std::optional<Frame> out;
  EXPECT_EQ(d.Feed(&in, &out), NetError::kHandshakeFailed);
}

TEST(FrameCodecTest, RandomBytesNeverCrashOrOverflow) {
  std::mt19937_64 rng(12345);
  int frames = 0, errors = 0;
  for (int i = 0; i < 10000; ++i) {
    Bytes junk(1 + rng() % 200);
    for (auto& b : junk) b = static_cast<std::uint8_t>(rng());
    if (i % 3 == 0) junk[0] = kProtocolVersion;  // get past the first check sometimes
    if (i % 3 == 0 && junk.size() > 1) junk[1] = static_cast<std::uint8_t>(kAllTypes[rng() % 16]);
    FrameDecoder d;
    ByteSpan in(junk);
    while (!in.empty()) {
      std::optional<Frame> out;
      std::error_code err = d.Feed(&in, &out);
      if (err) {
        ++errors;
        break;
      }
      if (out) {
        ++frames;
        ASSERT_LE(out->payload.size(), *MaxPayload(static_cast<std::uint8_t>(out->type)));
      }
    }
    ASSERT_LE(d.buffered(), kHeaderSize + 200);
  }
  EXPECT_GT(errors, 5000);
}

// The chunk collector's refs question and answer (docs/protocol.md): round
// trips, and every malformed form refused before anything is trusted.
TEST(RefsCodecTest, QuestionsAndAnswersRoundTripAndLiesAreRefused) {
  RefsQuery q;
  q.volume = {1, 2, 3, 4, 5, 6, 7, 8};
  for (std::uint32_t i = 0; i < 5; ++i) q.ids.push_back(testing::TestChunkId(i));
  q.vector.Raise(testing::TestNodeId(1), 7);
  q.vector.Raise(testing::TestNodeId(2), 3);
  Bytes wire = EncodeRefsQuery(q);
  core::Result<RefsQuery> back = DecodeRefsQuery(wire);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->volume, q.volume);
  EXPECT_EQ(back->ids, q.ids);
  EXPECT_EQ(back->vector.entries(), q.vector.entries());
  for (std::size_t cut = 0; cut < wire.size(); ++cut) {
    EXPECT_FALSE(DecodeRefsQuery(ByteSpan(wire.data(), cut)).ok()) << cut;
  }
  Bytes lie = wire;
  lie[9] = 0xff;  // the id count's low byte: more ids than sent
  EXPECT_EQ(DecodeRefsQuery(lie).status().code(), core::ErrorCode::kCorrupt);
  lie = wire;
  lie[12] = 0x7f;  // a count beyond the limit
  EXPECT_EQ(DecodeRefsQuery(lie).status().code(), core::ErrorCode::kCorrupt);

  core::RefsAnswer a;
  a.code = core::RefsAnswer::Code::kAnswered;
  a.live = {true, false, false, true, false};
  a.vector = q.vector;
  wire = EncodeRefsAnswer(a);
  core::Result<core::RefsAnswer> ab = DecodeRefsAnswer(wire, 5);
  ASSERT_TRUE(ab.ok()) << ab.status().ToString();
  EXPECT_EQ(ab->code, a.code);
  EXPECT_EQ(ab->live, a.live);
  EXPECT_EQ(ab->vector.entries(), a.vector.entries());
  EXPECT_FALSE(DecodeRefsAnswer(wire, 4).ok()) << "an answer to another question";
  for (std::size_t cut = 0; cut < wire.size(); ++cut) {
    EXPECT_FALSE(DecodeRefsAnswer(ByteSpan(wire.data(), cut), 5).ok()) << cut;
  }
  Bytes bad = wire;
  bad[0] = 9;  // no such code
  EXPECT_FALSE(DecodeRefsAnswer(bad, 5).ok());
  bad = wire;
  bad[5] = 2;  // a flag that is neither 0 nor 1
  EXPECT_FALSE(DecodeRefsAnswer(bad, 5).ok());

  // "No key" and "behind" answer no ids, only the vector.
  core::RefsAnswer behind;
  behind.code = core::RefsAnswer::Code::kBehind;
  behind.vector = q.vector;
  ab = DecodeRefsAnswer(EncodeRefsAnswer(behind), 5);
  ASSERT_TRUE(ab.ok()) << ab.status().ToString();
  EXPECT_EQ(ab->code, core::RefsAnswer::Code::kBehind);
  EXPECT_TRUE(ab->live.empty());
}

}  // namespace
}  // namespace dfs::net
