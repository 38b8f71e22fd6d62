// The listen-address flags (--address, --metrics_address) checked before anything binds.
// gRPC and civetweb both take a port past 65535 modulo 65536 (70000 listened on 4464),
// civetweb an IPv4 octet past 255 modulo 256 (999.1.1.1 listened on the multicast address
// 231.1.1.1) and every port of a comma-separated list: a typo served somewhere else.
// The host and port rules are shared with the clients' target check
// (client/target_address.h). Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace moe {

// OK for HOST:PORT, where HOST is an IPv4 address, an IPv6 address in brackets or a host
// name, and PORT is 0..65535; with `port_alone`, a bare PORT too (civetweb: every
// interface). Without it, gRPC's Unix-socket forms (unix:PATH, unix-abstract:NAME) pass as
// they are. Else INVALID_ARGUMENT naming `flag`, the address and what is wrong with it.
absl::Status CheckListenAddress(absl::string_view flag, absl::string_view address, bool port_alone);

// What is wrong with `port` as a port number `lowest`..65535 ("has port 70000, outside
// 0..65535"); empty when nothing. Digits only: gRPC's resolver reads "4464x" as 4464.
std::string PortProblem(absl::string_view port, uint32_t lowest);

// What is wrong with `host` as the HOST of HOST:PORT (an IPv4 address, an IPv6 address in
// brackets or a host name); empty when nothing.
std::string HostProblem(absl::string_view host);

}  // namespace moe
