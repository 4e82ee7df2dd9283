// Connections over real TCP on 127.0.0.1: handshake, requests, hostile
// input, dead peers and deadlines.
#include "net/connection.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "tests/net_test_util.h"

namespace dfs::net {
namespace {

using namespace std::chrono_literals;
using namespace testing_net;

TEST(ConnectionTest, MembersHandshakeAndExchangeRequests) {
  asio::io_context io;
  EchoServer server(io, Key(1));
  auto client = Dial(io, server.port(), Key(1));
  bool established = false;
  client->OnEstablished([&](Connection&) { established = true; });
  client->Start();
  int answered = 0;
  bool failed = false;
  auto ask = [&](int i) -> asio::awaitable<void> {
    auto r = co_await client->Request(Req("question " + std::to_string(i)), 2000ms);
    if (auto* f = std::get_if<Frame>(&r)) {
      if (std::string(f->payload.begin(), f->payload.end()) == "question " + std::to_string(i)) {
        ++answered;
        co_return;
      }
    }
    failed = true;
  };
  for (int i = 0; i < 200; ++i) asio::co_spawn(io, ask(i), [](std::exception_ptr) {});
  ASSERT_TRUE(RunUntil(io, [&] { return answered + failed == 200 || failed; }));
  EXPECT_FALSE(failed);
  EXPECT_EQ(answered, 200);
  EXPECT_TRUE(established);
  EXPECT_EQ(server.established, 1);
  client->Close(std::make_error_code(std::errc::connection_aborted));
  EXPECT_TRUE(RunUntil(io, [&] { return server.closed == 1; }));
}

TEST(ConnectionTest, WrongNetworkKeyJoinsNothing) {
  asio::io_context io;
  EchoServer server(io, Key(1));
  auto client = Dial(io, server.port(), Key(2));
  std::error_code why;
  bool closed = false, established = false;
  client->OnEstablished([&](Connection&) { established = true; });
  client->OnClose([&](Connection&, std::error_code ec) {
    closed = true;
    why = ec;
  });
  client->Start();
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(RunUntil(io, [&] { return closed && server.closed == 1; }));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2000ms);
  EXPECT_EQ(why, make_error_code(NetError::kBadProof));
  EXPECT_FALSE(established);
  EXPECT_EQ(server.established, 0);
}

TEST(ConnectionTest, HostileBytesAreDroppedAndTheNodeKeepsServing) {
  asio::io_context io;
  EchoServer server(io, Key(1));
  std::mt19937 rng(3);
  std::vector<Bytes> attacks;
  Bytes junk(5000);
  for (auto& b : junk) b = static_cast<std::uint8_t>(rng());
  attacks.push_back(junk);
  std::uint8_t header[kHeaderSize];
  EncodeHeader(FrameType::kHello, 0, 0, 0xffffffffu, header);  // absurd length
  attacks.emplace_back(header, header + kHeaderSize);
  EncodeHeader(FrameType::kStreamData, 0, 0, 1000, header);    // sealed type before handshake
  attacks.emplace_back(header, header + kHeaderSize);
  {
    Frame hello;  // a valid first message, then silence: a half-finished handshake
    hello.type = FrameType::kHello;
    HandshakeInitiator hs(Key(1));
    hello.payload = hs.Start();
    Bytes wire;
    ASSERT_FALSE(EncodeFrame(hello, &wire));
    attacks.push_back(wire);
  }
  attacks.push_back({});  // connect and send nothing at all
  std::vector<std::unique_ptr<tcp::socket>> raw;
  for (const Bytes& a : attacks) {
    auto s = std::make_unique<tcp::socket>(io);
    s->connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server.port()));
    if (!a.empty()) asio::write(*s, asio::buffer(a));
    raw.push_back(std::move(s));
  }
  // Every hostile connection is dropped, the silent ones by the handshake timeout.
  ASSERT_TRUE(RunUntil(io, [&] { return server.closed == static_cast<int>(attacks.size()); }, 3000ms))
      << server.closed << " of " << attacks.size() << " closed";
  EXPECT_EQ(server.established, 0);
  // And a member still gets through.
  auto client = Dial(io, server.port(), Key(1));
  bool ok = false;
  client->Start();
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto r = co_await client->Request(Req("still there?"), 2000ms);
    ok = std::holds_alternative<Frame>(r);
  }, [](std::exception_ptr) {});
  EXPECT_TRUE(RunUntil(io, [&] { return ok; }));
}

