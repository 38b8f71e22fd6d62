#include "server/input_pool.h"

#include <algorithm>
#include <cstring>

#include "server/streaming_copy.h"

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
  if (pool_ != nullptr) {
    WaitFilled();
    pool_->Release(index_);
  }
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

BlockFill HiddenBytes::BeginFill() {
  BlockFill fill;
  if (pool_ == nullptr || !pool_->has_chunk_marks()) return fill;
  WaitFilled();  // one fill at a time
  uint32_t& generation = pool_->generation_[index_];
  if (++generation == 0) ++generation;  // 0 is a fresh mark's value
  pool_->filling_[index_].store(true, std::memory_order_release);
  fill.pool_ = pool_;
  fill.index_ = index_;
  fill.block_ = block_;
  fill.marks_ = pool_->marks_ + pool_->marks_offset(index_);
  fill.size_ = size_;
  fill.generation_ = generation;
  return fill;
}

bool HiddenBytes::filling() const {
  return pool_ != nullptr && pool_->filling_ != nullptr &&
         pool_->filling_[index_].load(std::memory_order_acquire);
}

void HiddenBytes::WaitFilled() const {
  while (filling()) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }
}

ChunkMarks HiddenBytes::marks() const {
  if (!filling()) return {};
  ChunkMarks m;
  m.device_marks = pool_->device_marks_ + pool_->marks_offset(index_);
  m.generation = pool_->generation_[index_];
  m.chunks = uint32_t(FillChunks(size_));
  return m;
}

std::string HiddenBytes::TakeHeapBytes() {
  WaitFilled();
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

size_t InputPool::marks_bytes_per_block(size_t block_bytes) {
  return FillChunks(block_bytes) * kFillMarkStride;
}

size_t InputPool::marks_offset(int index) const {
  return size_t(index) * marks_bytes_per_block(block_bytes_);
}

void InputPool::SetChunkMarks(char* marks, const void* device_marks) {
  marks_ = marks;
  device_marks_ = static_cast<const char*>(device_marks);
  generation_ = std::make_unique<uint32_t[]>(size_t(blocks_));
  filling_ = std::make_unique<std::atomic<bool>[]>(size_t(blocks_));
  for (int i = 0; i < blocks_; ++i) {
    generation_[i] = 0;
    filling_[i].store(false);
  }
}

BlockFill& BlockFill::operator=(BlockFill&& other) noexcept {
  if (this == &other) return *this;
  Finish();
  pool_ = other.pool_;
  index_ = other.index_;
  block_ = other.block_;
  marks_ = other.marks_;
  size_ = other.size_;
  written_ = other.written_;
  marked_ = other.marked_;
  generation_ = other.generation_;
  other.pool_ = nullptr;
  return *this;
}

void BlockFill::Write(const void* src, size_t bytes) {
  if (pool_ == nullptr) return;
  bytes = std::min(bytes, size_ - written_);
  if (pool_->streaming_stores()) {
    StreamingCopy(block_ + written_, src, bytes);  // ends with an sfence
  } else {
    std::memcpy(block_ + written_, src, bytes);
  }
  written_ += bytes;
  MarkUpTo(written_ == size_ ? FillChunks(size_) : written_ / kFillChunkBytes);
}

void BlockFill::MarkUpTo(size_t chunks) {
  // Release stores: the chunk's bytes (ordinary stores; streaming ones were fenced) before
  // its mark. (A plain store on x86; atomic, so that ThreadSanitizer sees the order too.)
  for (; marked_ < chunks; ++marked_)
    __atomic_store_n(reinterpret_cast<uint32_t*>(marks_ + marked_ * kFillMarkStride), generation_,
                     __ATOMIC_RELEASE);
}

void BlockFill::Finish() {
  if (pool_ == nullptr) return;
  MarkUpTo(FillChunks(size_));
  pool_->filling_[index_].store(false, std::memory_order_release);
  pool_ = nullptr;
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
