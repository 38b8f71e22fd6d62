// --help and --version for the binaries that parse Abseil flags (moe-router-server,
// moe-router-bench, echo_server). Call before absl::ParseCommandLine.
//
// --help: Abseil lists only flags defined in a file named after the binary
// (moe-router-server.cc), so for server_main.cc it printed "No flags matched"; here the
// caller names the file its flags are defined in (pass __FILE__ from that file).
// --version: this build's VersionLine, not Abseil's default, which describes how Debian's
// Abseil was built ("Debug build (NDEBUG not #defined)").
//
// Header-only, so that moe_version (also in libmoe_kernels.so) needs no Abseil flags
// library.
#pragma once

#include <string>

#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "kernels/build_version.h"

namespace moe {

inline void SetFlagsUsage(const std::string& program, const char* flags_file) {
  absl::FlagsUsageConfig usage;
  // Abseil hands the predicate the file name with its leading '/' stripped.
  const std::string file = std::string(absl::StripPrefix(flags_file, "/"));
  usage.contains_help_flags = [file](absl::string_view path) { return absl::EndsWith(path, file); };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  usage.version_string = [program] { return VersionLine(program) + "\n"; };
  absl::SetFlagsUsageConfig(usage);
}

}  // namespace moe
