"""The generic kernel path (the x86-64 baseline (SSE2), or any other architecture's).

Its modules (rnn, gru, lstm, train) are compiled for that instruction set; this file
refuses the import (seqcore._kernels.UnsupportedCPU) on a CPU that lacks it, before any
of them is loaded."""

from .. import require

require("generic")
