"""Build script for seqcore's compiled core: one extension module per cell in csrc/."""
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

# SEQCORE_DEBUG=1 turns bounds checking back on in every kernel (slow; for hunting bugs).
DEBUG = os.environ.get("SEQCORE_DEBUG", "0") == "1"
# The core is built on the machine that runs it, so by default it may use every
# instruction the CPU has (AVX2/AVX-512 for the gate math). SEQCORE_MARCH=x86-64-v2
# (or any -march value) builds a portable binary instead.
MARCH = os.environ.get("SEQCORE_MARCH", "native")
# Developers may build a subset while working on one kernel: SEQCORE_CELLS=lstm.
CELLS = os.environ.get("SEQCORE_CELLS", "rnn,gru,lstm").split(",")

# OpenMP: the per-step products split their columns between the core's threads.
compile_args = ["-O3", f"-march={MARCH}", "-fno-math-errno", "-fno-trapping-math", "-fopenmp"]
if DEBUG:
    compile_args = ["-O0", "-g", "-fopenmp"]

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "nonecheck": False,
}

extensions = [
    Extension(
        f"seqcore._{cell}",
        [f"csrc/_{cell}.pyx"],
        include_dirs=["csrc", numpy.get_include()],   # NumPy's C API: the one-token path
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
        extra_link_args=["-fopenmp"],
    )
    for cell in CELLS
] + [
    # the argument checks that are faster compiled (seqcore/_validation.py)
    Extension("seqcore._checks", ["csrc/_checks.pyx"], include_dirs=["csrc"],
              extra_compile_args=compile_args),
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=directives, include_path=["csrc"]),
)
