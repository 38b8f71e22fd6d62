// The CLI's .npy reader: versions 1 and 2, each supported dtype, and every malformed header
// refused with the reason (never a throw: a shape beyond int64 made std::stoll throw).
#include "client/npy.h"

#include <gtest/gtest.h>

#include <string>

namespace moe {
namespace {

// A .npy file: magic, version, header length, the header padded with spaces and a newline.
std::string Npy(const std::string& dict, const std::string& data, int major = 1) {
  std::string header = dict;
  const size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  const int length_bytes = major == 1 ? 2 : 4;
  for (int i = 0; i < length_bytes; ++i) out += static_cast<char>(header.size() >> (8 * i));
  return out + header + data;
}

void ExpectRefused(const std::string& file, const std::string& why) {
  auto a = ParseNpy(file, "h.npy");
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(a.status().message().find("h.npy"), absl::string_view::npos) << a.status();
  EXPECT_NE(a.status().message().find(why), absl::string_view::npos) << a.status();
}

TEST(Npy, ReadsEachDtypeInVersionsOneAndTwo) {
  const std::string data(2 * 3 * 4, '\x01');
  auto f4 =
      ParseNpy(Npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data), "h.npy");
  ASSERT_TRUE(f4.ok()) << f4.status();
  EXPECT_EQ(f4->dtype, moe_router::v1::DTYPE_FP32);
  EXPECT_EQ(f4->rows, 2);
  EXPECT_EQ(f4->cols, 3);
  EXPECT_EQ(f4->data, data);
  auto u2 = ParseNpy(Npy("{'descr': '<u2', 'fortran_order': False, 'shape': (4, 3), }", data, 2),
                     "h.npy");
  ASSERT_TRUE(u2.ok()) << u2.status();
  EXPECT_EQ(u2->dtype, moe_router::v1::DTYPE_BF16);
  EXPECT_EQ(u2->rows, 4);
  auto f2 =
      ParseNpy(Npy("{'descr': '<f2', 'fortran_order': False, 'shape': (3, 4)}", data), "h.npy");
  ASSERT_TRUE(f2.ok()) << f2.status();
  EXPECT_EQ(f2->dtype, moe_router::v1::DTYPE_FP16);
}

TEST(Npy, MalformedFilesAreRefusedWithTheReason) {
  const std::string data(2 * 3 * 4, '\0');
  ExpectRefused("not numpy at all", "missing magic");
  ExpectRefused(Npy("{'descr': '<f4', 'shape': (2, 3)}", data, 7), "format version 7");
  std::string cut = Npy("{'descr': '<f4', 'shape': (2, 3)}", data);
  ExpectRefused(cut.substr(0, 40), "header runs past the end");
  ExpectRefused(Npy("{'shape': (2, 3)}", data), "no descr");
  ExpectRefused(Npy("{'descr': '<f8', 'shape': (2, 3)}", data), "dtype '<f8'");
  ExpectRefused(Npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3)}", data),
                "Fortran order");
  ExpectRefused(Npy("{'descr': '<f4', 'shape': (2, 3, 1)}", data), "not 2-D");
  ExpectRefused(Npy("{'descr': '<f4', 'shape': (2, 4)}", data), "shape needs 32");
  // Beyond int64, and a product that would wrap around 2^64 to the 0 bytes given.
  ExpectRefused(Npy("{'descr': '<f4', 'shape': (99999999999999999999999, 3)}", data),
                "implausibly large");
  ExpectRefused(Npy("{'descr': '<f4', 'shape': (4611686018427387904, 4)}", ""),
                "implausibly large");
}

}  // namespace
}  // namespace moe
