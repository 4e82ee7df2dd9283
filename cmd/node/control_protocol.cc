#include "cmd/node/control_protocol.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "core/key_names.h"

namespace dfs::node {

using core::ErrorCode;
using core::Result;
using core::Status;
using nlohmann::json;

namespace {

constexpr std::array<std::pair<ErrorCode, std::string_view>, 16> kWireCodes = {{
    {ErrorCode::kNotFound, "not_found"},
    {ErrorCode::kExists, "exists"},
    {ErrorCode::kCorrupt, "corrupt"},
    {ErrorCode::kWrongKey, "wrong_key"},
    {ErrorCode::kUnavailable, "unavailable"},
    {ErrorCode::kInvalidArgument, "invalid_argument"},
    {ErrorCode::kNoSpace, "no_space"},
    {ErrorCode::kIo, "io"},
    {ErrorCode::kPermission, "permission"},
    {ErrorCode::kNotDirectory, "not_directory"},
    {ErrorCode::kIsDirectory, "is_directory"},
    {ErrorCode::kNotEmpty, "not_empty"},
    {ErrorCode::kNameTooLong, "name_too_long"},
    {ErrorCode::kNoAttribute, "no_attribute"},
    {ErrorCode::kUnsupported, "unsupported"},
    {ErrorCode::kFileTooLarge, "file_too_large"},
}};

constexpr std::size_t kMaxFdsPerRead = 8;
constexpr std::size_t kReadChunk = 64 * 1024;

// put and get last as long as the data does; the others are quick.
constexpr std::chrono::milliseconds kNoDeadline{-1};
constexpr std::chrono::milliseconds kFileDeadline{60000};
constexpr std::chrono::milliseconds kQueryDeadline{10000};

Status Malformed() { return Status::Io("the node sent a malformed answer"); }

Result<core::FileInfo> FileInfoFromJson(const json& j) {
  try {
    core::FileInfo f;
    f.key = j.at("key").get<std::string>();
    f.size = j.at("size").get<std::uint64_t>();
    f.chunks = j.at("chunks").get<std::uint64_t>();
    f.stored_bytes = j.value("stored_bytes", std::uint64_t{0});
    f.mtime_ns = j.at("mtime").get<std::int64_t>();
    return f;
  } catch (const json::exception&) {
    return Malformed();
  }
}

}  // namespace

std::string_view ErrorCodeWire(ErrorCode code) {
  for (const auto& [c, name] : kWireCodes) {
    if (c == code) return name;
  }
  return "ok";
}

ErrorCode ErrorCodeFromWire(std::string_view name) {
  for (const auto& [c, n] : kWireCodes) {
    if (n == name) return c;
  }
  return ErrorCode::kIo;
}

std::string JsonLine(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string ErrorLine(const Status& status) {
  return JsonLine({{"ok", false},
                   {"code", std::string(ErrorCodeWire(status.code()))},
                   {"error", status.message()}});
}

Status StatusFromAnswer(const json& answer) {
  if (!answer.is_object()) return Malformed();
  auto ok = answer.find("ok");
  if (ok == answer.end() || !ok->is_boolean()) return Malformed();
  if (ok->get<bool>()) return Status::Ok();
  auto code = answer.find("code");
  auto error = answer.find("error");
  return Status(
      ErrorCodeFromWire(code != answer.end() && code->is_string() ? code->get<std::string>()
                                                                  : std::string("io")),
      error != answer.end() && error->is_string() ? error->get<std::string>()
                                                  : std::string("the node gave no reason"));
}

Status SendLine(int sock, std::string_view line, int fd) {
  std::size_t off = 0;
  while (off < line.size()) {
    iovec iov{const_cast<char*>(line.data() + off), line.size() - off};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (fd >= 0 && off == 0) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE || errno == ECONNRESET) {
        return Status::Unavailable("the other side closed the control connection");
      }
      return core::ErrnoStatus(errno, "send on the control socket");
    }
    off += static_cast<std::size_t>(n);
  }
  return Status::Ok();
}

Result<sockaddr_un> UnixAddress(const std::filesystem::path& path) {
  const std::string& s = path.native();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (s.size() >= sizeof(addr.sun_path)) {
    return Status::InvalidArgument(
        fmt::format("socket path {} is longer than {} bytes", s, sizeof(addr.sun_path) - 1));
  }
  std::memcpy(addr.sun_path, s.c_str(), s.size() + 1);
  return addr;
}

