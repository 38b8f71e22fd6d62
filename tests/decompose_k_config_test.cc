// The fused kernel's config heuristic and config rules on described devices, without a GPU
// (label cpu): for every shape the kernels take and devices from a one-SM slice to a
// Blackwell-size part, with and without thread-block clusters, the heuristic's configs
// pass its own rules, so a model loads on any device and MIG slice; then the picks the
// heuristic makes on an H100 / H200 (132 SMs) and why (bench/NOTES.md has the timings),
// and the rules' refusals. The configs' results and speed are gpu_router_test's, on a
// device.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/config_description.h"
#include "kernels/cuda_router.h"
#include "kernels/decompose_k_gemm_tile.h"
#include "kernels/decompose_k_router.h"
#include "kernels/decompose_k_staged.h"
#include "kernels/launch_attributes.h"
#include "kernels/router_spec.h"

namespace moe {
namespace {

// The device most expectations below were measured on: an H100 / H200 SXM (132 SMs,
// thread-block clusters), with cuBLASLt loadable.
constexpr cuda::DecomposeKDevice kSxm{132, true, true};

// SM counts: a single SM, H100 MIG slices (1g: 16, 2g: 32, 3g: 60, 4g: 64), an L4 (58),
// an A100 (108), an H100 PCIe (114), an H100/H200 SXM (132), a B200 (148), and odd counts.
const std::vector<int>& DeviceSmCounts() {
  static const std::vector<int> sms = {1, 2, 3, 7, 16, 32, 58, 60, 64, 108, 114, 132, 148};
  return sms;
}

const std::vector<int>& TokenCounts() {
  static const std::vector<int> tokens = {1,  2,   3,   4,   5,   7,   8,   9,   12, 15,
                                          16, 17,  24,  31,  32,  33,  48,  63,  64, 65,
                                          96, 127, 128, 129, 160, 192, 200, 255, 256};
  return tokens;
}

struct DTypes {
  DType hidden, weight;
};
const std::vector<DTypes>& DTypePairs() {
  static const std::vector<DTypes> pairs = {{DType::kBF16, DType::kBF16},
                                            {DType::kFP16, DType::kFP16},
                                            {DType::kFP32, DType::kFP32},
                                            {DType::kBF16, DType::kFP32}};
  return pairs;
}

std::string Where(const RouteProblem& p, const cuda::DecomposeKDevice& d) {
  return absl::StrCat(p.spec.family, " experts=", p.spec.experts, " hidden=", p.spec.hidden,
                      " top_k=", p.spec.top_k, " t=", p.tokens, " dtypes=", int(p.hidden_dtype),
                      "/", int(p.weight_dtype), " sms=", d.sm_count, " clusters=", d.clusters);
}

std::string Describe(const cuda::DecomposeKConfig& c) {
  return absl::StrCat("mainloop=", int(c.mainloop), " token_tiles=", c.token_tiles,
                      " k_splits=", c.k_splits, " cluster=", c.cluster, " polled=", c.polled,
                      " dedicated=", c.dedicated_routers, " staged=", c.staged,
                      " pairs=", c.staged_router_pairs, " after_gemm=", c.route_after_gemm,
                      " gemm_tile=", c.gemm_tile_m, "x", c.gemm_tile);
}

// The heuristic's configs for `p` on `d` (the default, the autotuner's family without the
// polled reduction, and the polled rule's uncut split count) all pass the config rules,
// and the workspace they ask for holds its zeroed prefix.
void ExpectValidConfigs(const RouteProblem& p, const cuda::DecomposeKDevice& d) {
  const cuda::DecomposeKConfig configs[] = {
      cuda::ChooseDecomposeKConfigFor(p, d),
      cuda::ChooseDecomposeKConfigFor(p, d, /*allow_polled=*/false),
      cuda::ChooseDecomposeKConfigFor(p, d, /*allow_polled=*/true, /*cut_decode_splits=*/false,
                                      /*allow_rank_zero_routes=*/false),
  };
  for (const cuda::DecomposeKConfig& c : configs) {
    const absl::Status status = cuda::CanRouteDecomposeKOn(p, c, d);
    ASSERT_TRUE(status.ok()) << Where(p, d) << ": " << Describe(c) << ": " << status;
    if (!d.clusters) {
      EXPECT_EQ(c.cluster, 0) << Where(p, d) << ": " << Describe(c);
    }
    const size_t bytes = cuda::DecomposeKWorkspaceBytes(p, c);
    EXPECT_GT(bytes, 0u) << Where(p, d);
    EXPECT_LE(cuda::DecomposeKZeroedBytes(p, c), bytes) << Where(p, d);
  }
}

void ExpectValidConfigsOnEveryDevice(const RouterSpec& spec) {
  for (const DTypes& dt : DTypePairs()) {
    for (int tokens : TokenCounts()) {
      const RouteProblem p{spec, tokens, dt.hidden, dt.weight};
      ASSERT_TRUE(CheckRouteProblem(p).ok()) << Where(p, {});
      for (int sms : DeviceSmCounts()) {
        for (bool clusters : {false, true}) ExpectValidConfigs(p, {sms, clusters});
      }
    }
  }
}

TEST(DecomposeKConfig, HeuristicConfigsPassTheRulesForEveryFamilyOnEveryDevice) {
  for (const FamilyPreset& preset : FamilyPresets()) {
    SCOPED_TRACE(preset.name);
    ExpectValidConfigsOnEveryDevice(preset.spec);
  }
}

// Ungrouped routers across the whole range the kernels take: 1..512 experts (the
// experts-per-lane widths and their edges), hidden sizes from one 8-element step to 16384.
TEST(DecomposeKConfig, HeuristicConfigsPassTheRulesAcrossTheShapeRange) {
  for (int experts : {1, 2, 8, 16, 31, 32, 33, 64, 65, 100, 128, 129, 160, 256, 257, 384, 512}) {
    for (int hidden : {8, 24, 64, 1000, 2048, 2880, 4096, 5120, 7168, 8192, 16384}) {
      RouterSpec spec;
      spec.family = "sweep";
      spec.experts = experts;
      spec.hidden = hidden;
      spec.top_k = std::min(experts, 8);
      ASSERT_TRUE(ValidateSpec(spec).ok()) << experts << " x " << hidden;
      ExpectValidConfigsOnEveryDevice(spec);
    }
  }
}

// The words operators read in the server's log, metrics and ModelInfo (and C ABI callers
// from moe_route_config / moe_gemm_config), one per kind of config: the mainloop, token
// tiles, splits, reduction and launch options, or the GEMM (of a two-launch route).
TEST(DecomposeKConfig, DescriptionsNameTheReductionAndLaunchOptions) {
  cuda::DecomposeKConfig polled;
  polled.k_splits = 8;
  polled.polled = polled.pdl_cooperative = polled.dedicated_routers = true;
  polled.pdl_one_cta_per_sm = true;
  EXPECT_EQ(cuda::DescribeDecomposeKConfig(polled), "mma nt=1 S=8 polled coop ded 1cta");
  cuda::DecomposeKConfig staged;
  staged.k_splits = 4;
  staged.polled = staged.staged = staged.staged_router_pairs = true;
  EXPECT_EQ(cuda::DescribeDecomposeKConfig(staged), "mma nt=1 S=4 staged pairs");
  cuda::DecomposeKConfig cluster;
  cluster.token_tiles = 2;
  cluster.k_splits = cluster.cluster = 4;
  EXPECT_EQ(cuda::DescribeDecomposeKConfig(cluster), "mma nt=2 S=4 cluster");
  cuda::DecomposeKConfig counter;
  counter.mainloop = cuda::Mainloop::kFma;
  counter.k_splits = 16;
  EXPECT_EQ(cuda::DescribeDecomposeKConfig(counter), "fma nt=1 S=16 counter");
  cuda::DecomposeKConfig tile;
  tile.route_after_gemm = tile.gemm_tma = true;
  tile.gemm_tile = 128;
  tile.gemm_tile_m = 64;
  tile.k_splits = 2;
  EXPECT_EQ(cuda::DescribeDecomposeKConfig(tile), "gemm tile=128x64 S=2 tma + epilogue kernel");
  cuda::DecomposeKConfig lt;
  lt.route_after_gemm = lt.gemm_cublas = true;
  EXPECT_EQ(cuda::DescribeDecomposeKConfig(lt), "cublasLt gemm + epilogue kernel");
  // The general GEMM's own configs: the same GEMMs without the epilogue kernel.
  tile.route_after_gemm = false;
  EXPECT_EQ(cuda::DescribeDecomposeKConfig(tile), "gemm tile=128x64 S=2 tma");
  lt.route_after_gemm = false;
  EXPECT_EQ(cuda::DescribeDecomposeKConfig(lt), "cublasLt gemm");
}

// The autotuner's candidates for every family on several device sizes, with and without
// PDL: at least one, each one the device can run, none twice (nor two with one description),
// and the heuristic's own config
// (its launch flags as the tuner varies them) among them, so a tuned plan is never one the
// heuristic beats.
TEST(DecomposeKConfig, AutotuneCandidatesAreValidDistinctAndHoldTheHeuristicsConfig) {
  for (const FamilyPreset& preset : FamilyPresets()) {
    for (int tokens : {1, 2, 4, 8, 9, 16, 32, 64, 128, 256}) {
      const RouteProblem p{preset.spec, tokens, DType::kBF16, DType::kBF16};
      for (int sms : {16, 60, 114, 132, 148}) {
        for (bool clusters : {false, true}) {
          const cuda::DecomposeKDevice d{sms, clusters};
          for (bool pdl : {false, true}) {
            const std::string where = absl::StrCat(Where(p, d), " pdl=", pdl);
            const std::vector<cuda::DecomposeKConfig> candidates =
                cuda::AutotuneCandidates(p, d, pdl);
            ASSERT_FALSE(candidates.empty()) << where;
            for (size_t i = 0; i < candidates.size(); ++i) {
              EXPECT_TRUE(cuda::CanRouteDecomposeKOn(p, candidates[i], d).ok())
                  << where << ": " << Describe(candidates[i]);
              for (size_t j = 0; j < i; ++j) {
                EXPECT_FALSE(cuda::SameTunedConfig(candidates[i], candidates[j]))
                    << where << ": " << Describe(candidates[i]) << " twice";
                // router_bench merges timings by the text, and operators tell configs by it.
                EXPECT_NE(cuda::DescribeDecomposeKConfig(candidates[i]),
                          cuda::DescribeDecomposeKConfig(candidates[j]))
                    << where << ": " << Describe(candidates[i]) << " and "
                    << Describe(candidates[j]);
              }
            }
            cuda::DecomposeKConfig heuristic = cuda::ChooseDecomposeKConfigFor(p, d);
            heuristic.pdl_cooperative = false;
            heuristic.pdl_one_cta_per_sm = false;
            bool found = false;
            for (const cuda::DecomposeKConfig& c : candidates)
              found = found || cuda::SameTunedConfig(c, heuristic);
            EXPECT_TRUE(found) << where << ": the heuristic's " << Describe(heuristic);
          }
        }
      }
    }
  }
}

// The server makes one plan per power-of-two token bucket and launches its config, on its
// workspace, for every smaller batch too (server/cuda_backend.cc). So any config a bucket
// may get (the heuristic's, or whichever candidate the autotuner picks) must pass the
// rules at every token count up to the bucket, with no more workspace, nor zeroed prefix,
// than the bucket's.
TEST(DecomposeKConfig, ABucketsConfigsServeEverySmallerTokenCount) {
  for (const FamilyPreset& preset : FamilyPresets()) {
    for (int bucket = 1; bucket <= kMaxTokens; bucket *= 2) {
      const RouteProblem pb{preset.spec, bucket, DType::kBF16, DType::kBF16};
      for (const cuda::DecomposeKDevice& d :
           {kSxm, cuda::DecomposeKDevice{114, true}, cuda::DecomposeKDevice{60, false},
            cuda::DecomposeKDevice{16, true}}) {
        std::vector<cuda::DecomposeKConfig> configs = cuda::AutotuneCandidates(pb, d, true);
        configs.push_back(cuda::ChooseDecomposeKConfigFor(pb, d));
        for (const cuda::DecomposeKConfig& c : configs) {
          const size_t bytes = cuda::DecomposeKWorkspaceBytes(pb, c);
          const size_t zeroed = cuda::DecomposeKZeroedBytes(pb, c);
          for (int tokens = 1; tokens < bucket; ++tokens) {
            const RouteProblem p{preset.spec, tokens, DType::kBF16, DType::kBF16};
            const absl::Status status = cuda::CanRouteDecomposeKOn(p, c, d);
            ASSERT_TRUE(status.ok())
                << Where(p, d) << " bucket=" << bucket << ": " << Describe(c) << ": " << status;
            EXPECT_LE(cuda::DecomposeKWorkspaceBytes(p, c), bytes) << Where(p, d) << Describe(c);
            EXPECT_LE(cuda::DecomposeKZeroedBytes(p, c), zeroed) << Where(p, d) << Describe(c);
          }
        }
      }
    }
  }
}

// The general GEMM's configs across its range (M up to 1024, N up to 4096, K up to 131072)
// on every device size: the staged-tile kernel's split CTAs all fit the SMs at once (they
// meet at a barrier, so the launch is cooperative: a grid that cannot be resident would be
// refused), no split is empty; the router machinery's configs use no cluster or polled
// reduction (the GEMM has no router CTAs) and splits within the rules.
TEST(DecomposeKConfig, GemmConfigsFitEveryDevice) {
  for (int m : {1, 8, 16, 17, 64, 100, 128, 1024}) {
    for (int n : {1, 16, 64, 128, 500, 4096}) {
      for (int k : {8, 64, 8192, 32768, 131072}) {
        for (DType dtype : {DType::kBF16, DType::kFP16, DType::kFP32}) {
          const cuda::GemmProblem p{m, n, k, dtype};
          ASSERT_TRUE(cuda::CanGemmDecomposeK(p).ok());
          for (int sms : DeviceSmCounts()) {
            for (bool tma : {false, true}) {
              const cuda::DecomposeKConfig c =
                  cuda::ChooseGemmConfig(p, cuda::GemmDevice{sms, tma});
              const std::string where = absl::StrCat(m, "x", n, "x", k, " dtype=", int(dtype),
                                                     " sms=", sms, " tma=", tma);
              EXPECT_GT(cuda::GemmWorkspaceBytes(p, c), 0u) << where;
              EXPECT_TRUE(c.cluster == 0 && !c.polled) << where << ": " << Describe(c);
              EXPECT_EQ(c.gemm_cublas, cuda::GemmTakesCublas(p)) << where;
              if (c.gemm_cublas) {
                EXPECT_EQ(c.gemm_tile, 0) << where;
                // The Decompose-K config stays available to tests and benchmarks.
                EXPECT_FALSE(
                    cuda::ChooseGemmConfig(p, cuda::GemmDevice{sms, tma}, /*allow_cublas=*/false)
                        .gemm_cublas)
                    << where;
              } else if (c.gemm_tile != 0) {
                ASSERT_NE(dtype, DType::kFP32) << where;
                cuda::TileGemmShape shape{m, n, k, c.gemm_tile, c.k_splits};
                shape.tile_m = c.gemm_tile_m;
                // The tiles the kernels have: 64 x 64, 128 x 128, 64 rows of A x 128 of B, and
                // the few-row 16 x 16 and 32 x 32 (TMA only).
                EXPECT_TRUE(c.gemm_tile_m == 0 || (c.gemm_tile == 128 && c.gemm_tile_m == 64))
                    << where << ": " << Describe(c);
                EXPECT_TRUE(c.gemm_tile >= 64 || (tma && c.gemm_tile_m == 0))
                    << where << ": " << Describe(c);
                EXPECT_EQ(c.gemm_tma, tma) << where;
                EXPECT_GE(c.k_splits, 1) << where;
                EXPECT_LE(c.k_splits, (k + 63) / 64) << where;  // a 64-wide stage a split at least
                if (c.k_splits > 1) {
                  EXPECT_LE(cuda::TileGemmCtas(shape), sms) << where;
                }
              } else {
                EXPECT_TRUE(c.k_splits >= 1 && c.k_splits <= 4096) << where << ": " << Describe(c);
              }
            }
          }
        }
      }
    }
  }
}

// The staged-tile GEMM's tiles as the H100 runs measured them (bench/RESULTS.md session
// 54, 132 SMs): 64 rows of A by 128 of B at 128 x 128 past K = 32768 (two tiles, 64 splits:
// 128 CTAs), 64 x 64 tiles at K <= 32768 and wherever A or B has at most 64 rows.
TEST(DecomposeKConfig, GemmHeuristicTakesTheTallTileForLargeKPastSixtyFourRows) {
  for (int k : {65536, 131072}) {
    const cuda::DecomposeKConfig c = cuda::ChooseGemmConfig({128, 128, k, DType::kBF16}, 132);
    EXPECT_EQ(c.gemm_tile, 128) << k;
    EXPECT_EQ(c.gemm_tile_m, 64) << k;
    EXPECT_EQ(c.k_splits, 64) << k;
  }
  for (const cuda::GemmProblem& p : {cuda::GemmProblem{128, 128, 8192, DType::kBF16},
                                     cuda::GemmProblem{128, 128, 32768, DType::kBF16},
                                     cuda::GemmProblem{64, 64, 131072, DType::kBF16},
                                     cuda::GemmProblem{64, 500, 131072, DType::kFP16}}) {
    const cuda::DecomposeKConfig c = cuda::ChooseGemmConfig(p, 132);
    EXPECT_EQ(c.gemm_tile, 64) << p.m << "x" << p.n << "x" << p.k;
    EXPECT_EQ(c.gemm_tile_m, 0) << p.m << "x" << p.n << "x" << p.k;
  }
}

// Which GEMMs of at most 16 rows of A take the staged tiles on a device without the TMA
// (no few-row tiles), as the H100 runs measured them (bench/RESULTS.md session 55): 9-16
// rows up to K = 65536; the router kernels past that K, at 8 rows or fewer, and for fp32
// (no tensor-core tile kernel).
TEST(DecomposeKConfig, GemmHeuristicTakesTheTilesAtNineToSixteenRowsUpToSixtyFourKOfK) {
  struct Case {
    cuda::GemmProblem p;
    int tile;  // 64: the staged 64-tiles; 0: the router kernels
  };
  for (const Case& c :
       {Case{{16, 16, 8192, DType::kBF16}, 64}, Case{{16, 16, 65536, DType::kBF16}, 64},
        Case{{9, 128, 65536, DType::kFP16}, 64}, Case{{16, 1024, 32768, DType::kBF16}, 64},
        Case{{17, 16, 131072, DType::kBF16}, 64}, Case{{16, 16, 131072, DType::kBF16}, 0},
        Case{{16, 16, 65544, DType::kBF16}, 0}, Case{{8, 8, 65536, DType::kBF16}, 0},
        Case{{1, 4096, 8192, DType::kFP16}, 0}, Case{{16, 16, 8192, DType::kFP32}, 0}}) {
    EXPECT_EQ(
        cuda::ChooseGemmConfig(c.p, cuda::GemmDevice{132, false}, /*allow_cublas=*/false).gemm_tile,
        c.tile)
        << c.p.m << "x" << c.p.n << "x" << c.p.k << " dtype=" << int(c.p.dtype);
  }
}

// Where the TMA runs, the few-row tiles as the H100 runs measured them (bench/RESULTS.md
// session 57, ChooseFewRowGemmTile): 16-tiles where they make one output tile, or two or
// three up to K = 65536; 32-tiles from K = 65536 where the smaller operand has 9-32 rows
// and the larger at most 32 or 65-256; otherwise what a device without the TMA takes
// (64-tiles, the router kernels).
TEST(DecomposeKConfig, GemmHeuristicTakesTheFewRowTilesWhereTheTmaRuns) {
  struct Case {
    cuda::GemmProblem p;
    int tile;  // 16, 32 or 64: the staged tiles of that edge; 0: the router kernels
  };
  for (const Case& c :
       {Case{{16, 16, 8192, DType::kBF16}, 16},   Case{{16, 16, 131072, DType::kBF16}, 16},
        Case{{1, 16, 131072, DType::kBF16}, 16},  Case{{8, 8, 65536, DType::kFP16}, 16},
        Case{{12, 40, 65536, DType::kBF16}, 16},  Case{{1, 1, 8, DType::kBF16}, 16},
        Case{{2, 40, 131072, DType::kBF16}, 0},   Case{{16, 64, 65536, DType::kBF16}, 64},
        Case{{9, 100, 131072, DType::kFP16}, 32}, Case{{24, 24, 131072, DType::kBF16}, 32},
        Case{{48, 16, 8192, DType::kFP16}, 16},   Case{{16, 16, 8192, DType::kFP32}, 0},
        Case{{32, 32, 65536, DType::kBF16}, 32},  Case{{32, 32, 131072, DType::kBF16}, 32},
        Case{{16, 128, 65536, DType::kBF16}, 32}, Case{{256, 16, 65536, DType::kFP16}, 32},
        Case{{32, 32, 32768, DType::kBF16}, 64},  Case{{64, 64, 131072, DType::kBF16}, 64},
        Case{{16, 512, 32768, DType::kBF16}, 64}, Case{{4, 256, 16384, DType::kBF16}, 0},
        Case{{8, 256, 65536, DType::kBF16}, 0},   Case{{1, 1024, 8192, DType::kBF16}, 0}}) {
    const std::string where =
        absl::StrCat(c.p.m, "x", c.p.n, "x", c.p.k, " dtype=", int(c.p.dtype));
    const cuda::DecomposeKConfig config =
        cuda::ChooseGemmConfig(c.p, cuda::GemmDevice{132, true}, /*allow_cublas=*/false);
    EXPECT_EQ(config.gemm_tile, c.tile) << where;
    if (config.gemm_tile != 0) {
      EXPECT_TRUE(config.gemm_tma) << where;
    }
  }
  // One output tile: a split a SM as the 64-tiles (128 of 2048 stages at 16 x 16 x 131072).
  EXPECT_EQ(
      cuda::ChooseGemmConfig({16, 16, 131072, DType::kBF16}, cuda::GemmDevice{132, true}).k_splits,
      128);
}

// Which GEMMs go to cuBLASLt, as the H100 runs measured them (GemmTakesCublas, bench/
// RESULTS.md session 56): one operand at 512 rows or more against 16 or more of the other;
// both at 128 or more with one at 256 or more; fewer than 16 rows against 2048 or more, or
// against 1024 or more holding 32 MiB or more. The skinny shapes stay Decompose-K,
// 128 x 128 at every K among them.
TEST(DecomposeKConfig, GemmHeuristicHandsTheShapesPastTheSkinnyOnesToCublas) {
  struct Case {
    cuda::GemmProblem p;
    bool cublas;
  };
  for (const Case& c : {Case{{16, 512, 32768, DType::kBF16}, true},
                        Case{{1024, 16, 8192, DType::kBF16}, true},
                        Case{{64, 1024, 8192, DType::kFP16}, true},
                        Case{{512, 64, 32768, DType::kBF16}, true},
                        Case{{128, 256, 7168, DType::kBF16}, true},
                        Case{{256, 128, 8192, DType::kFP16}, true},
                        Case{{1024, 4096, 8, DType::kFP32}, true},
                        Case{{1, 4096, 2048, DType::kBF16}, true},
                        Case{{1, 1024, 32768, DType::kBF16}, true},
                        Case{{1, 1024, 8192, DType::kFP32}, true},
                        Case{{8, 1024, 65536, DType::kBF16}, true},
                        Case{{1, 1024, 8192, DType::kBF16}, false},
                        Case{{15, 1024, 8192, DType::kBF16}, false},
                        Case{{15, 2047, 8192, DType::kBF16}, false},
                        Case{{128, 128, 131072, DType::kBF16}, false},
                        Case{{127, 511, 131072, DType::kBF16}, false},
                        Case{{16, 256, 65536, DType::kBF16}, false},
                        Case{{64, 256, 16384, DType::kBF16}, false},
                        Case{{16, 128, 65536, DType::kBF16}, false},
                        Case{{8, 8, 65536, DType::kBF16}, false},
                        Case{{1, 16, 131072, DType::kBF16}, false},
                        Case{{1, 1, 8, DType::kBF16}, false}}) {
    const std::string where =
        absl::StrCat(c.p.m, "x", c.p.n, "x", c.p.k, " dtype=", int(c.p.dtype));
    EXPECT_EQ(cuda::GemmTakesCublas(c.p), c.cublas) << where;
    const cuda::DecomposeKConfig config = cuda::ChooseGemmConfig(c.p, 132);
    EXPECT_EQ(config.gemm_cublas, c.cublas) << where;
    if (c.cublas) {
      EXPECT_GE(cuda::GemmWorkspaceBytes(c.p, config), size_t(32) << 20) << where;
    }
  }
}

// A cuBLASLt config is LaunchGemm's (gemm_launch.h; decompose_k_router.cu does not link
// cuBLASLt so that the server does not): LaunchDecomposeKGemm refuses it before touching
// the device, so this runs without a GPU.
TEST(DecomposeKConfig, DecomposeKGemmLaunchRefusesACublasConfig) {
  const cuda::GemmProblem p{256, 256, 8192, DType::kBF16};
  const cuda::DecomposeKConfig config = cuda::ChooseGemmConfig(p, 132);
  ASSERT_TRUE(config.gemm_cublas);
  EXPECT_EQ(
      cuda::LaunchDecomposeKGemm(p, nullptr, nullptr, nullptr, nullptr, config, nullptr, nullptr),
      cudaErrorInvalidValue);
}

// Clusters only where the described device runs them (sm_90+), with the reason named; and
// with no device at all (zero SMs) no polled grid fits.
TEST(DecomposeKConfig, RulesRefuseClustersAndPolledGridsTheDescribedDeviceCannotRun) {
  const RouteProblem p{FindPreset("deepseek_v3").value().spec, 1, DType::kBF16, DType::kBF16};
  cuda::DecomposeKConfig cluster;
  cluster.cluster = cluster.k_splits = 8;
  EXPECT_TRUE(cuda::CanRouteDecomposeKOn(p, cluster, kSxm).ok());
  const absl::Status no_clusters = cuda::CanRouteDecomposeKOn(p, cluster, {132, false});
  EXPECT_EQ(no_clusters.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(no_clusters.message()).find("clusters"), std::string::npos) << no_clusters;
  const cuda::DecomposeKConfig polled = cuda::ChooseDecomposeKConfigFor(p, kSxm);
  ASSERT_TRUE(polled.polled) << Describe(polled);
  EXPECT_FALSE(cuda::CanRouteDecomposeKOn(p, polled, {}).ok());
}

TEST(DecomposeKConfig, PolledGridWiderThanTheGpuIsRefused) {
  RouteProblem p{FindPreset("deepseek_v3").value().spec, 1, DType::kBF16, DType::kBF16};
  // 8 expert blocks x 64 splits = 512 CTAs: more than one per SM on any current GPU, so the
  // router CTA could wait on a CTA that is not resident.
  const cuda::DecomposeKConfig wide{cuda::Mainloop::kTensorCore, 1, 64, 0, /*polled=*/true};
  const absl::Status status = cuda::CanRouteDecomposeKOn(p, wide, kSxm);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(status.message()).find("SMs"), std::string::npos) << status;
}

// A config read back from a damaged autotune cache line: a mainloop other than the two is
// refused (the plan is then tuned afresh), not launched as the FMA kernel with the
// tensor-core layout. Host-side checks only: runs without a GPU too.
TEST(DecomposeKConfig, AnUnknownMainloopIsRefused) {
  RouteProblem p{FindPreset("deepseek_v3").value().spec, 1, DType::kBF16, DType::kBF16};
  for (int mainloop : {2, 7, -1}) {
    cuda::DecomposeKConfig c{static_cast<cuda::Mainloop>(mainloop), 1000, 8, 0};
    const absl::Status status = cuda::CanRouteDecomposeKOn(p, c, kSxm);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << mainloop;
    EXPECT_NE(std::string(status.message()).find(absl::StrCat("mainloop ", mainloop)),
              std::string::npos)
        << status;
  }
}

// The autotune cache keys a config by device name as well as SM count: an H100 and an
// H200 both have 132 SMs, and a cache file carried from one to the other must not hand
// over the first one's choices. The key stays one field of a whitespace-separated line.
// Host-side only: runs without a GPU too.
TEST(DecomposeKConfig, AutotuneCacheKeysNameTheDevice) {
  RouteProblem p{FindPreset("deepseek_v3").value().spec, 1, DType::kBF16, DType::kBF16};
  const std::string h100 = cuda::AutotuneCacheKey(p, "NVIDIA H100 80GB HBM3", 132, true);
  const std::string h200 = cuda::AutotuneCacheKey(p, "NVIDIA H200", 132, true);
  EXPECT_NE(h100, h200);
  for (const std::string& key : {h100, h200}) {
    EXPECT_EQ(key.find_first_of(" \t\n"), std::string::npos) << key;
    EXPECT_NE(key.find("sm132"), std::string::npos) << key;
  }
  EXPECT_NE(h200, cuda::AutotuneCacheKey(p, "NVIDIA H200", 132, false));
  EXPECT_NE(h200, cuda::AutotuneCacheKey(p, "NVIDIA H200", 114, true));
  RouteProblem p16 = p;
  p16.tokens = 16;
  EXPECT_NE(h200, cuda::AutotuneCacheKey(p16, "NVIDIA H200", 132, true));
  EXPECT_EQ(h200, cuda::AutotuneCacheKey(p, "NVIDIA H200", 132, true));
  EXPECT_FALSE(cuda::AutotuneCacheKey(p, "", 132, true).empty());
}

// ... and by routing: two models of one shape with different routing get different lines
// (the epilogue's cost differs, and a config one routing may take, staged router pairs, the
// other may refuse: then it was tuned again at every start). The scaling factor changes
// neither and keeps the line.
TEST(DecomposeKConfig, AutotuneCacheKeysNameTheRouting) {
  const RouterSpec base = FindPreset("qwen3_235b").value().spec;
  auto key = [](const RouterSpec& spec) {
    return cuda::AutotuneCacheKey({spec, 128, DType::kBF16, DType::kBF16}, "NVIDIA H100", 132,
                                  true);
  };
  const std::vector<std::pair<const char*, void (*)(RouterSpec&)>> changes = {
      {"top_k", [](RouterSpec& s) { s.top_k = 4; }},
      {"scoring", [](RouterSpec& s) { s.scoring = Scoring::kSigmoid; }},
      {"order", [](RouterSpec& s) { s.order = RoutingOrder::kTopKThenScore; }},
      {"router bias", [](RouterSpec& s) { s.has_router_bias = true; }},
      {"correction bias", [](RouterSpec& s) { s.has_correction_bias = true; }},
      {"n_group", [](RouterSpec& s) { s.n_group = 4; }},
      {"topk_group", [](RouterSpec& s) { s.topk_group = 2; }},
      {"group_score_topk", [](RouterSpec& s) { s.group_score_topk = 1; }},
      {"renormalize", [](RouterSpec& s) { s.renormalize = !s.renormalize; }},
  };
  for (const auto& [field, change] : changes) {
    RouterSpec other = base;
    change(other);
    EXPECT_NE(key(base), key(other)) << field;
    EXPECT_EQ(key(other).find_first_of(" \t\n"), std::string::npos) << key(other);
  }
  RouterSpec scaled = base;
  scaled.scaling_factor = 2.5f;
  scaled.family = "renamed";
  EXPECT_EQ(key(base), key(scaled));
}

TEST(DecomposeKConfig, PdlLaunchOptionsNeedThePolledReduction) {
  RouteProblem p{FindPreset("deepseek_v3").value().spec, 1, DType::kBF16, DType::kBF16};
  cuda::DecomposeKConfig counter{cuda::Mainloop::kTensorCore, 1, 8, 0};
  counter.pdl_cooperative = true;
  const absl::Status status = cuda::CanRouteDecomposeKOn(p, counter, kSxm);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(status.message()).find("pdl_cooperative"), std::string::npos) << status;
  cuda::DecomposeKConfig polled{cuda::Mainloop::kTensorCore, 1, 8, 0, /*polled=*/true};
  polled.pdl_cooperative = true;
  polled.pdl_one_cta_per_sm = true;
  EXPECT_TRUE(cuda::CanRouteDecomposeKOn(p, polled, kSxm).ok());
  // One CTA per SM is the 32-expert polled CTAs' option only.
  cuda::DecomposeKConfig padded_counter{cuda::Mainloop::kTensorCore, 1, 8, 0};
  padded_counter.pdl_one_cta_per_sm = true;
  const absl::Status padded_status = cuda::CanRouteDecomposeKOn(p, padded_counter, kSxm);
  EXPECT_EQ(padded_status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(padded_status.message()).find("pdl_one_cta_per_sm"), std::string::npos)
      << padded_status;
  const RouteProblem large{FindPreset("deepseek_v3").value().spec, 128, DType::kBF16, DType::kBF16};
  cuda::DecomposeKConfig staged = cuda::ChooseStagedConfig(large, 132);
  ASSERT_TRUE(staged.staged);
  staged.pdl_one_cta_per_sm = true;
  EXPECT_NE(std::string(cuda::CanRouteDecomposeKOn(large, staged, kSxm).message())
                .find("pdl_one_cta_per_sm"),
            std::string::npos);
}

