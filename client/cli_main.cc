// moe-router: command-line client.
//   moe-router [--address HOST:PORT] models
//   moe-router [--address HOST:PORT] health
//   moe-router [--address HOST:PORT] route MODEL [--layer N] [--tokens N] [--seed N]
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "client/client_tls.h"
#include "client/npy.h"
#include "client/router_client.h"
#include "client/target_address.h"
#include "kernels/build_version.h"
#include "kernels/dtype.h"
#include "kernels/router_spec.h"

namespace {

constexpr char kUsage[] =
    "usage: moe-router [--address HOST:PORT] [--load_balancing round_robin]\n"
    "                  [--tls_ca FILE [--tls_cert FILE --tls_key FILE]\n"
    "                  [--tls_server_name NAME]] COMMAND\n"
    "commands:\n"
    "  models                         list the loaded models\n"
    "  health                         SERVING / NOT_SERVING (exit 0 when serving)\n"
    "  route MODEL [--layer N] [--tokens N] [--seed N] [--npy FILE]\n"
    "                                 route hidden states (random bf16, or a 2-D .npy of\n"
    "                                 float32, float16 or bfloat16 bits as uint16), print experts\n"
    "default address: localhost:50051 (or a gRPC target: dns:///HOST:PORT, ipv4:A:P,B:P,\n"
    "unix:PATH); --load_balancing: pick_first (gRPC's default) or round_robin (each call to\n"
    "the next of the addresses the target resolves to). --tls_ca: PEM CA of the server's\n"
    "certificate (TLS); --tls_cert, --tls_key: PEM client certificate and key (mutual TLS);\n"
    "--tls_server_name: the name the server's certificate carries, where the address differs\n"
    "(127.0.0.1 or a pod IP for a certificate of moe-router.example).\n"
    "moe-router --version: this build's version\n";

int Error(const grpc::Status& s, const std::string& address) {
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE)
    std::fprintf(stderr, "moe-router: cannot reach the server at %s: %s\n", address.c_str(),
                 s.error_message().c_str());
  else
    // gRPC's codes are Abseil's, so Abseil names them (NOT_FOUND, not "error 5").
    std::fprintf(stderr, "moe-router: %s: %s\n",
                 absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code())).c_str(),
                 s.error_message().c_str());
  return 1;
}

// The value of integer option `name`: a whole number in [lo, hi], else a message naming the
// option and exit 2. (std::atoi took "abc" as 0 and "1x" as 1, and a huge --tokens made the
// random hidden states a terabyte: std::bad_alloc.)
template <typename Int>
Int IntOption(const std::string& name, const std::string& text, Int lo, Int hi) {
  Int v = 0;
  if (!absl::SimpleAtoi(text, &v) || v < lo || v > hi) {
    std::fprintf(stderr, "moe-router: %s: '%s' is not a whole number in %lld..%lld\n%s",
                 name.c_str(), text.c_str(), static_cast<long long>(lo), static_cast<long long>(hi),
                 kUsage);
    std::exit(2);
  }
  return v;
}

// "bf16" for DTYPE_BF16: the proto's own enum names, so no second table of dtype names.
std::string DTypeLabel(moe_router::v1::DType t) {
  return absl::AsciiStrToLower(absl::StripPrefix(moe_router::v1::DType_Name(t), "DTYPE_"));
}

}  // namespace

