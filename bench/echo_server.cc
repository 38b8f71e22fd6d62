// echo_server: the transport's ceiling for the service benchmark. It speaks the
// moe_router.v1.Router API and answers Route/RouteStream with a response of the same
// size as moe-router-server's (tokens x top_k ids and weights) without batching or
// computing, so load-generator numbers against it measure gRPC alone.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "kernels/flags_usage.h"
#include "moe_router/v1/router.grpc.pb.h"
#include "server/heap_tuning.h"
#include "server/listen_address.h"

ABSL_FLAG(std::string, address, "127.0.0.1:50052", "Listen address");
ABSL_FLAG(std::string, model, "demo-deepseek-v3", "Model name it pretends to serve");
ABSL_FLAG(int, hidden, 7168, "Hidden size reported by ListModels");
ABSL_FLAG(int, top_k, 8, "Experts per token in each response");
ABSL_FLAG(int, busy_us, 0,
          "Spin this long in each handler, as a GPU sync would: tells whether holding the "
          "gRPC thread costs more than the time held");
ABSL_FLAG(bool, handoff, false,
          "Answer calls (unary and streamed) from a busy-waiting worker thread, as "
          "moe-router-server's batcher does, instead of on the gRPC thread that read them: "
          "the transport's cost of answering from another thread");

ABSL_FLAG(bool, read_ahead, false,
          "Streams: start the next read as soon as a request is read (before its answer is "
          "written), as moe-router-server's RouteStream does, instead of after the write");

namespace {
namespace v1 = moe_router::v1;

std::atomic<bool> g_stop{false};

using Clock = std::chrono::steady_clock;

// The answer to `req`, which reached its handler at `arrival`. Its Timing carries only what
// lets a load generator on this host split the transport's time as it does the server's
// (arrival_monotonic_ns, server_us); the handler here sees a message gRPC has already
// parsed, so the way in includes that parse.
void Fill(const v1::RouteRequest& req, int top_k, Clock::time_point arrival,
          v1::RouteResponse* resp) {
  if (const int busy = absl::GetFlag(FLAGS_busy_us); busy > 0) {
    const auto until = Clock::now() + std::chrono::microseconds(busy);
    while (Clock::now() < until) {
    }
  }
  const int tokens = req.hidden_states().shape_size() > 0 ? int(req.hidden_states().shape(0)) : 0;
  resp->set_request_id(req.request_id());
  resp->set_tokens(tokens);
  resp->set_top_k(top_k);
  resp->mutable_expert_ids()->Resize(tokens * top_k, 0);
  resp->mutable_expert_weights()->Resize(tokens * top_k, 0.0f);
  auto* t = resp->mutable_timing();
  t->set_arrival_monotonic_ns(
      std::chrono::duration_cast<std::chrono::nanoseconds>(arrival.time_since_epoch()).count());
  t->set_server_us(std::chrono::duration<double, std::micro>(Clock::now() - arrival).count());
}

// --handoff: one worker thread that busy-waits for calls and answers them.
class HandoffWorker {
 public:
  HandoffWorker() : thread_([this] { Loop(); }) {}
  ~HandoffWorker() {
    stop_ = true;
    thread_.join();
  }
  void Submit(std::function<void()> task) {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push_back(std::move(task));
    pending_.fetch_add(1, std::memory_order_release);
  }

