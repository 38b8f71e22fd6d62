// The weight store: safetensors reading/writing, Hugging Face checkpoint directories
// (index + shards, single file), the router-only file, moe-router-extract, and every
// kind of corrupt file, each generated here.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/checkpoint.h"
#include "server/demo_models.h"
#include "server/router_model.h"
#include "server/safetensors.h"

namespace moe {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/moe_store_test_XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf " + path_).c_str()); }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// A raw safetensors file from a literal header and a data buffer.
void WriteRaw(const std::string& path, const std::string& header, const std::string& data,
              uint64_t declared_len = 0) {
  uint64_t len = declared_len ? declared_len : header.size();
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(len >> (8 * i));
  WriteText(path, bytes + header + data);
}

void ExpectError(const absl::Status& status, std::initializer_list<std::string> fragments) {
  ASSERT_FALSE(status.ok());
  for (const auto& f : fragments)
    EXPECT_NE(status.message().find(f), absl::string_view::npos)
        << "'" << f << "' not in: " << status.message();
}

TEST(Safetensors, WriteThenReadKeepsTensorsAndMetadata) {
  TempDir dir;
  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  std::vector<uint16_t> b = {7, 8};
  std::vector<TensorToWrite> tensors = {
      {"a", StDType::kF32, {2, 3}, {reinterpret_cast<const char*>(a.data()), 24}},
      {"b.weird \"name\"", StDType::kBF16, {2}, {reinterpret_cast<const char*>(b.data()), 4}}};
  ASSERT_TRUE(WriteSafetensors(dir.File("x.safetensors"), tensors, {{"k", "v"}}).ok());
  auto file = SafetensorsFile::Open(dir.File("x.safetensors"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata().at("k"), "v");
  auto t = (*file)->Find("a");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(reinterpret_cast<const float*>((*file)->Data(**t))[5], 6.0f);
  EXPECT_TRUE((*file)->Find("b.weird \"name\"").ok());
  ExpectError((*file)->Find("missing").status(), {"x.safetensors", "missing tensor 'missing'"});
}

TEST(Safetensors, CorruptFilesGiveErrorsNamingFileAndTensor) {
  TempDir dir;
  const std::string p = dir.File("bad.safetensors");
  auto open = [&] { return SafetensorsFile::Open(p).status(); };

  WriteText(p, "abc");
  ExpectError(open(), {p, "truncated"});

  WriteRaw(p, "{}", "", 1000);
  ExpectError(open(), {p, "header length 1000 runs past the end"});

  WriteRaw(p, "{\"w\": {\"dtype\": \"F32\",", "");
  ExpectError(open(), {p, "invalid JSON"});

  WriteRaw(p, "not json at all", "");
  ExpectError(open(), {p, "invalid JSON"});

  WriteRaw(p, R"({"w":{"dtype":"F48","shape":[2],"data_offsets":[0,8]}})", std::string(8, 'x'));
  ExpectError(open(), {p, "tensor 'w'", "unknown dtype 'F48'"});

  WriteRaw(p, R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, 'x'));
  ExpectError(open(), {p, "tensor 'w'", "shape and byte length disagree"});

  WriteRaw(p, R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, 'x'));
  ExpectError(open(), {p, "tensor 'w'", "run past the data buffer"});

