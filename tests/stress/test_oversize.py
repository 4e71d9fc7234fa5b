"""Sizes that cannot be served: a clear ValueError or MemoryError before anything runs.

A layer whose parameters cannot be allocated, or whose sizes the compiled kernels
would hold in a wrapping C int, fails at construction; a forward whose workspaces
(T*B*G*H values) would overflow an index or exceed the machine's memory fails before
its workspaces are allocated and before any kernel runs. Never a segfault, a wrapped
size, or the OOM killer.

Each request runs in a subprocess, so a crash shows as a negative return code instead
of killing pytest. There the kernels are replaced by a sentinel that exits with code 3
if it is ever called, tracemalloc measures what was allocated before the refusal
(nothing big), and an address-space limit (RLIMIT_AS) is a safety net for this
machine: a request the checks missed fails on NumPy's own MemoryError, whose message
these tests do not accept, instead of allocating gigabytes. Nothing here allocates
more than a few tens of megabytes.
"""
import math
import os
import re
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest

import seqcore
from seqcore import _validation as V

CELLS = {"rnn": seqcore.RNN, "gru": seqcore.GRU, "lstm": seqcore.LSTM}
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(seqcore.__file__)))
MAX_PEAK = 16 * 2**20     # bytes a refused request may have allocated (traced) before failing

PRELUDE = """
import os, resource, sys, tracemalloc
resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))   # safety net: at most 8 GiB
import numpy as np
import seqcore

def no_kernel(*args, **kwargs):
    print("KERNEL REACHED", flush=True)
    os._exit(3)

def guard(layer):
    '''layer, whose kernels exit the process with code 3 if they are ever called.'''
    layer._forward_kernel = layer._backward_kernel = no_kernel
    return layer
"""

REQUEST = """
tracemalloc.start()
try:
{request}
except (ValueError, MemoryError) as exc:
    print(f"{{type(exc).__name__}}: {{exc}}")
    print(f"peak traced: {{tracemalloc.get_traced_memory()[1]}}")
    sys.exit(1)
print("NO ERROR")
"""


def run_isolated(request, setup=""):
    """Run `setup`, then `request` (traced) in a fresh interpreter on this seqcore;
    return (error type, message, traced peak bytes) of the error it must raise."""
    code = (PRELUDE + textwrap.dedent(setup)
            + REQUEST.format(request=textwrap.indent(textwrap.dedent(request), "    ")))
    env = dict(os.environ, PYTHONPATH=PACKAGE_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env, cwd=PACKAGE_ROOT)
    out = proc.stdout + proc.stderr
    assert proc.returncode >= 0, f"crashed with signal {-proc.returncode}:\n{out}"
    assert proc.returncode != 3, f"a kernel ran:\n{out}"
    assert proc.returncode == 1, f"no clean error (return code {proc.returncode}):\n{out}"
    m = re.match(r"(ValueError|MemoryError): (.*)\npeak traced: (\d+)\n$", proc.stdout, re.S)
    assert m, f"unexpected output:\n{out}"
    kind, message, peak = m.group(1), m.group(2), int(m.group(3))
    print(f"{kind}: {message} (traced before it: {peak:,} bytes)")
    assert peak < MAX_PEAK, (f"{peak:,} bytes allocated (or asked of NumPy) before the "
                             f"refusal: {message}")
    return kind, message


def machine_memory():
    """RAM plus swap in bytes, read here independently of seqcore (Linux)."""
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f if ":" in line)
        return sum(int(info[k].split()[0]) * 1024 for k in ("MemTotal", "SwapTotal"))
    except (OSError, KeyError, ValueError) as exc:
        pytest.fail(f"cannot read the machine's memory from /proc/meminfo: {exc!r} "
                    "(these tests need Linux)")


def assert_names_sizes(message, *sizes):
    """The message names each size (a number with or without thousands separators, or
    a string)."""
    for n in sizes:
        forms = [str(n)] + ([f"{n:,}"] if isinstance(n, int) else [])
        assert any(f in message for f in forms), f"{n} not in: {message}"


# ------------------------------------------------------------------ construction

