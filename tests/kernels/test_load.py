"""Threads under load (csrc/_load.h): the steps' barrier, the notice of lost cores and
the back-off to one thread. Not timed: these check that the numbers never change,
whatever the threads, the stalls and the callers, and that the notice is one per
process and does what stats() says."""
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import seqcore
from seqcore._kernels import load

from _cases import CELL_IDS, make_layer
from conftest import DTYPES, assert_close, compiled

pytestmark = pytest.mark.usefixtures("kernel_path")    # every kernel path the CPU runs


@pytest.fixture(autouse=True)
def fresh_load_state():
    """Each test starts with all threads and the shortest back-off, and leaves it so."""
    load.reset()
    old = load.set_adaptive(True)
    yield
    load.set_adaptive(old)
    load.reset()


@pytest.fixture
def threads():
    """set_num_threads for the test, restored after it."""
    old = seqcore.get_num_threads()
    yield seqcore.set_num_threads
    seqcore.set_num_threads(old)


def run(layer, x, dy, lengths=None):
    layer.zero_grad()
    y, final = layer.forward(x, lengths=lengths)
    dx, _ = layer.backward(dy)
    return [y, dx] + [g.copy() for g in layer.grads.values()]


# B * H >= 2,048 units per step: the steps run in one parallel region with the barrier
# (fewer than 8 rows a thread: the sequences are not split); H = 384 is a whole number
# of panels on every path, 12 or more: each thread its units
REGION = dict(T=12, B=6, D=24, H=384)
# the same with H = 298, no whole number of panels: the products' panels and the gate
# pass's rows are split
STEPS = dict(T=12, B=7, D=24, H=298)
# 8 rows a thread or more, at most 1/8 uneven, short steps: each thread its sequences
SEQUENCES = dict(T=12, B=64, D=24, H=48)
# each shape, its split, and the thread counts that take it on every path (8 threads
# split 64 rows unevenly at avx2's multiples of 6: the products are split there)
SPLITS = [(REGION, "units", (2, 3, 4, 8)), (STEPS, "steps", (2, 3, 4, 8)),
          (SEQUENCES, "sequences", (2, 3))]
GATES = {"rnn_tanh": (1, 1), "rnn_relu": (1, 1), "gru": (3, 2), "gru_reset_after": (3, 1),
         "lstm": (4, 1), "lstm_peephole": (4, 1)}    # gate blocks and products a step


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("cell", CELL_IDS)
def test_each_shape_takes_its_split(cell, dtype):
    """The shapes of these tests reach each way the forward splits its steps, on every
    path and dtype: a change of the rules would otherwise leave a split untested
    without a word."""
    module = compiled(cell.split("_")[0])
    G, phases = GATES[cell]
    for shape, want, counts in SPLITS:
        for n in counts:
            got = module.forward_split(shape["T"], shape["B"], shape["H"], G, phases, n,
                                       double=dtype == np.float64)
            assert got == want, (shape, n)
    assert module.forward_split(12, 6, 384, G, phases, 1) == "serial"


def against_reference(cell, dtype, shape, rng, threads):
    """A compiled layer of `shape`, its call's arguments (x, dy, lengths), the
    reference's results and the compiled layer's on one thread."""
    T, B, D, H = shape["T"], shape["B"], shape["D"], shape["H"]
    ref = make_layer(cell, D, H, dtype=dtype, backend="numpy", seed=3)
    fast = make_layer(cell, D, H, dtype=dtype, backend="cython", seed=3)
    args = (rng.standard_normal((T, B, D)).astype(dtype),
            rng.standard_normal((T, B, H)).astype(dtype), rng.integers(1, T + 1, B))
    want = run(ref, *args)
    threads(1)
    return fast, args, want, run(fast, *args)


