#!/usr/bin/env bash
# Session 71, call 1: no kernel changed. The C ABI's new moe_route_config / moe_gemm_config
# on a GPU (GpuCApi.*, and test_c_abi.py's device branch through ctypes), and server_test on
# the CUDA backend after the server's changes (a busy gRPC port is an error, --reuse_port,
# --help), then the config each family's decode and prefill calls get through the C ABI.
# Bundle: gpu_router_test, server_test, moe-router-server, moe-router (libmoe_kernels.so comes in lib/),
# cublaslt_workspace_probe (built by hand, see its source),
# device_steps.sh and this script.
set -u
# shellcheck source=bench/device_steps.sh
source "$(dirname "$0")/device_steps.sh" && device_start
gpu_tests grt_capi 120 "GpuCApi.*"
s=$SECONDS
echo "== test_c_abi.py through ctypes on the GPU"
(cd ../tests/python && MOE_KERNELS_LIB=$OLDPWD/lib/libmoe_kernels.so MOE_PROJECT_VERSION=0.1.0 \
  timeout 60 python3 -m unittest -v test_c_abi) >"$OUT/c_abi_python.txt" 2>&1
echo "rc=$? took $((SECONDS - s)) s"
grep -E "\.\.\. |^Ran|^OK|FAIL" "$OUT/c_abi_python.txt" | head -12
echo "== moe_route_config per family (heuristic configs on this GPU)"
MOE_KERNELS_LIB=$PWD/lib/libmoe_kernels.so timeout 30 python3 - <<'PY' | tee "$OUT/route_configs.txt"
import ctypes, os
lib = ctypes.CDLL(os.environ["MOE_KERNELS_LIB"])
class Spec(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int) for n in ("hidden", "experts", "top_k", "scoring", "order",
        "has_router_bias", "has_correction_bias", "n_group", "topk_group", "group_score_topk",
        "renormalize")] + [("scaling_factor", ctypes.c_float)]
lib.moe_route_config.restype = ctypes.c_char_p
lib.moe_gemm_config.restype = ctypes.c_char_p
for fam in ("deepseek_v3", "kimi_k2", "glm4_moe", "qwen3_235b", "qwen3_30b", "mixtral",
            "gpt_oss_120b", "gpt_oss_20b", "llama4_maverick", "llama4_scout", "deepseek_v2_lite"):
    spec = Spec()
    assert lib.moe_router_preset(fam.encode(), ctypes.byref(spec)) == 0
    print(fam, " | ".join(f"t={t}: {lib.moe_route_config(ctypes.byref(spec), t, 0, 0).decode()}"
                          for t in (1, 16, 64, 128, 256)))
for m, n, k in ((16, 16, 131072), (64, 64, 131072), (128, 128, 65536), (300, 700, 2048)):
    print(f"gemm {m}x{n}x{k}: {lib.moe_gemm_config(m, n, k, 0).decode()}")
PY
echo "== cuBLASLt's workspace asks (bench/calls/s71_cublaslt_workspace_probe.cc; plans hold 32 MiB)"
timeout 30 ./cublaslt_workspace_probe 2>&1 | tee "$OUT/cublaslt_workspace.txt"
server_tests "$(($(seconds_left) - 10))"
echo "done at $SECONDS s"
