#include "server/server_config.h"

#include <cstring>
#include <string>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/json_util.h"

namespace moe {
namespace {

// A JSON value as the text a flag parses ("true", "12", "a,b").
absl::StatusOr<std::string> FlagText(const google::protobuf::Value& v) {
  switch (v.kind_case()) {
    case google::protobuf::Value::kStringValue:
      return v.string_value();
    case google::protobuf::Value::kBoolValue:
      return std::string(v.bool_value() ? "true" : "false");
    case google::protobuf::Value::kNumberValue: {
      const double d = v.number_value();
      if (d == static_cast<double>(static_cast<long long>(d)))
        return absl::StrCat(static_cast<long long>(d));
      return absl::StrCat(d);
    }
    case google::protobuf::Value::kListValue: {
      std::vector<std::string> parts;
      for (const auto& item : v.list_value().values()) {
        auto text = FlagText(item);
        if (!text.ok()) return text.status();
        parts.push_back(*text);
      }
      return absl::StrJoin(parts, ",");
    }
    default:
      return absl::InvalidArgumentError("value must be a string, number, boolean or list");
  }
}

}  // namespace

absl::Status ApplyConfigFileFlag(int argc, char** argv) {
  std::string path;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--config=", 9) == 0) path = argv[i] + 9;
    if (std::strcmp(argv[i], "--config") == 0 && i + 1 < argc) path = argv[i + 1];
  }
  if (path.empty()) return absl::OkStatus();
  auto config = ReadJsonFile(path);
  if (!config.ok())
    return absl::InvalidArgumentError(absl::StrCat("--config: ", config.status().message()));
  for (const auto& [key, value] : config->fields()) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(key);
    if (flag == nullptr || key == "config")
      return absl::InvalidArgumentError(absl::StrCat(path, ": '", key, "' is not a server flag"));
    auto text = FlagText(value);
    if (!text.ok())
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": '", key, "': ", text.status().message()));
    std::string error;
    if (!flag->ParseFrom(*text, &error))
      return absl::InvalidArgumentError(absl::StrCat(path, ": '", key, "': ", error));
  }
  return absl::OkStatus();
}

}  // namespace moe
