// The control protocol between the `dfs` command line and the node running
// on the same data directory, over the Unix stream socket DIR/control.sock
// (mode 0600: only the node's user may connect). Shared by ControlServer
// (cmd/node/control_server.h) and the `dfs` program, which compiles this
// file itself so that it does not link Asio.
//
// Version 1. One connection carries one request:
//
//   client -> node   ONE line of JSON (at most kMaxRequestLine bytes + '\n'):
//                      {"v":1,"op":"put","key":"a/b","name":"report.pdf"}
//                    "v" is optional (1 when absent; another value is refused).
//                    put: a readable fd of the source (the file the client
//                         opened, or its stdin) travels with the line's first
//                         byte (SCM_RIGHTS, the same sendmsg); the node reads
//                         it to its end.
//                    get: a writable fd of the destination (a temporary file
//                         the client created, or its stdout); the node writes
//                         the content to it.
//                    "name" (put, get; optional) names that file in errors.
//                    Ops: put, get, rm, has, stat (with "key"), ls (with
//                    "prefix", "" or absent for every key), status, peers,
//                    scrub, repair, gc ("grace": seconds, optional).
//   node -> client   JSON lines:
//                    put, get: zero or more {"progress":N} (plaintext bytes
//                         done; at most about 5 a second);
//                    scrub: zero or more {"progress":N,"bad":B} (local
//                         chunks checked, and found bad, so far; at most
//                         about 5 a second);
//                    repair, gc: zero or more {"progress":N} (local
//                         chunks checked so far);
//                    ls:  one {"item":{"key":K,"size":N,"chunks":N,"mtime":T}}
//                         per key in byte order, sent as the listing goes;
//                    then exactly one final line:
//                         {"ok":true}                        rm
//                         {"ok":true,"size":N}               put, get (bytes)
//                         {"ok":true,"present":B}            has
//                         {"ok":true,"key":K,"size":N,"chunks":N,
//                          "stored_bytes":N,"mtime":T}       stat
//                         {"ok":true,"result":J}             status, peers,
//                                                            repair, gc (J as status's
//                                                            "repair", "gc")
//                         {"ok":true,"checked":N,"bad":N,"repaired":N,
//                          "unrepaired":N,"unrepaired_ids":[H,..]}  scrub
//                    or   {"ok":false,"code":C,"error":"message"}
//                    where C names a core::ErrorCode ("not_found", "exists",
//                    "corrupt", "wrong_key", "unavailable", "invalid_argument",
//                    "no_space", "io", "permission"), so that the client
//                    shows the same error line and exit status as when it
//                    runs the FileServer itself. T is nanoseconds since the
//                    Unix epoch. H is a chunk id in hex (the first 100 of
//                    the unrepaired). The node closes the connection after the
//                    final line; a malformed or oversized request line is
//                    answered with an "invalid_argument" error and closed, as
//                    is a client that sends no request within 10 s.
//
// The node closes a passed fd before it sends the final line. When the
// client's connection closes during a put, the node stops reading and does
// not commit; in particular a source that ends (EOF) after the client went
// away is not taken as complete. During a get it stops writing. A scrub
// runs to its end either way (what it repairs stays repaired).
//
// All functions here may be called from any thread; a LineReader or a
// ControlClient is used by one thread at a time. Nothing here raises
// SIGPIPE (sends use MSG_NOSIGNAL).
#pragma once

#include <sys/un.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/file_server.h"
#include "core/io.h"
#include "core/repair.h"
#include "core/status.h"

namespace dfs::node {

inline constexpr int kControlProtocolVersion = 1;
inline constexpr std::size_t kMaxRequestLine = 64 * 1024;
inline constexpr std::size_t kMaxAnswerLine = 16 * 1024 * 1024;
inline constexpr char kControlSocketName[] = "control.sock";

using core::UniqueFd;  // core/io.h

// "not_found" for kNotFound, and so on; ErrorCodeFromWire maps back (an
// unknown name is kIo).
std::string_view ErrorCodeWire(core::ErrorCode code);
core::ErrorCode ErrorCodeFromWire(std::string_view name);

// `j` as one line of JSON followed by '\n'. Invalid UTF-8 in strings is
// replaced rather than thrown on.
std::string JsonLine(const nlohmann::json& j);
// The final line of a failed request: {"ok":false,"code":..,"error":..}.
std::string ErrorLine(const core::Status& status);
// The Status a final line carries: OK when "ok" is true, else the error it
// names. kIo when `answer` is not a final line.
core::Status StatusFromAnswer(const nlohmann::json& answer);

// Sends all of `line` on the stream socket `sock`, with `fd` (when >= 0)
// attached to its first byte (SCM_RIGHTS). Errors: kUnavailable (the other
// side closed), kIo.
core::Status SendLine(int sock, std::string_view line, int fd = -1);

// The address of the Unix socket at `path`. Errors: kInvalidArgument (the
// path is longer than a socket address can hold).
core::Result<sockaddr_un> UnixAddress(const std::filesystem::path& path);

// True when the peer of `sock` has closed or shut down its side (or the
// socket failed); never blocks.
bool PeerGone(int sock);

// Reads '\n'-terminated lines from a stream socket through its own buffer,
// keeping the first fd that arrives with them (SCM_RIGHTS; any others are
// closed). Does not own `sock`.
class LineReader {
 public:
  LineReader(int sock, std::size_t max_line) : sock_(sock), max_line_(max_line) {}

