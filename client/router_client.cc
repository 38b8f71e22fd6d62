#include "client/router_client.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "grpc/health/v1/health.grpc.pb.h"

namespace moe {
namespace v1 = moe_router::v1;

// RouteAsync calls whose `done` has not returned. The channel must outlive them: a call's
// ClientContext holds a reference to it, and in gRPC 1.51 a channel whose last reference
// goes on gRPC's callback thread joins that thread from itself and then frees the
// completion queue the thread is still polling (a double free; grpc/grpc#37858). So the
// destructor waits, and the last reference goes on the destroying thread.
struct RouterClient::AsyncCalls {
  std::mutex mu;
  std::condition_variable changed;
  int in_flight = 0;  // guarded by mu
  void WaitUntilAtMost(int n) {
    std::unique_lock<std::mutex> lock(mu);
    changed.wait(lock, [&] { return in_flight <= n; });
  }
};

namespace {
// The client whose `done` this thread is running, if any.
thread_local const RouterClient* t_callback_of = nullptr;
}  // namespace

RouterClient::RouterClient(const std::string& address, const ClientOptions& options)
    : async_calls_(std::make_shared<AsyncCalls>()) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, options.keepalive_ms);
  if (!options.load_balancing.empty()) args.SetLoadBalancingPolicyName(options.load_balancing);
  std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
  if (!options.tls_ca.empty()) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = options.tls_ca;
    ssl.pem_cert_chain = options.tls_cert;
    ssl.pem_private_key = options.tls_key;
    creds = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  }
  channel_ = grpc::CreateCustomChannel(address, creds, args);
  stub_ = v1::Router::NewStub(channel_);
}

v1::RouteRequest MakeRouteRequest(const std::string& model, int layer, v1::DType dtype, int tokens,
                                  int hidden, const std::string& bytes, uint64_t request_id) {
  v1::RouteRequest req;
  req.set_model(model);
  req.set_layer(layer);
  req.set_request_id(request_id);
  auto* t = req.mutable_hidden_states();
  t->set_dtype(dtype);
  t->add_shape(tokens);
  t->add_shape(hidden);
  t->set_data(bytes);
  return req;
}

Routed Unpack(const v1::RouteResponse& resp) {
  Routed out;
  out.tokens = resp.tokens();
  out.top_k = resp.top_k();
  out.ids.assign(resp.expert_ids().begin(), resp.expert_ids().end());
  out.weights.assign(resp.expert_weights().begin(), resp.expert_weights().end());
  out.timing = resp.timing();
  return out;
}

grpc::Status RouterClient::Route(const std::string& model, int layer, v1::DType dtype, int tokens,
                                 int hidden, const std::string& bytes, Routed* out,
                                 int timeout_ms) {
  const v1::RouteRequest req = MakeRouteRequest(model, layer, dtype, tokens, hidden, bytes);
  v1::RouteResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  grpc::Status s = stub_->Route(&ctx, req, &resp);
  if (s.ok()) *out = Unpack(resp);
  return s;
}

void RouterClient::RouteAsync(v1::RouteRequest request,
                              std::function<void(grpc::Status, Routed)> done, int timeout_ms) {
  struct Call {
    grpc::ClientContext ctx;
    v1::RouteRequest req;
    v1::RouteResponse resp;
    std::function<void(grpc::Status, Routed)> done;
  };
  {
    std::lock_guard<std::mutex> lock(async_calls_->mu);
    ++async_calls_->in_flight;
  }
  auto* call = new Call{{}, std::move(request), {}, std::move(done)};
  call->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  stub_->async()->Route(
      &call->ctx, &call->req, &call->resp,
      [call, client = this, calls = async_calls_](const grpc::Status& s) {
        const RouterClient* outer = t_callback_of;
        t_callback_of = client;
        call->done(s, s.ok() ? Unpack(call->resp) : Routed{});
        t_callback_of = outer;
        delete call;  // its channel reference, before the client may let go of its own
        std::lock_guard<std::mutex> lock(calls->mu);
        --calls->in_flight;
        calls->changed.notify_all();
      });
}

RouterClient::~RouterClient() {
  if (t_callback_of != this) {
    async_calls_->WaitUntilAtMost(0);
    return;  // the channel goes here, on this thread
  }
  // Inside one of its own callbacks: that call's context lets go of the channel on this
  // gRPC thread once the callback returns, so the client's references must outlive it.
  // A thread of our own waits for that and drops them.
  async_calls_->WaitUntilAtMost(1);
  std::thread([calls = async_calls_, channel = std::move(channel_),
               stub = std::move(stub_)]() mutable {
    calls->WaitUntilAtMost(0);
    stub.reset();
    channel.reset();
  }).detach();
}

std::unique_ptr<RouteStreamSession> RouterClient::OpenStream() {
  std::unique_ptr<RouteStreamSession> session(new RouteStreamSession());
  session->stream_ = stub_->RouteStream(&session->ctx_);
  return session;
}

grpc::Status RouterClient::ListModels(v1::ListModelsResponse* out) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return stub_->ListModels(&ctx, v1::ListModelsRequest(), out);
}

grpc::Status RouterClient::Health(bool* serving) {
  auto stub = grpc::health::v1::Health::NewStub(channel_);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status s = stub->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &resp);
  *serving = s.ok() && resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  return s;
}

}  // namespace moe