// The one-pass split count (an autotuner candidate): the fewest splits with which every
// warp's K range of weights is one unrolled pass of the mainloop (4 K steps of 32 at one or
// two token tiles, 2 at four), so under PDL all of it loads before the wait. Host-only.
TEST(DecomposeKConfig, OnePassSplitsAreTheFewestThatLoadEveryWarpsWeightsInOnePass) {
  for (int hidden : {8, 2048, 2880, 4096, 5120, 7168, 8192, 16384}) {
    for (int tiles : {1, 2, 4}) {
      RouterSpec spec = FindPreset("mixtral").value().spec;
      spec.hidden = hidden;
      const RouteProblem p{spec, 8 * tiles, DType::kBF16, DType::kBF16};
      const int splits = cuda::PolledOnePassSplits(p, tiles);
      const int unroll = tiles <= 2 ? 4 : 2, steps = (hidden + 31) / 32;
      auto steps_per_warp = [&](int s) { return (steps + 8 * s - 1) / (8 * s); };
      ASSERT_GE(splits, 1) << hidden;
      EXPECT_LE(steps_per_warp(splits), unroll) << "hidden=" << hidden << " tiles=" << tiles;
      if (splits > 1) {
        EXPECT_GT(steps_per_warp(splits - 1), unroll) << "hidden=" << hidden << " tiles=" << tiles;
      }
    }
  }
  const auto one_pass = [](const char* family) {
    const RouteProblem p{FindPreset(family).value().spec, 1, DType::kBF16, DType::kBF16};
    return cuda::PolledOnePassSplits(p, 1);
  };
  EXPECT_EQ(one_pass("mixtral"), 4);      // 4096 = 128 steps, 32 a split
  EXPECT_EQ(one_pass("gpt_oss_20b"), 3);  // 2880 = 90 steps
  EXPECT_EQ(one_pass("deepseek_v3"), 7);  // 7168 = 224 steps
}

