// The clients' TLS flags (--tls_ca, --tls_cert, --tls_key, --tls_server_name) read into
// ClientOptions, so moe-router and moe-router-bench reach a server started with --tls_cert
// and --tls_key (and --tls_client_ca: mutual TLS). Stateless; thread-safe.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "client/router_client.h"

namespace moe {

// The flags' values: PEM file paths, and the name to check the server's certificate for.
struct ClientTlsFlags {
  std::string ca, cert, key;
  std::string server_name;
};

// Reads the PEM files named by the flags into `options` (tls_ca, tls_cert, tls_key) and sets
// tls_server_name. All empty: plaintext, `options` untouched. --tls_ca (the CA that signed
// the server's certificate) turns TLS on; --tls_cert and --tls_key (a client certificate and
// its key, for mutual TLS) go together and need it, as --tls_server_name does. A file that
// cannot be read, or holds no PEM block, and a server name that is no host name or address
// are INVALID_ARGUMENT naming the flag: gRPC would only say "Failed to create secure client
// channel" at the first call.
absl::Status ReadClientTls(const ClientTlsFlags& flags, ClientOptions* options);

}  // namespace moe