bool PeerGone(int sock) {
  pollfd p{sock, POLLRDHUP, 0};
  int r;
  do {
    r = ::poll(&p, 1, 0);
  } while (r < 0 && errno == EINTR);
  return r < 0 || (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

Result<std::string> LineReader::ReadLine(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::size_t nl = buf_.find('\n', scanned_);
    if (nl != std::string::npos) {
      if (nl > max_line_) {
        return Status::InvalidArgument(fmt::format("line longer than {} bytes", max_line_));
      }
      std::string line = buf_.substr(0, nl);
      buf_.erase(0, nl + 1);
      scanned_ = 0;
      return line;
    }
    scanned_ = buf_.size();
    if (buf_.size() > max_line_) {
      return Status::InvalidArgument(fmt::format("line longer than {} bytes", max_line_));
    }
    if (eof_) {
      return Status::Unavailable(buf_.empty() ? "the connection closed"
                                              : "the connection closed in the middle of a line");
    }
    int wait_ms = -1;
    if (timeout.count() >= 0) {
      auto left = deadline - std::chrono::steady_clock::now();
      if (left <= std::chrono::steady_clock::duration::zero()) {
        return Status::Unavailable(
            fmt::format("nothing came within {} s", static_cast<double>(timeout.count()) / 1000));
      }
      wait_ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(left).count());
    }
    pollfd p{sock_, POLLIN, 0};
    int ready = ::poll(&p, 1, wait_ms);
    if (ready < 0 && errno != EINTR) return core::ErrnoStatus(errno, "poll the control socket");
    if (ready <= 0) continue;  // the loop checks the deadline

    std::size_t old = buf_.size();
    buf_.resize(old + kReadChunk);
    iovec iov{buf_.data() + old, kReadChunk};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerRead)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = ::recvmsg(sock_, &msg, MSG_CMSG_CLOEXEC);
    int err = errno;
    buf_.resize(old + static_cast<std::size_t>(n > 0 ? n : 0));
    if (n < 0) {
      if (err == EINTR || err == EAGAIN) continue;
      if (err == ECONNRESET) {
        eof_ = true;
        continue;
      }
      return core::ErrnoStatus(err, "read the control socket");
    }
    if (n == 0) eof_ = true;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int received;
        std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        if (fd_.valid()) {
          ::close(received);
        } else {
          fd_.Reset(received);
        }
      }
    }
  }
}

Result<ControlClient> ControlClient::Connect(const std::filesystem::path& socket_path) {
  const std::string& path = socket_path.native();
  DFS_ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(socket_path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return core::ErrnoStatus(errno, "socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    if (err == ENOENT || err == ECONNREFUSED || err == ENOTDIR) {
      return Status::Unavailable(fmt::format("nothing listens on {}", path));
    }
    return core::ErrnoStatus(err, "connect " + path);
  }
  return ControlClient(std::move(fd));
}

