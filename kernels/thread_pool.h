// A fixed pool of worker threads running ParallelFor loops. Thread-safe: several
// callers may run ParallelFor at once; each caller also works on its own loop, so a
// loop always finishes even when every worker is busy elsewhere.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace moe {

class ThreadPool {
 public:
  // threads == 0: one per hardware thread.
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(i) for every i in [0, n), spread over the pool and the caller; returns
  // when all calls have returned.
  void ParallelFor(int n, const std::function<void(int)>& fn);

 private:
  struct Loop;
  void WorkerMain();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Loop>> loops_;  // loops with unclaimed iterations
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace moe
