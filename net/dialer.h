// Dialer: keeps one connection to a peer address alive. It resolves and
// dials, runs the handshake, and when the connection fails or later closes,
// waits and tries again with exponential backoff (with jitter, capped),
// until Stop(). The backoff resets once a connection is established.
//
// Threading: lives on one io_context thread, like Connection.
#pragma once

#include <utility>  // before Asio, for GCC 12

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "net/connection.h"

namespace dfs::net {

struct DialerOptions {
  ConnectionOptions connection;
  std::chrono::milliseconds backoff_min{100};
  std::chrono::milliseconds backoff_max{10000};
};

class Dialer : public std::enable_shared_from_this<Dialer> {
 public:
  // Called for each connection made, before it starts: attach handlers here.
  using ConnectionHook = std::function<void(const std::shared_ptr<Connection>&)>;

  static std::shared_ptr<Dialer> Create(asio::io_context& io, std::string host, std::uint16_t port,
                                        const NetworkKey& key, DialerOptions options,
                                        ConnectionHook hook);
  void Start();
  void Stop();

  int attempts() const { return attempts_; }
  const std::shared_ptr<Connection>& current() const { return current_; }
  // The wait before the next attempt after `failures` failures in a row.
  static std::chrono::milliseconds Backoff(const DialerOptions& o, int failures, double jitter);

 private:
  Dialer(asio::io_context& io, std::string host, std::uint16_t port, const NetworkKey& key,
         DialerOptions options, ConnectionHook hook);
  asio::awaitable<void> Loop();

  asio::io_context& io_;
  std::string host_;
  std::uint16_t port_;
  NetworkKey key_;
  DialerOptions options_;
  ConnectionHook hook_;
  asio::steady_timer timer_;
  std::shared_ptr<Connection> current_;
  int attempts_ = 0;
  bool stopped_ = false;
};

}  // namespace dfs::net
