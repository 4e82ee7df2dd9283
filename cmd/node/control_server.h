// ControlServer: the node's side of the local control socket DIR/control.sock
// (the protocol is in cmd/node/control_protocol.h). Through it `dfs put, get,
// rm, has, ls, stat` reach the FileServer of a running node, which holds the
// data directory's lock, `dfs status` and `dfs peers` ask about the node, and
// `dfs scrub` has it verify its chunks.
//
// Plain POSIX sockets and threads, no Asio: one accept thread and one thread
// per connected client (at most max_clients at once; more are answered with
// an "unavailable" error line and closed). FileServer calls block, so each
// runs on its client's thread; a put reads the client's fd and a get writes
// to it, both watching the client's connection so that a client that goes
// away stops its request (and a put is not committed).
//
// The process must ignore SIGPIPE (dfsd does; so must tests); sends use
// MSG_NOSIGNAL anyway.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <functional>
#include <optional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/file_server.h"
#include "core/repair.h"
#include "core/status.h"

namespace dfs::node {

// What a ControlServer serves. The handlers are called on client threads,
// possibly several at once, and must be thread-safe; they must outlive the
// ControlServer.
struct ControlHandlers {
  // Null on a keyless node: file requests answer an error saying the node
  // has no volume key.
  core::FileServer* files = nullptr;
  // The JSON `dfs status` prints. Unset: status requests answer an error.
  std::function<std::string()> status_json;
  // The JSON `dfs peers` prints. Unset: peers requests answer an error.
  std::function<std::string()> peers_json;
  // Verifies every local chunk, replacing bad ones from peers (`dfs scrub`);
  // calls `progress(checked, bad)` now and then, on the calling thread.
  // Blocks until the whole store is checked. Unset: scrub requests answer an
  // error.
  std::function<core::ScrubStats(
      const std::function<void(std::uint64_t checked, std::uint64_t bad)>& progress)>
      scrub;
  // Runs a repair pass now (`dfs repair`): every local chunk gets a copy on
  // each live holder that lacks one. Calls `progress(checked)` now and
  // then, on the calling thread; returns the pass as JSON text (the same
  // object as status's "repair"). Unset: repair requests answer an error.
  std::function<std::string(const std::function<void(std::uint64_t checked)>& progress)> repair;
  // Called after a put or rm succeeded, before the client hears of it: the
  // node waits there until the op has been written to its live peers, so
  // that a node killed right after still leaves it with them. Unset: none.
  std::function<void()> after_change;
  // Runs a chunk collection pass now (`dfs gc`), with the grace period in
  // seconds when given; returns it as JSON (status's "gc" object; an
  // "error" member when the pass failed). Unset: gc requests answer an error.
  std::function<std::string(std::optional<std::int64_t> grace_s,
                            const std::function<void(std::uint64_t chunks)>& progress)>
      gc;
};

class ControlServer {
 public:
  // Binds and listens on `socket_path` (mode 0600), replacing a stale socket
  // left by a node that died, and starts the accept thread. Errors:
  // kUnavailable (a live server already answers on that path), kExists
  // (something other than a socket is there), kInvalidArgument (the path is
  // too long for a socket), kPermission, kIo.
  static core::Result<std::unique_ptr<ControlServer>> Start(
      const std::filesystem::path& socket_path, ControlHandlers handlers,
      std::size_t max_clients = 32);

  // Stops accepting, shuts down (shutdown(2)) every client's socket, which
  // ends its request (a put still reading its source is not committed),
  // joins all threads and removes the socket file (if it is still ours).
  // Any thread but a handler's.
  ~ControlServer();

  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Clients connected now (their threads not yet finished). Any thread.
  std::size_t active_clients() const;

 private:
  struct Client {
    int fd = -1;  // closed and set to -1 (under mu_) by its thread when done
    bool done = false;
    std::thread thread;
  };

  ControlServer(std::filesystem::path socket_path, ControlHandlers handlers,
                std::size_t max_clients, int listen_fd, int wake_fd);

  void AcceptLoop();
  // Joins and forgets the clients whose threads have finished.
  void ReapFinished();
  // Runs on a client's thread: reads one request, answers it, closes.
  void Serve(Client* client);

  const std::filesystem::path socket_path_;
  const ControlHandlers handlers_;
  const std::size_t max_clients_;
  const int listen_fd_;
  const int wake_fd_;  // an eventfd; written once to stop the accept thread
  dev_t socket_dev_ = 0;
  ino_t socket_ino_ = 0;

  mutable std::mutex mu_;
  std::list<Client> clients_;  // guarded by mu_; stable addresses
  bool stopping_ = false;      // guarded by mu_

  std::thread accept_thread_;
};

}  // namespace dfs::node
