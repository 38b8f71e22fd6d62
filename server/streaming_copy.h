// StreamingCopy: memcpy with non-temporal (cache-bypassing) stores, for bytes that the CPU
// writes once and a device then reads over PCIe.
//
// A device read of a line that a core still holds modified must snoop it out of that
// core's cache. For a 16-token DeepSeek-V3 request (229 KB) just parsed into a page-locked
// block, those snoops cost the H200's stage-in ~5 us (bench/NOTES.md, session 25).
// Non-temporal stores send the bytes to memory instead, so the device's reads find no
// cached copy to snoop. Ends with a store fence: the bytes are globally visible, in order
// with the caller's later stores (a hand-off, a launch's doorbell), when it returns.
// Stateless; thread-safe. Without SSE2 it is memcpy.
#pragma once

#include <cstddef>

namespace moe {

void StreamingCopy(void* dst, const void* src, size_t bytes);

}  // namespace moe