Result<json> ControlClient::Call(json request, int fd, std::chrono::milliseconds line_timeout,
                                 const std::function<void(const json&)>& on_progress,
                                 const std::function<bool(const json&)>& on_item) {
  if (!fd_.valid()) return Status::InvalidArgument("a control connection carries one request");
  UniqueFd sock = std::move(fd_);
  request["v"] = kControlProtocolVersion;
  Status sent = SendLine(sock.get(), JsonLine(request), fd);
  LineReader reader(sock.get(), kMaxAnswerLine);
  for (;;) {
    // A node that refuses the request (too many clients) may have answered
    // and closed before the request went out: read what it said.
    Result<std::string> line =
        reader.ReadLine(sent.ok() ? line_timeout : std::chrono::milliseconds(1000));
    if (!line.ok()) {
      if (!sent.ok()) return sent;
      return line.status().WithContext("no complete answer from the node");
    }
    json j = json::parse(*line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return Malformed();
    if (auto p = j.find("progress"); p != j.end()) {
      if (!p->is_number_unsigned()) return Malformed();
      if (on_progress) on_progress(j);
      continue;
    }
    if (auto item = j.find("item"); item != j.end()) {
      if (!on_item) return Malformed();
      if (!on_item(*item)) return json{{"ok", true}};  // closing tells the node to stop
      continue;
    }
    DFS_RETURN_IF_ERROR(StatusFromAnswer(j));
    return j;
  }
}

Status ControlClient::Transfer(std::string_view op, std::string_view key, int fd,
                               std::string_view name, const core::ProgressFn& progress) {
  DFS_RETURN_IF_ERROR(core::ValidateKey(key));
  std::function<void(const json&)> on_progress;
  if (progress) {
    on_progress = [&progress](const json& line) {
      progress(line.at("progress").get<std::uint64_t>());
    };
  }
  DFS_ASSIGN_OR_RETURN(json answer, Call({{"op", op}, {"key", key}, {"name", name}}, fd,
                                         kNoDeadline, on_progress, {}));
  auto size = answer.find("size");
  if (progress && size != answer.end() && size->is_number_unsigned()) {
    progress(size->get<std::uint64_t>());
  }
  return Status::Ok();
}

Status ControlClient::Put(std::string_view key, int source_fd, std::string_view name,
                          const core::ProgressFn& progress) {
  return Transfer("put", key, source_fd, name, progress);
}

Status ControlClient::Get(std::string_view key, int dest_fd, std::string_view name,
                          const core::ProgressFn& progress) {
  return Transfer("get", key, dest_fd, name, progress);
}

Status ControlClient::Delete(std::string_view key) {
  DFS_RETURN_IF_ERROR(core::ValidateKey(key));
  return Call({{"op", "rm"}, {"key", key}}, -1, kFileDeadline, {}, {}).status();
}

Result<bool> ControlClient::Has(std::string_view key) {
  DFS_RETURN_IF_ERROR(core::ValidateKey(key));
  DFS_ASSIGN_OR_RETURN(json answer, Call({{"op", "has"}, {"key", key}}, -1, kFileDeadline, {}, {}));
  auto present = answer.find("present");
  if (present == answer.end() || !present->is_boolean()) return Malformed();
  return present->get<bool>();
}

Status ControlClient::List(std::string_view prefix,
                           const std::function<bool(const core::FileInfo&)>& fn) {
  DFS_RETURN_IF_ERROR(core::ValidatePrefix(prefix));
  Status bad_item;
  Result<json> answer =
      Call({{"op", "ls"}, {"prefix", prefix}}, -1, kFileDeadline, {}, [&](const json& item) {
        Result<core::FileInfo> info = FileInfoFromJson(item);
        if (!info.ok()) {
          bad_item = info.status();
          return false;
        }
        return fn(*info);
      });
  DFS_RETURN_IF_ERROR(bad_item);
  return answer.status();
}

Result<core::FileInfo> ControlClient::Stat(std::string_view key) {
  DFS_RETURN_IF_ERROR(core::ValidateKey(key));
  DFS_ASSIGN_OR_RETURN(json answer,
                       Call({{"op", "stat"}, {"key", key}}, -1, kFileDeadline, {}, {}));
  return FileInfoFromJson(answer);
}

Result<json> ControlClient::Query(std::string_view op) {
  DFS_ASSIGN_OR_RETURN(json answer, Call({{"op", op}}, -1, kQueryDeadline, {}, {}));
  auto result = answer.find("result");
  if (result == answer.end()) return Malformed();
  return std::move(*result);
}

Result<core::ScrubStats> ControlClient::Scrub(
    const std::function<void(std::uint64_t, std::uint64_t)>& progress) {
  bool bad_line = false;
  std::function<void(const json&)> on_progress;
  if (progress) {
    on_progress = [&](const json& line) {
      auto bad = line.find("bad");
      if (bad == line.end() || !bad->is_number_unsigned()) {
        bad_line = true;
        return;
      }
      progress(line.at("progress").get<std::uint64_t>(), bad->get<std::uint64_t>());
    };
  }
  // A scrub lasts as long as the store is large; its progress lines and
  // its final line end the wait.
  DFS_ASSIGN_OR_RETURN(json answer, Call({{"op", "scrub"}}, -1, kNoDeadline, on_progress, {}));
  if (bad_line) return Malformed();
  try {
    core::ScrubStats stats;
    stats.checked = answer.at("checked").get<std::uint64_t>();
    stats.bad = answer.at("bad").get<std::uint64_t>();
    stats.repaired = answer.at("repaired").get<std::uint64_t>();
    stats.unrepaired = answer.at("unrepaired").get<std::uint64_t>();
    for (const json& hex : answer.at("unrepaired_ids")) {
      Result<core::ChunkId> id = core::ChunkId::FromHex(hex.get<std::string>());
      if (!id.ok()) return Malformed();
      stats.unrepaired_ids.push_back(*id);
    }
    return stats;
  } catch (const json::exception&) {
    return Malformed();
  }
}

Result<json> ControlClient::Repair(const std::function<void(std::uint64_t)>& progress) {
  return Pass({{"op", "repair"}}, progress);
}

Result<json> ControlClient::Gc(std::optional<std::chrono::seconds> grace,
                               const std::function<void(std::uint64_t)>& progress) {
  json request = {{"op", "gc"}};
  if (grace) request["grace"] = grace->count();
  return Pass(std::move(request), progress);
}

Result<json> ControlClient::Pass(json request, const std::function<void(std::uint64_t)>& progress) {
  std::function<void(const json&)> on_progress;
  if (progress) {
    on_progress = [&](const json& line) { progress(line.at("progress").get<std::uint64_t>()); };
  }
  // As long as the pass takes: its progress lines and final line end the wait.
  DFS_ASSIGN_OR_RETURN(json answer, Call(std::move(request), -1, kNoDeadline, on_progress, {}));
  auto result = answer.find("result");
  if (result == answer.end() || !result->is_object()) return Malformed();
  return *result;
}

}  // namespace dfs::node
