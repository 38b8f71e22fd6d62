// ValidateRouteRequest on its own: a valid request hands its hidden-state bytes to the
// batch work (moved, not copied, or copied into a backend's staging buffer); a rejected one
// keeps them and names the field.
#include "server/request_validation.h"

#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"

namespace moe {
namespace {

std::map<std::string, ModelDescription> Models() {
  ModelDescription m;
  m.name = "m";
  m.spec = FindPreset("mixtral").value().spec;
  m.layers = 2;
  return {{m.name, m}};
}

moe_router::v1::RouteRequest Request(int tokens, int hidden) {
  moe_router::v1::RouteRequest req;
  req.set_model("m");
  req.set_layer(1);
  auto* t = req.mutable_hidden_states();
  t->set_dtype(moe_router::v1::DTYPE_FP32);
  t->add_shape(tokens);
  t->add_shape(hidden);
  std::string bytes(size_t(tokens) * hidden * 4, '\0');
  for (size_t i = 0; i < bytes.size() / 4; ++i) {
    const float v = 0.001f * float(i % 997);
    std::memcpy(&bytes[i * 4], &v, 4);
  }
  t->set_data(bytes);
  return req;
}

TEST(RequestValidation, AValidRequestHandsItsBytesToTheWork) {
  const auto models = Models();
  const int hidden = models.at("m").spec.hidden;
  auto req = Request(3, hidden);
  const std::string original = req.hidden_states().data();
  auto work = ValidateRouteRequest(&req, models, 256);
  ASSERT_TRUE(work.ok()) << work.status();
  EXPECT_EQ((*work)->hidden_bytes, original);
  EXPECT_EQ((*work)->tokens, 3);
  EXPECT_EQ((*work)->layer, 1);
  EXPECT_EQ((*work)->dtype, DType::kFP32);
  EXPECT_TRUE(req.hidden_states().data().empty());  // moved, not copied
}

TEST(RequestValidation, ARejectedRequestKeepsItsBytesAndNamesTheField) {
  const auto models = Models();
  const int hidden = models.at("m").spec.hidden;
  auto req = Request(2, hidden);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(&(*req.mutable_hidden_states()->mutable_data())[4 * (hidden + 5)], &nan, 4);
  const std::string original = req.hidden_states().data();
  auto work = ValidateRouteRequest(&req, models, 256);
  ASSERT_FALSE(work.ok());
  EXPECT_EQ(work.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(work.status().message()).find("hidden_states.data"), std::string::npos)
      << work.status();
  EXPECT_EQ(req.hidden_states().data(), original);

  auto wrong_layer = Request(1, hidden);
  wrong_layer.set_layer(2);
  EXPECT_EQ(ValidateRouteRequest(&wrong_layer, models, 256).status().code(),
            absl::StatusCode::kNotFound);
}

// A backend's staging buffer: plain memory that counts its live instances.
class TestBuffer : public InputBuffer {
 public:
  TestBuffer(size_t capacity, int* live) : bytes_(capacity, '\x5a'), live_(live) { ++*live_; }
  ~TestBuffer() override { --*live_; }
  char* data() override { return bytes_.data(); }
  size_t capacity() const override { return bytes_.size(); }

 private:
  std::string bytes_;
  int* live_;
};

TEST(RequestValidation, AStagingBufferReceivesTheCheckedBytes) {
  const auto models = Models();
  const int hidden = models.at("m").spec.hidden;
  auto req = Request(3, hidden);
  const std::string original = req.hidden_states().data();
  int live = 0;
  size_t asked = 0;
  auto work = ValidateRouteRequest(&req, models, 256, [&](size_t bytes) {
    asked = bytes;
    return std::make_unique<TestBuffer>(bytes + 64, &live);
  });
  ASSERT_TRUE(work.ok()) << work.status();
  EXPECT_EQ(asked, original.size());
  ASSERT_NE((*work)->staged, nullptr);
  EXPECT_EQ(std::string((*work)->hidden_data(), (*work)->hidden_size()), original);
  EXPECT_TRUE((*work)->hidden_bytes.empty());
  work->reset();
  EXPECT_EQ(live, 0);  // the buffer goes back with the work
}

TEST(RequestValidation, NonFiniteBytesAreRefusedWhileStagedAndTheBufferReturned) {
  const auto models = Models();
  const int hidden = models.at("m").spec.hidden;
  auto req = Request(4, hidden);
  const float inf = std::numeric_limits<float>::infinity();
  std::memcpy(&(*req.mutable_hidden_states()->mutable_data())[4 * (3 * hidden + 7)], &inf, 4);
  int live = 0;
  auto work = ValidateRouteRequest(
      &req, models, 256, [&](size_t bytes) { return std::make_unique<TestBuffer>(bytes, &live); });
  ASSERT_FALSE(work.ok());
  EXPECT_EQ(work.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(work.status().message())
                .find(absl::StrCat("hidden_states.data: element ", 3 * hidden + 7, " ")),
            std::string::npos)
      << work.status();
  EXPECT_EQ(live, 0);
}

TEST(RequestValidation, NoOrTooSmallAStagingBufferMovesTheBytes) {
  const auto models = Models();
  const int hidden = models.at("m").spec.hidden;
  int live = 0;
  for (bool none : {true, false}) {
    auto req = Request(2, hidden);
    const std::string original = req.hidden_states().data();
    auto work = ValidateRouteRequest(&req, models, 256, [&](size_t bytes) {
      return none ? nullptr : std::make_unique<TestBuffer>(bytes - 1, &live);
    });
    ASSERT_TRUE(work.ok()) << work.status();
    EXPECT_EQ((*work)->staged, nullptr);
    EXPECT_EQ((*work)->hidden_bytes, original);
    EXPECT_EQ(std::string((*work)->hidden_data(), (*work)->hidden_size()), original);
    EXPECT_EQ(live, 0);
  }
}

}  // namespace
}  // namespace moe
