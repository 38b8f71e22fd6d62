// router_bench --timeline / --pdl_timeline: phase stamps of fused router launches.
#include "bench/router_timelines.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "bench/bench_util.h"
#include "kernels/config_description.h"
#include "kernels/cuda_raii.h"
#include "kernels/cuda_router.h"
#include "kernels/decompose_k_router.h"
#include "kernels/router_spec.h"

namespace moe::bench {
namespace {

// The tuner's five fastest candidates for a shape, fastest first, indented so that scripts
// reading the table rows skip them.
void PrintFastestCandidates(const std::string& shape, std::vector<cuda::CandidateTiming> timings) {
  std::sort(timings.begin(), timings.end(),
            [](const auto& a, const auto& b) { return a.us < b.us; });
  std::string line = "  tuner " + shape + ":";
  for (size_t i = 0; i < std::min<size_t>(5, timings.size()); ++i)
    absl::StrAppendFormat(&line, "  %s %.2f", cuda::DescribeDecomposeKConfig(timings[i].config),
                          timings[i].us);
  std::printf("%s (of %zu)\n", line.c_str(), timings.size());
}

// One launch's stamps: per slot, the earliest and the latest non-zero stamp over its CTAs
// (0 when no CTA stamped it), and the clock64 cycles of the routing CTA's epilogue (the
// last routing CTA's), whole and (one-token router CTAs) by sub-phase: columns, groups,
// ranking, weights; and the first routing CTA's whole epilogue (token 0's router).
struct LaunchStamps {
  unsigned long long first[cuda::kTimelineSlots] = {}, last[cuda::kTimelineSlots] = {};
  double epilogue_cycles = 0;
  double first_epilogue_cycles = 0;
  int first_router = -1;                 // the first routing CTA's index (token 0's router), or -1
  double epilogue_phase_cycles[4] = {};  // 0 where a sub-phase was not stamped
};

// The clock64 cycles between the routing CTA's arrival and its end, split at the epilogue
// sub-phase stamps it wrote (a phase it skipped, e.g. groups without groups, counts 0).
void EpiloguePhases(const unsigned long long* c, LaunchStamps& s) {
  const int order[] = {cuda::kStampArrived, cuda::kStampEpiColumns, cuda::kStampEpiGroups,
                       cuda::kStampEpiRanked, cuda::kStampRouted};
  unsigned long long previous = c[2 * cuda::kStampArrived + 1];
  for (int i = 1; i < 5; ++i) {
    if (c[2 * order[i]] == 0) continue;
    const unsigned long long now = c[2 * order[i] + 1];
    s.epilogue_phase_cycles[i - 1] = double(now - previous);
    previous = now;
  }
}

LaunchStamps ReadStamps(const unsigned long long* t, size_t entries) {
  constexpr int kSlots = cuda::kTimelineSlots;
  LaunchStamps s;
  for (size_t cta = 0; cta * kSlots * 2 < entries; ++cta) {
    const unsigned long long* c = t + cta * kSlots * 2;
    for (int slot = 0; slot < cuda::kStampSm; ++slot) {
      const unsigned long long ns = c[2 * slot];
      if (ns == 0) continue;
      s.first[slot] = s.first[slot] ? std::min(s.first[slot], ns) : ns;
      s.last[slot] = std::max(s.last[slot], ns);
    }
    if (c[2 * cuda::kStampRouted] != 0 && c[2 * cuda::kStampArrived] != 0) {
      s.epilogue_cycles = double(c[2 * cuda::kStampRouted + 1] - c[2 * cuda::kStampArrived + 1]);
      if (s.first_router < 0) {
        s.first_router = int(cta);
        s.first_epilogue_cycles = s.epilogue_cycles;
      }
      EpiloguePhases(c, s);
    }
  }
  return s;
}

// The stamps of a graph's launches, each `entries` long (TimelineEntries): CTA k of launch i.
struct LaunchTimelines {
  const unsigned long long* launches;
  size_t entries;
  size_t Ctas() const { return entries / (2 * cuda::kTimelineSlots); }
  const unsigned long long* Cta(int launch, size_t k) const {
    return launches + launch * entries + k * cuda::kTimelineSlots * 2;
  }
};

// A CTA's last time stamp (its end, whichever phase it ended in).
unsigned long long CtaEnd(const unsigned long long* c) {
  unsigned long long end = 0;
  for (int slot = 0; slot < cuda::kStampSm; ++slot) end = std::max(end, c[2 * slot]);
  return end;
}

// Other CTAs on token 0's router's SM while it routes (between its arrival and end
// stamps): of launch `i` itself, of later launches (under PDL they start ~9-37 us
// early, stream their weights, then wait), and of those the ones that started during it
// (streaming beside it). router_cta: that router's index (LaunchStamps::first_router).
// All -1 when launch i has no such router.
struct SmNeighbours {
  int same = -1, later = -1, started = -1;
};
SmNeighbours RouterSmNeighbours(const LaunchTimelines& t, int launch_count, int i, int router_cta) {
  SmNeighbours n;
  if (router_cta < 0) return n;
  const unsigned long long* router = t.Cta(i, router_cta);
  if (router[2 * cuda::kStampSm] == 0) return n;
  n = {0, 0, 0};
  const unsigned long long from = router[2 * cuda::kStampArrived],
                           to = router[2 * cuda::kStampRouted];
  for (int launch = i; launch < launch_count; ++launch)
    for (size_t k = 0; k < t.Ctas(); ++k) {
      const unsigned long long* c = t.Cta(launch, k);
      if (c == router || c[2 * cuda::kStampSm] != router[2 * cuda::kStampSm]) continue;
      const unsigned long long start = c[2 * cuda::kStampStart];
      if (start > to || CtaEnd(c) < from) continue;
      if (launch == i) {
        ++n.same;
      } else {
        ++n.later;
        if (start >= from) ++n.started;
      }
    }
  return n;
}

// The CTA whose partials launch i published last (the one its routers waited for): when it
// started, after the launch's first CTA; how long it took to publish once it could run (from
// its start or launch i-1's end, whichever came later); and how many CTAs of other launches
// ran on its SM meanwhile. A last partial from a CTA that started late waited for an SM; one
// that started on time but ran long shared its SM (or the memory system). All -1 where no
// CTA of launch i published.
struct LastPublisher {
  double start_us = -1, run_us = -1;
  int neighbours = -1;
};
LastPublisher FindLastPublisher(const LaunchTimelines& t, int launch_count, int i,
                                unsigned long long previous_end) {
  const unsigned long long* last = nullptr;
  unsigned long long first_start = 0;
  for (size_t k = 0; k < t.Ctas(); ++k) {
    const unsigned long long* c = t.Cta(i, k);
    const unsigned long long start = c[2 * cuda::kStampStart];
    if (start != 0) first_start = first_start ? std::min(first_start, start) : start;
    if (c[2 * cuda::kStampReduced] != 0 &&
        (last == nullptr || c[2 * cuda::kStampReduced] > last[2 * cuda::kStampReduced]))
      last = c;
  }
  LastPublisher l;
  if (last == nullptr || last[2 * cuda::kStampStart] == 0) return l;
  const unsigned long long from = last[2 * cuda::kStampStart], to = last[2 * cuda::kStampReduced];
  l.start_us = double(from - first_start) / 1e3;
  l.run_us = (double(to) - double(std::max(from, previous_end))) / 1e3;
  l.neighbours = 0;
  for (int launch = 0; launch < launch_count; ++launch) {
    if (launch == i) continue;
    for (size_t k = 0; k < t.Ctas(); ++k) {
      const unsigned long long* c = t.Cta(launch, k);
      if (c[2 * cuda::kStampSm] != last[2 * cuda::kStampSm] || c[2 * cuda::kStampStart] == 0)
        continue;
      if (c[2 * cuda::kStampStart] <= to && CtaEnd(c) >= from) ++l.neighbours;
    }
  }
  return l;
}

double Mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0.0 : sum / double(v.size());
}

// The share of launches with a neighbour that started streaming beside the router.
double Shared(const std::vector<double>& started) {
  size_t any = 0;
  for (double x : started) any += x > 0;
  return started.empty() ? 0.0 : double(any) / double(started.size());
}

struct Shape {
  std::string family;
  int tokens;
};

// The shapes a --filter names in full ("glm4_moe t=14", optionally with the trailing '$'),
// so that the PDL timelines run token counts their default list does not have.
std::vector<Shape> ShapesNamedIn(const std::string& filter) {
  std::vector<Shape> out;
  for (absl::string_view part : absl::StrSplit(filter, ',', absl::SkipEmpty())) {
    absl::ConsumeSuffix(&part, "$");
    const std::vector<absl::string_view> words = absl::StrSplit(part, ' ', absl::SkipEmpty());
    if (words.size() != 2) continue;
    absl::string_view count = words[1];
    int tokens = 0;
    if (!absl::ConsumePrefix(&count, "t=") || !absl::SimpleAtoi(count, &tokens) || tokens < 1 ||
        tokens > kMaxTokens || !FindPreset(words[0]).ok())
      continue;
    out.push_back({std::string(words[0]), tokens});
  }
  return out;
}

// One shape's device buffers: `layers` layers of random weights (normal, sd
// `weight_scale`), the hidden states, one bias serving as router and correction bias, and
// the outputs.
struct ShapeBuffers {
  size_t layer_bytes;
  DeviceBuffer weights, hidden, bias, ids, w;

