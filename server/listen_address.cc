#include "server/listen_address.h"

#include <arpa/inet.h>

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace moe {
namespace {

bool AllOf(absl::string_view s, bool (*ok)(char)) {
  for (char c : s)
    if (!ok(c)) return false;
  return true;
}

bool IsDigit(char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); }
bool IsDigitOrDot(char c) { return IsDigit(c) || c == '.'; }
bool IsHostNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.';
}

bool ParsesAs(int family, absl::string_view text) {
  unsigned char bytes[16];
  return inet_pton(family, std::string(text).c_str(), bytes) == 1;
}

}  // namespace

std::string PortProblem(absl::string_view port, uint32_t lowest) {
  uint32_t number = 0;
  if (port.empty() || port.size() > 5 || !AllOf(port, IsDigit) || !absl::SimpleAtoi(port, &number))
    return absl::StrCat("has no port number ", lowest, "..65535 ('", port, "')");
  if (number < lowest || number > 65535)
    return absl::StrCat("has port ", number, ", outside ", lowest, "..65535");
  return "";
}

std::string HostProblem(absl::string_view host) {
  if (host.empty()) return "has no host before the port";
  if (host.front() == '[') {
    if (host.size() < 2 || host.back() != ']' ||
        !ParsesAs(AF_INET6, host.substr(1, host.size() - 2)))
      return absl::StrCat("has ", host, ", not an IPv6 address in brackets");
    return "";
  }
  if (AllOf(host, IsDigitOrDot)) {
    if (!ParsesAs(AF_INET, host)) return absl::StrCat("has ", host, ", not an IPv4 address");
    return "";
  }
  if (!AllOf(host, IsHostNameChar))
    return absl::StrCat("has '", host,
                        "', not a host name or address (IPv6 addresses go in brackets)");
  return "";
}

absl::Status CheckListenAddress(absl::string_view flag, absl::string_view address,
                                bool port_alone) {
  const std::string example = port_alone ? "0.0.0.0:9090 or 9090" : "0.0.0.0:50051";
  auto refuse = [&](const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", address, "' ", why, " (HOST:PORT, e.g. ", example, ")"));
  };
  if (!port_alone &&
      (absl::StartsWith(address, "unix:") || absl::StartsWith(address, "unix-abstract:")))
    return absl::OkStatus();
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos && !port_alone) return refuse("has no port");
  const absl::string_view port =
      colon == absl::string_view::npos ? address : address.substr(colon + 1);
  if (std::string why = PortProblem(port, 0); !why.empty()) return refuse(why);
  if (colon == absl::string_view::npos) return absl::OkStatus();
  const absl::string_view host = address.substr(0, colon);
  if (host.empty()) return refuse("has no host before the port (0.0.0.0: every interface)");
  if (std::string why = HostProblem(host); !why.empty()) return refuse(why);
  return absl::OkStatus();
}

}  // namespace moe
