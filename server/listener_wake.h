// Waking a listener thread that is blocked in poll() on its listening socket, by opening
// (and at once closing) a TCP connection to it. civetweb's mg_stop sets a stop flag and
// then joins its listener thread, which only sees the flag when its poll() of the
// listening sockets returns: 1.3 s on an idle server with Debian's civetweb 1.15, time a
// SIGTERM'd pod spends doing nothing.
#pragma once

#include <string>

namespace moe {

// The host to connect to for a listener bound to `listen_address` ("host:port", "[v6]:port",
// "port" or "+port", civetweb's forms): a wildcard or missing host becomes the loopback
// address of its family.
std::string WakeHostOf(const std::string& listen_address);

// Connects to host:port and closes the connection; waits at most `timeout_ms` for the
// connection to be established. Returns whether it was. Never throws, never blocks longer.
bool ConnectBriefly(const std::string& host, int port, int timeout_ms);

}  // namespace moe
