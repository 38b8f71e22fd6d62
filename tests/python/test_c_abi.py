"""libmoe_kernels.so from Python (ctypes), as inference stacks load it, without a GPU: the
library and its CUDA dependencies (cuBLASLt among them, for the GEMM's large shapes) load,
and the C ABI's host-side answers and checks hold before any device is touched. The device
paths are gpu_router_test's (GpuCApi)."""
import ctypes
import os
import re
import unittest

MOE_OK, MOE_INVALID_ARGUMENT = 0, 1
MOE_BF16, MOE_FP32 = 0, 2
CUBLASLT_WORKSPACE = (32 << 20) + 256


class RouterSpec(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in (
        "hidden", "experts", "top_k", "scoring", "order", "has_router_bias",
        "has_correction_bias", "n_group", "topk_group", "group_score_topk", "renormalize")] + [
        ("scaling_factor", ctypes.c_float)]


def load():
    lib = ctypes.CDLL(os.environ["MOE_KERNELS_LIB"])
    lib.moe_gemm_workspace_bytes.restype = ctypes.c_size_t
    lib.moe_gemm_workspace_bytes.argtypes = [ctypes.c_int] * 4
    lib.moe_gemm.argtypes = [ctypes.c_int] * 4 + [ctypes.c_void_p] * 4 + [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.moe_last_error.restype = ctypes.c_char_p
    lib.moe_version.restype = ctypes.c_char_p
    lib.moe_router_preset.argtypes = [ctypes.c_char_p, ctypes.POINTER(RouterSpec)]
    lib.moe_route_workspace_bytes.restype = ctypes.c_size_t
    lib.moe_route_workspace_bytes.argtypes = [ctypes.POINTER(RouterSpec)] + [ctypes.c_int] * 3
    lib.moe_route.argtypes = [ctypes.POINTER(RouterSpec)] + [ctypes.c_int] * 3 + [
        ctypes.c_void_p] * 8 + [ctypes.c_size_t, ctypes.c_void_p]
    lib.moe_route_config.restype = ctypes.c_char_p
    lib.moe_route_config.argtypes = [ctypes.POINTER(RouterSpec)] + [ctypes.c_int] * 3
    lib.moe_gemm_config.restype = ctypes.c_char_p
    lib.moe_gemm_config.argtypes = [ctypes.c_int] * 4
    return lib


class CAbi(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lib = load()

    def last_error(self):
        return self.lib.moe_last_error().decode()

    def test_version(self):
        line = self.lib.moe_version().decode()
        match = re.fullmatch(
            r"moe_kernels (\S+) \(commit ([0-9a-f]{12}(-dirty)?|unknown), \w+, CUDA [0-9a-z,-]+\)",
            line)
        self.assertIsNotNone(match, line)
        self.assertEqual(match.group(1), os.environ["MOE_PROJECT_VERSION"])
        self.assertEqual(self.lib.moe_version().decode(), line)  # one static string

    def test_preset(self):
        spec = RouterSpec()
        self.assertEqual(self.lib.moe_router_preset(b"deepseek_v3", ctypes.byref(spec)), MOE_OK)
        self.assertEqual((spec.hidden, spec.experts, spec.top_k), (7168, 256, 8))
        self.assertEqual(self.lib.moe_router_preset(b"no_such_family", ctypes.byref(spec)),
                         MOE_INVALID_ARGUMENT)
        self.assertIn("no_such_family", self.last_error())

    def test_route_refuses_problems_out_of_range_before_the_device(self):
        # Host memory stands in for device pointers: every call below is refused first.
        buf = ctypes.create_string_buffer(1 << 16)
        p = (ctypes.addressof(buf) + 15) // 16 * 16
        cases = (({}, 0, "tokens: 0 is outside"),  # had died of SIGFPE in the heuristic
                 ({}, -5, "tokens: -5 is outside"),
                 ({}, 257, "tokens: 257 is outside"),
                 ({"experts": 0}, 1, "experts: 0 is outside"),
                 ({"hidden": 12}, 1, "hidden: 12 is not a multiple of 8"),
                 ({"top_k": 0}, 4, "top_k: 0 is outside"),
                 ({"n_group": 0}, 1, "n_group: 0 does not divide"),
                 ({"n_group": 7}, 16, "n_group: 7 does not divide"),
                 ({"topk_group": 9}, 1, "topk_group: 9 is outside"),
                 ({"scaling_factor": float("nan")}, 1, "scaling_factor: nan"))
        for bend, tokens, message in cases:
            spec = RouterSpec()
            self.assertEqual(self.lib.moe_router_preset(b"deepseek_v3", ctypes.byref(spec)), MOE_OK)
            for field, value in bend.items():
                setattr(spec, field, value)
            self.assertEqual(
                self.lib.moe_route_workspace_bytes(ctypes.byref(spec), tokens, MOE_BF16, MOE_BF16), 0)
            rc = self.lib.moe_route(ctypes.byref(spec), tokens, MOE_BF16, MOE_BF16, p, p, None, p, p,
                                    p, None, p, 1 << 16, None)
            self.assertEqual(rc, MOE_INVALID_ARGUMENT, (bend, tokens))
            self.assertIn(message, self.last_error())

    def test_config_names_the_kernel_or_refuses_by_field(self):
        spec = RouterSpec()
        self.assertEqual(self.lib.moe_router_preset(b"deepseek_v3", ctypes.byref(spec)), MOE_OK)
        # Bad arguments are named with or without a device.
        self.assertIsNone(self.lib.moe_route_config(ctypes.byref(spec), 0, MOE_BF16, MOE_BF16))
        self.assertIn("tokens: 0 is outside", self.last_error())
        self.assertIsNone(self.lib.moe_route_config(ctypes.byref(spec), 1, 7, MOE_BF16))
        self.assertIn("hidden_dtype: invalid", self.last_error())
        self.assertIsNone(self.lib.moe_route_config(None, 1, MOE_BF16, MOE_BF16))
        self.assertIn("spec: null", self.last_error())
        self.assertIsNone(self.lib.moe_gemm_config(16, 16, 12, MOE_BF16))
        self.assertIn("k: 12", self.last_error())
        self.assertIsNone(self.lib.moe_gemm_config(16, 16, 8192, 7))
        self.assertIn("dtype: invalid", self.last_error())
        bad = RouterSpec.from_buffer_copy(spec)
        bad.scoring = 9
        self.assertIsNone(self.lib.moe_route_config(ctypes.byref(bad), 1, MOE_BF16, MOE_BF16))
        self.assertIn("scoring: invalid", self.last_error())
        # A valid problem: its kernel in words on a GPU, else "no usable CUDA device".
        first = self.lib.moe_route_config(ctypes.byref(spec), 1, MOE_BF16, MOE_BF16)
        if first is None:
            self.assertIn("no usable CUDA device", self.last_error())
            self.assertIsNone(self.lib.moe_gemm_config(300, 700, 2048, MOE_BF16))
            self.assertIn("no usable CUDA device", self.last_error())
            return
        one_launch = (r"(mma|fma) nt=[124] S=\d+ (polled|cluster|staged|counter)"
                      r"( pairs)?( coop)?( ded)?( 1cta)?")
        gemm = r"(cublasLt gemm|gemm tile=\d+(x\d+)? S=\d+( tma)?)"
        for family in (b"deepseek_v3", b"qwen3_30b", b"mixtral", b"kimi_k2"):
            self.assertEqual(self.lib.moe_router_preset(family, ctypes.byref(spec)), MOE_OK)
            for tokens in (1, 16, 128, 256):
                text = self.lib.moe_route_config(ctypes.byref(spec), tokens, MOE_BF16, MOE_BF16)
                self.assertIsNotNone(text, (family, tokens, self.last_error()))
                self.assertRegex(text.decode(), f"^({one_launch}|{gemm} \\+ epilogue kernel)$")
        # The shapes moe_gemm_workspace_bytes sizes for cuBLASLt say so.
        self.assertEqual(self.lib.moe_gemm_config(300, 700, 2048, MOE_BF16), b"cublasLt gemm")
        self.assertRegex(self.lib.moe_gemm_config(16, 16, 8192, MOE_BF16).decode(),
                         f"^({one_launch}|{gemm})$")

    def test_gemm_workspace_sizes(self):
        ws = self.lib.moe_gemm_workspace_bytes
        # The shapes handed to cuBLASLt need its fixed workspace; the skinny ones Decompose-K's.
        self.assertEqual(ws(300, 700, 2048, MOE_BF16), CUBLASLT_WORKSPACE)
        self.assertEqual(ws(1, 4096, 2048, MOE_FP32), CUBLASLT_WORKSPACE)
        self.assertGreater(ws(16, 16, 8192, MOE_BF16), 0)
        self.assertLess(ws(16, 16, 8192, MOE_BF16), CUBLASLT_WORKSPACE)
        # Outside the C ABI's range, or a bad dtype: 0.
        self.assertEqual(ws(0, 16, 8192, MOE_BF16), 0)
        self.assertEqual(ws(16, 16, 12, MOE_BF16), 0)
        self.assertEqual(ws(16, 16, 8192, 7), 0)

    def test_gemm_refuses_bad_arguments_before_the_device(self):
        # Fake device addresses: every call below must fail on the host, naming the field.
        aligned, c = 1 << 20, 2 << 20
        bytes_needed = self.lib.moe_gemm_workspace_bytes(300, 700, 2048, MOE_BF16)
        rc = self.lib.moe_gemm(300, 700, 2048, MOE_BF16, aligned + 8, aligned, None, c, aligned,
                               bytes_needed, None)
        self.assertEqual(rc, MOE_INVALID_ARGUMENT)
        self.assertIn("a: not 16-byte aligned", self.last_error())
        rc = self.lib.moe_gemm(300, 700, 2048, MOE_BF16, aligned, aligned, None, c, aligned,
                               bytes_needed - 1, None)
        self.assertEqual(rc, MOE_INVALID_ARGUMENT)
        self.assertIn("workspace", self.last_error())
        rc = self.lib.moe_gemm(300, 700, 2052, MOE_BF16, aligned, aligned, None, c, aligned,
                               bytes_needed, None)
        self.assertEqual(rc, MOE_INVALID_ARGUMENT)
        self.assertIn("k: 2052", self.last_error())


if __name__ == "__main__":
    unittest.main()
