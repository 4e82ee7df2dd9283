// MetricsHttpServer: serves a node's metrics (core/metrics.h) over HTTP/1.1
// for Prometheus: GET /metrics answers 200 with the text exposition format
// (version 0.0.4); another path is 404, another method 405 (Allow: GET), a
// request that does not parse 400, a header block past the limit 431.
//
// It runs on a thread and io_context of its own (Boost.Beast, coroutines),
// so a slow scrape or a hostile client never holds up the node's network.
// Each connection must send a whole request within read_timeout; at most
// max_connections are served at once (more are closed at once); a request's
// header and body are bounded, so memory per connection is too.
// Connections are kept alive between requests.
#pragma once

#include <utility>  // before Asio, for GCC 12

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/status.h"

namespace dfs::net {

struct MetricsHttpOptions {
  std::chrono::milliseconds read_timeout{5000};  // per request, from its first byte awaited
  std::size_t max_header_bytes = 8192;
  std::size_t max_body_bytes = 1024;
  std::size_t max_connections = 16;
};

class MetricsHttpServer {
 public:
  // The body of GET /metrics; called on the server's thread for each scrape.
  using RenderFn = std::function<std::string()>;

  // Listens on host:port (port 0 picks one) and starts serving. Errors:
  // kInvalidArgument (bad address), kUnavailable (cannot bind).
  static core::Result<std::unique_ptr<MetricsHttpServer>> Start(const std::string& host,
                                                                std::uint16_t port, RenderFn render,
                                                                MetricsHttpOptions options = {});
  ~MetricsHttpServer();  // Stop()
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // Closes the listener and every connection, and joins the thread. Idempotent.
  void Stop();
  std::uint16_t port() const { return port_; }

 private:
  struct Impl;
  explicit MetricsHttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::uint16_t port_ = 0;
};

}  // namespace dfs::net
