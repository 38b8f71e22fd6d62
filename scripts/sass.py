#!/usr/bin/env python3
"""Hopper machine code (SASS) of one CUDA source of the build, without a GPU.

This machine's CUDA toolkit (nvcc 13) has nvcc and ptxas but neither cuobjdump nor
nvdisasm, so what ptxas made of a kernel could only be read on the device machine. Debian
12's non-free nvidia-cuda-toolkit (CUDA 11.8) has an nvdisasm that decodes sm_90; it reads
only the cubin header of its own time, so this script rewrites that header (the OS/ABI
byte, the ABI version and e_flags: the architecture moved from bits 0-7 to 8-15), which
changes nothing in the code. The package (84 MB) is downloaded once into a cache with a
private apt state: the system's sources and lists are not touched.

  scripts/sass.py kernels/decompose_k_polled.cu                # SASS of every kernel
  scripts/sass.py kernels/decompose_k_polled.cu --after-wait   # one line per kernel
  scripts/sass.py SRC --build build/gpu --kernel 'Li2ELb1ELb0E' -o polled.sass
  scripts/sass.py SRC --build /tmp/wt/build/gpu --same-as polled.sass   # which kernels changed

The compile command is the build's own (`ninja -t commands`; default build dir
build/gpu, the `hopper` preset), turned into one for an sm_90a cubin. --after-wait
condenses, for each kernel, the instructions between its first griddepcontrol.wait
(ACQBULK) and its first CTA barrier into runs of loads, tensor-core MMAs and local-memory
(spill) accesses: how many L2 round trips a warp takes after the previous launch ends
(bench/NOTES.md session 48).
"""
import argparse
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile

DEBIAN_NON_FREE = """Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "moe-router", "cuda-11.8-disasm")


def find_nvdisasm():
    """A recent nvdisasm if the toolkit has one (no header rewrite), else Debian's 11.8."""
    for path in ("/usr/local/cuda/bin/nvdisasm", shutil.which("nvdisasm") or ""):
        if path and os.access(path, os.X_OK) and "11.8" not in version_of(path):
            return path, False
    cached = os.path.join(cache_dir(), "usr", "bin", "nvdisasm")
    if not os.access(cached, os.X_OK):
        fetch_debian_nvdisasm()
    return cached, True


def version_of(tool):
    try:
        return subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    except OSError:
        return ""


