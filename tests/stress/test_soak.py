"""No leaks: thousands of calls on one layer and one model keep the resident memory flat.

Each test warms up (the workspaces, the stepper's arrays, NumPy's and Python's
allocator caches and the kernels' threads settle in the first calls), collects
garbage, reads the resident set size (VmRSS of /proc/self/status), runs the rest of
its calls, collects again, and requires the growth to stay under MAX_GROWTH. A leak of
even one small array per call shows: the layer's y (5, 4, 16) float32 is 1.25 KiB,
over 9,500 calls 11.6 MiB. Every test prints its growth and time (run with -s).
"""
import ctypes
import gc
import time

import numpy as np
import pytest

import seqcore

MAX_GROWTH = 4 * 2**20          # bytes of resident memory a soak may gain after warm-up
WARMUP = 500
STATUS = "/proc/self/status"


def rss():
    """Resident set size of this process in bytes (Linux). No /proc is a failure, not a
    skip: this suite runs on Linux, and a soak test that cannot measure has not passed."""
    try:
        with open(STATUS) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024          # "VmRSS:  123456 kB"
    except OSError as exc:
        pytest.fail(f"cannot read the resident memory: {STATUS}: {exc} (the soak tests "
                    "need Linux's /proc)")
    pytest.fail(f"cannot read the resident memory: no VmRSS line in {STATUS}")


def trim():
    """Hand the heap's free pages back to the system (glibc's malloc_trim), so that the
    resident size counts what is in use: after thousands of tests the heap holds free
    pages that are still resident, and a leak would fill them unseen."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):             # not glibc: the RSS is as it is
        pass


def soak(label, call, calls, warmup=WARMUP):
    """Run call(i) `calls` times; fail if resident memory grew by MAX_GROWTH or more
    after the first `warmup` calls. Returns the growth in bytes."""
    start = time.perf_counter()
    for i in range(warmup):
        call(i)
    gc.collect()
    trim()
    before = rss()
    for i in range(warmup, calls):
        call(i)
    gc.collect()
    trim()
    growth = rss() - before
    print(f"\n{label}: {calls} calls, resident memory {before / 2**20:.1f} MiB after "
          f"{warmup} warm-up calls, then {growth / 2**20:+.2f} MiB "
          f"({time.perf_counter() - start:.2f} s)")
    if growth >= MAX_GROWTH:
        # A leak grows with every call; a one-off (the heap's top moving, another
        # thread of the test session allocating) does not: the same calls again must
        # grow as much for a failure.
        again = rss()
        for i in range(warmup, calls):
            call(i)
        gc.collect()
        trim()
        growth = min(growth, rss() - again)
        print(f"{label}: {calls - warmup} calls again, then {growth / 2**20:+.2f} MiB")
    assert growth < MAX_GROWTH, (
        f"{label}: resident memory grew by {growth / 2**20:.2f} MiB over {calls - warmup} "
        f"calls after warm-up (limit {MAX_GROWTH / 2**20:.0f} MiB): a leak of about "
        f"{growth / (calls - warmup):.0f} bytes per call")
    return growth


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_layer_forward_backward_soak(cell, kernel_path):
    """10,000 forward+backward calls of a small compiled layer (T=5, B=4, D=8, H=16),
    on every kernel path the CPU runs."""
    layer = {"rnn": seqcore.RNN, "gru": seqcore.GRU, "lstm": seqcore.LSTM}[cell](
        8, 16, backend="cython", seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4, 8)).astype(np.float32)
    dy = rng.standard_normal((5, 4, 16)).astype(np.float32)

    def call(i):
        y, state = layer.forward(x)
        layer.backward(dy)
        if i % 1000 == 999:
            layer.zero_grad()           # (the gradients add up; keep them finite)

    soak(f"{type(layer).__name__}(8, 16) forward+backward [{kernel_path}]", call, 10_000)


def test_general_path_soak():
    """10,000 forward+backward calls through every branch of the general path: two
    bidirectional layers, batch-first, lengths (the reversal and the mask), an initial
    state and a final-state gradient."""
    layer = seqcore.GRU(8, 16, num_layers=2, bidirectional=True, batch_first=True,
                        reset_after=True, backend="cython", seed=0)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 5, 8)).astype(np.float32)              # (B, T, D)
    lengths = np.array([5, 3, 1, 4])
    state = rng.standard_normal((4, 4, 16)).astype(np.float32)          # (L*dirs, B, H)
    dy = rng.standard_normal((4, 5, 32)).astype(np.float32)

    def call(i):
        layer.forward(x, state, lengths)
        layer.backward(dy, state)
        if i % 1000 == 999:
            layer.zero_grad()

    soak("GRU(8, 16, 2 layers, bidirectional, lengths) forward+backward", call, 10_000)


def test_one_token_stepper_soak(kernel_path):
    """10,000 one-token calls (T = B = 1: the compiled stepper), the state fed back,
    each followed by a backward through the stepper's cache."""
    layer = seqcore.LSTM(8, 16, num_layers=2, backend="cython", seed=0)
    assert layer._stepper is not None
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((64, 1, 1, 8)).astype(np.float32)
    dy = np.ones((1, 1, 16), np.float32)
    state = [None]

    def call(i):
        y, state[0] = layer.forward(xs[i % 64], None if i % 100 == 0 else state[0])
        layer.backward(dy)
        if i % 1000 == 999:
            layer.zero_grad()

    # the stepper took the calls (it returns None to hand a call to the general path)
    assert layer._stepper.step(xs[0], None, seqcore.get_num_threads()) is not None
    soak(f"LSTM(8, 16, num_layers=2) one-token forward+backward [{kernel_path}]", call, 10_000)


@pytest.fixture(scope="module")
def language_model():
    vocab = seqcore.Vocab.build(["the quick brown fox jumps over the lazy dog"])
    return seqcore.LanguageModel(vocab, cell="lstm", hidden_size=16, seed=0)


def test_language_model_sample_soak(language_model):
    """1,000 `sample` calls (two texts of up to 20 tokens each: one-token steps)."""
    lm = language_model
    soak("LanguageModel(lstm, 16) sample", lambda i: lm.sample(2, max_len=20, seed=i), 1_000,
         warmup=100)


def test_language_model_training_soak(language_model):
    """10,000 forward+backward calls of the model (loss_and_grads on one batch)."""
    lm = language_model
    batch = next(lm.batches(["the quick brown", "fox jumps", "over the lazy dog"], 3,
                             None, train=False))

    def call(i):
        lm.loss_and_grads(batch)
        if i % 1000 == 999:
            lm.zero_grad()

    soak("LanguageModel(lstm, 16) loss_and_grads", call, 10_000)


def test_the_soak_check_catches_a_leak():
    """A call that keeps one small array per call, as a leaking layer would: the
    check fails, in both of its windows, even after the session has freed a heap's
    worth of small arrays (free pages a leak could fill unseen, without trim)."""
    churn = [np.ones(320, np.float32) for _ in range(100_000)]
    del churn
    gc.collect()
    kept = []
    with pytest.raises(AssertionError, match="a leak of about"):
        soak("leaking call", lambda i: kept.append(np.ones(320, np.float32)), 9_000,
             warmup=100)