// The most K steps (32 hidden elements) a warp of a split gets: 8 warps a CTA.
int StepsPerWarp(int hidden, int splits) {
  const int steps = (hidden + 31) / 32;
  return (steps + 8 * splits - 1) / (8 * splits);
}

// The short-pass split count: the fewest splits with which every warp of a two-token-tile
// config has at most two K steps, where the polled launch takes the instance with a pass of
// 2 (TensorCorePassSteps); and the autotuner times that config from 9 tokens where it fits.
TEST(DecomposeKConfig, ShortPassSplitsAreTheFewestWithTwoStepsAWarpAndAreTuned) {
  for (int hidden : {8, 1000, 2048, 2056, 2880, 4096, 5120, 7168, 16384}) {
    RouterSpec spec = FindPreset("qwen3_30b").value().spec;
    spec.hidden = hidden;
    const RouteProblem p{spec, 16, DType::kBF16, DType::kBF16};
    const int splits = cuda::PolledShortPassSplits(p);
    ASSERT_GE(splits, 1) << hidden;
    EXPECT_LE(StepsPerWarp(hidden, splits), 2) << "hidden=" << hidden;
    if (splits > 1) {
      EXPECT_GT(StepsPerWarp(hidden, splits - 1), 2) << "hidden=" << hidden;
    }
    EXPECT_GE(splits, cuda::PolledOnePassSplits(p, 2)) << "hidden=" << hidden;
  }
  // Qwen3-30B (2048 = 64 steps: 4 splits) and Qwen3-235B (4096: 8) at 16 tokens.
  for (const auto& [family, expected] : {std::pair<const char*, int>{"qwen3_30b", 4},
                                         std::pair<const char*, int>{"qwen3_235b", 8}}) {
    const RouteProblem p{FindPreset(family).value().spec, 16, DType::kBF16, DType::kBF16};
    EXPECT_EQ(cuda::PolledShortPassSplits(p), expected) << family;
    bool tuned = false;
    for (const cuda::DecomposeKConfig& c : cuda::AutotuneCandidates(p, kSxm, /*pdl=*/true)) {
      tuned = tuned || (c.polled && !c.staged && c.token_tiles == 2 && c.k_splits == expected);
    }
    EXPECT_TRUE(tuned) << family << ": no two-tile polled candidate at " << expected << " splits";
  }
}

