// StreamingCopy against memcpy: every alignment of destination and source within a line,
// lengths around the line size and a large one, and not a byte written outside the range.
#include "server/streaming_copy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace moe {
namespace {

TEST(StreamingCopy, EqualsMemcpyAtEveryAlignmentAndLength) {
  std::mt19937 rng(11);
  constexpr size_t kGuard = 128;
  const size_t lengths[] = {0, 1, 15, 16, 63, 64, 65, 127, 128, 129, 200, 1000, 229376};
  std::vector<char> src(229376 + 2 * kGuard);
  for (char& c : src) c = char(rng());
  int copies = 0;
  for (size_t length : lengths) {
    const size_t offset_step = length > 4096 ? 13 : 1;  // every offset for the short ones
    for (size_t dst_offset = 0; dst_offset < 64; dst_offset += offset_step) {
      const size_t src_offset = rng() % 64;
      // 64-byte aligned storage, so dst_offset is the destination's offset within a line.
      std::vector<char> storage(length + 2 * kGuard + 64);
      char* base = storage.data() + (-reinterpret_cast<uintptr_t>(storage.data()) & 63);
      std::fill(base, base + length + 2 * kGuard, char(0x5a));
      StreamingCopy(base + kGuard + dst_offset, src.data() + src_offset, length);
      const std::string got(base + kGuard + dst_offset, length);
      ASSERT_EQ(got, std::string(src.data() + src_offset, length))
          << "length " << length << " dst offset " << dst_offset << " src offset " << src_offset;
      for (size_t i = 0; i < kGuard + dst_offset; ++i) ASSERT_EQ(base[i], char(0x5a)) << i;
      for (size_t i = kGuard + dst_offset + length; i < length + 2 * kGuard; ++i)
        ASSERT_EQ(base[i], char(0x5a)) << i;
      ++copies;
    }
  }
  EXPECT_GT(copies, 700);
}

}  // namespace
}  // namespace moe
