#!/usr/bin/env bash
# The installed seqcore on a CPU this machine is not, under QEMU's user-mode emulation
# (Debian package qemu-user): every module imports or is refused with ImportError, the
# CPU's best path is chosen, and a subset of the compiled-vs-reference, one-step, one-call token,
# training-kernel and CTC tests passes on that path (the generic path is Nehalem's). No signal
# may end it.
#
#   bash tests/kernels/emulated.sh Haswell     # AVX2 + FMA, no AVX-512: paths avx2, generic
#   bash tests/kernels/emulated.sh Nehalem     # SSE4.2, no AVX: path generic
#
# Run from a clone's root with the environment that has seqcore installed (about 3
# minutes and 1 on a 2-core machine: QEMU emulates AVX2 slowly).
set -euo pipefail
cpu="${1:?usage: bash tests/kernels/emulated.sh Haswell|Nehalem}"
case "$cpu" in
    Haswell) best=avx2;    refused=(avx512) ;;
    Nehalem) best=generic; refused=(avx512 avx2) ;;
    *) echo "tests/kernels/emulated.sh: unknown CPU $cpu (Haswell or Nehalem)" >&2; exit 2 ;;
esac
py="$(command -v python)"
emulate() { qemu-x86_64 -cpu "$cpu" "$py" "$@" 2> >(grep -v "TCG doesn't support" >&2); }

echo "== $cpu: importing every module; cpu_info()"
emulate tests/kernels/import_every_module.py --refused "${refused[@]}" --best "$best"

echo "== $cpu: compiled vs reference, one step, training kernels on the $best path"
emulate -m pytest -q -p no:cacheprovider \
    tests/kernels/test_compiled_vs_reference.py::test_cython_matches_reference \
    tests/kernels/test_compiled_vs_reference.py::test_thread_count_does_not_change_the_numbers \
    tests/kernels/test_one_step.py::test_token_by_token_matches_reference \
    tests/kernels/test_token.py::test_a_token_in_one_call_is_the_three_forwards \
    tests/nn/test_dense_loss.py \
    tests/nn/test_ctc.py::test_compiled_matches_its_twin \
    -k "$best and (T1B1D40 or T8B1 or T6B4 or T9B64 or token_by_token or dense_loss \
        or compiled_matches_its_twin or (thread_count and lstm and not peephole) \
        or (in_one_call and lstm and not peephole))"