  RouteArgs Args(int layer) const {
    return {hidden.get(),
            weights.as<char>() + layer_bytes * layer,
            bias.as<float>(),
            bias.as<float>(),
            ids.as<int32_t>(),
            w.as<float>(),
            nullptr};
  }
};

ShapeBuffers MakeShapeBuffers(const RouterSpec& spec, int tokens, int layers, float weight_scale) {
  ShapeBuffers b;
  b.layer_bytes = size_t(spec.experts) * spec.hidden * 2;
  b.weights = Must(DeviceBuffer::Allocate(b.layer_bytes * layers));
  FillRandom(b.weights.get(), size_t(spec.experts) * spec.hidden * layers, DType::kBF16,
             weight_scale, 5);
  b.hidden = Must(DeviceBuffer::Allocate(size_t(tokens) * spec.hidden * 2));
  FillRandom(b.hidden.get(), size_t(tokens) * spec.hidden, DType::kBF16, 1.0f, 6);
  b.bias = Must(DeviceBuffer::Allocate(4 * spec.experts));
  FillRandom(b.bias.get(), spec.experts, DType::kFP32, 0.05f, 7);
  b.ids = Must(DeviceBuffer::Allocate(4 * tokens * spec.top_k));
  b.w = Must(DeviceBuffer::Allocate(4 * tokens * spec.top_k));
  return b;
}

}  // namespace

