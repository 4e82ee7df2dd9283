// The chunk file record of DiskChunkStore (docs/format.md, "Chunk file")
// and the file helpers it is read and written with: the header, the
// per-thread O_DIRECT buffers, directory walking and full reads and writes.
#pragma once

#include <dirent.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>

#include "core/bytes.h"
#include "core/status.h"

namespace dfs::core::chunk_file {

// Chunk file v1: magic "DFSK", version, 3 reserved zero bytes, payload
// length u64 LE, payload CRC32C u32 LE, CRC32C of bytes 0..19 u32 LE.
constexpr char kMagic[4] = {'D', 'F', 'S', 'K'};
constexpr std::uint8_t kVersion = 1;
constexpr std::size_t kHeaderSize = 24;
// Sanity bound on a payload: a manifest entry is at most 64 MiB of
// plaintext and an envelope adds 32 bytes. Keeps a hostile or damaged file
// from costing more memory than a real chunk can.
constexpr std::uint64_t kMaxPayload = (64u << 20) + 4096;
// More pending chunk files than this: Sync() issues one syncfs() instead of
// one fdatasync() each, and the list is no longer kept (bounded memory).
constexpr std::size_t kSyncfsThreshold = 16;

// Chunk files of this many payload bytes are written with O_DIRECT, from an
// aligned buffer per thread (at most kDirectMax plus a block each).
constexpr std::size_t kDirectMin = 64 << 10;
constexpr std::size_t kDirectMax = 8 << 20;
constexpr std::size_t kDirectAlign = 4096;

inline std::size_t Padded(std::size_t n) { return (n + kDirectAlign - 1) / kDirectAlign * kDirectAlign; }

inline std::uint64_t PayloadSizeOf(std::uint64_t file_size) {
  return file_size >= kHeaderSize ? file_size - kHeaderSize : 0;
}

inline bool IsHexByteName(const char* name) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); };
  return hex(name[0]) && hex(name[1]) && name[2] == '\0';
}

// A DIR* closed on scope exit.
class Dir {
 public:
  explicit Dir(const std::filesystem::path& path) : d_(::opendir(path.c_str())) {}
  ~Dir() {
    if (d_ != nullptr) ::closedir(d_);
  }
  Dir(const Dir&) = delete;
  Dir& operator=(const Dir&) = delete;
  bool ok() const { return d_ != nullptr; }
  int fd() const { return ::dirfd(d_); }
  // Next entry other than "." and ".."; nullptr at the end or on error
  // (then *err is the errno).
  const dirent* Next(int* err) {
    for (;;) {
      errno = 0;
      const dirent* e = ::readdir(d_);
      if (e == nullptr) {
        *err = errno;
        return nullptr;
      }
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) return e;
    }
  }

 private:
  DIR* d_;
};

// The calling thread's O_DIRECT buffer, grown to `size` bytes (a multiple
// of kDirectAlign); nullptr when memory is short.
std::uint8_t* DirectBuffer(std::size_t size);

// Fills the kHeaderSize bytes at `h` with the header of a chunk file of `payload`.
void EncodeHeader(ByteSpan payload, std::uint8_t* h);

// Creates `dir` (0700); *created when it did not exist.
Status MakeDir(const std::filesystem::path& dir, bool* created);
Status FsyncDir(const std::filesystem::path& dir);

// Reads exactly the bytes of `iov` from `fd` at offset 0 (one preadv in the
// common case). Returns 0, the errno of a failed read, or -1 when the file
// ended early.
int ReadFully(int fd, iovec* iov, int n);

// Writes all of `iov` to `fd`; returns 0 or the errno. A short write is
// retried, so a full disk surfaces as ENOSPC.
int WriteFully(int fd, iovec* iov, int n);

}  // namespace dfs::core::chunk_file
