#include "cmd/node/control_server.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <iterator>
#include <system_error>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cmd/node/control_protocol.h"

namespace dfs::node {

using core::Result;
using core::Status;
using nlohmann::json;

namespace {

// A client that connected must send its request line within this.
constexpr std::chrono::milliseconds kRequestTimeout{10000};
constexpr std::chrono::milliseconds kProgressInterval{200};
// Largest write to a destination that may block (a terminal, a socket).
constexpr std::size_t kBlockingWrite = 64 * 1024;

Status ClientGone() { return Status::Unavailable("client went away"); }

// Waits until `fd` is ready for `events`, or fails when the client's
// connection `sock` ends first.
Status WaitReady(int fd, short events, int sock, const std::string& name) {
  for (;;) {
    pollfd p[2] = {{fd, events, 0}, {sock, POLLRDHUP, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return core::ErrnoStatus(errno, "poll " + name);
    }
    if (p[1].revents != 0) return ClientGone();
    if (p[0].revents != 0) return Status::Ok();
  }
}

// Reads the source fd a client passed for a put. Each read waits for the
// source and the client's connection together, so a client that goes away
// ends the put even while its source is silent; and the end of the source
// counts as the end of the file only while the client is still there (a
// pipe's writer that dies with the client must not commit what it sent).
class ClientSourceReader final : public core::Reader {
 public:
  ClientSourceReader(int source, int sock, std::string name)
      : source_(source), sock_(sock), name_(std::move(name)) {}

  Result<std::size_t> Read(core::MutableByteSpan buf) override {
    for (;;) {
      DFS_RETURN_IF_ERROR(WaitReady(source_, POLLIN, sock_, name_));
      ssize_t n = ::read(source_, buf.data(), buf.size());
      if (n > 0) return static_cast<std::size_t>(n);
      if (n == 0) {
        if (PeerGone(sock_)) return ClientGone();
        return std::size_t{0};
      }
      if (errno == EINTR || errno == EAGAIN) continue;
      return core::ErrnoStatus(errno, "read " + name_);
    }
  }

 private:
  int source_;
  int sock_;
  std::string name_;
};

// Writes to the destination fd a client passed for a get, and stops when
// the client goes away. A regular file is written directly. A pipe is
// written through our own non-blocking open file description of it (the
// client's description keeps its flags), so a reader that stops reading can
// never hold this thread; other kinds (terminals, sockets) are written in
// pieces once poll says they can take some.
class ClientDestWriter final : public core::Writer {
 public:
  ClientDestWriter(int dest, int sock, std::string name)
      : fd_(dest), sock_(sock), name_(std::move(name)) {
    struct stat st {};
    if (::fstat(dest, &st) != 0) return;
    direct_ = S_ISREG(st.st_mode) || S_ISBLK(st.st_mode);
    if (S_ISFIFO(st.st_mode)) {
      std::string self = fmt::format("/proc/self/fd/{}", dest);
      own_.Reset(::open(self.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
      if (own_.valid()) fd_ = own_.get();
    }
  }

  Status Write(core::ByteSpan data) override {
    if (direct_ && PeerGone(sock_)) return ClientGone();
    while (!data.empty()) {
      std::size_t size = data.size();
      if (!direct_) {
        DFS_RETURN_IF_ERROR(WaitReady(fd_, POLLOUT, sock_, name_));
        if (!own_.valid()) size = std::min(size, kBlockingWrite);
      }
      ssize_t n = ::write(fd_, data.data(), size);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        return core::ErrnoStatus(errno, "write " + name_);
      }
      data = data.subspan(static_cast<std::size_t>(n));
    }
    return Status::Ok();
  }

 private:
  int fd_;
  int sock_;
  std::string name_;
  bool direct_ = false;
  UniqueFd own_;
};

// Progress lines, at most one per kProgressInterval: {"progress":N}, and
// for a scrub {"progress":N,"bad":B}.
class ProgressLines {
 public:
  explicit ProgressLines(int sock) : sock_(sock), sent_at_(std::chrono::steady_clock::now()) {}
  void Update(std::uint64_t done) {
    done_ = done;
    if (Due()) Send({{"progress", done}});
  }
  void Update(std::uint64_t done, std::uint64_t bad) {
    done_ = done;
    if (Due()) Send({{"progress", done}, {"bad", bad}});
  }
  std::uint64_t done() const { return done_; }

 private:
  // True, and the interval starts again, when a line may go out now.
  bool Due() {
    auto now = std::chrono::steady_clock::now();
    if (now - sent_at_ < kProgressInterval) return false;
    sent_at_ = now;
    return true;
  }
  // A failure means the client went away, which the reader or writer
  // notices next (a scrub goes on to its end regardless).
  void Send(const json& line) { (void)SendLine(sock_, JsonLine(line)); }

  int sock_;
  std::uint64_t done_ = 0;
  std::chrono::steady_clock::time_point sent_at_;
};

struct Request {
  std::string op;
  std::string key;
  std::string prefix;
  std::string name = "the client's file";
  std::optional<std::int64_t> grace_s;  // gc: the grace period, seconds
};

bool IsFileOp(const std::string& op) {
  for (const char* f : {"put", "get", "rm", "has", "ls", "stat"}) {
    if (op == f) return true;
  }
  return false;
}

Result<Request> ParseRequest(const std::string& line) {
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::InvalidArgument("malformed request: not a JSON object");
  if (auto v = j.find("v"); v != j.end() && *v != kControlProtocolVersion) {
    return Status::InvalidArgument(fmt::format(
        "control protocol version {} is not supported (this node speaks {})",
        v->dump(-1, ' ', false, json::error_handler_t::replace), kControlProtocolVersion));
  }
  Request r;
  auto field = [&](const char* name, std::string* out, bool required) -> Status {
    auto it = j.find(name);
    if (it == j.end()) {
      return required ? Status::InvalidArgument(fmt::format("malformed request: no \"{}\"", name))
                      : Status::Ok();
    }
    if (!it->is_string()) {
      return Status::InvalidArgument(
          fmt::format("malformed request: \"{}\" is not a string", name));
    }
    *out = it->get<std::string>();
    return Status::Ok();
  };
  DFS_RETURN_IF_ERROR(field("op", &r.op, true));
  bool keyed = r.op == "put" || r.op == "get" || r.op == "rm" || r.op == "has" || r.op == "stat";
  DFS_RETURN_IF_ERROR(field("key", &r.key, keyed));
  DFS_RETURN_IF_ERROR(field("prefix", &r.prefix, false));
  DFS_RETURN_IF_ERROR(field("name", &r.name, false));
  if (r.name.size() > 4096) r.name.resize(4096);
  if (auto g = j.find("grace"); g != j.end()) {
    if (!g->is_number_integer() || g->get<std::int64_t>() < 0) {
      return Status::InvalidArgument("malformed request: \"grace\" is not a count of seconds");
    }
    r.grace_s = g->get<std::int64_t>();
  }
  return r;
}

// The passed fd must be open for reading (put) or writing (get).
Status CheckAccess(int fd, bool write, const std::string& name) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return core::ErrnoStatus(errno, name);
  int mode = flags & O_ACCMODE;
  bool ok = mode == O_RDWR || mode == (write ? O_WRONLY : O_RDONLY);
  if (ok) return Status::Ok();
  return Status::InvalidArgument(
      fmt::format("{} was passed without {} access", name, write ? "write" : "read"));
}

std::string InfoLine(const core::FileInfo& f, bool with_stored) {
  json j = {{"key", f.key}, {"size", f.size}, {"chunks", f.chunks}, {"mtime", f.mtime_ns}};
  if (with_stored) {
    j["stored_bytes"] = f.stored_bytes;
    j["ok"] = true;
    return JsonLine(j);
  }
  return JsonLine({{"item", j}});
}

// Answers a file request; returns the final line. `passed` is closed before
// it returns, as the protocol promises.
std::string AnswerFileRequest(int sock, core::FileServer& files, const Request& req,
                              UniqueFd passed, const std::function<void()>& after_change) {
  const bool put = req.op == "put";
  if (put || req.op == "get") {
    if (!passed.valid()) {
      return ErrorLine(
          Status::InvalidArgument(fmt::format("{} needs the file descriptor of {} (SCM_RIGHTS)",
                                              req.op, put ? "its source" : "its destination")));
    }
    if (Status s = CheckAccess(passed.get(), !put, req.name); !s.ok()) return ErrorLine(s);
    ProgressLines progress(sock);
    auto update = [&](std::uint64_t done) { progress.Update(done); };
    Status s;
    if (put) {
      ClientSourceReader reader(passed.get(), sock, req.name);
      s = files.Store(req.key, reader, update);
    } else {
      ClientDestWriter writer(passed.get(), sock, req.name);
      s = files.Get(req.key, writer, update);
    }
    passed.Reset();
    if (!s.ok()) return ErrorLine(s);
    if (put && after_change) after_change();
    return JsonLine({{"ok", true}, {"size", progress.done()}});
  }
  passed.Reset();
  if (req.op == "rm") {
    Status s = files.Delete(req.key);
    if (s.ok() && after_change) after_change();
    return s.ok() ? JsonLine({{"ok", true}}) : ErrorLine(s);
  }
  if (req.op == "has") {
    Result<bool> has = files.Has(req.key);
    return has.ok() ? JsonLine({{"ok", true}, {"present", *has}}) : ErrorLine(has.status());
  }
  if (req.op == "stat") {
    Result<core::FileInfo> info = files.Stat(req.key);
    return info.ok() ? InfoLine(*info, true) : ErrorLine(info.status());
  }
  // ls: one line per key as the index yields them; nothing accumulates.
  Status sent;
  Status s = files.List(req.prefix, [&](const core::FileInfo& f) {
    sent = SendLine(sock, InfoLine(f, false));
    return sent.ok();
  });
  if (!s.ok()) return ErrorLine(s);
  if (!sent.ok()) return ErrorLine(sent);  // the client is gone; this goes nowhere
  return JsonLine({{"ok", true}});
}

// Runs the node's scrub, streaming its progress; returns the final line.
std::string AnswerScrub(int sock, const ControlHandlers& h) {
  if (!h.scrub) return ErrorLine(Status::Unavailable("this node does not scrub"));
  ProgressLines progress(sock);
  core::ScrubStats stats =
      h.scrub([&](std::uint64_t checked, std::uint64_t bad) { progress.Update(checked, bad); });
  json ids = json::array();
  for (const core::ChunkId& id : stats.unrepaired_ids) ids.push_back(id.ToHex());
  return JsonLine({{"ok", true},
                   {"checked", stats.checked},
                   {"bad", stats.bad},
                   {"repaired", stats.repaired},
                   {"unrepaired", stats.unrepaired},
                   {"unrepaired_ids", std::move(ids)}});
}

// Runs a repair or gc pass, streaming its progress; returns the final line.
std::string AnswerPass(int sock, const ControlHandlers& h, const Request& req) {
  const bool gc = req.op == "gc";
  if (gc ? !h.gc : !h.repair) {
    return ErrorLine(Status::Unavailable(fmt::format("this node does not {}", req.op)));
  }
  ProgressLines progress(sock);
  auto update = [&](std::uint64_t checked) { progress.Update(checked); };
  json result = json::parse(gc ? h.gc(req.grace_s, update) : h.repair(update), nullptr,
                            /*allow_exceptions=*/false);
  if (result.is_discarded()) {
    return ErrorLine(Status::Io(fmt::format("the node's {} is not valid JSON", req.op)));
  }
  if (auto e = result.find("error"); gc && e != result.end() && e->is_string()) {
    return ErrorLine(Status::Io(e->get<std::string>()));
  }
  return JsonLine({{"ok", true}, {"result", std::move(result)}});
}

std::string AnswerRequest(int sock, const ControlHandlers& h, const Request& req, UniqueFd passed) {
  if (req.op == "status" || req.op == "peers") {
    const auto& fn = req.op == "status" ? h.status_json : h.peers_json;
    if (!fn) {
      return ErrorLine(Status::Unavailable(fmt::format("this node does not report {}", req.op)));
    }
    json result = json::parse(fn(), nullptr, /*allow_exceptions=*/false);
    if (result.is_discarded()) {
      return ErrorLine(Status::Io(fmt::format("the node's {} is not valid JSON", req.op)));
    }
    return JsonLine({{"ok", true}, {"result", std::move(result)}});
  }
  if (req.op == "scrub" || req.op == "repair" || req.op == "gc") {
    passed.Reset();
    return req.op == "scrub" ? AnswerScrub(sock, h) : AnswerPass(sock, h, req);
  }
  if (!IsFileOp(req.op)) {
    return ErrorLine(Status::InvalidArgument(fmt::format("unknown request \"{}\"", req.op)));
  }
  if (h.files == nullptr) {
    return ErrorLine(Status::Unavailable(
        "this node has no volume key (it is a keyless storage peer): it cannot store, read or "
        "list files; start dfsd with --key to use dfs through it"));
  }
  return AnswerFileRequest(sock, *h.files, req, std::move(passed), h.after_change);
}

void HandleConnection(int sock, const ControlHandlers& h) {
  LineReader reader(sock, kMaxRequestLine);
  Result<std::string> line = reader.ReadLine(kRequestTimeout);
  if (!line.ok()) {
    // Goes nowhere when the client has left, which is fine.
    (void)SendLine(sock, ErrorLine(line.status().WithContext("request")));
    return;
  }
  Result<Request> req = ParseRequest(*line);
  if (!req.ok()) {
    (void)SendLine(sock, ErrorLine(req.status()));
    return;
  }
  std::string answer = AnswerRequest(sock, h, *req, reader.TakeFd());
  spdlog::debug("control: {} {}: {}", req->op, req->key, answer.substr(0, 200));
  (void)SendLine(sock, answer);
}

}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::Start(
    const std::filesystem::path& socket_path, ControlHandlers handlers, std::size_t max_clients) {
  const std::string& path = socket_path.native();
  DFS_ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(socket_path));

  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status::Exists(fmt::format("{} exists and is not a socket; not replacing it", path));
    }
    if (ControlClient::Connect(socket_path).ok()) {
      return Status::Unavailable(fmt::format("a running node already serves {}", path));
    }
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return core::ErrnoStatus(errno, "remove the stale socket " + path);
    }
  }

  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return core::ErrnoStatus(errno, "socket");
  (void)::fchmod(fd.get(), 0600);  // the mode bind gives the file, on Linux
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return core::ErrnoStatus(errno, "bind " + path);
  }
  auto fail = [&](std::string_view what) {
    Status s = core::ErrnoStatus(errno, fmt::format("{} {}", what, path));
    ::unlink(path.c_str());
    return s;
  };
  if (::chmod(path.c_str(), 0600) != 0) return fail("chmod");
  if (::listen(fd.get(), 64) != 0) return fail("listen on");
  if (::lstat(path.c_str(), &st) != 0) return fail("stat");
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) return fail("eventfd for");

  std::unique_ptr<ControlServer> server(new ControlServer(socket_path, std::move(handlers),
                                                          std::max<std::size_t>(max_clients, 1),
                                                          fd.Release(), wake.Release()));
  server->socket_dev_ = st.st_dev;
  server->socket_ino_ = st.st_ino;
  try {
    server->accept_thread_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  } catch (const std::system_error& e) {
    return Status::Io(fmt::format("control socket {}: cannot start a thread: {}", path, e.what()));
  }
  return server;
}

