// A recycling pool for the kernels' output buffers. Fresh memory costs a page fault per 4 KiB on first
// touch (measured 0.3–0.4 ms per MiB on the development VM, several times the cost of writing it), and a
// denoising step allocates the same few shapes again and again (q, k, v, attention and projection
// outputs, hidden states). Blocks handed out here back JavaScript ArrayBuffers; when the garbage
// collector finalizes one, its block returns to the pool instead of the system, already faulted in, and
// the next request of the same rounded size takes it. At most `limit` bytes wait in the pool; beyond
// that, returned blocks go back to the system.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace ditfa {

class BufferPool {
 public:
  static constexpr size_t kGranule = 4096;

  static size_t rounded(size_t bytes) { return (bytes + kGranule - 1) / kGranule * kGranule; }

  // A block of at least `bytes` (rounded to the granule), 64-byte aligned; null when out of memory.
  // `fresh` (optional) tells whether it came from the system rather than the pool.
  void* take(size_t bytes, bool* fresh = nullptr) {
    if (fresh) *fresh = false;
    const size_t size = rounded(bytes == 0 ? 1 : bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        idle_ -= size;
        reused_++;
        live_ += size;
        return p;
      }
      fresh_++;
      live_ += size;
    }
    if (fresh) *fresh = true;
    void* p = std::aligned_alloc(64, size);
    if (p == nullptr) {
      std::lock_guard<std::mutex> lock(mutex_);
      live_ -= size;
    }
    return p;
  }

  // Returns a block of `bytes` (as requested from take()); true when it went back to the system.
  bool give(void* p, size_t bytes) {
    const size_t size = rounded(bytes == 0 ? 1 : bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      live_ -= size;
      if (idle_ + size <= limit_) {
        free_[size].push_back(p);
        idle_ += size;
        return false;
      }
    }
    std::free(p);
    return true;
  }

  // Frees every idle block.
  void trim() {
    std::unordered_map<size_t, std::vector<void*>> drop;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      drop.swap(free_);
      idle_ = 0;
    }
    for (auto& kv : drop)
      for (void* p : kv.second) std::free(p);
  }

  void set_limit(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      limit_ = bytes;
      if (idle_ <= limit_) return;
    }
    trim();
  }

  struct Stats {
    size_t live, idle, limit;
    uint64_t fresh, reused;
  };
  Stats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    return Stats{live_, idle_, limit_, fresh_, reused_};
  }

 private:
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t idle_ = 0;
  size_t live_ = 0;
  size_t limit_ = size_t{512} << 20;
  uint64_t fresh_ = 0;
  uint64_t reused_ = 0;
};

}  // namespace ditfa
