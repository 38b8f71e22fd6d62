// The real moe-router-server binary on loopback (CPU backend by default; set
// MOE_TEST_BACKEND=cuda on a GPU machine): routing checked against the reference,
// concurrency, streaming, every validation error, deadlines, shedding, metrics through
// promtool, health, SIGTERM drain, TLS, the C++ client library, and misbehaving callers beside
// well-behaved ones.
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/router_client.h"
#include "kernels/build_version.h"
#include "server/demo_models.h"
#include "server/metrics.h"
#include "tests/loopback_http.h"
#include "tests/reference_router.h"

namespace moe {
namespace {
namespace v1 = moe_router::v1;

constexpr int kLayers = 3;

// The server binary: MOE_SERVER_BINARY from the environment, else the one this build
// made, else a moe-router-server beside this test binary (a device bundle, where the
// build's path does not exist).
std::string ServerBinary() {
  if (const char* env = std::getenv("MOE_SERVER_BINARY")) return env;
  if (access(MOE_SERVER_BINARY, X_OK) == 0) return MOE_SERVER_BINARY;
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    std::string dir(self, size_t(n));
    dir.resize(dir.rfind('/') + 1);
    if (access((dir + "moe-router-server").c_str(), X_OK) == 0) return dir + "moe-router-server";
  }
  return MOE_SERVER_BINARY;
}

// In the ASan/UBSan build, Debian's civetweb fails to start its worker threads inside
// the instrumented server (mg_start2: "Cannot create first worker thread"; plain and
// other instrumented programs start it fine — not yet understood), so those runs serve
// no metrics endpoint and skip the scrape. The normal build covers metrics fully.
#ifdef MOE_SANITIZE_BUILD
constexpr bool kMetricsEndpoint = false;
#else
constexpr bool kMetricsEndpoint = true;
#endif

std::string Backend() {
  const char* b = std::getenv("MOE_TEST_BACKEND");
  return b ? b : "cpu";
}

class ServerProcess {
 public:
  explicit ServerProcess(std::vector<std::string> extra = {}, bool default_models = true) {
    port_file_ = absl::StrCat("/tmp/moe_server_test_ports_", getpid(), "_", counter_++);
    std::remove(port_file_.c_str());
    std::vector<std::string> args = {
        ServerBinary(), "--address=127.0.0.1:0",
        kMetricsEndpoint ? "--metrics_address=127.0.0.1:0" : "--metrics_address=",
        "--backend=" + Backend(), "--cpu_threads=2",
        // Shared by this test binary's servers: on the GPU only the first one autotunes
        // its token buckets at load, as a production restart with a cache would.
        absl::StrCat("--autotune_cache=/tmp/moe_server_test_tune_", getpid()),
        "--port_file=" + port_file_};
    if (default_models) {
      args.emplace_back("--model=demo-deepseek-v3,demo-mixtral,demo-gpt-oss-20b");
      args.push_back(absl::StrCat("--demo_layers=", kLayers));
    }
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      freopen("/dev/null", "w", stdout);
      execv(argv[0], argv.data());
      _exit(127);
    }
    // Until the port file names the ports; a server that exits first (a missing binary,
    // a bad flag, a backend that cannot start) ends the wait at once, and WaitServing says
    // why instead of polling for 30 s.
    for (int i = 0; i < 600 && grpc_port_ == 0; ++i) {
      std::ifstream in(port_file_);
      in >> grpc_port_ >> metrics_port_;
      if (grpc_port_ != 0) break;
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        start_error_ = absl::StrCat(args[0], " exited before listening (",
                                    WIFEXITED(status) ? "status " : "signal ",
                                    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                                    WIFEXITED(status) && WEXITSTATUS(status) == 127
                                        ? ": not executable; set MOE_SERVER_BINARY"
                                        : "",
                                    ")");
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (grpc_port_ == 0) start_error_ = "no port file after 30 s: " + port_file_;
  }
  // Polls the health service until SERVING (models loaded); false after `seconds`.
  bool WaitServing(int seconds = 120) {
    if (!up()) {
      ADD_FAILURE() << start_error_;
      return false;
    }
    RouterClient client(address(), tls_);
    for (int i = 0; i < seconds * 20; ++i) {
      bool serving = false;
      if (client.Health(&serving).ok() && serving) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  void set_tls(ClientOptions tls) { tls_ = std::move(tls); }
  ~ServerProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::remove(port_file_.c_str());
  }
  // SIGTERM, without waiting for the exit (a drain to watch); Terminate waits.
  void SendTerm() { kill(pid_, SIGTERM); }
  // SIGTERM; returns the exit status.
  int Terminate() {
    SendTerm();
    int status = 0;
    waitpid(pid_, &status, 0);
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", grpc_port_); }
  int metrics_port() const { return metrics_port_; }
  bool up() const { return grpc_port_ != 0; }

 private:
  static inline int counter_ = 0;
  pid_t pid_ = -1;
  bool exited_ = false;
  std::string port_file_;
  int grpc_port_ = 0, metrics_port_ = 0;
  std::string start_error_;  // why the server never listened
  ClientOptions tls_;
};

// Random bf16 hidden states and the reference answer for a demo model's layer.
struct Case {
  std::string bytes;
  std::vector<testing::ReferenceToken> ref;
};

const RouterModel& Demo(const std::string& name) {
  static std::map<std::string, RouterModel>* models = new std::map<std::string, RouterModel>();
  auto it = models->find(name);
  if (it == models->end()) it = models->emplace(name, MakeDemoModel(name, kLayers).value()).first;
  return it->second;
}

Case MakeCase(const std::string& model, int layer, int tokens, uint64_t seed) {
  const RouterModel& m = Demo(model);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  Case c;
  c.bytes.resize(size_t(tokens) * m.spec.hidden * 2);
  std::vector<float> hidden_f(size_t(tokens) * m.spec.hidden);
  for (size_t i = 0; i < hidden_f.size(); ++i) {
    StoreFromFloat(c.bytes.data(), DType::kBF16, i, normal(rng));
    hidden_f[i] = LoadAsFloat(c.bytes.data(), DType::kBF16, i);
  }
  const auto& l = m.layers[layer];
  std::vector<float> w_f(size_t(m.spec.experts) * m.spec.hidden);
  for (size_t i = 0; i < w_f.size(); ++i) w_f[i] = LoadAsFloat(l.weight.data(), m.weight_dtype, i);
  c.ref = testing::ReferenceRoute(m.spec, tokens, hidden_f, w_f, l.router_bias, l.correction_bias);
  return c;
}

std::string Check(const std::string& model, const Case& c, const Routed& r) {
  return testing::CompareWithReference(Demo(model).spec, c.ref, r.ids.data(), r.weights.data(),
                                       1e-3);
}

v1::RouteRequest Request(const std::string& model, int layer, int tokens,
                         const std::string& bytes) {
  v1::RouteRequest req;
  req.set_model(model);
  req.set_layer(layer);
  auto* t = req.mutable_hidden_states();
  t->set_dtype(v1::DTYPE_BF16);
  t->add_shape(tokens);
  t->add_shape(Demo(model).spec.hidden);
  t->set_data(bytes);
  return req;
}

// GET /metrics: the body, or "" when the server does not answer within `timeout_s`.
std::string Scrape(int port, int timeout_s = 20) {
  const std::string out = testing::LoopbackHttp(port, "GET", "/metrics", timeout_s);
  const size_t body = out.find("\r\n\r\n");
  return body == std::string::npos ? "" : out.substr(body + 4);
}

bool HavePromtool() { return std::system("command -v promtool >/dev/null 2>&1") == 0; }

// `promtool check metrics` accepts a scrape (skipped where promtool is missing: CI installs
// it, scripts/install-deps.sh; GPU machines may not have it).
void ExpectPromtoolAccepts(const std::string& metrics) {
  if (!HavePromtool()) {
    std::printf("promtool not installed: text-format check skipped\n");
    return;
  }
  const std::string file = absl::StrCat("/tmp/moe_metrics_", getpid(), ".txt");
  std::ofstream(file) << metrics;
  EXPECT_EQ(std::system(("promtool check metrics < " + file).c_str()), 0);
  std::remove(file.c_str());
}

// A scrape's lines from `name` on, for failure messages (also of an empty scrape).
std::string MetricExcerpt(const std::string& metrics, const std::string& name) {
  const size_t at = metrics.find(name);
  return at == std::string::npos ? "(" + name + " not in the scrape)" : metrics.substr(at, 80);
}

// With MOE_TEST_BACKEND=cuda (the `gpu`-labelled run) every test needs a GPU.
class Server : public ::testing::Test {
 protected:
  void SetUp() override {
    if (Backend() == "cuda" && std::system("nvidia-smi -L >/dev/null 2>&1") != 0)
      GTEST_SKIP() << "MOE_TEST_BACKEND=cuda but no GPU";
  }
};

TEST_F(Server, RoutesLikeTheReferenceAndServesHealthAndModels) {
  ServerProcess server;
  ASSERT_TRUE(server.WaitServing());
  RouterClient client(server.address());
  bool serving = false;
  ASSERT_TRUE(client.Health(&serving).ok());
  EXPECT_TRUE(serving);
  v1::ListModelsResponse models;
  ASSERT_TRUE(client.ListModels(&models).ok());
  EXPECT_EQ(models.models_size(), 3);
  for (const char* model : {"demo-deepseek-v3", "demo-mixtral", "demo-gpt-oss-20b"}) {
    for (int tokens : {1, 5, 64}) {
      const int layer = tokens % kLayers;
      Case c = MakeCase(model, layer, tokens, 31 * tokens + layer);
      Routed r;
      const auto sent = std::chrono::steady_clock::now();
      auto s =
          client.Route(model, layer, v1::DTYPE_BF16, tokens, Demo(model).spec.hidden, c.bytes, &r);
      const auto received = std::chrono::steady_clock::now();
      ASSERT_TRUE(s.ok()) << s.error_message();
      EXPECT_EQ(Check(model, c, r), "") << model << " tokens=" << tokens;
      // The server's own time covers its queueing and its batch's computation.
      EXPECT_GE(r.timing.batch_tokens(), tokens);
      EXPECT_GT(r.timing.compute_us(), 0);
      EXPECT_GE(r.timing.server_us(), r.timing.queue_us() + r.timing.compute_us());
      // Its arrival stamp is this host's monotonic clock, between the send and the answer,
      // and the answer was ready before it was received.
      const auto ns = [](std::chrono::steady_clock::time_point t) {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
      };
      EXPECT_GT(r.timing.arrival_monotonic_ns(), ns(sent));
      EXPECT_LT(r.timing.arrival_monotonic_ns() + int64_t(r.timing.server_us() * 1e3),
                ns(received));
    }
  }
  grpc::ClientContext ctx;
  v1::GetModelRequest get;
  get.set_name("nope");
  v1::ModelInfo info;
  EXPECT_EQ(client.stub()->GetModel(&ctx, get, &info).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(Server, SixtyFourConcurrentCallersEachGetTheirOwnAnswer) {
  ServerProcess server;
  ASSERT_TRUE(server.WaitServing());
  RouterClient client(server.address());
  std::atomic<int> ok{0}, wrong{0};
  std::vector<std::thread> callers;
  for (int i = 0; i < 64; ++i) {
    callers.emplace_back([&, i] {
      const char* model = i % 2 ? "demo-deepseek-v3" : "demo-gpt-oss-20b";
      for (int round = 0; round < 3; ++round) {
        const int tokens = 1 + (i * 7 + round) % 9;
        Case c = MakeCase(model, i % kLayers, tokens, 1000 * i + round);
        Routed r;
        auto s = client.Route(model, i % kLayers, v1::DTYPE_BF16, tokens, Demo(model).spec.hidden,
                              c.bytes, &r, 60000);
        if (s.ok() && Check(model, c, r).empty())
          ++ok;
        else
          ++wrong;
      }
    });
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(ok.load(), 64 * 3);
}

TEST_F(Server, EveryValidationErrorHasItsCodeAndNamesTheField) {
  ServerProcess server;
  ASSERT_TRUE(server.WaitServing());
  RouterClient client(server.address());
  const std::string m = "demo-mixtral";
  const int hidden = Demo(m).spec.hidden;
  Case good = MakeCase(m, 0, 2, 5);
  struct Bad {
    v1::RouteRequest req;
    grpc::StatusCode code;
    std::string field;
  };
  std::vector<Bad> bad;
  auto base = Request(m, 0, 2, good.bytes);
  {
    auto r = base;
    r.set_model("nope");
    bad.push_back({r, grpc::StatusCode::NOT_FOUND, "model"});
  }
  {
    auto r = base;
    r.set_layer(kLayers);
    bad.push_back({r, grpc::StatusCode::NOT_FOUND, "layer"});
  }
  {
    auto r = base;
    r.set_layer(-1);
    bad.push_back({r, grpc::StatusCode::NOT_FOUND, "layer"});
  }
  {
    auto r = base;
    r.mutable_hidden_states()->set_dtype(v1::DTYPE_UNSPECIFIED);
    bad.push_back({r, grpc::StatusCode::INVALID_ARGUMENT, "hidden_states.dtype"});
  }
  {
    auto r = base;
    r.mutable_hidden_states()->add_shape(1);
    bad.push_back({r, grpc::StatusCode::INVALID_ARGUMENT, "hidden_states.shape"});
  }
  {
    auto r = base;
    r.mutable_hidden_states()->set_shape(1, hidden + 8);
    bad.push_back({r, grpc::StatusCode::INVALID_ARGUMENT, "hidden_states.shape[1]"});
  }
  {
    auto r = base;
    r.mutable_hidden_states()->set_shape(0, 0);
    bad.push_back({r, grpc::StatusCode::INVALID_ARGUMENT, "hidden_states.shape[0]"});
  }
  {
    auto r = base;
    r.mutable_hidden_states()->set_shape(0, 257);
    bad.push_back({r, grpc::StatusCode::INVALID_ARGUMENT, "hidden_states.shape[0]"});
  }
  {
    auto r = base;
    r.mutable_hidden_states()->mutable_data()->pop_back();
    bad.push_back({r, grpc::StatusCode::INVALID_ARGUMENT, "hidden_states.data"});
  }
  {
    auto r = base;
    (*r.mutable_hidden_states()->mutable_data())[6] = '\x80';
    (*r.mutable_hidden_states()->mutable_data())[7] = '\x7f';  // bf16 NaN
    bad.push_back({r, grpc::StatusCode::INVALID_ARGUMENT, "not finite"});
  }
  {
    auto r = base;
    r.mutable_hidden_states()->set_dtype(v1::DTYPE_FP32);
    bad.push_back({r, grpc::StatusCode::INVALID_ARGUMENT, "hidden_states.data"});
  }
  for (const Bad& b : bad) {
    grpc::ClientContext ctx;
    v1::RouteResponse resp;
    auto s = client.stub()->Route(&ctx, b.req, &resp);
    EXPECT_EQ(s.error_code(), b.code) << b.field << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(b.field), std::string::npos) << s.error_message();
  }
  // The server is unharmed: a good request still routes correctly.
  Routed r;
  ASSERT_TRUE(client.Route(m, 0, v1::DTYPE_BF16, 2, hidden, good.bytes, &r).ok());
  EXPECT_EQ(Check(m, good, r), "");
  // Made-up model names share one metrics series: a client cannot add series at will.
  for (const char* name : {"made-up-1", "made-up-2", "made-up-3"}) {
    auto req = base;
    req.set_model(name);
    grpc::ClientContext ctx;
    v1::RouteResponse resp;
    EXPECT_EQ(client.stub()->Route(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  if (kMetricsEndpoint) {
    const std::string metrics = Scrape(server.metrics_port());
    EXPECT_EQ(metrics.find("made-up"), std::string::npos);
    EXPECT_EQ(metrics.find("model=\"nope\""), std::string::npos);
    // "nope" above and the three made-up names.
    EXPECT_NE(metrics.find("moe_router_requests_total{model=\"(unknown)\",code=\"NOT_FOUND\"} 4"),
              std::string::npos)
        << metrics.substr(0, 3000);
    // The build: the project's version and the commit stamped into the server (the same
    // build stamp this test links).
    EXPECT_NE(metrics.find(absl::StrCat("moe_router_build_info{version=\"", MOE_PROJECT_VERSION,
                                        "\",commit=\"", moe::GetBuildVersion().commit, "\"} 1")),
              std::string::npos)
        << metrics.substr(0, 3000);
  }
  // Larger requests with a NaN in their last element, each way the CUDA backend takes
  // hidden states in (and checks them on the device): 9 DeepSeek-V3 tokens by the stage-in
  // kernel, 20 (a 32-token bucket, 458 KB) by the copy engine and the check kernel. Each is
  // refused by name; the same request without the NaN then routes correctly.
  const std::string big_model = "demo-deepseek-v3";
  const int big_hidden = Demo(big_model).spec.hidden;
  for (int tokens : {9, 20}) {
    Case big = MakeCase(big_model, 1, tokens, 70 + tokens);
    auto big_bad = Request(big_model, 1, tokens, big.bytes);
    auto& data = *big_bad.mutable_hidden_states()->mutable_data();
    data[data.size() - 2] = '\x80';
    data[data.size() - 1] = '\x7f';
    grpc::ClientContext ctx;
    v1::RouteResponse resp;
    auto s = client.stub()->Route(&ctx, big_bad, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_NE(s.error_message().find(absl::StrCat("hidden_states.data: element ",
                                                  tokens * big_hidden - 1, " is not finite")),
              std::string::npos)
        << s.error_message();
    Routed big_r;
    ASSERT_TRUE(
        client.Route(big_model, 1, v1::DTYPE_BF16, tokens, big_hidden, big.bytes, &big_r).ok());
    EXPECT_EQ(Check(big_model, big, big_r), "") << "tokens=" << tokens;
  }
}

// The raw bytes of a unary call, through a generic stub: the call's status.
grpc::Status RawRoute(const std::string& address, const std::string& bytes) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1), response;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  stub.UnaryCall(&ctx, "/moe_router.v1.Router/Route", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) {
                   std::lock_guard<std::mutex> lock(mu);
                   status = std::move(s);
                   done = true;
                   cv.notify_one();
                 });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  return status;
}

// Raw messages on one RouteStream, through a generic stub: the answers, in order, and the
// stream's status.
struct RawStreamResult {
  std::vector<v1::RouteStreamResponse> answers;
  grpc::Status status;
};

RawStreamResult RawRouteStream(const std::string& address, const std::vector<std::string>& sent) {
  class Reactor : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
   public:
    explicit Reactor(const std::vector<std::string>& sent) : sent_(sent) {}
    void Start() {
      StartRead(&in_);
      WriteNext();
      StartCall();
    }
    void OnWriteDone(bool ok) override {
      if (ok) WriteNext();
    }
    void OnReadDone(bool ok) override {
      if (!ok) return;
      v1::RouteStreamResponse answer;
      grpc::SerializationTraits<v1::RouteStreamResponse>::Deserialize(&in_, &answer);
      result_.answers.push_back(std::move(answer));
      StartRead(&in_);
    }
    void OnDone(const grpc::Status& s) override {
      std::lock_guard<std::mutex> lock(mu_);
      result_.status = s;
      done_ = true;
      cv_.notify_one();
    }
    RawStreamResult Wait() {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return done_; });
      return std::move(result_);
    }

   private:
    void WriteNext() {
      if (next_ == sent_.size()) return StartWritesDone();
      grpc::Slice slice(sent_[next_++]);
      out_ = grpc::ByteBuffer(&slice, 1);
      StartWrite(&out_);
    }
    const std::vector<std::string>& sent_;
    size_t next_ = 0;
    grpc::ByteBuffer out_, in_;
    RawStreamResult result_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool done_ = false;
  };
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  Reactor reactor(sent);
  stub.PrepareBidiStreamingCall(&ctx, "/moe_router.v1.Router/RouteStream", grpc::StubOptions(),
                                &reactor);
  reactor.Start();
  return reactor.Wait();
}

// The server parses Route's and RouteStream's bytes itself (hidden states straight into
// its input pool): bytes that are no RouteRequest are refused by name and harm nothing; a
// compressed request is parsed like any other; and routing is the same with few or no
// pinned input blocks (every request, or those finding none free, parsed into heap memory).
TEST_F(Server, ParsesRawRequestsMalformedCompressedAndWithoutPinnedBlocks) {
  const std::string m = "demo-deepseek-v3";
  const int hidden = Demo(m).spec.hidden;
  for (const char* blocks :
       {"--pinned_input_blocks=128", "--pinned_input_blocks=1", "--pinned_input_blocks=0"}) {
    SCOPED_TRACE(blocks);
    ServerProcess server({blocks});
    ASSERT_TRUE(server.WaitServing());
    RouterClient client(server.address());
    Case good = MakeCase(m, 1, 3, 17);
    const std::string whole = Request(m, 1, 3, good.bytes).SerializeAsString();
    for (const std::string& bytes :
         {std::string("\x1a\xff\xff\xff\x7f", 5), std::string("\xff\xff\xff", 3),
          whole.substr(0, whole.size() - 10)}) {
      const grpc::Status s = RawRoute(server.address(), bytes);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
      EXPECT_NE(s.error_message().find("request: not a valid moe_router.v1.RouteRequest"),
                std::string::npos)
          << s.error_message();
    }
    EXPECT_TRUE(RawRoute(server.address(), whole).ok());
    // The same on a stream: each bad message gets its error entry (request_id 0, as none
    // could be read) in its place, and the stream goes on.
    {
      auto with_id = [&](uint64_t id) {
        auto r = Request(m, 1, 3, good.bytes);
        r.set_request_id(id);
        return r.SerializeAsString();
      };
      const RawStreamResult stream =
          RawRouteStream(server.address(), {with_id(1), "\xff\xff\xff", with_id(3),
                                            with_id(4).substr(0, whole.size() - 10), with_id(5)});
      ASSERT_TRUE(stream.status.ok()) << stream.status.error_message();
      ASSERT_EQ(stream.answers.size(), 5u);
      for (int i : {0, 2, 4}) {
        const auto& a = stream.answers[i];
        EXPECT_EQ(a.request_id(), uint64_t(i + 1));
        ASSERT_TRUE(a.has_response()) << a.DebugString();
        EXPECT_EQ(Check(m, good, Unpack(a.response())), "");
      }
      for (int i : {1, 3}) {
        const auto& a = stream.answers[i];
        EXPECT_EQ(a.request_id(), 0u);
        ASSERT_TRUE(a.has_error()) << a.DebugString();
        EXPECT_EQ(a.error().code(), int(grpc::StatusCode::INVALID_ARGUMENT));
        EXPECT_NE(a.error().message().find("request: not a valid"), std::string::npos);
      }
    }
    {
      grpc::ClientContext ctx;
      ctx.set_compression_algorithm(GRPC_COMPRESS_GZIP);
      v1::RouteResponse resp;
      const auto s = client.stub()->Route(&ctx, Request(m, 1, 3, good.bytes), &resp);
      ASSERT_TRUE(s.ok()) << s.error_message();
      EXPECT_EQ(Check(m, good, Unpack(resp)), "");
    }
    // Sixteen callers at once, 1-16 tokens (16 DeepSeek-V3 tokens fill most of a block):
    // with one block most requests find it taken.
    std::atomic<int> wrong{0};
    std::vector<std::thread> callers;
    for (int i = 0; i < 16; ++i) {
      callers.emplace_back([&, i] {
        for (int round = 0; round < 4; ++round) {
          const int tokens = 1 + (i + 5 * round) % 16;
          Case c = MakeCase(m, (i + round) % kLayers, tokens, 500 * i + round);
          Routed r;
          auto s = client.Route(m, (i + round) % kLayers, v1::DTYPE_BF16, tokens, hidden, c.bytes,
                                &r, 60000);
          if (!s.ok() || !Check(m, c, r).empty()) ++wrong;
        }
      });
    }
    for (auto& t : callers) t.join();
    EXPECT_EQ(wrong.load(), 0);
  }
}

TEST_F(Server, StreamAnswersInOrderAndABadRequestFailsAlone) {
  ServerProcess server;
  ASSERT_TRUE(server.WaitServing());
  RouterClient client(server.address());
  grpc::ClientContext ctx;
  auto stream = client.stub()->RouteStream(&ctx);
  std::vector<Case> cases;
  const std::string m = "demo-deepseek-v3";
  for (int i = 0; i < 20; ++i) {
    cases.push_back(MakeCase(m, i % kLayers, 1 + i % 4, 77 + i));
    auto req = Request(m, i % kLayers, 1 + i % 4, cases.back().bytes);
    req.set_request_id(100 + i);
    if (i == 7) req.set_layer(99);  // fails alone
    if (i == 12) {                  // a NaN: fails alone, also when merged into a batch
      (*req.mutable_hidden_states()->mutable_data())[6] = '\x80';
      (*req.mutable_hidden_states()->mutable_data())[7] = '\x7f';
    }
    ASSERT_TRUE(stream->Write(req));
  }
  stream->WritesDone();
  v1::RouteStreamResponse resp;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(stream->Read(&resp)) << i;
    EXPECT_EQ(resp.request_id(), uint64_t(100 + i));
    if (i == 7) {
      ASSERT_TRUE(resp.has_error());
      EXPECT_EQ(resp.error().code(), int(grpc::StatusCode::NOT_FOUND));
      continue;
    }
    if (i == 12) {
      ASSERT_TRUE(resp.has_error());
      EXPECT_EQ(resp.error().code(), int(grpc::StatusCode::INVALID_ARGUMENT));
      EXPECT_NE(resp.error().message().find("hidden_states.data: element 3 is not finite"),
                std::string::npos)
          << resp.error().message();
      continue;
    }
    ASSERT_TRUE(resp.has_response()) << resp.error().message();
    Routed r;
    r.ids.assign(resp.response().expert_ids().begin(), resp.response().expert_ids().end());
    r.weights.assign(resp.response().expert_weights().begin(),
                     resp.response().expert_weights().end());
    EXPECT_EQ(Check(m, cases[i], r), "") << i;
  }
  EXPECT_FALSE(stream->Read(&resp));
  EXPECT_TRUE(stream->Finish().ok());
}

// A client that sends without reading: at --max_stream_in_flight the server stops reading
// the stream, so the client's writes stall (gRPC's flow control) instead of the server
// buffering answers without bound; once the client reads, every answer arrives in order.
// The server's own flow-control window is fixed (1 MiB): gRPC's adaptive one grew past the
// test's 42 MB on a loaded host (all 3000 writes went through although the server had
// stopped reading at 4), and with 1 MiB the writes stall at ~164 requests however loaded.
TEST_F(Server, StreamStopsReadingAtItsBoundUntilTheClientReads) {
  ServerProcess server({"--max_stream_in_flight=4", "--stream_window_bytes=1048576"});
  ASSERT_TRUE(server.WaitServing());
  // A client that buffers little of what it has not read (no window growth), so the
  // server's writes stall soon, as they would for a client that reads nothing for long.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8192);
  auto stub = v1::Router::NewStub(
      grpc::CreateCustomChannel(server.address(), grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext ctx;
  auto stream = stub->RouteStream(&ctx);
  const std::string m = "demo-deepseek-v3";
  const Case c = MakeCase(m, 1, 1, 5);
  // 3000 requests of 14 KB: 42 MB, far past any flow-control window on loopback.
  constexpr int kRequests = 3000;
  std::atomic<int> written{0};
  std::thread writer([&] {
    v1::RouteRequest req = Request(m, 1, 1, c.bytes);
    for (int i = 0; i < kRequests; ++i) {
      req.set_request_id(i);
      if (!stream->Write(req)) return;
      ++written;
    }
    stream->WritesDone();
  });
  // Wait until the writes stop moving (or all went through, which fails below).
  int last = -1;
  for (int i = 0; i < 100 && written.load() != last && written.load() < kRequests; ++i) {
    last = written.load();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  EXPECT_LT(written.load(), kRequests) << "the server read every request of a client that "
                                          "does not read its answers";
  std::fprintf(stderr, "writes stalled after %d of %d requests\n", written.load(), kRequests);
  v1::RouteStreamResponse resp;
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(stream->Read(&resp)) << i;
    ASSERT_EQ(resp.request_id(), uint64_t(i));
    ASSERT_TRUE(resp.has_response()) << resp.error().message();
    if (i == 0 || i == kRequests - 1) {
      Routed r;
      r.ids.assign(resp.response().expert_ids().begin(), resp.response().expert_ids().end());
      r.weights.assign(resp.response().expert_weights().begin(),
                       resp.response().expert_weights().end());
      EXPECT_EQ(Check(m, c, r), "") << i;
    }
  }
  writer.join();
  EXPECT_FALSE(stream->Read(&resp));
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(Server, DeadlinesSheddingAndMetrics) {
  ServerProcess server({"--max_queued_requests=2", "--max_queue_delay_us=300000"});
  ASSERT_TRUE(server.WaitServing());
  RouterClient client(server.address());
  const std::string m = "demo-deepseek-v3";
  Case c = MakeCase(m, 0, 4, 9);
  // A deadline shorter than the queue delay: DEADLINE_EXCEEDED, not computed. Long enough
  // for the request to reach the server first on a loaded machine: with 50 ms, under four
  // concurrent server tests on two cores, the client's deadline once passed before the
  // server saw the call, and the server's counter below stayed empty (session 33).
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(150));
    v1::RouteResponse resp;
    auto s = client.stub()->Route(&ctx, Request(m, 0, 4, c.bytes), &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  }
  // Many callers against a queue of 2: some are shed with RESOURCE_EXHAUSTED; none wrong.
  std::atomic<int> ok{0}, shed{0}, other{0};
  std::vector<std::thread> callers;
  for (int i = 0; i < 16; ++i)
    callers.emplace_back([&] {
      Routed r;
      auto s = client.Route(m, 0, v1::DTYPE_BF16, 4, Demo(m).spec.hidden, c.bytes, &r, 30000);
      if (s.ok() && Check(m, c, r).empty())
        ++ok;
      else if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED)
        ++shed;
      else
        ++other;
    });
  for (auto& t : callers) t.join();
  EXPECT_GT(shed.load(), 0);
  EXPECT_GT(ok.load(), 0);
  EXPECT_EQ(other.load(), 0);
  if (!kMetricsEndpoint) GTEST_SKIP() << "no metrics endpoint in the sanitizer build";
  const std::string metrics = Scrape(server.metrics_port());
  EXPECT_NE(metrics.find("moe_router_shed_total{model=\"demo-deepseek-v3\"}"), std::string::npos);
  EXPECT_NE(metrics.find("code=\"RESOURCE_EXHAUSTED\""), std::string::npos);
  EXPECT_NE(metrics.find("code=\"DEADLINE_EXCEEDED\""), std::string::npos);
  EXPECT_NE(metrics.find("moe_router_batch_compute_seconds_bucket"), std::string::npos);
  EXPECT_NE(metrics.find("moe_router_model_info{model=\"demo-mixtral\""), std::string::npos);
  ExpectPromtoolAccepts(metrics);
}

// ModelInfo and the metrics name each token bucket's kernel: on the CUDA backend every
// bucket of the weight dtype, its config as the autotuner (or its cache) chose it, or the
// heuristic's with --autotune=false; on the CPU backend, none.
TEST_F(Server, ModelInfoAndMetricsNameEachBucketsKernel) {
  for (const bool autotune : {true, false}) {
    ServerProcess server({"--model=demo-mixtral", absl::StrCat("--autotune=", autotune)},
                         /*default_models=*/false);
    ASSERT_TRUE(server.WaitServing());
    RouterClient client(server.address());
    v1::ListModelsResponse models;
    ASSERT_TRUE(client.ListModels(&models).ok());
    ASSERT_EQ(models.models_size(), 1);
    const v1::ModelInfo& info = models.models(0);
    const std::string metrics = kMetricsEndpoint ? Scrape(server.metrics_port()) : "";
    if (Backend() != "cuda") {
      EXPECT_EQ(info.kernels_size(), 0);
      EXPECT_EQ(metrics.find("moe_router_kernel_info{"), std::string::npos);
      continue;
    }
    ASSERT_EQ(info.kernels_size(), 9) << "autotune=" << autotune;  // 1, 2, 4, ..., 256 tokens
    for (int i = 0; i < info.kernels_size(); ++i) {
      const v1::KernelChoice& k = info.kernels(i);
      const std::string where = absl::StrCat("autotune=", autotune, " bucket ", k.tokens());
      EXPECT_EQ(k.tokens(), 1 << i) << where;
      EXPECT_EQ(k.hidden_dtype(), v1::DTYPE_BF16) << where;
      EXPECT_FALSE(k.config().empty()) << where;
      if (!autotune) {
        EXPECT_EQ(k.source(), "heuristic") << where;
      } else {  // this binary's servers share a cache: the first one tuned, the others read
        EXPECT_TRUE(k.source() == "autotuned" || k.source() == "cache") << where << k.source();
      }
      // A time only where candidates were timed at this load, and a plausible one.
      if (k.source() == "autotuned") {
        EXPECT_GT(k.tuned_us(), 0.5) << where;
        EXPECT_LT(k.tuned_us(), 1000) << where;
      } else {
        EXPECT_EQ(k.tuned_us(), 0) << where;
      }
      if (!kMetricsEndpoint) continue;
      const std::string series = absl::StrCat(
          "moe_router_kernel_info{model=\"demo-mixtral\",tokens=\"", k.tokens(),
          "\",dtype=\"bf16\",config=\"", k.config(), "\",source=\"", k.source(), "\"} 1");
      EXPECT_NE(metrics.find(series), std::string::npos)
          << where << ": " << series << "\n"
          << MetricExcerpt(metrics, "moe_router_kernel_info");
      EXPECT_EQ(metrics.find(absl::StrCat("moe_router_kernel_tuned_seconds{model=\"demo-mixtral\","
                                          "tokens=\"",
                                          k.tokens(), "\"")) != std::string::npos,
                k.source() == "autotuned")
          << where;
    }
    if (kMetricsEndpoint) ExpectPromtoolAccepts(metrics);
  }
}

TEST_F(Server, SigtermDrainsAcceptedRequestsAndExitsZero) {
  ServerProcess server({"--max_queue_delay_us=200000"});
  ASSERT_TRUE(server.WaitServing());
  RouterClient client(server.address());
  const std::string m = "demo-mixtral";
  Case c = MakeCase(m, 1, 3, 11);
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> callers;
  for (int i = 0; i < 8; ++i)
    callers.emplace_back([&] {
      Routed r;
      auto s = client.Route(m, 1, v1::DTYPE_BF16, 3, Demo(m).spec.hidden, c.bytes, &r, 30000);
      if (s.ok() && Check(m, c, r).empty())
        ++ok;
      else
        ++failed;
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // queued, waiting to fill
  EXPECT_EQ(server.Terminate(), 0);
  for (auto& t : callers) t.join();
  EXPECT_EQ(ok.load(), 8);
  EXPECT_EQ(failed.load(), 0);
}

// Clients that cancel their streams with requests still queued: the answers that come
// after the stream's first failed write are dropped, and the stream must still finish
// (moe_router_open_streams back to 0), or its call and memory stay until the process ends.
// The queue delay holds each stream's requests until the client has gone.
TEST_F(Server, CancelledStreamsFinish) {
  ServerProcess server({"--max_queue_delay_us=100000"});
  ASSERT_TRUE(server.WaitServing());
  RouterClient client(server.address());
  const std::string m = "demo-mixtral";
  const Case c = MakeCase(m, 1, 1, 9);
  for (int round = 0; round < 10; ++round) {
    grpc::ClientContext ctx;
    auto stream = client.stub()->RouteStream(&ctx);
    v1::RouteRequest req = Request(m, 1, 1, c.bytes);
    for (int i = 0; i < 40; ++i) {
      req.set_request_id(i);
      ASSERT_TRUE(stream->Write(req));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // read and queued
    ctx.TryCancel();
    stream->Finish();
  }
  // The server is unharmed, and every stream finished once its queued answers were dropped.
  Routed r;
  ASSERT_TRUE(client.Route(m, 1, v1::DTYPE_BF16, 1, Demo(m).spec.hidden, c.bytes, &r).ok());
  EXPECT_EQ(Check(m, c, r), "");
  if (kMetricsEndpoint) {
    std::string metrics;
    for (int i = 0; i < 50; ++i) {  // up to 5 s for the last batch to be dropped
      metrics = Scrape(server.metrics_port());
      if (metrics.find("moe_router_open_streams 0\n") != std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    // ASSERT: with a stream left open, the shutdown below would wait for it forever.
    ASSERT_NE(metrics.find("moe_router_open_streams 0\n"), std::string::npos)
        << MetricExcerpt(metrics, "moe_router_open_streams ");
  }
  EXPECT_EQ(server.Terminate(), 0);
}

TEST_F(Server, MutualTlsWithGeneratedCertificates) {
  if (std::system("command -v openssl >/dev/null 2>&1") != 0) GTEST_SKIP() << "no openssl";
  const std::string dir = absl::StrCat("/tmp/moe_tls_", getpid());
  const std::string gen =
      absl::StrCat("set -e; mkdir -p ", dir, "; cd ", dir, "; ",
                   "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 "
                   "-subj /CN=test-ca 2>/dev/null; ",
                   "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "
                   "/CN=localhost 2>/dev/null; ",
                   "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost' > san.ext; ",
                   "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out "
                   "server.pem -days 1 -extfile san.ext 2>/dev/null; ",
                   "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj "
                   "/CN=client 2>/dev/null; ",
                   "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out "
                   "client.pem -days 1 2>/dev/null");
  ASSERT_EQ(std::system(gen.c_str()), 0);
  auto read = [&](const std::string& f) {
    std::ifstream in(dir + "/" + f);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  ServerProcess server({"--tls_cert=" + dir + "/server.pem", "--tls_key=" + dir + "/server.key",
                        "--tls_client_ca=" + dir + "/ca.pem"});
  ClientOptions tls;
  tls.tls_ca = read("ca.pem");
  tls.tls_cert = read("client.pem");
  tls.tls_key = read("client.key");
  server.set_tls(tls);
  ASSERT_TRUE(server.WaitServing());
  const std::string m = "demo-mixtral";
  Case c = MakeCase(m, 0, 2, 3);
  RouterClient secure(server.address(), tls);
  Routed r;
  auto s = secure.Route(m, 0, v1::DTYPE_BF16, 2, Demo(m).spec.hidden, c.bytes, &r);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(Check(m, c, r), "");
  // Without a client certificate, or in plaintext: refused.
  ClientOptions no_cert;
  no_cert.tls_ca = tls.tls_ca;
  EXPECT_FALSE(RouterClient(server.address(), no_cert)
                   .Route(m, 0, v1::DTYPE_BF16, 2, Demo(m).spec.hidden, c.bytes, &r, 3000)
                   .ok());
  EXPECT_FALSE(RouterClient(server.address())
                   .Route(m, 0, v1::DTYPE_BF16, 2, Demo(m).spec.hidden, c.bytes, &r, 3000)
                   .ok());
  std::system(("rm -rf " + dir).c_str());
}

TEST_F(Server, NotServingWhileModelsLoadThenServing) {
  // The full-size Kimi K2 demo (60 layers, 330 MB) takes a few seconds to generate.
  ServerProcess server({"--model=demo-kimi-k2"}, /*default_models=*/false);
  ASSERT_TRUE(server.up());
  RouterClient client(server.address());
  bool serving = true;
  ASSERT_TRUE(client.Health(&serving).ok());
  EXPECT_FALSE(serving);
  grpc::ClientContext ctx;
  v1::RouteResponse resp;
  auto req = Request("demo-mixtral", 0, 1, std::string(4096 * 2, '\0'));
  req.set_model("demo-kimi-k2");
  auto s = client.stub()->Route(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  ASSERT_TRUE(server.WaitServing());
  v1::ListModelsResponse models;
  ASSERT_TRUE(client.ListModels(&models).ok());
  ASSERT_EQ(models.models_size(), 1);
  EXPECT_EQ(models.models(0).layers(), 60);
}

// The metrics endpoint's /healthz and /readyz, and the moe_router_serving gauge, through
// the server's life: alive but not ready while its models load, both once serving, alive
// but not ready while a signal's drain waits for an open stream. (A failed device, the one
// phase that is not alive, is metrics_http_test's: nothing fails a CPU backend.)
TEST_F(Server, HttpHealthAndReadinessFollowLoadingServingAndDraining) {
  if (!kMetricsEndpoint) GTEST_SKIP() << "no metrics endpoint in this build";
  // The full-size Kimi K2 demo takes a few seconds to generate: the loading phase to see.
  ServerProcess server({"--model=demo-kimi-k2", "--grace_period_s=60"}, /*default_models=*/false);
  ASSERT_TRUE(server.up());
  const int port = server.metrics_port();
  auto get = [port](const std::string& path) {
    const std::string out = testing::LoopbackHttp(port, "GET", path);
    const size_t body = out.find("\r\n\r\n");
    return out.substr(0, out.find("\r\n")) + " | " +
           (body == std::string::npos ? "" : out.substr(body + 4));
  };
  auto serving_gauge = [port] {
    const std::string metrics = Scrape(port);
    const size_t at = metrics.find("\nmoe_router_serving ");
    return at == std::string::npos ? "(none)" : metrics.substr(at + 20, 2);
  };
  EXPECT_EQ(get("/healthz"), "HTTP/1.1 200 OK | alive: loading\n");
  EXPECT_EQ(get("/readyz"), "HTTP/1.1 503 Service Unavailable | not ready: loading\n");
  EXPECT_EQ(serving_gauge(), "0\n");
  ASSERT_TRUE(server.WaitServing());
  EXPECT_EQ(get("/healthz"), "HTTP/1.1 200 OK | alive: serving\n");
  EXPECT_EQ(get("/readyz"), "HTTP/1.1 200 OK | ready: serving\n");
  EXPECT_EQ(serving_gauge(), "1\n");
  // An open stream holds the drain (up to the grace period) after SIGTERM.
  RouterClient client(server.address());
  grpc::ClientContext ctx;
  auto stream = client.stub()->RouteStream(&ctx);
  v1::RouteRequest req;  // one token of zeros: Request() would build the model here too
  req.set_model("demo-kimi-k2");
  req.mutable_hidden_states()->set_dtype(v1::DTYPE_BF16);
  req.mutable_hidden_states()->add_shape(1);
  req.mutable_hidden_states()->add_shape(7168);
  req.mutable_hidden_states()->set_data(std::string(7168 * 2, '\0'));
  ASSERT_TRUE(stream->Write(req));
  v1::RouteStreamResponse answer;
  ASSERT_TRUE(stream->Read(&answer));
  ASSERT_TRUE(answer.has_response()) << answer.ShortDebugString().substr(0, 300);
  server.SendTerm();
  std::string readyz;
  for (int i = 0; i < 200; ++i) {  // up to 10 s for the signal to be seen
    readyz = get("/readyz");
    if (readyz != "HTTP/1.1 200 OK | ready: serving\n") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(readyz, "HTTP/1.1 503 Service Unavailable | not ready: draining\n");
  EXPECT_EQ(get("/healthz"), "HTTP/1.1 200 OK | alive: draining\n");
  EXPECT_EQ(serving_gauge(), "0\n");
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_EQ(server.Terminate(), 0);
}

TEST_F(Server, ABusyPortIsAnErrorUnlessBothServersShareIt) {
  ServerProcess first({"--model=demo-mixtral", "--demo_layers=1"}, /*default_models=*/false);
  ASSERT_TRUE(first.WaitServing());
  // A second server on the first one's port refuses to start (gRPC's SO_REUSEPORT default
  // had it serve there, the kernel handing it half the new connections).
  const std::string out = absl::StrCat("/tmp/moe_busy_port_", getpid(), ".txt");
  const int rc = std::system((ServerBinary() + " --model=demo-mixtral --demo_layers=1 " +
                              "--backend=cpu --metrics_address= --address=" + first.address() +
                              " >" + out + " 2>&1")
                                 .c_str());
  std::ifstream file(out);
  const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::remove(out.c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 1) << text;
  EXPECT_NE(text.find("--address: cannot listen on " + first.address()), std::string::npos) << text;
  // Both with --reuse_port (a restart without downtime): the second serves the same port.
  ServerProcess old_server({"--model=demo-mixtral", "--demo_layers=1", "--reuse_port"},
                           /*default_models=*/false);
  ASSERT_TRUE(old_server.WaitServing());
  ServerProcess new_server({"--model=demo-mixtral", "--demo_layers=1", "--reuse_port",
                            "--address=" + old_server.address()},
                           /*default_models=*/false);
  ASSERT_TRUE(new_server.WaitServing());
  EXPECT_EQ(new_server.address(), old_server.address());
  // That health check may have been answered by the old server (the kernel picks one per
  // connection), so it cannot tell that the new one has loaded; its own metrics endpoint can.
  // On the CUDA backend the new server was still loading when the old one stopped. (The
  // sanitizer builds have no endpoint, and the CPU backend loads within the check's time.)
  if (kMetricsEndpoint) {
    bool loaded = false;
    for (int i = 0; i < 1200 && !loaded; ++i) {
      loaded = Scrape(new_server.metrics_port(), 5)
                   .find("moe_router_model_info{model=\"demo-mixtral\"") != std::string::npos;
      if (!loaded) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_TRUE(loaded) << "the new server did not load demo-mixtral in 60 s";
  }
  EXPECT_EQ(old_server.Terminate(), 0);
  RouterClient client(new_server.address());
  bool serving = false;
  EXPECT_TRUE(client.Health(&serving).ok() && serving);
}

TEST_F(Server, ConfigFileSetsFlagsAndTheCommandLineOverridesIt) {
  const std::string path = absl::StrCat("/tmp/moe_config_", getpid(), ".json");
  std::ofstream(path) << R"({"model": ["demo-mixtral", "demo-qwen3-30b"], "demo_layers": 2,)"
                      << R"( "max_queued_requests": 100, "autotune": false})";
  ServerProcess server({"--config=" + path, "--demo_layers=5"}, /*default_models=*/false);
  ASSERT_TRUE(server.WaitServing());
  RouterClient client(server.address());
  v1::ListModelsResponse models;
  ASSERT_TRUE(client.ListModels(&models).ok());
  ASSERT_EQ(models.models_size(), 2);
  for (const auto& m : models.models()) EXPECT_EQ(m.layers(), 5) << m.name();
  // A key that is no flag: the server refuses to start, naming it.
  std::ofstream(path) << R"({"modle": "demo-mixtral"})";
  const std::string cmd =
      ServerBinary() + " --config=" + path +
      " --address=127.0.0.1:0 --metrics_address= 2>&1 | grep -q \"'modle' is not a server flag\"";
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  std::remove(path.c_str());
}

// A flag value the server cannot honour: it refuses to start, naming the flag (and its
// range), before it serves anything (a huge --cpu_threads used to abort on a thread the
// system would not start; a NaN grace period, a million demo layers, a zero message size
// and an unwritable port file were taken).
TEST(ServerFlags, BadValuesAreRefusedByName) {
  const std::pair<const char*, const char*> cases[] = {
      {"--cpu_threads=100000", "--cpu_threads: 100000 is outside 0..1024"},
      {"--cpu_threads=-1", "--cpu_threads: -1 is outside 0..1024"},
      {"--grace_period_s=nan", "--grace_period_s: nan is outside 0..3600"},
      {"--grace_period_s=-1", "--grace_period_s: -1 is outside 0..3600"},
      {"--max_message_bytes=0", "--max_message_bytes: 0 is outside 4096..2147483647"},
      {"--demo_layers=100000", "--demo_layers: 100000 is outside 0..1024"},
      {"--max_queue_delay_us=-5", "--max_queue_delay_us: -5 is outside 0..1000000"},
      {"--device=-1", "--device: -1 is outside 0..1023"},
      {"--max_batch_tokens=257", "--max_batch_tokens: 257 is outside 1..256"},
      {"--max_queued_requests=0", "--max_queued_requests: 0 is outside 1..2147483647"},
      {"--pinned_input_blocks=5000", "--pinned_input_blocks: 5000 is outside 0..4096"},
      {"--idle_spin_us=-2", "--idle_spin_us: -2 is outside -1..1000000"},
      // A flow-control window below HTTP/2's least.
      {"--stream_window_bytes=100",
       "--stream_window_bytes: 100 is neither 0 nor in 65535..1073741824"},
      // Not ranges, refused the same way: a port file nobody could read (whoever waits for
      // it had waited forever), a model without a name.
      {"--port_file=/nonexistent/dir/ports", "--port_file: cannot write /nonexistent/dir/ports"},
      {"--model==/tmp", "--model =/tmp: no name before '='"},
      // Addresses gRPC and civetweb would have bound elsewhere: port 4464, 231.1.1.1, two
      // ports.
      {"--address=127.0.0.1:70000", "--address: '127.0.0.1:70000' has port 70000, outside"},
      {"--metrics_address=999.1.1.1:9090",
       "--metrics_address: '999.1.1.1:9090' has 999.1.1.1, not an IPv4 address"},
      {"--metrics_address=9090,9091", "--metrics_address: '9090,9091' has no port number"},
  };
  for (const auto& [flag, message] : cases) {
    const std::string out = absl::StrCat("/tmp/moe_flags_", getpid(), ".txt");
    // The case's flag last: it overrides the --model before it.
    const int rc = std::system((ServerBinary() +
                                " --model=demo-mixtral --backend=cpu --address=127.0.0.1:0"
                                " --metrics_address= " +
                                flag + " >" + out + " 2>&1")
                                   .c_str());
    std::ifstream file(out);
    const std::string text((std::istreambuf_iterator<char>(file)),
                           std::istreambuf_iterator<char>());
    std::remove(out.c_str());
    EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 1) << flag << ": " << text;
    EXPECT_NE(text.find(message), std::string::npos) << flag << ": " << text;
  }
}

TEST_F(Server, ClientLibraryAsyncCallsAndStreamSession) {
  ServerProcess server;
  ASSERT_TRUE(server.WaitServing());
  RouterClient client(server.address());
  const std::string m = "demo-gpt-oss-20b";
  const int hidden = Demo(m).spec.hidden;
  std::vector<Case> cases;
  for (int i = 0; i < 20; ++i) cases.push_back(MakeCase(m, i % kLayers, 1 + i % 5, 500 + i));
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  std::vector<std::string> diffs(cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    client.RouteAsync(
        MakeRouteRequest(m, i % kLayers, v1::DTYPE_BF16, 1 + i % 5, hidden, cases[i].bytes),
        [&, i](const grpc::Status& s, const Routed& r) {
          std::lock_guard<std::mutex> lock(mu);
          diffs[i] = s.ok() ? Check(m, cases[i], r) : s.error_message();
          ++done;
          cv.notify_one();
        });
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return done == 20; }));
  }
  for (size_t i = 0; i < cases.size(); ++i) EXPECT_EQ(diffs[i], "") << i;

  auto session = client.OpenStream();
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(session->Send(MakeRouteRequest(m, i % kLayers, v1::DTYPE_BF16, 1 + i % 5, hidden,
                                               cases[i].bytes, 900 + i)));
  for (int i = 0; i < 5; ++i) {
    v1::RouteStreamResponse resp;
    ASSERT_TRUE(session->Receive(&resp));
    EXPECT_EQ(resp.request_id(), uint64_t(900 + i));
    ASSERT_TRUE(resp.has_response());
    Routed r;
    r.ids.assign(resp.response().expert_ids().begin(), resp.response().expert_ids().end());
    r.weights.assign(resp.response().expert_weights().begin(),
                     resp.response().expert_weights().end());
    EXPECT_EQ(Check(m, cases[i], r), "");
  }
  EXPECT_TRUE(session->Finish().ok());
}

// A RouterClient destroyed while its RouteAsync calls are in flight waits for them: each
// done callback runs once, before the destructor returns, and the channel is released on
// the destroying thread. (Released by the last call's ClientContext on gRPC's callback
// thread instead, gRPC 1.51 joins that thread from itself and frees the completion queue
// it is still polling: a double free, grpc/grpc#37858.) Also a client destroyed inside one
// of its own callbacks.
TEST_F(Server, ClientDestroyedWithAsyncCallsInFlightWaitsForThem) {
  ServerProcess server;
  ASSERT_TRUE(server.WaitServing());
  const std::string m = "demo-mixtral";
  const int hidden = Demo(m).spec.hidden;
  const Case c = MakeCase(m, 0, 1, 77);
  for (int round = 0; round < 40; ++round) {
    constexpr int kCalls = 8;
    std::atomic<int> done{0};
    std::atomic<int> ok{0};
    {
      RouterClient client(server.address());
      for (int i = 0; i < kCalls; ++i)
        client.RouteAsync(MakeRouteRequest(m, 0, v1::DTYPE_BF16, 1, hidden, c.bytes),
                          [&](const grpc::Status& s, const Routed& r) {
                            if (s.ok() && Check(m, c, r).empty()) ok.fetch_add(1);
                            done.fetch_add(1);
                          });
    }  // ~RouterClient
    ASSERT_EQ(done.load(), kCalls) << "round " << round;
    EXPECT_EQ(ok.load(), kCalls) << "round " << round;
  }

  // Destroyed by its own callback: the destructor waits for the other calls only.
  std::mutex mu;
  std::condition_variable cv;
  bool destroyed = false;
  std::atomic<int> done{0};
  std::atomic<bool> issued{false};
  auto* client = new RouterClient(server.address());
  for (int i = 0; i < 4; ++i)
    client->RouteAsync(MakeRouteRequest(m, 0, v1::DTYPE_BF16, 1, hidden, c.bytes),
                       [&, i](const grpc::Status&, const Routed&) {
                         done.fetch_add(1);
                         if (i != 0) return;
                         while (!issued.load()) std::this_thread::yield();  // a brief wait
                         delete client;
                         std::lock_guard<std::mutex> lock(mu);
                         destroyed = true;
                         cv.notify_one();
                       });
  issued = true;
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return destroyed; }));
  EXPECT_EQ(done.load(), 4);
}

// Callers that misbehave in every way a client can, at once, beside well-behaved ones:
// garbage bytes, requests refused by validation, deadlines too short to meet, streams
// cancelled with requests queued and unread answers; and Prometheus scraping throughout.
// The well-behaved callers' answers all match the reference, the misbehaving ones get only
// the codes they should, every scrape is whole, the server's gauges come back to rest
// (nothing left in flight, queued or open), promtool accepts the last scrape, and the
// server drains and exits cleanly on SIGTERM.
TEST_F(Server, MisbehavingCallersLeaveTheOthersCorrectAndTheServerAtRest) {
  ServerProcess server({"--max_queue_delay_us=200"});
  ASSERT_TRUE(server.WaitServing());
  RouterClient client(server.address());
  std::atomic<bool> stop{false};
  std::atomic<int> good_ok{0}, good_wrong{0}, refused{0}, expired{0}, unexpected{0};
  std::mutex report_mu;
  std::string report;  // the first few unexpected outcomes
  auto Unexpected = [&](const std::string& what) {
    ++unexpected;
    std::lock_guard<std::mutex> lock(report_mu);
    if (report.size() < 2000) absl::StrAppend(&report, what, "\n");
  };
  const std::vector<std::string> models = {"demo-mixtral", "demo-gpt-oss-20b"};
  std::vector<std::thread> threads;

  // Well-behaved: unary callers and one stream, every answer checked.
  for (int caller = 0; caller < 3; ++caller)
    threads.emplace_back([&, caller] {
      for (int i = 0; !stop.load(); ++i) {
        const std::string& m = models[(caller + i) % 2];
        const int tokens = 1 + (caller * 5 + i) % 8, layer = i % kLayers;
        const Case c = MakeCase(m, layer, tokens, 10000 * caller + i);
        Routed r;
        const auto s =
            client.Route(m, layer, v1::DTYPE_BF16, tokens, Demo(m).spec.hidden, c.bytes, &r, 60000);
        const std::string diff = s.ok() ? Check(m, c, r) : s.error_message();
        if (diff.empty()) {
          ++good_ok;
        } else {
          ++good_wrong;
          Unexpected("good unary: " + diff);
        }
      }
    });
  threads.emplace_back([&] {
    auto session = client.OpenStream();
    for (int i = 0; !stop.load(); ++i) {
      const std::string& m = models[i % 2];
      const int tokens = 1 + i % 4;
      const Case c = MakeCase(m, 0, tokens, 500000 + i);
      const uint64_t id = uint64_t(i) + 1;
      if (!session->Send(
              MakeRouteRequest(m, 0, v1::DTYPE_BF16, tokens, Demo(m).spec.hidden, c.bytes, id))) {
        return Unexpected("good stream: Send failed");
      }
      v1::RouteStreamResponse resp;
      if (!session->Receive(&resp)) return Unexpected("good stream: Receive failed");
      std::string diff = resp.request_id() == id ? "" : "request_id";
      if (diff.empty() && !resp.has_response()) diff = resp.error().message();
      if (diff.empty()) diff = Check(m, c, Unpack(resp.response()));
      if (diff.empty()) {
        ++good_ok;
      } else {
        ++good_wrong;
        Unexpected("good stream: " + diff);
      }
    }
    const auto s = session->Finish();
    if (!s.ok()) Unexpected("good stream: Finish " + s.error_message());
  });

  // Misbehaving, each in its own thread.
  const std::string m = "demo-mixtral";
  const int hidden = Demo(m).spec.hidden;
  const Case small = MakeCase(m, 0, 2, 7);
  threads.emplace_back([&] {  // garbage bytes on Route
    std::mt19937 rng(3);
    while (!stop.load()) {
      std::string bytes(rng() % 3000, '\0');
      for (char& ch : bytes) ch = static_cast<char>(rng());
      const auto s = RawRoute(server.address(), bytes);
      // Bytes that happen to parse (the empty message among them) name no loaded model.
      if (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
          s.error_code() == grpc::StatusCode::NOT_FOUND)
        ++refused;
      else
        Unexpected(absl::StrCat("garbage: code ", s.error_code(), " ", s.error_message()));
    }
  });
  threads.emplace_back([&] {  // requests validation refuses
    std::vector<v1::RouteRequest> bad(4, Request(m, 0, 2, small.bytes));
    bad[0].set_model("nope");
    bad[1].set_layer(kLayers);
    bad[2].mutable_hidden_states()->set_shape(1, hidden + 8);
    (*bad[3].mutable_hidden_states()->mutable_data())[7] = '\x7f';
    (*bad[3].mutable_hidden_states()->mutable_data())[6] = '\x80';  // bf16 NaN
    for (int i = 0; !stop.load(); ++i) {
      grpc::ClientContext ctx;
      v1::RouteResponse resp;
      const auto s = client.stub()->Route(&ctx, bad[i % bad.size()], &resp);
      if (s.error_code() == grpc::StatusCode::NOT_FOUND ||
          s.error_code() == grpc::StatusCode::INVALID_ARGUMENT)
        ++refused;
      else
        Unexpected(absl::StrCat("bad request ", i % bad.size(), ": code ", s.error_code()));
    }
  });
  threads.emplace_back([&] {  // deadlines too short to meet (64 DeepSeek-V3 tokens)
    const std::string big = "demo-deepseek-v3";
    const Case c = MakeCase(big, 2, 64, 11);
    const v1::RouteRequest req = Request(big, 2, 64, c.bytes);
    while (!stop.load()) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::microseconds(300));
      v1::RouteResponse resp;
      const auto s = client.stub()->Route(&ctx, req, &resp);
      if (s.ok() && Check(big, c, Unpack(resp)).empty()) continue;
      if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED)
        ++expired;
      else
        Unexpected(absl::StrCat("short deadline: code ", s.error_code(), " ", s.error_message()));
    }
  });
  // Streams cancelled with requests queued and being routed (16 DeepSeek-V3 tokens each,
  // so that answers arrive after the cancellation), answers unread or half read. Before
  // the stream reactor's lifetime fix an answer arriving after a failed write could finish
  // the stream on its batcher thread while gRPC deleted the reactor under it: this
  // abuser alone, six threads for 8 s, crashed the server in ~8% of runs.
  const std::string big = "demo-deepseek-v3";
  const Case sixteen = MakeCase(big, 0, 16, 13);
  for (int thread = 0; thread < 2; ++thread)
    threads.emplace_back([&, thread] {
      for (int round = thread; !stop.load(); ++round) {
        grpc::ClientContext ctx;
        auto stream = client.stub()->RouteStream(&ctx);
        v1::RouteRequest req = Request(big, round % kLayers, 16, sixteen.bytes);
        for (int i = 0; i < 1 + round % 6; ++i) {
          req.set_request_id(i);
          if (i % 4 == 3) req.set_layer(-1);  // a bad one among them
          if (!stream->Write(req)) break;
          req.set_layer(round % kLayers);
        }
        if (round % 2 == 0) {
          v1::RouteStreamResponse resp;
          stream->Read(&resp);
        }
        ctx.TryCancel();
        stream->Finish();
      }
    });

  std::atomic<int> scrapes{0};
  if (kMetricsEndpoint)
    threads.emplace_back([&] {  // Prometheus scraping throughout
      while (!stop.load()) {
        const std::string metrics = Scrape(server.metrics_port());
        if (metrics.find("moe_router_requests_total{") == std::string::npos ||
            metrics.back() != '\n')
          Unexpected("scrape: " + metrics.substr(0, 200));
        ++scrapes;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });

  // MOE_STRESS_SECONDS makes it a soak: the races it looks for show rarely in 4 s.
  const char* seconds = std::getenv("MOE_STRESS_SECONDS");
  std::this_thread::sleep_for(std::chrono::seconds(seconds ? std::max(1, std::atoi(seconds)) : 4));
  stop = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(unexpected.load(), 0) << report;
  if (kMetricsEndpoint) {
    EXPECT_GT(scrapes.load(), 10);
  }
  EXPECT_EQ(good_wrong.load(), 0);
  EXPECT_GT(good_ok.load(), 20);
  EXPECT_GT(refused.load(), 20);
  std::printf("well-behaved answers %d, refused %d, past their deadline %d, scrapes %d\n",
              good_ok.load(), refused.load(), expired.load(), scrapes.load());
  if (kMetricsEndpoint) {
    const std::vector<std::string> at_rest = {"moe_router_open_streams 0\n",
                                              "moe_router_in_flight_requests 0\n",
                                              "moe_router_queue_depth 0\n"};
    std::string metrics;
    for (int i = 0; i < 50; ++i) {  // up to 5 s for cancelled streams' batches to finish
      metrics = Scrape(server.metrics_port());
      bool rest = true;
      for (const auto& line : at_rest) rest = rest && metrics.find(line) != std::string::npos;
      if (rest) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    for (const auto& line : at_rest)
      EXPECT_NE(metrics.find(line), std::string::npos)
          << MetricExcerpt(metrics, line.substr(0, line.find(' ') + 1));
    ExpectPromtoolAccepts(metrics);
  }
  EXPECT_EQ(server.Terminate(), 0);
}

// The endpoint answers GET with the scrape, HEAD with its headers only, and any other
// method with 405 and the methods allowed (a POST used to get the scrape).
TEST_F(Server, MetricsEndpointAnswersGetAndHeadAndRefusesOtherMethods) {
  if (!kMetricsEndpoint) GTEST_SKIP() << "no metrics endpoint in this build";
  ServerProcess server;
  ASSERT_TRUE(server.WaitServing());
  const std::string get = testing::LoopbackHttp(server.metrics_port(), "GET", "/metrics");
  EXPECT_EQ(get.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << get.substr(0, 200);
  EXPECT_NE(get.find("moe_router_requests_total"), std::string::npos);
  const std::string head = testing::LoopbackHttp(server.metrics_port(), "HEAD", "/metrics");
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << head;
  EXPECT_NE(head.find("Content-Length: "), std::string::npos) << head;
  EXPECT_EQ(head.substr(head.find("\r\n\r\n") + 4), "") << "HEAD answered with a body";
  for (const char* method : {"POST", "PUT", "DELETE"}) {
    const std::string other = testing::LoopbackHttp(server.metrics_port(), method, "/metrics");
    EXPECT_EQ(other.rfind("HTTP/1.1 405 Method Not Allowed\r\n", 0), 0u) << method << ": " << other;
    EXPECT_NE(other.find("Allow: GET, HEAD\r\n"), std::string::npos) << method << ": " << other;
    EXPECT_EQ(other.find("moe_router_requests_total"), std::string::npos) << method;
  }
}

// Connections that send nothing (a TCP health check, a port scan, a stalled client) hold
// one of the metrics endpoint's workers each until its request timeout. Fewer than there
// are workers leave scrapes unaffected; one for every worker delays a scrape by at most
// the request timeout. (With the two workers of before, two idle connections made every
// scrape time out for 30 s.)
TEST_F(Server, IdleConnectionsDoNotStopTheMetricsEndpoint) {
  if (!kMetricsEndpoint) GTEST_SKIP() << "no metrics endpoint in this build";
  ServerProcess server;
  ASSERT_TRUE(server.WaitServing());
  auto Connect = [&] {
    const int fd = testing::ConnectLoopback(server.metrics_port());
    EXPECT_GE(fd, 0);
    return fd;
  };
  std::vector<int> idle;
  for (int i = 0; i < kMetricsHttpThreads - 1; ++i) idle.push_back(Connect());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // each taken by a worker
  auto start = std::chrono::steady_clock::now();
  auto Seconds = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  EXPECT_NE(Scrape(server.metrics_port(), 2).find("moe_router_requests_total"), std::string::npos)
      << kMetricsHttpThreads - 1 << " idle connections";
  EXPECT_LT(Seconds(), 1.0);

  idle.push_back(Connect());  // every worker taken
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  start = std::chrono::steady_clock::now();
  const int limit_s = kMetricsHttpRequestTimeoutMs / 1000 + 5;
  EXPECT_NE(Scrape(server.metrics_port(), limit_s).find("moe_router_requests_total"),
            std::string::npos)
      << kMetricsHttpThreads << " idle connections";
  std::printf("scrape with every worker held by an idle connection: %.2f s\n", Seconds());
  for (int fd : idle)
    if (fd >= 0) close(fd);
}

}  // namespace
}  // namespace moe
