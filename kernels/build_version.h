// What this build is: the project's version, the commit it was built from and how it was
// built. One definition for every binary's --version, the moe_router_build_info metric and
// the C ABI's moe_version(); its data is written at build time (scripts/version_stamp.cmake),
// so it names the commit of the last build, not of the last CMake configure.
#pragma once

#include <string>

namespace moe {

struct BuildVersion {
  const char* version;     // the project's version (CMakeLists.txt), "0.1.0"
  const char* commit;      // 12 hex digits, "-dirty" if tracked files had changed; "unknown"
                           // without a git checkout (MOE_ROUTER_COMMIT sets it: Dockerfile)
  const char* build_type;  // CMAKE_BUILD_TYPE: "Release", "RelWithDebInfo", ...
  const char* cuda;        // the kernels' CUDA architectures ("90a-real"), or "off"
};

const BuildVersion& GetBuildVersion();

// "PROGRAM 0.1.0 (commit 0afe62c1d2e3, Release, CUDA 90a-real)", no newline.
std::string VersionLine(const std::string& program);

}  // namespace moe
