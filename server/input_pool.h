// Where a request's hidden-state bytes live between the wire and the backend.
//
// InputPool: fixed-size blocks of one host region the backend can read without a staging
// copy (the CUDA backend's is page-locked and mapped into the device's address space). The
// service parses a request's hidden states straight into a block, so at 16 DeepSeek-V3
// tokens the 229 KB are copied once, out of gRPC's slices, instead of once into a heap
// string and again into the backend's staging buffer (the second copy cost 7-25 us of a
// one-caller request, bench/NOTES.md). Thread-safe; the region outlives the pool.
//
// HiddenBytes: one request's bytes, in a pool block or on the heap. Move-only; a block goes
// back to its pool when the HiddenBytes holding it is destroyed.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace moe {

class InputPool;

class HiddenBytes {
 public:
  HiddenBytes() = default;
  explicit HiddenBytes(std::string heap) : heap_(std::move(heap)) {}
  HiddenBytes(HiddenBytes&& other) noexcept { *this = std::move(other); }
  HiddenBytes& operator=(HiddenBytes&& other) noexcept;
  HiddenBytes(const HiddenBytes&) = delete;
  HiddenBytes& operator=(const HiddenBytes&) = delete;
  ~HiddenBytes() { Reset(); }

  const char* data() const { return pool_ != nullptr ? block_ : heap_.data(); }
  char* mutable_data() { return pool_ != nullptr ? block_ : heap_.data(); }
  size_t size() const { return pool_ != nullptr ? size_ : heap_.size(); }
  std::string_view view() const { return {data(), size()}; }
  // The device's view of the bytes when they are in a pool block the device can read, and
  // how many bytes from there it may read (the whole block: a backend computing a
  // padded batch reads past size()); null and 0 on the heap.
  const void* device_view() const { return device_; }
  size_t device_readable_bytes() const;
  bool pooled() const { return pool_ != nullptr; }

  // Back to empty; a block returns to its pool.
  void Reset();
  // Heap bytes moved out (then empty); pooled bytes are copied out, and their block kept.
  std::string TakeHeapBytes();

 private:
  friend class InputPool;
  InputPool* pool_ = nullptr;  // null: the bytes are in heap_
  int index_ = -1;
  char* block_ = nullptr;
  const void* device_ = nullptr;
  size_t size_ = 0;
  std::string heap_;
};

class InputPool {
 public:
  // `region`: `blocks` x `block_bytes` bytes; `device_region`: the device's view of it, or
  // null when the device cannot read it in place. `streaming_stores`: bytes are to be
  // copied into its blocks with StreamingCopy (server/streaming_copy.h), past the CPU's
  // caches, since the device reads them next.
  InputPool(char* region, const void* device_region, size_t block_bytes, int blocks,
            bool streaming_stores = false);
  InputPool(const InputPool&) = delete;
  InputPool& operator=(const InputPool&) = delete;
  // Every block must have been given back.
  ~InputPool() = default;

  // `bytes` in a free block (contents undefined), or false when they do not fit in one
  // or every block is taken: then the caller keeps them on the heap.
  bool TryAcquire(size_t bytes, HiddenBytes* out);

  size_t block_bytes() const { return block_bytes_; }
  int blocks() const { return blocks_; }
  bool streaming_stores() const { return streaming_stores_; }
  int free_blocks() const;

 private:
  friend class HiddenBytes;
  void Release(int index);

  char* const region_;
  const char* const device_region_;
  const size_t block_bytes_;
  const int blocks_;
  const bool streaming_stores_;
  mutable absl::Mutex mu_;
  std::vector<int> free_ ABSL_GUARDED_BY(mu_);  // a stack: the block used last is warm
};

}  // namespace moe
