#include "client/target_address.h"

#include <algorithm>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/listen_address.h"

namespace moe {
namespace {

// What is wrong with HOST[:PORT] as a DNS name or address ("" when nothing). An IPv6
// address without brackets has no port: gRPC splits host and port only at "]:".
std::string HostPortProblem(absl::string_view host_port) {
  absl::string_view host = host_port, port;
  bool has_port = false;
  if (absl::StartsWith(host_port, "[")) {
    const size_t close = host_port.find(']');
    if (close != absl::string_view::npos && close + 1 < host_port.size()) {
      if (host_port[close + 1] != ':')
        return absl::StrCat("has '", host_port.substr(close + 1), "' after ",
                            host_port.substr(0, close + 1), " (a port goes after ']:')");
      host = host_port.substr(0, close + 1);
      port = host_port.substr(close + 2);
      has_port = true;
    }
  } else if (std::count(host_port.begin(), host_port.end(), ':') > 1) {
    const std::string bracketed = absl::StrCat("[", host_port, "]");
    if (!HostProblem(bracketed).empty())
      return absl::StrCat("has '", host_port, "', not a host name or address");
    return "";
  } else if (const size_t colon = host_port.find(':'); colon != absl::string_view::npos) {
    host = host_port.substr(0, colon);
    port = host_port.substr(colon + 1);
    has_port = true;
  }
  if (std::string why = HostProblem(host); !why.empty()) return why;
  return has_port ? PortProblem(port, 1) : "";
}

// ipv4:/ipv6: list elements: ADDR:PORT of that family ([ADDR]:PORT for IPv6), no host
// names. gRPC needs the port there ("no port given for ipv4 scheme").
std::string AddressListProblem(absl::string_view list, bool ipv6) {
  for (absl::string_view element : absl::StrSplit(list, ',')) {
    const size_t colon = element.rfind(':');
    if (ipv6 ? !absl::StartsWith(element, "[") || element.find("]:") == absl::string_view::npos
             : colon == absl::string_view::npos || element.substr(0, colon).find_first_not_of(
                                                       "0123456789.") != absl::string_view::npos)
      return absl::StrCat("has '", element, "', not ",
                          ipv6 ? "[an IPv6 address]" : "an IPv4 address", ":PORT");
    if (std::string why = HostPortProblem(element); !why.empty()) return why;
  }
  return "";
}

std::string Problem(absl::string_view target) {
  if (target.empty()) return "is empty";
  for (absl::string_view scheme : {"unix:", "unix-abstract:", "vsock:"}) {
    if (absl::StartsWith(target, scheme))
      return target.size() > scheme.size() ? "" : absl::StrCat("has nothing after ", scheme);
  }
  if (absl::ConsumePrefix(&target, "ipv4:")) return AddressListProblem(target, false);
  if (absl::ConsumePrefix(&target, "ipv6:")) return AddressListProblem(target, true);
  if (absl::ConsumePrefix(&target, "dns:") && absl::ConsumePrefix(&target, "//")) {
    const size_t slash = target.find('/');  // past the DNS server to ask, often empty
    if (slash == absl::string_view::npos) return "has no '/' after dns://AUTHORITY";
    target.remove_prefix(slash + 1);
  }
  // Another resolver's SCHEME://... (xds:///NAME): not this check's to judge.
  const size_t scheme_end = target.find("://");
  if (scheme_end != absl::string_view::npos && scheme_end > 0 &&
      target.substr(0, scheme_end).find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789+-.") ==
          absl::string_view::npos)
    return "";
  return HostPortProblem(target);
}

}  // namespace

absl::Status CheckTargetAddress(absl::string_view flag, absl::string_view target) {
  const std::string why = Problem(target);
  if (why.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(flag, ": '", target, "' ", why,
                   " (HOST:PORT, e.g. localhost:50051, or a gRPC target: dns:///HOST:PORT, "
                   "ipv4:ADDR:PORT, unix:PATH)"));
}

absl::Status CheckLoadBalancing(absl::string_view flag, absl::string_view policy) {
  if (policy.empty() || policy == "pick_first" || policy == "round_robin") return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(flag, ": '", policy, "' is not pick_first or round_robin"));
}

}  // namespace moe
