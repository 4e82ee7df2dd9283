#include "cmd/dfs/control_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <optional>
#include <system_error>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "cmd/node/control_protocol.h"
#include "core/io.h"

namespace dfs::cli {
namespace {

using core::Result;
using core::Status;
using node::ControlClient;
using node::UniqueFd;

// A FileServer opened by this process.
class LocalFileOps final : public FileOps {
 public:
  explicit LocalFileOps(std::unique_ptr<core::FileServer> fs) : fs_(std::move(fs)) {}

  Status Put(std::string_view key, int fd, const std::string& name,
             const core::ProgressFn& progress) override {
    core::FdReader reader(fd, name);
    return fs_->Store(key, reader, progress);
  }
  Status Get(std::string_view key, int fd, const std::string& name,
             const core::ProgressFn& progress) override {
    core::FdWriter writer(fd, name);
    return fs_->Get(key, writer, progress);
  }
  Status Delete(std::string_view key) override { return fs_->Delete(key); }
  Result<bool> Has(std::string_view key) override { return fs_->Has(key); }
  Status List(std::string_view prefix,
              const std::function<bool(const core::FileInfo&)>& fn) override {
    return fs_->List(prefix, fn);
  }
  Result<core::FileInfo> Stat(std::string_view key) override { return fs_->Stat(key); }

 private:
  std::unique_ptr<core::FileServer> fs_;
};

// Copies `from` into `to` on a thread of its own, so that a terminal is
// never handed to the node: a dfsd started in the background of the same
// terminal would be stopped (SIGTTIN, or SIGTTOU with `stty tostop`) on
// touching it. `to` is closed when the copy ends.
class Relay {
 public:
  // `to_is_socket`: `to` is the socket the node reads a put from; writes to
  // it use MSG_NOSIGNAL (a node that stopped reading makes an error, not a
  // SIGPIPE), and a failed read of `from` resets it so that the node fails
  // the put instead of taking what came as the whole file. `name` names
  // the terminal in errors.
  static Result<std::unique_ptr<Relay>> Start(int from, UniqueFd to, bool to_is_socket,
                                              std::string name) {
    int stop[2];
    if (::pipe2(stop, O_CLOEXEC) != 0) return core::ErrnoStatus(errno, "pipe");
    std::unique_ptr<Relay> r(new Relay(from, std::move(to), to_is_socket, std::move(name), stop));
    try {
      r->thread_ = std::thread([p = r.get()] { p->Run(); });
    } catch (const std::system_error& e) {
      return Status::Io(fmt::format("cannot start a thread: {}", e.what()));
    }
    return r;
  }
  // Waits until the copy has reached the end of `from`; returns the first
  // read or write error.
  Status Finish() {
    if (thread_.joinable()) thread_.join();
    return error_;
  }
  // Ends the copy where it is; returns the first read or write error.
  Status Stop() {
    char c = 0;
    (void)!::write(stop_w_.get(), &c, 1);
    return Finish();
  }
  ~Relay() { (void)Stop(); }

 private:
  Relay(int from, UniqueFd to, bool to_is_socket, std::string name, int stop[2])
      : from_(from),
        to_(std::move(to)),
        to_is_socket_(to_is_socket),
        name_(std::move(name)),
        stop_r_(stop[0]),
        stop_w_(stop[1]) {}

  // After a failed write it reads on and drops what it reads, so that the
  // writer on the other side never waits on it.
  void Run() {
    char buf[64 * 1024];
    for (;;) {
      pollfd p[2] = {{from_, POLLIN, 0}, {stop_r_.get(), POLLIN, 0}};
      if (::poll(p, 2, -1) < 0 && errno != EINTR) break;
      if (p[1].revents != 0) break;
      if (p[0].revents == 0) continue;
      ssize_t n = ::read(from_, buf, sizeof(buf));
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n < 0) {
        error_ = core::ErrnoStatus(errno, "read " + name_);
        if (to_is_socket_ && to_.valid()) {
          linger reset{1, 0};
          (void)::setsockopt(to_.get(), SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
        }
        break;
      }
      if (n == 0) break;
      if (to_.valid() && !WriteAll(buf, static_cast<std::size_t>(n))) {
        if (error_.ok()) error_ = core::ErrnoStatus(errno, "write " + name_);
        to_.Reset();
      }
    }
    to_.Reset();
  }
  bool WriteAll(const char* data, std::size_t size) {
    while (size > 0) {
      ssize_t n = to_is_socket_ ? ::send(to_.get(), data, size, MSG_NOSIGNAL)
                                : ::write(to_.get(), data, size);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      data += n;
      size -= static_cast<std::size_t>(n);
    }
    return true;
  }

  int from_;
  UniqueFd to_;
  bool to_is_socket_;
  std::string name_;
  UniqueFd stop_r_, stop_w_;
  Status error_;  // written by the thread; read after it is joined
  std::thread thread_;
};

// A connected pair of stream sockets.
Result<std::pair<UniqueFd, UniqueFd>> SocketPair() {
  int sp[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) != 0) {
    return core::ErrnoStatus(errno, "socketpair");
  }
  return std::make_pair(UniqueFd(sp[0]), UniqueFd(sp[1]));
}

// The node running on the data directory: one control connection per
// operation (the probe's connection serves the first).
class NodeFileOps final : public FileOps {
 public:
  NodeFileOps(std::filesystem::path socket_path, ControlClient first)
      : socket_path_(std::move(socket_path)), first_(std::move(first)) {}

