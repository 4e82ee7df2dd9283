#include "net/dialer.h"

#include <gtest/gtest.h>

#include "tests/net_test_util.h"

namespace dfs::net {
namespace {

using namespace testing_net;

DialerOptions QuickRetry() {
  DialerOptions o;
  o.connection = Fast();
  o.backoff_min = 50ms;
  o.backoff_max = 200ms;
  return o;
}

std::uint16_t FreePort(asio::io_context& io) {
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

TEST(DialerTest, BackoffDoublesUpToTheCapWithJitter) {
  DialerOptions o;
  o.backoff_min = 100ms;
  o.backoff_max = 1000ms;
  EXPECT_EQ(Dialer::Backoff(o, 1, 1.0), 100ms);
  EXPECT_EQ(Dialer::Backoff(o, 2, 1.0), 200ms);
  EXPECT_EQ(Dialer::Backoff(o, 4, 1.0), 800ms);
  EXPECT_EQ(Dialer::Backoff(o, 5, 1.0), 1000ms);
  EXPECT_EQ(Dialer::Backoff(o, 60, 1.0), 1000ms);
  EXPECT_EQ(Dialer::Backoff(o, 4, 0.0), 400ms);
}

TEST(DialerTest, KeepsTryingUntilThePeerAppearsThenReconnects) {
  asio::io_context io;
  std::uint16_t port = FreePort(io);
  int established = 0;
  auto dialer = Dialer::Create(io, "127.0.0.1", port, Key(1), QuickRetry(),
                               [&](const std::shared_ptr<Connection>& c) {
                                 c->OnEstablished([&](Connection&) { ++established; });
                               });
  dialer->Start();
  RunUntil(io, [] { return false; }, 400ms);
  EXPECT_GE(dialer->attempts(), 3) << "retries while nobody listens";
  EXPECT_EQ(established, 0);

  auto server = std::make_unique<EchoServer>(io, Key(1), true, port);
  ASSERT_TRUE(RunUntil(io, [&] { return established == 1 && server->established == 1; }, 3000ms));

  // The peer drops the connection: the dialer dials again.
  server->conns[0]->Close(std::make_error_code(std::errc::connection_aborted));
  ASSERT_TRUE(RunUntil(io, [&] { return established == 2 && server->established == 2; }, 3000ms));

  dialer->Stop();
  RunUntil(io, [] { return false; }, 100ms);
  int attempts = dialer->attempts();
  RunUntil(io, [] { return false; }, 400ms);
  EXPECT_EQ(dialer->attempts(), attempts) << "a stopped dialer stays stopped";
}

TEST(DialerTest, WrongKeyPeerIsRetriedButNeverJoins) {
  asio::io_context io;
  EchoServer server(io, Key(2));
  int established = 0;
  auto dialer = Dialer::Create(io, "127.0.0.1", server.port(), Key(1), QuickRetry(),
                               [&](const std::shared_ptr<Connection>& c) {
                                 c->OnEstablished([&](Connection&) { ++established; });
                               });
  dialer->Start();
  RunUntil(io, [] { return false; }, 600ms);
  EXPECT_GE(server.closed, 2);
  EXPECT_EQ(established, 0);
  EXPECT_EQ(server.established, 0);
  dialer->Stop();
  RunUntil(io, [] { return false; }, 100ms);
}

}  // namespace
}  // namespace dfs::net
