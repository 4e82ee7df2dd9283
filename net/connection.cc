#include "net/connection.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cassert>
#include <thread>

#include <spdlog/spdlog.h>

#include "core/encoding.h"

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

constexpr std::size_t kStreamOpenSize = 16;
constexpr std::uint8_t kCancelFromSender = 1;  // StreamCancel flag: the stream's sender cancels

// App frames may travel as streams; transport frames never do.
bool Streamable(FrameType type) {
  auto t = static_cast<std::uint8_t>(type);
  return t >= static_cast<std::uint8_t>(FrameType::kRequest) &&
         (t < static_cast<std::uint8_t>(FrameType::kStreamOpen) ||
          t > static_cast<std::uint8_t>(FrameType::kStreamCancel));
}

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
  // Requests, credit grants and answers are small frames: Nagle's algorithm
  // would hold each one back until the peer acknowledged the last segment.
  boost::system::error_code ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
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
  decoder_.set_payload_sink(
      [this](const Frame& header, std::size_t length) { return StreamSink(header, length); });
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
    // The rest of a stream piece is read straight into its stream's buffer.
    if (MutableByteSpan direct = decoder_.SinkSpace(); !direct.empty()) {
      std::size_t n = co_await socket_.async_read_some(asio::buffer(direct.data(), direct.size()),
                                                       asio::use_awaitable);
      // A close frees the stream buffers; the reader stops without them.
      if (closed_) co_return std::make_error_code(std::errc::operation_canceled);
      std::optional<Frame> frame;
      decoder_.Filled(n, &frame);
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
    // Closed while the read completed: a piece's stream buffer is gone.
    if (closed_) co_return;
    MutableByteSpan sunk = std::exchange(sunk_, {});
    if (!ec) ec = sunk.empty() ? opener_->Open(&frame) : opener_->Open(frame, sunk);
    if (ec) {
      Close(ec);
      co_return;
    }
    last_heard_ = std::chrono::steady_clock::now();
    if (sunk.empty()) {
      Dispatch(std::move(frame));
    } else {
      OnStreamPiece(frame.request_id, sunk.size() - kSealOverhead);
    }
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
    case FrameType::kStreamOpen:
    case FrameType::kStreamData:
    case FrameType::kStreamCredit:
    case FrameType::kStreamClose:
    case FrameType::kStreamCancel: OnStreamFrame(std::move(frame)); return;
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
    // Queued frames (requests, answers, credit, heartbeats) go before the
    // next stream piece, so no transfer holds up the small frames.
    Frame frame;
    ByteSpan piece;
    while (!closed_ && (!queue_.empty() || NextStreamPiece(&frame, &piece))) {
      const bool queued_frame = !queue_.empty();
      if (queued_frame) {
        frame = std::move(queue_.front());
        queue_.pop_front();
        piece = frame.payload;
      }
      // Sealed (copied into the wire buffer) before anything can drop the piece.
      if (auto ec = sealer_->Seal(frame.type, frame.flags, frame.request_id, piece, &wire)) {
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
  if (closed_ || queued() >= options_.send_queue_limit) return false;
  if (frame.payload.size() > options_.stream_threshold && Streamable(frame.type)) {
    std::optional<std::uint32_t> max = MaxPayload(static_cast<std::uint8_t>(frame.type));
    if (!max || frame.payload.size() > *max - kSealOverhead) {
      spdlog::error("peer {}: a frame of type {} with {} bytes exceeds its maximum; not sent", peer_,
                    static_cast<int>(frame.type), frame.payload.size());
      return false;
    }
    OpenOutStream(std::move(frame));
  } else {
    queue_.push_back(std::move(frame));
  }
  wake_writer_.cancel();
  return true;
}

void Connection::OpenOutStream(Frame frame) {
  std::uint64_t id = next_stream_id_++;
  Frame open;
  open.type = FrameType::kStreamOpen;
  open.request_id = id;
  open.payload.assign(kStreamOpenSize, 0);
  open.payload[0] = static_cast<std::uint8_t>(frame.type);
  open.payload[1] = frame.flags;
  core::StoreLe(open.payload.data() + 4, frame.payload.size(), 4);
  core::StoreLe(open.payload.data() + 8, frame.request_id, 8);
  queue_.push_back(std::move(open));
  out_streams_.emplace(id, OutStream{std::move(frame)});
}

bool Connection::NextStreamPiece(Frame* out, ByteSpan* piece) {
  if (out_streams_.empty()) return false;
  auto it = out_streams_.lower_bound(stream_turn_);
  for (std::size_t tried = 0; tried < out_streams_.size(); ++tried, ++it) {
    if (it == out_streams_.end()) it = out_streams_.begin();
    const std::uint64_t id = it->first;
    OutStream& s = it->second;
    std::size_t left = s.frame.payload.size() - s.offset;
    if (left == 0) {
      *out = Frame{FrameType::kStreamClose, 0, id, {}};
      *piece = {};
      out_streams_.erase(it);
      stream_turn_ = id + 1;
      return true;
    }
    if (s.credit == 0) continue;
    std::size_t n = std::min({left, s.credit, options_.stream_chunk});
    out->type = FrameType::kStreamData;
    out->flags = 0;
    out->request_id = id;
    out->payload.clear();
    *piece = ByteSpan(s.frame.payload.data() + s.offset, n);
    s.offset += n;
    s.credit -= n;
    stream_turn_ = id + 1;  // the others take their turn first
    return true;
  }
  return false;
}

void Connection::CancelOutStream(std::uint64_t id, const std::string& why, bool tell_peer) {
  auto it = out_streams_.find(id);
  if (it == out_streams_.end()) return;
  std::uint64_t request_id = it->second.frame.request_id;
  out_streams_.erase(it);
  if (tell_peer) {
    Frame cancel{FrameType::kStreamCancel, kCancelFromSender, id, {}};
    cancel.payload.assign(why.begin(), why.end());
    queue_.push_back(std::move(cancel));
    wake_writer_.cancel();
    return;
  }
  spdlog::warn("peer {}: refused a stream: {}", peer_, why);
  auto p = pending_.find(request_id);
  if (request_id != 0 && p != pending_.end()) {
    p->second->result = std::make_error_code(std::errc::operation_canceled);
    p->second->timer.cancel();
  }
}

void Connection::CancelInStream(std::uint64_t id, const std::string& why) {
  auto it = in_streams_.find(id);
  if (it != in_streams_.end()) {
    if (it->second.admitted) in_memory_ -= it->second.total;
    in_streams_.erase(it);
  }
  Frame cancel{FrameType::kStreamCancel, 0, id, {}};
  cancel.payload.assign(why.begin(), why.end());
  queue_.push_back(std::move(cancel));
  wake_writer_.cancel();
  AdmitWaiting();
}

void Connection::Grant(std::uint64_t id) {
  auto it = in_streams_.find(id);
  if (it == in_streams_.end()) return;
  InStream& s = it->second;
  if (!s.admitted || s.granted >= s.total) return;
  std::size_t outstanding = s.granted - s.filled;
  if (outstanding > options_.stream_window / 2) return;
  std::size_t more = std::min(options_.stream_window - outstanding, s.total - s.granted);
  s.granted += more;
  Frame credit{FrameType::kStreamCredit, 0, id, Bytes(4)};
  core::StoreLe(credit.payload.data(), more, 4);
  queue_.push_back(std::move(credit));  // like heartbeats, credit skips the queue limit
  wake_writer_.cancel();
}

void Connection::AdmitWaiting() {
  while (!waiting_.empty()) {
    auto it = in_streams_.find(waiting_.front());
    if (it == in_streams_.end()) {
      waiting_.pop_front();  // cancelled while it waited
      continue;
    }
    if (in_memory_ + it->second.total > options_.stream_memory) return;
    waiting_.pop_front();
    it->second.admitted = true;
    in_memory_ += it->second.total;
    in_memory_peak_ = std::max(in_memory_peak_, in_memory_);
    it->second.data.resize(it->second.total + kSealOverhead);
    Grant(it->first);
  }
}

MutableByteSpan Connection::StreamSink(const Frame& header, std::size_t length) {
  if (header.type != FrameType::kStreamData || length < kSealOverhead) return {};
  auto it = in_streams_.find(header.request_id);
  if (it == in_streams_.end()) return {};
  InStream& s = it->second;
  // Beyond the credit (a violation) or not admitted: OnStreamFrame says so.
  if (!s.admitted || s.filled + length - kSealOverhead > s.granted) return {};
  sunk_ = MutableByteSpan(s.data.data() + s.filled, length);  // granted <= total: it fits
  return sunk_;
}

void Connection::OnStreamPiece(std::uint64_t id, std::size_t length) {
  auto it = in_streams_.find(id);
  if (it == in_streams_.end()) return;
  it->second.filled += length;
  Grant(id);
}

void Connection::OnStreamFrame(Frame frame) {
  const std::uint64_t id = frame.request_id;
  const Bytes& p = frame.payload;
  auto violation = [&](const char* what) {
    spdlog::warn("peer {}: {}; closing", peer_, what);
    Close(make_error_code(NetError::kBadStream));
  };
  switch (frame.type) {
    case FrameType::kStreamOpen: {
      if (p.size() != kStreamOpenSize || in_streams_.count(id) > 0) {
        return violation("malformed or repeated stream open");
      }
      InStream s;
      s.type = static_cast<FrameType>(p[0]);
      s.flags = p[1];
      s.total = core::LoadLe(p.data() + 4, 4);
      s.request_id = core::LoadLe(p.data() + 8, 8);
      std::optional<std::uint32_t> max = MaxPayload(p[0]);
      if (!max || !Streamable(s.type) || s.total > *max - kSealOverhead) {
        return CancelInStream(id, "stream of a type or size not accepted");
      }
      if (s.total > options_.stream_memory) {
        return CancelInStream(id, "stream larger than this connection's stream memory");
      }
      if (in_streams_.size() >= options_.max_streams) {
        return CancelInStream(id, "too many streams open");
      }
      in_streams_.emplace(id, std::move(s));
      waiting_.push_back(id);
      AdmitWaiting();
      return;
    }
    case FrameType::kStreamData: {
      auto it = in_streams_.find(id);
      if (it == in_streams_.end()) return;  // cancelled: late pieces are dropped
      InStream& s = it->second;
      if (!s.admitted || s.filled + p.size() > s.granted) {
        return violation("stream data beyond the credit granted");
      }
      std::copy(p.begin(), p.end(), s.data.begin() + static_cast<std::ptrdiff_t>(s.filled));
      OnStreamPiece(id, p.size());
      return;
    }
    case FrameType::kStreamClose: {
      auto it = in_streams_.find(id);
      if (it == in_streams_.end()) return;
      if (!it->second.admitted || it->second.filled != it->second.total) {
        return violation("stream closed short");
      }
      it->second.data.resize(it->second.total);  // drops the room for a tag; no copy
      Frame whole{it->second.type, it->second.flags, it->second.request_id, std::move(it->second.data)};
      in_memory_ -= it->second.total;
      in_streams_.erase(it);
      AdmitWaiting();
      Dispatch(std::move(whole));
      return;
    }
    case FrameType::kStreamCredit: {
      if (p.size() != 4) return violation("malformed stream credit");
      auto it = out_streams_.find(id);
      if (it == out_streams_.end()) return;
      it->second.credit += core::LoadLe(p.data(), 4);
      wake_writer_.cancel();
      return;
    }
    case FrameType::kStreamCancel: {
      std::string why(p.begin(), p.end());
      if (frame.flags & kCancelFromSender) {
        auto it = in_streams_.find(id);
        if (it == in_streams_.end()) return;
        if (it->second.admitted) in_memory_ -= it->second.total;
        in_streams_.erase(it);
        AdmitWaiting();
      } else {
        CancelOutStream(id, why, /*tell_peer=*/false);
      }
      return;
    }
    default: return;
  }
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
  for (const auto& [sid, stream] : out_streams_) {
    if (stream.frame.request_id == id) {
      CancelOutStream(sid, "the request's deadline passed", /*tell_peer=*/true);
      break;
    }
  }
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
  out_streams_.clear();
  in_streams_.clear();
  waiting_.clear();
  in_memory_ = 0;
  for (auto& h : on_close_) h(*this, why);
}

}  // namespace dfs::net
