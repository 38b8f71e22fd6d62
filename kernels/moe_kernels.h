/* moe_kernels: a plain C ABI to the fused Decompose-K router and the general skinny
 * Decompose-K GEMM, for ctypes and any other language (libmoe_kernels.so).
 *
 * All pointers are device pointers. The operands (moe_route's hidden and weight, moe_gemm's
 * a and b) and the workspaces must be 16-byte aligned, as cudaMalloc's are; others get
 * MOE_INVALID_ARGUMENT before the device is touched. Every call is asynchronous on `stream` and
 * graph-capturable. A workspace must be zero-filled once after allocation (cudaMemset);
 * the kernels leave it ready for the next call. One workspace per concurrent call.
 * Calls size their launch (and the workspace they ask for) by the calling thread's current
 * device (cudaSetDevice): call with the device of `stream` and the pointers current.
 * Functions return MOE_OK or an error code; moe_last_error() gives this thread's message.
 */
#ifndef MOE_KERNELS_H_
#define MOE_KERNELS_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { MOE_OK = 0, MOE_INVALID_ARGUMENT = 1, MOE_CUDA_ERROR = 2 };
enum { MOE_BF16 = 0, MOE_FP16 = 1, MOE_FP32 = 2 };
enum { MOE_SOFTMAX = 0, MOE_SIGMOID = 1, MOE_NO_SCORING = 2 };
enum { MOE_SCORE_THEN_TOPK = 0, MOE_TOPK_THEN_SCORE = 1 };

typedef struct moe_router_spec {
  int hidden, experts, top_k;
  int scoring; /* MOE_SOFTMAX, MOE_SIGMOID, MOE_NO_SCORING */
  int order;   /* MOE_SCORE_THEN_TOPK, MOE_TOPK_THEN_SCORE */
  int has_router_bias, has_correction_bias;
  int n_group, topk_group, group_score_topk;
  int renormalize;
  float scaling_factor;
} moe_router_spec;

/* Fills `spec` with a family preset ("deepseek_v3", "qwen3_30b", "mixtral", ...). */
int moe_router_preset(const char* family, moe_router_spec* spec);

/* Past 128 tokens, routers of 256+ experts whose tiles cannot all be resident (DeepSeek-V3
 * from 193 tokens, Kimi K2 from 129) route in two launches: cuBLASLt's GEMM (loaded with
 * dlopen on first use; the staged-tile GEMM where it cannot be loaded), then the routing
 * epilogue kernel. moe_route_workspace_bytes then counts 32 MiB for cuBLASLt, which lets it
 * choose from all its algorithms; a smaller workspace (at least the logits, tokens x experts
 * floats rounded up to 256 bytes) gets the best algorithm that fits it (the H100's asked
 * 0.4-1.2 MiB at 129-256 tokens of DeepSeek-V3 and Kimi K2). A thread's first such call may
 * be inside a CUDA graph capture. */
size_t moe_route_workspace_bytes(const moe_router_spec* spec, int tokens, int hidden_dtype,
                                 int weight_dtype);

/* hidden [tokens, hidden], weight [experts, hidden]; ids int32 and weights float32
 * [tokens, top_k]; logits float32 [tokens, experts] or NULL; biases NULL when absent. */
int moe_route(const moe_router_spec* spec, int tokens, int hidden_dtype, int weight_dtype,
              const void* hidden, const void* weight, const float* router_bias,
              const float* correction_bias, int32_t* expert_ids, float* expert_weights,
              float* logits, void* workspace, size_t workspace_bytes, void* stream);

/* Launch flags of moe_route_ex. MOE_ROUTE_PDL: launch with Programmatic Dependent Launch.
 * The kernel's blocks may then start while the previous kernel on `stream` is finishing
 * and load their weights and biases before they wait for it (griddepcontrol.wait);
 * `hidden`, the outputs and the workspace are touched only after the wait. So `weight`
 * and the biases must not be written by the kernel just before on the stream (they are a
 * model's constants); the hidden states may be. Saves 0.9-3.0 us a call on the H200 when
 * the previous kernel allows its dependents to launch early (53 of the 55 shapes of
 * bench/RESULTS.md session 34; the other two were fixed after that run). */
