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

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "moe_router/v1/router.pb.h"
#include "server/input_pool.h"

namespace moe {

struct ParsedRouteRequest {
  moe_router::v1::RouteRequest request;  // hidden_states.data left empty
  HiddenBytes hidden;                    // hidden_states.data
  // Non-zero when the bytes were left in the message (`defer_data`): where they start there.
  size_t deferred_offset = 0;
};

// `pool` may be null (then the bytes go on the heap), as when the data does not fit a
// block or no block is free. INVALID_ARGUMENT naming the request when the bytes are not a
// RouteRequest. With `defer_data`, bytes that get a pool block with chunk marks are not
// copied yet: `hidden` holds the block (its contents undefined) and `deferred_offset` says
// where the bytes are; CopyDeferredData then writes them, through hidden.BeginFill(), once
// the request is validated (and, in the server, handed to its worker).
absl::Status ParseRouteRequest(const grpc::ByteBuffer& buffer, InputPool* pool,
                               ParsedRouteRequest* out, bool defer_data = false);

// The same from one contiguous serialization (tests, fuzzing, benchmarks).
absl::Status ParseRouteRequest(const std::string& serialized, InputPool* pool,
                               ParsedRouteRequest* out, bool defer_data = false);

// Copies the deferred bytes at `offset` of the message the parse read into `fill`, marking
// each chunk as it lands, and finishes the fill. The message must be the one parsed.
void CopyDeferredData(const grpc::ByteBuffer& buffer, size_t offset, BlockFill* fill);
void CopyDeferredData(const std::string& serialized, size_t offset, BlockFill* fill);

// CopyDeferredData of `buffer` for a parse that deferred its bytes, as RouterService::Submit
// takes it; empty when the parse copied them. `buffer` must outlive the call.
std::function<void(BlockFill*)> DeferredCopy(const grpc::ByteBuffer& buffer,
                                             const ParsedRouteRequest& parsed);

}  // namespace moe
