// Reader and Writer: the streaming faces of FileServer::Store and Get, with
// implementations over file descriptors and memory. Not thread-safe; one
// owner at a time.
#pragma once

#include <cstddef>
#include <string>

#include "core/bytes.h"
#include "core/status.h"

namespace dfs::core {

// Owns a file descriptor; closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset(int fd = -1);
  // Closes now and returns close()'s errno (0 on success).
  int Close();

 private:
  int fd_ = -1;
};


class Reader {
 public:
  virtual ~Reader() = default;
  // Reads up to buf.size() bytes; 0 means end of stream. Short reads are
  // allowed before the end.
  virtual Result<std::size_t> Read(MutableByteSpan buf) = 0;
};

class Writer {
 public:
  virtual ~Writer() = default;
  // Writes all of `data` or fails.
  virtual Status Write(ByteSpan data) = 0;
};

// Reads until `buf` is full or the stream ends; returns the bytes read.
Result<std::size_t> ReadFull(Reader& reader, MutableByteSpan buf);

// Reads from a file descriptor it does not own. `name` is used in errors.
class FdReader final : public Reader {
 public:
  FdReader(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}
  Result<std::size_t> Read(MutableByteSpan buf) override;

 private:
  int fd_;
  std::string name_;
};

// Writes to a file descriptor it does not own. EPIPE, ENOSPC etc. come back
// as Status through ErrnoStatus.
class FdWriter final : public Writer {
 public:
  FdWriter(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}
  Status Write(ByteSpan data) override;

 private:
  int fd_;
  std::string name_;
};

class MemoryReader final : public Reader {
 public:
  explicit MemoryReader(ByteSpan data) : data_(data) {}
  Result<std::size_t> Read(MutableByteSpan buf) override;

 private:
  ByteSpan data_;
  std::size_t pos_ = 0;
};

class MemoryWriter final : public Writer {
 public:
  Status Write(ByteSpan data) override {
    out_.insert(out_.end(), data.begin(), data.end());
    return Status::Ok();
  }
  const Bytes& data() const { return out_; }

 private:
  Bytes out_;
};

// Fills `p` with `n` bytes from the kernel's CSPRNG (getrandom(2): no file
// to open per call, unlike reading /dev/urandom).
void FillRandom(std::uint8_t* p, std::size_t n);

}  // namespace dfs::core
