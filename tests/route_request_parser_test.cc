// ParseRouteRequest against protobuf's own parser: on random requests, split into gRPC
// slices at random places, on merged repeats and unknown fields, and on every prefix of a
// message (truncations must fail exactly where protobuf's parse fails). Plus the input
// pool: blocks used while free, the heap after, blocks back when their bytes are dropped.
#include "server/route_request_parser.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/impl/grpc_library.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace moe {
namespace {

namespace v1 = moe_router::v1;
using google::protobuf::util::MessageDifferencer;

// gRPC's C++ runtime, for ByteBuffer outside a server.
grpc::internal::GrpcLibraryInitializer grpc_runtime;

constexpr size_t kBlockBytes = 64 << 10;
constexpr int kBlocks = 3;

// `streaming_stores`: the pool's blocks are filled by StreamingCopy, not ReadRaw.
// `chunk_marks`: the blocks have chunk marks (deferred fills), the device's view of them the
// host's (a test reads them where a device would).
struct TestPool {
  explicit TestPool(bool streaming_stores = false, bool chunk_marks = false)
      : pool(region.data(), device_region.data(), kBlockBytes, kBlocks, streaming_stores) {
    if (chunk_marks) pool.SetChunkMarks(marks.data(), marks.data());
  }
  std::vector<char> region = std::vector<char>(kBlockBytes * kBlocks);
  std::vector<char> device_region = std::vector<char>(1);  // a stand-in address, never read
  std::vector<char> marks =
      std::vector<char>(InputPool::marks_bytes_per_block(kBlockBytes) * kBlocks);
  InputPool pool;
};

// Chunk `c`'s mark of the block holding `h` (the test pool's marks).
uint32_t Mark(const TestPool& pool, const HiddenBytes& h, size_t c) {
  const size_t block = size_t(h.data() - pool.region.data()) / kBlockBytes;
  uint32_t v;
  std::memcpy(&v,
              pool.marks.data() + block * InputPool::marks_bytes_per_block(kBlockBytes) +
                  c * kFillMarkStride,
              4);
  return v;
}

v1::RouteRequest RandomRequest(std::mt19937& rng) {
  v1::RouteRequest r;
  if (rng() % 4 != 0) r.set_model("model-" + std::to_string(rng() % 1000));
  r.set_layer(int(rng() % 100) - 2);
  if (rng() % 2) r.set_request_id(rng() * uint64_t(rng()));
  r.set_return_logits(rng() % 2);
  if (rng() % 8 != 0) {
    auto* t = r.mutable_hidden_states();
    t->set_dtype(static_cast<v1::DType>(rng() % 4));
    const int dims = int(rng() % 4);
    for (int d = 0; d < dims; ++d) t->add_shape(int64_t(rng() % 9000) - 10);
    // Sizes around the block size, and a few larger.
    const size_t sizes[] = {0, 1, 16, 14336, kBlockBytes - 1, kBlockBytes, kBlockBytes + 1, 229376};
    std::string data(sizes[rng() % 8], '\0');
    for (char& c : data) c = char(rng());
    t->set_data(std::move(data));
  }
  return r;
}

// The serialization as gRPC might hand it over: cut into up to 5 slices at random places.
grpc::ByteBuffer Slices(const std::string& bytes, std::mt19937& rng) {
  std::vector<size_t> cuts = {0, bytes.size()};
  const int n = int(rng() % 5);
  for (int i = 0; i < n && !bytes.empty(); ++i) cuts.push_back(rng() % bytes.size());
  std::sort(cuts.begin(), cuts.end());
  std::vector<grpc::Slice> slices;
  for (size_t i = 0; i + 1 < cuts.size(); ++i)
    if (cuts[i + 1] > cuts[i]) slices.emplace_back(bytes.data() + cuts[i], cuts[i + 1] - cuts[i]);
  if (slices.empty()) slices.emplace_back(bytes.data(), 0);
  return grpc::ByteBuffer(slices.data(), slices.size());
}

// Compares a parse with protobuf's parse of the same bytes: `ok` must agree, and on
// success every field but data must be equal, and data equal the parsed hidden bytes.
void ExpectSameAsProtobuf(const std::string& bytes, const absl::Status& status,
                          ParsedRouteRequest& parsed) {
  v1::RouteRequest reference;
  const bool reference_ok = reference.ParseFromString(bytes);
  ASSERT_EQ(status.ok(), reference_ok) << status;
  if (!reference_ok) {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(status.message().find("request:"), std::string::npos) << status;
    return;
  }
  EXPECT_EQ(parsed.hidden.view(), reference.hidden_states().data());
  EXPECT_EQ(parsed.request.has_hidden_states(), reference.has_hidden_states());
  if (reference.has_hidden_states()) reference.mutable_hidden_states()->clear_data();
  EXPECT_TRUE(MessageDifferencer::Equals(parsed.request, reference))
      << parsed.request.DebugString() << "\nvs\n"
      << reference.DebugString();
  EXPECT_TRUE(parsed.request.hidden_states().data().empty());
}

class RouteRequestParserStores : public testing::TestWithParam<bool> {};

TEST_P(RouteRequestParserStores, EqualsProtobufOnRandomRequestsInRandomSlices) {
  std::mt19937 rng(7);
  TestPool pool(GetParam());
  for (int i = 0; i < 400; ++i) {
    const std::string bytes = RandomRequest(rng).SerializeAsString();
    ParsedRouteRequest parsed;
    const bool use_pool = rng() % 2;
    const absl::Status status =
        ParseRouteRequest(Slices(bytes, rng), use_pool ? &pool.pool : nullptr, &parsed);
    ExpectSameAsProtobuf(bytes, status, parsed);
    // Pooled exactly when a pool was given and the data fits a block.
    const size_t size = parsed.hidden.size();
    EXPECT_EQ(parsed.hidden.pooled(), use_pool && size > 0 && size <= kBlockBytes) << size;
    if (parsed.hidden.pooled()) {
      EXPECT_NE(parsed.hidden.device_view(), nullptr);
      EXPECT_EQ(parsed.hidden.device_readable_bytes(), kBlockBytes);
    } else {
      EXPECT_EQ(parsed.hidden.device_view(), nullptr);
    }
  }
  EXPECT_EQ(pool.pool.free_blocks(), kBlocks);  // every block came back
}

// Two serializations back to back are one message to protobuf: singular fields from the
// second, repeated ones (shape) concatenated, hidden_states merged, data from the second.
TEST(RouteRequestParser, MergesRepeatedFieldsAsProtobufDoes) {
  std::mt19937 rng(11);
  TestPool pool;
  for (int i = 0; i < 200; ++i) {
    const std::string bytes =
        RandomRequest(rng).SerializeAsString() + RandomRequest(rng).SerializeAsString();
    ParsedRouteRequest parsed;
    ExpectSameAsProtobuf(bytes, ParseRouteRequest(Slices(bytes, rng), &pool.pool, &parsed), parsed);
  }
  EXPECT_EQ(pool.pool.free_blocks(), kBlocks);
}

// Fields this build does not know (a newer client), top level and inside hidden_states,
// are kept as unknown fields, as protobuf keeps them.
TEST(RouteRequestParser, KeepsUnknownFields) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream out(&stream);
    out.WriteTag((1 << 3) | 2);  // model
    out.WriteVarint32(3);
    out.WriteRaw("abc", 3);
    out.WriteTag((99 << 3) | 0);  // unknown varint
    out.WriteVarint64(12345);
    std::string tensor;
    {
      google::protobuf::io::StringOutputStream ts(&tensor);
      google::protobuf::io::CodedOutputStream t(&ts);
      t.WriteTag((2 << 3) | 0);  // shape, unpacked
      t.WriteVarint64(4);
      t.WriteTag((50 << 3) | 5);  // unknown fixed32
      t.WriteLittleEndian32(7);
      t.WriteTag((3 << 3) | 2);  // data
      t.WriteVarint32(16);
      t.WriteRaw("0123456789abcdef", 16);
      t.WriteTag((3 << 3) | 0);  // data with the wrong wire type: unknown to protobuf too
      t.WriteVarint32(1);
    }
    out.WriteTag((3 << 3) | 2);
    out.WriteVarint32(uint32_t(tensor.size()));
    out.WriteRaw(tensor.data(), int(tensor.size()));
  }
  TestPool pool;
  ParsedRouteRequest parsed;
  const absl::Status status = ParseRouteRequest(bytes, &pool.pool, &parsed);
  ExpectSameAsProtobuf(bytes, status, parsed);
  EXPECT_EQ(parsed.hidden.view(), "0123456789abcdef");
  EXPECT_FALSE(parsed.request.GetReflection()->GetUnknownFields(parsed.request).empty());
}

