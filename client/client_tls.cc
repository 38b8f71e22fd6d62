#include "client/client_tls.h"

#include <fstream>
#include <sstream>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "server/listen_address.h"

namespace moe {
namespace {

absl::StatusOr<std::string> ReadPem(const char* flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  if (in) text << in.rdbuf();
  // A directory opens but reads nothing: one message for both.
  if (!in || text.str().empty())
    return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read '", path, "'"));
  if (text.str().find("-----BEGIN ") == std::string::npos)
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", path, "' holds no PEM block (no -----BEGIN line)"));
  return text.str();
}

}  // namespace

absl::Status ReadClientTls(const ClientTlsFlags& flags, ClientOptions* options) {
  if (flags.cert.empty() != flags.key.empty())
    return absl::InvalidArgumentError(
        absl::StrCat(flags.cert.empty() ? "--tls_key" : "--tls_cert",
                     ": --tls_cert and --tls_key go together (a client certificate and its key)"));
  if (flags.ca.empty()) {
    if (flags.cert.empty() && flags.server_name.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat(flags.cert.empty() ? "--tls_server_name" : "--tls_cert",
                     ": needs --tls_ca (the CA that signed the server's certificate), which turns "
                     "TLS on"));
  }
  if (!flags.server_name.empty()) {
    if (const std::string problem = HostProblem(flags.server_name); !problem.empty())
      return absl::InvalidArgumentError(
          absl::StrCat("--tls_server_name: '", flags.server_name, "' ", problem,
                       " (the name the server's certificate is checked for, without a port)"));
  }
  absl::StatusOr<std::string> ca = ReadPem("--tls_ca", flags.ca);
  if (!ca.ok()) return ca.status();
  std::string cert, key;
  if (!flags.cert.empty()) {
    absl::StatusOr<std::string> c = ReadPem("--tls_cert", flags.cert);
    if (!c.ok()) return c.status();
    absl::StatusOr<std::string> k = ReadPem("--tls_key", flags.key);
    if (!k.ok()) return k.status();
    cert = *std::move(c);
    key = *std::move(k);
  }
  options->tls_ca = *std::move(ca);
  options->tls_cert = std::move(cert);
  options->tls_key = std::move(key);
  options->tls_server_name = flags.server_name;
  return absl::OkStatus();
}

}  // namespace moe
