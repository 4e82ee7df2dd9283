// loopback_copy: the raw loopback TCP baseline for bench/cluster.sh. Copies
// a file through one TCP connection on 127.0.0.1 (a sender thread reads the
// file and writes the socket; the receiver reads it and discards), and
// prints the seconds it took. Plain sockets, 1 MiB buffers.
//
//   loopback_copy FILE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: loopback_copy FILE\n");
    return 2;
  }
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(listener, 1) != 0 ||
      ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::perror("loopback_copy: listen");
    return 1;
  }
  int in = ::open(argv[1], O_RDONLY);
  if (in < 0) {
    std::perror(argv[1]);
    return 1;
  }
  auto start = std::chrono::steady_clock::now();
  std::thread sender([&] {
    int s = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return;
    std::vector<char> buf(1 << 20);
    for (;;) {
      ssize_t n = ::read(in, buf.data(), buf.size());
      if (n <= 0) break;
      for (ssize_t off = 0; off < n;) {
        ssize_t w = ::write(s, buf.data() + off, static_cast<size_t>(n - off));
        if (w <= 0) return;
        off += w;
      }
    }
    ::close(s);
  });
  int conn = ::accept(listener, nullptr, nullptr);
  std::vector<char> buf(1 << 20);
  unsigned long long total = 0;
  for (;;) {
    ssize_t n = ::read(conn, buf.data(), buf.size());
    if (n <= 0) break;
    total += static_cast<unsigned long long>(n);
  }
  sender.join();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%.3f %llu\n", s, total);
  return 0;
}