  WriteRaw(p, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", std::string(8, 'x'));
  ExpectError(open(), {p, "tensor 'w'", "data_offsets"});

  WriteRaw(p,
           R"({"u":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
           R"("v":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
           std::string(12, 'x'));
  ExpectError(open(), {p, "'u'", "'v'", "overlapping"});

  WriteRaw(p, R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", std::string(8, 'x'));
  ExpectError(open(), {p, "tensor 'w'", "invalid dimension"});

  WriteRaw(p, R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", std::string(8, 'x'));
  ExpectError(open(), {p, "tensor 'w'", "missing shape"});

  ExpectError(SafetensorsFile::Open(dir.File("nope.safetensors")).status(), {"nope.safetensors"});
}

// Numbers a cast would mangle: a shape whose element count wraps around 2^64 to zero, offsets
// beyond any integer a double holds, fractional and negative ones. Each is refused by name
// (before, [2^32, 2^32] with no bytes was accepted as an empty tensor).
TEST(Safetensors, NumbersOutsideTheirRangeAreRefusedNotCast) {
  auto parse = [](const std::string& header, const std::string& data) {
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(uint64_t{header.size()} >> (8 * i));
    bytes += header + data;
    return SafetensorsFile::FromBytes("mem", bytes).status();
  };
  const std::string x8(8, 'x');
  EXPECT_TRUE(parse(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", x8).ok());
  ExpectError(parse(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],)"
                    R"("data_offsets":[0,0]}})",
                    ""),
              {"mem", "tensor 'w'", "implausibly large"});
  ExpectError(parse(R"({"w":{"dtype":"U8","shape":[1125899906842624,1125899906842624,16384],)"
                    R"("data_offsets":[0,0]}})",
                    ""),
              {"tensor 'w'", "implausibly large"});
  ExpectError(parse(R"({"w":{"dtype":"U8","shape":[1e300],"data_offsets":[0,0]}})", ""),
              {"tensor 'w'", "invalid dimension"});
  ExpectError(parse(R"({"w":{"dtype":"U8","shape":[2.5],"data_offsets":[0,2]}})", "xx"),
              {"tensor 'w'", "invalid dimension"});
  ExpectError(parse(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[1e300,1e300]}})", ""),
              {"tensor 'w'", "data_offsets [begin, end) are invalid"});
  ExpectError(parse(R"({"w":{"dtype":"U8","shape":[8],"data_offsets":[-1e300,8]}})", x8),
              {"tensor 'w'", "data_offsets [begin, end) are invalid"});
  ExpectError(parse(R"({"w":{"dtype":"U8","shape":[7],"data_offsets":[0.5,7.5]}})", x8),
              {"tensor 'w'", "data_offsets [begin, end) are invalid"});
  ExpectError(parse(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0,"8"]}})", x8),
              {"tensor 'w'", "data_offsets [begin, end) are invalid"});
  ExpectError(parse(R"({"w":{"dtype":"U8","shape":[8],"data_offsets":[8,16]}})", x8),
              {"tensor 'w'", "run past the data buffer"});
  ExpectError(SafetensorsFile::FromBytes("mem", "1234").status(), {"mem", "truncated: 4 bytes"});
}

TEST(RouterFile, RoundTripsEveryFamilysDemoModel) {
  TempDir dir;
  for (const auto& name : DemoModelNames()) {
    auto model = MakeDemoModel(name, 2);
    ASSERT_TRUE(model.ok()) << model.status();
    const std::string path = dir.File("r.safetensors");
    ASSERT_TRUE(WriteRouterFile(*model, path).ok());
    auto back = ReadRouterFile(path, name);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->spec.family, model->spec.family);
    EXPECT_EQ(back->spec.experts, model->spec.experts);
    EXPECT_EQ(back->spec.n_group, model->spec.n_group);
    EXPECT_EQ(back->spec.scaling_factor, model->spec.scaling_factor);
    EXPECT_EQ(back->spec.order, model->spec.order);
    ASSERT_EQ(back->num_layers(), 2);
    for (int l = 0; l < 2; ++l) {
      EXPECT_EQ(back->layers[l].weight, model->layers[l].weight);
      EXPECT_EQ(back->layers[l].router_bias, model->layers[l].router_bias);
      EXPECT_EQ(back->layers[l].correction_bias, model->layers[l].correction_bias);
    }
  }
}

