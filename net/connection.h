// Connection: one authenticated, encrypted TCP connection to a peer.
//
// Lifecycle: Start() runs the handshake (dropped if it does not finish within
// handshake_timeout), then three coroutines: the reader (decode, open,
// dispatch), the writer (drains a bounded queue: the backpressure), and the
// heartbeat (a Ping every heartbeat_interval; the peer is dead when nothing
// has arrived for dead_after). Any error closes the connection once, calls
// the close handler with the reason, and logs one line naming the peer.
//
// Streams (docs/protocol.md, "streams"): a frame whose payload is larger
// than stream_threshold is sent as a stream — StreamOpen, StreamData pieces
// of stream_chunk bytes as the receiver grants credit (StreamCredit), then
// StreamClose — and the receiver hands it to the handlers as the one frame
// it was. Small frames go out before stream pieces, and streams take turns,
// so many transfers and small requests share a connection without one
// blocking the others. The receiver admits a stream (and grants it credit)
// only while the streams it is reassembling fit in stream_memory; either
// side may cancel a stream (StreamCancel) without closing the connection:
// a request whose stream is cancelled fails, a request that times out
// cancels its stream.
//
// Threading: a Connection lives on one io_context thread. Every method must
// be called on that thread (asserted), except Post(), which any thread may
// use to send. Handlers run on the io thread and must not block.
#pragma once

#include <utility>  // before Asio, for GCC 12

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <variant>
#include <vector>

#include "net/frame.h"
#include "net/frame_cipher.h"
#include "net/handshake.h"

namespace dfs::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct ConnectionOptions {
  std::chrono::milliseconds handshake_timeout{5000};
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds dead_after{5000};
  std::size_t send_queue_limit = 256;  // frames and streams waiting to be written
  std::size_t stream_threshold = 64 << 10;  // larger payloads travel as streams
  std::size_t stream_chunk = 256 << 10;     // bytes per StreamData frame
  std::size_t stream_window = 2 << 20;      // credit a stream is granted at a time
  std::size_t stream_memory = 16 << 20;     // incoming stream bytes being reassembled
  std::size_t max_streams = 256;            // incoming streams open or waiting at once
};

enum class Role { kInitiator, kResponder };

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  // A frame that is not a heartbeat or a response to our own request.
  using FrameHandler = std::function<void(Connection&, Frame)>;
  // Called once, when the connection is established (handshake done).
  using EstablishedHandler = std::function<void(Connection&)>;
  // Called once, when the connection closes, with why.
  using CloseHandler = std::function<void(Connection&, std::error_code)>;

  static std::shared_ptr<Connection> Create(tcp::socket socket, const NetworkKey& key, Role role,
                                            ConnectionOptions options);
  ~Connection();

  // One frame handler; established and close handlers accumulate (a Dialer
  // and the layer above can both watch one connection).
  void OnFrame(FrameHandler h) { on_frame_ = std::move(h); }
  void OnEstablished(EstablishedHandler h) { on_established_.push_back(std::move(h)); }
  void OnClose(CloseHandler h) { on_close_.push_back(std::move(h)); }

  void Start();

  // Queues a frame to send once established. False when the queue is full
  // (the caller slows down) or the connection is closed.
  bool Send(Frame frame);
  // Send from any thread.
  void Post(Frame frame);

  // Sends a Request and waits for the Response with the same request id, or
  // the deadline. Returns the response, or an error (timed_out, or why the
  // connection closed).
  asio::awaitable<std::variant<Frame, std::error_code>> Request(Frame request,
                                                                std::chrono::milliseconds deadline);

  void Close(std::error_code why);
  bool established() const { return established_; }
  bool closed() const { return closed_; }
  const std::string& peer() const { return peer_; }
  std::size_t queued() const { return queue_.size() + out_streams_.size(); }
  // Incoming stream bytes reserved now, and the most ever (for tests).
  std::size_t stream_memory_in_use() const { return in_memory_; }
  std::size_t stream_memory_peak() const { return in_memory_peak_; }

 private:
  Connection(tcp::socket socket, const NetworkKey& key, Role role, ConnectionOptions options);
  void AssertIoThread() const;

  asio::awaitable<void> Run();
  asio::awaitable<std::error_code> Handshake();
  asio::awaitable<std::error_code> ReadFrame(Frame* out);
  asio::awaitable<void> WriteRaw(const Bytes& bytes);
  asio::awaitable<void> Reader();
  asio::awaitable<void> Writer();
  asio::awaitable<void> Heartbeat();
  void Dispatch(Frame frame);
  // Streams: the sender's and the receiver's halves.
  void OpenOutStream(Frame frame);
  // The next stream frame to send: its header in *out, its payload (a piece
  // of the message, not copied) in *piece, valid until the writer next
  // waits (a cancel may then drop the stream).
  bool NextStreamPiece(Frame* out, ByteSpan* piece);
  void CancelOutStream(std::uint64_t id, const std::string& why, bool tell_peer);
  void OnStreamFrame(Frame frame);
  // Where a StreamData frame's payload lands: in its stream's buffer, at the
  // end of what arrived, when the stream is admitted and the piece is
  // within its credit (decoded, opened and reassembled there: no copy).
  MutableByteSpan StreamSink(const Frame& header, std::size_t length);
  // A piece of `length` bytes was opened in place at the end of stream `id`.
  void OnStreamPiece(std::uint64_t id, std::size_t length);
  void AdmitWaiting();
  void Grant(std::uint64_t id);
  void CancelInStream(std::uint64_t id, const std::string& why);

  struct OutStream {
    Frame frame;  // the message; its payload goes out in pieces
    std::size_t offset = 0;
    std::size_t credit = 0;
  };
  struct InStream {
    FrameType type = FrameType::kPing;
    std::uint8_t flags = 0;
    std::uint64_t request_id = 0;
    std::size_t total = 0;
    std::size_t granted = 0;
    std::size_t filled = 0;  // bytes of the payload arrived
    bool admitted = false;
    // Once admitted: total + kSealOverhead bytes, so that a piece and its
    // tag land at `filled` (the next piece overwrites the tag).
    Bytes data;
  };

  struct Pending {
    explicit Pending(asio::any_io_executor ex) : timer(ex) {}
    asio::steady_timer timer;
    std::optional<std::variant<Frame, std::error_code>> result;
  };

  tcp::socket socket_;
  NetworkKey key_;
  Role role_;
  ConnectionOptions options_;
  std::string peer_;
  FrameDecoder decoder_;
  MutableByteSpan sunk_;  // where the frame being read lands, when in a stream
  Bytes read_buf_;
  ByteSpan unread_;
  std::optional<FrameSealer> sealer_;
  std::optional<FrameOpener> opener_;
  std::deque<Frame> queue_;
  asio::steady_timer wake_writer_;
  asio::steady_timer handshake_timer_;
  std::chrono::steady_clock::time_point last_heard_;
  std::uint64_t next_request_id_ = 1;
  std::map<std::uint64_t, std::shared_ptr<Pending>> pending_;
  std::map<std::uint64_t, OutStream> out_streams_;
  std::uint64_t next_stream_id_ = 1;
  std::uint64_t stream_turn_ = 0;  // the stream id whose turn is next
  std::map<std::uint64_t, InStream> in_streams_;
  std::deque<std::uint64_t> waiting_;  // opened, not yet admitted
  std::size_t in_memory_ = 0;
  std::size_t in_memory_peak_ = 0;
  bool established_ = false;
  bool closed_ = false;
  FrameHandler on_frame_;
  std::vector<EstablishedHandler> on_established_;
  std::vector<CloseHandler> on_close_;
};

}  // namespace dfs::net