ControlServer::ControlServer(std::filesystem::path socket_path, ControlHandlers handlers,
                             std::size_t max_clients, int listen_fd, int wake_fd)
    : socket_path_(std::move(socket_path)),
      handlers_(std::move(handlers)),
      max_clients_(max_clients),
      listen_fd_(listen_fd),
      wake_fd_(wake_fd) {}

ControlServer::~ControlServer() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  std::uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
  if (accept_thread_.joinable()) accept_thread_.join();
  // No new clients from here: later connects fail and the CLI works alone
  // once the node has released the data directory.
  ::close(listen_fd_);
  ::close(wake_fd_);
  struct stat st {};
  if (::lstat(socket_path_.c_str(), &st) == 0 && st.st_dev == socket_dev_ &&
      st.st_ino == socket_ino_) {
    ::unlink(socket_path_.c_str());
  }
  {
    std::lock_guard lock(mu_);
    for (Client& c : clients_) {
      if (c.fd >= 0) ::shutdown(c.fd, SHUT_RDWR);
    }
  }
  // Only this thread changes the list now; the client threads take mu_ to
  // finish, so join without it.
  for (Client& c : clients_) {
    if (c.thread.joinable()) c.thread.join();
  }
  clients_.clear();
}

std::size_t ControlServer::active_clients() const {
  std::lock_guard lock(mu_);
  return static_cast<std::size_t>(
      std::count_if(clients_.begin(), clients_.end(), [](const Client& c) { return !c.done; }));
}

