#include "net/connection.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cassert>
#include <thread>

#include <spdlog/spdlog.h>

namespace dfs::net {

namespace {

constexpr std::size_t kReadBuffer = 64 << 10;
constexpr std::size_t kHandshakeReadBuffer = 512;  // until the peer proves membership

std::string Describe(tcp::socket& s) {
  boost::system::error_code ec;
  tcp::endpoint ep = s.remote_endpoint(ec);
  if (ec) return "unknown peer";
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

// Closes the connection when a coroutine ends with an exception (a socket
// error or EOF): no work is ever spawned detached.
auto CloseOnError(std::shared_ptr<Connection> self) {
  return [self](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const boost::system::system_error& err) {
      self->Close(err.code());
    } catch (const std::exception& err) {
      spdlog::error("peer {}: {}", self->peer(), err.what());
      self->Close(std::make_error_code(std::errc::io_error));
    }
  };
}

thread_local bool tls_on_io_thread = false;

}  // namespace

std::shared_ptr<Connection> Connection::Create(tcp::socket socket, const NetworkKey& key,
                                               Role role, ConnectionOptions options) {
  return std::shared_ptr<Connection>(new Connection(std::move(socket), key, role, options));
}

Connection::Connection(tcp::socket socket, const NetworkKey& key, Role role,
                       ConnectionOptions options)
    : socket_(std::move(socket)),
      key_(key),
      role_(role),
      options_(options),
      peer_(Describe(socket_)),
      read_buf_(kHandshakeReadBuffer),
      wake_writer_(socket_.get_executor()),
      handshake_timer_(socket_.get_executor()),
      last_heard_(std::chrono::steady_clock::now()) {
  decoder_.set_handshake_only(true);
}

Connection::~Connection() = default;

void Connection::AssertIoThread() const {
  // Connections are driven from one io thread; anything else must Post().
  assert(tls_on_io_thread || !established_);
}

void Connection::Start() {
  asio::co_spawn(socket_.get_executor(), Run(), CloseOnError(shared_from_this()));
}

asio::awaitable<void> Connection::Run() {
  tls_on_io_thread = true;
  auto self = shared_from_this();
  handshake_timer_.expires_after(options_.handshake_timeout);
  handshake_timer_.async_wait([self](boost::system::error_code ec) {
    if (!ec && !self->established_) self->Close(std::make_error_code(std::errc::timed_out));
  });
  std::error_code ec = co_await Handshake();
  handshake_timer_.cancel();
  if (ec) {
    Close(ec);
    co_return;
  }
  if (closed_) co_return;
  established_ = true;
  decoder_.set_handshake_only(false);
  if (unread_.empty()) read_buf_.resize(kReadBuffer);  // else grown at the next read
  last_heard_ = std::chrono::steady_clock::now();
  for (auto& h : on_established_) h(*this);
  asio::co_spawn(socket_.get_executor(), Writer(), CloseOnError(self));
  asio::co_spawn(socket_.get_executor(), Heartbeat(), CloseOnError(self));
  co_await Reader();
}

asio::awaitable<std::error_code> Connection::ReadFrame(Frame* out) {
  for (;;) {
    if (!unread_.empty()) {
      std::optional<Frame> frame;
      std::error_code ec = decoder_.Feed(&unread_, &frame);
      if (ec) co_return ec;
      if (frame) {
        *out = std::move(*frame);
        co_return std::error_code();
      }
      continue;
    }
    if (established_ && read_buf_.size() < kReadBuffer) read_buf_.resize(kReadBuffer);
    std::size_t n =
        co_await socket_.async_read_some(asio::buffer(read_buf_), asio::use_awaitable);
    unread_ = ByteSpan(read_buf_.data(), n);
  }
}

asio::awaitable<void> Connection::WriteRaw(const Bytes& bytes) {
  co_await asio::async_write(socket_, asio::buffer(bytes), asio::use_awaitable);
}

asio::awaitable<std::error_code> Connection::Handshake() {
  Frame frame;
  Bytes wire;
  auto send_clear = [&](FrameType type, Bytes payload) -> asio::awaitable<void> {
    Frame f;
    f.type = type;
    f.payload = std::move(payload);
    Bytes out;
    if (EncodeFrame(f, &out)) throw std::logic_error("handshake message too large");
    co_await WriteRaw(out);
  };
  if (role_ == Role::kInitiator) {
    HandshakeInitiator hs(key_);
    co_await send_clear(FrameType::kHello, hs.Start());
    if (auto ec = co_await ReadFrame(&frame)) co_return ec;
    if (frame.type != FrameType::kHelloReply) co_return NetError::kHandshakeFailed;
    Bytes finish;
    if (auto ec = hs.OnReply(frame.payload, &finish)) co_return ec;
    co_await send_clear(FrameType::kHelloFinish, std::move(finish));
    sealer_.emplace(hs.keys()->send);
    opener_.emplace(hs.keys()->receive);
  } else {
    HandshakeResponder hs(key_);
    if (auto ec = co_await ReadFrame(&frame)) co_return ec;
    if (frame.type != FrameType::kHello) co_return NetError::kHandshakeFailed;
    Bytes reply;
    if (auto ec = hs.OnHello(frame.payload, &reply)) co_return ec;
    co_await send_clear(FrameType::kHelloReply, std::move(reply));
    if (auto ec = co_await ReadFrame(&frame)) co_return ec;
    if (frame.type != FrameType::kHelloFinish) co_return NetError::kHandshakeFailed;
    if (auto ec = hs.OnFinish(frame.payload)) co_return ec;
    sealer_.emplace(hs.keys()->send);
    opener_.emplace(hs.keys()->receive);
  }
  co_return std::error_code();
}

asio::awaitable<void> Connection::Reader() {
  for (;;) {
    Frame frame;
    std::error_code ec = co_await ReadFrame(&frame);
    if (!ec) ec = opener_->Open(&frame);
    if (ec) {
      Close(ec);
      co_return;
    }
    last_heard_ = std::chrono::steady_clock::now();
    Dispatch(std::move(frame));
    if (closed_) co_return;
  }
}

void Connection::Dispatch(Frame frame) {
  switch (frame.type) {
    case FrameType::kPing: {
      Frame pong;
      pong.type = FrameType::kPong;
      queue_.push_back(std::move(pong));  // heartbeats skip the queue limit
      wake_writer_.cancel();
      return;
    }
    case FrameType::kPong: return;
    case FrameType::kResponse:
    case FrameType::kChunkResponse:
    case FrameType::kOpPullReply:
    case FrameType::kError: {
      auto it = pending_.find(frame.request_id);
      if (it != pending_.end()) {
        it->second->result = std::move(frame);
        it->second->timer.cancel();
        return;
      }
      break;  // a late answer: hand it to the handler
    }
    default: break;
  }
  if (on_frame_) on_frame_(*this, std::move(frame));
}

asio::awaitable<void> Connection::Writer() {
  Bytes wire;
  for (;;) {
    while (!queue_.empty() && !closed_) {
      Frame frame = std::move(queue_.front());
      queue_.pop_front();
      if (auto ec = sealer_->Seal(frame, &wire)) {
        Close(ec);
        co_return;
      }
      co_await WriteRaw(wire);
    }
    if (closed_) co_return;
    boost::system::error_code ec;
    wake_writer_.expires_at(asio::steady_timer::time_point::max());
    co_await wake_writer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<void> Connection::Heartbeat() {
  asio::steady_timer timer(socket_.get_executor());
  while (!closed_) {
    timer.expires_after(options_.heartbeat_interval);
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (closed_) co_return;
    if (std::chrono::steady_clock::now() - last_heard_ > options_.dead_after) {
      Close(std::make_error_code(std::errc::timed_out));
      co_return;
    }
    Frame ping;
    ping.type = FrameType::kPing;
    queue_.push_back(std::move(ping));
    wake_writer_.cancel();
  }
}

bool Connection::Send(Frame frame) {
  AssertIoThread();
  if (closed_ || queue_.size() >= options_.send_queue_limit) return false;
  queue_.push_back(std::move(frame));
  wake_writer_.cancel();
  return true;
}

void Connection::Post(Frame frame) {
  asio::post(socket_.get_executor(),
             [self = shared_from_this(), f = std::move(frame)]() mutable { self->Send(std::move(f)); });
}

asio::awaitable<std::variant<Frame, std::error_code>> Connection::Request(
    Frame request, std::chrono::milliseconds deadline) {
  if (closed_) co_return std::make_error_code(std::errc::not_connected);
  std::uint64_t id = next_request_id_++;
  request.request_id = id;
  auto pending = std::make_shared<Pending>(socket_.get_executor());
  pending_[id] = pending;
  if (!Send(std::move(request))) {
    pending_.erase(id);
    co_return std::make_error_code(std::errc::no_buffer_space);
  }
  pending->timer.expires_after(deadline);
  boost::system::error_code ec;
  co_await pending->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  pending_.erase(id);
  if (pending->result) co_return std::move(*pending->result);
  co_return std::make_error_code(std::errc::timed_out);
}

void Connection::Close(std::error_code why) {
  if (closed_) return;
  closed_ = true;
  if (established_) {
    spdlog::info("peer {}: connection closed: {}", peer_, why.message());
  } else {
    spdlog::warn("peer {}: handshake failed: {}", peer_, why.message());
  }
  boost::system::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  wake_writer_.cancel();
  handshake_timer_.cancel();
  for (auto& [id, p] : pending_) {
    p->result = why;
    p->timer.cancel();
  }
  queue_.clear();
  for (auto& h : on_close_) h(*this, why);
}

}  // namespace dfs::net