// Every prefix of a request: protobuf fails on a cut inside a field and succeeds on a cut
// between fields; the parser must do the same, with the same fields.
TEST_P(RouteRequestParserStores, EveryTruncationFailsWhereProtobufFails) {
  std::mt19937 rng(3);
  v1::RouteRequest r;
  r.set_model("demo");
  r.set_layer(3);
  r.set_request_id(77);
  r.mutable_hidden_states()->set_dtype(v1::DTYPE_BF16);
  r.mutable_hidden_states()->add_shape(2);
  r.mutable_hidden_states()->add_shape(64);
  r.mutable_hidden_states()->set_data(std::string(256, 'x'));
  r.set_return_logits(true);
  const std::string whole = r.SerializeAsString();
  TestPool pool(GetParam());
  int failures = 0;
  for (size_t n = 0; n <= whole.size(); ++n) {
    const std::string prefix = whole.substr(0, n);
    ParsedRouteRequest parsed;
    const absl::Status status = ParseRouteRequest(Slices(prefix, rng), &pool.pool, &parsed);
    ExpectSameAsProtobuf(prefix, status, parsed);
    failures += !status.ok();
  }
  EXPECT_GT(failures, 200);  // most cuts fall inside data
  EXPECT_EQ(pool.pool.free_blocks(), kBlocks);
}

