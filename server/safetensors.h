// Reading and writing the safetensors format: an 8-byte little-endian header length N,
// N bytes of JSON (tensor name -> {dtype, shape, data_offsets}, optional __metadata__),
// then the data buffer. Files are memory-mapped; nothing is read until a tensor's bytes
// are touched, so opening a 600 GB checkpoint shard costs only its header.
// A SafetensorsFile is immutable after Open and safe to read from several threads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/dtype.h"

namespace moe {

enum class StDType {
  kBF16,
  kF16,
  kF32,
  kF64,
  kI8,
  kU8,
  kI16,
  kI32,
  kI64,
  kBool,
  kF8E4M3,
  kF8E5M2,
  kU16,
  kU32,
  kU64
};

absl::StatusOr<StDType> ParseStDType(absl::string_view name);
// The element types router weights may have: BF16, F16, F32. The error names `where`.
absl::StatusOr<DType> ToDType(StDType t, absl::string_view where);
StDType ToStDType(DType t);
absl::string_view StDTypeName(StDType t);
size_t StDTypeSize(StDType t);

struct TensorInfo {
  std::string name;
  StDType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offsets relative to the data buffer
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  // Maps and validates the whole header: dtypes, shapes vs byte lengths, offsets inside
  // the file and not overlapping. Errors name the file and the tensor.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // The same checks over bytes already in memory, which must outlive the result; `label`
  // stands for the path in errors. For tests and the fuzzer.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBytes(const std::string& label,
                                                                    absl::string_view bytes);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // NOT_FOUND naming the file and tensor when absent.
  absl::StatusOr<const TensorInfo*> Find(absl::string_view name) const;
  // The tensor's bytes inside the mapping (valid while this object lives).
  const uint8_t* Data(const TensorInfo& t) const { return data_ + t.begin; }

 private:
  SafetensorsFile() = default;
  // Reads and validates the header of the whole file's bytes, setting data_ into them.
  absl::Status Parse(absl::string_view bytes);
  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

struct TensorToWrite {
  std::string name;
  StDType dtype;
  std::vector<int64_t> shape;
  absl::string_view bytes;  // must outlive the WriteSafetensors call
};

// Writes a safetensors file (tensors in the given order, 8-byte aligned header).
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata);

}  // namespace moe
