#include "net/dialer.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <random>

#include <spdlog/spdlog.h>

namespace dfs::net {

std::shared_ptr<Dialer> Dialer::Create(asio::io_context& io, std::string host, std::uint16_t port,
                                       const NetworkKey& key, DialerOptions options,
                                       ConnectionHook hook) {
  return std::shared_ptr<Dialer>(
      new Dialer(io, std::move(host), port, key, options, std::move(hook)));
}

Dialer::Dialer(asio::io_context& io, std::string host, std::uint16_t port, const NetworkKey& key,
               DialerOptions options, ConnectionHook hook)
    : io_(io),
      host_(std::move(host)),
      port_(port),
      key_(key),
      options_(options),
      hook_(std::move(hook)),
      timer_(io) {}

std::chrono::milliseconds Dialer::Backoff(const DialerOptions& o, int failures, double jitter) {
  double ms = static_cast<double>(o.backoff_min.count());
  for (int i = 1; i < failures && ms < static_cast<double>(o.backoff_max.count()); ++i) ms *= 2;
  ms = std::min(ms, static_cast<double>(o.backoff_max.count()));
  // Jitter in [0.5, 1.0] of the wait, so that restarted nodes do not dial in lockstep.
  return std::chrono::milliseconds(static_cast<long>(ms * (0.5 + 0.5 * jitter)));
}

void Dialer::Start() {
  auto self = shared_from_this();
  asio::co_spawn(io_, Loop(), [self](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& err) {
      spdlog::error("dialer {}:{} stopped: {}", self->host_, self->port_, err.what());
    }
  });
}

void Dialer::Stop() {
  stopped_ = true;
  timer_.cancel();
  if (current_) current_->Close(std::make_error_code(std::errc::operation_canceled));
}

asio::awaitable<void> Dialer::Loop() {
  auto self = shared_from_this();
  std::mt19937 rng(std::random_device{}());
  std::uniform_real_distribution<double> jitter(0.0, 1.0);
  int failures = 0;
  tcp::resolver resolver(io_);
  while (!stopped_) {
    ++attempts_;
    boost::system::error_code ec;
    auto endpoints = co_await resolver.async_resolve(
        host_, std::to_string(port_), asio::redirect_error(asio::use_awaitable, ec));
    tcp::socket socket(io_);
    if (!ec) {
      co_await asio::async_connect(socket, endpoints, asio::redirect_error(asio::use_awaitable, ec));
    }
    if (!ec && !stopped_) {
      current_ = Connection::Create(std::move(socket), key_, Role::kInitiator, options_.connection);
      bool was_established = false;
      bool closed = false;
      current_->OnEstablished([&was_established](Connection&) { was_established = true; });
      if (hook_) hook_(current_);
      current_->OnClose([&closed, this](Connection&, std::error_code) {
        closed = true;
        timer_.cancel();
      });
      current_->Start();
      while (!closed && !stopped_) {
        timer_.expires_at(asio::steady_timer::time_point::max());
        co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      failures = was_established ? 0 : failures;
      current_.reset();
    } else if (ec) {
      spdlog::debug("dial {}:{}: {}", host_, port_, ec.message());
    }
    if (stopped_) break;
    ++failures;
    timer_.expires_after(Backoff(options_, failures, jitter(rng)));
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

}  // namespace dfs::net