TEST(RouterFile, MissingTensorAndWrongShapeAreNamed) {
  TempDir dir;
  RouterModel model = MakeDemoModel("demo-mixtral", 2).value();
  auto md = SpecToMetadata(model.spec);
  md["layers"] = "2";
  std::vector<TensorToWrite> t = {{"layers.0.weight",
                                   StDType::kBF16,
                                   {8, 4096},
                                   {reinterpret_cast<const char*>(model.layers[0].weight.data()),
                                    model.layers[0].weight.size()}}};
  const std::string p = dir.File("m.safetensors");
  ASSERT_TRUE(WriteSafetensors(p, t, md).ok());
  ExpectError(ReadRouterFile(p, "m").status(), {p, "missing tensor 'layers.1.weight'"});

  md["layers"] = "1";
  t[0].shape = {16, 2048};
  ASSERT_TRUE(WriteSafetensors(p, t, md).ok());
  ExpectError(ReadRouterFile(p, "m").status(), {p, "layers.0.weight", "wrong shape"});

  md.erase("top_k");
  ASSERT_TRUE(WriteSafetensors(p, t, md).ok());
  ExpectError(ReadRouterFile(p, "m").status(), {p, "top_k"});
}

// A small DeepSeek-V3-style checkpoint: layer 0 dense, layers 1..3 MoE, split over two
// shards with unrelated tensors beside the routers.
struct FakeCheckpoint {
  RouterModel truth;
  std::string dir;
};

FakeCheckpoint WriteDeepSeekCheckpoint(const TempDir& tmp, bool sharded) {
  RouterSpec spec = FindPreset("deepseek_v3").value().spec;
  spec.hidden = 64;
  spec.experts = 16;
  spec.top_k = 4;
  spec.n_group = 4;
  spec.topk_group = 2;
  spec.scaling_factor = 1.5f;
  FakeCheckpoint ck{MakeSyntheticModel(spec, 3, DType::kBF16, 42, "ck"), tmp.path()};
  WriteText(tmp.File("config.json"),
            R"({"model_type":"deepseek_v3","hidden_size":64,"n_routed_experts":16,)"
            R"("num_experts_per_tok":4,"n_group":4,"topk_group":2,"scoring_func":"sigmoid",)"
            R"("norm_topk_prob":true,"routed_scaling_factor":1.5,"num_hidden_layers":4})");
  std::vector<float> other(64 * 8, 0.5f);
  absl::string_view other_bytes(reinterpret_cast<const char*>(other.data()), other.size() * 4);
  std::vector<TensorToWrite> shard[2];
  shard[0].push_back(
      {"model.layers.0.self_attn.q_proj.weight", StDType::kF32, {8, 64}, other_bytes});
  for (int l = 0; l < 3; ++l) {
    auto& layer = ck.truth.layers[l];
    layer.source_layer = l + 1;
    auto& dst = shard[sharded ? (l == 0 ? 0 : 1) : 0];
    dst.push_back({absl::StrCat("model.layers.", l + 1, ".mlp.gate.weight"),
                   StDType::kBF16,
                   {16, 64},
                   {reinterpret_cast<const char*>(layer.weight.data()), layer.weight.size()}});
    dst.push_back({absl::StrCat("model.layers.", l + 1, ".mlp.gate.e_score_correction_bias"),
                   StDType::kF32,
                   {16},
                   {reinterpret_cast<const char*>(layer.correction_bias.data()), 64}});
    dst.push_back({absl::StrCat("model.layers.", l + 1, ".mlp.experts.0.up_proj.weight"),
                   StDType::kF32,
                   {8, 64},
                   other_bytes});
  }
  if (sharded) {
    std::string index = R"({"metadata":{"total_size":1},"weight_map":{)";
    bool first = true;
    for (int s = 0; s < 2; ++s) {
      const std::string file = absl::StrCat("model-0000", s + 1, "-of-00002.safetensors");
      EXPECT_TRUE(WriteSafetensors(tmp.File(file), shard[s], {}).ok());
      for (const auto& t : shard[s]) {
        index += (first ? "" : ",") + std::string("\"") + t.name + "\":\"" + file + "\"";
        first = false;
      }
    }
    WriteText(tmp.File("model.safetensors.index.json"), index + "}}");
  } else {
    EXPECT_TRUE(WriteSafetensors(tmp.File("model.safetensors"), shard[0], {}).ok());
  }
  return ck;
}

