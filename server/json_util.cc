#include "server/json_util.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/util/json_util.h"

namespace moe {

absl::StatusOr<google::protobuf::Struct> ParseJsonObject(absl::string_view json,
                                                         absl::string_view what) {
  // protobuf would say "Root element must be a message" of a JSON array or number.
  const absl::string_view body = absl::StripLeadingAsciiWhitespace(json);
  if (!body.empty() && body.front() != '{')
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": invalid JSON: expected an object ({...}), found '", body.substr(0, 1), "'"));
  google::protobuf::Struct s;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto status = google::protobuf::util::JsonStringToMessage(std::string(json), &s, options);
  if (!status.ok())
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": invalid JSON: ", std::string(status.message())));
  return s;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::StatusOr<google::protobuf::Struct> ReadJsonFile(const std::string& path) {
  auto text = ReadWholeFile(path);
  if (!text.ok()) return text.status();
  return ParseJsonObject(*text, path);
}

std::optional<uint64_t> WholeNumberUpTo(double d, uint64_t limit) {
  if (!(d >= 0) || d > static_cast<double>(limit) || std::floor(d) != d) return std::nullopt;
  return static_cast<uint64_t>(d);
}

std::optional<double> JsonNumber(const google::protobuf::Struct& s, absl::string_view key) {
  auto it = s.fields().find(std::string(key));
  if (it == s.fields().end() || !it->second.has_number_value()) return std::nullopt;
  return it->second.number_value();
}

std::optional<std::string> JsonString(const google::protobuf::Struct& s, absl::string_view key) {
  auto it = s.fields().find(std::string(key));
  if (it == s.fields().end() || !it->second.has_string_value()) return std::nullopt;
  return it->second.string_value();
}

std::optional<bool> JsonBool(const google::protobuf::Struct& s, absl::string_view key) {
  auto it = s.fields().find(std::string(key));
  if (it == s.fields().end() || !it->second.has_bool_value()) return std::nullopt;
  return it->second.bool_value();
}

std::string JsonQuote(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          out += absl::StrFormat("\\u%04x", static_cast<unsigned char>(c));
        else
          out += c;
    }
  }
  out += '"';
  return out;
}

}  // namespace moe
