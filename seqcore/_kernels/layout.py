"""The compiled core's layout, read by setup.py (the build) and seqcore._dispatch (the
import): the kernel paths and the modules built for each are listed here only.

Every module of KERNELS is compiled once per path of PATHS, as
``seqcore._kernels.{path}.{name}``, with that path's instruction-set flags (setup.py)
and block sizes (csrc/_paths.h). ``seqcore._kernels.cpu``, built for the x86-64
baseline, tells which paths the CPU runs. This file imports nothing: setup.py reads it
before anything is built.
"""

PATHS = ("avx512", "avx2", "generic")        # best first
CELLS = ("rnn", "gru", "lstm")               # csrc/_{cell}.pyx: a recurrent cell's kernels
KERNELS = CELLS + ("train", "ctc")          # csrc/_train.pyx: the rest of a training step;
                                             # csrc/_ctc.pyx: CTC's loss and gradient