 private:
  void Loop() {
    while (!stop_) {
      if (pending_.load(std::memory_order_acquire) == 0) {
        __builtin_ia32_pause();
        continue;
      }
      std::function<void()> task;
      {
        std::lock_guard<std::mutex> lock(mu_);
        task = std::move(tasks_.front());
        tasks_.pop_front();
        pending_.fetch_sub(1, std::memory_order_relaxed);
      }
      task();
    }
  }
  std::mutex mu_;
  std::deque<std::function<void()>> tasks_;
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

class EchoService final : public v1::Router::CallbackService {
 public:
  explicit EchoService(HandoffWorker* handoff) : handoff_(handoff) {}
  grpc::ServerUnaryReactor* Route(grpc::CallbackServerContext* ctx, const v1::RouteRequest* req,
                                  v1::RouteResponse* resp) override {
    const auto arrival = Clock::now();
    auto* r = ctx->DefaultReactor();
    if (handoff_ != nullptr) {
      handoff_->Submit([req, resp, r, arrival] {
        Fill(*req, absl::GetFlag(FLAGS_top_k), arrival, resp);
        r->Finish(grpc::Status::OK);
      });
      return r;
    }
    Fill(*req, absl::GetFlag(FLAGS_top_k), arrival, resp);
    r->Finish(grpc::Status::OK);
    return r;
  }
  grpc::ServerBidiReactor<v1::RouteRequest, v1::RouteStreamResponse>* RouteStream(
      grpc::CallbackServerContext*) override {
    class Reactor : public grpc::ServerBidiReactor<v1::RouteRequest, v1::RouteStreamResponse> {
     public:
      explicit Reactor(HandoffWorker* handoff)
          : handoff_(handoff), read_ahead_(absl::GetFlag(FLAGS_read_ahead)) {
        StartRead(&req_);
      }
      void OnReadDone(bool ok) override {
        const auto arrival = Clock::now();
        if (!ok) {
          std::lock_guard<std::recursive_mutex> lock(mu_);
          reads_done_ = true;
          if (!writing_ && unanswered_ == 0) Finish(grpc::Status::OK);
          return;
        }
        {
          std::lock_guard<std::recursive_mutex> lock(mu_);
          ++unanswered_;
        }
        if (read_ahead_) {
          // The answer from a copy of what it needs, so req_ takes the next read at once;
          // answers ready while a write is in flight wait for it, in order.
          v1::RouteRequest head;
          head.set_request_id(req_.request_id());
          *head.mutable_hidden_states()->mutable_shape() = req_.hidden_states().shape();
          StartRead(&req_);
          Answer([this, head, arrival] {
            v1::RouteStreamResponse r;
            r.set_request_id(head.request_id());
            Fill(head, absl::GetFlag(FLAGS_top_k), arrival, r.mutable_response());
            Write(std::move(r));
          });
          return;
        }
        Answer([this, arrival] {  // req_ stays put: the next read starts after this write
          v1::RouteStreamResponse r;
          r.set_request_id(req_.request_id());
          Fill(req_, absl::GetFlag(FLAGS_top_k), arrival, r.mutable_response());
          Write(std::move(r));
        });
      }
      void OnWriteDone(bool ok) override {
        std::lock_guard<std::recursive_mutex> lock(mu_);
        writing_ = false;
        if (!ok) {
          Finish(grpc::Status::OK);
          return;
        }
        if (!queued_.empty()) {
          resp_ = std::move(queued_.front());
          queued_.pop_front();
          writing_ = true;
          StartWrite(&resp_);
        } else if (reads_done_) {
          if (unanswered_ == 0) Finish(grpc::Status::OK);
        } else if (!read_ahead_) {
          StartRead(&req_);
        }
      }
      void OnDone() override { delete this; }

     private:
      void Answer(std::function<void()> answer) {
        if (handoff_ != nullptr)
          handoff_->Submit(std::move(answer));
        else
          answer();
      }
      void Write(v1::RouteStreamResponse r) {
        std::lock_guard<std::recursive_mutex> lock(mu_);
        --unanswered_;
        if (writing_) {
          queued_.push_back(std::move(r));
          return;
        }
        resp_ = std::move(r);
        writing_ = true;
        StartWrite(&resp_);
      }

      HandoffWorker* const handoff_;
      const bool read_ahead_;
      v1::RouteRequest req_;
      std::recursive_mutex mu_;                     // a reaction may run inline in StartWrite
      v1::RouteStreamResponse resp_;                // the write in flight
      std::deque<v1::RouteStreamResponse> queued_;  // read ahead: answers waiting for it
      bool writing_ = false, reads_done_ = false;
      int unanswered_ = 0;  // requests read whose answer has not reached Write
    };
    return new Reactor(handoff_);
  }

 private:
  HandoffWorker* const handoff_;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* ctx,
                                       const v1::ListModelsRequest*,
                                       v1::ListModelsResponse* resp) override {
    auto* m = resp->add_models();
    m->set_name(absl::GetFlag(FLAGS_model));
    m->set_hidden(absl::GetFlag(FLAGS_hidden));
    m->set_top_k(absl::GetFlag(FLAGS_top_k));
    m->set_layers(1 << 20);
    m->set_backend("echo");
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
};

}  // namespace

int main(int argc, char** argv) {
  // The same heap settings as moe-router-server: without them a fresh echo server answers
  // 16-token calls 2-5x slower (page faults) until a burst of load has raised glibc's
  // thresholds, and the transport's ceiling would depend on what ran before.
  const std::string heap = moe::TuneHeapForLargeMessages();
  absl::SetProgramUsageMessage(
      "The transport's ceiling for the service benchmark: answers moe_router.v1 Route and\n"
      "RouteStream with responses of moe-router-server's size, computing nothing.\n"
      "  echo_server --address 127.0.0.1:50052 --top_k 8");
  moe::SetFlagsUsage("echo_server", __FILE__);
  absl::ParseCommandLine(argc, argv);
  if (absl::Status bad = moe::CheckListenAddress("--address", absl::GetFlag(FLAGS_address),
                                                 /*port_alone=*/false);
      !bad.ok()) {
    std::fprintf(stderr, "echo_server: %s\n", std::string(bad.message()).c_str());
    return 1;
  }
  std::unique_ptr<HandoffWorker> handoff;
  if (absl::GetFlag(FLAGS_handoff)) handoff = std::make_unique<HandoffWorker>();
  EchoService service(handoff.get());
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_address), grpc::InsecureServerCredentials(), &port);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);  // a busy port is an error
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "echo_server: cannot listen on %s\n",
                 absl::GetFlag(FLAGS_address).c_str());
    return 1;
  }
  std::fprintf(stderr, "echo_server: listening on port %d; %s\n", port, heap.c_str());
  signal(SIGTERM, [](int) { g_stop = true; });
  signal(SIGINT, [](int) { g_stop = true; });
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}