  Status Put(std::string_view key, int fd, const std::string& name,
             const core::ProgressFn& progress) override {
    DFS_ASSIGN_OR_RETURN(ControlClient c, Client());
    if (::isatty(fd) != 1) return c.Put(key, fd, name, progress);
    DFS_ASSIGN_OR_RETURN(auto pair, SocketPair());
    auto& [ours, node_end] = pair;
    DFS_ASSIGN_OR_RETURN(std::unique_ptr<Relay> relay,
                         Relay::Start(fd, std::move(ours), true, name));
    Status s = c.Put(key, node_end.get(), name, progress);
    // After a success the copy has ended already (the node saw its end).
    Status relayed = relay->Stop();
    if (!s.ok() && !relayed.ok()) return relayed.WithContext(fmt::format("store '{}'", key));
    return s;
  }

  Status Get(std::string_view key, int fd, const std::string& name,
             const core::ProgressFn& progress) override {
    DFS_ASSIGN_OR_RETURN(ControlClient c, Client());
    if (::isatty(fd) != 1) return c.Get(key, fd, name, progress);
    DFS_ASSIGN_OR_RETURN(auto pair, SocketPair());
    auto& [ours, node_end] = pair;
    UniqueFd out(::dup(fd));
    if (!out.valid()) return core::ErrnoStatus(errno, "dup " + name);
    DFS_ASSIGN_OR_RETURN(std::unique_ptr<Relay> relay,
                         Relay::Start(ours.get(), std::move(out), false, name));
    Status s = c.Get(key, node_end.get(), name, progress);
    node_end.Reset();  // the node has closed its copy: the relay sees the end
    Status written = relay->Finish();
    return s.ok() ? written : s;
  }

  Status Delete(std::string_view key) override {
    DFS_ASSIGN_OR_RETURN(ControlClient c, Client());
    return c.Delete(key);
  }
  Result<bool> Has(std::string_view key) override {
    DFS_ASSIGN_OR_RETURN(ControlClient c, Client());
    return c.Has(key);
  }
  Status List(std::string_view prefix,
              const std::function<bool(const core::FileInfo&)>& fn) override {
    DFS_ASSIGN_OR_RETURN(ControlClient c, Client());
    return c.List(prefix, fn);
  }
  Result<core::FileInfo> Stat(std::string_view key) override {
    DFS_ASSIGN_OR_RETURN(ControlClient c, Client());
    return c.Stat(key);
  }

 private:
  Result<ControlClient> Client() {
    if (first_.has_value()) {
      ControlClient c = std::move(*first_);
      first_.reset();
      return c;
    }
    Result<ControlClient> c = ControlClient::Connect(socket_path_);
    if (!c.ok()) return c.status().WithContext("the node stopped");
    return c;
  }

  std::filesystem::path socket_path_;
  std::optional<ControlClient> first_;
};

// A connection to the node running on `data_dir`; when none runs, an error
// that says how to start one.
Result<ControlClient> ConnectNode(const std::filesystem::path& data_dir) {
  Result<ControlClient> client = ControlClient::Connect(data_dir / node::kControlSocketName);
  if (client.ok() || client.status().code() != core::ErrorCode::kUnavailable) return client;
  return Status::Unavailable(
      fmt::format("no dfsd is running on {} (start one: dfsd --data {} --network-key FILE)",
                  data_dir.string(), data_dir.string()));
}

}  // namespace

Result<std::unique_ptr<FileOps>> OpenFileOps(
    const std::filesystem::path& data_dir,
    const std::function<Result<core::VolumeKey>()>& load_key) {
  std::filesystem::path socket_path = data_dir / node::kControlSocketName;
  Result<ControlClient> client = ControlClient::Connect(socket_path);
  if (client.ok()) {
    return std::unique_ptr<FileOps>(
        std::make_unique<NodeFileOps>(socket_path, std::move(client).value()));
  }
  // A socket this user may not use is another user's node; anything else
  // means no node runs here, and the store says what is wrong, if anything.
  if (client.status().code() == core::ErrorCode::kPermission) return client.status();
  DFS_ASSIGN_OR_RETURN(core::VolumeKey key, load_key());
  DFS_ASSIGN_OR_RETURN(std::unique_ptr<core::FileServer> fs, core::FileServer::Open(data_dir, key));
  return std::unique_ptr<FileOps>(std::make_unique<LocalFileOps>(std::move(fs)));
}

Result<nlohmann::json> AskNode(const std::filesystem::path& data_dir, const std::string& what) {
  DFS_ASSIGN_OR_RETURN(ControlClient client, ConnectNode(data_dir));
  return client.Query(what);
}

Result<core::ScrubStats> ScrubThroughNode(
    const std::filesystem::path& data_dir,
    const std::function<void(std::uint64_t, std::uint64_t)>& progress) {
  DFS_ASSIGN_OR_RETURN(ControlClient client, ConnectNode(data_dir));
  return client.Scrub(progress);
}

Result<nlohmann::json> RepairThroughNode(const std::filesystem::path& data_dir,
                                         const std::function<void(std::uint64_t)>& progress) {
  DFS_ASSIGN_OR_RETURN(ControlClient client, ConnectNode(data_dir));
  return client.Repair(progress);
}

Result<nlohmann::json> GcThroughNode(const std::filesystem::path& data_dir,
                                     std::optional<std::chrono::seconds> grace,
                                     const std::function<void(std::uint64_t)>& progress) {
  DFS_ASSIGN_OR_RETURN(ControlClient client, ConnectNode(data_dir));
  return client.Gc(grace, progress);
}

}  // namespace dfs::cli
