// StreamingCopy: memcpy with non-temporal (cache-bypassing) stores, for bytes that the CPU
// writes once and a device then reads over PCIe.
//
// Ordinary stores into a buffer the device read last time must first fetch each line back
// (a read for ownership), and the device's next read must snoop the lines out of the
// writing core's cache. For a 16-token DeepSeek-V3 request (229 KB) that made the copy run
// at ~12 GB/s and the H200's stage-in ~5 us slower (bench/NOTES.md, sessions 25 and 26).
// Non-temporal stores write whole lines to memory without reading them, and leave no
// cached copy to snoop. Ends with a store fence: the bytes are globally visible, in order
// with the caller's later stores (a hand-off, a launch's doorbell), when it returns.
// Stateless; thread-safe. Without SSE2 it is memcpy.
#pragma once

#include <cstddef>

namespace moe {

void StreamingCopy(void* dst, const void* src, size_t bytes);

}  // namespace moe
