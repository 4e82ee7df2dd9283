// Helpers for tests of dfs::net over real TCP on 127.0.0.1.
#pragma once

#include <utility>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "net/connection.h"

namespace dfs::net::testing_net {

using namespace std::chrono_literals;


inline NetworkKey Key(std::uint8_t b) {
  NetworkKey k;
  k.fill(b);
  return k;
}

inline ConnectionOptions Fast() {
  ConnectionOptions o;
  o.handshake_timeout = 500ms;
  o.heartbeat_interval = 100ms;
  o.dead_after = 600ms;
  return o;
}

// A listening node whose connections echo every Request as a Response.
class EchoServer {
 public:
  EchoServer(asio::io_context& io, NetworkKey key, bool answer = true, std::uint16_t port = 0)
      : acceptor_(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), port)),
        key_(key),
        answer_(answer) {
    Accept();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  int established = 0;
  int closed = 0;
  std::error_code last_close;
  std::vector<std::shared_ptr<Connection>> conns;

 private:
  void Accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec) return;
      auto c = Connection::Create(std::move(s), key_, Role::kResponder, Fast());
      c->OnEstablished([this](Connection&) { ++established; });
      c->OnClose([this](Connection&, std::error_code why) {
        ++closed;
        last_close = why;
      });
      c->OnFrame([this](Connection& conn, Frame f) {
        if (!answer_ || f.type != FrameType::kRequest) return;
        f.type = FrameType::kResponse;
        conn.Send(std::move(f));
      });
      c->Start();
      conns.push_back(c);
      Accept();
    });
  }
  tcp::acceptor acceptor_;
  NetworkKey key_;
  bool answer_;
};

inline std::shared_ptr<Connection> Dial(asio::io_context& io, std::uint16_t port, NetworkKey key,
                                 ConnectionOptions o = Fast()) {
  tcp::socket s(io);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  auto c = Connection::Create(std::move(s), key, Role::kInitiator, o);
  return c;
}

// Runs the io_context until `done` or `limit` passes.
template <typename Pred>
bool RunUntil(asio::io_context& io, Pred done, std::chrono::milliseconds limit = 5000ms) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < end) {
    io.run_for(10ms);
    if (io.stopped()) io.restart();
  }
  return done();
}

inline Frame Req(std::string text) {
  Frame f;
  f.type = FrameType::kRequest;
  f.payload.assign(text.begin(), text.end());
  return f;
}

}  // namespace dfs::net::testing_net
