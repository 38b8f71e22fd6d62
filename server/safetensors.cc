#include "server/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "kernels/status_macros.h"
#include "server/json_util.h"

namespace moe {
namespace {

struct DTypeEntry {
  StDType type;
  absl::string_view name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {StDType::kBF16, "BF16", 2}, {StDType::kF16, "F16", 2},        {StDType::kF32, "F32", 4},
    {StDType::kF64, "F64", 8},   {StDType::kI8, "I8", 1},          {StDType::kU8, "U8", 1},
    {StDType::kI16, "I16", 2},   {StDType::kI32, "I32", 4},        {StDType::kI64, "I64", 8},
    {StDType::kBool, "BOOL", 1}, {StDType::kF8E4M3, "F8_E4M3", 1}, {StDType::kF8E5M2, "F8_E5M2", 1},
    {StDType::kU16, "U16", 2},   {StDType::kU32, "U32", 4},        {StDType::kU64, "U64", 8},
};

// Headers above this are rejected: real ones are a few MB at most.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

absl::Status TruncatedError(const std::string& path, size_t size) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": truncated: ", size, " bytes, shorter than the 8-byte header length"));
}

// A JSON value that is a whole number in [0, limit] (WholeNumberUpTo), else nullopt.
std::optional<uint64_t> WholeValueUpTo(const google::protobuf::Value& v, uint64_t limit) {
  if (!v.has_number_value()) return std::nullopt;
  return WholeNumberUpTo(v.number_value(), limit);
}

}  // namespace

absl::StatusOr<StDType> ParseStDType(absl::string_view name) {
  for (const auto& d : kDTypes)
    if (d.name == name) return d.type;
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", name, "'"));
}

absl::string_view StDTypeName(StDType t) {
  for (const auto& d : kDTypes)
    if (d.type == t) return d.name;
  return "?";
}

absl::StatusOr<DType> ToDType(StDType t, absl::string_view where) {
  switch (t) {
    case StDType::kBF16:
      return DType::kBF16;
    case StDType::kF16:
      return DType::kFP16;
    case StDType::kF32:
      return DType::kFP32;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": dtype ", StDTypeName(t), " is not supported (BF16, F16, F32)"));
  }
}

StDType ToStDType(DType t) {
  switch (t) {
    case DType::kBF16:
      return StDType::kBF16;
    case DType::kFP16:
      return StDType::kF16;
    case DType::kFP32:
      return StDType::kF32;
  }
  return StDType::kF32;
}

size_t StDTypeSize(StDType t) {
  for (const auto& d : kDTypes)
    if (d.type == t) return d.size;
  return 0;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat(path, ": cannot stat: ", std::strerror(errno)));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  if (size < 8) {  // mmap refuses an empty file; Parse names the problem
    ::close(fd);
    return TruncatedError(path, size);
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (map == MAP_FAILED) return absl::InternalError(absl::StrCat(path, ": mmap failed"));
  file->map_ = static_cast<const uint8_t*>(map);
  file->map_size_ = size;
  RETURN_IF_ERROR(file->Parse(absl::string_view(static_cast<const char*>(map), size)));
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(
    const std::string& label, absl::string_view bytes) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = label;
  RETURN_IF_ERROR(file->Parse(bytes));
  return file;
}

