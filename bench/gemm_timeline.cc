// router_bench --gemm_timeline: phase stamps of staged-tile GEMM launches.
#include "bench/gemm_timeline.h"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "kernels/cuda_raii.h"
#include "kernels/decompose_k_gemm_tile.h"

namespace moe::bench {
namespace {

// One launch's stamps, per slot its CTAs' times in us from the launch's first start.
struct LaunchPhases {
  double first_start_ns = 0, last_end_ns = 0;
  std::vector<double> us[cuda::kGemmStampSlots];
  std::vector<double> stream_bytes_per_ns;  // a CTA's bytes / (mainloop - first stage)
};

LaunchPhases ReadLaunch(const unsigned long long* t, int ctas, double bytes_per_cta) {
  LaunchPhases l;
  unsigned long long first = ~0ull, last = 0;
  for (int c = 0; c < ctas; ++c) {
    first = std::min(first, t[c * cuda::kGemmStampSlots + cuda::kGemmStampStart]);
    last = std::max(last, t[c * cuda::kGemmStampSlots + cuda::kGemmStampEnd]);
  }
  l.first_start_ns = double(first);
  l.last_end_ns = double(last);
  for (int c = 0; c < ctas; ++c) {
    const unsigned long long* s = t + c * cuda::kGemmStampSlots;
    for (int slot = 0; slot < cuda::kGemmStampSlots; ++slot)
      if (s[slot] != 0) l.us[slot].push_back((double(s[slot]) - double(first)) / 1e3);
    const unsigned long long f = s[cuda::kGemmStampFirstStage], m = s[cuda::kGemmStampMainloop];
    if (f != 0 && m > f) l.stream_bytes_per_ns.push_back(bytes_per_cta / double(m - f));
  }
  return l;
}

}  // namespace

void PrintGemmTimelines(const cuda::DeviceInfo& info, cudaStream_t stream, size_t l2_bytes,
                        const std::string& filter, bool tma) {
  constexpr int kReplays = 10;
  std::printf(
      "\nstaged-tile GEMM phases, us from the launch's first CTA start (min / median / max over "
      "its CTAs,\nmedian over launches 1.. of a graph over rotating operands, %d replays). "
      "first: first K stage landed;\nmainloop: MMAs done; partial: partial tile stored; "
      "barrier: the splits met; end: C written;\ngap: from launch i-1's last end to launch i's "
      "first start (negative: under PDL, during launch i-1); B/ns: a CTA's operand bytes over "
      "its\nmainloop (first stage to MMAs done); "
      "call: first start to first start\n",
      kReplays);
  std::printf("%-20s %-18s %6s %17s %17s %17s %17s %17s %6s %6s %6s\n", "shape", "config", "start",
              "first", "mainloop", "partial", "barrier", "end", "gap", "B/ns", "call");
  struct Case {
    int mn, k, tile;
    bool pdl;        // launched under PDL (64 rows of A; the 128-tiles launch plain regardless)
    int tile_m = 0;  // rows of A a tile, 0 for `tile` (TileGemmShape::tile_m)
  };
  for (const Case& cs : std::vector<Case>{{128, 131072, 128, false},
                                          {128, 131072, 128, false, 64},
                                          {128, 131072, 128, true, 64},
                                          {128, 131072, 64, false},
                                          {128, 65536, 128, false},
                                          {128, 65536, 128, false, 64},
                                          {128, 65536, 128, true, 64},
                                          {128, 32768, 128, false},
                                          {128, 32768, 64, false},
                                          {128, 32768, 64, true},
                                          {64, 131072, 64, false},
                                          {64, 131072, 64, true},
                                          {64, 32768, 64, false},
                                          {64, 32768, 64, true},
                                          {32, 131072, 32, true},
                                          {16, 131072, 16, false},
                                          {16, 131072, 16, true},
                                          {16, 8192, 16, true}}) {
    // PDL launches load by the TMA; the few-row tiles exist only with it (without, they
    // run 64-tiles of other splits, whose stamps this table would misread).
    if ((cs.pdl || cs.tile < 64) && !tma) continue;
    const std::string shape = absl::StrFormat("gemm %dx%dx%d", cs.mn, cs.mn, cs.k);
    if (!Selected(shape, filter)) continue;
    cuda::TileGemmShape s{
        cs.mn,
        cs.mn,
        cs.k,
        cs.tile,
        cuda::TileGemmSplits(cs.mn, cs.mn, cs.k, cs.tile, info.sm_count, cs.tile_m),
        tma,
        cs.pdl};
    s.tile_m = cs.tile_m;
    const int tile_m = cuda::TileRowsOfA(cs.tile, cs.tile_m);
    const size_t mat_bytes = size_t(cs.mn) * cs.k * 2;
    const int layers = LayersFor(2 * mat_bytes, l2_bytes, 4, 256);
    const int launches = std::max(layers, 8);
    auto a = Must(DeviceBuffer::Allocate(mat_bytes * layers));
    auto b = Must(DeviceBuffer::Allocate(mat_bytes * layers));
    FillRandom(a.get(), size_t(cs.mn) * cs.k * layers, DType::kBF16, 1.0f, 1);
    FillRandom(b.get(), size_t(cs.mn) * cs.k * layers, DType::kBF16, 1.0f, 2);
    auto c = Must(DeviceBuffer::Allocate(4 * size_t(cs.mn) * cs.mn));
    auto ws = Must(DeviceBuffer::Allocate(cuda::TileGemmWorkspaceBytes(s)));
    CHECK_CUDA(cudaMemsetAsync(ws.get(), 0, cuda::TileGemmZeroedBytes(s), stream));
    const int ctas = cuda::TileGemmCtas(s);
    const size_t entries = size_t(ctas) * cuda::kGemmStampSlots;
    auto tl = Must(DeviceBuffer::Allocate(entries * 8 * launches));
    const CudaGraphExec exec = CaptureWarmGraph(launches, stream, [&](int i, cudaStream_t st) {
      const size_t off = mat_bytes * (i % layers);
      CHECK_CUDA(cuda::LaunchTileGemm(true, s, a.as<char>() + off, b.as<char>() + off, nullptr,
                                      c.as<float>(), ws.get(), st,
                                      tl.as<unsigned long long>() + i * entries));
    });
    // A CTA's operand bytes: its share of the K stages of both T-row operand tiles.
    const double bytes_per_cta =  // (rows of B + rows of A) x 2 bytes x K / S
        (cs.tile + tile_m) * 2.0 * cs.k / s.k_splits;
    std::vector<double> col[cuda::kGemmStampSlots][3], gap, rate, call;
    std::vector<unsigned long long> host(entries * launches);
    for (int r = 0; r < kReplays; ++r) {
      CHECK_CUDA(cudaMemsetAsync(tl.get(), 0, host.size() * 8, stream));
      CHECK_CUDA(cudaGraphLaunch(exec.get(), stream));
      CHECK_CUDA(
          cudaMemcpyAsync(host.data(), tl.get(), host.size() * 8, cudaMemcpyDeviceToHost, stream));
      CHECK_CUDA(cudaStreamSynchronize(stream));
      std::vector<LaunchPhases> l;
      l.reserve(launches);
      for (int i = 0; i < launches; ++i)
        l.push_back(ReadLaunch(&host[i * entries], ctas, bytes_per_cta));
      for (int i = 1; i < launches; ++i) {
        for (int slot = 0; slot < cuda::kGemmStampSlots; ++slot) {
          col[slot][0].push_back(Quantile(l[i].us[slot], 0.0));
          col[slot][1].push_back(Quantile(l[i].us[slot], 0.5));
          col[slot][2].push_back(Quantile(l[i].us[slot], 1.0));
        }
        gap.push_back((l[i].first_start_ns - l[i - 1].last_end_ns) / 1e3);
        call.push_back((l[i].first_start_ns - l[i - 1].first_start_ns) / 1e3);
        rate.push_back(Quantile(l[i].stream_bytes_per_ns, 0.5));
      }
    }
    auto spread = [&](int slot) {
      return absl::StrFormat("%5.2f/%5.2f/%5.2f", Quantile(col[slot][0], 0.5),
                             Quantile(col[slot][1], 0.5), Quantile(col[slot][2], 0.5));
    };
    std::printf("%-20s %-18s %6.2f %17s %17s %17s %17s %17s %6.2f %6.1f %6.2f\n", shape.c_str(),
                absl::StrFormat("tile=%s S=%d%s%s", GemmTileLabel(cs.tile, cs.tile_m), s.k_splits,
                                tma ? " tma" : "", cs.pdl ? " pdl" : "")
                    .c_str(),
                Quantile(col[cuda::kGemmStampStart][2], 0.5),
                spread(cuda::kGemmStampFirstStage).c_str(),
                spread(cuda::kGemmStampMainloop).c_str(), spread(cuda::kGemmStampPartial).c_str(),
                spread(cuda::kGemmStampBarrier).c_str(), spread(cuda::kGemmStampEnd).c_str(),
                Quantile(gap, 0.5), Quantile(rate, 0.5), Quantile(call, 0.5));
  }
}

}  // namespace moe::bench
