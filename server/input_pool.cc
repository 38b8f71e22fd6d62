#include "server/input_pool.h"

namespace moe {

HiddenBytes& HiddenBytes::operator=(HiddenBytes&& other) noexcept {
  if (this == &other) return *this;
  Reset();
  pool_ = other.pool_;
  index_ = other.index_;
  block_ = other.block_;
  device_ = other.device_;
  size_ = other.size_;
  heap_ = std::move(other.heap_);
  other.pool_ = nullptr;
  other.index_ = -1;
  other.block_ = nullptr;
  other.device_ = nullptr;
  other.size_ = 0;
  other.heap_.clear();
  return *this;
}

void HiddenBytes::Reset() {
  if (pool_ != nullptr) pool_->Release(index_);
  pool_ = nullptr;
  index_ = -1;
  block_ = nullptr;
  device_ = nullptr;
  size_ = 0;
  heap_.clear();
}

size_t HiddenBytes::device_readable_bytes() const {
  return device_ != nullptr ? pool_->block_bytes() : 0;
}

std::string HiddenBytes::TakeHeapBytes() {
  if (pool_ != nullptr) return std::string(view());
  std::string bytes = std::move(heap_);
  heap_.clear();
  return bytes;
}

InputPool::InputPool(char* region, const void* device_region, size_t block_bytes, int blocks,
                     bool streaming_stores)
    : region_(region),
      device_region_(static_cast<const char*>(device_region)),
      block_bytes_(block_bytes),
      blocks_(blocks),
      streaming_stores_(streaming_stores) {
  absl::MutexLock lock(&mu_);
  free_.reserve(blocks);
  for (int i = blocks - 1; i >= 0; --i) free_.push_back(i);
}

bool InputPool::TryAcquire(size_t bytes, HiddenBytes* out) {
  if (bytes > block_bytes_) return false;
  int index;
  {
    absl::MutexLock lock(&mu_);
    if (free_.empty()) return false;
    index = free_.back();
    free_.pop_back();
  }
  out->Reset();
  out->pool_ = this;
  out->index_ = index;
  out->block_ = region_ + size_t(index) * block_bytes_;
  out->device_ =
      device_region_ != nullptr ? device_region_ + size_t(index) * block_bytes_ : nullptr;
  out->size_ = bytes;
  return true;
}

void InputPool::Release(int index) {
  absl::MutexLock lock(&mu_);
  free_.push_back(index);
}

int InputPool::free_blocks() const {
  absl::MutexLock lock(&mu_);
  return int(free_.size());
}

}  // namespace moe
