#include "kernels/thread_pool.h"

namespace moe {

struct ThreadPool::Loop {
  const std::function<void(int)>* fn;
  int n;
  std::atomic<int> next{0};
  std::atomic<int> done{0};
  std::mutex mu;
  std::condition_variable finished;

  // Claims and runs iterations until none are left; true if this call ran the last one.
  void Drain() {
    int ran = 0;
    for (int i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
      (*fn)(i);
      ++ran;
    }
    if (ran > 0 && done.fetch_add(ran) + ran == n) {
      std::lock_guard<std::mutex> lock(mu);
      finished.notify_all();
    }
  }
};

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::thread::hardware_concurrency());
  if (threads < 1) threads = 1;
  for (int i = 0; i + 1 < threads; ++i) workers_.emplace_back([this] { WorkerMain(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::WorkerMain() {
  for (;;) {
    std::shared_ptr<Loop> loop;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !loops_.empty(); });
      if (stopping_) return;
      loop = loops_.front();
      if (loop->next.load() >= loop->n) {
        loops_.pop_front();
        continue;
      }
    }
    loop->Drain();
  }
}

void ThreadPool::ParallelFor(int n, const std::function<void(int)>& fn) {
  if (n <= 0) return;
  if (n == 1 || workers_.empty()) {
    for (int i = 0; i < n; ++i) fn(i);
    return;
  }
  auto loop = std::make_shared<Loop>();
  loop->fn = &fn;
  loop->n = n;
  {
    std::lock_guard<std::mutex> lock(mu_);
    loops_.push_back(loop);
  }
  cv_.notify_all();
  loop->Drain();
  std::unique_lock<std::mutex> lock(loop->mu);
  loop->finished.wait(lock, [&] { return loop->done.load() == n; });
  // Workers drop exhausted loops from the queue lazily; remove ours now.
  std::lock_guard<std::mutex> queue_lock(mu_);
  for (auto it = loops_.begin(); it != loops_.end(); ++it) {
    if (*it == loop) {
      loops_.erase(it);
      break;
    }
  }
}

}  // namespace moe
