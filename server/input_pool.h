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
//
// A pool with chunk marks (a kFillMarkStride line per kFillChunkBytes chunk of a block, in
// memory the device can read) also lets a block be handed on before its bytes are written:
// BeginFill() returns a BlockFill, through which the writer copies the bytes chunk by chunk,
// marking each as it lands (the device's stage-in waits on the marks, kernels/stage_in.h).
// Until the fill finishes, the block's holder may pass its marks to the device but must not
// read the bytes on the host: it calls WaitFilled() first, and giving the block back waits
// too.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace moe {

class InputPool;
class BlockFill;

// A deferred fill marks its block a chunk at a time: kernels/stage_in.h's kStageBlockBytes
// and kStageMarkStride (the CUDA backend checks they agree).
inline constexpr size_t kFillChunkBytes = 4096;
inline constexpr size_t kFillMarkStride = 128;
// Chunks of `bytes` (the last one partial).
inline constexpr size_t FillChunks(size_t bytes) {
  return (bytes + kFillChunkBytes - 1) / kFillChunkBytes;
}

// Where a block's chunk marks are (kernels/stage_in.h's StageChunkMarks, without CUDA).
struct ChunkMarks {
  const void* device_marks = nullptr;
  uint32_t generation = 0;
  uint32_t chunks = 0;  // 0: every byte is written
};

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

  // Starts a deferred fill of this block (pooled, in a pool with marks; see the top): the
  // bytes are to be written through the returned BlockFill.
  BlockFill BeginFill();
  // Whether a fill is still writing the bytes, and waiting for it to finish (spinning: a
  // fill is one copy of at most a block).
  bool filling() const;
  void WaitFilled() const;
  // The marks the device waits on while a fill is under way; chunks == 0 when none is.
  ChunkMarks marks() const;

  // Back to empty (after any fill has finished); a block returns to its pool.
  void Reset();
  // Heap bytes moved out (then empty); pooled bytes are copied out (once filled), and their
  // block kept.
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
  // Chunk marks for deferred fills: `marks` (host view; `device_marks`, the device's) holds
  // marks_bytes_per_block(block_bytes) bytes for each block (a kFillMarkStride line per
  // chunk), zeroed. Call before the pool is used.
  void SetChunkMarks(char* marks, const void* device_marks);
  static size_t marks_bytes_per_block(size_t block_bytes);
  bool has_chunk_marks() const { return marks_ != nullptr; }
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
  friend class BlockFill;
  void Release(int index);
  size_t marks_offset(int index) const;  // of block `index`'s marks, in either view

  char* const region_;
  const char* const device_region_;
  const size_t block_bytes_;
  const int blocks_;
  const bool streaming_stores_;
  mutable absl::Mutex mu_;
  std::vector<int> free_ ABSL_GUARDED_BY(mu_);  // a stack: the block used last is warm
  char* marks_ = nullptr;
  const char* device_marks_ = nullptr;
  // Per block: the generation its marks are set to by the fill under way or the last one
  // (written by the filler before the block is handed on), and whether a fill is writing.
  std::unique_ptr<uint32_t[]> generation_;
  std::unique_ptr<std::atomic<bool>[]> filling_;
};

// The writer's side of a deferred fill: copies bytes into the block at increasing offsets
// and marks each chunk once all its bytes are written. Finish() (or the destructor) marks
// whatever is left, so the device never waits for a chunk that will not come, and ends the
// fill. Move-only.
class BlockFill {
 public:
  BlockFill() = default;
  BlockFill(BlockFill&& other) noexcept { *this = std::move(other); }
  BlockFill& operator=(BlockFill&& other) noexcept;
  ~BlockFill() { Finish(); }
  bool active() const { return pool_ != nullptr; }
  size_t remaining() const { return pool_ != nullptr ? size_ - written_ : 0; }

  // Appends `bytes` at the fill's current offset (the block's start first).
  void Write(const void* src, size_t bytes);
  // Marks the rest and ends the fill.
  void Finish();

 private:
  friend class HiddenBytes;
  void MarkUpTo(size_t chunks);
  InputPool* pool_ = nullptr;
  int index_ = -1;
  char* block_ = nullptr;
  char* marks_ = nullptr;
  size_t size_ = 0, written_ = 0, marked_ = 0;  // marked_: chunks
  uint32_t generation_ = 0;
};

}  // namespace moe
