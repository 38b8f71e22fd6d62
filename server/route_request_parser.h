// Parsing a serialized moe_router.v1.RouteRequest as gRPC received it, with the hidden
// states going straight into the backend's input pool.
//
// The service's Route handler takes the raw message (a grpc::ByteBuffer) instead of a
// parsed RouteRequest so that hidden_states.data is copied once, from gRPC's slices into a
// pool block the device reads in place, rather than into a heap string first (a second
// 229 KB copy a 16-token DeepSeek-V3 request). Every other field is parsed by protobuf
// itself. The result equals protobuf's parse of the same bytes, field for field (merged
// repeats, unknown fields and all), with data moved out into `hidden`. Stateless;
// thread-safe.
#pragma once

#include <grpcpp/support/byte_buffer.h>

#include <string>

#include "absl/status/status.h"
#include "moe_router/v1/router.pb.h"
#include "server/input_pool.h"

namespace moe {

struct ParsedRouteRequest {
  moe_router::v1::RouteRequest request;  // hidden_states.data left empty
  HiddenBytes hidden;                    // hidden_states.data
};

// `pool` may be null (then the bytes go on the heap), as when the data does not fit a
// block or no block is free. INVALID_ARGUMENT naming the request when the bytes are not a
// RouteRequest.
absl::Status ParseRouteRequest(const grpc::ByteBuffer& buffer, InputPool* pool,
                               ParsedRouteRequest* out);

// The same from one contiguous serialization (tests, fuzzing, benchmarks).
absl::Status ParseRouteRequest(const std::string& serialized, InputPool* pool,
                               ParsedRouteRequest* out);

}  // namespace moe