void PrintTimelines(const cuda::DeviceInfo& info, cudaStream_t stream) {
  std::printf(
      "\nphase timeline of one launch (us from the first CTA's start; median of 20 launches)\n");
  std::printf("%-22s %-34s %8s %10s %9s %9s %9s %10s\n", "shape", "config", "ctas", "mainloop",
              "reduced", "arrived", "routed", "epi_cycles");
  for (auto [family, tokens] : std::vector<Shape>{{"deepseek_v3", 1},
                                                  {"deepseek_v3", 64},
                                                  {"deepseek_v3", 128},
                                                  {"kimi_k2", 128},
                                                  {"qwen3_30b", 1},
                                                  {"mixtral", 1},
                                                  {"kimi_k2", 1}}) {
    const RouterSpec spec = FindPreset(family).value().spec;
    RouteProblem p{spec, tokens, DType::kBF16, DType::kBF16};
    const int layers = LayersFor(size_t(spec.experts) * spec.hidden * 2, 50u << 20, 2, 512);
    const ShapeBuffers b = MakeShapeBuffers(spec, tokens, layers, 0.02f);
    std::vector<cuda::DecomposeKConfig> configs = {
        cuda::ChooseDecomposeKConfig(p, info.sm_count),
        cuda::ChooseDecomposeKConfig(p, info.sm_count, /*allow_polled=*/false)};
    cuda::DecomposeKConfig global = configs[1];
    global.cluster = 0;
    global.k_splits = 8;
    configs.push_back(global);
    if (tokens >= 32) {  // the staged tiles' config (an autotuner candidate)
      const cuda::DecomposeKConfig staged = cuda::ChooseStagedConfig(p, info.sm_count);
      if (cuda::CanRouteDecomposeK(p, staged).ok()) configs.push_back(staged);
    }
    if (configs[0].polled) {  // the heuristic's polled config with routers the other way
      cuda::DecomposeKConfig other = configs[0];
      other.dedicated_routers = !other.dedicated_routers;
      if (cuda::CanRouteDecomposeK(p, other).ok()) configs.push_back(other);
    }
    for (const auto& c : configs) {
      auto ws = Must(DeviceBuffer::Allocate(cuda::DecomposeKWorkspaceBytes(p, c)));
      CHECK_CUDA(cuda::ResetDecomposeKWorkspace(ws.get(), p, c, stream));
      const size_t entries = cuda::TimelineEntries(p, c);
      auto tl = Must(DeviceBuffer::Allocate(entries * 8));
      std::vector<unsigned long long> host(entries);
      std::vector<double> phase[4], epilogue_cycles;
      for (int rep = 0; rep < 20; ++rep) {
        CHECK_CUDA(cudaMemsetAsync(tl.get(), 0, entries * 8, stream));
        CHECK_CUDA(cuda::LaunchDecomposeKRouterWithTimeline(p, b.Args(rep % layers), c, ws.get(),
                                                            ws.bytes(), stream, false,
                                                            tl.as<unsigned long long>()));
        CHECK_CUDA(
            cudaMemcpyAsync(host.data(), tl.get(), entries * 8, cudaMemcpyDeviceToHost, stream));
        CHECK_CUDA(cudaStreamSynchronize(stream));
        const LaunchStamps s = ReadStamps(host.data(), entries);
        if (s.epilogue_cycles > 0) epilogue_cycles.push_back(s.epilogue_cycles);
        const unsigned long long start = s.first[cuda::kStampStart];
        for (int k = cuda::kStampMainloop; k <= cuda::kStampRouted; ++k)
          phase[k - 1].push_back(s.last[k] ? (s.last[k] - start) / 1000.0 : 0.0);
      }
      std::printf("%-22s %-34s %8zu %10.2f %9.2f %9.2f %9.2f %10.0f\n",
                  absl::StrFormat("%s t=%d", family, tokens).c_str(),
                  cuda::DescribeDecomposeKConfig(c).c_str(), entries / (2 * cuda::kTimelineSlots),
                  Median(phase[0]), Median(phase[1]), Median(phase[2]), Median(phase[3]),
                  Median(epilogue_cycles));
    }
  }
}

