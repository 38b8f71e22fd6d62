// Fuzz target: any bytes as a safetensors file. Parsing must give a status, never crash,
// and every tensor it accepts must lie inside the bytes with a shape that matches its byte
// length (the reads below are what ASan checks; the aborts are what the fuzzer reports).
#include <cstdint>
#include <cstdlib>

#include "server/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto file = moe::SafetensorsFile::FromBytes("fuzz", bytes);
  if (!file.ok()) {
    if (file.status().message().empty()) std::abort();  // every refusal says why
    return 0;
  }
  for (const auto& [name, t] : (*file)->tensors()) {
    if (t.begin > t.end || t.end > size) std::abort();
    uint64_t elements = 1;
    for (int64_t d : t.shape) {
      if (d < 0) std::abort();
      elements *= static_cast<uint64_t>(d);
    }
    if (elements * moe::StDTypeSize(t.dtype) != t.end - t.begin) std::abort();
    if (t.end > t.begin) {
      const uint8_t* p = (*file)->Data(t);
      volatile uint8_t first = p[0], last = p[t.end - t.begin - 1];
      (void)first;
      (void)last;
    }
  }
  return 0;
}
