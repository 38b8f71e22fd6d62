// The batcher with a fake backend: inline run-to-completion when idle, merging of requests
// queued while the device is busy, the token bound, deadlines, shedding, draining.
#include "server/batcher.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

namespace moe {
namespace {

// Records every batch; Route blocks while `hold` is set, so tests can pile up a queue.
class FakeBackend : public RouterBackend {
 public:
  std::string name() const override { return "fake"; }
  std::string device() const override { return "fake"; }
  absl::Status LoadModel(const RouterModel&) override { return absl::OkStatus(); }
  bool healthy() const override { return !fail_.load(); }
  bool ChecksFiniteOnDevice() const override { return device_checks_; }
  // As the CUDA backend: mark each row with a non-finite bf16 value; `also_mark` marks a
  // row of the batch whatever it holds (a device that is wrong).
  void CheckOnDevice(int also_mark = -1) {
    device_checks_ = true;
    also_mark_ = also_mark;
  }
  void FailNextBatches() { fail_ = true; }
  absl::StatusOr<double> Route(const std::string&, int, const BatchIO& io) override {
    if (fail_) return absl::InternalError("injected device failure");
    std::unique_lock<std::mutex> lock(mu_);
    batches_.push_back(io.tokens);
    ++started_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !hold_; });
    for (int t = 0; t < io.tokens; ++t) {
      io.ids[t] = t;  // top_k = 1: the row index inside the batch
      io.weights[t] = 1.0f;
    }
    EXPECT_EQ(io.nonfinite_rows != nullptr, device_checks_);
    if (io.nonfinite_rows != nullptr) {
      const auto* bits = static_cast<const uint16_t*>(io.hidden);
      for (int t = 0; t < io.tokens; ++t) {
        io.nonfinite_rows[t] = t == also_mark_;
        for (int i = 0; i < 8; ++i)  // hidden = 8, bf16
          if ((bits[t * 8 + i] & 0x7f80) == 0x7f80) io.nonfinite_rows[t] = 1;
      }
    }
    return 1e-6;
  }
  void Hold(bool h) {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = h;
    cv_.notify_all();
  }
  void WaitStarted(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return started_ >= n; });
  }
  std::vector<int> batches() {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }

 private:
  std::atomic<bool> fail_{false};
  bool device_checks_ = false;
  int also_mark_ = -1;
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false;
  int started_ = 0;
  std::vector<int> batches_;
};

struct Outcome {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<absl::StatusCode, RouteResult>> results;
  std::vector<std::string> messages;  // the status messages, in the same order
  void Wait(size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return results.size() >= n; }));
  }
};

std::unique_ptr<RouteWork> Work(int tokens, Outcome* out,
                                Clock::time_point deadline = Clock::time_point::max()) {
  auto w = std::make_unique<RouteWork>();
  w->model = "m";
  w->tokens = tokens;
  w->top_k = 1;
  w->experts = 4;
  w->hidden = 8;
  w->hidden_states = HiddenBytes(std::string(size_t(tokens) * 8 * 2, '\0'));
  w->arrival = Clock::now();
  w->deadline = deadline;
  w->done = [out](const absl::Status& s, RouteResult r) {
    std::lock_guard<std::mutex> lock(out->mu);
    out->results.emplace_back(s.code(), std::move(r));
    out->messages.emplace_back(s.message());
    out->cv.notify_all();
  };
  return w;
}

class BatcherTest : public ::testing::Test {
 protected:
  MetricsRegistry registry;  // before `metrics`, which registers into it
  ServerMetrics metrics{&registry};
  FakeBackend backend;
};

TEST_F(BatcherTest, ALoneRequestRunsInlineWhenIdle) {
  Batcher batcher(&backend, {}, &metrics);
  Outcome out;
  auto w = Work(3, &out);
  ASSERT_TRUE(batcher.TryRunInline(w));
  ASSERT_EQ(out.results.size(), 1u);  // answered before TryRunInline returned
  EXPECT_EQ(out.results[0].first, absl::StatusCode::kOk);
  EXPECT_EQ(out.results[0].second.ids, (std::vector<int32_t>{0, 1, 2}));
}