void PrintPdlTimelines(const cuda::DeviceInfo& info, cudaStream_t stream, size_t l2_bytes,
                       const std::string& filter, const std::vector<int>& sweep_splits,
                       bool tuner_candidates) {
  constexpr int kLaunches = 32, kReplays = 10;
  std::printf(
      "\nPDL chain: launch i's phases in us after launch i-1's last routing CTA stamped its end\n"
      "(a graph of %d launches with PDL over rotating layers; median over launches 2.. of %d "
      "replays).\nstart: its first CTA began (negative: during launch i-1); waited: a "
      "dedicated router passed griddepcontrol.wait; mainloop / published: the last CTA's; "
      "routed: the call's\nlatency as the graph sees it; epi_cycles split into the one-token "
      "epilogue's sub-phases: columns / groups / ranking / weights (0: not a phase there); "
      "first ml / arr / rt: the first CTA's mainloop, arrival and end of routing (the spread "
      "behind the last's); epi0: the first routing CTA's epilogue cycles (token 0's router)\n",
      kLaunches, kReplays);
  std::printf(
      "sm0 same/later/started: CTAs of the same launch / of later ones / of those, started "
      "during it, on token 0's router's SM while it routes (means over launches); shr: "
      "launches with one started during it; epi0 al/shr: epi0's median without / with\n"
      "last pub st/run/nb: the CTA that published last: its start after the launch's first "
      "CTA's, its time to publish once it could run (us, medians), CTAs of other launches "
      "on its SM meanwhile (mean)\n");
  std::printf(
      "%-20s %-44s %7s %7s %9s %9s %8s %7s %10s %9s  %-24s %8s %9s %8s %6s  %14s %4s  %13s  "
      "%18s\n",
      "shape", "config", "start", "waited", "mainloop", "published", "arrived", "routed",
      "epi_cycles", "graph_us", "cols/groups/rank/weights", "first ml", "first arr", "first rt",
      "epi0", "sm0 s/l/st", "shr", "epi0 al/shr", "last pub st/run/nb");
  std::vector<Shape> shapes = {{"deepseek_v3", 1},   {"deepseek_v3", 2},      {"deepseek_v3", 4},
                               {"deepseek_v3", 8},   {"deepseek_v3", 16},     {"deepseek_v3", 64},
                               {"deepseek_v3", 128}, {"kimi_k2", 1},          {"kimi_k2", 2},
                               {"kimi_k2", 4},       {"kimi_k2", 8},          {"kimi_k2", 16},
                               {"kimi_k2", 64},      {"kimi_k2", 128},        {"glm4_moe", 16},
                               {"glm4_moe", 128},    {"llama4_maverick", 16}, {"qwen3_30b", 1},
                               {"mixtral", 1},       {"gpt_oss_20b", 1},      {"gpt_oss_120b", 1}};
  for (const Shape& named : ShapesNamedIn(filter)) {
    const bool listed = std::any_of(shapes.begin(), shapes.end(), [&](const Shape& s) {
      return s.family == named.family && s.tokens == named.tokens;
    });
    if (!listed) shapes.push_back(named);
  }
  for (const auto& [family, tokens] : shapes) {
    const std::string shape = absl::StrFormat("%s t=%d", family, tokens);
    if (!Selected(shape, filter)) continue;
    const RouterSpec spec = FindPreset(family).value().spec;
    RouteProblem p{spec, tokens, DType::kBF16, DType::kBF16};
    const size_t layer_bytes = size_t(spec.experts) * spec.hidden * 2;
    const int layers = LayersFor(layer_bytes, l2_bytes, 16, 2048);
    const ShapeBuffers b =
        MakeShapeBuffers(spec, tokens, layers, 1.0f / std::sqrt(float(spec.hidden)));
    const RouteArgs args = b.Args(0);
    cuda::AutotuneOptions tune;
    tune.enabled = true;
    tune.pdl = true;
    tune.rotate_layers = layers;
    tune.layer_stride_bytes = layer_bytes;
    std::vector<cuda::CandidateTiming> timings;
    if (tuner_candidates) tune.timings = &timings;
    auto tuned = Must(cuda::CudaRouterPlan::Create(p, info.sm_count, tune, &args, stream));
    if (tuner_candidates) PrintFastestCandidates(shape, timings);
    std::vector<std::pair<std::string, cuda::DecomposeKConfig>> configs = {
        {"tuned " + cuda::DescribeDecomposeKConfig(tuned->config()), tuned->config()}};
    const cuda::DecomposeKConfig heuristic = cuda::ChooseDecomposeKConfig(p, info.sm_count);
    if (cuda::DescribeDecomposeKConfig(heuristic) !=
        cuda::DescribeDecomposeKConfig(tuned->config()))
      configs.emplace_back("heur. " + cuda::DescribeDecomposeKConfig(heuristic), heuristic);
    if (tuner_candidates) {
      // The fastest candidate of each kernel the tuner timed (cluster, polled, staged with
      // and without router pairs, global) beside the winner, so their phases can be
      // compared in one run.
      std::sort(timings.begin(), timings.end(),
                [](const auto& a, const auto& b) { return a.us < b.us; });
      auto kernel_of = [](const cuda::DecomposeKConfig& c) {
        return c.route_after_gemm      ? 5
               : c.cluster             ? 0
               : c.staged_router_pairs ? 4
               : c.staged              ? 1
               : c.polled              ? 2
                                       : 3;
      };
      bool timed[6] = {};
      timed[kernel_of(tuned->config())] = true;
      for (const cuda::CandidateTiming& t : timings) {
        if (timed[kernel_of(t.config)]) continue;
        timed[kernel_of(t.config)] = true;
        configs.emplace_back("cand. " + cuda::DescribeDecomposeKConfig(t.config), t.config);
      }
    }
    for (int splits : heuristic.polled ? sweep_splits : std::vector<int>{}) {
      // Plain and cooperative; each also one CTA per SM (polled) or with router pairs
      // (staged).
      for (int launch = 0; launch < 4; ++launch) {
        cuda::DecomposeKConfig c = heuristic;
        c.k_splits = splits;
        // Whole stages a split: counts that would leave the last split empty are skipped.
        if (c.staged) c = cuda::ChooseStagedConfig(p, info.sm_count, splits);
        c.pdl_cooperative = launch % 2 == 1;
        if (c.staged)
          c.staged_router_pairs = launch / 2 == 1;
        else
          c.pdl_one_cta_per_sm = launch / 2 == 1;
        if (c.k_splits != splits || !cuda::CanRouteDecomposeK(p, c).ok()) continue;
        configs.emplace_back("sweep " + cuda::DescribeDecomposeKConfig(c), c);
      }
    }
    for (const auto& named : configs) {
      // Not a structured binding: C++17 lets no lambda capture one (the graph's below).
      const std::string& name = named.first;
      const cuda::DecomposeKConfig& c = named.second;
      if (c.route_after_gemm) {  // two kernels, neither stamps: the tuner's time only
        std::printf("%-20s %-44s (no timeline: a GEMM, then the epilogue kernel)\n", shape.c_str(),
                    name.c_str());
        continue;
      }
      auto ws = Must(DeviceBuffer::Allocate(cuda::DecomposeKWorkspaceBytes(p, c)));
      CHECK_CUDA(cuda::ResetDecomposeKWorkspace(ws.get(), p, c, stream));
      const size_t entries = cuda::TimelineEntries(p, c);
      auto tl = Must(DeviceBuffer::Allocate(entries * 8 * kLaunches));
      const CudaGraphExec exec = CaptureWarmGraph(kLaunches, stream, [&](int i, cudaStream_t s) {
        CHECK_CUDA(cuda::LaunchDecomposeKRouterWithTimeline(
            p, b.Args(i % layers), c, ws.get(), ws.bytes(), s, /*pdl=*/true,
            tl.as<unsigned long long>() + i * entries));
      });
      std::vector<unsigned long long> host(entries * kLaunches);
      std::vector<double> phase[6], epilogue_cycles, graph_us, epilogue_phases[4], first_ml,
          first_arrived, first_routed, first_epilogue_cycles, sm_same, sm_later, sm_started;
      std::vector<double> sm_epilogue_alone, sm_epilogue_shared;  // epi0 by neighbours
      std::vector<double> last_start, last_run, last_neighbours;
      for (int r = 0; r < kReplays; ++r) {
        CHECK_CUDA(cudaMemsetAsync(tl.get(), 0, entries * 8 * kLaunches, stream));
        CHECK_CUDA(cudaGraphLaunch(exec.get(), stream));
        CHECK_CUDA(cudaMemcpyAsync(host.data(), tl.get(), host.size() * 8, cudaMemcpyDeviceToHost,
                                   stream));
        CHECK_CUDA(cudaStreamSynchronize(stream));
        const LaunchTimelines timelines{host.data(), entries};
        std::vector<LaunchStamps> s;
        s.reserve(kLaunches);
        for (int i = 0; i < kLaunches; ++i) s.push_back(ReadStamps(&host[i * entries], entries));
        for (int i = 2; i < kLaunches; ++i) {
          const double end = double(s[i - 1].last[cuda::kStampRouted]);
          auto after = [&](unsigned long long ns) { return ns ? (double(ns) - end) / 1e3 : 0.0; };
          phase[0].push_back(after(s[i].first[cuda::kStampStart]));
          phase[1].push_back(after(s[i].first[cuda::kStampWaited]));
          phase[2].push_back(after(s[i].last[cuda::kStampMainloop]));
          phase[3].push_back(after(s[i].last[cuda::kStampReduced]));
          phase[4].push_back(after(s[i].last[cuda::kStampArrived]));
          phase[5].push_back(after(s[i].last[cuda::kStampRouted]));
          first_ml.push_back(after(s[i].first[cuda::kStampMainloop]));
          first_arrived.push_back(after(s[i].first[cuda::kStampArrived]));
          first_routed.push_back(after(s[i].first[cuda::kStampRouted]));
          if (s[i].first_epilogue_cycles > 0)
            first_epilogue_cycles.push_back(s[i].first_epilogue_cycles);
          if (const SmNeighbours n = RouterSmNeighbours(timelines, kLaunches, i, s[i].first_router);
              n.same >= 0) {
            sm_same.push_back(n.same);
            sm_later.push_back(n.later);
            sm_started.push_back(n.started);
            (n.started == 0 ? sm_epilogue_alone : sm_epilogue_shared)
                .push_back(s[i].first_epilogue_cycles);
          }
          if (const LastPublisher l =
                  FindLastPublisher(timelines, kLaunches, i, s[i - 1].last[cuda::kStampRouted]);
              l.neighbours >= 0) {
            last_start.push_back(l.start_us);
            last_run.push_back(l.run_us);
            last_neighbours.push_back(l.neighbours);
          }
          if (s[i].epilogue_cycles > 0) {
            epilogue_cycles.push_back(s[i].epilogue_cycles);
            for (int k = 0; k < 4; ++k) epilogue_phases[k].push_back(s[i].epilogue_phase_cycles[k]);
          }
        }
        graph_us.push_back((double(s[kLaunches - 1].last[cuda::kStampRouted]) -
                            double(s[1].last[cuda::kStampRouted])) /
                           1e3 / (kLaunches - 2));
      }
      std::printf(
          "%-20s %-44s %7.2f %7.2f %9.2f %9.2f %8.2f %7.2f %10.0f %9.2f  %-24s %8.2f %9.2f %8.2f "
          "%6.0f  %4.1f/%4.1f/%4.1f %3.0f%%  %6.0f/%6.0f  %6.2f/%5.2f/%4.1f\n",
          shape.c_str(), name.c_str(), Median(phase[0]), Median(phase[1]), Median(phase[2]),
          Median(phase[3]), Median(phase[4]), Median(phase[5]), Median(epilogue_cycles),
          Median(graph_us),
          absl::StrFormat("%.0f/%.0f/%.0f/%.0f", Median(epilogue_phases[0]),
                          Median(epilogue_phases[1]), Median(epilogue_phases[2]),
                          Median(epilogue_phases[3]))
              .c_str(),
          Median(first_ml), Median(first_arrived), Median(first_routed),
          Median(first_epilogue_cycles), Mean(sm_same), Mean(sm_later), Mean(sm_started),
          100.0 * Shared(sm_started), Median(sm_epilogue_alone), Median(sm_epilogue_shared),
          Median(last_start), Median(last_run), Mean(last_neighbours));
    }
  }
}

}  // namespace moe::bench
