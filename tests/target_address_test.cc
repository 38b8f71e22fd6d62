// The clients' --address check (client/target_address.h) against tests/target_addresses.tsv,
// the cases the Python client's check is held to as well: every target form gRPC's client
// takes passes, and what it would have sent to another port, or refused only with "Failed
// to create secure client channel", is refused by name.
#include "client/target_address.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace moe {
namespace {

struct Case {
  std::string target, why;  // why empty: the target passes
};

std::vector<Case> ReadCases() {
  std::ifstream in(MOE_TARGET_ADDRESSES);
  std::vector<Case> cases;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t tab = line.find('\t');
    EXPECT_NE(tab, std::string::npos) << "no tab in '" << line << "'";
    if (tab != std::string::npos) cases.push_back({line.substr(0, tab), line.substr(tab + 1)});
  }
  return cases;
}

TEST(TargetAddress, EveryCaseOfTheSharedTable) {
  const std::vector<Case> cases = ReadCases();
  int passing = 0;
  for (const Case& c : cases) {
    const absl::Status s = CheckTargetAddress("--address", c.target);
    if (c.why.empty()) {
      EXPECT_TRUE(s.ok()) << "'" << c.target << "': " << s;
      ++passing;
      continue;
    }
    ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << "'" << c.target << "': " << s;
    const std::string message(s.message());
    EXPECT_EQ(message.rfind("--address: '" + c.target + "' " + c.why, 0), 0u)
        << c.target << ": '" << message << "'";
    EXPECT_NE(message.find("(HOST:PORT, e.g. localhost:50051"), std::string::npos) << message;
  }
  // The table was read: a missing or emptied file passes nothing.
  EXPECT_GE(passing, 15);
  EXPECT_GE(cases.size() - passing, 15u);
}

TEST(TargetAddress, LoadBalancingIsOneGrpcNeedsNoConfigFor) {
  for (const char* policy : {"", "pick_first", "round_robin"})
    EXPECT_TRUE(CheckLoadBalancing("--load_balancing", policy).ok()) << policy;
  // gRPC logged these and used pick_first.
  for (const char* policy : {"foo", "grpclb", "Round_Robin"}) {
    const absl::Status s = CheckLoadBalancing("--load_balancing", policy);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << policy;
    EXPECT_EQ(s.message(),
              absl::StrCat("--load_balancing: '", policy, "' is not pick_first or round_robin"));
  }
}

}  // namespace
}  // namespace moe
