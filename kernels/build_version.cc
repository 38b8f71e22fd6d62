#include "kernels/build_version.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace moe {

std::string VersionLine(const std::string& program) {
  const BuildVersion& v = GetBuildVersion();
  const std::string cuda =
      std::strcmp(v.cuda, "off") == 0 ? "CPU only" : absl::StrCat("CUDA ", v.cuda);
  return absl::StrCat(program, " ", v.version, " (commit ", v.commit, ", ", v.build_type, ", ",
                      cuda, ")");
}

}  // namespace moe
