#include "cmd/dfs/control_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace dfs::cli {

core::Result<std::string> AskNode(const std::filesystem::path& data_dir, const std::string& what) {
  std::string path = (data_dir / "control.sock").string();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return core::Status::InvalidArgument("data directory path too long for a control socket");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return core::ErrnoStatus(errno, "socket");
  auto close_fd = [fd] { ::close(fd); };
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    close_fd();
    if (err == ENOENT || err == ECONNREFUSED) {
      return core::Status::Unavailable(
          fmt::format("no dfsd is running on {} (start one: dfsd --data {} --network-key FILE)",
                      data_dir.string(), data_dir.string()));
    }
    return core::ErrnoStatus(err, "connect " + path);
  }
  std::string request = what + "\n";
  if (::write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    int err = errno;
    close_fd();
    return core::ErrnoStatus(err, "write " + path);
  }
  std::string answer;
  char buf[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int ready = ::poll(&p, 1, 10000);  // every remote call has a deadline
    if (ready == 0) {
      close_fd();
      return core::Status::Unavailable("the node did not answer within 10 s");
    }
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close_fd();
      return core::ErrnoStatus(err, "read " + path);
    }
    if (n == 0) break;
    answer.append(buf, static_cast<std::size_t>(n));
    if (!answer.empty() && answer.back() == '\n') break;
    if (answer.size() > (16u << 20)) break;
  }
  close_fd();
  return answer;
}

}  // namespace dfs::cli