void ExpectSameModel(const RouterModel& got, const RouterModel& want) {
  EXPECT_EQ(got.spec.family, "deepseek_v3");
  EXPECT_EQ(got.spec.hidden, want.spec.hidden);
  EXPECT_EQ(got.spec.experts, want.spec.experts);
  EXPECT_EQ(got.spec.top_k, want.spec.top_k);
  EXPECT_EQ(got.spec.n_group, want.spec.n_group);
  EXPECT_EQ(got.spec.topk_group, want.spec.topk_group);
  EXPECT_FLOAT_EQ(got.spec.scaling_factor, 1.5f);
  ASSERT_EQ(got.num_layers(), 3);
  for (int l = 0; l < 3; ++l) {
    EXPECT_EQ(got.layers[l].source_layer, l + 1);
    EXPECT_EQ(got.layers[l].weight, want.layers[l].weight);
    EXPECT_EQ(got.layers[l].correction_bias, want.layers[l].correction_bias);
  }
}

TEST(Checkpoint, LoadsIndexWithTwoShards) {
  TempDir tmp;
  auto ck = WriteDeepSeekCheckpoint(tmp, /*sharded=*/true);
  auto model = LoadCheckpointDir(tmp.path(), "ck");
  ASSERT_TRUE(model.ok()) << model.status();
  ExpectSameModel(*model, ck.truth);
}

TEST(Checkpoint, LoadsSingleFile) {
  TempDir tmp;
  auto ck = WriteDeepSeekCheckpoint(tmp, /*sharded=*/false);
  auto model = LoadModelSource(tmp.path(), "ck");
  ASSERT_TRUE(model.ok()) << model.status();
  ExpectSameModel(*model, ck.truth);
}

