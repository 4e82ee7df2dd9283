#include "core/io.h"

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace dfs::core {

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) Reset(other.Release());
  return *this;
}

void UniqueFd::Reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

int UniqueFd::Close() {
  int rc = ::close(fd_);
  fd_ = -1;
  return rc == 0 ? 0 : errno;
}

Result<std::size_t> ReadFull(Reader& reader, MutableByteSpan buf) {
  std::size_t total = 0;
  while (total < buf.size()) {
    Result<std::size_t> n = reader.Read(buf.subspan(total));
    if (!n.ok()) return n.status();
    if (*n == 0) break;
    total += *n;
  }
  return total;
}

Result<std::size_t> FdReader::Read(MutableByteSpan buf) {
  for (;;) {
    ssize_t n = ::read(fd_, buf.data(), buf.size());
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    return ErrnoStatus(errno, "read " + name_);
  }
}

Status FdWriter::Write(ByteSpan data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd_, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "write " + name_);
    }
    data = data.subspan(static_cast<std::size_t>(n));
  }
  return Status::Ok();
}

Result<std::size_t> MemoryReader::Read(MutableByteSpan buf) {
  std::size_t n = std::min(buf.size(), data_.size() - pos_);
  if (n > 0) std::memcpy(buf.data(), data_.data() + pos_, n);
  pos_ += n;
  return n;
}

void FillRandom(std::uint8_t* p, std::size_t n) {
  while (n > 0) {
    ssize_t got = ::getrandom(p, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("getrandom: ") + std::strerror(errno));
    }
    p += got;
    n -= static_cast<std::size_t>(got);
  }
}

}  // namespace dfs::core
