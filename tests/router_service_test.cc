// RouterService in-process over loopback gRPC, with a backend that takes requests handed over
// before their hidden states are copied (--stage_while_filling) the way the CUDA backend
// does, emulated on the host: the deferred parse, the hand-over to the spinning worker, the
// fill's chunk marks and the device's finite check, end to end through unary calls and
// streams, without a GPU. (server_test runs the real binary; on the CUDA backend it takes
// this path on the device.)
#include "server/router_service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kernels/dtype.h"
#include "server/backend.h"
#include "server/batcher.h"
#include "server/demo_models.h"
#include "server/metrics.h"
#include "tests/reference_router.h"

namespace moe {
namespace {

namespace v1 = moe_router::v1;

constexpr int kLayers = 2;
constexpr int kBlocks = 8;
const char kModel[] = "demo-deepseek-v3";

// The CPU backend behind what the CUDA backend shows the batcher: an input pool with chunk
// marks (heap memory, the "device" view the host's), rows checked for NaN and infinities
// "on the device", and a lone request's bytes read only as their chunks are marked, polled
// as the stage-in kernel polls them.
class EmulatedStagingBackend : public RouterBackend {
 public:
  EmulatedStagingBackend()
      : cpu_(MakeCpuBackend(2)),
        region_(kInputBlockBytes * kBlocks),
        marks_(InputPool::marks_bytes_per_block(kInputBlockBytes) * kBlocks),
        pool_(region_.data(), region_.data(), kInputBlockBytes, kBlocks) {
    pool_.SetChunkMarks(marks_.data(), marks_.data());
  }
  std::string name() const override { return "emulated"; }
  std::string device() const override { return "host"; }
  absl::Status LoadModel(const RouterModel& model) override {
    hidden_[model.name] = model.spec.hidden;
    return cpu_->LoadModel(model);
  }
  bool ChecksFiniteOnDevice() const override { return true; }
  bool StagesWhileFilling() const override { return true; }
  InputPool* input_pool() override { return &pool_; }
  absl::StatusOr<double> Route(const std::string& model, int layer, const BatchIO& io) override {
    const size_t bytes = size_t(io.tokens) * hidden_.at(model) * DTypeSize(io.hidden_dtype);
    const ChunkMarks m = io.pending_marks();
    if (m.chunks > 0) {
      ++staged_while_filling;
      EXPECT_EQ(m.chunks, (bytes + kFillChunkBytes - 1) / kFillChunkBytes);
      for (uint32_t c = 0; c < m.chunks; ++c) {
        const auto* mark = reinterpret_cast<const uint32_t*>(
            static_cast<const char*>(m.device_marks) + c * kFillMarkStride);
        while (__atomic_load_n(mark, __ATOMIC_ACQUIRE) != m.generation) std::this_thread::yield();
      }
    }
    if (io.nonfinite_rows != nullptr) {
      const size_t row = bytes / io.tokens, values = row / DTypeSize(io.hidden_dtype);
      for (int t = 0; t < io.tokens; ++t) {
        io.nonfinite_rows[t] = 0;
        const char* base = static_cast<const char*>(io.hidden) + t * row;
        for (size_t i = 0; i < values; ++i)
          if (!std::isfinite(LoadAsFloat(base, io.hidden_dtype, i))) io.nonfinite_rows[t] = 1;
      }
    }
    return cpu_->Route(model, layer, io);
  }
  // The CUDA backend's report of its kernels: two buckets, one tuned and one cached.
  std::vector<KernelChoice> KernelChoices(const std::string& model) const override {
    if (hidden_.count(model) == 0) return {};
    return {{1, DType::kBF16, "mma nt=1 S=8 polled coop ded 1cta", "autotuned", 3.25},
            {256, DType::kFP16, "cublasLt gemm + epilogue kernel", "cache", 0}};
  }
  std::atomic<int> staged_while_filling{0};