TEST_F(BatcherTest, ASpinningWorkerTakesALoneRequestAndStopsSpinningOnShutdown) {
  BatcherOptions o;
  o.idle_spin_us = 5'000'000;  // far longer than the test: only shutdown ends the spin
  const auto start = Clock::now();
  {
    Batcher batcher(&backend, o, &metrics);
    for (int i = 0; i < 1000 && batcher.spinning_workers() == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_EQ(batcher.spinning_workers(), 1);
    Outcome out;
    std::thread::id answered_on;
    auto w = Work(2, &out);
    auto done = w->done;
    w->done = [&answered_on, done](const absl::Status& s, RouteResult r) {
      answered_on = std::this_thread::get_id();
      done(s, std::move(r));
    };
    EXPECT_FALSE(batcher.TryRunInline(w));  // the spinning worker is the faster way
    ASSERT_NE(w, nullptr);
    batcher.Submit(std::move(w));
    out.Wait(1);
    EXPECT_EQ(out.results[0].first, absl::StatusCode::kOk);
    EXPECT_EQ(out.results[0].second.ids, (std::vector<int32_t>{0, 1}));
    EXPECT_NE(answered_on, std::this_thread::get_id());
  }
  // The destructor ended a 5 s spin at once.
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(3));
}

// Lone requests reach a spinning worker through its mailbox, others through the queue.
// Spins short enough to time out all the time race the mailbox's closing against Submit:
// every request must still be answered exactly once, with its own rows.
TEST_F(BatcherTest, MailboxAndQueueTogetherAnswerEveryRequestOnce) {
  BatcherOptions o;
  o.idle_spin_us = 20;
  constexpr int kThreads = 4, kPerThread = 400;
  Outcome out;
  {
    Batcher batcher(&backend, o, &metrics);
    std::vector<std::thread> submitters;
    for (int t = 0; t < kThreads; ++t) {
      submitters.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          batcher.Submit(Work(1 + (t + i) % 3, &out));
          if (i % 7 == t) std::this_thread::sleep_for(std::chrono::microseconds(30 * t));
        }
      });
    }
    for (auto& th : submitters) th.join();
    out.Wait(kThreads * kPerThread);
  }
  ASSERT_EQ(out.results.size(), size_t(kThreads) * kPerThread);  // none twice
  int tokens = 0;
  for (const auto& [code, r] : out.results) {
    EXPECT_EQ(code, absl::StatusCode::kOk);
    ASSERT_GE(r.ids.size(), 1u);
    tokens += int(r.ids.size());
    for (size_t j = 1; j < r.ids.size(); ++j) EXPECT_EQ(r.ids[j], r.ids[0] + int(j));
  }
  int computed = 0;
  for (int b : backend.batches()) computed += b;
  EXPECT_EQ(computed, tokens);  // every token computed once, none lost
}

TEST_F(BatcherTest, InlineIsRefusedWhenTheBatchMayWaitToFill) {
  BatcherOptions o;
  o.limits.max_queue_delay_us = 1000;
  Batcher batcher(&backend, o, &metrics);
  Outcome out;
  auto w = Work(1, &out);
  EXPECT_FALSE(batcher.TryRunInline(w));
  ASSERT_NE(w, nullptr);  // untouched
  batcher.Submit(std::move(w));
  out.Wait(1);
  EXPECT_EQ(out.results[0].first, absl::StatusCode::kOk);
}

