// UploadStream: bytes written in order from offset 0 (`cp` into the mount)
// go straight into FileServer::StoreData on a thread of its own, so that
// chunking, sealing and replication run while the writer writes, and
// nothing is staged on the local disk first. The mount falls back to a
// StagedFile (core/staged_file.h) on the first write that is not an append
// at the end, or on a read or truncate.
//
// Memory: at most `max_buffered` bytes wait between Write and the upload,
// plus StoreData's own pipeline (bounded by the FileServer's configuration).
//
// Thread safety: Write, size and Finish from one thread at a time (the
// caller locks); the upload runs on its own thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "core/bytes.h"
#include "core/file_server.h"
#include "core/manifest.h"
#include "core/status.h"

namespace dfs::core {

class UploadStream {
 public:
  explicit UploadStream(FileServer& files, std::size_t max_buffered = 8u << 20);
  ~UploadStream();  // cancels an unfinished upload and waits for its thread
  UploadStream(const UploadStream&) = delete;
  UploadStream& operator=(const UploadStream&) = delete;

  // Appends `data` (copied); blocks while max_buffered bytes wait. Returns
  // the upload's error once it has failed (kNoSpace, kUnavailable, ...).
  Status Write(ByteSpan data);
  std::uint64_t size() const { return size_; }

  // Ends the stream and waits for the upload: the manifest of everything
  // written. Its chunks are stored and stay pinned in pins() until the
  // caller has committed them.
  Result<Manifest> Finish();
  FileServer::ChunkPins& pins() { return *pins_; }
  std::unique_ptr<FileServer::ChunkPins> TakePins() { return std::move(pins_); }

 private:
  class QueueReader;
  void Run();

  FileServer& files_;
  std::size_t max_buffered_;
  std::uint64_t size_ = 0;
  std::unique_ptr<FileServer::ChunkPins> pins_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Bytes> queue_;
  std::size_t buffered_ = 0;
  bool closed_ = false;     // no more writes
  bool cancelled_ = false;  // the reader fails at once
  bool done_ = false;       // the upload returned
  std::optional<Result<Manifest>> result_;
  std::thread thread_;
};

}  // namespace dfs::core