int main(int argc, char** argv) {
  std::string address = "localhost:50051";
  moe::ClientOptions options;
  moe::ClientTlsFlags tls;
  std::vector<std::string> args;
  int layer = 0, tokens = 4;
  std::string npy;
  unsigned seed = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "moe-router: %s needs a value\n%s", a.c_str(), kUsage);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--version") {
      std::printf("%s\n", moe::VersionLine("moe-router").c_str());
      return 0;
    } else if (a == "--address") {
      address = value();
    } else if (a == "--load_balancing") {
      options.load_balancing = value();
    } else if (a == "--tls_ca") {
      tls.ca = value();
    } else if (a == "--tls_cert") {
      tls.cert = value();
    } else if (a == "--tls_key") {
      tls.key = value();
    } else if (a == "--tls_server_name") {
      tls.server_name = value();
    } else if (a == "--layer") {
      layer = IntOption(a, value(), 0, std::numeric_limits<int>::max());
    } else if (a == "--tokens") {
      // The API's limit (every backend's): more could only be refused, after building them.
      tokens = IntOption(a, value(), 1, moe::kMaxTokens);
    } else if (a == "--npy") {
      npy = value();
    } else if (a == "--seed") {
      seed = IntOption<uint32_t>(a, value(), 0, std::numeric_limits<uint32_t>::max());
    } else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "moe-router: unknown option %s\n%s", a.c_str(), kUsage);
      return 2;
    } else {
      args.push_back(a);
    }
  }
  if (args.empty()) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  for (const absl::Status& bad :
       {moe::CheckTargetAddress("--address", address),
        moe::CheckLoadBalancing("--load_balancing", options.load_balancing),
        moe::ReadClientTls(tls, &options)}) {
    if (bad.ok()) continue;
    std::fprintf(stderr, "moe-router: %s\n", std::string(bad.message()).c_str());
    return 2;
  }
  moe::RouterClient client(address, options);
  if (args[0] == "models" && args.size() == 1) {
    moe_router::v1::ListModelsResponse resp;
    auto s = client.ListModels(&resp);
    if (!s.ok()) return Error(s, address);
    for (const auto& m : resp.models()) {
      std::printf(
          "%-24s family=%-16s hidden=%d experts=%d top_k=%d layers=%d backend=%s device=%s\n",
          m.name().c_str(), m.family().c_str(), m.hidden(), m.experts(), m.top_k(), m.layers(),
          m.backend().c_str(), m.device().c_str());
      // The CUDA backend's kernel per token bucket (none on the CPU backend).
      for (const auto& k : m.kernels()) {
        std::printf("  %s up to %3d tokens: %s (%s", DTypeLabel(k.hidden_dtype()).c_str(),
                    k.tokens(), k.config().c_str(), k.source().c_str());
        if (k.tuned_us() > 0) std::printf(", %.2f us", k.tuned_us());
        std::printf(")\n");
      }
    }
    return 0;
  }
  if (args[0] == "health" && args.size() == 1) {
    bool serving = false;
    auto s = client.Health(&serving);
    if (!s.ok()) return Error(s, address);
    std::printf("%s\n", serving ? "SERVING" : "NOT_SERVING");
    return serving ? 0 : 1;
  }
  if (args[0] == "route" && args.size() == 2) {
    moe_router::v1::ListModelsResponse models;
    auto s = client.ListModels(&models);
    if (!s.ok()) return Error(s, address);
    int hidden = 0;
    for (const auto& m : models.models())
      if (m.name() == args[1]) hidden = m.hidden();
    if (hidden == 0) {
      std::fprintf(stderr, "moe-router: model '%s' is not loaded (see 'moe-router models')\n",
                   args[1].c_str());
      return 1;
    }
    auto dtype = moe_router::v1::DTYPE_BF16;
    std::string bytes;
    if (!npy.empty()) {
      auto array = moe::ReadNpy(npy);
      if (!array.ok()) {
        std::fprintf(stderr, "moe-router: %s\n", std::string(array.status().message()).c_str());
        return 1;
      }
      if (array->cols != hidden) {
        std::fprintf(stderr, "moe-router: %s has %lld columns; model '%s' has hidden %d\n",
                     npy.c_str(), static_cast<long long>(array->cols), args[1].c_str(), hidden);
        return 1;
      }
      tokens = static_cast<int>(array->rows);
      dtype = array->dtype;
      bytes = std::move(array->data);
    } else {
      std::mt19937 rng(seed);
      std::normal_distribution<float> normal;
      bytes.assign(size_t(tokens) * hidden * 2, '\0');
      for (size_t i = 0; i < bytes.size() / 2; ++i)
        moe::StoreFromFloat(bytes.data(), moe::DType::kBF16, i, normal(rng));
    }
    moe::Routed out;
    s = client.Route(args[1], layer, dtype, tokens, hidden, bytes, &out);
    if (!s.ok()) return Error(s, address);
    for (int t = 0; t < out.tokens; ++t) {
      std::printf("token %d:", t);
      for (int k = 0; k < out.top_k; ++k)
        std::printf(" %d(%.4f)", out.ids[t * out.top_k + k], out.weights[t * out.top_k + k]);
      std::printf("\n");
    }
    std::printf("queue %.1f us, compute %.1f us, batch of %d tokens\n", out.timing.queue_us(),
                out.timing.compute_us(), out.timing.batch_tokens());
    return 0;
  }
  if (args[0] == "route")
    std::fprintf(stderr, "moe-router: route takes one MODEL (got %zu arguments)\n",
                 args.size() - 1);
  else if (args[0] != "models" && args[0] != "health")
    std::fprintf(stderr, "moe-router: unknown command '%s'\n", args[0].c_str());
  else
    std::fprintf(stderr, "moe-router: %s takes no arguments\n", args[0].c_str());
  std::fputs(kUsage, stderr);
  return 2;
}
