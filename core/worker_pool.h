// WorkerPool: a fixed set of threads running submitted tasks in FIFO order.
// The FileServer runs hashing, sealing, unsealing and chunk I/O on it so
// they overlap with the caller's reading and writing. Callers bound how much
// they submit (a window of chunks in flight), so the queue stays small.
//
// Thread safety: Submit may be called from any thread. The destructor runs
// what is queued, then joins.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace dfs::core {

class WorkerPool {
 public:
  explicit WorkerPool(std::size_t threads);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void Submit(std::function<void()> task);
  std::size_t size() const { return threads_.size(); }

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace dfs::core
