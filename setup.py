"""Build script for seqcore's compiled core: each kernel module in csrc/, once per kernel path.

One build runs on every x86-64 CPU. Each kernel module (csrc/_rnn.pyx, _gru.pyx,
_lstm.pyx, _train.pyx; the list is seqcore/_kernels/layout.py) is compiled once per
kernel path, as seqcore._kernels.{path}.{name}, with that path's instruction-set flags
and block sizes (csrc/_paths.h). seqcore._kernels.cpu, built for the baseline, tells
at import which paths the CPU can run, and each path's package refuses its import on a
CPU without it (seqcore/_kernels/__init__.py): nothing a CPU lacks is ever executed.
Other architectures get the generic path only.
"""
import glob
import os
import platform
import runpy
import tempfile

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError

# SEQCORE_DEBUG=1 turns bounds checking back on in every kernel (slow; for hunting bugs).
DEBUG = os.environ.get("SEQCORE_DEBUG", "0") == "1"
# SEQCORE_SANITIZE=1 builds every module with AddressSanitizer and UndefinedBehavior-
# Sanitizer (run the tests with libasan preloaded: README "Sanitizers").
SANITIZE = os.environ.get("SEQCORE_SANITIZE", "0") == "1"
# SEQCORE_MARCH=native (or any -march value) builds for one kind of CPU only: every
# module, the generic path included, may then use all that CPU has. Off by default.
MARCH = os.environ.get("SEQCORE_MARCH", "")
LAYOUT = runpy.run_path(os.path.join("seqcore", "_kernels", "layout.py"))
# Developers may build a subset while working on one kernel: SEQCORE_CELLS=lstm.
CELLS = os.environ.get("SEQCORE_CELLS", ",".join(LAYOUT["CELLS"])).split(",")

X86_64 = platform.machine().lower() in ("x86_64", "amd64")
# path: (its -m flags, the macro that selects its table in csrc/_paths.h)
PATH_FLAGS = {
    "avx512": (["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma"],
               "SC_PATH_AVX512"),
    "avx2": (["-mavx2", "-mfma"], "SC_PATH_AVX2"),
    "generic": ([], None),
}
PATHS = {path: PATH_FLAGS[path] for path in LAYOUT["PATHS"]}
if not X86_64:
    PATHS = {"generic": PATHS["generic"]}

# OpenMP: the per-step products split their columns between the core's threads.
base_args = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp"]
if MARCH:
    base_args.append(f"-march={MARCH}")
if DEBUG:
    base_args = ["-O0", "-g", "-fopenmp"]
link_args = ["-fopenmp"]
if SANITIZE:   # -O1: a quarter of -O3's build time with the sanitizers' checks
    sanitizers = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
                  "-fno-omit-frame-pointer", "-g"]
    base_args = [a for a in base_args if not a.startswith("-O")] + ["-O1"] + sanitizers
    link_args = link_args + sanitizers

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "nonecheck": False,
}

# Cython names a module after its .pyx file, so each (module, path) gets a one-line
# source, build/pyx/{path}/{name}.pyx, that includes the module's real source.
STUBS = os.path.join("build", "pyx")


# The C headers: Cython sees the ones a .pxd names, not those they include (_q8.h),
# so an in-place build would keep a module compiled from an older header.
HEADERS = sorted(glob.glob(os.path.join("csrc", "*.h")))


def path_source(cell, path):
    os.makedirs(os.path.join(STUBS, path), exist_ok=True)
    stub = os.path.join(STUBS, path, f"{cell}.pyx")
    text = f'# csrc/_{cell}.pyx for the {path} kernel path (written by setup.py)\ninclude "_{cell}.pyx"\n'
    if not os.path.exists(stub) or open(stub).read() != text:   # keep its mtime otherwise
        with open(stub, "w") as f:
            f.write(text)
    return stub


def cell_extension(cell, path):
    flags, macro = PATHS[path]
    return Extension(
        f"seqcore._kernels.{path}.{cell}",
        [path_source(cell, path)],
        include_dirs=["csrc", numpy.get_include()],   # NumPy's C API: the one-token path
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
                      + ([(macro, "1")] if macro else []),
        extra_compile_args=base_args + flags,
        extra_link_args=link_args,
        depends=HEADERS,
    )


# the cells, and the rest of a training step (Dense, softmax cross-entropy, Adam, the
# embedding's scatter) on the same packed products and threads
MODULES = CELLS + [name for name in LAYOUT["KERNELS"] if name not in LAYOUT["CELLS"]]
extensions = [cell_extension(name, path) for name in MODULES for path in PATHS] + [
    # the argument checks that are faster compiled (seqcore/_validation.py)
    Extension("seqcore._checks", ["csrc/_checks.pyx"], include_dirs=["csrc"], depends=HEADERS,
              extra_compile_args=base_args, extra_link_args=link_args),
    # the process's one state of the kernels' load notice (csrc/_load.h)
    Extension("seqcore._kernels.load", ["csrc/load.pyx"], include_dirs=["csrc"], depends=HEADERS,
              extra_compile_args=base_args, extra_link_args=link_args),
    # which kernel paths this CPU can run (seqcore/_kernels/__init__.py, _dispatch.py)
    Extension("seqcore._kernels.cpu", ["csrc/cpu.pyx"], include_dirs=["csrc"], depends=HEADERS,
              extra_compile_args=base_args, extra_link_args=link_args),
]


# GCC's jump threading copies the path on which exp's argument is clamped to a constant
# (csrc/_fastmath.h), and the vectorized loop then computes that path's constants in
# every lane beside the real values before it selects: in the LSTM's peephole gate
# pass a constant sigmoid of 6e-39 times c<t-1>, a subnormal product on every
# iteration, each one a microcode assist. Without threading those passes run as fast
# as the others (the small peephole LSTM's gate passes, one thread, in a C harness:
# 1.7 -> 0.7 ms on avx512, 3.2 -> 1.4 on avx2, 9.7 -> 3.7 on generic; its whole
# forward, avx512: 6.0 -> 4.0 ms). Compilers without the option skip it.
KERNEL_ONLY_ARGS = ["-fno-thread-jumps"]


class ParallelBuildExt(build_ext):
    """Compiles the extension modules side by side, one per core (`pip install .`
    has no option for it): the nine kernel modules are most of the build's time."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        extra = [flag for flag in KERNEL_ONLY_ARGS if self._accepts(flag)]
        for ext in self.extensions:
            if ext.name.startswith("seqcore._kernels.") and ext.name.count(".") == 3:
                ext.extra_compile_args = ext.extra_compile_args + extra
        super().build_extensions()

    def _accepts(self, flag):
        """Whether the C compiler takes `flag` (an empty file, compiled with -Werror)."""
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "flag.c")
            with open(src, "w") as f:
                f.write("int seqcore_flag_check;\n")
            try:
                self.compiler.compile([src], output_dir=tmp, extra_postargs=[flag, "-Werror"])
            except CompileError:
                return False
        return True


setup(
    ext_modules=cythonize(extensions, compiler_directives=directives, include_path=["csrc"],
                          nthreads=os.cpu_count() or 1),
    cmdclass={"build_ext": ParallelBuildExt},
)