absl::Status SafetensorsFile::Parse(absl::string_view bytes) {
  const std::string& path = path_;
  auto err = [&](auto... parts) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", parts...));
  };
  const size_t size = bytes.size();
  if (size < 8) return TruncatedError(path, size);
  const uint8_t* const start = reinterpret_cast<const uint8_t*>(bytes.data());
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | start[i];
  if (header_len > size - 8)
    return err("header length ", header_len, " runs past the end of the file (", size, " bytes)");
  if (header_len > kMaxHeaderBytes)
    return err("header length ", header_len, " is implausibly large");
  absl::string_view header(bytes.data() + 8, header_len);
  if (header.empty() || header.front() != '{')
    return err("invalid JSON header: does not start with '{'");
  auto parsed = ParseJsonObject(header, path + " header");
  if (!parsed.ok()) return parsed.status();
  data_ = start + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;

  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (const auto& [name, value] : parsed->fields()) {
    if (name == "__metadata__") {
      if (!value.has_struct_value()) return err("__metadata__ is not an object");
      for (const auto& [k, v] : value.struct_value().fields()) {
        if (!v.has_string_value()) return err("__metadata__.", k, " is not a string");
        metadata_[k] = v.string_value();
      }
      continue;
    }
    const std::string& tensor = name;  // lambdas capture structured bindings only from C++20
    auto terr = [&](auto... parts) { return err("tensor '", tensor, "': ", parts...); };
    if (!value.has_struct_value()) return terr("entry is not an object");
    const auto& fields = value.struct_value().fields();
    TensorInfo info;
    info.name = name;
    auto dt = fields.find("dtype");
    if (dt == fields.end() || !dt->second.has_string_value()) return terr("missing dtype");
    auto dtype = ParseStDType(dt->second.string_value());
    if (!dtype.ok()) return terr(dtype.status().message());
    info.dtype = *dtype;
    auto sh = fields.find("shape");
    if (sh == fields.end() || !sh->second.has_list_value()) return terr("missing shape");
    // Bounded as it goes, so the product cannot wrap around to a small number.
    constexpr uint64_t kMaxElements = uint64_t{1} << 50;
    uint64_t elements = 1;
    for (const auto& d : sh->second.list_value().values()) {
      const std::optional<uint64_t> dim = WholeValueUpTo(d, kMaxElements);
      if (!dim) return terr("shape has an invalid dimension");
      info.shape.push_back(static_cast<int64_t>(*dim));
      if (*dim != 0 && elements > kMaxElements / *dim) return terr("shape is implausibly large");
      elements *= *dim;
    }
    auto off = fields.find("data_offsets");
    if (off == fields.end() || !off->second.has_list_value() ||
        off->second.list_value().values_size() != 2)
      return terr("data_offsets must be a list of two numbers");
    // Whole numbers up to 2^53, where doubles still hold every integer (8 PiB of data).
    constexpr uint64_t kMaxOffset = uint64_t{1} << 53;
    const auto begin = WholeValueUpTo(off->second.list_value().values(0), kMaxOffset);
    const auto end = WholeValueUpTo(off->second.list_value().values(1), kMaxOffset);
    if (!begin || !end || *end < *begin) return terr("data_offsets [begin, end) are invalid");
    info.begin = *begin;
    info.end = *end;
    if (info.end > data_size)
      return terr("data_offsets [", info.begin, ", ", info.end, ") run past the data buffer (",
                  data_size, " bytes)");
    const uint64_t expect = elements * StDTypeSize(info.dtype);
    if (info.end - info.begin != expect)
      return terr("shape and byte length disagree: ", expect, " bytes expected, ",
                  info.end - info.begin, " given");
    if (info.end > info.begin) ranges.emplace_back(info.begin, info.end);
    tensors_.emplace(name, std::move(info));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) {
      std::string a, c;
      for (const auto& [n, t] : tensors_) {
        if (t.begin == ranges[i - 1].first && t.end == ranges[i - 1].second) a = n;
        if (t.begin == ranges[i].first && t.end == ranges[i].second) c = n;
      }
      return err("tensors '", a, "' and '", c, "' have overlapping data_offsets");
    }
  }
  return absl::OkStatus();
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(const_cast<uint8_t*>(map_), map_size_);
}

absl::StatusOr<const TensorInfo*> SafetensorsFile::Find(absl::string_view name) const {
  auto it = tensors_.find(std::string(name));
  if (it == tensors_.end())
    return absl::NotFoundError(absl::StrCat(path_, ": missing tensor '", name, "'"));
  return &it->second;
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (const auto& [k, v] : metadata) {
      if (!first) header += ",";
      first = false;
      header += JsonQuote(k) + ":" + JsonQuote(v);
    }
    header += "}";
  }
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    uint64_t elements = 1;
    for (int64_t d : t.shape) elements *= static_cast<uint64_t>(d);
    if (elements * StDTypeSize(t.dtype) != t.bytes.size())
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor '", t.name, "': shape and byte length disagree"));
    header += metadata.empty() && &t == &tensors.front() ? "" : ",";
    header +=
        JsonQuote(t.name) + ":{\"dtype\":\"" + std::string(StDTypeName(t.dtype)) + "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) header += (i ? "," : "") + absl::StrCat(t.shape[i]);
    header += absl::StrCat("],\"data_offsets\":[", offset, ",", offset + t.bytes.size(), "]}");
    offset += t.bytes.size();
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';  // keeps the data buffer aligned
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot create"));
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const auto& t : tensors)
    out.write(t.bytes.data(), static_cast<std::streamsize>(t.bytes.size()));
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace moe
