#include "server/router_service.h"

#include <atomic>
#include <deque>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "server/grpc_status.h"

namespace moe {
namespace v1 = moe_router::v1;

namespace {

v1::DType ToProto(DType t) {
  switch (t) {
    case DType::kBF16:
      return v1::DTYPE_BF16;
    case DType::kFP16:
      return v1::DTYPE_FP16;
    case DType::kFP32:
      return v1::DTYPE_FP32;
  }
  return v1::DTYPE_UNSPECIFIED;
}

std::string CodeName(absl::StatusCode c) { return absl::StatusCodeToString(c); }

}  // namespace

RouterService::RouterService(Batcher* batcher, RouterBackend* backend, ServerMetrics* metrics,
                             int max_tokens, int max_stream_in_flight)
    : batcher_(batcher),
      backend_(backend),
      metrics_(metrics),
      max_tokens_(max_tokens),
      max_stream_in_flight_(max_stream_in_flight) {}

void RouterService::SetModels(ModelTable models) {
  auto table = std::make_shared<const ModelTable>(std::move(models));
  absl::MutexLock lock(&mu_);
  models_ = std::move(table);
}

std::shared_ptr<const RouterService::ModelTable> RouterService::Models() const {
  absl::MutexLock lock(&mu_);
  return models_;
}

void RouterService::Submit(v1::RouteRequest* request, grpc::CallbackServerContext* ctx, Done done) {
  HiddenBytes hidden(std::move(*request->mutable_hidden_states()->mutable_data()));
  Submit(absl::OkStatus(), *request, std::move(hidden), Clock::now(), ctx, std::move(done));
}

void RouterService::Submit(const absl::Status& parsed, const v1::RouteRequest& req,
                           HiddenBytes hidden, Clock::time_point arrival,
                           grpc::CallbackServerContext* ctx, Done done,
                           const std::function<void(BlockFill*)>& copy_deferred) {
  const uint64_t request_id = req.request_id();
  // `label` is the metrics' model label: a loaded model's name, else kUnknownModelLabel.
  // Never the client's string: every made-up name would be a new series, without bound.
  auto finish = [this, arrival, done = std::move(done)](const std::string& label, absl::Status s,
                                                        v1::RouteResponse r) {
    metrics_->requests->Increment({{"model", label}, {"code", CodeName(s.code())}});
    metrics_->request_seconds->Observe(
        {{"model", label}}, std::chrono::duration<double>(Clock::now() - arrival).count());
    metrics_->in_flight->Increment({}, -1);
    done(std::move(s), std::move(r));
  };
  metrics_->in_flight->Increment({}, 1);
  if (!parsed.ok()) {
    finish(kUnknownModelLabel, parsed, {});
    return;
  }
  const auto models = Models();
  if (models == nullptr) {
    finish(kUnknownModelLabel, absl::UnavailableError("models are still loading; retry shortly"),
           {});
    return;
  }
  auto work =
      ValidateRouteRequest(req, &hidden, *models, max_tokens_, !backend_->ChecksFiniteOnDevice());
  if (!work.ok()) {
    // Only a refused request needs the lookup: a routed one's model is loaded.
    finish(models->count(req.model()) != 0 ? req.model() : kUnknownModelLabel, work.status(), {});
    return;
  }
  (*work)->arrival = arrival;
  if (ctx != nullptr) {
    const auto deadline = ctx->deadline();
    if (deadline != std::chrono::system_clock::time_point::max()) {
      const auto remaining = deadline - std::chrono::system_clock::now();
      (*work)->deadline = arrival + std::chrono::duration_cast<Clock::duration>(remaining);
    }
    (*work)->cancelled = [ctx] { return ctx->IsCancelled(); };
  }
  const int top_k = (*work)->top_k, tokens = (*work)->tokens;
  (*work)->done = [finish, label = (*work)->model, request_id, top_k, tokens, arrival](
                      absl::Status s, RouteResult r) {
    v1::RouteResponse resp;
    if (s.ok()) {
      resp.set_request_id(request_id);
      resp.set_tokens(tokens);
      resp.set_top_k(top_k);
      *resp.mutable_expert_ids() = {r.ids.begin(), r.ids.end()};
      *resp.mutable_expert_weights() = {r.weights.begin(), r.weights.end()};
      *resp.mutable_logits() = {r.logits.begin(), r.logits.end()};
      auto* t = resp.mutable_timing();
      t->set_queue_us(r.queue_seconds * 1e6);
      t->set_compute_us(r.compute_seconds * 1e6);
      t->set_batch_tokens(r.batch_tokens);
      t->set_batch_requests(r.batch_requests);
      t->set_server_us(std::chrono::duration<double, std::micro>(Clock::now() - arrival).count());
      t->set_arrival_monotonic_ns(
          std::chrono::duration_cast<std::chrono::nanoseconds>(arrival.time_since_epoch()).count());
    }
    finish(label, std::move(s), std::move(resp));
  };
  if (copy_deferred) {
    // The worker launches while the bytes are copied in (each chunk marked as it lands):
    // the launch and the device's transfer overlap the copy out of gRPC's message.
    BlockFill fill = (*work)->hidden_states.BeginFill();
    const bool handed_over = batcher_->TryHandOff(*work);
    copy_deferred(&fill);
    fill.Finish();
    if (handed_over) return;
  }
  if (!batcher_->TryRunInline(*work)) batcher_->Submit(std::move(*work));
}

grpc::ServerUnaryReactor* RouterService::Route(grpc::CallbackServerContext* ctx,
                                               const grpc::ByteBuffer* req,
                                               grpc::ByteBuffer* resp) {
  const auto arrival = Clock::now();
  auto* reactor = ctx->DefaultReactor();
  ParsedRouteRequest parsed;
  const absl::Status status =
      ParseRouteRequest(*req, backend_->input_pool(), &parsed, defer_hidden_copy());
  Submit(
      status, parsed.request, std::move(parsed.hidden), arrival, ctx,
      [reactor, resp](const absl::Status& s, const v1::RouteResponse& r) {
        if (!s.ok()) return reactor->Finish(ToGrpcStatus(s));
        bool own_buffer;
        reactor->Finish(
            grpc::SerializationTraits<v1::RouteResponse>::Serialize(r, resp, &own_buffer));
      },
      DeferredCopy(*req, parsed));
  return reactor;
}

namespace {

// Answers each streamed request in arrival order; a failed request gets an error entry
// and the stream goes on (a message that is no RouteRequest too, with request_id 0). At most
// max_stream_in_flight requests are held (queued, being routed, or answered and waiting to be
// written): at the bound the next read waits for a write to complete.
//
// Lifetime: an answer arrives on a batcher thread, outside gRPC's reactions, and may start a
// write or Finish. gRPC does not wait for it: once Finish is called (on a cancelled stream,
// by the last answer after a failed write), OnDone may run at once on another thread while
// the answer still holds mu_. So OnDone does not delete the reactor by itself: each answer
// not yet given holds it too (holders_), and whichever lets go last deletes it, after its
// lock is released.
class RouteStreamReactor : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  RouteStreamReactor(RouterService* service, grpc::CallbackServerContext* ctx)
      : service_(service), ctx_(ctx) {
    service_->metrics()->open_streams->Increment({}, 1);
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      std::lock_guard<std::recursive_mutex> lock(mu_);
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    const auto arrival = Clock::now();
    uint64_t seq;
    {
      std::lock_guard<std::recursive_mutex> lock(mu_);
      seq = next_seq_++;
      pending_.emplace_back();
    }
    ParsedRouteRequest parsed;
    const absl::Status status = ParseRouteRequest(request_, service_->backend()->input_pool(),
                                                  &parsed, service_->defer_hidden_copy());
    const uint64_t request_id = parsed.request.request_id();  // 0 when unparsable
    holders_.fetch_add(1, std::memory_order_relaxed);         // the answer's, below
    auto answer = [this, seq, request_id](const absl::Status& s, v1::RouteResponse r) {
      v1::RouteStreamResponse message;
      message.set_request_id(request_id);
      if (s.ok()) {
        *message.mutable_response() = std::move(r);
      } else {
        message.mutable_error()->set_code(static_cast<int>(s.code()));
        message.mutable_error()->set_message(std::string(s.message()));
      }
      grpc::ByteBuffer bytes;
      bool own_buffer;
      // Cannot fail: no required fields, and far below protobuf's 2 GB.
      (void)grpc::SerializationTraits<v1::RouteStreamResponse>::Serialize(message, &bytes,
                                                                          &own_buffer);
      {
        std::lock_guard<std::recursive_mutex> lock(mu_);
        Slot& slot = pending_[seq - first_seq_];
        slot.ready = true;
        slot.message.Swap(&bytes);
        WriteNextLocked();
        // After a failed write the answer was dropped here, not written: the stream may be
        // done now, and no OnWriteDone will come to finish it.
        MaybeFinishLocked();
      }
      Release();
    };
    service_->Submit(status, parsed.request, std::move(parsed.hidden), arrival, ctx_,
                     std::move(answer), DeferredCopy(request_, parsed));
    request_.Clear();  // gRPC's slices are freed after the hand-off, not before it
    {
      std::lock_guard<std::recursive_mutex> lock(mu_);
      if (pending_.size() >= static_cast<size_t>(service_->max_stream_in_flight())) {
        read_paused_ = true;  // OnWriteDone reads on once an answer is written
        return;
      }
    }
    StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    pending_.pop_front();
    ++first_seq_;
    writing_ = false;
    if (!ok) write_failed_ = true;
    WriteNextLocked();
    ResumeReadingLocked();
    MaybeFinishLocked();
  }

