"""The avx512 kernel path (AVX-512 F/BW/DQ/VL with AVX2 and FMA: 32 zmm registers).

Its modules (rnn, gru, lstm, train) are compiled for that instruction set; this file
refuses the import (seqcore._kernels.UnsupportedCPU) on a CPU that lacks it, before any
of them is loaded."""

from .. import require

require("avx512")