// Deferred data: the parse leaves pooled bytes in the message and says where; the copy
// through a fill then gives exactly protobuf's bytes, every chunk marked. Single and merged
// messages (the last data field's bytes), in random slices; blocks poisoned first.
TEST_P(RouteRequestParserStores, DeferredDataCopiedLaterEqualsProtobuf) {
  std::mt19937 rng(19);
  TestPool pool(GetParam(), /*chunk_marks=*/true);
  int deferred = 0;
  for (int i = 0; i < 400; ++i) {
    std::fill(pool.region.begin(), pool.region.end(), char(0xab));
    std::string bytes = RandomRequest(rng).SerializeAsString();
    if (i % 3 == 0) bytes += RandomRequest(rng).SerializeAsString();
    const grpc::ByteBuffer buffer = Slices(bytes, rng);
    ParsedRouteRequest parsed;
    const absl::Status status = ParseRouteRequest(buffer, &pool.pool, &parsed, true);
    if (status.ok() && parsed.deferred_offset != 0) {
      ++deferred;
      ASSERT_TRUE(parsed.hidden.pooled());
      BlockFill fill = parsed.hidden.BeginFill();
      ASSERT_TRUE(fill.active());
      EXPECT_TRUE(parsed.hidden.filling());
      const ChunkMarks marks = parsed.hidden.marks();
      EXPECT_EQ(marks.chunks, (parsed.hidden.size() + kFillChunkBytes - 1) / kFillChunkBytes);
      CopyDeferredData(buffer, parsed.deferred_offset, &fill);
      EXPECT_FALSE(parsed.hidden.filling());
      EXPECT_EQ(parsed.hidden.marks().chunks, 0u);
      for (size_t c = 0; c < marks.chunks; ++c)
        EXPECT_EQ(Mark(pool, parsed.hidden, c), marks.generation) << c;
    } else if (status.ok()) {
      // Not deferred: on the heap (too large, empty) or no block free.
      EXPECT_TRUE(!parsed.hidden.pooled() || parsed.hidden.size() == 0);
    }
    ExpectSameAsProtobuf(bytes, status, parsed);
  }
  EXPECT_GT(deferred, 100);
  EXPECT_EQ(pool.pool.free_blocks(), kBlocks);
}

INSTANTIATE_TEST_SUITE_P(CachedAndStreamingStores, RouteRequestParserStores, testing::Bool(),
                         [](const testing::TestParamInfo<bool>& info) {
                           return info.param ? "StreamingStores" : "CachedStores";
                         });

// Lengths that claim more than the message holds are refused before anything is
// allocated for them.
TEST(RouteRequestParser, LengthsPastTheEndAreRefused) {
  const std::string tensor_too_long = std::string("\x1a\xff\xff\xff\x7f", 5) + "\x1a\x01x";
  const std::string data_too_long = std::string("\x1a\x06\x1a\xff\xff\xff\x0f", 7) + "abcd";
  for (const std::string& bytes : {tensor_too_long, data_too_long}) {
    ParsedRouteRequest parsed;
    const absl::Status status = ParseRouteRequest(bytes, nullptr, &parsed);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    v1::RouteRequest reference;
    EXPECT_FALSE(reference.ParseFromString(bytes));
  }
}

TEST(InputPool, BlocksWhileFreeThenTheHeapAndBlocksComeBack) {
  TestPool pool;
  std::vector<HiddenBytes> held(kBlocks);
  for (auto& h : held) ASSERT_TRUE(pool.pool.TryAcquire(100, &h));
  HiddenBytes extra;
  EXPECT_FALSE(pool.pool.TryAcquire(100, &extra));  // all taken
  EXPECT_FALSE(extra.pooled());
  // Distinct blocks, each as large as a block for the device.
  for (int i = 0; i < kBlocks; ++i)
    for (int j = i + 1; j < kBlocks; ++j) EXPECT_NE(held[i].data(), held[j].data());
  // Moving a block moves its ownership; dropping it gives it back.
  HiddenBytes moved = std::move(held[0]);
  EXPECT_FALSE(held[0].pooled());
  EXPECT_TRUE(moved.pooled());
  EXPECT_EQ(moved.size(), 100u);
  EXPECT_EQ(pool.pool.free_blocks(), 0);
  moved.Reset();
  EXPECT_EQ(pool.pool.free_blocks(), 1);
  EXPECT_TRUE(pool.pool.TryAcquire(kBlockBytes, &extra));
  EXPECT_FALSE(pool.pool.TryAcquire(kBlockBytes + 1, &moved));  // larger than a block
  // Assigning over a pooled HiddenBytes gives its block back first.
  extra = HiddenBytes(std::string("heap"));
  EXPECT_EQ(extra.view(), "heap");
  EXPECT_EQ(pool.pool.free_blocks(), 1);
  held.clear();
  EXPECT_EQ(pool.pool.free_blocks(), kBlocks);
}

