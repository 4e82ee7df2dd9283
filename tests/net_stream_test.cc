// Streams over real TCP on 127.0.0.1: large frames travel in pieces under
// flow control, small frames overtake them, the receiver's reassembly
// memory stays within its bound, and a refused or timed-out stream is
// cancelled without closing the connection.
#include "net/connection.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <gtest/gtest.h>

#include "tests/net_test_util.h"
#include "tests/test_util.h"

namespace dfs::net {
namespace {

using namespace std::chrono_literals;
using namespace testing_net;

// Accepts connections; records every app frame; answers ChunkRequests with
// a ChunkResponse carrying the same payload (unless told to stay silent).
class Recorder {
 public:
  Recorder(asio::io_context& io, ConnectionOptions o, bool answer = true)
      : acceptor_(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)), o_(o), answer_(answer) {
    Accept();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::vector<Frame> got;
  std::shared_ptr<Connection> conn;

 private:
  void Accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec) return;
      conn = Connection::Create(std::move(s), Key(1), Role::kResponder, o_);
      conn->OnFrame([this](Connection& c, Frame f) {
        if (answer_ && f.type == FrameType::kChunkRequest) {
          Frame reply = f;
          reply.type = FrameType::kChunkResponse;
          c.Send(std::move(reply));
        }
        got.push_back(std::move(f));
      });
      conn->Start();
    });
  }
  tcp::acceptor acceptor_;
  ConnectionOptions o_;
  bool answer_;
};

Frame Big(std::size_t size, std::uint64_t seed) {
  Frame f;
  f.type = FrameType::kChunkRequest;
  f.payload = testing::RandomBytes(size, seed);
  return f;
}

TEST(StreamTest, LargeFramesArriveWholeAndSmallOnesOvertakeThem) {
  asio::io_context io;
  Recorder server(io, Fast());
  auto client = Dial(io, server.port(), Key(1));
  client->Start();
  ASSERT_TRUE(RunUntil(io, [&] { return client->established(); }));
  // Three 4 MiB frames, then a small one: the small one is delivered first.
  std::vector<Frame> sent;
  for (std::uint64_t i = 0; i < 3; ++i) {
    sent.push_back(Big((4u << 20) - 7, i));
    ASSERT_TRUE(client->Send(sent.back()));
  }
  ASSERT_TRUE(client->Send(Req("small")));
  ASSERT_TRUE(RunUntil(io, [&] { return server.got.size() == 4; }, 20s));
  EXPECT_EQ(server.got[0].type, FrameType::kRequest) << "the small frame overtook the streams";
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(server.got[i + 1].type, FrameType::kChunkRequest);
    EXPECT_TRUE(server.got[i + 1].payload == sent[i].payload) << i;
  }
  EXPECT_FALSE(client->closed());
  EXPECT_EQ(server.conn->stream_memory_in_use(), 0u);
}

TEST(StreamTest, ManyStreamsShareTheConnectionWithinTheReceiversMemory) {
  asio::io_context io;
  ConnectionOptions small = Fast();
  small.stream_memory = 3u << 20;  // room for two 1.5 MiB messages at once
  Recorder server(io, small);
  auto client = Dial(io, server.port(), Key(1));
  client->Start();
  int answered = 0;
  bool failed = false;
  for (std::uint64_t i = 0; i < 16; ++i) {
    asio::co_spawn(io, [&, i]() -> asio::awaitable<void> {
      Frame f = Big(1536 << 10, 100 + i);
      auto r = co_await client->Request(f, 20000ms);
      auto* reply = std::get_if<Frame>(&r);
      if (reply && reply->payload == f.payload) {
        ++answered;
      } else {
        failed = true;
      }
    }, [](std::exception_ptr) {});
  }
  ASSERT_TRUE(RunUntil(io, [&] { return answered == 16 || failed; }, 30s));
  EXPECT_FALSE(failed);
  EXPECT_EQ(answered, 16) << "round trips of a request stream and a response stream each";
  EXPECT_LE(server.conn->stream_memory_peak(), small.stream_memory);
  EXPECT_GT(server.conn->stream_memory_peak(), 0u);
}

