// --version for the binaries that parse Abseil flags (moe-router-server, moe-router-bench,
// echo_server): this build's VersionLine, not Abseil's default, which describes how
// Debian's Abseil was built ("Debug build (NDEBUG not #defined)"). Call before
// absl::ParseCommandLine. Header-only, so that moe_version (also in libmoe_kernels.so)
// needs no Abseil flags library.
#pragma once

#include <string>

#include "absl/flags/usage_config.h"
#include "kernels/build_version.h"

namespace moe {

inline void SetFlagsVersion(const std::string& program) {
  absl::FlagsUsageConfig usage;
  usage.version_string = [program] { return VersionLine(program) + "\n"; };
  absl::SetFlagsUsageConfig(usage);
}

}  // namespace moe