# the units split with and without the back-off, the split products without it
@pytest.mark.parametrize("shape,adaptive", [(REGION, True), (REGION, False), (STEPS, False)],
                         ids=["units-adaptive", "units-barrier-only", "steps-barrier-only"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("cell", CELL_IDS)
def test_many_threads_match_the_reference(cell, dtype, shape, adaptive, rng, threads):
    """8 threads on this machine's cores: the barrier sleeps and wakes, stalls are
    likely, and with `adaptive` calls move to one thread part way; every output and
    gradient still matches the reference, and the 1-thread run bitwise."""
    load.set_adaptive(adaptive)
    fast, args, want, one = against_reference(cell, dtype, shape, rng, threads)
    threads(8)
    for _ in range(5):
        got = run(fast, *args)
        for g, w, o in zip(got, want, one):
            assert_close(g, w, dtype)
            np.testing.assert_array_equal(g, o)
    if not adaptive:
        assert load.stats()["serial_calls"] == 0


# each split in a team of 2 over a short call and of 4 over a long one (T70: the
# sanitizers' run leaves these out, docs/sanitizers.md), and the units in a team of 4
# over a short one
@pytest.mark.parametrize("shape,team,T", [(REGION, 2, 12), (REGION, 4, 12), (REGION, 4, 70),
                                          (STEPS, 2, 12), (STEPS, 4, 70)],
                         ids=["units-2-T12", "units-4-T12", "units-4-T70", "steps-2-T12",
                              "steps-4-T70"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("cell", CELL_IDS)
def test_a_region_that_goes_solo_gives_the_same_numbers(cell, dtype, team, T, shape, rng,
                                                        threads):
    """A steps' region whose threads wait too long goes solo: thread 0 runs the rest
    alone, the others leave (and backward's later chunks run on one thread). Forced at
    the first barriers, in the middle and at the last of the forward's and the first
    backward chunk's: every output and gradient equals the 1-thread run, bitwise."""
    B, D, H = shape["B"], shape["D"], shape["H"]
    fast = make_layer(cell, D, H, dtype=dtype, backend="cython", seed=5)
    x = rng.standard_normal((T, B, D)).astype(dtype)
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    lengths = rng.integers(1, T + 1, B)
    load.set_adaptive(False)            # the forced solos must not send calls to one thread
    threads(1)
    one = run(fast, x, dy, lengths)
    threads(team)
    for k in (1, 2, 3, 4, T, 2 * T - 1, 2 * T, 4 * T):
        load.force_solo(k)
        before = load.stats()["solo"]
        got = run(fast, x, dy, lengths)
        assert load.stats()["solo"] > before or k > 2 * T
        for g, o in zip(got, one):
            np.testing.assert_array_equal(g, o)
    load.force_solo(0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("cell", CELL_IDS)
def test_sequences_split_over_threads_match_the_reference(cell, dtype, rng, threads):
    """Each thread takes its own sequences through every step (no barrier): with 2,
    3 and 8 threads on this machine's cores, where a thread may wait for its core,
    every output and gradient matches the reference and the 1-thread run bitwise."""
    fast, args, want, one = against_reference(cell, dtype, SEQUENCES, rng, threads)
    for n in (2, 3, 8):
        threads(n)
        for _ in range(3):
            got = run(fast, *args)
            for g, w, o in zip(got, want, one):
                assert_close(g, w, dtype)
                np.testing.assert_array_equal(g, o)


def test_a_stall_sends_every_kernel_module_to_one_thread_for_a_while(rng, threads):
    """The notice is one per process: a stall moves the recurrent kernels and the
    training kernels (another compiled module) to one thread; reset() ends it."""
    threads(2)
    layer = seqcore.LSTM(8, 64, seed=0)
    dense = seqcore.Dense(64, 300, seed=0)
    x = rng.standard_normal((REGION["T"], 40, 8)).astype(np.float32)
    y, _ = layer.forward(x)
    out = dense.forward(y.reshape(-1, 64)).copy()
    load.reset()                     # (a real stall of this busy machine is forgotten)
    for _ in range(load.STREAK - 1):
        load.stall()                 # a stalled region now and then is no load
    assert load.stats()["serial_for"] == 0
    load.stall()
    s = load.stats()
    assert s["stalls"] == load.STREAK and 0 < s["serial_for"] <= 0.05 and s["backoff"] == 0.1
    y1, _ = layer.forward(x)
    calls = load.stats()["serial_calls"]
    assert calls >= 1
    out1 = dense.forward(y1.reshape(-1, 64))
    assert load.stats()["serial_calls"] > calls        # the Dense kernels' module too
    np.testing.assert_array_equal(y1, y)
    np.testing.assert_array_equal(out1, out)
    load.reset()
    assert load.stats() == {"stalls": 0, "serial_calls": 0, "serial_for": 0.0,
                            "backoff": 0.05, "adaptive": True, "solo": 0,
                            "by": {"wait": 0, "share": 0, "loop": 0}}


def test_the_backoff_doubles_up_to_two_seconds():
    for _ in range(load.STREAK - 1):
        load.stall()
    backoffs = []
    for _ in range(8):
        load.stall()
        backoffs.append(load.stats()["backoff"])
    assert backoffs == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    assert 1.0 < load.stats()["serial_for"] <= 2.0


def test_stalls_every_other_region_start_the_backoff():
    """A load that takes a core now and then: stalls between clean regions add up."""
    for _ in range(load.STREAK - 1):
        load.stall()
        load.clean()
    assert load.stats()["serial_for"] == 0
    load.stall()
    assert load.stats()["serial_for"] > 0


def test_a_stall_now_and_then_is_no_load():
    for _ in range(10):
        load.stall()
        for _ in range(5):
            load.clean()
    assert load.stats()["stalls"] == 10 and load.stats()["serial_for"] == 0


def wait_out_the_backoff():
    time.sleep(load.stats()["serial_for"] + 0.01)


def test_after_a_backoff_one_stall_starts_the_next_until_a_clean_stretch():
    """A load that comes and goes: once a back-off has run, a clean region does not
    make the next stall a glitch again; clean regions for CLEAN_S seconds do."""
    for _ in range(load.STREAK):
        load.stall()
    assert load.stats()["backoff"] == 0.1
    wait_out_the_backoff()
    load.clean()                     # back on all threads, one clean region
    load.stall()                     # the load is back: one stall is enough
    assert load.stats()["backoff"] == 0.2 and load.stats()["serial_for"] > 0.05
    wait_out_the_backoff()
    for _ in range(20):
        load.clean()
    time.sleep(load.CLEAN_S * 1.2)
    load.clean()                     # clean for CLEAN_S: the load is gone
    assert load.stats()["backoff"] == 0.05
    load.stall()                     # one stall is a glitch again
    assert load.stats()["backoff"] == 0.05 and load.stats()["serial_for"] == 0


def test_a_stall_within_the_clean_stretch_keeps_the_load_in_mind():
    for _ in range(load.STREAK):
        load.stall()
    wait_out_the_backoff()
    load.clean()
    time.sleep(load.CLEAN_S * 0.6)
    load.stall()                     # within the clean stretch: it starts again
    assert load.stats()["backoff"] == 0.2
    wait_out_the_backoff()
    load.clean()
    time.sleep(load.CLEAN_S * 0.6)
    load.clean()
    assert load.stats()["backoff"] == 0.2          # not yet back to 0.05


def test_a_region_that_ends_inside_a_backoff_starts_no_clean_stretch():
    """A region that began on all threads before another call's stall started the
    back-off, and ended clean inside it, says nothing of the time after it."""
    for _ in range(load.STREAK):
        load.stall()
    load.clean()                     # inside the back-off
    wait_out_the_backoff()
    time.sleep(load.CLEAN_S)
    load.clean()                     # the first clean region after it: the stretch starts
    assert load.stats()["backoff"] == 0.1


def test_without_adaptation_a_stall_keeps_every_thread(rng, threads):
    threads(2)
    load.set_adaptive(False)
    for _ in range(load.STREAK):
        load.stall()
    assert load.stats()["stalls"] == load.STREAK and load.stats()["serial_for"] == 0
    seqcore.GRU(8, 64).forward(rng.standard_normal((5, 40, 8)).astype(np.float32))
    assert load.stats()["serial_calls"] == 0


def test_one_thread_never_counts_as_sent_to_one(rng, threads):
    threads(1)
    for _ in range(load.STREAK):
        load.stall()
    seqcore.RNN(8, 64).forward(rng.standard_normal((5, 40, 8)).astype(np.float32))
    assert load.stats()["serial_calls"] == 0


@pytest.mark.parametrize("core_threads", [2, 4])
def test_many_short_calls_from_python_threads(core_threads, rng, threads):
    """4 Python threads x 100 short calls each (forward + backward of small layers, one
    token steps, Dense), every call with the core's threads on, some in the barrier's
    region: each result equals the same call made alone, bitwise."""
    threads(core_threads)
    cases = []
    for i, cell in enumerate(["lstm", "gru_reset_after", "rnn_tanh", "gru"]):
        B = 16 if i % 2 else 2                        # 16 x 160: the steps' region
        layer = make_layer(cell, 12, 160, dtype=np.float32, backend="cython", seed=i)
        x = rng.standard_normal((6, B, 12)).astype(np.float32)
        dy = rng.standard_normal((6, B, 160)).astype(np.float32)
        xs = rng.standard_normal((1, 1, 12)).astype(np.float32)
        dense = seqcore.Dense(160, 70, seed=i)
        cases.append((layer, x, dy, xs, dense))

    def call(case):
        layer, x, dy, xs, dense = case
        with layer.lock:                          # one call at a time per case
            out = run(layer, x, dy)
            out.append(layer.forward(xs)[0])      # one token, one sequence
            out.append(dense.forward(out[0].reshape(-1, 160)).copy())
        return out

    expected = [call(case) for case in cases]
    errors = []

    def worker(k):
        try:
            for n in range(100):
                i = (k + n) % len(cases)
                for g, w in zip(call(cases[i]), expected[i]):
                    np.testing.assert_array_equal(g, w)
        except Exception as exc:                  # reported by the main thread
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors[0]


TORCH_BESIDE = r"""
import numpy as np, torch, seqcore
from seqcore._kernels import load
torch.set_num_threads(2)
a = torch.randn(512, 512)
for _ in range(20):
    a = torch.tanh(a @ a / 512)          # torch's own OpenMP pool, awake
rng = np.random.default_rng(0)
def case(B, H):
    layer = seqcore.LSTM(24, H, seed=0)
    x = rng.standard_normal((40, B, 24)).astype(np.float32)
    dy = rng.standard_normal((40, B, H)).astype(np.float32)
    return layer, x, dy
def run(layer, x, dy):
    layer.zero_grad()
    y, _ = layer.forward(x)
    dx, _ = layer.backward(dy)
    torch.tanh(a @ a)                   # torch's threads between seqcore's calls
    return [y.copy(), dx.copy()] + [g.copy() for g in layer.grads.values()]
barriers = case(6, 384)                 # the products split, a barrier a half-phase
sequences = case(64, 48)                # each thread its sequences
seqcore.set_num_threads(1)
one = [run(*barriers), run(*sequences)]
seqcore.set_num_threads(2)
load.set_adaptive(False)
for k in (0, 1, 7, 50):
    load.force_solo(k)
    for _ in range(3):
        for got, want in zip([run(*barriers), run(*sequences)], one):
            for g, o in zip(got, want):
                np.testing.assert_array_equal(g, o)
print("ok", load.stats()["solo"])
"""


def test_torch_in_the_same_process(tmp_path):
    """torch brings its own OpenMP runtime: with its pool awake in the same process,
    the core's 2-thread regions (split products, regions that go solo, and split
    sequences) give the 1-thread numbers."""
    pytest.importorskip("torch")
    proc = subprocess.run([sys.executable, "-c", TORCH_BESIDE], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path,
                          env=dict(os.environ, PYTHONPATH=os.path.dirname(
                              os.path.dirname(seqcore.__file__))))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok") and int(proc.stdout.split()[1]) > 0
