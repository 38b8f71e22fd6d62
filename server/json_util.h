// Minimal JSON reading through protobuf's JSON parser into google.protobuf.Struct
// (no extra dependency). Stateless, thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/struct.pb.h"

namespace moe {

// Parses a JSON object; the error names `what` (a file path, say).
absl::StatusOr<google::protobuf::Struct> ParseJsonObject(absl::string_view json,
                                                         absl::string_view what);
absl::StatusOr<google::protobuf::Struct> ReadJsonFile(const std::string& path);
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

// Field lookups that return nullopt when the key is absent or has another type.
std::optional<double> JsonNumber(const google::protobuf::Struct& s, absl::string_view key);
// A JSON number as a whole number in [0, limit]; nullopt when it is negative, fractional,
// NaN or beyond the limit (where a cast to an integer would be undefined).
std::optional<uint64_t> WholeNumberUpTo(double d, uint64_t limit);
std::optional<std::string> JsonString(const google::protobuf::Struct& s, absl::string_view key);
std::optional<bool> JsonBool(const google::protobuf::Struct& s, absl::string_view key);

// Escapes a string for inclusion in JSON (quotes included).
std::string JsonQuote(absl::string_view s);

}  // namespace moe