TEST_F(BatcherTest, RequestsQueuedWhileBusyAreMergedAndScatteredBack) {
  Batcher batcher(&backend, {}, &metrics);
  Outcome out;
  backend.Hold(true);
  batcher.Submit(Work(1, &out));  // occupies the only worker
  backend.WaitStarted(1);
  for (int t : {2, 3, 4}) {
    auto w = Work(t, &out);
    EXPECT_FALSE(batcher.TryRunInline(w));  // device busy: no inline
    batcher.Submit(std::move(w));
  }
  EXPECT_EQ(batcher.queued(), 3);
  backend.Hold(false);
  out.Wait(4);
  EXPECT_EQ(backend.batches(), (std::vector<int>{1, 9}));  // 2 + 3 + 4 in one batch
  // Each request got its own rows of the merged batch, in order.
  std::vector<std::vector<int32_t>> ids;
  for (auto& [code, r] : out.results) ids.push_back(r.ids);
  EXPECT_EQ(ids[1], (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(ids[2], (std::vector<int32_t>{2, 3, 4}));
  EXPECT_EQ(ids[3], (std::vector<int32_t>{5, 6, 7, 8}));
  EXPECT_EQ(out.results[3].second.batch_requests, 3);
}

// With a backend that checks hidden states on the device, a request with a NaN fails alone
// with the error validation would have given (naming the element), merged or not; the
// others get their rows. A mark the host cannot confirm leaves the answer as computed.
TEST_F(BatcherTest, RowsMarkedNonFiniteOnTheDeviceFailOnlyTheirRequest) {
  backend.CheckOnDevice(/*also_mark=*/7);
  Batcher batcher(&backend, {}, &metrics);
  Outcome out;
  auto with_nan = [&](int tokens, int element) {
    auto w = Work(tokens, &out);
    w->hidden_states.mutable_data()[2 * element] = '\xc0';  // bf16 0x7fc0: NaN
    w->hidden_states.mutable_data()[2 * element + 1] = '\x7f';
    return w;
  };
  auto lone = with_nan(2, 9);
  ASSERT_TRUE(batcher.TryRunInline(lone));
  backend.Hold(true);
  batcher.Submit(Work(1, &out));  // occupies the only worker
  backend.WaitStarted(2);
  batcher.Submit(Work(2, &out));
  batcher.Submit(with_nan(3, 20));  // rows 2..4 of the merged batch
  batcher.Submit(Work(4, &out));    // rows 5..8: row 7 marked, but finite
  backend.Hold(false);
  out.Wait(5);
  ASSERT_EQ(out.results.size(), 5u);
  EXPECT_EQ(out.results[0].first, absl::StatusCode::kInvalidArgument);
  EXPECT_NE(out.messages[0].find("hidden_states.data: element 9 is not finite"), std::string::npos)
      << out.messages[0];
  EXPECT_EQ(out.results[1].first, absl::StatusCode::kOk);
  EXPECT_EQ(out.results[2].first, absl::StatusCode::kOk);
  EXPECT_EQ(out.results[2].second.ids, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(out.results[3].first, absl::StatusCode::kInvalidArgument);
  EXPECT_NE(out.messages[3].find("hidden_states.data: element 20 is not finite"), std::string::npos)
      << out.messages[3];
  EXPECT_EQ(out.results[4].first, absl::StatusCode::kOk);
  EXPECT_EQ(out.results[4].second.ids, (std::vector<int32_t>{5, 6, 7, 8}));
  EXPECT_EQ(backend.batches(), (std::vector<int>{2, 1, 9}));
}

TEST_F(BatcherTest, BatchesRespectTheTokenBound) {
  BatcherOptions o;
  o.limits.max_batch_tokens = 5;
  Batcher batcher(&backend, o, &metrics);
  Outcome out;
  backend.Hold(true);
  batcher.Submit(Work(1, &out));
  backend.WaitStarted(1);
  for (int t : {3, 2, 4, 1}) batcher.Submit(Work(t, &out));
  backend.Hold(false);
  out.Wait(5);
  EXPECT_EQ(backend.batches(), (std::vector<int>{1, 5, 5}));
}

TEST_F(BatcherTest, ExpiredRequestsAreAnsweredWithoutComputing) {
  Batcher batcher(&backend, {}, &metrics);
  Outcome out;
  backend.Hold(true);
  batcher.Submit(Work(1, &out));
  backend.WaitStarted(1);
  batcher.Submit(Work(2, &out, Clock::now() + std::chrono::milliseconds(1)));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  backend.Hold(false);
  out.Wait(2);
  EXPECT_EQ(out.results[1].first, absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(backend.batches(), (std::vector<int>{1}));
}

TEST_F(BatcherTest, AFullQueueShedsAndShutdownDrains) {
  BatcherOptions o;
  o.max_queued_requests = 2;
  auto batcher = std::make_unique<Batcher>(&backend, o, &metrics);
  Outcome out;
  backend.Hold(true);
  batcher->Submit(Work(1, &out));
  backend.WaitStarted(1);
  batcher->Submit(Work(1, &out));
  batcher->Submit(Work(1, &out));
  batcher->Submit(Work(1, &out));  // third in queue: shed
  out.Wait(1);
  EXPECT_EQ(out.results[0].first, absl::StatusCode::kResourceExhausted);
  batcher->Shutdown();
  auto late = Work(1, &out);
  batcher->Submit(std::move(late));  // after shutdown: UNAVAILABLE
  out.Wait(2);
  EXPECT_EQ(out.results[1].first, absl::StatusCode::kUnavailable);
  backend.Hold(false);
  batcher.reset();  // drains: the queued two complete
  out.Wait(5);
  int ok = 0;
  for (auto& [code, r] : out.results) ok += code == absl::StatusCode::kOk;
  EXPECT_EQ(ok, 3);
}

// The bound on queued hidden-state bytes: a request that finds the queue empty is taken
// whatever its size; past the bound requests are shed naming it; bytes leave the count as
// their requests leave the queue (the second round fits only if they did).
TEST_F(BatcherTest, QueuedBytesAreBounded) {
  BatcherOptions o;
  o.max_queued_bytes = 100;  // Work(t) holds 16 t bytes
  Batcher batcher(&backend, o, &metrics);
  Outcome out;
  backend.Hold(true);
  batcher.Submit(Work(1, &out));  // taken by the worker, held there
  backend.WaitStarted(1);
  batcher.Submit(Work(8, &out));  // 128 bytes into an empty queue: taken
  batcher.Submit(Work(1, &out));  // 144 > 100: shed
  out.Wait(1);
  EXPECT_EQ(out.results[0].first, absl::StatusCode::kResourceExhausted);
  EXPECT_NE(out.messages[0].find("100 bytes of hidden states"), std::string::npos)
      << out.messages[0];
  backend.Hold(false);
  out.Wait(3);
  for (int i = 1; i < 3; ++i) EXPECT_EQ(out.results[i].first, absl::StatusCode::kOk);

  backend.Hold(true);
  batcher.Submit(Work(1, &out));
  backend.WaitStarted(3);
  batcher.Submit(Work(4, &out));  // 64
  batcher.Submit(Work(2, &out));  // 96: fits only if the first round's bytes left the count
  batcher.Submit(Work(1, &out));  // 112: shed
  out.Wait(4);
  EXPECT_EQ(out.results[3].first, absl::StatusCode::kResourceExhausted);
  backend.Hold(false);
  out.Wait(7);
  for (int i = 4; i < 7; ++i) EXPECT_EQ(out.results[i].first, absl::StatusCode::kOk) << i;
}

TEST_F(BatcherTest, ADeviceFailureFailsTheBatchAndIsReportedOnce) {
  std::atomic<int> reported{0};
  BatcherOptions o;
  o.on_backend_failure = [&] { ++reported; };
  Batcher batcher(&backend, o, &metrics);
  backend.FailNextBatches();
  Outcome out;
  batcher.Submit(Work(2, &out));
  batcher.Submit(Work(1, &out));
  out.Wait(2);
  for (auto& [code, r] : out.results) EXPECT_EQ(code, absl::StatusCode::kInternal);
  EXPECT_EQ(reported.load(), 1);  // the server turns its health NOT_SERVING here
}

// Requests handed to a spinning worker before their bytes are written (the service's
// deferred copy). A backend that stages while filling gets the block's chunk marks and, as
// the device does, reads each chunk only once its mark holds the fill's generation; any
// other backend is called only after the fill. Either way it sees every byte as written,
// though the writer pauses between pieces. (Host memory stands in for the device's view.)
class FillingBackend : public RouterBackend {
 public:
  explicit FillingBackend(bool stages_while_filling) : stages_(stages_while_filling) {}
  std::string name() const override { return "filling"; }
  std::string device() const override { return "fake"; }
  absl::Status LoadModel(const RouterModel&) override { return absl::OkStatus(); }
  bool StagesWhileFilling() const override { return stages_; }
  absl::StatusOr<double> Route(const std::string&, int, const BatchIO& io) override {
    const size_t bytes = size_t(io.tokens) * kHidden * 2;
    std::string seen(bytes, '\0');
    const ChunkMarks m = io.pending_marks();
    if (!stages_) {
      EXPECT_EQ(m.chunks, 0u);  // the batcher waited for the fill
    }
    if (m.chunks > 0) ++staged_while_filling;
    for (size_t c = 0; c * kFillChunkBytes < bytes; ++c) {
      if (c < m.chunks) {
        const auto* mark = reinterpret_cast<const uint32_t*>(
            static_cast<const char*>(m.device_marks) + c * kFillMarkStride);
        while (__atomic_load_n(mark, __ATOMIC_ACQUIRE) != m.generation) std::this_thread::yield();
      }
      const size_t n = std::min(kFillChunkBytes, bytes - c * kFillChunkBytes);
      std::memcpy(&seen[c * kFillChunkBytes],
                  static_cast<const char*>(io.hidden) + c * kFillChunkBytes, n);
    }
    seen_.push_back(std::move(seen));
    for (int t = 0; t < io.tokens; ++t) {
      io.ids[t] = t;
      io.weights[t] = 1.0f;
    }
    return 1e-6;
  }
  static constexpr int kHidden = 2000;  // 4000 bytes a token: chunks cut rows
  std::vector<std::string> seen_;
  std::atomic<int> staged_while_filling{0};

 private:
  const bool stages_;
};

class HandOffWhileFilling : public ::testing::TestWithParam<bool> {
 protected:
  // A one-block pool with chunk marks, the backend, and a batcher whose worker is spinning.
  void Start(size_t block_bytes) {
    region_.assign(block_bytes, '\0');
    marks_.assign(InputPool::marks_bytes_per_block(block_bytes), '\0');
    pool = std::make_unique<InputPool>(region_.data(), region_.data(), block_bytes, 1);
    pool->SetChunkMarks(marks_.data(), marks_.data());
    BatcherOptions o;
    o.idle_spin_us = 5'000'000;
    batcher = std::make_unique<Batcher>(&backend, o, &metrics);
    WaitSpinning();
  }
  void WaitSpinning() {
    for (int k = 0; k < 1000 && batcher->spinning_workers() == 0; ++k)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_EQ(batcher->spinning_workers(), 1);
  }
  MetricsRegistry registry;
  ServerMetrics metrics{&registry};
  FillingBackend backend{GetParam()};
  std::vector<char> region_, marks_;
  std::unique_ptr<InputPool> pool;
  std::unique_ptr<Batcher> batcher;  // declared last: stopped before the pool goes
};

TEST_P(HandOffWhileFilling, TheWorkerSeesEveryByteAsWritten) {
  ASSERT_NO_FATAL_FAILURE(Start(64 << 10));
  std::mt19937 rng(5);
  std::vector<std::string> written;
  for (int i = 0; i < 20; ++i) {
    ASSERT_NO_FATAL_FAILURE(WaitSpinning());
    Outcome out;
    const int tokens = 1 + int(rng() % 16);
    auto w = Work(tokens, &out);
    w->hidden = FillingBackend::kHidden;
    std::string bytes(size_t(tokens) * FillingBackend::kHidden * 2, '\0');
    for (char& c : bytes) c = char(rng());
    ASSERT_TRUE(pool->TryAcquire(bytes.size(), &w->hidden_states));
    BlockFill fill = w->hidden_states.BeginFill();
    ASSERT_TRUE(batcher->TryHandOff(w));
    ASSERT_EQ(w, nullptr);
    // Three pieces, cut anywhere, with pauses the worker runs into.
    size_t a = rng() % bytes.size(), b = rng() % bytes.size();
    if (a > b) std::swap(a, b);
    for (auto [from, to] : {std::pair{size_t(0), a}, {a, b}, {b, bytes.size()}}) {
      std::this_thread::sleep_for(std::chrono::microseconds(300));
      fill.Write(bytes.data() + from, to - from);
    }
    fill.Finish();
    out.Wait(1);
    EXPECT_EQ(out.results[0].first, absl::StatusCode::kOk);
    written.push_back(std::move(bytes));
  }
  ASSERT_EQ(backend.seen_.size(), written.size());
  for (size_t i = 0; i < written.size(); ++i) EXPECT_TRUE(backend.seen_[i] == written[i]) << i;
  if (GetParam()) {
    EXPECT_GT(backend.staged_while_filling.load(), 0);  // some pieces came after the launch
  }
}

// A handed-over request whose deadline passed is answered at once, but its block goes back
// to the pool only after the writer finished with it.
TEST_P(HandOffWhileFilling, ADroppedRequestKeepsItsBlockUntilTheFillEnds) {
  ASSERT_NO_FATAL_FAILURE(Start(16 << 10));
  Outcome out;
  auto w = Work(1, &out, Clock::now() - std::chrono::seconds(1));
  ASSERT_TRUE(pool->TryAcquire(4000, &w->hidden_states));
  BlockFill fill = w->hidden_states.BeginFill();
  ASSERT_TRUE(batcher->TryHandOff(w));
  out.Wait(1);
  EXPECT_EQ(out.results[0].first, absl::StatusCode::kDeadlineExceeded);
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  EXPECT_EQ(pool->free_blocks(), 0);  // the worker waits to give it back
  fill.Finish();
  for (int k = 0; k < 1000 && pool->free_blocks() == 0; ++k)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(pool->free_blocks(), 1);
  EXPECT_TRUE(backend.seen_.empty());
}

INSTANTIATE_TEST_SUITE_P(StagingOrNot, HandOffWhileFilling, testing::Bool(),
                         [](const testing::TestParamInfo<bool>& info) {
                           return info.param ? "StagesWhileFilling" : "WaitsForTheFill";
                         });

}  // namespace
}  // namespace moe
