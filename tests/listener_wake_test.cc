// Waking civetweb's listener so the metrics endpoint stops at once (server/listener_wake.h):
// the host a wake connects to, the connection itself, and the metrics server's stop.
#include "server/listener_wake.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "server/metrics.h"

namespace moe {
namespace {

TEST(WakeHostOf, WildcardsBecomeLoopbackAndHostsStay) {
  EXPECT_EQ(WakeHostOf("0.0.0.0:9090"), "127.0.0.1");
  EXPECT_EQ(WakeHostOf("9090"), "127.0.0.1");
  EXPECT_EQ(WakeHostOf("+9090"), "127.0.0.1");
  EXPECT_EQ(WakeHostOf(":9090"), "127.0.0.1");
  EXPECT_EQ(WakeHostOf("[::]:9090"), "::1");
  EXPECT_EQ(WakeHostOf("[::1]:9090"), "::1");
  EXPECT_EQ(WakeHostOf("127.0.0.1:0"), "127.0.0.1");
  EXPECT_EQ(WakeHostOf("10.1.2.3:9090"), "10.1.2.3");
  EXPECT_EQ(WakeHostOf("metrics.local:9090"), "metrics.local");
}

// A listening loopback socket on a free port; closed on destruction.
struct Listener {
  int fd = -1, port = 0;
  Listener() {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), len) != 0 || listen(fd, 4) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      return;
    port = ntohs(a.sin_port);
  }
  ~Listener() {
    if (fd >= 0) close(fd);
  }
};

TEST(ConnectBriefly, ReachesAListenerAndReportsAClosedPort) {
  int closed_port = 0;
  {
    Listener l;
    ASSERT_GT(l.port, 0);
    EXPECT_TRUE(ConnectBriefly("127.0.0.1", l.port, 1000));
    closed_port = l.port;
  }
  EXPECT_FALSE(ConnectBriefly("127.0.0.1", closed_port, 1000));
  EXPECT_FALSE(ConnectBriefly("no such host.invalid", 9090, 1000));
}

// Debian's civetweb stops only when its listener's poll() returns: 1.3 s on an idle
// endpoint without the wake, ~30 ms with it. Not a speed test: the bound is 20x the
// measured time, and what it guards is a SIGTERM'd server that exits promptly.
TEST(MetricsHttpServer, StopsPromptlyWhenIdle) {
  MetricsRegistry registry;
  for (int round = 0; round < 3; ++round) {
    std::string error;
    auto server = MetricsHttpServer::Start("127.0.0.1:0", &registry, nullptr, &error);
    ASSERT_NE(server, nullptr) << error;
    ASSERT_GT(server->port(), 0);
    // Idle a while, as a serving endpoint is: its listener is then deep in poll().
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const auto start = std::chrono::steady_clock::now();
    server.reset();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_LT(seconds, 0.6) << "round " << round;
  }
}

}  // namespace
}  // namespace moe