enum { MOE_ROUTE_PDL = 1u };

/* moe_route with launch flags (0: exactly moe_route); unknown bits: MOE_INVALID_ARGUMENT. */
int moe_route_ex(const moe_router_spec* spec, int tokens, int hidden_dtype, int weight_dtype,
                 const void* hidden, const void* weight, const float* router_bias,
                 const float* correction_bias, int32_t* expert_ids, float* expert_weights,
                 float* logits, void* workspace, size_t workspace_bytes, void* stream,
                 unsigned flags);

size_t moe_gemm_workspace_bytes(int m, int n, int k, int dtype);

/* C[m, n] = A[m, k] · B[n, k]^T (+ bias[n]), C float32 row-major; bias may be NULL.
 * m in [1, 1024], n in [1, 4096], k a multiple of 8 in [8, 131072]. Built for skinny
 * shapes (m or n up to ~128-256, long k), which run the Decompose-K kernels. The shapes
 * where cuBLAS's own tiling measured faster (one of m, n at 512 or more and the other at 16
 * or more; both at 128 or more, one at 256 or more; fewer than 16 against 2048 or more, or
 * against 1024 or more rows holding 32 MiB or more) are one cublasLtMatmul with the bias in
 * its epilogue, on the same stream, graph-capturable, the same bits every call; their
 * workspace is 32 MiB + 256 bytes (moe_gemm_workspace_bytes) and needs no zeroing. README,
 * bench/RESULTS.md session 56. */
int moe_gemm(int m, int n, int k, int dtype, const void* a, const void* b, const float* bias,
             float* c, void* workspace, size_t workspace_bytes, void* stream);

/* Launch flags of moe_gemm_ex. MOE_GEMM_PDL: launch with Programmatic Dependent Launch, as
 * MOE_ROUTE_PDL does for moe_route, with `b` in the weights' role: the kernel's blocks may
 * start while the previous kernel on `stream` is finishing and load `b` before they wait
 * for it (griddepcontrol.wait), so `b` must not be written by that kernel; `a`, the bias,
 * the workspace and `c` are touched only after the wait. Saves 0.3-1.3 us a call on the
 * H200 where the previous kernel allows its dependents to launch early, as back-to-back
 * PDL GEMMs do (bench/RESULTS.md session 39), ~1.1 us on the H100 at 128 x 128 x 65536
 * (session 54). The shapes moe_gemm hands to cuBLAS launch plainly with or without it. */
enum { MOE_GEMM_PDL = 1u };

/* moe_gemm with launch flags (0: exactly moe_gemm); unknown bits: MOE_INVALID_ARGUMENT. */
int moe_gemm_ex(int m, int n, int k, int dtype, const void* a, const void* b, const float* bias,
                float* c, void* workspace, size_t workspace_bytes, void* stream, unsigned flags);

/* The kernel moe_route / moe_gemm would launch for a problem on the current device, in words:
 * "mma nt=1 S=8 polled coop ded 1cta" (one launch: mainloop, 8-token tiles a CTA, K splits,
 * the reduction and launch options), "cublasLt gemm + epilogue kernel" (routing in two
 * launches), "gemm tile=64 S=8 tma", "cublasLt gemm". These are the config heuristic's
 * choices: the C ABI does not autotune (moe-router-server does, and reports its choices in
 * ModelInfo). NULL for a problem the launch would refuse, or without a usable CUDA device,
 * with moe_last_error() saying why.
 * The string stays valid until this thread's next call of the same function. */
const char* moe_route_config(const moe_router_spec* spec, int tokens, int hidden_dtype,
                             int weight_dtype);
const char* moe_gemm_config(int m, int n, int k, int dtype);

const char* moe_last_error(void);

/* This library's version line, "moe_kernels 0.1.0 (commit 0afe62c1d2e3, Release, CUDA
 * 90a-real)": the project's version, the commit it was built from, the build type and the
 * kernels' CUDA architectures. A static string. */
const char* moe_version(void);

#ifdef __cplusplus
}
#endif

#endif /* MOE_KERNELS_H_ */