// A dedicated-router config's routers a chunk and grid CTAs (every chunk), and whether its
// back-to-back PDL launches on `sms` SMs, one CTA each, would start at their predecessors'
// wait release (one chunk: up to 16 tokens).
int DecodeRouters(const RouteProblem& p, const cuda::DecomposeKConfig& c) {
  return std::min(p.tokens, 8 * c.token_tiles);
}
int DecodeGridCtas(const RouteProblem& p, const cuda::DecomposeKConfig& c) {
  const int chunks = (p.tokens + 8 * c.token_tiles - 1) / (8 * c.token_tiles);
  return chunks * ((p.spec.experts + 31) / 32 * c.k_splits + DecodeRouters(p, c));
}
bool StartsAtWaitRelease(const RouteProblem& p, const cuda::DecomposeKConfig& c, int sms) {
  return cuda::PdlLaunchStartsAtWaitRelease(DecodeGridCtas(p, c), DecodeRouters(p, c), sms);
}
// Whether `c` at the short-pass split count takes at most half of `sms` SMs (the heuristic's
// condition for that count at two token tiles).
bool ShortPassFitsHalf(const RouteProblem& p, cuda::DecomposeKConfig c, int sms) {
  c.k_splits = cuda::PolledShortPassSplits(p);
  return 2 * DecodeGridCtas(p, c) <= sms;
}

// The launch-queue rule (bench/NOTES.md, session 37): with one CTA per SM, as many launches
// as fit whole are resident; the next starts when the oldest one's mainloop CTAs leave,
// unless the slots left over are fewer than its routers, and then only when it finishes,
// which is when the next-oldest's wait is released. Cases measured on the H200: DeepSeek-V3
// grids of 64 CTAs (8 routers) and 66 (2) slow, 58 (2), 60 (4) and 72 (8) not.
TEST(DecomposeKConfig, LaunchesStartAtTheirPredecessorsWaitReleaseWhereLeftoverSlotsMissRouters) {
  EXPECT_TRUE(cuda::PdlLaunchStartsAtWaitRelease(64, 8, 132));    // 2 resident, 4 left < 8
  EXPECT_TRUE(cuda::PdlLaunchStartsAtWaitRelease(66, 2, 132));    // 2 resident, 0 left < 2
  EXPECT_FALSE(cuda::PdlLaunchStartsAtWaitRelease(58, 2, 132));   // 16 left
  EXPECT_FALSE(cuda::PdlLaunchStartsAtWaitRelease(60, 4, 132));   // 12 left
  EXPECT_FALSE(cuda::PdlLaunchStartsAtWaitRelease(62, 6, 132));   // 8 left
  EXPECT_FALSE(cuda::PdlLaunchStartsAtWaitRelease(72, 8, 132));   // one resident: starts as
  EXPECT_FALSE(cuda::PdlLaunchStartsAtWaitRelease(132, 1, 132));  // the mainloop CTAs leave
  EXPECT_TRUE(cuda::PdlLaunchStartsAtWaitRelease(44, 14, 132));   // 3 resident, 0 left
  EXPECT_FALSE(cuda::PdlLaunchStartsAtWaitRelease(46, 16, 132));  // 2 resident, 40 left
  EXPECT_FALSE(cuda::PdlLaunchStartsAtWaitRelease(200, 8, 132));  // never resident twice
  EXPECT_FALSE(cuda::PdlLaunchStartsAtWaitRelease(0, 8, 132));
}

// The heuristic's decode configs (dedicated routers, one CTA per SM under PDL) add splits
// where the launch-queue rule says a launch would start at its predecessor's wait release:
// DeepSeek-V3 at 8 tokens 7 -> 8 splits (4.14 -> 3.55 us a call, H200, session 37), and
// every family's grid from 1 to 16 tokens steers clear of it. Host-only, 132 SMs.
TEST(DecomposeKConfig, HeuristicDecodeGridsDoNotStartLaunchesAtTheirPredecessorsWaitRelease) {
  for (const auto& preset : FamilyPresets()) {
    for (int tokens = 1; tokens <= 16; ++tokens) {
      const RouteProblem p{preset.spec, tokens, DType::kBF16, DType::kBF16};
      const cuda::DecomposeKConfig c = cuda::ChooseDecomposeKConfigFor(
          p, kSxm, /*allow_polled=*/true, /*cut_decode_splits=*/true,
          /*allow_rank_zero_routes=*/false);
      const std::string where = absl::StrCat(preset.name, " t=", tokens);
      ASSERT_TRUE(c.polled && c.dedicated_routers && c.pdl_one_cta_per_sm) << where;
      const int ctas = DecodeGridCtas(p, c);
      EXPECT_LE(ctas, 132) << where;
      // Where more than four launches are resident the rule is not applied (measured
      // -0.11..+0.05 us a call): the split cut's count stands (checked below).
      if (132 / ctas <= 4) {
        EXPECT_FALSE(StartsAtWaitRelease(p, c, 132)) << where << ": " << c.k_splits << " splits";
      }
    }
  }
  for (const auto& [family, tokens, splits] : std::vector<std::tuple<const char*, int, int>>{
           {"deepseek_v3", 4, 7},      // 60 CTAs, 12 slots left over for 4 routers
           {"deepseek_v3", 6, 7},      // 62: 8 left for 6
           {"deepseek_v3", 7, 8},      // 63: 6 left for 7 -> 71, one resident
           {"deepseek_v3", 8, 8},      // 64: 4 for 8 -> 72
           {"deepseek_v3", 10, 8},     // 66: none for 10 -> 74
           {"glm4_moe", 14, 11},       // short-pass 10: 64, two resident, 4 left for 14 -> 69
           {"gpt_oss_120b", 2, 5}}) {  // 22, six resident: not steered
    const RouteProblem p{FindPreset(family).value().spec, tokens, DType::kBF16, DType::kBF16};
    EXPECT_EQ(cuda::ChooseDecomposeKConfigFor(p, kSxm, true, true, false).k_splits, splits)
        << family << " t=" << tokens;
  }
}

// Up to 16 tokens the heuristic cuts the polled rule's split count to the larger of the
// one-pass count and a quarter (the autotuner's timings: bench/NOTES.md, sessions 23, 35
// and 36), at two token tiles to no fewer than the short-pass count where that grid takes
// at most half the SMs (session 51), and launches cooperatively, one CTA per SM, under PDL
// (sessions 34 and 36). Host-only, for a 132-SM device.
TEST(DecomposeKConfig, HeuristicCutsDecodeSplitsToTheOnePassCountOrAQuarter) {
  const struct {
    const char* family;
    int rule, cut;        // splits at one token
    int rule_16, cut_16;  // at 16 tokens
  } expected[] = {{"mixtral", 33, 8, 32, 8},        {"gpt_oss_20b", 22, 5, 22, 6},
                  {"deepseek_v3", 16, 7, 14, 7},    {"qwen3_30b", 16, 4, 16, 5},
                  {"llama4_scout", 40, 10, 40, 10}, {"kimi_k2", 10, 7, 9, 7},
                  {"glm4_moe", 26, 6, 23, 11},      {"llama4_maverick", 32, 9, 29, 10}};
  for (const auto& e : expected) {
    for (int tokens : {1, 4, 8, 9, 16}) {
      const RouteProblem p{FindPreset(e.family).value().spec, tokens, DType::kBF16, DType::kBF16};
      // The polled heuristic (without the clusters whose rank 0 routes, which it takes
      // first on sm_90+ for most of these families: the test below).
      const cuda::DecomposeKConfig cut = cuda::ChooseDecomposeKConfigFor(
          p, kSxm, /*allow_polled=*/true, /*cut_decode_splits=*/true,
          /*allow_rank_zero_routes=*/false);
      const cuda::DecomposeKConfig rule = cuda::ChooseDecomposeKConfigFor(
          p, kSxm, /*allow_polled=*/true, /*cut_decode_splits=*/false,
          /*allow_rank_zero_routes=*/false);
      const std::string where = absl::StrCat(e.family, " t=", tokens);
      ASSERT_TRUE(cut.polled && cut.dedicated_routers) << where;
      ASSERT_TRUE(rule.polled && rule.dedicated_routers) << where;
      EXPECT_EQ(cut.token_tiles, rule.token_tiles) << where;
      // Decode batches launch cooperatively under PDL too, one CTA per SM.
      EXPECT_TRUE(cut.pdl_cooperative && cut.pdl_one_cta_per_sm) << where;
      EXPECT_TRUE(rule.pdl_cooperative && rule.pdl_one_cta_per_sm) << where;
      if (tokens == 1) {
        EXPECT_EQ(rule.k_splits, e.rule) << where;
        EXPECT_EQ(cut.k_splits, e.cut) << where;
      }
      if (tokens == 16) {
        EXPECT_EQ(rule.k_splits, e.rule_16) << where;
        EXPECT_EQ(cut.k_splits, e.cut_16) << where;
      }
      EXPECT_LE(cut.k_splits, rule.k_splits) << where;
      const int one_pass = cuda::PolledOnePassSplits(p, cut.token_tiles);
      // The one-pass count or a quarter of the rule's (its count before dedicated routers
      // took a split off to fit: up to a split more than a quarter of the one here), at two
      // tiles the short-pass count where that grid takes at most half the SMs, or more where a
      // split fewer would start launches at their predecessors' wait release (the test
      // below).
      EXPECT_GE(cut.k_splits, std::min(rule.k_splits, one_pass)) << where;
      cuda::DecomposeKConfig fewer = cut;
      --fewer.k_splits;
      const int short_pass = cuda::PolledShortPassSplits(p);
      const bool short_pass_fits = ShortPassFitsHalf(p, cut, 132);
      EXPECT_TRUE(cut.k_splits <= std::max(one_pass, rule.k_splits / 4 + 1) ||
                  (cut.token_tiles == 2 && short_pass_fits && cut.k_splits <= short_pass) ||
                  StartsAtWaitRelease(p, fewer, 132))
          << where;
      if (cut.token_tiles == 2 && short_pass_fits) {
        EXPECT_GE(cut.k_splits, short_pass) << where;
      }
    }
  }
}

