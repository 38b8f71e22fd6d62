// The listen-address flags' check (server/listen_address.h): what gRPC and civetweb would
// have bound somewhere else is refused by name, and every form they serve passes.
#include "server/listen_address.h"

#include <gtest/gtest.h>

#include <string>

namespace moe {
namespace {

std::string Refusal(const std::string& address, bool port_alone) {
  const absl::Status s = CheckListenAddress("--flag", address, port_alone);
  if (s.ok()) return "";
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  return std::string(s.message());
}

TEST(ListenAddress, TheFormsTheServersServePass) {
  for (const char* address : {"0.0.0.0:50051", "127.0.0.1:0", "10.1.2.3:65535", "[::]:50051",
                              "[::1]:9090", "localhost:50051", "router-0.svc.local:50051"}) {
    EXPECT_EQ(Refusal(address, false), "") << address;
    EXPECT_EQ(Refusal(address, true), "") << address;
  }
  EXPECT_EQ(Refusal("9090", true), "");
  EXPECT_EQ(Refusal("unix:/tmp/moe.sock", false), "");
  EXPECT_EQ(Refusal("unix-abstract:moe", false), "");
}

TEST(ListenAddress, WhatWouldBindElsewhereIsRefusedByName) {
  struct Case {
    const char* address;
    bool port_alone;
    const char* why;
  };
  const Case cases[] = {
      // Both servers took these modulo 65536 / 256: 4464, 231.1.1.1.
      {"127.0.0.1:70000", false, "has port 70000, outside 0..65535"},
      {"127.0.0.1:70000", true, "has port 70000, outside 0..65535"},
      {"999.1.1.1:80", true, "has 999.1.1.1, not an IPv4 address"},
      {"1.2.3:80", false, "has 1.2.3, not an IPv4 address"},
      // civetweb's lists and suffixes (several ports, TLS, redirects).
      {"9090,9091", true, "has no port number 0..65535 ('9090,9091')"},
      {"127.0.0.1:9090s", true, "has no port number 0..65535 ('9090s')"},
      {"127.0.0.1:abc", false, "has no port number 0..65535 ('abc')"},
      {"127.0.0.1:", false, "has no port number 0..65535 ('')"},
      {"127.0.0.1:-5", false, "has no port number 0..65535 ('-5')"},
      {"9090", false, "has no port"},
      {":9090", true, "has no host before the port"},
      {"[::1:9090", false, "has [::1, not an IPv6 address in brackets"},
      {"[nope]:9090", false, "has [nope], not an IPv6 address in brackets"},
      {"::1:9090", false, "has '::1', not a host name or address (IPv6 addresses go in brackets)"},
      {"a b:9090", false, "has 'a b', not a host name or address"},
      {"unix:/tmp/s", true, "has no port number"},  // the metrics endpoint is TCP only
  };
  for (const Case& c : cases) {
    const std::string message = Refusal(c.address, c.port_alone);
    EXPECT_EQ(message.rfind(std::string("--flag: '") + c.address + "' " + c.why, 0), 0u)
        << c.address << ": '" << message << "'";
    EXPECT_NE(message.find("(HOST:PORT, e.g. 0.0.0.0:"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace moe
