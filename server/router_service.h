// The moe_router.v1.Router gRPC service (callback API): validate -> submit to the batcher
// -> finish. Thread-safe; the model table is fixed after construction.
#pragma once

#include <map>
#include <string>

#include "moe_router/v1/router.grpc.pb.h"
#include "server/backend.h"
#include "server/batcher.h"
#include "server/metrics.h"
#include "server/request_validation.h"

namespace moe {

class RouterService final : public moe_router::v1::Router::CallbackService {
 public:
  RouterService(std::map<std::string, ModelDescription> models, Batcher* batcher,
                RouterBackend* backend, ServerMetrics* metrics, int max_tokens);

  grpc::ServerUnaryReactor* Route(grpc::CallbackServerContext* ctx,
                                  const moe_router::v1::RouteRequest* req,
                                  moe_router::v1::RouteResponse* resp) override;
  grpc::ServerBidiReactor<moe_router::v1::RouteRequest, moe_router::v1::RouteStreamResponse>*
  RouteStream(grpc::CallbackServerContext* ctx) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* ctx,
                                       const moe_router::v1::ListModelsRequest* req,
                                       moe_router::v1::ListModelsResponse* resp) override;
  grpc::ServerUnaryReactor* GetModel(grpc::CallbackServerContext* ctx,
                                     const moe_router::v1::GetModelRequest* req,
                                     moe_router::v1::ModelInfo* resp) override;

  // Validates and submits one request; `done` gets the status and the filled response.
  void Submit(const moe_router::v1::RouteRequest& req, grpc::CallbackServerContext* ctx,
              std::function<void(absl::Status, moe_router::v1::RouteResponse)> done);

 private:
  void FillInfo(const ModelDescription& m, moe_router::v1::ModelInfo* info) const;

  const std::map<std::string, ModelDescription> models_;
  Batcher* const batcher_;
  RouterBackend* const backend_;
  ServerMetrics* const metrics_;
  const int max_tokens_;
};

}  // namespace moe
