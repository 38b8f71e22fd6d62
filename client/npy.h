// Reading a 2-D array from a NumPy .npy file (format versions 1-3, C order, little-endian
// float32 '<f4', float16 '<f2', or bfloat16 bits stored as uint16 '<u2'). Stateless.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "moe_router/v1/router.pb.h"

namespace moe {

struct NpyArray {
  moe_router::v1::DType dtype = moe_router::v1::DTYPE_UNSPECIFIED;
  int64_t rows = 0, cols = 0;
  std::string data;  // raw little-endian elements
};

absl::StatusOr<NpyArray> ReadNpy(const std::string& path);
// The same from the file's bytes; errors name `what` (the path, say).
absl::StatusOr<NpyArray> ParseNpy(absl::string_view file, const std::string& what);

}  // namespace moe
