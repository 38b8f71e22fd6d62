// moe-router-bench: load generator for moe-router-server (and the echo server in bench/).
#include <cstdio>
#include <fstream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "client/client_tls.h"
#include "client/load_generator.h"
#include "kernels/flags_usage.h"

ABSL_FLAG(std::string, address, "localhost:50051",
          "Server address: HOST:PORT or a gRPC target (dns:///HOST:PORT, ipv4:A:P,B:P, unix:PATH)");
ABSL_FLAG(std::string, load_balancing, "",
          "pick_first (gRPC's default when empty) or round_robin: each call to the next of the "
          "addresses the target resolves to (a headless Service's pods: --address "
          "dns:///moe-router:50051)");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA that signed the server's certificate: turns TLS on (the server's --tls_cert)");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM client certificate, with --tls_key (mutual TLS: the server's --tls_client_ca)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_server_name, "",
          "The name the server's certificate carries, where --address differs (127.0.0.1 or a "
          "pod IP for a certificate of moe-router.example); needs --tls_ca");
ABSL_FLAG(std::string, model, "demo-deepseek-v3", "Model to route");
ABSL_FLAG(int, layers, 1, "Requests rotate over layers 0..layers-1");
ABSL_FLAG(int, tokens, 1, "Tokens per request");
ABSL_FLAG(int, concurrency, 1, "Closed loop: concurrent callers, one request in flight each");
ABSL_FLAG(double, rate, 0, "Open loop: requests per second (0: closed loop)");
ABSL_FLAG(bool, stream, false, "Closed loop over RouteStream (one stream per caller)");
ABSL_FLAG(double, duration_s, 10, "Measured seconds");
ABSL_FLAG(double, warmup_s, 1, "Unmeasured seconds first");
ABSL_FLAG(double, give_up_s, 5,
          "Wait up to this many seconds for the server to be serving (reachable, its models "
          "loaded) before the run, and stop the run (the report so far printed, exit 1) once no "
          "call has reached the server (every one UNAVAILABLE) for this long; 0: no wait, never "
          "stop. Callers back off (1 to 100 ms) while it is unreachable either way");
ABSL_FLAG(std::string, json, "", "Also write the report as JSON to this file");
ABSL_FLAG(bool, progress, true, "Print a progress line each second");
ABSL_FLAG(bool, same_host_timing, false,
          "The server runs on this host: report the transport's way in (send to the server's "
          "arrival stamp) and way out (answer ready to received) from the server's monotonic "
          "clock stamps; meaningless across hosts");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Load generator for moe-router-server.\n"
      "  moe-router-bench --model demo-deepseek-v3 --concurrency 64 --tokens 16 --duration_s 10\n"
      "  moe-router-bench --rate 5000 --duration_s 30 --json out.json");
  moe::SetFlagsUsage("moe-router-bench", __FILE__);
  absl::ParseCommandLine(argc, argv);
  moe::LoadOptions o;
  o.address = absl::GetFlag(FLAGS_address);
  o.client.load_balancing = absl::GetFlag(FLAGS_load_balancing);
  o.model = absl::GetFlag(FLAGS_model);
  o.layers = absl::GetFlag(FLAGS_layers);
  o.tokens = absl::GetFlag(FLAGS_tokens);
  o.concurrency = absl::GetFlag(FLAGS_concurrency);
  o.rate = absl::GetFlag(FLAGS_rate);
  o.stream = absl::GetFlag(FLAGS_stream);
  o.duration_s = absl::GetFlag(FLAGS_duration_s);
  o.warmup_s = absl::GetFlag(FLAGS_warmup_s);
  o.give_up_s = absl::GetFlag(FLAGS_give_up_s);
  o.progress = absl::GetFlag(FLAGS_progress);
  o.same_host_timing = absl::GetFlag(FLAGS_same_host_timing);
  absl::Status bad =
      moe::ReadClientTls({absl::GetFlag(FLAGS_tls_ca), absl::GetFlag(FLAGS_tls_cert),
                          absl::GetFlag(FLAGS_tls_key), absl::GetFlag(FLAGS_tls_server_name)},
                         &o.client);
  if (bad.ok()) bad = moe::CheckLoadOptions(o);
  if (!bad.ok()) {
    std::fprintf(stderr, "moe-router-bench: %s\n", std::string(bad.message()).c_str());
    return 2;
  }
  auto report = moe::RunLoad(o);
  if (!report.ok()) {
    std::fprintf(stderr, "moe-router-bench: %s\n", std::string(report.status().message()).c_str());
    return 1;
  }
  std::printf("%s\n", report->ToText().c_str());
  if (!absl::GetFlag(FLAGS_json).empty())
    std::ofstream(absl::GetFlag(FLAGS_json)) << report->ToJson(o) << "\n";
  if (!report->stopped_early.empty()) {
    std::fprintf(stderr, "moe-router-bench: stopped early: %s\n", report->stopped_early.c_str());
    return 1;
  }
  return 0;
}
