// A C++ client for moe_router.v1: packs hidden states into the tensor message and
// unpacks expert ids and weights. Thread-safe (gRPC stubs are).
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <functional>
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
  // The name the server's certificate must carry, where the address does not (a server
  // reached as 127.0.0.1 or a pod IP with a certificate for its DNS name); empty: the
  // address's host. Also the calls' :authority.
  std::string tls_server_name;
  // gRPC's load-balancing policy over the addresses the target resolves to: "" (gRPC's
  // default, pick_first: one address, the next only when it fails) or "round_robin" (each
  // call to the next ready address: a headless Service's pods, dns:///moe-router:50051).
  std::string load_balancing;
};

struct Routed {
  int tokens = 0, top_k = 0;
  std::vector<int32_t> ids;
  std::vector<float> weights;
  moe_router::v1::Timing timing;
};

// A RouteStream session: Send requests, Receive answers in the same order. One thread may
// send while another receives; Finish after the last Receive. The server holds at most
// --max_stream_in_flight (default 256) of a stream's requests: one thread that sends more
// than that before it receives blocks in Send.
class RouteStreamSession {
 public:
  bool Send(const moe_router::v1::RouteRequest& request) { return stream_->Write(request); }
  // False when the stream ended; otherwise the answer (or per-request error) of the next
  // request, in order.
  bool Receive(moe_router::v1::RouteStreamResponse* response) { return stream_->Read(response); }
  grpc::Status Finish() {
    stream_->WritesDone();
    return stream_->Finish();
  }

 private:
  friend class RouterClient;
  grpc::ClientContext ctx_;
  std::unique_ptr<
      grpc::ClientReaderWriter<moe_router::v1::RouteRequest, moe_router::v1::RouteStreamResponse>>
      stream_;
};

// Builds a RouteRequest from raw [tokens, hidden] bytes of `dtype`.
moe_router::v1::RouteRequest MakeRouteRequest(const std::string& model, int layer,
                                              moe_router::v1::DType dtype, int tokens, int hidden,
                                              const std::string& bytes, uint64_t request_id = 0);

// A RouteResponse's routing as a Routed (ids, weights, shape and timing).
Routed Unpack(const moe_router::v1::RouteResponse& resp);

class RouterClient {
 public:
  // `address`: a gRPC target, used as given; CheckTargetAddress (client/target_address.h)
  // refuses first what gRPC would send to another port, and CheckLoadBalancing a policy it
  // would replace. ReadClientTls (client/client_tls.h) fills the TLS options from PEM files.
  explicit RouterClient(const std::string& address, const ClientOptions& options = {});
  // Waits until every RouteAsync call has run its `done`. May run inside one of this
  // client's own `done` callbacks (it then waits for the other calls only).
  ~RouterClient();
  RouterClient(const RouterClient&) = delete;
  RouterClient& operator=(const RouterClient&) = delete;

  // hidden: raw [tokens, hidden] bytes of `dtype`. Blocking.
  grpc::Status Route(const std::string& model, int layer, moe_router::v1::DType dtype, int tokens,
                     int hidden, const std::string& bytes, Routed* out, int timeout_ms = 10000);
  // Non-blocking: `done` runs on a gRPC thread with the status and the unpacked answer. It
  // should not block: gRPC runs every callback of the process on a few shared threads.
  void RouteAsync(moe_router::v1::RouteRequest request,
                  std::function<void(grpc::Status, Routed)> done, int timeout_ms = 10000);
  // Opens a RouteStream.
  std::unique_ptr<RouteStreamSession> OpenStream();
  grpc::Status ListModels(moe_router::v1::ListModelsResponse* out);
  grpc::Status Health(bool* serving);
  moe_router::v1::Router::Stub* stub() { return stub_.get(); }

 private:
  struct AsyncCalls;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<moe_router::v1::Router::Stub> stub_;
  std::shared_ptr<AsyncCalls> async_calls_;  // shared with the calls in flight
};

}  // namespace moe