// A fill marks a chunk once all its bytes are written (the last, partial one at the end),
// each fill of a block with a new non-zero generation; Finish marks what was never
// written, so a device waiting on marks is never left waiting.
TEST(InputPool, AFillMarksEachChunkAsItLands) {
  TestPool pool(false, /*chunk_marks=*/true);
  HiddenBytes h;
  ASSERT_TRUE(pool.pool.TryAcquire(3 * kFillChunkBytes + 100, &h));
  EXPECT_FALSE(h.filling());
  EXPECT_EQ(h.marks().chunks, 0u);
  std::string src(h.size(), '\0');
  for (size_t i = 0; i < src.size(); ++i) src[i] = char(i * 7);
  uint32_t last_generation = 0;
  for (int round = 0; round < 3; ++round) {
    BlockFill fill = h.BeginFill();
    ASSERT_TRUE(h.filling());
    const ChunkMarks marks = h.marks();
    EXPECT_EQ(marks.chunks, 4u);
    EXPECT_NE(marks.generation, 0u);
    EXPECT_NE(marks.generation, last_generation);
    last_generation = marks.generation;
    fill.Write(src.data(), kFillChunkBytes - 1);  // not a whole chunk yet
    EXPECT_NE(Mark(pool, h, 0), marks.generation);
    fill.Write(src.data() + kFillChunkBytes - 1, kFillChunkBytes + 1);  // chunks 0 and 1
    EXPECT_EQ(Mark(pool, h, 0), marks.generation);
    EXPECT_EQ(Mark(pool, h, 1), marks.generation);
    EXPECT_NE(Mark(pool, h, 2), marks.generation);
    if (round == 2) {
      fill.Finish();  // gives up early: the rest is marked all the same
    } else {
      fill.Write(src.data() + 2 * kFillChunkBytes, src.size() - 2 * kFillChunkBytes);
      EXPECT_EQ(fill.remaining(), 0u);
      EXPECT_EQ(h.view(), src);
    }
    for (uint32_t c = 0; c < 4; ++c) EXPECT_EQ(Mark(pool, h, c), marks.generation) << c;
    fill.Finish();
    EXPECT_FALSE(h.filling());
  }
  // No marks, no fill: a pool without them, and heap bytes.
  TestPool plain;
  HiddenBytes p;
  ASSERT_TRUE(plain.pool.TryAcquire(10, &p));
  EXPECT_FALSE(p.BeginFill().active());
  EXPECT_FALSE(HiddenBytes(std::string("heap")).BeginFill().active());
}

// The block of a fill still under way goes back to the pool only once the fill finishes:
// giving it back (the worker dropping a handed-over request) waits for the writer.
TEST(InputPool, GivingBackABlockWaitsForItsFill) {
  TestPool pool(false, /*chunk_marks=*/true);
  HiddenBytes h;
  ASSERT_TRUE(pool.pool.TryAcquire(2 * kFillChunkBytes, &h));
  BlockFill fill = h.BeginFill();
  std::atomic<bool> given_back{false};
  std::thread holder([&] {
    h.Reset();
    given_back = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(given_back.load());
  EXPECT_EQ(pool.pool.free_blocks(), kBlocks - 1);
  const std::string src(2 * kFillChunkBytes, 'z');
  fill.Write(src.data(), src.size());
  fill.Finish();
  holder.join();
  EXPECT_TRUE(given_back.load());
  EXPECT_EQ(pool.pool.free_blocks(), kBlocks);
}

// A pool without a device view (memory the device cannot read in place) still holds
// bytes, and says so.
TEST(InputPool, WithoutADeviceViewBlocksAreHostOnly) {
  std::vector<char> region(kBlockBytes);
  InputPool pool(region.data(), nullptr, kBlockBytes, 1);
  HiddenBytes h;
  ASSERT_TRUE(pool.TryAcquire(10, &h));
  EXPECT_EQ(h.device_view(), nullptr);
  EXPECT_EQ(h.device_readable_bytes(), 0u);
}

}  // namespace
}  // namespace moe