def fetch_debian_nvdisasm():
    os.makedirs(cache_dir(), exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for d in ("state/lists/partial", "cache/archives/partial"):
            os.makedirs(os.path.join(tmp, d))
        sources = os.path.join(tmp, "non-free.sources")
        with open(sources, "w") as f:
            f.write(DEBIAN_NON_FREE)
        opts = [
            "-o", f"Dir::State={tmp}/state",
            "-o", "Dir::State::status=/var/lib/dpkg/status",
            "-o", f"Dir::Cache={tmp}/cache",
            "-o", f"Dir::Etc::sourcelist={sources}",
            "-o", "Dir::Etc::sourceparts=-",
        ]
        if os.geteuid() == 0:
            opts += ["-o", "APT::Sandbox::User=root"]
        print("sass.py: fetching Debian's nvidia-cuda-toolkit (84 MB, once) into " + cache_dir(),
              file=sys.stderr)
        subprocess.run(["apt-get", *opts, "-qq", "update"], check=True)
        subprocess.run(["apt-get", *opts, "-qq", "download", "nvidia-cuda-toolkit"], check=True,
                       cwd=tmp)
        debs = [f for f in os.listdir(tmp) if f.endswith(".deb")]
        if len(debs) != 1:
            sys.exit("sass.py: apt-get download gave " + str(debs))
        with tempfile.TemporaryDirectory() as unpacked:
            subprocess.run(["dpkg-deb", "-x", os.path.join(tmp, debs[0]), unpacked], check=True)
            os.makedirs(os.path.join(cache_dir(), "usr", "bin"), exist_ok=True)
            shutil.copy2(os.path.join(unpacked, "usr", "bin", "nvdisasm"),
                         os.path.join(cache_dir(), "usr", "bin", "nvdisasm"))


def rewrite_header_for_cuda_11(cubin_in, cubin_out):
    """CUDA 12.8+ cubins: OS/ABI 0x41, ABI version 8, e_flags with the SM in bits 8-15.
    CUDA 11.8's: OS/ABI 0x33, ABI version 7, e_flags = SM | virtual SM << 16 | 0x500 (the
    unified texture mode and 64-bit address flags)."""
    with open(cubin_in, "rb") as f:
        data = bytearray(f.read())
    if data[:4] != b"\x7fELF" or data[4] != 2:
        sys.exit(f"sass.py: {cubin_in} is not a 64-bit ELF cubin")
    (flags,) = struct.unpack_from("<I", data, 48)
    sm = (flags >> 8) & 0xFF if data[7] == 0x41 else flags & 0xFF
    data[7], data[8] = 0x33, 7
    struct.pack_into("<I", data, 48, sm | 0x500 | sm << 16)
    with open(cubin_out, "wb") as f:
        f.write(data)


def cubin_command(build, source):
    """The build's compile command of `source`, turned into one for an sm_90a cubin."""
    # The file's path in the build's source tree (a worktree's build compiles its own copy).
    home = find_repo_root()
    cache = os.path.join(build, "CMakeCache.txt")
    if not os.path.exists(cache):
        sys.exit(f"sass.py: {build} is not a configured build (cmake --preset hopper)")
    with open(cache) as f:
        for line in f:
            if line.startswith("CMAKE_HOME_DIRECTORY:"):
                home = line.split("=", 1)[1].strip()
    path = os.path.abspath(source)
    inside = os.path.commonpath([path, home]) == home
    rel = os.path.relpath(path, home if inside else find_repo_root())
    pattern = re.compile(r"^%s/CMakeFiles/[^/]+\.dir/%s\.o:" % (
        re.escape(os.path.dirname(rel)), re.escape(os.path.basename(rel))))
    targets = subprocess.run(["ninja", "-C", build, "-t", "targets", "all"], capture_output=True,
                             text=True, check=True).stdout
    target = next((line.split(":")[0] for line in targets.splitlines() if pattern.match(line)),
                  None)
    if target is None:
        sys.exit(f"sass.py: no object of {rel} in {build} (configure it: cmake --preset hopper)")
    cmd = subprocess.run(["ninja", "-C", build, "-t", "commands", target], capture_output=True,
                         text=True, check=True).stdout.strip().splitlines()[-1]
    args, skip = [], False
    for a in shlex.split(cmd):
        if skip:
            skip = False
            continue
        if a in ("-MD", "-c"):
            continue
        if a in ("-MT", "-MF", "-o"):
            skip = True
            continue
        if a.startswith("--generate-code=") or a.startswith("-compress-mode"):
            continue
        args.append(a)
    return args + ["-arch=sm_90a", "-cubin"], build


# An instruction line of nvdisasm's output ("        /*0a10*/   LDG.E ... ;"), not a label or
# a source line.
INSTRUCTION = re.compile(r"^\s+/\*[0-9a-f]{4,}\*/")


def find_repo_root():
    return os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def kernels_of(sass):
    """{mangled name: [instruction lines]} of nvdisasm's output."""
    kernels, name = {}, None
    for line in sass.splitlines():
        m = re.match(r"^(_Z\w+):$", line)
        if m:
            name = m.group(1)
            kernels[name] = []
        elif line.startswith("//----"):  # the next section
            name = None
        elif name and line.strip():
            kernels[name].append(line)  # instructions, labels and source lines (-g)
    return kernels


def after_wait(lines):
    """Runs of global loads (LDG), L1 prefetches (CCTL), copies to shared memory (LDGSTS)
    and their waits (DEPBAR), tensor-core MMAs (HMMA), spill accesses (LDL/STL) and
    shared-memory loads (LDS) from the first ACQBULK
    (griddepcontrol.wait) to the first BAR, e.g. 'LDL LDG*4 HMMA*2 LDG*4 HMMA*30'. A load
    after an MMA that uses an earlier load's register is issued only once that load is
    back: each such break is one more L2 round trip."""
    runs, on = [], False
    for line in lines:
        if not INSTRUCTION.match(line):
            continue  # a label or a source line
        tokens = line.split("*/", 1)[1].split()
        if tokens and tokens[0] == "@!PT":  # never runs (ptxas' padding before LDGSTS)
            continue
        if tokens and tokens[0].startswith("@"):  # a predicate
            tokens = tokens[1:]
        base = tokens[0].rstrip(";").split(".")[0] if tokens else ""
        if base == "ACQBULK":
            on = True
            continue
        if not on:
            continue
        if base == "BAR":
            break
        if base in ("LDG", "LDGSTS", "DEPBAR", "HMMA", "LDL", "STL", "LDS", "CCTL"):
            if runs and runs[-1][0] == base:
                runs[-1][1] += 1
            else:
                runs.append([base, 1])
    if not on:
        return "(no griddepcontrol.wait)"
    return " ".join(b if n == 1 else f"{b}*{n}" for b, n in runs)


def code_of(lines):
    """The instructions alone: no addresses, source lines or label numbers, so that two
    builds of the same code compare equal."""
    return [re.sub(r"\.L_x_\d+", "L", line.split("*/", 1)[1].strip()) for line in lines
            if INSTRUCTION.match(line)]


def kernel_key(name):
    """The mangled name without the anonymous namespace's per-file hash."""
    return re.sub(r"_GLOBAL__N__[0-9a-f]+_\d+_\w+?_cu_[0-9a-f]+", "", name)


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends the output quietly
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("source", nargs="?",
                    help="a .cu file of the build (e.g. kernels/decompose_k_polled.cu)")
    ap.add_argument("--build", default=os.path.join(find_repo_root(), "build", "gpu"),
                    help="a configured CUDA build (default: the hopper preset's build/gpu)")
    ap.add_argument("--kernel", default="", help="only kernels whose mangled name matches this regex")
    ap.add_argument("--after-wait", action="store_true",
                    help="one line per kernel: what it runs between griddepcontrol.wait and its first barrier")
    ap.add_argument("-o", "--output", help="write the result here (default: stdout)")
    ap.add_argument("--same-as", metavar="FILE",
                    help="compare each kernel's instructions with saved nvdisasm output (another "
                         "build): one line per kernel, 'same' or 'differs'")
    ap.add_argument("--from-sass", metavar="FILE",
                    help="read nvdisasm output saved earlier (-o without --after-wait) instead of "
                         "compiling")
    args = ap.parse_args()

    if args.from_sass:
        with open(args.from_sass) as f:
            sass = f.read()
    elif not args.source:
        ap.error("name a .cu source, or --from-sass")
    else:
        sass = disassemble(args.build, args.source)
    kernels = {k: v for k, v in kernels_of(sass).items() if re.search(args.kernel, k)}
    if not kernels:
        sys.exit("sass.py: no kernel matches " + repr(args.kernel))
    other = {}
    if args.same_as:
        with open(args.same_as) as f:
            other = {kernel_key(k): code_of(v) for k, v in kernels_of(f.read()).items()}
    text = []
    for name, lines in kernels.items():
        if args.same_as:
            theirs = other.get(kernel_key(name))
            verdict = "absent" if theirs is None else "same" if theirs == code_of(lines) else "differs"
            text.append(f"{verdict:8} {demangle(name)}\n")
        elif args.after_wait:
            text.append(f"{demangle(name)}\n    {after_wait(lines)}\n")
        else:
            text.append(f"{name}:\n" + "\n".join(lines) + "\n")
    if args.output:
        with open(args.output, "w") as f:
            f.writelines(text)
    else:
        sys.stdout.writelines(text)


def disassemble(build, source):
    nvdisasm, old = find_nvdisasm()
    command, build = cubin_command(build, source)
    with tempfile.TemporaryDirectory() as tmp:
        cubin = os.path.join(tmp, "k.cubin")
        subprocess.run(command + ["-o", cubin], check=True, cwd=build)
        if old:
            rewrite_header_for_cuda_11(cubin, cubin + ".11")
            cubin += ".11"
        return subprocess.run([nvdisasm, "-c", "-g", cubin], capture_output=True, text=True,
                              check=True).stdout


def demangle(name):
    """The kernel's template, without the anonymous namespace and the parameter list."""
    try:
        full = subprocess.run(["c++filt", name], capture_output=True, text=True).stdout.strip()
    except OSError:
        return name
    full = full.replace("(anonymous namespace)::", "").replace("moe::cuda::", "")
    full = full.replace("__nv_bfloat16", "bf16").replace("__half", "fp16")
    return re.sub(r"^void ", "", re.sub(r"\([\w:, ]*\)$", "", full))


if __name__ == "__main__":
    main()
