// The one conversion from absl::Status to grpc::Status, at the RPC edge.
#pragma once

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"

namespace moe {

inline grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())),
                      std::string(s.message()));
}

}  // namespace moe
