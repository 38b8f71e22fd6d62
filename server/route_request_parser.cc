#include "server/route_request_parser.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <algorithm>
#include <cstdint>

#include "server/streaming_copy.h"

namespace moe {
namespace {

using google::protobuf::internal::WireFormatLite;
using google::protobuf::io::CodedInputStream;
using google::protobuf::io::CodedOutputStream;
using google::protobuf::io::StringOutputStream;
using google::protobuf::io::ZeroCopyInputStream;

// Field numbers of router.proto that the parser treats itself.
constexpr int kHiddenStatesField = 3;  // RouteRequest.hidden_states
constexpr int kDataField = 3;          // Tensor.data
const uint32_t kHiddenStatesTag =
    WireFormatLite::MakeTag(kHiddenStatesField, WireFormatLite::WIRETYPE_LENGTH_DELIMITED);
const uint32_t kDataTag =
    WireFormatLite::MakeTag(kDataField, WireFormatLite::WIRETYPE_LENGTH_DELIMITED);

absl::Status Malformed() {
  return absl::InvalidArgumentError(
      "request: not a valid moe_router.v1.RouteRequest message (malformed protobuf)");
}

// CodedInputStream::ReadRaw with StreamingCopy: the stream's buffers one after another
// (each up to the current limit), copied past the caches.
bool ReadRawStreaming(CodedInputStream* in, char* dst, int length) {
  while (length > 0) {
    const void* data;
    int size;
    if (!in->GetDirectBufferPointer(&data, &size)) return false;  // the input ended early
    const int n = std::min(size, length);
    StreamingCopy(dst, data, size_t(n));
    in->Skip(n);
    dst += n;
    length -= n;
  }
  return true;
}

// Reads one Tensor occurrence (up to the limit the caller pushed): data into `hidden`, every
// other field re-encoded into `tensor_rest`. A later data field replaces an earlier one, as
// protobuf's merge of a singular field does.
// With `deferred_offset` (not null) and the bytes in a pool block with chunk marks, they are
// skipped, not copied, and their offset in the message is stored there.
bool ReadTensor(CodedInputStream* in, InputPool* pool, CodedOutputStream* tensor_rest,
                HiddenBytes* hidden, size_t* deferred_offset) {
  while (const uint32_t tag = in->ReadTag()) {
    if (tag != kDataTag) {
      if (!WireFormatLite::SkipField(in, tag, tensor_rest)) return false;
      continue;
    }
    uint32_t length;
    if (!in->ReadVarint32(&length)) return false;
    // The length is the sender's claim: it must fit in what is left of the message before
    // anything is allocated for it.
    if (int64_t(length) > in->BytesUntilLimit()) return false;
    hidden->Reset();
    if (deferred_offset != nullptr) *deferred_offset = 0;  // this field's bytes replace any
    if (length == 0 || pool == nullptr || !pool->TryAcquire(length, hidden))
      *hidden = HiddenBytes(std::string(length, '\0'));
    if (length == 0) continue;
    if (deferred_offset != nullptr && hidden->pooled() && pool->has_chunk_marks()) {
      *deferred_offset = size_t(in->CurrentPosition());
      if (!in->Skip(int(length))) return false;
    } else if (hidden->pooled() && pool->streaming_stores()) {
      if (!ReadRawStreaming(in, hidden->mutable_data(), int(length))) return false;
    } else if (!in->ReadRaw(hidden->mutable_data(), int(length))) {
      return false;
    }
  }
  return in->ConsumedEntireMessage() && in->BytesUntilLimit() == 0;
}

// `total_bytes`: the message's size. Every length on the wire is checked against it before
// anything is allocated or read for it.
absl::Status Parse(ZeroCopyInputStream* stream, size_t total_bytes, InputPool* pool,
                   bool defer_data, ParsedRouteRequest* out) {
  out->hidden.Reset();
  out->deferred_offset = 0;
  if (total_bytes > size_t(INT32_MAX)) return Malformed();
  std::string rest, tensor_rest;  // every field but hidden_states / data, as on the wire
  bool has_tensor = false;
  {
    StringOutputStream rest_stream(&rest), tensor_stream(&tensor_rest);
    CodedOutputStream rest_out(&rest_stream), tensor_out(&tensor_stream);
    CodedInputStream in(stream);
    in.PushLimit(int(total_bytes));  // nested limits then stop at the message's end
    while (const uint32_t tag = in.ReadTag()) {
      if (tag != kHiddenStatesTag) {
        if (!WireFormatLite::SkipField(&in, tag, &rest_out)) return Malformed();
        continue;
      }
      uint32_t length;
      if (!in.ReadVarint32(&length) || length > uint32_t(INT32_MAX)) return Malformed();
      const auto limit = in.PushLimit(int(length));
      if (in.BytesUntilLimit() != int(length)) return Malformed();  // past the end
      if (!ReadTensor(&in, pool, &tensor_out, &out->hidden,
                      defer_data ? &out->deferred_offset : nullptr))
        return Malformed();
      in.PopLimit(limit);
      has_tensor = true;
    }
    if (!in.ConsumedEntireMessage() || in.BytesUntilLimit() != 0) return Malformed();
  }  // the output streams flush here
  if (!out->request.ParseFromString(rest)) return Malformed();
  if (has_tensor && !out->request.mutable_hidden_states()->MergeFromString(tensor_rest))
    return Malformed();
  return absl::OkStatus();
}

// Copies the bytes from `offset` of the message into the fill, a buffer of the stream at a
// time (each marked as it lands).
void CopyDeferred(ZeroCopyInputStream* stream, size_t offset, BlockFill* fill) {
  if (offset > size_t(INT32_MAX) || !stream->Skip(int(offset))) return;  // Finish marks the rest
  const void* data;
  int size;
  while (fill->remaining() > 0 && stream->Next(&data, &size)) fill->Write(data, size_t(size));
}

}  // namespace

absl::Status ParseRouteRequest(const grpc::ByteBuffer& buffer, InputPool* pool,
                               ParsedRouteRequest* out, bool defer_data) {
  // The reader only reads; its constructor takes a mutable pointer for gRPC's C API.
  grpc::ProtoBufferReader reader(const_cast<grpc::ByteBuffer*>(&buffer));
  if (!reader.status().ok()) return Malformed();
  return Parse(&reader, buffer.Length(), pool, defer_data, out);
}

absl::Status ParseRouteRequest(const std::string& serialized, InputPool* pool,
                               ParsedRouteRequest* out, bool defer_data) {
  google::protobuf::io::ArrayInputStream stream(serialized.data(), int(serialized.size()));
  return Parse(&stream, serialized.size(), pool, defer_data, out);
}

void CopyDeferredData(const grpc::ByteBuffer& buffer, size_t offset, BlockFill* fill) {
  grpc::ProtoBufferReader reader(const_cast<grpc::ByteBuffer*>(&buffer));
  if (reader.status().ok()) CopyDeferred(&reader, offset, fill);
  fill->Finish();
}

std::function<void(BlockFill*)> DeferredCopy(const grpc::ByteBuffer& buffer,
                                             const ParsedRouteRequest& parsed) {
  if (parsed.deferred_offset == 0) return nullptr;
  return [&buffer, offset = parsed.deferred_offset](BlockFill* fill) {
    CopyDeferredData(buffer, offset, fill);
  };
}

void CopyDeferredData(const std::string& serialized, size_t offset, BlockFill* fill) {
  google::protobuf::io::ArrayInputStream stream(serialized.data(), int(serialized.size()));
  CopyDeferred(&stream, offset, fill);
  fill->Finish();
}

}  // namespace moe