@pytest.mark.parametrize("cell", CELLS)
def test_construction_beyond_memory(cell):
    """hidden_size=10**6: weights of G*H*(H+D) values, 4-16 TB with their gradients."""
    G, H, D = GATES[cell], 10**6, 10
    kind, msg = run_isolated(f"seqcore.{CELLS[cell].__name__}({D}, {H})")
    assert kind == "MemoryError"
    assert "more than this machine's memory" in msg
    assert_names_sizes(msg, f"hidden_size={H}", f"({G * H}, {H + D})")
    need = 2 * 4 * (G * H * (H + D) + G * H)          # parameters and gradients, float32
    assert re.search(r"needs at least [\d.]+ TiB \(([\d,]+) bytes", msg)
    assert int(re.search(r"\(([\d,]+) bytes", msg).group(1).replace(",", "")) >= need


@pytest.mark.parametrize("cell", CELLS)
def test_construction_beyond_index(cell):
    """hidden_size=2**40: a weight matrix of more bytes than an int64 index reaches."""
    G, H, D = GATES[cell], 2**40, 10
    kind, msg = run_isolated(f"seqcore.{CELLS[cell].__name__}({D}, {H}, backend='cython')")
    assert kind == "ValueError"
    assert "more than an array can index" in msg
    assert_names_sizes(msg, f"({G * H}, {H + D})", G * H * (H + D), 4 * G * H * (H + D))


@pytest.mark.parametrize("cell", CELLS)
def test_construction_beyond_c_int(cell):
    """input_size=2**31: the compiled kernels hold it in a C int, where it would wrap
    (the weights alone, 8-25 GB, fit some machines, so the memory check may not stop it)."""
    kind, msg = run_isolated(f"seqcore.{CELLS[cell].__name__}({2**31}, 1, backend='cython')")
    assert kind == "ValueError"
    assert_names_sizes(msg, "input_size", 2**31, 2**31 - 1)
    assert "C int" in msg


def test_model_beyond_memory():
    """A model's layer is refused the same way (LanguageModel(hidden_size=10**6))."""
    kind, msg = run_isolated("""
        vocab = seqcore.Vocab.build(["abcdef"])
        seqcore.LanguageModel(vocab, cell="gru", hidden_size=10**6, seed=0)
    """)
    assert kind == "MemoryError"
    assert_names_sizes(msg, "GRU(", "hidden_size=1000000")


# ----------------------------------------------------------------------- forward
#
# A layer that exists and an x that exists: the workspaces (T+1, B, H), (T, B, G*H)
# are what cannot be. x is a broadcast view (no memory behind it) or, for the
# memory of this very machine, a real array of a few megabytes.

def _broadcast_x(T, B, D=1):
    return f"np.broadcast_to(np.zeros((1, 1, {D}), np.float32), ({T}, {B}, {D}))"


@pytest.mark.parametrize("cell", CELLS)
def test_forward_beyond_index(cell):
    """x (2**30, 2**30, 1) into a layer of H=8: (T+1)*B*H values overflow an int64 index."""
    T = B = 2**30
    kind, msg = run_isolated(f"""
        layer = guard(seqcore.{CELLS[cell].__name__}(1, 8, backend='cython'))
        layer.forward({_broadcast_x(T, B)})
    """)
    assert kind == "ValueError"
    assert "more than an array can index" in msg
    assert_names_sizes(msg, f"T={T}", f"B={B}", f"({T + 1}, {B}, 8)")


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("cell", CELLS)
def test_forward_beyond_memory_of_any_machine(cell, backend):
    """x (2**20, 2**20, 1) into a layer of H=8: 64-224 TiB of workspaces. Refused from
    x's shape, before x is scanned for NaN (hours, on 2**40 values) or copied."""
    T = B = 2**20
    kind, msg = run_isolated(f"""
        layer = guard(seqcore.{CELLS[cell].__name__}(1, 8, backend={backend!r}))
        layer.forward({_broadcast_x(T, B)})
    """)
    assert kind == "MemoryError"
    assert "TiB" in msg and "more than this machine's memory" in msg
    assert_names_sizes(msg, f"T={T}", f"B={B}", f"({T}, {B}, {GATES[cell] * 8})"
                       if cell != "rnn" else f"({T + 1}, {B}, 8)")


