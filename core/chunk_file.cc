#include "core/chunk_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "core/encoding.h"
#include "core/io.h"

namespace dfs::core::chunk_file {

namespace fs = std::filesystem;

std::uint8_t* DirectBuffer(std::size_t size) {
  struct Buffer {
    void* p = nullptr;
    std::size_t cap = 0;
    ~Buffer() { std::free(p); }
  };
  thread_local Buffer b;
  if (size > b.cap) {
    std::free(b.p);
    b.p = std::aligned_alloc(kDirectAlign, size);
    b.cap = b.p != nullptr ? size : 0;
  }
  return static_cast<std::uint8_t*>(b.p);
}

void EncodeHeader(ByteSpan payload, std::uint8_t* h) {
  std::memcpy(h, kMagic, 4);
  h[4] = kVersion;
  h[5] = h[6] = h[7] = 0;
  StoreLe(h + 8, payload.size(), 8);
  StoreLe(h + 16, Crc32c(payload.data(), payload.size()), 4);
  StoreLe(h + 20, Crc32c(h, 20), 4);
}

Status MakeDir(const fs::path& dir, bool* created) {
  if (::mkdir(dir.c_str(), 0700) == 0) {
    *created = true;
    return Status::Ok();
  }
  if (errno == EEXIST) return Status::Ok();
  return ErrnoStatus(errno, "create directory " + dir.string());
}

Status FsyncDir(const fs::path& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, "open directory " + dir.string());
  if (::fsync(fd.get()) != 0) return ErrnoStatus(errno, "fsync directory " + dir.string());
  return Status::Ok();
}

namespace {

// Moves `*iov` / `*n` past `done` bytes already transferred.
void Advance(iovec** iov, int* n, std::size_t done) {
  while (*n > 0 && done >= (*iov)->iov_len) {
    done -= (*iov)->iov_len;
    ++*iov;
    --*n;
  }
  if (*n > 0) {
    (*iov)->iov_base = static_cast<std::uint8_t*>((*iov)->iov_base) + done;
    (*iov)->iov_len -= done;
  }
}

}  // namespace

int ReadFully(int fd, iovec* iov, int n) {
  off_t off = 0;
  while (n > 0) {
    ssize_t r = ::preadv(fd, iov, n, off);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    if (r == 0) return -1;
    off += r;
    Advance(&iov, &n, static_cast<std::size_t>(r));
  }
  return 0;
}

int WriteFully(int fd, iovec* iov, int n) {
  while (n > 0) {
    ssize_t w = ::writev(fd, iov, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno;
    Advance(&iov, &n, static_cast<std::size_t>(w));
  }
  return 0;
}

}  // namespace dfs::core::chunk_file
