// The clients' --address (a gRPC target) checked before a channel is made. gRPC's DNS
// resolver takes a port past 65535 modulo 65536 and a port with junk after it by its digits:
// localhost:70000 and localhost:4464x both reached a server on port 4464. Its ipv4: and ipv6:
// schemes refuse a bad port, but only as "Failed to create secure client channel".
// Stateless; thread-safe.
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace moe {

// OK for the targets gRPC's client takes: HOST[:PORT] (an IPv4 address, an IPv6 address in
// brackets or a host name; PORT 1..65535, gRPC's default 443 without one),
// dns:[//AUTHORITY/]HOST[:PORT], ipv4:ADDR[:PORT][,...], ipv6:[ADDR]:PORT[,...],
// unix:PATH, unix-abstract:NAME, vsock:CID:PORT, and any other SCHEME://... (a resolver
// this check does not know, left to gRPC). Else INVALID_ARGUMENT naming `flag`, the target
// and what is wrong with it.
absl::Status CheckTargetAddress(absl::string_view flag, absl::string_view target);

// OK for the load-balancing policies a client may ask for without a service config: ""
// (gRPC's default), "pick_first", "round_robin". gRPC logs an unknown name ("foo", or one
// that needs a config, "grpclb") and falls back to pick_first: the balancing asked for would
// silently not happen. Refused here by `flag`, naming the choices.
absl::Status CheckLoadBalancing(absl::string_view flag, absl::string_view policy);

}  // namespace moe