 private:
  std::unique_ptr<RouterBackend> cpu_;
  std::vector<char> region_, marks_;
  InputPool pool_;
  std::map<std::string, int> hidden_;
};

struct Case {
  v1::RouteRequest request;
  std::vector<testing::ReferenceToken> ref;
};

class RouterServiceStaging : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = std::make_unique<RouterModel>(MakeDemoModel(kModel, kLayers).value());
    ASSERT_TRUE(backend_.LoadModel(*model_).ok());
    BatcherOptions o;
    o.idle_spin_us = 2'000'000;  // the worker waits spinning between one caller's requests
    batcher_ = std::make_unique<Batcher>(&backend_, o, &metrics_);
    service_ = std::make_unique<RouterService>(batcher_.get(), &backend_, &metrics_, 256, 256);
    ASSERT_TRUE(service_->defer_hidden_copy());
    RouterService::ModelTable models;
    models[model_->name] = {model_->name, model_->spec, model_->weight_dtype, model_->num_layers(),
                            model_->WeightBytes()};
    service_->SetModels(std::move(models));
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::Router::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                                    grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
    batcher_.reset();  // drains before the service and the backend go
  }

  // Random bf16 hidden states (`bad_value` at one element when finite is false) and the
  // reference's answer.
  Case MakeCase(int layer, int tokens, std::mt19937_64& rng, bool finite = true) {
    std::normal_distribution<float> normal;
    const int hidden = model_->spec.hidden;
    Case c;
    c.request.set_model(kModel);
    c.request.set_layer(layer);
    c.request.set_request_id(rng());
    auto* t = c.request.mutable_hidden_states();
    t->set_dtype(v1::DTYPE_BF16);
    t->add_shape(tokens);
    t->add_shape(hidden);
    std::string bytes(size_t(tokens) * hidden * 2, '\0');
    std::vector<float> hidden_f(size_t(tokens) * hidden);
    for (size_t i = 0; i < hidden_f.size(); ++i) {
      StoreFromFloat(bytes.data(), DType::kBF16, i, normal(rng));
      hidden_f[i] = LoadAsFloat(bytes.data(), DType::kBF16, i);
    }
    if (!finite)
      StoreFromFloat(bytes.data(), DType::kBF16, rng() % hidden_f.size(),
                     std::numeric_limits<float>::quiet_NaN());
    t->set_data(std::move(bytes));
    const auto& l = model_->layers[layer];
    std::vector<float> w(size_t(model_->spec.experts) * hidden);
    for (size_t i = 0; i < w.size(); ++i)
      w[i] = LoadAsFloat(l.weight.data(), model_->weight_dtype, i);
    if (finite)
      c.ref = testing::ReferenceRoute(model_->spec, tokens, hidden_f, w, l.router_bias,
                                      l.correction_bias);
    return c;
  }
  // The blocks come back once the worker drops a request, just after its answer is sent.
  int FreeBlocksAfterTheLastAnswer() {
    InputPool* pool = backend_.input_pool();
    for (int i = 0; i < 5000 && pool->free_blocks() != kBlocks; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return pool->free_blocks();
  }
  std::string Check(const Case& c, const v1::RouteResponse& r) {
    EXPECT_EQ(r.request_id(), c.request.request_id());
    std::vector<int32_t> ids(r.expert_ids().begin(), r.expert_ids().end());
    std::vector<float> weights(r.expert_weights().begin(), r.expert_weights().end());
    if (ids.size() != c.ref.size() * model_->spec.top_k) return "wrong number of ids";
    return testing::CompareWithReference(model_->spec, c.ref, ids.data(), weights.data(), 1e-3);
  }

  MetricsRegistry registry_;
  ServerMetrics metrics_{&registry_};
  EmulatedStagingBackend backend_;
  std::unique_ptr<RouterModel> model_;
  std::unique_ptr<Batcher> batcher_;
  std::unique_ptr<RouterService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Router::Stub> stub_;
};

// One caller's unary calls and a stream's requests, 1..16 tokens: the answers are the
// reference's, some went through the hand-over while their bytes were still being copied,
// and every input block came back.
TEST_F(RouterServiceStaging, RequestsHandedOverBeforeTheirCopyRouteLikeTheReference) {
  std::mt19937_64 rng(17);
  // Made first, so that the requests follow one another while the worker spins.
  std::vector<Case> unary, streamed;
  for (int i = 0; i < 12; ++i) unary.push_back(MakeCase(i % kLayers, 1 + int(rng() % 16), rng));
  for (int i = 0; i < 12; ++i) streamed.push_back(MakeCase(i % kLayers, 1 + int(rng() % 16), rng));
  streamed.push_back(MakeCase(1, 16, rng));
  for (size_t i = 0; i < unary.size(); ++i) {
    const Case& c = unary[i];
    grpc::ClientContext ctx;
    v1::RouteResponse resp;
    const grpc::Status s = stub_->Route(&ctx, c.request, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(Check(c, resp), "") << "unary " << i;
  }
  grpc::ClientContext ctx;
  auto stream = stub_->RouteStream(&ctx);
  for (size_t i = 0; i < streamed.size(); ++i) {
    const Case& c = streamed[i];
    ASSERT_TRUE(stream->Write(c.request));
    v1::RouteStreamResponse resp;
    ASSERT_TRUE(stream->Read(&resp));
    ASSERT_TRUE(resp.has_response()) << resp.error().message();
    EXPECT_EQ(Check(c, resp.response()), "") << "stream " << i;
  }
  // Whether the worker reached the device while a request's bytes were still being copied
  // depends on the scheduler (on a loaded 2-core host the two threads may share a core):
  // more 16-token calls until one did, so the path is known to have been taken.
  for (int i = 0; i < 300 && backend_.staged_while_filling.load() == 0; ++i) {
    ASSERT_TRUE(stream->Write(streamed.back().request));
    v1::RouteStreamResponse resp;
    ASSERT_TRUE(stream->Read(&resp));
    ASSERT_TRUE(resp.has_response()) << resp.error().message();
    EXPECT_EQ(Check(streamed.back(), resp.response()), "") << "stream, extra " << i;
  }
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_GT(backend_.staged_while_filling.load(), 0);
  EXPECT_EQ(FreeBlocksAfterTheLastAnswer(), kBlocks);
}

// A NaN found "on the device" fails its own request, named as validation names it (the
// batcher's host check after the device's mark); a request refused before its copy (its data
// the wrong size) never fills its block; the next one routes.
TEST_F(RouterServiceStaging, BadRequestsFailAloneAndGiveTheirBlocksBack) {
  std::mt19937_64 rng(23);
  const Case nan = MakeCase(0, 3, rng, /*finite=*/false);
  Case short_data = MakeCase(1, 2, rng);
  short_data.request.mutable_hidden_states()->mutable_data()->resize(100);
  const Case good = MakeCase(1, 16, rng);
  const Case* const bad_cases[] = {&nan, &short_data};
  for (const Case* bad : bad_cases) {
    grpc::ClientContext ctx;
    v1::RouteResponse resp;
    const grpc::Status s = stub_->Route(&ctx, bad->request, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("hidden_states.data"), std::string::npos) << s.error_message();
  }
  grpc::ClientContext ctx;
  v1::RouteResponse resp;
  ASSERT_TRUE(stub_->Route(&ctx, good.request, &resp).ok());
  EXPECT_EQ(Check(good, resp), "");
  EXPECT_EQ(FreeBlocksAfterTheLastAnswer(), kBlocks);
}

// ModelInfo lists the backend's kernel per token bucket, field for field, in GetModel and
// ListModels alike.
TEST_F(RouterServiceStaging, ModelInfoListsTheBackendsKernelChoices) {
  grpc::ClientContext get_ctx;
  v1::GetModelRequest get;
  get.set_name(kModel);
  v1::ModelInfo info;
  ASSERT_TRUE(stub_->GetModel(&get_ctx, get, &info).ok());
  grpc::ClientContext list_ctx;
  v1::ListModelsResponse list;
  ASSERT_TRUE(stub_->ListModels(&list_ctx, v1::ListModelsRequest(), &list).ok());
  ASSERT_EQ(list.models_size(), 1);
  for (const v1::ModelInfo& m : {info, list.models(0)}) {
    ASSERT_EQ(m.kernels_size(), 2);
    EXPECT_EQ(m.kernels(0).tokens(), 1);
    EXPECT_EQ(m.kernels(0).hidden_dtype(), v1::DTYPE_BF16);
    EXPECT_EQ(m.kernels(0).config(), "mma nt=1 S=8 polled coop ded 1cta");
    EXPECT_EQ(m.kernels(0).source(), "autotuned");
    EXPECT_DOUBLE_EQ(m.kernels(0).tuned_us(), 3.25);
    EXPECT_EQ(m.kernels(1).tokens(), 256);
    EXPECT_EQ(m.kernels(1).hidden_dtype(), v1::DTYPE_FP16);
    EXPECT_EQ(m.kernels(1).config(), "cublasLt gemm + epilogue kernel");
    EXPECT_EQ(m.kernels(1).source(), "cache");
    EXPECT_EQ(m.kernels(1).tuned_us(), 0);
  }
}

}  // namespace
}  // namespace moe
