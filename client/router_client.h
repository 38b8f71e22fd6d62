// A C++ client for moe_router.v1: packs hidden states into the tensor message and
// unpacks expert ids and weights. Thread-safe (gRPC stubs are).
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moe_router/v1/router.grpc.pb.h"

namespace moe {

struct ClientOptions {
  int max_message_bytes = 64 << 20;
  int keepalive_ms = 30000;
  std::string tls_ca;    // PEM root certificates: enables TLS
  std::string tls_cert;  // PEM client certificate (mutual TLS)
  std::string tls_key;
};

struct Routed {
  int tokens = 0, top_k = 0;
  std::vector<int32_t> ids;
  std::vector<float> weights;
  moe_router::v1::Timing timing;
};

class RouterClient {
 public:
  RouterClient(const std::string& address, const ClientOptions& options = {});

  // hidden: raw [tokens, hidden] bytes of `dtype`.
  grpc::Status Route(const std::string& model, int layer, moe_router::v1::DType dtype, int tokens,
                     int hidden, const std::string& bytes, Routed* out, int timeout_ms = 10000);
  grpc::Status ListModels(moe_router::v1::ListModelsResponse* out);
  grpc::Status Health(bool* serving);
  moe_router::v1::Router::Stub* stub() { return stub_.get(); }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<moe_router::v1::Router::Stub> stub_;
};

}  // namespace moe
