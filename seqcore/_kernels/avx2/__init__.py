"""The avx2 kernel path (AVX2 and FMA: 16 ymm registers).

Its modules (rnn, gru, lstm, train) are compiled for that instruction set; this file
refuses the import (seqcore._kernels.UnsupportedCPU) on a CPU that lacks it, before any
of them is loaded."""

from .. import require

require("avx2")