// Past 64 tokens the heuristic's polled configs (routers in the mainloop CTAs) launch plainly
// under PDL, one CTA per SM: against the cooperative launch with two CTAs a SM allowed
// (session 35's choice) 0.4-0.9 us a call faster on gpt-oss-120b and Qwen3-235B at 128 tokens
// and GLM-4.5 at 80, 0.14 slower on Llama 4 Maverick at 96 (H100, bench/NOTES.md session 52).
// (At 17-64 tokens the heuristic takes two-tile dedicated-router configs, cooperative where
// their grid fits beside a router a token: below. Routers of two expert tiles over 4096+
// hidden, Qwen3-235B and Maverick, take staged router pairs past 96 tokens: the next test.)
// Host-only, 132 SMs.
TEST(DecomposeKConfig, HeuristicLaunchesPolledBatchesPastSixtyFourTokensOneCtaASmPlainly) {
  for (const auto& [family, tokens] : std::vector<std::pair<const char*, int>>{
           {"glm4_moe", 65}, {"glm4_moe", 80}, {"gpt_oss_120b", 96}, {"gpt_oss_120b", 128}}) {
    const RouteProblem p{FindPreset(family).value().spec, tokens, DType::kBF16, DType::kBF16};
    const cuda::DecomposeKConfig c = cuda::ChooseDecomposeKConfigFor(p, kSxm);
    const std::string where = absl::StrCat(family, " t=", tokens);
    ASSERT_TRUE(c.polled && !c.staged && !c.dedicated_routers) << where;
    EXPECT_FALSE(c.pdl_cooperative) << where;
    EXPECT_TRUE(c.pdl_one_cta_per_sm) << where;
  }
}

// Routers of 65-128 experts (two 64-expert tiles) over 4096+ hidden at 97-128 tokens take the
// staged tiles with router pairs at four K stages a split, where the polled CTAs had been the
// rule: Qwen3-235B t=128 5.00 us against 5.55, Llama 4 Maverick 5.60 against 6.00 (H100, the
// autotuner's timings under PDL, bench/NOTES.md session 66; session 68's timeline the same).
// Cooperative where the grid takes at most half the SMs. Not over less hidden (gpt-oss-120b,
// Qwen3-30B), not at 96 tokens or fewer (the polled CTAs as fast or faster there, session
// 68), and not for specs whose tokens one block cannot route alone.
TEST(DecomposeKConfig, HeuristicTakesStagedRouterPairsForTwoExpertTilesPastNinetySixTokens) {
  const struct {
    const char* family;
    int splits;  // 16 = 64 stages / 4, 20 = 80 / 4
    bool cooperative;
  } routers[] = {{"qwen3_235b", 16, true}, {"llama4_maverick", 20, false}};
  for (const auto& r : routers) {
    for (int tokens : {97, 100, 112, 127, 128}) {
      const RouteProblem p{FindPreset(r.family).value().spec, tokens, DType::kBF16, DType::kBF16};
      const cuda::DecomposeKConfig c = cuda::ChooseDecomposeKConfigFor(p, kSxm);
      const std::string where = absl::StrCat(r.family, " t=", tokens, ": ", Describe(c));
      EXPECT_TRUE(c.staged && c.staged_router_pairs) << where;
      EXPECT_EQ(c.k_splits, r.splits) << where;
      EXPECT_EQ(c.pdl_cooperative, r.cooperative) << where;
      EXPECT_TRUE(cuda::CanRouteDecomposeKOn(p, c, kSxm).ok()) << where;
      // Every device size gets a config it can run.
      for (const cuda::DecomposeKDevice& device :
           {cuda::DecomposeKDevice{114, true}, cuda::DecomposeKDevice{66, true},
            cuda::DecomposeKDevice{16, false}}) {
        const cuda::DecomposeKConfig d = cuda::ChooseDecomposeKConfigFor(p, device);
        EXPECT_TRUE(cuda::CanRouteDecomposeKOn(p, d, device).ok())
            << where << " on " << device.sm_count << " SMs: " << Describe(d);
      }
    }
    // At 65-96 tokens (three 32-token chunks) the polled CTAs were as fast or faster (session
    // 68): they keep them.
    for (int tokens : {64, 65, 80, 96}) {
      const RouteProblem p{FindPreset(r.family).value().spec, tokens, DType::kBF16, DType::kBF16};
      const cuda::DecomposeKConfig c = cuda::ChooseDecomposeKConfigFor(p, kSxm);
      EXPECT_FALSE(c.staged) << r.family << " t=" << tokens << ": " << Describe(c);
    }
  }
  for (const char* family : {"gpt_oss_120b", "qwen3_30b"}) {
    const RouteProblem p{FindPreset(family).value().spec, 128, DType::kBF16, DType::kBF16};
    EXPECT_FALSE(cuda::ChooseDecomposeKConfigFor(p, kSxm).staged) << family;
  }
  RouterSpec softmax_first = FindPreset("qwen3_235b").value().spec;
  softmax_first.renormalize = false;  // the weights need the softmax over all 128 experts
  ASSERT_FALSE(cuda::RouterPairsRoute(softmax_first));
  const cuda::DecomposeKConfig kept =
      cuda::ChooseDecomposeKConfigFor({softmax_first, 128, DType::kBF16, DType::kBF16}, kSxm);
  EXPECT_TRUE(kept.polled && !kept.staged) << Describe(kept);
}

// The heuristic's staged tiles keep to at most 16 splits: at 19-20 (its SM-filling count for
// Kimi K2 at 64 tokens and GLM-4.5 at 128) the gather took 4-6 us under PDL, a call 13.7-14.2
// us against 8.8 and 12.3 at 16 (H200, bench/NOTES.md session 34).
// Also one chunk of a router of 256+ experts over 4096+ hidden, 33-79 tokens: at 40 tokens Kimi
// K2 7.74 us at 16 splits against 8.44 at 19 (its SM-filling count), DeepSeek-V3 6.69 against
// 6.81 at 28 (H100, bench/NOTES.md session 52).
TEST(DecomposeKConfig, HeuristicStagedTilesKeepToSixteenSplits) {
  for (const auto& [family, tokens] :
       std::vector<std::pair<const char*, int>>{{"kimi_k2", 40},
                                                {"kimi_k2", 64},
                                                {"kimi_k2", 128},
                                                {"glm4_moe", 128},
                                                {"deepseek_v3", 33},
                                                {"deepseek_v3", 64},
                                                {"deepseek_v3", 128}}) {
    const RouteProblem p{FindPreset(family).value().spec, tokens, DType::kBF16, DType::kBF16};
    const cuda::DecomposeKConfig c = cuda::ChooseDecomposeKConfigFor(p, kSxm);
    const std::string where = absl::StrCat(family, " t=", tokens);
    EXPECT_TRUE(c.staged) << where;
    EXPECT_LE(c.k_splits, 16) << where;
    EXPECT_GE(c.k_splits, 10) << where;  // still about an SM's worth of CTAs
  }
}

// The heuristic (the C ABI's config, and the autotuner's starting point) routes batches of
// up to 64 tokens from dedicated routers, with a grid that fits; larger batches (and the
// staged tiles) keep the routers in the mainloop CTAs.
TEST(DecomposeKConfig, HeuristicTakesDedicatedRoutersUpToSixtyFourTokens) {
  for (const char* family : {"deepseek_v3", "kimi_k2", "qwen3_30b", "mixtral", "gpt_oss_20b"}) {
    for (int tokens : {1, 7, 16, 17, 40, 64, 65, 100}) {
      const RouteProblem p{FindPreset(family).value().spec, tokens, DType::kBF16, DType::kBF16};
      const cuda::DecomposeKConfig c = cuda::ChooseDecomposeKConfigFor(
          p, kSxm, /*allow_polled=*/true, /*cut_decode_splits=*/true,
          /*allow_rank_zero_routes=*/false);
      const std::string where = absl::StrCat(family, " t=", tokens, ": ", Describe(c));
      ASSERT_TRUE(c.polled) << where;
      EXPECT_EQ(c.dedicated_routers, tokens <= 64 && !c.staged) << where;
      // Up to 16 tokens cooperative under PDL (bench/NOTES.md, sessions 34-36), at 17-64
      // where the grid fits beside a router a token, past 64 plainly (session 52); one CTA
      // per SM throughout. The staged tiles' launch has a test of its own
      // (HeuristicLaunchesStagedTilesCooperativelyWhereTheGridTakesHalfTheSms).
      if (!c.staged) {
        const bool fits_beside_routers =
            c.dedicated_routers && DecodeGridCtas(p, c) + tokens <= kSxm.sm_count;
        EXPECT_EQ(c.pdl_cooperative, tokens <= 16 || (tokens <= 64 && fits_beside_routers))
            << where;
        EXPECT_TRUE(c.pdl_one_cta_per_sm) << where;
      }
      EXPECT_TRUE(cuda::CanRouteDecomposeKOn(p, c, kSxm).ok()) << where;
    }
  }
}

// On sm_90+ the heuristic routes up to 128 tokens of a router of at most 128 experts from a
// cluster whose rank 0 routes, where the weights fit one pass of at most 16 CTAs and the
// grid fits the SMs (with several expert blocks only past 8 tokens, more than two only past
// 64 or where the two-tile polled configs, below, do not fit): splits a block = the one-pass
// count rounded up to a power of two (no longer raised to 8 CTAs a cluster past 8 tokens:
// session 70). Past 128 tokens routers of at most two blocks (64 experts) too, their splits
// halved until the grid has at most half again as many CTAs as SMs (Scout keeps 8 splits to
// 192 tokens: 24 chunks, 192 CTAs on 132 SMs).
TEST(DecomposeKConfig, HeuristicTakesRankZeroRoutingClustersForSmallRouters) {
  const struct {
    const char* family;
    int tokens, splits;  // 0: not a cluster whose rank 0 routes
  } expected[] = {
      {"mixtral", 1, 4},           {"mixtral", 16, 4},           {"mixtral", 128, 4},
      {"gpt_oss_20b", 24, 4},      {"gpt_oss_20b", 128, 4},      {"llama4_scout", 128, 8},
      {"llama4_scout", 144, 8},    {"llama4_scout", 192, 8},     {"llama4_scout", 200, 4},
      {"llama4_scout", 256, 4},    {"deepseek_v2_lite", 128, 2}, {"mixtral", 129, 4},
      {"mixtral", 256, 4},         {"deepseek_v2_lite", 256, 2}, {"qwen3_30b", 129, 0},
      {"qwen3_30b", 256, 0},       {"gpt_oss_20b", 1, 4},        {"llama4_scout", 1, 8},
      {"qwen3_30b", 1, 0},         {"qwen3_30b", 16, 0},         {"qwen3_30b", 17, 0},
      {"qwen3_30b", 64, 0},        {"qwen3_30b", 65, 2},         {"qwen3_30b", 128, 2},
      {"qwen3_235b", 4, 0},        {"qwen3_235b", 9, 0},         {"qwen3_235b", 16, 0},
      {"qwen3_235b", 17, 0},       {"qwen3_235b", 128, 0},       {"gpt_oss_120b", 16, 0},
      {"gpt_oss_120b", 64, 0},     {"deepseek_v2_lite", 1, 0},   {"deepseek_v2_lite", 9, 2},
      {"deepseek_v2_lite", 16, 2}, {"deepseek_v2_lite", 40, 2},  {"llama4_maverick", 16, 0},
      {"deepseek_v3", 16, 0},      {"glm4_moe", 1, 0},
  };
  for (const auto& e : expected) {
    const RouteProblem p{FindPreset(e.family).value().spec, e.tokens, DType::kBF16, DType::kBF16};
    const cuda::DecomposeKConfig c = cuda::ChooseDecomposeKConfigFor(p, kSxm);
    const std::string where = absl::StrCat(e.family, " t=", e.tokens);
    if (e.splits > 0) {
      EXPECT_EQ(c.cluster, e.splits) << where;
      EXPECT_EQ(c.k_splits, e.splits) << where;
      EXPECT_EQ(c.token_tiles, 1) << where;
    } else {  // polled or staged
      EXPECT_FALSE(c.cluster > 0 && c.token_tiles == 1) << where << " cluster=" << c.cluster;
    }
    EXPECT_TRUE(cuda::CanRouteDecomposeKOn(p, c, kSxm).ok()) << where;
  }
  // A cluster across 4 expert blocks holds at most 4 splits (16 CTAs).
  const RouteProblem qwen{FindPreset("qwen3_30b").value().spec, 1, DType::kBF16, DType::kBF16};
  const absl::Status wide =
      cuda::CanRouteDecomposeKOn(qwen, {cuda::Mainloop::kTensorCore, 1, 8, 8}, kSxm);
  EXPECT_EQ(wide.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(wide.message()).find("expert blocks"), std::string::npos) << wide;
}

