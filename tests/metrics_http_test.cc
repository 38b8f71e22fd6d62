// The metrics endpoint's health paths (server/metrics.h, server/serving_state.h): what
// /healthz and /readyz answer in each phase of the server's life, for each method, beside
// /metrics; and that a failed device stays failed whatever phase comes after.
#include <gtest/gtest.h>

#include <string>

#include "server/metrics.h"
#include "server/serving_state.h"
#include "tests/loopback_http.h"

namespace moe {
namespace {

// `method` `path` on 127.0.0.1:port: the whole response, or "".
std::string Exchange(int port, const std::string& method, const std::string& path) {
  return testing::LoopbackHttp(port, method, path, 10);
}

std::string StatusLine(const std::string& response) {
  return response.substr(0, response.find("\r\n"));
}

std::string Body(const std::string& response) {
  const size_t at = response.find("\r\n\r\n");
  return at == std::string::npos ? "(no body)" : response.substr(at + 4);
}

TEST(ServingState, PhasesInOrderAndAFailedDeviceStaysFailed) {
  ServingState state;
  EXPECT_EQ(state.phase(), ServingPhase::kLoading);
  state.Set(ServingPhase::kServing);
  EXPECT_EQ(state.phase(), ServingPhase::kServing);
  state.Set(ServingPhase::kDeviceFailed);
  for (ServingPhase later :
       {ServingPhase::kServing, ServingPhase::kDraining, ServingPhase::kLoading}) {
    state.Set(later);
    EXPECT_EQ(state.phase(), ServingPhase::kDeviceFailed) << ServingPhaseName(later);
  }
  EXPECT_STREQ(ServingPhaseName(ServingPhase::kLoading), "loading");
  EXPECT_STREQ(ServingPhaseName(ServingPhase::kServing), "serving");
  EXPECT_STREQ(ServingPhaseName(ServingPhase::kDeviceFailed), "device_failed");
  EXPECT_STREQ(ServingPhaseName(ServingPhase::kDraining), "draining");
}

// Liveness fails only for a failed device (a restart is the cure); readiness holds only
// while serving. Each answer names the phase, so a probe's failure event says why.
TEST(MetricsHttpServer, HealthAndReadinessFollowThePhase) {
  MetricsRegistry registry;
  registry.AddGauge("moe_test_gauge", "A gauge.")->Set({}, 3);
  ServingState state;
  std::string error;
  auto server = MetricsHttpServer::Start("127.0.0.1:0", &registry, &state, &error);
  ASSERT_NE(server, nullptr) << error;
  struct Expected {
    ServingPhase phase;
    const char *healthz, *readyz;
  };
  // Device failure last: nothing comes after it.
  for (const Expected& want : {
           Expected{ServingPhase::kLoading, "alive: loading\n", "not ready: loading\n"},
           Expected{ServingPhase::kServing, "alive: serving\n", "ready: serving\n"},
           Expected{ServingPhase::kDraining, "alive: draining\n", "not ready: draining\n"},
           Expected{ServingPhase::kDeviceFailed, "not alive: device_failed\n",
                    "not ready: device_failed\n"},
       }) {
    state.Set(want.phase);
    const std::string phase = ServingPhaseName(want.phase);
    const bool alive = IsAlive(want.phase), ready = IsReady(want.phase);
    const std::string healthz = Exchange(server->port(), "GET", "/healthz");
    EXPECT_EQ(StatusLine(healthz), alive ? "HTTP/1.1 200 OK" : "HTTP/1.1 503 Service Unavailable")
        << phase;
    EXPECT_EQ(Body(healthz), want.healthz) << phase;
    const std::string readyz = Exchange(server->port(), "GET", "/readyz");
    EXPECT_EQ(StatusLine(readyz), ready ? "HTTP/1.1 200 OK" : "HTTP/1.1 503 Service Unavailable")
        << phase;
    EXPECT_EQ(Body(readyz), want.readyz) << phase;
    EXPECT_NE(readyz.find("Cache-Control: no-store\r\n"), std::string::npos) << readyz;
    // HEAD: the same status and length, no body.
    const std::string head = Exchange(server->port(), "HEAD", "/readyz");
    EXPECT_EQ(StatusLine(head), StatusLine(readyz)) << phase;
    EXPECT_NE(head.find("Content-Length: " + std::to_string(std::string(want.readyz).size())),
              std::string::npos)
        << head;
    EXPECT_EQ(Body(head), "") << phase;
    // The scrape is there in every phase.
    const std::string scrape = Exchange(server->port(), "GET", "/metrics");
    EXPECT_EQ(StatusLine(scrape), "HTTP/1.1 200 OK") << phase;
    EXPECT_NE(Body(scrape).find("moe_test_gauge 3\n"), std::string::npos) << scrape;
  }
  for (const char* method : {"POST", "PUT", "DELETE"}) {
    for (const char* path : {"/healthz", "/readyz"}) {
      const std::string other = Exchange(server->port(), method, path);
      EXPECT_EQ(StatusLine(other), "HTTP/1.1 405 Method Not Allowed") << method << " " << path;
      EXPECT_NE(other.find("Allow: GET, HEAD\r\n"), std::string::npos) << other;
    }
  }
  // Only the paths themselves.
  EXPECT_EQ(StatusLine(Exchange(server->port(), "GET", "/healthzz")), "HTTP/1.1 404 Not Found");
}

// Without a state (a caller that only exports metrics) the health paths are not served.
TEST(MetricsHttpServer, NoStateNoHealthPaths) {
  MetricsRegistry registry;
  std::string error;
  auto server = MetricsHttpServer::Start("127.0.0.1:0", &registry, nullptr, &error);
  ASSERT_NE(server, nullptr) << error;
  EXPECT_EQ(StatusLine(Exchange(server->port(), "GET", "/healthz")), "HTTP/1.1 404 Not Found");
  EXPECT_EQ(StatusLine(Exchange(server->port(), "GET", "/readyz")), "HTTP/1.1 404 Not Found");
  EXPECT_EQ(StatusLine(Exchange(server->port(), "GET", "/metrics")), "HTTP/1.1 200 OK");
}

}  // namespace
}  // namespace moe