TEST(StreamTest, AStreamTheReceiverCannotHoldIsCancelledNotTheConnection) {
  asio::io_context io;
  ConnectionOptions tiny = Fast();
  tiny.stream_memory = 1u << 20;
  Recorder server(io, tiny);
  auto client = Dial(io, server.port(), Key(1));
  client->Start();
  std::optional<std::error_code> result;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto r = co_await client->Request(Big(2u << 20, 1), 5000ms);
    result = std::holds_alternative<std::error_code>(r) ? std::get<std::error_code>(r) : std::error_code();
  }, [](std::exception_ptr) {});
  ASSERT_TRUE(RunUntil(io, [&] { return result.has_value(); }, 10s));
  EXPECT_EQ(*result, std::make_error_code(std::errc::operation_canceled)) << result->message();
  EXPECT_FALSE(client->closed());
  // The connection still carries what fits.
  std::optional<bool> ok;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    Frame f = Big(512 << 10, 2);
    auto r = co_await client->Request(f, 5000ms);
    auto* reply = std::get_if<Frame>(&r);
    ok = reply && reply->payload == f.payload;
  }, [](std::exception_ptr) {});
  ASSERT_TRUE(RunUntil(io, [&] { return ok.has_value(); }, 10s));
  EXPECT_TRUE(*ok);
}

TEST(StreamTest, ARequestPastItsDeadlineCancelsItsStream) {
  asio::io_context io;
  ConnectionOptions slow = Fast();
  slow.stream_window = 64 << 10;  // small credit: the stream takes many round trips
  Recorder server(io, slow, /*answer=*/false);
  auto client = Dial(io, server.port(), Key(1));
  client->Start();
  ASSERT_TRUE(RunUntil(io, [&] { return client->established(); }));
  std::optional<std::error_code> result;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto r = co_await client->Request(Big(4u << 20, 3), 1ms);
    result = std::holds_alternative<std::error_code>(r) ? std::get<std::error_code>(r) : std::error_code();
  }, [](std::exception_ptr) {});
  ASSERT_TRUE(RunUntil(io, [&] { return result.has_value(); }));
  EXPECT_EQ(*result, std::make_error_code(std::errc::timed_out));
  // The receiver drops the cancelled stream and its memory; nothing is delivered.
  RunUntil(io, [] { return false; }, 300ms);
  EXPECT_TRUE(server.got.empty());
  EXPECT_EQ(server.conn->stream_memory_in_use(), 0u);
  EXPECT_EQ(client->queued(), 0u);
  EXPECT_FALSE(client->closed());
}

// A peer that breaks the stream rules by hand: pieces for a stream that is
// not open are dropped; a piece beyond the credit granted (whether it would
// land in the stream's buffer or not) closes the connection.
TEST(StreamTest, PiecesBeyondTheCreditGrantedCloseTheConnection) {
  for (std::size_t first : {std::size_t{1000}, std::size_t{3000}}) {
    SCOPED_TRACE(first == 1000 ? "within credit, then beyond" : "beyond at once");
    asio::io_context io;
    ConnectionOptions o = Fast();
    o.stream_window = 2000;  // credit granted 2000 bytes at a time
    Recorder server(io, o);
    auto client = Dial(io, server.port(), Key(1));
    client->Start();
    ASSERT_TRUE(RunUntil(io, [&] { return client->established() && server.conn; }));
    auto piece = [](std::uint64_t id, std::size_t n) {
      return Frame{FrameType::kStreamData, 0, id, Bytes(n, 1)};
    };
    ASSERT_TRUE(client->Send(piece(99, 500)));  // no such stream: dropped
    Frame open{FrameType::kStreamOpen, 0, 1, Bytes(16, 0)};
    open.payload[0] = static_cast<std::uint8_t>(FrameType::kChunkRequest);
    open.payload[4] = 0x10;  // 10,000 bytes (0x2710)
    open.payload[5] = 0x27;
    ASSERT_TRUE(client->Send(open));
    ASSERT_TRUE(client->Send(piece(1, first)));
    RunUntil(io, [] { return false; }, 200ms);
    if (first == 1000) {
      EXPECT_FALSE(server.conn->closed()) << "a piece within the credit is taken";
      // Half the window used: the credit was topped up to 3,000 in all.
      ASSERT_TRUE(client->Send(piece(1, 2500)));  // 3,500 > 3,000
    }
    ASSERT_TRUE(RunUntil(io, [&] { return server.conn->closed() && client->closed(); }, 5s));
    EXPECT_TRUE(server.got.empty());
  }
}

}  // namespace
}  // namespace dfs::net