// From 9 to 16 tokens routers of more than two expert blocks take the two-tile polled config
// with dedicated routers, each warp's K range at most two steps (the pass of 2), where that grid
// takes at most half the SMs: 0.2-0.6 us a call faster than the cluster whose rank 0 routes
// and the rule's split cut (H100, bench/NOTES.md session 51). Not where the grid would be
// larger (DeepSeek-V3, Kimi K2; every such router on a 66-SM part), nor for routers of one
// or two blocks (the cluster stays ahead).
TEST(DecomposeKConfig, HeuristicTakesTheShortPassForRoutersOfThreeBlocksUpAtNineToSixteenTokens) {
  for (const char* family :
       {"qwen3_30b", "qwen3_235b", "gpt_oss_120b", "llama4_maverick", "glm4_moe"}) {
    for (int tokens = 9; tokens <= 16; ++tokens) {
      const RouteProblem p{FindPreset(family).value().spec, tokens, DType::kBF16, DType::kBF16};
      const cuda::DecomposeKConfig c = cuda::ChooseDecomposeKConfigFor(p, kSxm);
      const std::string where = absl::StrCat(family, " t=", tokens, ": ", Describe(c));
      EXPECT_TRUE(c.polled && !c.staged && c.cluster == 0) << where;
      EXPECT_TRUE(c.dedicated_routers && c.pdl_cooperative && c.pdl_one_cta_per_sm) << where;
      EXPECT_EQ(c.token_tiles, 2) << where;
      EXPECT_GE(c.k_splits, cuda::PolledShortPassSplits(p)) << where;
      EXPECT_LE(StepsPerWarp(p.spec.hidden, c.k_splits), 2) << where;
      EXPECT_TRUE(cuda::CanRouteDecomposeKOn(p, c, kSxm).ok()) << where;
      // On a part of half the SMs the grid would take more than half: the rule's cut (at 16
      // tokens below the short-pass count; at 12-13 gpt-oss-120b's cut reaches it anyway,
      // a split or two more where launches would start at a wait release).
      const cuda::DecomposeKDevice half{66, true};
      const cuda::DecomposeKConfig small = cuda::ChooseDecomposeKConfigFor(p, half);
      EXPECT_TRUE(small.polled && small.cluster == 0) << where << "; on 66 SMs " << Describe(small);
      if (tokens == 16 && !ShortPassFitsHalf(p, small, 66)) {
        EXPECT_LT(small.k_splits, cuda::PolledShortPassSplits(p)) << where;
      }
      EXPECT_TRUE(cuda::CanRouteDecomposeKOn(p, small, half).ok()) << where;
    }
  }
  for (const char* family : {"deepseek_v3", "kimi_k2"}) {  // 14 splits: 128 and 184 CTAs
    const RouteProblem p{FindPreset(family).value().spec, 16, DType::kBF16, DType::kBF16};
    const cuda::DecomposeKConfig c = cuda::ChooseDecomposeKConfigFor(p, kSxm);
    EXPECT_EQ(c.k_splits, 7) << family << ": " << Describe(c);
    EXPECT_GT(StepsPerWarp(p.spec.hidden, c.k_splits), 2) << family;
  }
  for (const char* family : {"mixtral", "gpt_oss_20b", "deepseek_v2_lite"}) {
    const RouteProblem p{FindPreset(family).value().spec, 16, DType::kBF16, DType::kBF16};
    const cuda::DecomposeKConfig c = cuda::ChooseDecomposeKConfigFor(p, kSxm);
    EXPECT_TRUE(c.cluster > 0 && c.token_tiles == 1) << family << ": " << Describe(c);
  }
}

// At 17-64 tokens (two to four 16-token chunks) routers of more than two expert blocks take
// two token tiles with dedicated routers at the short-pass split count, or as many splits as
// fit the SMs, launched one CTA per SM: 0.4-3 us a call faster than the rank-0
// cluster and the four-tile polled configs taken there before (H100, bench/NOTES.md session
// 52). Routers of 256+ experts over 4096+ hidden take the staged tiles from 33 tokens (two
// tiles leave them 3 splits or fewer); routers of one or two blocks keep the cluster.
TEST(DecomposeKConfig, HeuristicTakesTwoTilesWithDedicatedRoutersAtSeventeenToSixtyFourTokens) {
  for (const cuda::DecomposeKDevice& device : {kSxm, cuda::DecomposeKDevice{66, true}}) {
    for (const char* family : {"qwen3_30b", "qwen3_235b", "gpt_oss_120b", "llama4_maverick",
                               "glm4_moe", "deepseek_v3", "kimi_k2"}) {
      for (int tokens = 17; tokens <= 64; ++tokens) {
        const RouteProblem p{FindPreset(family).value().spec, tokens, DType::kBF16, DType::kBF16};
        const cuda::DecomposeKConfig c = cuda::ChooseDecomposeKConfigFor(p, device);
        const std::string where =
            absl::StrCat(family, " t=", tokens, " on ", device.sm_count, " SMs: ", Describe(c));
        EXPECT_TRUE(cuda::CanRouteDecomposeKOn(p, c, device).ok()) << where;
        if (p.spec.experts >= 256 && tokens > 32 && device.sm_count == kSxm.sm_count) {
          EXPECT_TRUE(c.staged) << where;
          continue;
        }
        auto grid = [&](int splits) {  // the two-tile dedicated-router grid at `splits`
          cuda::DecomposeKConfig two_tile{cuda::Mainloop::kTensorCore, /*token_tiles=*/2, splits, 0,
                                          /*polled=*/true};
          two_tile.dedicated_routers = true;
          return DecodeGridCtas(p, two_tile);
        };
        if (grid(1) > device.sm_count) {  // another config (66 SMs: the cluster or four tiles)
          EXPECT_FALSE(c.token_tiles == 2 && c.dedicated_routers) << where;
          continue;
        }
        if (c.staged) continue;  // 66 SMs: staged for other reasons than above
        EXPECT_TRUE(c.polled && c.cluster == 0 && c.dedicated_routers) << where;
        EXPECT_EQ(c.token_tiles, 2) << where;
        EXPECT_TRUE(c.pdl_one_cta_per_sm) << where;
        // Cooperative where the grid fits beside the previous launch's routers, one a token.
        EXPECT_EQ(c.pdl_cooperative, grid(c.k_splits) + tokens <= device.sm_count) << where;
        EXPECT_LE(grid(c.k_splits), device.sm_count) << where;
        // The short-pass count, or as many splits as fit (a split or more past it where
        // launches would otherwise start at a wait release).
        EXPECT_TRUE(c.k_splits >= cuda::PolledShortPassSplits(p) ||
                    grid(c.k_splits + 1) > device.sm_count)
            << where;
      }
    }
  }
  // 128 SMs or more: on the SXM part every one of these rows but the staged ones takes it.
  for (int tokens : {17, 32, 48, 64}) {
    const RouteProblem p{FindPreset("glm4_moe").value().spec, tokens, DType::kBF16, DType::kBF16};
    EXPECT_EQ(cuda::ChooseDecomposeKConfigFor(p, kSxm).token_tiles, 2) << "glm4_moe t=" << tokens;
  }
  for (const char* family : {"mixtral", "gpt_oss_20b", "deepseek_v2_lite", "llama4_scout"}) {
    for (int tokens : {17, 40, 64}) {
      const RouteProblem p{FindPreset(family).value().spec, tokens, DType::kBF16, DType::kBF16};
      const cuda::DecomposeKConfig c = cuda::ChooseDecomposeKConfigFor(p, kSxm);
      EXPECT_TRUE(c.cluster > 0 && c.token_tiles == 1)
          << family << " t=" << tokens << ": " << Describe(c);
    }
  }
}

// The heuristic's staged tiles launch cooperatively under PDL where their grid (64-expert
// tiles x splits x 64-token chunks) takes at most half the SMs, plainly where it takes more:
// on the SXM part DeepSeek-V3 at 33-64 tokens (64 CTAs: 6.37-6.52 us a call against
// 6.56-6.89 plain), not Kimi K2 there or either past 64 tokens (96-128 CTAs, 0.3-1.2 us slower
// cooperative; H100, bench/NOTES.md sessions 52-53); Qwen3-235B's router pairs past 64 tokens
// (64 CTAs: 5.00 us against 5.34 plain, session 66).
TEST(DecomposeKConfig, HeuristicLaunchesStagedTilesCooperativelyWhereTheGridTakesHalfTheSms) {
  int cooperative = 0, plain = 0;
  for (const cuda::DecomposeKDevice& device : {kSxm, cuda::DecomposeKDevice{66, true}}) {
    for (const auto& preset : FamilyPresets()) {
      for (int tokens = 33; tokens <= 256; tokens += tokens < 64 ? 1 : 16) {
        const RouteProblem p{preset.spec, tokens, DType::kBF16, DType::kBF16};
        const cuda::DecomposeKConfig c = cuda::ChooseDecomposeKConfigFor(p, device);
        if (!c.staged) continue;
        const std::string where = absl::StrCat(preset.spec.family, " t=", tokens, " on ",
                                               device.sm_count, " SMs: ", Describe(c));
        const int grid =
            (p.spec.experts + 63) / 64 * c.k_splits * ((tokens + 63) / 64);  // tiles x chunks
        EXPECT_EQ(c.pdl_cooperative, 2 * grid <= device.sm_count) << where;
        EXPECT_TRUE(cuda::CanRouteDecomposeKOn(p, c, device).ok()) << where;
        (c.pdl_cooperative ? cooperative : plain) += 1;
        const bool deepseek_chunk =
            preset.spec.family == "deepseek_v3" && tokens <= 64 && device.sm_count == 132;
        if (deepseek_chunk) {
          EXPECT_TRUE(c.pdl_cooperative) << where;
        }
        if (preset.spec.family == "kimi_k2" || (tokens > 64 && p.spec.experts > 128)) {
          EXPECT_FALSE(c.pdl_cooperative) << where;
        }
      }
    }
  }
  // DeepSeek-V3 at 33-64 tokens and Qwen3-235B at 112 and 128 on the SXM part (the staged router
  // pairs from 97 tokens).
  EXPECT_EQ(cooperative, 34);
  EXPECT_GT(plain, 20);
}

