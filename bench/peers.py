#!/usr/bin/env python3
"""peers.py: the fused router (through libmoe_kernels.so's C ABI, via ctypes) against what
a user could assemble from PyTorch and Triton, in one run on one GPU.

Per shape, per call, weights rotated over L layers so they come from HBM:
  fused          moe_route, L launches captured in one CUDA graph
  fused+pdl      the same with MOE_ROUTE_PDL (moe_route_ex): each launch may start during the last
  torch eager    the family's routing written in torch (F.linear in fp32, scoring, top-k)
  torch.compile  the same function, mode="max-autotune-no-cudagraphs", replayed in a graph
  triton dk      a Triton Decompose-K GEMM (split-K partials + sum) + torch routing, in a graph
Median of many graph replays (CUDA events). Prints a table; --json writes the numbers.
Agreement: the fraction of tokens whose expert sets equal the torch eager ones.

With --gemm, the skinny GEMMs of router_bench (C[M,N] = A[M,K]·B[N,K]^T, bf16, M = N in
16..128, K in 8192..131072) the same way: moe_gemm (fp32 C) against torch eager (a @ b.T,
bf16 out: cuBLAS), torch.compile of it (max-autotune-no-cudagraphs) and the Triton
Decompose-K GEMM; `fused+pdl` is moe_gemm_ex with MOE_GEMM_PDL (B, rotated with A, in the
weights' role); `rel_err` is moe_gemm's relative L2 error against torch in fp64.

  python3 bench/peers.py --lib build/kernels/libmoe_kernels.so [--quick] [--json out.json]
      [--families deepseek_v3,mixtral] [--tokens 1,16] [--gemm [--mn 64,128]]
      [--compile_budget_s 240]
"""

import argparse
import ctypes
import json
import time
import types

import torch
import torch.nn.functional as F
import triton
import triton.language as tl


class Spec(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int) for n in ("hidden", "experts", "top_k", "scoring", "order",
                                              "has_router_bias", "has_correction_bias", "n_group",
                                              "topk_group", "group_score_topk", "renormalize")] + [
        ("scaling_factor", ctypes.c_float)]


