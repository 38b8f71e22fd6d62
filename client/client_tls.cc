#include "client/client_tls.h"

#include <fstream>
#include <sstream>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

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

absl::Status ReadClientTls(const std::string& ca_path, const std::string& cert_path,
                           const std::string& key_path, ClientOptions* options) {
  if (cert_path.empty() != key_path.empty())
    return absl::InvalidArgumentError(
        absl::StrCat(cert_path.empty() ? "--tls_key" : "--tls_cert",
                     ": --tls_cert and --tls_key go together (a client certificate and its key)"));
  if (ca_path.empty()) {
    if (cert_path.empty()) return absl::OkStatus();
    return absl::InvalidArgumentError(
        "--tls_cert: needs --tls_ca (the CA that signed the server's certificate), which turns "
        "TLS on");
  }
  absl::StatusOr<std::string> ca = ReadPem("--tls_ca", ca_path);
  if (!ca.ok()) return ca.status();
  std::string cert, key;
  if (!cert_path.empty()) {
    absl::StatusOr<std::string> c = ReadPem("--tls_cert", cert_path);
    if (!c.ok()) return c.status();
    absl::StatusOr<std::string> k = ReadPem("--tls_key", key_path);
    if (!k.ok()) return k.status();
    cert = *std::move(c);
    key = *std::move(k);
  }
  options->tls_ca = *std::move(ca);
  options->tls_cert = std::move(cert);
  options->tls_key = std::move(key);
  return absl::OkStatus();
}

}  // namespace moe
