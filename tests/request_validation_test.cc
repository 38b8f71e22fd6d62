// ValidateRouteRequest on its own: a valid request hands its hidden-state bytes to the
// batch work (moved, not copied); a rejected one keeps them and names the field.
#include "server/request_validation.h"

#include <gtest/gtest.h>

#include <cstring>
#include <limits>

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
  EXPECT_EQ((*work)->hidden_states.view(), original);
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

  // Left to a backend that checks on the device: the same request passes validation.
  auto unchecked = ValidateRouteRequest(&req, models, 256, /*check_finite=*/false);
  ASSERT_TRUE(unchecked.ok()) << unchecked.status();
  EXPECT_EQ((*unchecked)->hidden_states.view(), original);

  auto wrong_layer = Request(1, hidden);
  wrong_layer.set_layer(2);
  EXPECT_EQ(ValidateRouteRequest(&wrong_layer, models, 256).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace moe
