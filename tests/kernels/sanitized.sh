#!/usr/bin/env bash
# The compiled core's tests under AddressSanitizer and UndefinedBehaviorSanitizer, on
# every kernel path this CPU runs: the compiled-vs-reference, kernel, one-step,
# one-token, training-kernel, CTC and int8-row tests, against an in-place build made with
# SEQCORE_SANITIZE=1 (docs/sanitizers.md). Python itself is not instrumented: the ASan
# runtime is preloaded into each pytest. Any report fails the run.
#
#   bash tests/kernels/sanitized.sh
#
# The tests run as two pytest processes side by side, each mostly on one core: about
# 7 minutes on a 2-core machine instead of 11. The load tests' forced solos over 70
# steps (T70) are left out here: under ASan they took 4.5 of test_load's 12 minutes,
# and the 12-step ones run the same code (the full suite runs both).
set -uo pipefail
asan="$(gcc -print-file-name=libasan.so)"
logs="$(mktemp -d)"
sanitized() {
    LD_PRELOAD="$asan" ASAN_OPTIONS=detect_leaks=0 \
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        python -m pytest -q -p no:cacheprovider "$@"
}
sanitized tests/kernels/test_compiled_vs_reference.py tests/kernels/test_long_products.py \
    tests/kernels/test_token.py > "$logs/1" 2>&1 &
first=$!
sanitized tests/kernels/test_kernels_lstm.py tests/kernels/test_kernels_rnn_gru.py \
    tests/kernels/test_one_step.py tests/nn/test_dense_loss.py tests/train/test_optim.py \
    tests/kernels/test_load.py tests/nn/test_ctc.py \
    tests/models/test_quantize.py::test_one_token_steps_are_int8_by_int8 \
    tests/models/test_quantize.py::test_dense_rows_run_on_the_int8_weights \
    tests/models/test_quantize.py::test_int8_rows_against_the_twin_at_every_edge \
    tests/models/test_quantize.py::test_int8_products_do_not_saturate \
    -k "not T70" > "$logs/2" 2>&1 &
second=$!
status=0
wait "$first" || status=$?
wait "$second" || status=$?
cat "$logs/1" "$logs/2"
rm -rf "$logs"
exit "$status"
