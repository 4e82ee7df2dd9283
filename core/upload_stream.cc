#include "core/upload_stream.h"

#include <algorithm>
#include <cstring>

namespace dfs::core {

// What StoreData reads: the queue, blocking until bytes or the end arrive.
class UploadStream::QueueReader : public Reader {
 public:
  explicit QueueReader(UploadStream& s) : s_(s) {}
  Result<std::size_t> Read(MutableByteSpan buf) override {
    std::unique_lock lock(s_.mu_);
    s_.cv_.wait(lock, [&] { return s_.cancelled_ || !s_.queue_.empty() || s_.closed_; });
    if (s_.cancelled_) return Status::Unavailable("upload cancelled");
    if (s_.queue_.empty()) return std::size_t{0};  // closed: the end
    Bytes& front = s_.queue_.front();
    std::size_t n = std::min(buf.size(), front.size() - offset_);
    std::memcpy(buf.data(), front.data() + offset_, n);
    offset_ += n;
    if (offset_ == front.size()) {
      s_.buffered_ -= front.size();
      s_.queue_.pop_front();
      offset_ = 0;
      s_.cv_.notify_all();
    }
    return n;
  }

 private:
  UploadStream& s_;
  std::size_t offset_ = 0;  // into the queue's front block
};

UploadStream::UploadStream(FileServer& files, std::size_t max_buffered)
    : files_(files),
      max_buffered_(max_buffered),
      pins_(std::make_unique<FileServer::ChunkPins>(&files)) {
  thread_ = std::thread([this] { Run(); });
}

UploadStream::~UploadStream() {
  {
    std::lock_guard lock(mu_);
    if (!done_) cancelled_ = true;
    closed_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void UploadStream::Run() {
  QueueReader reader(*this);
  Result<Manifest> r = files_.StoreData(reader, pins_.get());
  std::lock_guard lock(mu_);
  result_ = std::move(r);
  done_ = true;
  cv_.notify_all();
}

Status UploadStream::Write(ByteSpan data) {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return done_ || buffered_ < max_buffered_; });
  if (done_) {
    if (result_ && !result_->ok()) return result_->status();
    return Status::Io("upload ended before its data");
  }
  queue_.emplace_back(data.begin(), data.end());
  buffered_ += data.size();
  size_ += data.size();
  cv_.notify_all();
  return Status::Ok();
}

Result<Manifest> UploadStream::Finish() {
  std::unique_lock lock(mu_);
  closed_ = true;
  cv_.notify_all();
  cv_.wait(lock, [&] { return done_; });
  return *result_;
}

}  // namespace dfs::core
