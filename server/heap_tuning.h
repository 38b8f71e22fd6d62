// Keeps glibc's malloc from handing freed heap memory back to the kernel between requests.
// Each 16-token DeepSeek-V3 request brings 229 KB of hidden states; with glibc's default
// thresholds its heaps shrink after such frees and the next request takes a page fault
// for every 4 KiB page it touches again.
#pragma once

#include <string>

namespace moe {

// Fixes malloc's mmap threshold (4 MiB) and trim threshold (64 MiB) unless GLIBC_TUNABLES
// already sets either. Call first thing in main, before other threads exist. Returns a
// line for the start-up log saying what was done.
std::string TuneHeapForLargeMessages();

}  // namespace moe