void ControlServer::ReapFinished() {
  std::list<Client> finished;
  {
    std::lock_guard lock(mu_);
    for (auto it = clients_.begin(); it != clients_.end();) {
      auto next = std::next(it);
      if (it->done) finished.splice(finished.end(), clients_, it);
      it = next;
    }
  }
  for (Client& c : finished) c.thread.join();
}

void ControlServer::AcceptLoop() {
  for (;;) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (::poll(p, 2, -1) < 0 && errno != EINTR) {
      spdlog::warn("control socket: poll: {}", std::strerror(errno));
      pollfd w{wake_fd_, POLLIN, 0};
      (void)::poll(&w, 1, 100);
      continue;
    }
    if (p[1].revents != 0) return;
    if (p[0].revents == 0) continue;
    int sock = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (sock < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
      // Out of fds or memory: wait a moment rather than spin.
      spdlog::warn("control socket: accept: {}", std::strerror(errno));
      pollfd w{wake_fd_, POLLIN, 0};
      (void)::poll(&w, 1, 100);
      continue;
    }
    ReapFinished();
    std::string refusal;
    {
      std::lock_guard lock(mu_);
      std::size_t active = static_cast<std::size_t>(
          std::count_if(clients_.begin(), clients_.end(), [](const Client& c) { return !c.done; }));
      if (stopping_) {
        refusal = ErrorLine(Status::Unavailable("the node is stopping"));
      } else if (active >= max_clients_) {
        refusal = ErrorLine(Status::Unavailable(
            fmt::format("the node is busy: {} control clients are connected; try again", active)));
      } else {
        Client& client = clients_.emplace_back();
        client.fd = sock;
        try {
          client.thread = std::thread([this, c = &client] { Serve(c); });
        } catch (const std::system_error& e) {
          clients_.pop_back();
          refusal = ErrorLine(
              Status::Unavailable(fmt::format("the node cannot start a thread: {}", e.what())));
        }
      }
    }
    if (!refusal.empty()) {
      (void)SendLine(sock, refusal);
      ::close(sock);
    }
  }
}

void ControlServer::Serve(Client* client) {
  try {
    HandleConnection(client->fd, handlers_);
  } catch (const std::exception& e) {
    spdlog::error("control socket: request failed: {}", e.what());
    (void)SendLine(client->fd, ErrorLine(Status::Io(fmt::format("the node failed: {}", e.what()))));
  }
  std::lock_guard lock(mu_);
  ::close(client->fd);
  client->fd = -1;
  client->done = true;
}

}  // namespace dfs::node
