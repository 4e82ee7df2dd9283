#include "net/metrics_http.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <optional>
#include <set>
#include <string_view>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace dfs::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr int kHttp11 = 11;

http::response<http::string_body> Plain(http::status status, unsigned version, bool keep_alive,
                                        std::string body) {
  http::response<http::string_body> res(status, version);
  res.set(http::field::server, "dfs");
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.keep_alive(keep_alive);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

// The answer to a request that did not parse, or none for errors of the
// connection itself (closed, reset, timed out).
std::optional<http::status> StatusForReadError(const boost::system::error_code& ec) {
  if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
    return http::status::request_header_fields_too_large;
  }
  if (ec == http::error::body_limit) return http::status::payload_too_large;
  if (ec == http::error::end_of_stream || ec == http::error::partial_message) return std::nullopt;
  if (ec.category() == http::make_error_code(http::error::bad_method).category()) {
    return http::status::bad_request;
  }
  return std::nullopt;
}

}  // namespace

struct MetricsHttpServer::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  RenderFn render;
  MetricsHttpOptions options;
  std::set<beast::tcp_stream*> sessions;  // io thread only
  std::thread thread;
  bool stopped = false;

  http::response<http::string_body> Respond(const http::request<http::string_body>& req) {
    std::string_view target(req.target().data(), req.target().size());
    target = target.substr(0, target.find('?'));
    if (target != "/metrics") {
      return Plain(http::status::not_found, req.version(), req.keep_alive(), "not found\n");
    }
    if (req.method() != http::verb::get) {
      auto res = Plain(http::status::method_not_allowed, req.version(), req.keep_alive(),
                       "method not allowed\n");
      res.set(http::field::allow, "GET");
      return res;
    }
    auto res = Plain(http::status::ok, req.version(), req.keep_alive(), render());
    res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    return res;
  }

  asio::awaitable<void> Session(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    sessions.insert(&stream);
    struct Leave {
      Impl* self;
      beast::tcp_stream* stream;
      ~Leave() { self->sessions.erase(stream); }
    } leave{this, &stream};
    // Bounded: a request's header and body, and the start of a pipelined next one.
    beast::flat_buffer buffer(options.max_header_bytes + options.max_body_bytes + 4096);
    boost::system::error_code ec;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<std::uint32_t>(options.max_header_bytes));
      parser.body_limit(options.max_body_bytes);
      stream.expires_after(options.read_timeout);
      co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        if (std::optional<http::status> status = StatusForReadError(ec)) {
          auto res = Plain(*status, kHttp11, false, ec.message() + "\n");
          stream.expires_after(options.read_timeout);
          co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
        }
        break;
      }
      auto res = Respond(parser.get());
      stream.expires_after(options.read_timeout);
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !res.keep_alive()) break;
    }
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream.close();
  }

  asio::awaitable<void> Accept() {
    asio::steady_timer backoff(io);
    for (;;) {
      boost::system::error_code ec;
      tcp::socket socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (stopped || !acceptor.is_open()) co_return;
      if (ec) {
        // Out of descriptors, say: wait a little rather than spin.
        spdlog::warn("metrics: accept: {}", ec.message());
        backoff.expires_after(std::chrono::milliseconds(100));
        co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      if (sessions.size() >= options.max_connections) {
        socket.close(ec);
        continue;
      }
      asio::co_spawn(io, Session(std::move(socket)), asio::detached);
    }
  }
};

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

core::Result<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(const std::string& host,
                                                                          std::uint16_t port,
                                                                          RenderFn render,
                                                                          MetricsHttpOptions options) {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) return core::Status::InvalidArgument("bad --metrics address: " + host);
  auto impl = std::make_unique<Impl>();
  impl->render = std::move(render);
  impl->options = options;
  tcp::endpoint endpoint(address, port);
  tcp::acceptor& a = impl->acceptor;
  if (!a.open(endpoint.protocol(), ec) && !a.set_option(tcp::acceptor::reuse_address(true), ec) &&
      !a.bind(endpoint, ec) && !a.listen(asio::socket_base::max_listen_connections, ec)) {
    std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer(std::move(impl)));
    server->port_ = server->impl_->acceptor.local_endpoint().port();
    Impl* p = server->impl_.get();
    asio::co_spawn(p->io, p->Accept(), asio::detached);
    p->thread = std::thread([p] { p->io.run(); });
    return server;
  }
  return core::Status::Unavailable(
      fmt::format("cannot serve metrics on {}:{}: {}", host, port, ec.message()));
}

void MetricsHttpServer::Stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  Impl* p = impl_.get();
  asio::post(p->io, [p] {
    p->stopped = true;
    boost::system::error_code ec;
    p->acceptor.close(ec);
    for (beast::tcp_stream* s : p->sessions) s->socket().close(ec);
  });
  // The loop ends once the accept loop and every session have finished.
  p->thread.join();
}

}  // namespace dfs::net