// ... and the staged tiles where tokens x experts is large and their grid fits.
TEST(DecomposeKConfig, HeuristicTakesStagedTilesForLargeBatchesOfLargeRouters) {
  const int sms = kSxm.sm_count;
  struct Case {
    const char* family;
    int tokens;
    bool staged;
  };
  for (const Case& k :
       {Case{"deepseek_v3", 128, true}, Case{"kimi_k2", 64, true}, Case{"glm4_moe", 128, true},
        Case{"deepseek_v3", 64, true}, Case{"deepseek_v3", 33, true}, Case{"kimi_k2", 33, true},
        Case{"deepseek_v3", 32, false}, Case{"kimi_k2", 32, false},
        // Router pairs (HeuristicTakesStagedRouterPairsForTwoExpertTilesPastNinetySixTokens).
        Case{"qwen3_235b", 128, true}, Case{"gpt_oss_120b", 128, false},
        Case{"qwen3_30b", 128, false}, Case{"mixtral", 256, false}}) {
    const RouteProblem p{FindPreset(k.family).value().spec, k.tokens, DType::kBF16, DType::kBF16};
    const cuda::DecomposeKConfig c = cuda::ChooseDecomposeKConfigFor(p, kSxm);
    EXPECT_EQ(c.staged, k.staged && sms >= 128) << k.family << " t=" << k.tokens;
    EXPECT_TRUE(cuda::CanRouteDecomposeKOn(p, c, kSxm).ok()) << k.family << " t=" << k.tokens;
  }
  // 256 tokens of DeepSeek-V3: 16 tiles a split need 10 splits to stage at most 12 of the
  // 112 stages a CTA, more CTAs than SMs; the heuristic takes another config that fits.
  const RouteProblem big{FindPreset("deepseek_v3").value().spec, 256, DType::kBF16, DType::kBF16};
  const cuda::DecomposeKConfig c = cuda::ChooseDecomposeKConfigFor(big, kSxm);
  EXPECT_FALSE(c.staged);
  EXPECT_TRUE(cuda::CanRouteDecomposeKOn(big, c, kSxm).ok());
}

TEST(DecomposeKConfig, DedicatedRoutersNeedThePolledReductionAndCountAgainstTheSms) {
  const RouterSpec spec = FindPreset("deepseek_v3").value().spec;
  cuda::DecomposeKConfig counter{cuda::Mainloop::kTensorCore, 1, 8, 0};
  counter.dedicated_routers = true;
  const absl::Status status =
      cuda::CanRouteDecomposeKOn({spec, 1, DType::kBF16, DType::kBF16}, counter, kSxm);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(status.message()).find("dedicated_routers"), std::string::npos) << status;
  // 8 expert blocks x S mainloop CTAs plus a router per token of the chunk must fit on the
  // SMs: with S chosen to leave exactly `spare` SMs, one token fits and spare + 1 do not.
  for (int sms : {132, 114, 108, 64, 60}) {
    const cuda::DecomposeKDevice device{sms, true};
    const int spare = sms % 8 == 0 ? 8 : sms % 8;
    cuda::DecomposeKConfig polled{cuda::Mainloop::kTensorCore, 1, (sms - spare) / 8, 0,
                                  /*polled=*/true};
    polled.dedicated_routers = true;
    EXPECT_TRUE(
        cuda::CanRouteDecomposeKOn({spec, 1, DType::kBF16, DType::kBF16}, polled, device).ok())
        << sms;
    if (spare < 8) {
      const absl::Status full =
          cuda::CanRouteDecomposeKOn({spec, spare + 1, DType::kBF16, DType::kBF16}, polled, device);
      EXPECT_EQ(full.code(), absl::StatusCode::kInvalidArgument) << sms;
      EXPECT_NE(std::string(full.message()).find("SMs"), std::string::npos) << full;
    }
  }
}

// The staged router pairs (a router CTA routes two tokens, a half each) are autotuner
// candidates beside every staged split count wherever the spec allows them: at most 256
// experts, and a spec one CTA routes token by token. The heuristic takes them where its
// staged rows are narrower than a chunk's tokens. Refused by name elsewhere.
TEST(DecomposeKConfig, StagedRouterPairsAreCandidatesWhereTheyRouteAndRefusedElsewhere) {
  EXPECT_TRUE(cuda::RouterPairsRoute(FindPreset("deepseek_v3").value().spec));
  EXPECT_TRUE(cuda::RouterPairsRoute(FindPreset("qwen3_30b").value().spec));
  EXPECT_FALSE(cuda::RouterPairsRoute(FindPreset("kimi_k2").value().spec));  // 384 experts
  for (const FamilyPreset& preset : FamilyPresets()) {
    for (int tokens : {32, 64, 100, 128, 256}) {
      const RouteProblem p{preset.spec, tokens, DType::kBF16, DType::kBF16};
      const std::string where = Where(p, kSxm);
      const std::vector<cuda::DecomposeKConfig> candidates =
          cuda::AutotuneCandidates(p, kSxm, /*pdl=*/true);
      auto has = [&](const cuda::DecomposeKConfig& c) {
        return std::any_of(
            candidates.begin(), candidates.end(),
            [&](const cuda::DecomposeKConfig& o) { return cuda::SameTunedConfig(o, c); });
      };
      int pairs = 0;
      for (const cuda::DecomposeKConfig& c : candidates) {
        cuda::DecomposeKConfig other = c;
        other.staged_router_pairs = !c.staged_router_pairs;
        if (c.staged_router_pairs) {  // beside the same launch without them
          ++pairs;
          EXPECT_TRUE(has(other)) << where << ": " << Describe(c);
        } else if (c.staged && cuda::CanRouteDecomposeKOn(p, other, kSxm).ok()) {
          EXPECT_TRUE(has(other)) << where << ": " << Describe(c) << " without pairs";
        }
      }
      const bool route = preset.spec.experts <= 256 && cuda::RouterPairsRoute(preset.spec);
      if (!route) {
        EXPECT_EQ(pairs, 0) << where;
      } else if (preset.spec.experts >= 160 && tokens >= 64 && tokens <= 128) {
        EXPECT_GT(pairs, 0) << where;  // the heuristic's own staged rows among them
      }
      // The heuristic takes them where its staged rows have fewer CTAs than a chunk's
      // tokens (a router would otherwise route several, a warp each) and enough for pairs.
      const cuda::DecomposeKConfig h = cuda::ChooseDecomposeKConfigFor(p, kSxm);
      const int row = (preset.spec.experts + 63) / 64 * h.k_splits;
      const int valid = std::min(tokens, 64);
      EXPECT_EQ(h.staged_router_pairs, h.staged && route && row < valid && 2 * row >= valid)
          << where;
    }
  }
  // GLM-4.5 at 128 tokens (3 expert tiles x 16 splits: 48 CTAs a row) takes them on the
  // SXM part; DeepSeek-V3 (4 x 16: a CTA a token) does not.
  const RouterSpec glm = FindPreset("glm4_moe").value().spec;
  const cuda::DecomposeKConfig glm128 =
      cuda::ChooseDecomposeKConfigFor({glm, 128, DType::kBF16, DType::kBF16}, kSxm);
  EXPECT_TRUE(glm128.staged && glm128.staged_router_pairs && glm128.k_splits == 16)
      << Describe(glm128);
  const cuda::DecomposeKConfig ds128 = cuda::ChooseDecomposeKConfigFor(
      {FindPreset("deepseek_v3").value().spec, 128, DType::kBF16, DType::kBF16}, kSxm);
  EXPECT_TRUE(ds128.staged && !ds128.staged_router_pairs) << Describe(ds128);
  auto expect_refused = [](const RouterSpec& spec, int splits, bool staged, const char* words) {
    const RouteProblem p{spec, 64, DType::kBF16, DType::kBF16};
    cuda::DecomposeKConfig c = cuda::ChooseStagedConfig(p, kSxm.sm_count, splits);
    ASSERT_TRUE(cuda::CanRouteDecomposeKOn(p, c, kSxm).ok()) << spec.family;
    c.staged = staged;
    c.staged_router_pairs = true;
    const absl::Status status = cuda::CanRouteDecomposeKOn(p, c, kSxm);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << words;
    EXPECT_NE(std::string(status.message()).find(words), std::string::npos) << status;
  };
  const RouterSpec qwen = FindPreset("qwen3_30b").value().spec;
  expect_refused(qwen, 0, /*staged=*/false, "applies to the staged tiles only");
  // 2 expert tiles x 3 splits: 6 CTAs a row route 12 of a chunk's 64 tokens.
  expect_refused(qwen, 3, true, "fewer than the chunk's 64");
  expect_refused(FindPreset("kimi_k2").value().spec, 0, true, "at most 256 experts");
  RouterSpec softmax_first = qwen;
  softmax_first.renormalize = false;  // the weights need the softmax over all 128 experts
  ASSERT_EQ(softmax_first.order, RoutingOrder::kScoreThenTopK);
  expect_refused(softmax_first, 0, true, "one CTA routes alone");
}

// Routing after the staged-tile GEMM (two launches) is a candidate from 64 tokens, for the
// 16-bit dtypes, with the GEMM's three tile shapes where their split CTAs fit the SMs; its
// config rules refuse, by name, whatever the two kernels cannot run.
TEST(DecomposeKConfig, RouteAfterGemmIsACandidateFromSixtyFourTokensAndCheckedByItsFields) {
  for (const FamilyPreset& preset : FamilyPresets()) {
    for (int tokens : {1, 16, 63, 64, 129, 256}) {
      for (DType dt : {DType::kBF16, DType::kFP16}) {
        const RouteProblem p{preset.spec, tokens, dt, dt};
        const std::string where = Where(p, kSxm);
        int after_gemm = 0;
        for (const cuda::DecomposeKConfig& c : cuda::AutotuneCandidates(p, kSxm, true)) {
          if (!c.route_after_gemm) continue;
          ++after_gemm;
          if (c.gemm_cublas) {  // from 128 tokens: cuBLASLt's GEMM, no tile fields
            EXPECT_GE(tokens, 128) << where;
            EXPECT_TRUE(c.gemm_tile == 0 && c.k_splits == 1 && !c.gemm_tma) << where;
            EXPECT_GT(cuda::DecomposeKWorkspaceBytes(p, c), size_t(32) << 20) << where;
            EXPECT_EQ(cuda::DecomposeKZeroedBytes(p, c), 0u) << where;
            continue;
          }
          EXPECT_TRUE(c.gemm_tma) << where;  // sm_90+
          const int rows_of_a = c.gemm_tile_m != 0 ? c.gemm_tile_m : c.gemm_tile;
          const int tiles = (tokens + rows_of_a - 1) / rows_of_a *
                            ((preset.spec.experts + c.gemm_tile - 1) / c.gemm_tile);
          EXPECT_LE(c.k_splits * tiles, kSxm.sm_count) << where << ": " << Describe(c);
        }
        // The 64-tile always fits (its split count is chosen for the SMs); the 128-tiles too
        // wherever their tiles are fewer than the SMs; cuBLASLt from 128 tokens.
        EXPECT_EQ(after_gemm, tokens >= 128 ? 4 : tokens >= 64 ? 3 : 0) << where;
      }
    }
  }
  const RouterSpec ds = FindPreset("deepseek_v3").value().spec;
  const RouteProblem p{ds, 256, DType::kBF16, DType::kBF16};
  cuda::DecomposeKConfig good;
  good.route_after_gemm = true;
  good.gemm_tile = 64;
  good.k_splits = 8;  // 16 output tiles x 8 splits: 128 CTAs, 14 of 112 stages each
  ASSERT_TRUE(cuda::CanRouteDecomposeKOn(p, good, kSxm).ok());
  // The workspace holds the GEMM's zeroed counters, then its partials and the logits.
  EXPECT_GE(cuda::DecomposeKWorkspaceBytes(p, good),
            cuda::DecomposeKZeroedBytes(p, good) + sizeof(float) * 256 * 256);
  EXPECT_EQ(cuda::TimelineEntries(p, good), 0u);
  auto expect_refused = [&](const RouteProblem& problem, void (*bend)(cuda::DecomposeKConfig&),
                            const char* words) {
    cuda::DecomposeKConfig c = good;
    bend(c);
    const absl::Status status = cuda::CanRouteDecomposeKOn(problem, c, kSxm);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << words;
    EXPECT_NE(std::string(status.message()).find(words), std::string::npos) << status;
  };
  auto none = [](cuda::DecomposeKConfig&) {};
  expect_refused({ds, 256, DType::kFP32, DType::kFP32}, none, "bf16 or fp16");
  expect_refused({ds, 256, DType::kBF16, DType::kFP16}, none, "same dtype");
  expect_refused(
      p, [](cuda::DecomposeKConfig& c) { c.polled = true; }, "GEMM's fields only");
  expect_refused(
      p, [](cuda::DecomposeKConfig& c) { c.cluster = 4; }, "GEMM's fields only");
  expect_refused(
      p, [](cuda::DecomposeKConfig& c) { c.gemm_cublas = true; }, "no tile, split");
  expect_refused(
      p, [](cuda::DecomposeKConfig& c) { c.staged = true; }, "GEMM's fields only");
  expect_refused(
      p, [](cuda::DecomposeKConfig& c) { c.gemm_tile = 32; }, "tile is 32");
  expect_refused(
      p, [](cuda::DecomposeKConfig& c) { c.gemm_tile_m = 64; }, "gemm_tile_m 64");
  expect_refused(
      p, [](cuda::DecomposeKConfig& c) { c.k_splits = 0; }, "split empty");
  // 112 stages: 100 splits of 2 stages leave the last 44 empty.
  expect_refused(
      p, [](cuda::DecomposeKConfig& c) { c.k_splits = 100; }, "split empty");
  expect_refused(
      p, [](cuda::DecomposeKConfig& c) { c.k_splits = 9; }, "144 CTAs");
  // cuBLASLt's: no tile fields, any device size where cuBLASLt loads.
  const cuda::DecomposeKConfig lt = cuda::ChooseRouteAfterCublasLtConfig();
  EXPECT_TRUE(cuda::CanRouteDecomposeKOn(p, lt, {1, false, true}).ok());
  const absl::Status unloadable = cuda::CanRouteDecomposeKOn(p, lt, {132, true, false});
  EXPECT_NE(std::string(unloadable.message()).find("cannot be loaded"), std::string::npos)
      << unloadable;
  cuda::DecomposeKConfig lt_tma = lt;
  lt_tma.gemm_tma = true;
  EXPECT_FALSE(cuda::CanRouteDecomposeKOn(p, lt_tma, kSxm).ok());
  int without = 0;
  for (const cuda::DecomposeKConfig& c : cuda::AutotuneCandidates(p, {132, true, false}, true))
    without += c.gemm_cublas;
  EXPECT_EQ(without, 0);  // not a candidate where it cannot be loaded
}