@pytest.mark.parametrize("cell", CELLS)
def test_forward_beyond_memory_of_this_machine(cell):
    """A real (T, 1024, 1) input of a few megabytes whose largest workspace alone, the
    gates (T, B, G*H) or the RNN's states (T+1, B, H), needs twice this machine's RAM
    and swap; the layer's parameters are a few megabytes. Each allocation alone may be
    granted on credit (Linux overcommits), so without the check the kernel would run
    until the OOM killer ends the process."""
    H = {"rnn": 2048, "gru": 1024, "lstm": 1024}[cell]
    B, GH = 1024, GATES[cell] * H
    T = math.ceil(2 * machine_memory() / (4 * GH * B))
    assert T * B * 4 < 256 * 2**20, "x itself would be too large for a test"
    kind, msg = run_isolated(setup=f"""
        layer = guard(seqcore.{CELLS[cell].__name__}(1, {H}, backend='cython', seed=0))
        x = np.zeros(({T}, {B}, 1), np.float32)
    """, request="layer.forward(x)")
    assert kind == "MemoryError"
    assert "more than this machine's memory" in msg
    assert_names_sizes(msg, f"T={T}", f"B={B}")


# ------------------------------------------------------------ in this process
#
# The memory bound replaced by a small one (no subprocess needed: nothing is ever
# allocated beyond a few hundred kilobytes).

def _recorded_needs(monkeypatch):
    """Patch V.check_sizes to record (what, bytes needed) of every check."""
    needs = []
    check = V.check_sizes

    def recording(what, arrays, **kwargs):
        total = check(what, arrays, **kwargs)
        needs.append((what, total))
        return total
    monkeypatch.setattr(V, "check_sizes", recording)
    return needs


@pytest.mark.parametrize("cell", CELLS)
def test_backward_beyond_memory(cell, monkeypatch):
    """A backward whose extra arrays (dx, last_grad_sq) do not fit after its forward
    did is refused before its kernel runs, and the layer stays usable."""
    layer = CELLS[cell](64, 8, backend="cython", seed=0)
    x = np.ones((50, 16, 64), np.float32)
    needs = _recorded_needs(monkeypatch)
    y, _ = layer.forward(x)
    forward_need = needs[-1][1]
    monkeypatch.setattr(V, "_memory_limit", [forward_need])     # exactly forward's need
    layer.forward(x)                                            # (checked once: cached)
    kernel = layer._backward_kernel
    layer._backward_kernel = lambda *a, **k: pytest.fail("the backward kernel ran")
    with pytest.raises(MemoryError, match=r"\.backward with T=50, B=16: needs at least .*"
                                          r"dx \(50, 16, 64\)"):
        layer.backward(np.ones_like(y))
    layer._backward_kernel = kernel
    monkeypatch.setattr(V, "_memory_limit", [None])
    dx, _ = layer.backward(np.ones_like(y))
    assert dx.shape == x.shape and np.isfinite(dx).all()


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("cell", CELLS)
def test_needs_are_lower_bounds(cell, backend, monkeypatch):
    """What the checks say a construction, forward or backward needs is never more than
    what it really allocates (traced), so a shape that fits is never refused."""
    needs = _recorded_needs(monkeypatch)
    tracemalloc.start()
    try:
        layer = CELLS[cell](3, 16, num_layers=2, bidirectional=True, backend=backend, seed=0)
        constructed = tracemalloc.get_traced_memory()[1]
        x = np.ones((200, 16, 3), np.float32)
        tracemalloc.reset_peak()
        y, _ = layer.forward(x, lengths=np.full(16, 150))
        forward = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        layer.backward(np.ones_like(y))
        backward = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # parameters (each indexable; with their gradients), initial weights, forward, backward
    assert len(needs) == 5, needs
    for what, n in needs:
        real = (backward if ".backward" in what else forward if ".forward" in what
                else constructed)
        print(f"{what}: counted {n:,} bytes, traced peak {real:,}")
        assert n <= real, f"{what}: the check counts {n:,} bytes, only {real:,} were allocated"
