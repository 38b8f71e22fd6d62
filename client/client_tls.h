// The clients' TLS flags (--tls_ca, --tls_cert, --tls_key) read into ClientOptions, so
// moe-router and moe-router-bench reach a server started with --tls_cert and --tls_key (and
// --tls_client_ca: mutual TLS). Stateless; thread-safe.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "client/router_client.h"

namespace moe {

// Reads the PEM files named by the flags into `options` (tls_ca, tls_cert, tls_key). All
// empty: plaintext, `options` untouched. --tls_ca (the CA that signed the server's
// certificate) turns TLS on; --tls_cert and --tls_key (a client certificate and its key, for
// mutual TLS) go together and need it. A file that cannot be read, or holds no PEM block,
// is INVALID_ARGUMENT naming its flag: gRPC would only say "Failed to create secure client
// channel" at the first call.
absl::Status ReadClientTls(const std::string& ca_path, const std::string& cert_path,
                           const std::string& key_path, ClientOptions* options);

}  // namespace moe
