// The server's optional config file: a JSON object whose keys are flag names and whose
// values (strings, numbers, booleans, or arrays for list flags) set those flags before
// the command line is parsed, so explicit flags override the file. Not thread-safe; call
// once from main.
#pragma once

#include "absl/status/status.h"

namespace moe {

// Finds --config=FILE or --config FILE in argv and applies FILE; OK when absent. Errors
// name the file and the key.
absl::Status ApplyConfigFileFlag(int argc, char** argv);

}  // namespace moe