  // The next line without its '\n'. `timeout` bounds the wait for the whole
  // line; a negative one waits for ever. Errors: kInvalidArgument (a line
  // longer than max_line), kUnavailable (the connection closed first, or the
  // timeout passed), kIo.
  core::Result<std::string> ReadLine(std::chrono::milliseconds timeout);

  // The fd that came with the data read so far (-1 if none).
  UniqueFd TakeFd() { return std::move(fd_); }

 private:
  int sock_;
  std::size_t max_line_;
  std::string buf_;
  std::size_t scanned_ = 0;  // bytes of buf_ known to hold no '\n'
  bool eof_ = false;
  UniqueFd fd_;
};

// The client side: a connection to a node's control socket that carries
// one request. Each request method uses the connection up (the node closes
// it after its final line); a second call fails with kInvalidArgument.
// Keys are checked here with the FileServer's own rules before they are
// sent, so a bad key gives the same error as a local FileServer.
//
// put, get and scrub wait as long as the node works (its progress lines and
// its closing the connection end the wait); the other requests give up after
// a deadline (kUnavailable).
class ControlClient {
 public:
  // Errors: kUnavailable when no node listens on `socket_path` (no socket,
  // a stale one, or a path where none can be), kInvalidArgument (path too
  // long), kPermission (a socket this user may not use), kIo.
  static core::Result<ControlClient> Connect(const std::filesystem::path& socket_path);

  ControlClient(ControlClient&&) = default;
  ControlClient& operator=(ControlClient&&) = default;

  // Stores what `source_fd` yields under `key`. `name` names the source in
  // errors ("standard input", a path). Errors: as FileServer::Store, plus
  // the node's and the connection's.
  core::Status Put(std::string_view key, int source_fd, std::string_view name,
                   const core::ProgressFn& progress = {});
  // Writes the content of `key` to `dest_fd`. Errors: as FileServer::Get.
  core::Status Get(std::string_view key, int dest_fd, std::string_view name,
                   const core::ProgressFn& progress = {});
  core::Status Delete(std::string_view key);
  core::Result<bool> Has(std::string_view key);
  // Calls fn per key starting with `prefix`, in byte order, as the node
  // streams them, until it returns false.
  core::Status List(std::string_view prefix, const std::function<bool(const core::FileInfo&)>& fn);
  core::Result<core::FileInfo> Stat(std::string_view key);
  // "status" or "peers": the JSON the node answers with.
  core::Result<nlohmann::json> Query(std::string_view op);
  // Has the node verify every chunk it holds and replace bad ones from its
  // peers; `progress(checked, bad)` follows its progress lines. Errors:
  // kUnavailable (a node that does not scrub), the connection's.
  core::Result<core::ScrubStats> Scrub(
      const std::function<void(std::uint64_t checked, std::uint64_t bad)>& progress = {});
  // Has the node run a repair pass now; `progress(checked)` follows its
  // progress lines. Returns the pass as JSON (status's "repair" object).
  // Errors: kUnavailable (a node that does not repair), the connection's.
  core::Result<nlohmann::json> Repair(const std::function<void(std::uint64_t checked)>& progress = {});
  // Has the node run a chunk collection pass now (with this grace period,
  // or its own); returns the pass as JSON (status's "gc" object).
  core::Result<nlohmann::json> Gc(std::optional<std::chrono::seconds> grace,
                                  const std::function<void(std::uint64_t chunks)>& progress = {});

 private:
  explicit ControlClient(UniqueFd fd) : fd_(std::move(fd)) {}

  // put or get: `fd` rides on the request; the final line's size is
  // reported to `progress` last.
  core::Status Transfer(std::string_view op, std::string_view key, int fd, std::string_view name,
                        const core::ProgressFn& progress);

  // Sends `request` (with `fd` attached when >= 0) and reads the answer:
  // progress lines (whose "progress" is a count) go to `on_progress`, item
  // lines to `on_item` (which may return false to stop), and the final line
  // is returned once it says ok.
  core::Result<nlohmann::json> Call(nlohmann::json request, int fd,
                                    std::chrono::milliseconds line_timeout,
                                    const std::function<void(const nlohmann::json&)>& on_progress,
                                    const std::function<bool(const nlohmann::json&)>& on_item);
  // A pass (repair, gc): progress lines, then the final line's "result".
  core::Result<nlohmann::json> Pass(nlohmann::json request,
                                    const std::function<void(std::uint64_t)>& progress);

  UniqueFd fd_;
};

}  // namespace dfs::node
