"""scripts/sass.py's offline parts: the cubin header rewrite for CUDA 11.8's nvdisasm, the
split of nvdisasm output into kernels, and the --after-wait summary (no download, no
compile: those need the network and nvcc)."""
import os
import shutil
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))
import sass  # noqa: E402


def elf_header(osabi, abi_version, flags):
    header = bytearray(64)
    header[:4] = b"\x7fELF"
    header[4] = 2  # 64-bit
    header[7], header[8] = osabi, abi_version
    struct.pack_into("<I", header, 48, flags)
    return header


class HeaderRewrite(unittest.TestCase):
    def rewrite(self, header):
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = os.path.join(tmp, "a.cubin"), os.path.join(tmp, "b.cubin")
            with open(src, "wb") as f:
                f.write(header + b"code")
            sass.rewrite_header_for_cuda_11(src, dst)
            with open(dst, "rb") as f:
                return f.read()

    def test_cuda_13_sm90a_header_becomes_cuda_11_sm90(self):
        # nvcc 13's sm_90a cubin, and what CUDA 11.8's ptxas writes for sm_90.
        out = self.rewrite(elf_header(0x41, 8, 0x6005A04))
        self.assertEqual((out[7], out[8]), (0x33, 7))
        self.assertEqual(struct.unpack_from("<I", out, 48)[0], 0x5A055A)
        self.assertEqual(out[64:], b"code")  # the rest untouched

    def test_old_header_keeps_its_architecture(self):
        out = self.rewrite(elf_header(0x33, 7, 0x5A055A))
        self.assertEqual(struct.unpack_from("<I", out, 48)[0], 0x5A055A)

    def test_not_a_cubin_is_refused(self):
        with self.assertRaises(SystemExit):
            self.rewrite(bytearray(b"#!/bin/sh\n" + bytes(54)))


LISTING = """\
//--------------------- .text._Z3onev --------------------------
_Z3onev:
        /*0000*/                   LDG.E.128.CONSTANT R4, [R2.64] ;
        /*0010*/                   ACQBULK ;
	//## File "k.cu", line 3
        /*0020*/              @!P4 LDG.E.128.CONSTANT R12, [R52.64] ;
        /*0030*/              @!P0 LDG.E.128.CONSTANT R16, [R50.64] ;
        /*0040*/                   HMMA.16816.F32.BF16 R20, R24, R12, R20 ;
.L_x_1:
        /*0050*/                   LDL R7, [R1+0x28] ;
        /*0058*/             @!PT LDS RZ, [RZ] ;
        /*0060*/              @!P1 LDG.E.128.CONSTANT R16, [R50.64] ;
        /*0070*/                   HMMA.16816.F32.BF16 R20, R24, R16, R20 ;
        /*0080*/                   HMMA.16816.F32.BF16 R20, R24, R18, R20 ;
        /*0090*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*00a0*/                   LDG.E R3, [R2.64] ;
//--------------------- .text._Z3twov --------------------------
_Z3twov:
        /*0000*/                   PREEXIT ;
        /*0010*/                   EXIT ;
//--------------------- .nv.shared --------------------------
        /*0000*/                   NOT_A_KERNEL ;
"""


class Listing(unittest.TestCase):
    def test_kernels_are_split_at_sections(self):
        kernels = sass.kernels_of(LISTING)
        self.assertEqual(list(kernels), ["_Z3onev", "_Z3twov"])
        self.assertEqual(len(kernels["_Z3twov"]), 2)  # not the shared-memory section's line

    def test_after_wait_counts_runs_from_the_wait_to_the_barrier(self):
        kernels = sass.kernels_of(LISTING)
        self.assertEqual(sass.after_wait(kernels["_Z3onev"]), "LDG*2 HMMA LDL LDG HMMA*2")

    def test_code_ignores_addresses_labels_and_source_lines(self):
        a = ["        /*0010*/              @P0 BRA `(.L_x_12) ;", '\t//## File "a.cu", line 3',
             ".L_x_12:", "        /*0020*/                   EXIT ;"]
        b = ["        /*0a10*/              @P0 BRA `(.L_x_97) ;", "        /*0a20*/   EXIT ;"]
        self.assertEqual(sass.code_of(a), sass.code_of(b))
        self.assertNotEqual(sass.code_of(a), sass.code_of(b[:1]))

    def test_kernel_key_drops_the_per_file_namespace_hash(self):
        one = "_ZN3moe4cuda54_GLOBAL__N__b319c1be_21_decompose_k_polled_cu_fb3b49f822DecomposeKPolledKernelI6__halfLi1ELb0ELb0EEEvNS0_12KernelParamsE"
        two = one.replace("b319c1be", "4ecae500")
        self.assertEqual(sass.kernel_key(one), sass.kernel_key(two))

    def test_kernel_without_wait(self):
        kernels = sass.kernels_of(LISTING)
        self.assertEqual(sass.after_wait(kernels["_Z3twov"]), "(no griddepcontrol.wait)")


@unittest.skipUnless(shutil.which("c++filt"), "no c++filt")
class Demangle(unittest.TestCase):
    def test_polled_kernel_name(self):
        name = ("_ZN3moe4cuda54_GLOBAL__N__b319c1be_21_decompose_k_polled_cu_fb3b49f822"
                "DecomposeKPolledKernelI13__nv_bfloat16Li2ELb1ELb0EEEvNS0_12KernelParamsE")
        self.assertEqual(sass.demangle(name), "DecomposeKPolledKernel<bf16, 2, true, false>")


if __name__ == "__main__":
    unittest.main()