  void OnDone() override {
    service_->metrics()->open_streams->Increment({}, -1);
    Release();
  }

 private:
  struct Slot {
    bool ready = false;
    grpc::ByteBuffer message;  // a serialized RouteStreamResponse
  };

  void Release() {
    if (holders_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  void WriteNextLocked() {
    if (writing_ || pending_.empty() || !pending_.front().ready) return;
    if (write_failed_) {  // the client is gone: drop answers, keep the bookkeeping
      pending_.pop_front();
      ++first_seq_;
      ResumeReadingLocked();
      WriteNextLocked();
      return;
    }
    writing_ = true;
    StartWrite(&pending_.front().message);
  }

  void ResumeReadingLocked() {
    if (!read_paused_ || pending_.size() >= static_cast<size_t>(service_->max_stream_in_flight()))
      return;
    read_paused_ = false;
    StartRead(&request_);
  }

  void MaybeFinishLocked() {
    if (reads_done_ && pending_.empty() && !writing_ && !finished_) {
      finished_ = true;
      Finish(grpc::Status::OK);
    }
  }

  RouterService* const service_;
  grpc::CallbackServerContext* const ctx_;
  grpc::ByteBuffer request_;
  std::recursive_mutex mu_;
  std::deque<Slot> pending_;  // answers not yet written, in request order
  uint64_t first_seq_ = 0, next_seq_ = 0;
  bool reads_done_ = false, writing_ = false, finished_ = false, write_failed_ = false;
  bool read_paused_ = false;     // at max_stream_in_flight: no read outstanding
  std::atomic<int> holders_{1};  // gRPC until OnDone, and each answer not yet given
};

}  // namespace

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* RouterService::RouteStream(
    grpc::CallbackServerContext* ctx) {
  return new RouteStreamReactor(this, ctx);
}

void RouterService::FillInfo(const ModelDescription& m, v1::ModelInfo* info) const {
  info->set_name(m.name);
  info->set_family(m.spec.family);
  info->set_hidden(m.spec.hidden);
  info->set_experts(m.spec.experts);
  info->set_top_k(m.spec.top_k);
  info->set_layers(m.layers);
  auto* r = info->mutable_routing();
  r->set_scoring(std::string(ScoringName(m.spec.scoring)));
  r->set_order(std::string(RoutingOrderName(m.spec.order)));
  r->set_router_bias(m.spec.has_router_bias);
  r->set_correction_bias(m.spec.has_correction_bias);
  r->set_n_group(m.spec.n_group);
  r->set_topk_group(m.spec.topk_group);
  r->set_renormalize(m.spec.renormalize);
  r->set_scaling_factor(m.spec.scaling_factor);
  info->set_weight_dtype(ToProto(m.weight_dtype));
  info->set_backend(backend_->name());
  info->set_device(backend_->device());
  info->set_weight_bytes(m.weight_bytes);
  info->set_max_tokens(max_tokens_);
  for (const KernelChoice& k : backend_->KernelChoices(m.name)) {
    v1::KernelChoice* out = info->add_kernels();
    out->set_tokens(k.tokens);
    out->set_hidden_dtype(ToProto(k.hidden_dtype));
    out->set_config(k.config);
    out->set_source(k.source);
    out->set_tuned_us(k.tuned_us);
  }
}

grpc::ServerUnaryReactor* RouterService::ListModels(grpc::CallbackServerContext* ctx,
                                                    const v1::ListModelsRequest*,
                                                    v1::ListModelsResponse* resp) {
  if (const auto models = Models())
    for (const auto& [name, m] : *models) FillInfo(m, resp->add_models());
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* RouterService::GetModel(grpc::CallbackServerContext* ctx,
                                                  const v1::GetModelRequest* req,
                                                  v1::ModelInfo* resp) {
  auto* reactor = ctx->DefaultReactor();
  const auto models = Models();
  auto it = models ? models->find(req->name()) : ModelTable::const_iterator();
  if (models == nullptr || it == models->end()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                 absl::StrCat("name: model '", req->name(), "' is not loaded")));
  } else {
    FillInfo(it->second, resp);
    reactor->Finish(grpc::Status::OK);
  }
  return reactor;
}

}  // namespace moe
