// Fuzz target: any bytes as the CLI's .npy input. Parsing gives a status, never a crash or a
// throw, and an accepted array's bytes are exactly rows x cols elements.
#include <cstdint>
#include <cstdlib>

#include "client/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto a = moe::ParseNpy(absl::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!a.ok()) {
    if (a.status().message().empty()) std::abort();
    return 0;
  }
  const size_t elem = a->dtype == moe_router::v1::DTYPE_FP32 ? 4 : 2;
  if (a->rows < 0 || a->cols < 0 || a->data.size() != size_t(a->rows) * size_t(a->cols) * elem)
    std::abort();
  return 0;
}