def load_lib(path):
    lib = ctypes.CDLL(path)
    lib.moe_router_preset.argtypes = [ctypes.c_char_p, ctypes.POINTER(Spec)]
    lib.moe_route_workspace_bytes.restype = ctypes.c_size_t
    lib.moe_route_workspace_bytes.argtypes = [ctypes.POINTER(Spec), ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.moe_route.argtypes = [ctypes.POINTER(Spec), ctypes.c_int, ctypes.c_int, ctypes.c_int] + \
        [ctypes.c_void_p] * 7 + [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.moe_route_ex.argtypes = lib.moe_route.argtypes + [ctypes.c_uint]
    lib.moe_gemm_workspace_bytes.restype = ctypes.c_size_t
    lib.moe_gemm_workspace_bytes.argtypes = [ctypes.c_int] * 4
    lib.moe_gemm.argtypes = [ctypes.c_int] * 4 + [ctypes.c_void_p] * 4 + [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.moe_gemm_ex.argtypes = lib.moe_gemm.argtypes + [ctypes.c_uint]
    lib.moe_last_error.restype = ctypes.c_char_p
    lib.moe_route_config.restype = ctypes.c_char_p
    lib.moe_route_config.argtypes = lib.moe_route_workspace_bytes.argtypes
    lib.moe_gemm_config.restype = ctypes.c_char_p
    lib.moe_gemm_config.argtypes = [ctypes.c_int] * 4
    return lib


def torch_route(spec, x, w, rbias, cbias):
    """The family's routing as a user would write it in torch (HF-style, fp32 logits)."""
    return torch_route_from_logits(spec, F.linear(x.float(), w.float()), rbias, cbias)


@triton.jit
def dk_partials(x_ptr, w_ptr, out_ptr, M, N, K, K_PER_SPLIT: tl.constexpr, BLOCK_M: tl.constexpr,
                BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Decompose-K: program (n, s) computes x[:, ks] @ w[n-block, ks]^T for K chunk s."""
    pid_n, pid_s = tl.program_id(0), tl.program_id(1)
    rm = tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K_PER_SPLIT, BLOCK_K):
        rk = pid_s * K_PER_SPLIT + k0 + tl.arange(0, BLOCK_K)
        a = tl.load(x_ptr + rm[:, None] * K + rk[None, :], mask=(rm[:, None] < M) & (rk[None, :] < K), other=0.0)
        b = tl.load(w_ptr + rn[:, None] * K + rk[None, :], mask=(rn[:, None] < N) & (rk[None, :] < K), other=0.0)
        acc += tl.dot(a, tl.trans(b))
    out = out_ptr + pid_s * M * N + rm[:, None] * N + rn[None, :]
    tl.store(out, acc, mask=(rm[:, None] < M) & (rn[None, :] < N))


def triton_logits(x, w, splits, partials):
    M, K = x.shape
    N = w.shape[0]
    block_m = max(16, triton.next_power_of_2(M))
    dk_partials[(triton.cdiv(N, 64), splits)](x, w, partials, M, N, K, K // splits, block_m, 64, 64)
    return partials[:splits].sum(0)


def triton_splits(K, N):
    """The Triton DK GEMM's split count: about one program per SM over the N blocks of 64,
    K chunks of at least 256 that 64-wide K blocks divide."""
    splits = max(1, min(K // 256, 132 // max(1, (N + 63) // 64)))
    while K % (splits * 64):
        splits -= 1
    return splits


def time_compiled(fn, call, layers, args, compile_start):
    """torch.compile(fn, mode="max-autotune-no-cudagraphs"), called as call(compiled, layer)
    and timed in a CUDA graph; None once the compile budget is spent."""
    if time.time() - compile_start >= args.compile_budget_s:
        return None
    torch._dynamo.reset()  # a fresh compile per shape, not a recompile (capped at 8)
    compiled = torch.compile(fn, mode="max-autotune-no-cudagraphs", dynamic=False)
    return time_graph(lambda l: call(compiled, l), layers, args.replays)


def time_graph(fn, layers, replays):
    """Median µs per call of fn(layer) for every layer, captured in one CUDA graph."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for l in range(min(layers, 3)):
            fn(l)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for l in range(layers):
            fn(l)
    for _ in range(3):
        g.replay()
    times = []
    for _ in range(replays):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1000 / layers)
    return sorted(times)[len(times) // 2]


def time_eager(fn, layers, replays):
    for l in range(3):
        fn(l)
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for l in range(layers):
            fn(l)
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1000 / layers)
    return sorted(times)[len(times) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--quick", action="store_true", help="4 families, tokens 1 and 16")
    ap.add_argument("--replays", type=int, default=20)
    ap.add_argument("--compile_budget_s", type=float, default=240, help="stop compiling after this")
    ap.add_argument("--families", help="comma-separated subset of the routing families")
    ap.add_argument("--tokens", help="comma-separated token counts (default 1,4,16,64,128)")
    ap.add_argument("--gemm", action="store_true", help="the skinny GEMMs instead of routing")
    ap.add_argument("--mn", help="with --gemm: the M = N sizes, comma-separated, measured in this order "
                    "(default 16,32,64,128; largest first where the compile budget may run out)")
    ap.add_argument("--json")
    args = ap.parse_args()
    lib = load_lib(args.lib)
    dev = torch.device("cuda")
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    families = ["deepseek_v3", "qwen3_30b", "mixtral", "gpt_oss_20b"] if args.quick else [
        "deepseek_v3", "kimi_k2", "glm4_moe", "qwen3_235b", "qwen3_30b", "mixtral", "gpt_oss_120b",
        "gpt_oss_20b", "llama4_maverick", "llama4_scout", "deepseek_v2_lite"]
    token_list = [1, 16] if args.quick else [1, 4, 16, 64, 128]
    if args.families:
        families = args.families.split(",")
    if args.tokens:
        token_list = [int(t) for t in args.tokens.split(",")]
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, triton {triton.__version__}")
    if args.gemm:
        rows = gemm_rows(lib, args, dev, l2)
        if args.json:
            json.dump(rows, open(args.json, "w"), indent=1)
        return
    rows, compile_start = [], time.time()
    for family in families:
        cspec = Spec()
        assert lib.moe_router_preset(family.encode(), ctypes.byref(cspec)) == 0
        # torch.compile traces plain attributes, not ctypes fields.
        spec = types.SimpleNamespace(**{name: getattr(cspec, name) for name, _ in Spec._fields_})
        E, K = spec.experts, spec.hidden
        layers = max(16, min(512, (3 * l2) // (E * K * 2) + 1))
        W = (torch.randn(layers, E, K, device=dev) / K ** 0.5).to(torch.bfloat16)
        rbias = torch.randn(E, device=dev) * 0.1
        cbias = torch.randn(E, device=dev) * 0.05
        for T in token_list:
            x = torch.randn(T, K, device=dev).to(torch.bfloat16)
            ids = torch.empty(T, spec.top_k, dtype=torch.int32, device=dev)
            wts = torch.empty(T, spec.top_k, dtype=torch.float32, device=dev)
            ws_bytes = lib.moe_route_workspace_bytes(ctypes.byref(cspec), T, 0, 0)
            ws = torch.zeros(ws_bytes, dtype=torch.uint8, device=dev)

            def fused(l, flags=0):
                rc = lib.moe_route_ex(ctypes.byref(cspec), T, 0, 0, x.data_ptr(), W[l].data_ptr(),
                                      rbias.data_ptr(), cbias.data_ptr(), ids.data_ptr(), wts.data_ptr(),
                                      None, ws.data_ptr(), ws_bytes, torch.cuda.current_stream().cuda_stream,
                                      flags)
                if rc != 0:
                    raise RuntimeError(lib.moe_last_error().decode())

            # The kernel the C ABI runs (the heuristic's config; router_bench's are tuned).
            row = {"shape": f"{family} t={T}", "layers": layers,
                   "config": lib.moe_route_config(ctypes.byref(cspec), T, 0, 0).decode()}
            row["fused_us"] = time_graph(fused, layers, args.replays)
            # MOE_ROUTE_PDL: each launch's weights stream while the previous one finishes.
            row["fused_pdl_us"] = time_graph(lambda l: fused(l, 1), layers, args.replays)
            row["eager_us"] = time_eager(lambda l: torch_route(spec, x, W[l], rbias, cbias), layers, args.replays)
            # Agreement of the fused expert sets with torch's (ties aside).
            fused(0)
            ref_ids, _ = torch_route(spec, x, W[0], rbias, cbias)
            same = (ids.long().sort(-1).values == ref_ids.sort(-1).values).all(-1).float().mean().item()
            row["agree"] = same
            splits = triton_splits(K, E)
            partials = torch.empty(splits, T, E, device=dev)
            row["triton_us"] = time_graph(
                lambda l: torch_route_from_logits(spec, triton_logits(x, W[l], splits, partials), rbias, cbias),
                layers, args.replays)
            row["compile_us"] = time_compiled(
                lambda xx, ww: torch_route(spec, xx, ww, rbias, cbias), lambda f, l: f(x, W[l]),
                layers, args, compile_start)
            rows.append(row)
            print(f"{row['shape']:24s} fused {row['fused_us']:7.2f}  fused+pdl {row['fused_pdl_us']:7.2f}  "
                  f"eager {row['eager_us']:7.2f}  "
                  f"compile {row['compile_us'] if row['compile_us'] is None else round(row['compile_us'], 2)!s:>7}  "
                  f"triton {row['triton_us']:7.2f}  agree {row['agree']:.3f}  {row['config']}", flush=True)
    if args.json:
        json.dump(rows, open(args.json, "w"), indent=1)


def gemm_rows(lib, args, dev, l2):
    """The skinny GEMMs: moe_gemm vs torch eager, torch.compile and the Triton DK GEMM."""
    rows, compile_start = [], time.time()
    for mn in [int(v) for v in args.mn.split(",")] if args.mn else [16, 32, 64, 128]:
        for K in ([131072] if args.quick else [8192, 32768, 65536, 131072]):
            mat = mn * K * 2
            layers = max(4, min(256, (3 * l2) // (2 * mat) + 1))
            A = torch.randn(layers, mn, K, device=dev).to(torch.bfloat16)
            B = torch.randn(layers, mn, K, device=dev).to(torch.bfloat16)
            C = torch.empty(mn, mn, device=dev)
            ws_bytes = lib.moe_gemm_workspace_bytes(mn, mn, K, 0)
            ws = torch.zeros(max(ws_bytes, 1), dtype=torch.uint8, device=dev)

            def fused(l, flags=0):
                rc = lib.moe_gemm_ex(mn, mn, K, 0, A[l].data_ptr(), B[l].data_ptr(), None, C.data_ptr(),
                                     ws.data_ptr(), ws_bytes, torch.cuda.current_stream().cuda_stream,
                                     flags)
                if rc != 0:
                    raise RuntimeError(lib.moe_last_error().decode())

            row = {"shape": f"gemm {mn}x{mn}x{K}", "layers": layers,
                   "config": lib.moe_gemm_config(mn, mn, K, 0).decode()}
            row["fused_us"] = time_graph(fused, layers, args.replays)
            row["fused_pdl_us"] = time_graph(lambda l: fused(l, 1), layers, args.replays)  # MOE_GEMM_PDL
            row["eager_us"] = time_graph(lambda l: A[l] @ B[l].t(), layers, args.replays)
            splits = triton_splits(K, mn)
            partials = torch.empty(splits, mn, mn, device=dev)
            row["triton_us"] = time_graph(lambda l: triton_logits(A[l], B[l], splits, partials), layers,
                                          args.replays)
            row["compile_us"] = time_compiled(lambda a, b: a @ b.t(), lambda f, l: f(A[l], B[l]),
                                              layers, args, compile_start)
            fused(0)
            ref = A[0].double() @ B[0].double().t()
            row["rel_err"] = ((C.double() - ref).norm() / ref.norm()).item()
            row["gbs_fused"] = (2 * mat + 4 * mn * mn) / (row["fused_us"] * 1e-6) / 1e9
            rows.append(row)
            print(f"{row['shape']:24s} fused {row['fused_us']:7.2f}  fused+pdl {row['fused_pdl_us']:7.2f}  "
                  f"eager {row['eager_us']:7.2f}  "
                  f"compile {row['compile_us'] if row['compile_us'] is None else round(row['compile_us'], 2)!s:>7}  "
                  f"triton {row['triton_us']:7.2f}  fused GB/s {row['gbs_fused']:6.0f}  "
                  f"rel_err {row['rel_err']:.1e}  {row['config']}", flush=True)
            del A, B
    return rows


def torch_route_from_logits(spec, logits, rbias, cbias):
    """The routing epilogue on fp32 logits [tokens, experts]; spec: a plain namespace."""
    if spec.has_router_bias:
        logits = logits + rbias
    k = spec.top_k
    if spec.order == 0:
        scores = logits.softmax(-1) if spec.scoring == 0 else logits.sigmoid() if spec.scoring == 1 else logits
        sel = scores + cbias if spec.has_correction_bias else scores
        if spec.n_group > 1:
            g = sel.view(logits.shape[0], spec.n_group, -1)
            keep = g.topk(spec.group_score_topk, dim=-1).values.sum(-1).topk(spec.topk_group, dim=-1).indices
            mask = torch.zeros(g.shape[:2], device=logits.device).scatter_(1, keep, 1.0)
            sel = sel.masked_fill(mask.repeat_interleave(g.shape[-1], dim=1) == 0, float("-inf"))
        ids = sel.topk(k, dim=-1).indices
        weights = scores.gather(1, ids)
    else:
        sel = logits + cbias if spec.has_correction_bias else logits
        ids = sel.topk(k, dim=-1).indices
        chosen = logits.gather(1, ids)
        weights = chosen.softmax(-1) if spec.scoring == 0 else chosen.sigmoid() if spec.scoring == 1 else chosen
    if spec.renormalize:
        weights = weights / weights.sum(-1, keepdim=True)
    return ids, weights * spec.scaling_factor


if __name__ == "__main__":
    main()
