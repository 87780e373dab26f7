// A persistent thread pool: `size()` threads in all, the calling thread included, that share one job at a
// time by taking item indices from an atomic counter. Jobs from several callers (the JS thread and libuv
// workers) run one after another.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ditfa {

class ThreadPool {
 public:
  explicit ThreadPool(int threads) { start(threads); }
  ~ThreadPool() { stop(); }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() {
    std::lock_guard<std::mutex> job(job_mutex_);
    return static_cast<int>(workers_.size()) + 1;
  }

  void resize(int threads) {
    std::lock_guard<std::mutex> job(job_mutex_);
    stop();
    start(threads);
  }

  // Runs fn(i) for every i in [0, count) and returns when all are done; rethrows the first exception.
  void run(int64_t count, const std::function<void(int64_t)>& fn) {
    std::lock_guard<std::mutex> job(job_mutex_);
    if (count <= 0) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = &fn;
      count_ = count;
      next_.store(0);
      error_ = nullptr;
      busy_ = static_cast<int>(workers_.size());
      generation_++;
    }
    wake_.notify_all();
    work();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return busy_ == 0; });
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void start(int threads) {
    stopping_ = false;
    // Each worker starts from the current generation, so a job queued before it first runs is not missed.
    const uint64_t seen = generation_;
    for (int i = 1; i < threads; i++) workers_.emplace_back([this, seen] { loop(seen); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
  }

  void work() {
    for (;;) {
      const int64_t i = next_.fetch_add(1);
      if (i >= count_) return;
      try {
        (*fn_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
        next_.store(count_);
      }
    }
  }

  void loop(uint64_t seen) {
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
      }
      work();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        busy_--;
      }
      done_.notify_all();
    }
  }

  std::mutex job_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<std::thread> workers_;
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t count_ = 0;
  std::atomic<int64_t> next_{0};
  std::exception_ptr error_;
  int busy_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
};

}  // namespace ditfa
