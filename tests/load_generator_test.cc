// moe-router-bench's own option checks and how many requests it prepares (the checks
// against a model's limits run against the real server: tests/python's CLI test).
#include "client/load_generator.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

namespace moe {
namespace {

// The message of CheckLoadOptions' refusal, or "" where it accepts.
std::string Refusal(const LoadOptions& o) {
  const absl::Status s = CheckLoadOptions(o);
  if (s.ok()) return "";
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  return std::string(s.message());
}

TEST(LoadOptions, EachBadValueIsRefusedByItsFlag) {
  EXPECT_EQ(Refusal(LoadOptions{}), "");
  struct Case {
    void (*set)(LoadOptions&);
    const char* flag;
  };
  const Case cases[] = {
      {[](LoadOptions& o) { o.address = "localhost:70000"; }, "--address: "},
      {[](LoadOptions& o) { o.tokens = 0; }, "--tokens: "},
      {[](LoadOptions& o) { o.layers = -2; }, "--layers: "},
      {[](LoadOptions& o) { o.concurrency = 0; }, "--concurrency: "},
      {[](LoadOptions& o) { o.concurrency = kMaxConcurrency + 1; }, "--concurrency: "},
      {[](LoadOptions& o) { o.rate = -5; }, "--rate: "},
      {[](LoadOptions& o) { o.rate = NAN; }, "--rate: "},
      {[](LoadOptions& o) { o.rate = kMaxRate * 2; }, "--rate: "},
      {[](LoadOptions& o) { o.duration_s = 0; }, "--duration_s: "},
      {[](LoadOptions& o) { o.duration_s = NAN; }, "--duration_s: "},
      {[](LoadOptions& o) { o.duration_s = INFINITY; }, "--duration_s: "},
      {[](LoadOptions& o) { o.warmup_s = -1; }, "--warmup_s: "},
      {[](LoadOptions& o) { o.warmup_s = NAN; }, "--warmup_s: "},
      {[](LoadOptions& o) { o.give_up_s = -1; }, "--give_up_s: "},
      {[](LoadOptions& o) { o.give_up_s = NAN; }, "--give_up_s: "},
  };
  for (const Case& c : cases) {
    LoadOptions o;
    c.set(o);
    EXPECT_EQ(Refusal(o).rfind(c.flag, 0), 0u) << c.flag << " got '" << Refusal(o) << "'";
  }
  // The edges that are allowed.
  LoadOptions edge;
  edge.concurrency = kMaxConcurrency;
  edge.rate = kMaxRate;
  edge.duration_s = kMaxSeconds;
  edge.warmup_s = 0;
  edge.give_up_s = 0;  // never stop
  EXPECT_EQ(Refusal(edge), "");
}

TEST(LoadOptions, PreparesARequestALayerWithinItsMemory) {
  LoadOptions o;
  o.tokens = 16;
  o.layers = 3;
  EXPECT_EQ(PreparedRequestCount(o, 7168), 16);  // at least 16: ids 1..16 in turn
  o.layers = 58;                                 // DeepSeek-V3's MoE layers
  EXPECT_EQ(PreparedRequestCount(o, 7168), 58);  // every layer visited
  o.tokens = 256;
  o.layers = 61;  // 3.7 MB a request: 61 fit 256 MiB
  EXPECT_EQ(PreparedRequestCount(o, 7168), 61);
  o.layers = 200;  // 73 fit
  const int count = PreparedRequestCount(o, 7168);
  EXPECT_EQ(count, int(kMaxPreparedBytes / (256 * 7168 * 2)));
  EXPECT_LE(size_t(count) * 256 * 7168 * 2, kMaxPreparedBytes);
  o.layers = 1 << 20;  // the echo server's layer count
  EXPECT_EQ(PreparedRequestCount(o, 16384), 32);
}

}  // namespace
}  // namespace moe
