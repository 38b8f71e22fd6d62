// The moe_router.v1.Router gRPC service (callback API): validate -> submit to the batcher
// -> finish. Thread-safe. The service starts with no models (Route answers UNAVAILABLE
// while they load) and gets its model table once, from SetModels. Route and RouteStream
// take raw messages and parse them themselves (ParseRouteRequest), putting the hidden
// states into the backend's input pool, where the device reads them without a staging
// copy.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "moe_router/v1/router.grpc.pb.h"
#include "server/backend.h"
#include "server/batcher.h"
#include "server/metrics.h"
#include "server/request_validation.h"
#include "server/route_request_parser.h"

namespace moe {

// The model label of requests for a model that is not loaded (requests_total,
// request_duration_seconds): one series for all of them, whatever names clients send.
inline constexpr char kUnknownModelLabel[] = "(unknown)";

// The generated callback service, with the two routing methods raw.
using RouterCallbackBase = moe_router::v1::Router::WithRawCallbackMethod_Route<
    moe_router::v1::Router::WithRawCallbackMethod_RouteStream<
        moe_router::v1::Router::WithCallbackMethod_ListModels<
            moe_router::v1::Router::WithCallbackMethod_GetModel<moe_router::v1::Router::Service>>>>;

class RouterService final : public RouterCallbackBase {
 public:
  using ModelTable = std::map<std::string, ModelDescription>;
  // max_stream_in_flight: a RouteStream's requests not yet answered or not yet written;
  // at the bound the stream is not read until a write completes, so gRPC's flow control
  // holds back a client that sends without reading instead of the server buffering for it.
  RouterService(Batcher* batcher, RouterBackend* backend, ServerMetrics* metrics, int max_tokens,
                int max_stream_in_flight = 256);

  // Publishes the loaded models; requests are served from then on.
  void SetModels(ModelTable models);

  // A serialized RouteRequest in, a serialized RouteResponse out.
  grpc::ServerUnaryReactor* Route(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                  grpc::ByteBuffer* resp) override;
  // Serialized RouteRequests in, serialized RouteStreamResponses out.
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* RouteStream(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* ctx,
                                       const moe_router::v1::ListModelsRequest* req,
                                       moe_router::v1::ListModelsResponse* resp) override;
  grpc::ServerUnaryReactor* GetModel(grpc::CallbackServerContext* ctx,
                                     const moe_router::v1::GetModelRequest* req,
                                     moe_router::v1::ModelInfo* resp) override;

  int max_stream_in_flight() const { return max_stream_in_flight_; }
  ServerMetrics* metrics() const { return metrics_; }
  RouterBackend* backend() const { return backend_; }

  using Done = std::function<void(absl::Status, moe_router::v1::RouteResponse)>;
  // Validates and submits one request; `done` gets the status and the filled response.
  // Takes the request's hidden-state bytes (see ValidateRouteRequest).
  void Submit(moe_router::v1::RouteRequest* req, grpc::CallbackServerContext* ctx, Done done);
  // The same for a request parsed by ParseRouteRequest (`parsed`: how that went; a failure
  // is answered and counted like any refused request). `arrival`: when the call came in.
  // `copy_deferred`, for bytes the parse left in the message (defer_data): writes them
  // through the fill (CopyDeferredData). Called once the request is valid, after it is
  // handed to a spinning worker where one waits (the device then stages the bytes as they
  // land), else before it is queued; never for a refused request.
  void Submit(const absl::Status& parsed, const moe_router::v1::RouteRequest& req,
              HiddenBytes hidden, Clock::time_point arrival, grpc::CallbackServerContext* ctx,
              Done done, const std::function<void(BlockFill*)>& copy_deferred = nullptr);
  // Whether parses should defer the hidden states' copy (ParseRouteRequest's defer_data):
  // the backend stages a request's bytes as they land and checks them on the device.
  bool defer_hidden_copy() const {
    return backend_->StagesWhileFilling() && backend_->ChecksFiniteOnDevice();
  }

 private:
  void FillInfo(const ModelDescription& m, moe_router::v1::ModelInfo* info) const;

  std::shared_ptr<const ModelTable> Models() const;

  mutable absl::Mutex mu_;
  std::shared_ptr<const ModelTable> models_ ABSL_GUARDED_BY(mu_);
  Batcher* const batcher_;
  RouterBackend* const backend_;
  ServerMetrics* const metrics_;
  const int max_tokens_;
  const int max_stream_in_flight_;
};

}  // namespace moe