TEST(Checkpoint, ErrorsNameTheFileAndTensor) {
  TempDir tmp;
  WriteDeepSeekCheckpoint(tmp, /*sharded=*/true);
  // Config disagrees with the tensors: hidden 128.
  WriteText(tmp.File("config.json"),
            R"({"model_type":"deepseek_v3","hidden_size":128,"n_routed_experts":16,)"
            R"("num_experts_per_tok":4,"n_group":4,"topk_group":2})");
  ExpectError(
      LoadCheckpointDir(tmp.path(), "ck").status(),
      {"model-00001-of-00002.safetensors", "model.layers.1.mlp.gate.weight", "wrong shape"});
  // A family we do not know.
  WriteText(tmp.File("config.json"), R"({"model_type":"llama"})");
  ExpectError(LoadCheckpointDir(tmp.path(), "ck").status(), {"model_type 'llama'"});
  // Broken config.
  WriteText(tmp.File("config.json"), "{");
  ExpectError(LoadCheckpointDir(tmp.path(), "ck").status(), {"config.json", "invalid JSON"});
  WriteText(tmp.File("config.json"), " [1, 2]");
  ExpectError(LoadCheckpointDir(tmp.path(), "ck").status(),
              {"config.json", "invalid JSON: expected an object ({...}), found '['"});
  // Sizes that are not whole numbers an int holds are named, not cast.
  for (const char* bad : {"1e20", "-3", "16.5"}) {
    WriteText(tmp.File("config.json"),
              absl::StrCat(R"({"model_type":"deepseek_v3","hidden_size":64,"n_routed_experts":)",
                           bad, R"(,"num_experts_per_tok":4,"n_group":4,"topk_group":2})"));
    ExpectError(LoadCheckpointDir(tmp.path(), "ck").status(),
                {"config.json", "'n_routed_experts'", "not a whole number"});
  }
  // Missing correction bias in the shard: rewrite the index to drop it.
  WriteText(tmp.File("config.json"),
            R"({"model_type":"deepseek_v3","hidden_size":64,"n_routed_experts":16,)"
            R"("num_experts_per_tok":4,"n_group":4,"topk_group":2})");
  WriteText(
      tmp.File("model.safetensors.index.json"),
      R"({"weight_map":{"model.layers.1.mlp.gate.weight":"model-00001-of-00002.safetensors"}})");
  ExpectError(LoadCheckpointDir(tmp.path(), "ck").status(),
              {"missing tensor 'model.layers.1.mlp.gate.e_score_correction_bias'"});
  // A layer number beyond int (std::stoi threw here, ending the process).
  WriteText(tmp.File("model.safetensors.index.json"),
            R"({"weight_map":{"model.layers.99999999999.mlp.gate.weight":)"
            R"("model-00001-of-00002.safetensors"}})");
  ExpectError(LoadCheckpointDir(tmp.path(), "ck").status(),
              {"model.layers.99999999999.mlp.gate.weight", "layer number beyond"});
  // No routers at all.
  WriteText(tmp.File("model.safetensors.index.json"), R"({"weight_map":{}})");
  ExpectError(LoadCheckpointDir(tmp.path(), "ck").status(),
              {"missing tensor 'model.layers.0.mlp.gate.weight'"});
  // A shard that is truncated.
  WriteText(
      tmp.File("model.safetensors.index.json"),
      R"({"weight_map":{"model.layers.1.mlp.gate.weight":"model-00001-of-00002.safetensors"}})");
  WriteText(tmp.File("model-00001-of-00002.safetensors"), "1234");
  ExpectError(LoadCheckpointDir(tmp.path(), "ck").status(),
              {"model-00001-of-00002.safetensors", "truncated"});
}

TEST(ExtractTool, WritesARouterFileThatLoadsToTheSameModel) {
  TempDir tmp;
  auto ck = WriteDeepSeekCheckpoint(tmp, /*sharded=*/true);
  const std::string out = tmp.File("router.safetensors");
  const std::string cmd = std::string(MOE_EXTRACT_BINARY) + " " + tmp.path() + " " + out + " > " +
                          tmp.File("log") + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  auto model = LoadModelSource(out, "ck");
  ASSERT_TRUE(model.ok()) << model.status();
  ExpectSameModel(*model, ck.truth);
  // Bad use exits non-zero with a message.
  EXPECT_NE(
      std::system(
          (std::string(MOE_EXTRACT_BINARY) + " /nonexistent " + out + " 2>/dev/null").c_str()),
      0);
  EXPECT_NE(std::system((std::string(MOE_EXTRACT_BINARY) + " 2>/dev/null").c_str()), 0);
}

TEST(DemoModels, HaveRealShapesAndAreDeterministic) {
  for (const char* name :
       {"demo-deepseek-v3", "demo-qwen3-30b", "demo-mixtral", "demo-gpt-oss-20b"}) {
    auto a = MakeDemoModel(name, 1);
    ASSERT_TRUE(a.ok()) << a.status();
    auto b = MakeDemoModel(name, 1);
    EXPECT_EQ(a->layers[0].weight, b->layers[0].weight);
    EXPECT_TRUE(ValidateModel(*a, name).ok());
  }
  auto ds = MakeDemoModel("demo-deepseek-v3");
  ASSERT_TRUE(ds.ok());
  EXPECT_EQ(ds->num_layers(), 58);
  EXPECT_EQ(ds->spec.hidden, 7168);
  EXPECT_EQ(ds->spec.experts, 256);
  EXPECT_EQ(ds->layers[0].weight.size(), 256u * 7168 * 2);
  EXPECT_EQ(MakeDemoModel("demo-nope").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace moe