TEST(ConnectionTest, UnansweredRequestHitsItsDeadline) {
  asio::io_context io;
  EchoServer server(io, Key(1), /*answer=*/false);
  auto client = Dial(io, server.port(), Key(1));
  client->Start();
  std::optional<std::error_code> result;
  auto start = std::chrono::steady_clock::now();
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto r = co_await client->Request(Req("anyone?"), 300ms);
    result = std::holds_alternative<std::error_code>(r) ? std::get<std::error_code>(r)
                                                        : std::error_code();
  }, [](std::exception_ptr) {});
  ASSERT_TRUE(RunUntil(io, [&] { return result.has_value(); }));
  EXPECT_EQ(*result, std::make_error_code(std::errc::timed_out));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 290ms);
  EXPECT_FALSE(client->closed()) << "a deadline does not close the connection";
}

TEST(ConnectionTest, PendingRequestsFailWhenTheConnectionCloses) {
  asio::io_context io;
  EchoServer server(io, Key(1), /*answer=*/false);
  auto client = Dial(io, server.port(), Key(1));
  client->Start();
  ASSERT_TRUE(RunUntil(io, [&] { return server.established == 1; }));
  std::optional<std::error_code> result;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto r = co_await client->Request(Req("q"), 5000ms);
    result = std::get<std::error_code>(r);
  }, [](std::exception_ptr) {});
  RunUntil(io, [] { return false; }, 50ms);
  server.conns[0]->Close(std::make_error_code(std::errc::connection_aborted));
  ASSERT_TRUE(RunUntil(io, [&] { return result.has_value(); }, 2000ms));
  EXPECT_NE(*result, std::make_error_code(std::errc::timed_out));
}

TEST(ConnectionTest, SilentPeerIsDeclaredDead) {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  std::uint16_t port = acceptor.local_endpoint().port();
  // A peer that completes the handshake by hand, then never answers.
  std::thread silent([&acceptor] {
    boost::system::error_code ec;
    tcp::socket s = acceptor.accept(ec);
    if (ec) return;
    FrameDecoder d;
    Bytes buf(4096);
    auto read_frame = [&](Frame* out) {
      for (;;) {
        std::size_t n = s.read_some(asio::buffer(buf), ec);
        if (ec) return false;
        ByteSpan in(buf.data(), n);
        std::optional<Frame> f;
        if (d.Feed(&in, &f) || !f) return false;
        *out = std::move(*f);
        return true;
      }
    };
    HandshakeResponder hs(Key(1));
    Frame hello, finish;
    if (!read_frame(&hello)) return;
    Frame reply;
    reply.type = FrameType::kHelloReply;
    if (hs.OnHello(hello.payload, &reply.payload)) return;
    Bytes wire;
    (void)EncodeFrame(reply, &wire);
    asio::write(s, asio::buffer(wire), ec);
    std::this_thread::sleep_for(1500ms);  // then silence; the socket stays open
  });
  auto client = Dial(io, port, Key(1));
  std::optional<std::error_code> why;
  bool established = false;
  client->OnEstablished([&](Connection&) { established = true; });
  std::chrono::steady_clock::time_point closed_at;
  client->OnClose([&](Connection&, std::error_code ec) {
    why = ec;
    closed_at = std::chrono::steady_clock::now();
  });
  client->Start();
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(RunUntil(io, [&] { return why.has_value(); }, 3000ms));
  silent.join();
  EXPECT_TRUE(established);
  EXPECT_EQ(*why, std::make_error_code(std::errc::timed_out));
  EXPECT_LT(closed_at - start, 1400ms) << "declared dead while the socket was still open";
}

TEST(ConnectionTest, TheSendQueueIsBounded) {
  asio::io_context io;
  tcp::socket s(io);
  ConnectionOptions o = Fast();
  o.send_queue_limit = 4;
  auto c = Connection::Create(std::move(s), Key(1), Role::kInitiator, o);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(c->Send(Req("x")));
  EXPECT_FALSE(c->Send(Req("x"))) << "the fifth frame is refused: backpressure";
  EXPECT_EQ(c->queued(), 4u);
}

}  // namespace
}  // namespace dfs::net
