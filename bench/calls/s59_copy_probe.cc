// Session 59's throwaway probe (not built by CMake; g++ -O2 -std=c++17 -pthread -static):
// copying 229 KB (16 DeepSeek-V3 tokens) that another core has just written, as the server's
// parse does, with streaming stores alone, with memcpy, with software prefetch, split with a
// spinning helper core, and from a hot source. Arguments: writer, parser and helper cores,
// rounds. Results: bench/NOTES.md session 59 (h100_s59_call3.txt).
#include <emmintrin.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>
using Clock = std::chrono::steady_clock;
static void Pin(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  pthread_setaffinity_np(pthread_self(), sizeof s, &s);
}
// Streaming-store copy of whole 64-byte lines; kPrefetch: software prefetch 2 KB ahead (the
// "nt + prefetch" row). Both forms compile to the loops the probe ran as two functions.
template <bool kPrefetch = false>
static void NtCopy(char* d, const char* s, size_t n) {
  if constexpr (kPrefetch)
    for (size_t i = 0; i < 2048 && i < n; i += 64) _mm_prefetch(s + i, _MM_HINT_T0);
  for (; n >= 64; n -= 64, d += 64, s += 64) {
    if constexpr (kPrefetch) _mm_prefetch(s + 2048, _MM_HINT_T0);
    __m128i a = _mm_loadu_si128((const __m128i*)s), b = _mm_loadu_si128((const __m128i*)(s + 16)),
            c = _mm_loadu_si128((const __m128i*)(s + 32)),
            e = _mm_loadu_si128((const __m128i*)(s + 48));
    _mm_stream_si128((__m128i*)d, a);
    _mm_stream_si128((__m128i*)(d + 16), b);
    _mm_stream_si128((__m128i*)(d + 32), c);
    _mm_stream_si128((__m128i*)(d + 48), e);
  }
  _mm_sfence();
}
int main(int argc, char** argv) {
  const size_t n = 16 * 7168 * 2;
  int cw = argc > 1 ? atoi(argv[1]) : 1, cp = argc > 2 ? atoi(argv[2]) : 2,
      ch = argc > 3 ? atoi(argv[3]) : 3;
  int iters = argc > 4 ? atoi(argv[4]) : 2000;
  char* src = (char*)aligned_alloc(4096, n);
  char* dst = (char*)aligned_alloc(4096, n);
  memset(src, 1, n);
  memset(dst, 0, n);
  std::atomic<int> written{0}, copied{0};
  std::atomic<const char*> job{nullptr};  // helper's half: src pointer; nullptr none
  std::atomic<int> helper_done{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    Pin(cw);
    for (int i = 1;; ++i) {
      while (copied.load() != i - 1)
        if (stop) return;
      memset(src, i & 0xff, n);
      written.store(i);
    }
  });
  std::thread helper([&] {
    Pin(ch);
    int k = 0;
    while (!stop) {
      const char* s = job.load(std::memory_order_acquire);
      if (s) {
        job.store(nullptr);
        NtCopy(dst + n / 2, s, n / 2);
        helper_done.store(++k, std::memory_order_release);
      } else
        _mm_pause();
    }
  });
  Pin(cp);
  const char* names[] = {"nt alone", "memcpy alone", "nt + prefetch", "nt split with helper",
                         "nt hot source (2nd copy)"};
  std::vector<double> t[5];
  int it = 0, hk = 0;
  for (int r = 0; r < iters; ++r)
    for (int v = 0; v < 5; ++v) {
      ++it;
      while (written.load(std::memory_order_acquire) != it) {
      }
      auto t0 = Clock::now();
      if (v == 0)
        NtCopy(dst, src, n);
      else if (v == 1)
        memcpy(dst, src, n);
      else if (v == 2)
        NtCopy<true>(dst, src, n);
      else if (v == 3) {
        job.store(src + n / 2, std::memory_order_release);
        NtCopy(dst, src, n / 2);
        ++hk;
        while (helper_done.load(std::memory_order_acquire) != hk) _mm_pause();
      } else {
        NtCopy(dst, src, n);
        t0 = Clock::now();
        NtCopy(dst, src, n);
      }
      auto t1 = Clock::now();
      t[v].push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      copied.store(it);
    }
  stop = true;
  copied.store(-5);
  writer.join();
  helper.join();
  printf("cores writer %d parser %d helper %d, %zu bytes, %d rounds\n", cw, cp, ch, n, iters);
  for (int v = 0; v < 5; ++v) {
    auto& x = t[v];
    std::sort(x.begin(), x.end());
    printf("%-28s p50 %6.2f us  p10 %6.2f  p90 %6.2f\n", names[v], x[x.size() / 2],
           x[x.size() / 10], x[x.size() * 9 / 10]);
  }
}
