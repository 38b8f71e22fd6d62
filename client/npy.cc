#include "client/npy.h"

#include <fstream>
#include <regex>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace moe {
namespace {

// Rows and columns above this are refused before any product is formed (2^31: far past any
// hidden size or batch, and rows * cols * 4 cannot overflow).
constexpr int64_t kMaxNpyDim = int64_t{1} << 31;

}  // namespace

absl::StatusOr<NpyArray> ParseNpy(absl::string_view file, const std::string& what) {
  auto bad = [&](const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not a supported .npy file: ", why));
  };
  if (file.size() < 10 || file.substr(0, 6) != "\x93NUMPY") return bad("missing magic");
  const int major = static_cast<unsigned char>(file[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<unsigned char>(file[8]) | static_cast<unsigned char>(file[9]) << 8;
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (file.size() < 12) return bad("truncated header");
    header_len = 0;
    for (int i = 3; i >= 0; --i)
      header_len = header_len << 8 | static_cast<unsigned char>(file[8 + i]);
    offset = 12;
  } else {
    return bad(absl::StrCat("format version ", major));
  }
  if (header_len > file.size() - offset) return bad("header runs past the end");
  const std::string header(file.substr(offset, header_len));
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr':\\s*'([^']*)'"))) return bad("no descr");
  NpyArray a;
  size_t elem = 0;
  const std::string descr = m[1].str();
  if (descr == "<f4")
    a.dtype = moe_router::v1::DTYPE_FP32, elem = 4;
  else if (descr == "<f2")
    a.dtype = moe_router::v1::DTYPE_FP16, elem = 2;
  else if (descr == "<u2" || descr == "<V2")
    a.dtype = moe_router::v1::DTYPE_BF16, elem = 2;
  else
    return bad(absl::StrCat("dtype '", descr, "' (want <f4, <f2, or bfloat16 bits as <u2)"));
  if (std::regex_search(header, std::regex("'fortran_order':\\s*True")))
    return bad("Fortran order");
  if (!std::regex_search(header, m, std::regex("'shape':\\s*\\((\\d+),\\s*(\\d+),?\\s*\\)")))
    return bad("shape is not 2-D");
  // Not std::stoll, which throws on a number beyond int64.
  if (!absl::SimpleAtoi(m[1].str(), &a.rows) || !absl::SimpleAtoi(m[2].str(), &a.cols) ||
      a.rows > kMaxNpyDim || a.cols > kMaxNpyDim)
    return bad(absl::StrCat("shape (", m[1].str(), ", ", m[2].str(), ") is implausibly large"));
  const size_t bytes = size_t(a.rows) * size_t(a.cols) * elem;
  const size_t data_bytes = file.size() - offset - header_len;
  if (bytes != data_bytes)
    return bad(absl::StrCat("data has ", data_bytes, " bytes, shape needs ", bytes));
  a.data = std::string(file.substr(offset + header_len));
  return a;
}

absl::StatusOr<NpyArray> ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseNpy(ss.str(), path);
}

}  // namespace moe
