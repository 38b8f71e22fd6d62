// The batching decision with a fake clock.
#include "server/batching_policy.h"

#include <gtest/gtest.h>

namespace moe {
namespace {

TEST(BatchingPolicy, LaunchesAtOnceWithoutADelay) {
  BatchingLimits l{256, 0};
  EXPECT_TRUE(DecideBatch(1000, 1000, 1, l).launch_now);
}

TEST(BatchingPolicy, WaitsToFillUntilTheDelayPasses) {
  BatchingLimits l{256, 500};
  auto d = DecideBatch(1000, 900, 10, l);
  EXPECT_FALSE(d.launch_now);
  EXPECT_EQ(d.wait_until_us, 1400);
  EXPECT_FALSE(DecideBatch(1399, 900, 10, l).launch_now);
  EXPECT_TRUE(DecideBatch(1400, 900, 10, l).launch_now);
}

TEST(BatchingPolicy, AFullBatchLaunchesAtOnce) {
  BatchingLimits l{64, 1'000'000};
  EXPECT_TRUE(DecideBatch(0, 0, 64, l).launch_now);
  EXPECT_TRUE(DecideBatch(0, 0, 100, l).launch_now);
  EXPECT_FALSE(DecideBatch(0, 0, 63, l).launch_now);
}

}  // namespace
}  // namespace moe