// Past the polled reduction's 128 tokens the heuristic took the arrival-counter and cluster
// kernels wherever the staged tiles did not apply or fit (H100, session 68, at 144 and 256
// tokens: 13-45 us where the tuner found 4.5-12.6). Now routers of 65-159 experts take the
// staged tiles there, and routers of 256+ experts whose staged grid cannot be resident route
// after cuBLASLt's GEMM (after the staged-tile GEMM's 64-tile where cuBLASLt cannot be
// loaded); routers of up to 64 experts take the cluster whose rank 0 routes, at the splits
// that fit (session 69: 3.1-4.3 us at 256 tokens where the old configs took 9.7-13.1).
TEST(DecomposeKConfig, HeuristicPastOneHundredTwentyEightTokensStagesOrRoutesAfterTheGemm) {
  constexpr cuda::DecomposeKDevice kNoLt{132, true, false};  // an SXM part without cuBLASLt
  auto config = [](const char* family, int tokens, DType dt, cuda::DecomposeKDevice d) {
    return cuda::ChooseDecomposeKConfigFor({FindPreset(family).value().spec, tokens, dt, dt}, d);
  };
  for (int tokens = 129; tokens <= 256; ++tokens) {
    const std::string where = absl::StrCat("t=", tokens);
    const cuda::DecomposeKConfig ds = config("deepseek_v3", tokens, DType::kBF16, kSxm);
    if (tokens <= 192) {  // 4 expert tiles x 3 chunks x 11 splits: 132 CTAs
      EXPECT_TRUE(ds.staged && !ds.route_after_gemm) << where << ": " << Describe(ds);
    } else {
      EXPECT_TRUE(ds.route_after_gemm && ds.gemm_cublas) << where << ": " << Describe(ds);
      const cuda::DecomposeKConfig tile = config("deepseek_v3", tokens, DType::kBF16, kNoLt);
      EXPECT_TRUE(tile.route_after_gemm && !tile.gemm_cublas && tile.gemm_tile == 64 &&
                  tile.gemm_tile_m == 0 && tile.k_splits == 8 && tile.gemm_tma)
          << where << ": " << Describe(tile);
    }
    const cuda::DecomposeKConfig kimi = config("kimi_k2", tokens, DType::kFP16, kSxm);
    EXPECT_TRUE(kimi.route_after_gemm && kimi.gemm_cublas) << where << ": " << Describe(kimi);
    const cuda::DecomposeKConfig kimi_tile = config("kimi_k2", tokens, DType::kFP16, kNoLt);
    EXPECT_TRUE(kimi_tile.route_after_gemm && kimi_tile.gemm_tile == 64)
        << where << ": " << Describe(kimi_tile);
    EXPECT_FALSE(config("kimi_k2", tokens, DType::kFP32, kSxm).route_after_gemm) << where;
    for (const char* family : {"qwen3_235b", "qwen3_30b", "gpt_oss_120b", "llama4_maverick"}) {
      const cuda::DecomposeKConfig c = config(family, tokens, DType::kBF16, kSxm);
      EXPECT_TRUE(c.staged) << family << " " << where << ": " << Describe(c);
    }
    // Routers of up to 64 experts: the cluster kernel whose rank 0 routes (8-token chunks),
    // at the one-pass split count (a power of two), halved until the grid has at most half
    // again as many CTAs as SMs (198 of 132): 4 of one expert block at 256 tokens (128
    // CTAs), 2 of two (DeepSeek-V2-Lite); Scout's 8 up to 192 tokens (192 CTAs).
    const struct {
      const char* family;
      int one_pass_splits;
    } small[] = {{"mixtral", 4}, {"gpt_oss_20b", 4}, {"llama4_scout", 8}, {"deepseek_v2_lite", 2}};
    for (const auto& [family, one_pass_splits] : small) {
      const RouterSpec spec = FindPreset(family).value().spec;
      const cuda::DecomposeKConfig c = config(family, tokens, DType::kBF16, kSxm);
      const int blocks = (spec.experts + 31) / 32, chunks = (tokens + 7) / 8;
      EXPECT_TRUE(!c.staged && !c.polled && !c.route_after_gemm && c.token_tiles == 1 &&
                  c.cluster == c.k_splits && c.cluster > 0)
          << family << " " << where << ": " << Describe(c);
      int splits = one_pass_splits;
      while (chunks * blocks * splits > 132 + 132 / 2) splits /= 2;
      EXPECT_EQ(c.k_splits, splits) << family << " " << where;
      if (tokens == 256) {
        EXPECT_EQ(c.k_splits, blocks == 1 ? 4 : 2) << family;
      }
    }
  }
  // Up to 128 tokens nothing routes after the GEMM, on any device.
  for (const FamilyPreset& preset : FamilyPresets())
    for (int sms : DeviceSmCounts())
      for (int tokens : {1, 64, 128})
        EXPECT_FALSE(cuda::ChooseDecomposeKConfigFor(
                         {preset.spec, tokens, DType::kBF16, DType::kBF16}, {sms, true})
                         .route_after_gemm);
  // A device too small for the GEMM's 16 output tiles keeps the cluster kernels; one of 16
  // SMs runs a split each.
  EXPECT_FALSE(config("deepseek_v3", 256, DType::kBF16, {7, true}).route_after_gemm);
  const cuda::DecomposeKConfig small = config("deepseek_v3", 256, DType::kBF16, {16, false});
  EXPECT_TRUE(small.route_after_gemm && small.k_splits == 1 && !small.gemm_tma) << Describe(small);
}

// The heuristic is total: a problem out of range gets a config (no division by zero: 0
// tokens had killed a C ABI caller with SIGFPE), and CanRouteDecomposeK refuses it by the
// problem's field, on every device size.
TEST(DecomposeKConfig, ProblemsOutOfRangeGetAConfigThatIsRefusedByTheirField) {
  const RouterSpec good = FindPreset("deepseek_v3").value().spec;
  struct Case {
    int tokens;
    void (*bend)(RouterSpec&);
    const char* field;
  };
  const Case cases[] = {
      {0, [](RouterSpec&) {}, "tokens"},
      {-5, [](RouterSpec&) {}, "tokens"},
      {kMaxTokens + 1, [](RouterSpec&) {}, "tokens"},
      {1, [](RouterSpec& s) { s.experts = 0; }, "experts"},
      {16, [](RouterSpec& s) { s.experts = -3; }, "experts"},
      {1, [](RouterSpec& s) { s.experts = 100000; }, "experts"},
      {1, [](RouterSpec& s) { s.hidden = 0; }, "hidden"},
      {64, [](RouterSpec& s) { s.hidden = -8; }, "hidden"},
      {1, [](RouterSpec& s) { s.top_k = 0; }, "top_k"},
      {1, [](RouterSpec& s) { s.n_group = 0; }, "n_group"},
      {128, [](RouterSpec& s) { s.n_group = 7; }, "n_group"},
      {1, [](RouterSpec& s) { s.topk_group = 0; }, "topk_group"},
  };
  for (int sms : DeviceSmCounts()) {
    const cuda::DecomposeKDevice device{sms, true};
    for (const Case& c : cases) {
      RouterSpec spec = good;
      c.bend(spec);
      const RouteProblem p{spec, c.tokens, DType::kBF16, DType::kBF16};
      ASSERT_FALSE(CheckRouteProblem(p).ok()) << c.field;
      const cuda::DecomposeKConfig config = cuda::ChooseDecomposeKConfigFor(p, device);
      const absl::Status status = cuda::CanRouteDecomposeKOn(p, config, device);
      EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field << " " << sms;
      EXPECT_NE(std::string(status.message()).find(c.field), std::string::npos)
          << c.field << ": " << status;
    }
  }
}

// The launchers' attributes (launch_attributes.h): what is on, each once, in the order
// asked; nothing for what is off.
TEST(LaunchAttributes, AttachesWhatIsOnInOrder) {
  cudaLaunchConfig_t config = {};
  cuda::LaunchAttributes none;
  none.Cooperative(false).Pdl(false).Cluster(0).AttachTo(config);
  EXPECT_EQ(config.numAttrs, 0u);
  EXPECT_EQ(config.attrs, nullptr);

  cuda::LaunchAttributes all;
  all.Cooperative(true).Pdl(true).Cluster(4).AttachTo(config);
  ASSERT_EQ(config.numAttrs, 3u);
  EXPECT_EQ(config.attrs[0].id, cudaLaunchAttributeCooperative);
  EXPECT_EQ(config.attrs[0].val.cooperative, 1);
  EXPECT_EQ(config.attrs[1].id, cudaLaunchAttributeProgrammaticStreamSerialization);
  EXPECT_EQ(config.attrs[1].val.programmaticStreamSerializationAllowed, 1);
  EXPECT_EQ(config.attrs[2].id, cudaLaunchAttributeClusterDimension);
  EXPECT_EQ(config.attrs[2].val.clusterDim.x, 4u);
  EXPECT_EQ(config.attrs[2].val.clusterDim.y, 1u);
  EXPECT_EQ(config.attrs[2].val.clusterDim.z, 1u);

  cuda::LaunchAttributes pdl;
  pdl.Cooperative(false).Pdl(true).Cluster(0).AttachTo(config);
  ASSERT_EQ(config.numAttrs, 1u);
  EXPECT_EQ(config.attrs[0].id, cudaLaunchAttributeProgrammaticStreamSerialization);

  // Asked again, an attribute is set again, not added twice.
  cuda::LaunchAttributes twice;
  twice.Cluster(2).Pdl(true).Cluster(8).Pdl(true).AttachTo(config);
  ASSERT_EQ(config.numAttrs, 2u);
  EXPECT_EQ(config.attrs[0].id, cudaLaunchAttributeClusterDimension);
  EXPECT_EQ(config.attrs[0].val.clusterDim.x, 8u);
  EXPECT_EQ(config.attrs[1].id, cudaLaunchAttributeProgrammaticStreamSerialization);
}

}  // namespace
}  // namespace moe
