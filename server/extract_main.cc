// moe-router-extract: writes a compact router-only safetensors file from a Hugging Face
// checkpoint directory (reads only the router tensors; shards are memory-mapped).
#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/build_version.h"
#include "server/checkpoint.h"

namespace {

constexpr char kUsage[] =
    "usage: moe-router-extract CHECKPOINT_DIR OUT.safetensors\n"
    "       moe-router-extract --version\n"
    "\n"
    "Reads config.json and the router tensors of a Hugging Face MoE checkpoint\n"
    "(model.safetensors.index.json + shards, or model.safetensors) and writes them to\n"
    "OUT.safetensors with the routing parameters in __metadata__. The output loads with\n"
    "moe-router-server --model NAME=OUT.safetensors.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (argc == 2 && std::strcmp(argv[1], "--version") == 0) {
    std::printf("%s\n", moe::VersionLine("moe-router-extract").c_str());
    return 0;
  }
  if (argc != 3) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  auto model = moe::LoadCheckpointDir(argv[1], "extracted");
  if (!model.ok()) {
    std::fprintf(stderr, "moe-router-extract: %s\n", std::string(model.status().message()).c_str());
    return 1;
  }
  auto status = moe::WriteRouterFile(*model, argv[2]);
  if (!status.ok()) {
    std::fprintf(stderr, "moe-router-extract: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  std::printf("wrote %s: family %s, %d layers, %d experts x %d hidden, %s, %.1f MB\n", argv[2],
              model->spec.family.c_str(), model->num_layers(), model->spec.experts,
              model->spec.hidden, std::string(moe::DTypeName(model->weight_dtype)).c_str(),
              model->WeightBytes() / 1e6);
  return 0;
}
