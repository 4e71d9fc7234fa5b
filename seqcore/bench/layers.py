"""The layer benchmark (`seqcore bench`, `python -m seqcore.bench`): compiled core vs reference vs PyTorch.

(`seqcore bench --train` times whole training steps of a language model instead:
seqcore/bench/training.py, which reuses this module's workers and machine checks.)

Three *sides* run the same operations on the same shapes and the same weights:
``seqcore`` (the compiled core, ``backend="cython"``), ``reference`` (the NumPy
reference, ``backend="numpy"``) and ``torch`` (``nn.RNN``/``GRU``/``LSTM`` and their
``*Cell``, when PyTorch is installed). Each side lives in its own worker process
(``python -m seqcore.bench.worker layers SIDE``, JSON lines on stdin/stdout): an
OpenBLAS-based core and PyTorch in one process distort each other, because the idle
threads of one spin on the cores the other needs. The parent visits the sides in
turn, rotating the order every round, and takes the median of every timed call.

Before anything is timed, every side runs each case once on a fixed input and
returns a sample of its outputs (y; for forward+backward also dx and dW); the parent
checks that they agree with the reference (float32: 2e-3 of the largest magnitude,
float64: 1e-9). A side that disagrees is not timed and makes the run exit 1.

Legend: T time steps, B batch, D input features, H hidden units per direction,
G gate blocks (RNN 1, GRU 3, LSTM 4), L layers, dirs directions (1 or 2).

Kernel paths: seqcore's side runs the path ``--kernels`` (or ``SEQCORE_CPU``) names, else
the CPU's best. A path below the CPU's best stands for a CPU that has no more, so the
other sides are held to the same instruction set as such a CPU would hold them
(``ISA_LIMITS``: PyTorch's ATen and oneDNN, MKL, OpenBLAS and NumPy's own loops),
unless ``--others-native``; the header and the JSON say which.

FLOPs count only the GEMMs (the gate math is O(T*B*G*H), the GEMMs O(T*B*G*H*(D+H))):
forward = sum over layers and directions of 2*T*B*G*H*(D_in + H); forward+backward
= 3x forward (backward does two GEMMs of the forward's size: dW and d[a, x]);
one step = the forward with T = B = 1. GFLOP/s is that count over the median time,
and "%gemm" compares it with this machine's sgemm (dgemm for float64) rate, measured
in the same run, in the seqcore worker, with the BLAS seqcore calls.
"""

import argparse
import contextlib
import gc
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

SEED = 20240517          # weights and inputs: identical on every side
SAMPLE = 256             # entries of each output compared across sides
STEP_TOKENS = 32         # tokens per timed call of the one-step op
TOLERANCE = {"float32": 2e-3, "float64": 1e-9}   # max |a - b| / max |b| over the sample
SIDES = ("seqcore", "reference", "torch", "onnxruntime")
SHORT = {"seqcore": "sc", "reference": "ref", "torch": "torch", "onnxruntime": "ort",
         "baseline": "base"}
# --onnx: seqcore against onnxruntime on the same exported layers, forward and the
# one-token step (onnxruntime has no backward)
ONNX_CONFIGS = ("small", "medium", "stream", "step")
BUSY = 0.05              # flag a row when other processes used this share of the CPUs

# The environment that holds PyTorch (ATen's kernels, oneDNN, MKL) and NumPy (OpenBLAS'
# kernels, NumPy's own SIMD loops) to the instruction set of a kernel path, for every
# side's worker when seqcore's path is forced below the CPU's best: the sides then run
# as on a CPU of that path (OpenBLAS runs its Haswell kernels on AVX2 CPUs, Zen's too).
# generic stands for a CPU without AVX: the others get SSE4.2 (x86-64-v2, the least
# NumPy 2 runs on; OpenBLAS' Nehalem kernels), seqcore's generic path SSE2.
_NO_AVX512 = "X86_V4 AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"
ISA_LIMITS = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OPENBLAS_CORETYPE": "Haswell",
             "NPY_DISABLE_CPU_FEATURES": _NO_AVX512},
    "generic": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OPENBLAS_CORETYPE": "Nehalem",
                "NPY_DISABLE_CPU_FEATURES": "X86_V3 " + _NO_AVX512},
}

# name: B, T, D, H, dtype, L, bidirectional. "step" is token-by-token generation:
# B = 1, one step per forward() call, the state carried.
CONFIGS = {
    "small":         dict(B=32, T=64, D=64, H=128, dtype="float32"),
    "small-f64":     dict(B=32, T=64, D=64, H=128, dtype="float64"),
    "medium":        dict(B=64, T=100, D=256, H=512, dtype="float32"),
    "medium-f64":    dict(B=64, T=100, D=256, H=512, dtype="float64"),
    "medium-bidir":  dict(B=64, T=100, D=256, H=512, dtype="float32", bidirectional=True),
    "medium-2layer": dict(B=64, T=100, D=256, H=512, dtype="float32", num_layers=2),
    "large":         dict(B=64, T=50, D=1024, H=1024, dtype="float32"),
    "stream":        dict(B=1, T=256, D=128, H=256, dtype="float32"),
    "step":          dict(B=1, T=1, D=64, H=256, dtype="float32", step=True),
}
QUICK_CONFIGS = ("small", "stream", "step")

# name: seqcore class and options, PyTorch module and cell, and whether PyTorch
# computes the same function ("exact") or only the closest one it has.
CELLS = {
    "rnn":       dict(cls="RNN", kwargs={"nonlinearity": "tanh"}, G=1, torch="RNN", exact=True),
    "gru":       dict(cls="GRU", kwargs={"reset_after": False}, G=3, torch="GRU", exact=False),
    "gru-ra":    dict(cls="GRU", kwargs={"reset_after": True}, G=3, torch="GRU", exact=True),
    "lstm":      dict(cls="LSTM", kwargs={"peephole": False}, G=4, torch="LSTM", exact=True),
    "lstm-peep": dict(cls="LSTM", kwargs={"peephole": True}, G=4, torch="LSTM", exact=False),
}
# What PyTorch runs for the cells it has no equivalent of.
CLOSEST = {"gru": "gru-ra", "lstm-peep": "lstm"}


# ------------------------------------------------------------------------- cases

def make_cases(config_names, cell_names):
    """[case]: one dict per (configuration, cell, op), with its shapes and GEMM FLOPs."""
    cases = []
    for cname in config_names:
        cfg = dict(CONFIGS[cname])
        step = cfg.pop("step", False)
        cfg.setdefault("num_layers", 1)
        cfg.setdefault("bidirectional", False)
        for cell in cell_names:
            for op in (("step",) if step else ("forward", "fwd+bwd")):
                case = dict(config=cname, cell=cell, op=op, **cfg)
                case["flops"] = gemm_flops(case)
                cases.append(case)
    return cases


def gemm_flops(case):
    """GEMM FLOPs of one call of the op (per token for "step"); see the module docstring."""
    G, H, L = CELLS[case["cell"]]["G"], case["H"], case["num_layers"]
    dirs = 2 if case["bidirectional"] else 1
    T, B = (1, 1) if case["op"] == "step" else (case["T"], case["B"])
    fwd = sum(dirs * 2 * T * B * G * H * ((case["D"] if l == 0 else dirs * H) + H)
              for l in range(L))
    return 3 * fwd if case["op"] == "fwd+bwd" else fwd


def case_label(case):
    return f"{case['config']}/{case['cell']}/{case['op']}"


# ------------------------------------------------------------------- the worker
# Runs in its own process: builds one case at a time and answers commands.

def _summary(arr):
    """A fixed sample of an array and its norm: what the parent compares across sides."""
    import numpy as np
    a = np.asarray(arr, dtype=np.float64).ravel()
    idx = np.random.default_rng(7).choice(a.size, min(a.size, SAMPLE), replace=False)
    return {"sample": a[np.sort(idx)].tolist(), "norm": float(np.linalg.norm(a)),
            "size": int(a.size)}


def _proc_status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _trim_heap():
    """Return the C heap's free pages to the system (glibc's malloc_trim; elsewhere a
    no-op), so that blocks freed before a measured call (by earlier cases, by the
    warm-up) do not stay resident for the call's small allocations (PyTorch's
    per-step tensors at small shapes) to reuse unseen."""
    import ctypes
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass



def machine_warnings(meta, command):
    """The header's warnings: a machine already busy before the run, and the OpenBLAS
    variables that slow NumPy's BLAS (unless the run set them to limit the ISA)."""
    if meta["busy_before"] is not None and meta["busy_before"] > 0.15:
        print(f"  WARNING: the machine was {100 * meta['busy_before']:.0f}% busy before the "
              f"run (load average {meta['loadavg'][0]:.1f}): other processes share the "
              "cores and these timings are unreliable")
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if meta["env"][k] is not None and k not in meta["isa_limits"]:
            print(f"  WARNING: {k}={meta['env'][k]} is set (it slows NumPy's BLAS); run as: "
                  f"env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE {command}")


def finish(doc, path, what):
    """Write the run's JSON to ``path`` (if any); list the failed rows; the exit status."""
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"\nresults written to {path}")
    if doc["failures"]:
        print(f"\n{what} (not timed):\n  " + "\n  ".join(doc["failures"]))
        return 1
    return 0


def _load_stats():
    """The core's notice of lost cores in this worker (seqcore._kernels.load), if any."""
    if "seqcore._kernels.load" not in sys.modules:
        return None
    return sys.modules["seqcore._kernels.load"].stats()


def _load_delta(before, after):
    """What the notice did during a visit: stalled regions, calls sent to one thread,
    regions finished solo (the JSON's ``load_notice``: why a row on all threads ran at
    one thread's speed)."""
    if before is None or after is None:
        return None
    return {k: after.get(k, 0) - before.get(k, 0) for k in ("stalls", "serial_calls", "solo")}


class Worker:
    """One side: builds the layer of a case, checks it, times it, measures its memory."""

    def __init__(self, side):
        self.side = side
        self.case = self.layer = self.module = self.cell = None
        import numpy as np
        self.np = np
        if side == "torch":
            import torch
            self.torch = torch
        if side == "onnxruntime":
            import onnxruntime
            self.ort, self.ort_threads, self.sess = onnxruntime, 1, None

    # -- commands

    def cmd_info(self, msg):
        try:
            from threadpoolctl import threadpool_info
            pools = threadpool_info()
        except ImportError:         # optional: pip install 'seqcore[bench]'
            pools = []
        info = {"side": self.side, "python": sys.version.split()[0], "threadpools": pools}
        import numpy
        info["numpy"] = numpy.__version__
        if self.side == "torch":
            torch = self.torch
            info["torch"] = torch.__version__
            info["torch_threads"] = torch.get_num_threads()
            cfg = torch.__config__.show() + torch.__config__.parallel_info()
            blas = re.search(r"BLAS_INFO=(\w+)", cfg)
            mkl = re.search(r"Math Kernel Library Version ([\w.]+)", cfg)
            dnn = re.search(r"MKL-DNN (v[\w.]+)", cfg)
            info["torch_blas"] = " ".join(
                [blas.group(1) if blas else "unknown"] + ([mkl.group(1)] if mkl else [])
                + ([f"oneDNN {dnn.group(1)}"] if dnn else []))
            info["mkldnn"] = bool(torch.backends.mkldnn.is_available())
            info["cpu_capability"] = torch.backends.cpu.get_cpu_capability().lower()
        elif self.side == "onnxruntime":
            info["onnxruntime"] = self.ort.__version__
            info["ort_threads"] = self.ort_threads
        else:
            import seqcore
            info["seqcore"] = seqcore.__version__
            info["core_threads"] = seqcore.get_num_threads()
            info["kernels"] = seqcore.cpu_info()["kernels"]
        return info

    def cmd_threads(self, msg):
        n = int(msg["threads"])
        if self.side == "torch":
            self.torch.set_num_threads(n)
            return {"threads": self.torch.get_num_threads()}
        if self.side == "onnxruntime":
            self.ort_threads = n                      # the sessions' intra-op threads
            return {"threads": n}
        import seqcore
        seqcore.set_num_threads(n)                    # the compiled core's own threads
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            return {"threads": None}
        self._limits = threadpool_limits(limits=n, user_api="blas")
        return {"threads": n}

    def cmd_gemm(self, msg):
        """This machine's sgemm and dgemm rate (GFLOP/s), with NumPy's BLAS."""
        np = self.np
        n, reps = int(msg["n"]), int(msg["reps"])
        out = {}
        for name, dt in (("sgemm", np.float32), ("dgemm", np.float64)):
            rng = np.random.default_rng(0)
            a = rng.standard_normal((n, n)).astype(dt)
            b = rng.standard_normal((n, n)).astype(dt)
            c = np.zeros((n, n), dt)
            np.matmul(a, b, out=c)                                   # warm-up
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                np.matmul(a, b, out=c)
                times.append(time.perf_counter() - t0)
            out[name] = 2 * n ** 3 / min(times) / 1e9      # the best: what the machine can do
        out["n"] = n
        return out

    def cmd_setup(self, msg):
        self.cmd_clear(msg)
        case, self.perturb = msg["case"], bool(msg.get("perturb", False))
        np = self.np
        dtype = np.dtype(case["dtype"])
        rng = np.random.default_rng(SEED + 1)
        dirs = 2 if case["bidirectional"] else 1
        T, B, D, H = case["T"], case["B"], case["D"], case["H"]
        if case["op"] == "step":
            self.x = rng.standard_normal((STEP_TOKENS, 1, 1, D)).astype(dtype)
        else:
            self.x = rng.standard_normal((T, B, D)).astype(dtype)
            self.dy = rng.standard_normal((T, B, dirs * H)).astype(dtype)
        cell = case["cell"]
        self.exact = True
        if self.side == "torch" and not CELLS[cell]["exact"]:
            cell, self.exact = CLOSEST[cell], False
        backend = "numpy" if self.side == "reference" else "cython"
        self.layer = self._make_layer(case, cell, backend)
        if self.side == "torch":
            self._setup_torch(case)
        if self.side == "onnxruntime":
            self._setup_ort(case)
        self.case = case
        return {"exact": self.exact, "ran_cell": cell}

    def _make_layer(self, case, cell, backend):
        import seqcore
        spec = CELLS[cell]
        layer = getattr(seqcore, spec["cls"])(
            case["D"], case["H"], num_layers=case["num_layers"],
            bidirectional=case["bidirectional"], dtype=self.np.dtype(case["dtype"]),
            backend=backend, seed=SEED, **spec["kwargs"])
        if self.perturb:      # a deliberately wrong side, to test the agreement check
            for k in layer.params:
                if k.startswith("W_"):
                    layer.params[k] = layer.params[k] + layer.dtype.type(0.05)
        return layer

    def _setup_torch(self, case):
        torch = self.torch
        from seqcore import interop
        self.module = interop.to_torch(self.layer)
        if case["op"] == "step":
            self.tx = torch.from_numpy(self.x[:, 0].copy())          # (tokens, 1, D)
            m = self.module
            kind = type(m).__name__                          # RNN, GRU or LSTM
            kw = {"nonlinearity": m.nonlinearity} if kind == "RNN" else {}
            cell = getattr(torch.nn, kind + "Cell")(m.input_size, m.hidden_size, **kw)
            cell = cell.to(m.weight_ih_l0.dtype)
            with torch.no_grad():
                for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, n).copy_(getattr(m, n + "_l0"))
            self.cell = cell
        else:
            self.tx = torch.from_numpy(self.x.copy()).requires_grad_(True)
            self.tdy = torch.from_numpy(self.dy.copy())

    def _setup_ort(self, case):
        """The layer of the case exported (seqcore.onnx), in a session of the run's threads."""
        import tempfile
        import seqcore.onnx
        if case["op"] == "fwd+bwd" or case["dtype"] != "float32":
            raise ValueError("onnxruntime runs float32 forward passes only")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "layer.onnx")
            seqcore.onnx.export(self.layer, path)
            options = self.ort.SessionOptions()
            options.intra_op_num_threads = self.ort_threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            self.sess = self.ort.InferenceSession(path, options,
                                                  providers=["CPUExecutionProvider"])
        T, B = self.x.shape[:2] if case["op"] != "step" else (1, 1)
        self.ort_lengths = self.np.full(B, T, self.np.int64)

    # The ops. Each returns the outputs the agreement check compares.

    def _zero_state(self):
        np, H = self.np, self.case["H"]
        z = np.zeros((1, 1, H), self.layer.dtype)
        return (z, z.copy()) if self.case["cell"].startswith("lstm") else z

    def op_seqcore(self, check=False):
        """seqcore and reference: the public layer API."""
        op, layer = self.case["op"], self.layer
        if op == "forward":
            y, _ = layer.forward(self.x)
            return {"y": y} if check else None
        if op == "fwd+bwd":
            if check:
                layer.zero_grad()
            y, _ = layer.forward(self.x)
            dx, _ = layer.backward(self.dy)
            return {"y": y, "dx": dx, "dW": layer.grads["W_l0"]} if check else None
        # step: token-by-token through the public forward, the state carried
        state = self._zero_state() if check or self._state is None else self._state
        ys = []
        for t in range(STEP_TOKENS):
            y, state = layer.forward(self.x[t], state)
            if check:
                ys.append(y)
        self._state = state
        return {"y": self.np.concatenate(ys)} if check else None

    def op_torch(self, check=False):
        torch, op = self.torch, self.case["op"]
        if op == "forward":
            with torch.no_grad():
                y, _ = self.module(self.tx)
            return {"y": y.numpy()} if check else None
        if op == "fwd+bwd":
            if check:
                self.module.zero_grad()
                self.tx.grad = None
            y, _ = self.module(self.tx)
            y.backward(self.tdy)
            if not check:
                return None
            return {"y": y.detach().numpy(), "dx": self.tx.grad.numpy(),
                    "dW": self._torch_dW()}
        lstm = isinstance(self.cell, torch.nn.LSTMCell)
        if check or self._state is None:
            h = torch.zeros(1, self.case["H"], dtype=self.cell.weight_ih.dtype)
            state = (h, h.clone()) if lstm else h
        else:
            state = self._state
        ys = []
        with torch.no_grad():
            for t in range(STEP_TOKENS):
                state = self.cell(self.tx[t], state)
                if check:
                    ys.append((state[0] if lstm else state).numpy().copy())
        self._state = state
        return {"y": self.np.stack(ys)} if check else None

    def op_ort(self, check=False):
        """onnxruntime: the exported graph; the step feeds the state back, as seqcore's."""
        if self.case["op"] == "forward":
            y = self.sess.run(["y"], {"x": self.x, "lengths": self.ort_lengths})[0]
            return {"y": y} if check else None
        lstm = self.case["cell"].startswith("lstm")
        state = self._zero_state() if check or self._state is None else self._state
        state = state if lstm else (state,)
        names = ["y", "a", "c"] if lstm else ["y", "a"]
        ys = []
        for t in range(STEP_TOKENS):
            feed = {"x": self.x[t], "lengths": self.ort_lengths, "a0": state[0]}
            if lstm:
                feed["c0"] = state[1]
            y, *state = self.sess.run(names, feed)
            if check:
                ys.append(y)
        self._state = tuple(state) if lstm else state[0]
        return {"y": self.np.concatenate(ys)} if check else None

    def _torch_dW(self):
        """PyTorch's dW of layer 0 in seqcore's layout (W = [W_hh | W_ih], GRU u block negated)."""
        g = lambda n: getattr(self.module, n + "_l0").grad.numpy()  # noqa: E731
        dW = self.np.concatenate([g("weight_hh"), g("weight_ih")], axis=1)
        if isinstance(self.module, self.torch.nn.GRU):
            H = self.case["H"]
            dW[H:2 * H] *= -1
        return dW

    def run(self, check=False):
        op = {"torch": self.op_torch, "onnxruntime": self.op_ort}.get(self.side, self.op_seqcore)
        return op(check)

    def cmd_clear(self, msg):
        self.case = self.layer = self.module = self.cell = self.sess = None
        gc.collect()
        return {}

    def cmd_check(self, msg):
        """One call on the fixed input (outputs sampled), then one timed warm-up call."""
        self._state = None
        t0 = time.perf_counter()
        raw = self.run(check=True)
        first = time.perf_counter() - t0
        out = {k: _summary(v) for k, v in raw.items()}
        t0 = time.perf_counter()
        self.run()
        second = time.perf_counter() - t0
        # The faster of the two calls: one slowed by a passing spike of load must not
        # shrink the number of timed calls (the parent plans reps and rounds from it).
        return {"outputs": out, "warmup_s": min(first, second) / self._units()}

    def _units(self):
        return STEP_TOKENS if self.case["op"] == "step" else 1

    def cmd_time(self, msg):
        """Seconds per call (per token for "step") of ``reps`` consecutive calls."""
        times = []
        before = _load_stats()
        gc.collect()
        gc.disable()
        try:
            for _ in range(int(msg["reps"])):
                t0 = time.perf_counter()
                self.run()
                times.append((time.perf_counter() - t0) / self._units())
        finally:
            gc.enable()
        return {"times": times, "load": _load_delta(before, _load_stats())}

    def cmd_mem(self, msg):
        """Peak resident memory (bytes) of a second call on a fresh layer, above the
        resident size before the first: what the side keeps between calls (seqcore's
        layers keep forward's cache and backward's scratch) counts, and so does the
        peak of the call itself.

        A twin layer of the case runs one call first and is dropped, so that what a
        library sets up once per process or per shape (thread pools, oneDNN's
        primitives) is in place for every case alike; then the heap is trimmed
        (_trim_heap). The parent starts memory workers with glibc's mmap threshold
        pinned (MALLOC_MMAP_THRESHOLD_), so large buffers go back to the system when
        freed. So the resident size before the first call holds no free memory that
        the calls could reuse unseen.
        """
        case = self.case
        self._state = None
        self.run()                                          # the twin's warm-up call
        self.cmd_setup({"case": case, "perturb": self.perturb})   # the fresh layer
        gc.collect()
        _trim_heap()
        before = _proc_status_kb("VmRSS")
        self.run()
        gc.collect()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")                                # reset VmHWM to VmRSS
        except OSError as exc:
            return {"peak_bytes": None, "error": f"cannot reset VmHWM: {exc}"}
        self.run()
        peak = _proc_status_kb("VmHWM")
        return {"peak_bytes": max(0, peak - before) * 1024}


def worker_main(side, make=None):
    """The worker loop: one JSON command per line on stdin, one JSON answer per line.
    ``make(side)`` builds the object whose ``cmd_*`` methods answer (default Worker)."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)                  # stray prints (ours or a library's) go to stderr
    sys.stdout = sys.stderr
    try:
        w = (make or Worker)(side)
        reply = {"ok": True}
    except Exception as exc:       # noqa: BLE001 - reported to the parent
        w, reply = None, {"error": f"{type(exc).__name__}: {exc}"}
    out.write(json.dumps(reply) + "\n")
    out.flush()
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "quit":
            break
        try:
            reply = getattr(w, "cmd_" + msg["cmd"])(msg)
        except Exception as exc:   # noqa: BLE001 - reported to the parent
            import traceback
            reply = {"error": f"{type(exc).__name__}: {exc}",
                     "traceback": traceback.format_exc()}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


# -------------------------------------------------------------------- the parent

class WorkerError(RuntimeError):
    pass


class WorkerProcess:
    """The parent's handle on one worker subprocess."""

    def __init__(self, side, env=None, bench="layers", runs=None, cwd=None):
        """cwd: the worker's working directory, which `python -m` puts first on its
        path: a baseline side runs in its own tree, or a source tree the parent was
        started in would shadow the baseline's PYTHONPATH."""
        self.side = side      # the parent's name for it; runs: the worker's side, if other
        cmd = [sys.executable, "-m", "seqcore.bench.worker", bench, runs or side]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env, bufsize=1, cwd=cwd)
        self._started = False

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise WorkerError(f"{self.side} worker exited (status {self.proc.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise WorkerError(f"{self.side} worker: {reply['error']}\n"
                              f"{reply.get('traceback', '')}".rstrip())
        return reply

    def ready(self):
        if not self._started:
            self._read()
            self._started = True

    def call(self, cmd, **kw):
        self.ready()
        self.proc.stdin.write(json.dumps(dict(cmd=cmd, **kw)) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def compare(out, ref, dtype):
    """Max relative error of a side's sampled outputs against the reference's, per output."""
    errs = {}
    for name, r in ref.items():
        o = out.get(name)
        if o is None or o["size"] != r["size"]:
            errs[name] = float("inf")
            continue
        scale = max(max(abs(v) for v in r["sample"]), 1e-30)
        e = max(abs(a - b) for a, b in zip(o["sample"], r["sample"])) / scale
        e = max(e, abs(o["norm"] - r["norm"]) / max(r["norm"], 1e-30))
        errs[name] = e
    return errs


def paired_ratio(a, b):
    """Median over rounds of a's time over b's time in the same round.

    Each round times the sides back to back, so a slowdown of the machine that lasts a
    round or longer (this shared host's are seconds to minutes long) scales both times
    of a pair and cancels in its ratio; the median then drops the rounds in which it
    struck one side only. Pairs are taken while both sides ran: the reference may run
    fewer rounds than the others, always the first ones."""
    pairs = [x / y for x, y in zip(a, b)]
    return statistics.median(pairs) if pairs else None


def _lib_owner(path):
    """Which package shipped a BLAS (the reference and the gemm rate use NumPy's)."""
    for owner in ("scipy", "numpy", "torch"):
        if f"{owner}.libs" in path or f"/{owner}/" in path:
            return owner
    return os.path.basename(path)


def blas_line(info):
    """'scipy: openblas 0.3.30 SkylakeX, 2 threads; numpy: ...' for each BLAS of a side."""
    parts = []
    pools = sorted((p for p in info.get("threadpools", []) if p.get("user_api") == "blas"),
                   key=lambda p: _lib_owner(p.get("filepath", "")) != "numpy")
    for p in pools:
        parts.append(f"{_lib_owner(p.get('filepath', ''))}: {p.get('internal_api')} "
                     f"{p.get('version')} {p.get('architecture', '?')}, "
                     f"{p.get('num_threads')} threads")
    if info.get("side") == "torch":
        parts.insert(0, f"torch {info.get('torch')}: {info.get('torch_blas')}, "
                        f"{info.get('torch_threads')} threads (mkldnn={info.get('mkldnn')})")
    if info.get("side") == "onnxruntime":
        parts.insert(0, f"onnxruntime {info.get('onnxruntime')}: its own kernels, "
                        f"{info.get('ort_threads')} intra-op threads")
    return "; ".join(parts) or "BLAS unknown (pip install threadpoolctl to see it)"


def _blas_threads(info):
    """The threads seqcore's compiled core uses, else those of any BLAS."""
    if info.get("core_threads"):
        return info["core_threads"]
    pools = [p for p in info.get("threadpools", []) if p.get("user_api") == "blas"]
    return pools[0]["num_threads"] if pools else (os.cpu_count() or 1)


def fmt_time(s):
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def fmt_mem(b):
    return "-" if b is None else f"{b / 2 ** 20:.1f}M"


class Bench:
    """One run of the comparison: workers, agreement checks, rounds, table, JSON."""

    def __init__(self, args, log=None):
        self.args = args
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self.quick = args.quick
        self.rounds = args.rounds or (3 if self.quick else 5)
        self.visit_s = 0.03 if self.quick else 0.25     # time per side per round
        self.ref_budget = args.ref_budget or (1.0 if self.quick else 30.0)
        self.perturb = set(args.perturb or ())
        self.settle = args.settle if args.settle is not None else (0.02 if self.quick else 0.1)

    def path_env(self):
        """The workers' environment for seqcore's kernel path: SEQCORE_CPU, and the
        other sides' limits (ISA_LIMITS) when the path is below the CPU's best."""
        from .. import _dispatch
        path = self.args.kernels or _dispatch.active()
        supported = _dispatch.supported()
        if path not in supported:
            raise ValueError(f"--kernels {path}: this CPU runs {', '.join(supported)}")
        env = {_dispatch.ENV: path}
        self.limits = {}
        if path != supported[0] and not self.args.others_native:
            self.limits = ISA_LIMITS.get(path, {})
        env.update(self.limits)
        return env

    def sides(self):
        default = "seqcore,onnxruntime" if self.args.onnx else "seqcore,reference,torch"
        sides = [s for s in (self.args.sides or default).split(",") if s]
        for s in sides:
            if s not in SIDES:
                raise ValueError(f"--sides: unknown side {s!r}; choose from {', '.join(SIDES)}")
        if "torch" in sides and importlib.util.find_spec("torch") is None:
            self.log("seqcore bench: PyTorch is not installed; the torch side is left out")
            sides.remove("torch")
        if "onnxruntime" in sides and (importlib.util.find_spec("onnxruntime") is None
                                       or importlib.util.find_spec("onnx") is None):
            self.log("seqcore bench: onnx or onnxruntime is not installed (pip install "
                     "'seqcore[onnx]'); the onnxruntime side is left out")
            sides.remove("onnxruntime")
        if self.args.baseline:
            sides.insert(sides.index("seqcore") + 1 if "seqcore" in sides else 0, "baseline")
        return sides

    def baseline_env(self, env):
        """The baseline side's environment: seqcore imported from --baseline PATH."""
        path = os.path.abspath(self.args.baseline)
        if not os.path.isfile(os.path.join(path, "seqcore", "__init__.py")):
            raise ValueError(f"--baseline: {self.args.baseline!r} holds no seqcore package "
                             "(expected a source tree built in place, or a site-packages "
                             "folder)")
        return dict(env, PYTHONPATH=os.pathsep.join(
            p for p in (path, env.get("PYTHONPATH")) if p))

    def cases(self):
        a = self.args
        if a.shape:
            try:
                B, T, D, H = (int(v) for v in a.shape.split(","))
            except ValueError:
                raise ValueError(f"--shape: expected B,T,D,H (four integers), got {a.shape!r}")
            CONFIGS["custom"] = dict(B=B, T=T, D=D, H=H, dtype=a.dtype)
            names = ["custom"]
        elif a.only:
            names = [n for n in a.only.split(",") if n]
        elif a.onnx:
            names = list(ONNX_CONFIGS)
        else:
            names = list(QUICK_CONFIGS if self.quick else CONFIGS)
        for n in names:
            if n not in CONFIGS:
                raise ValueError(f"--only: unknown configuration {n!r}; choose from "
                                 f"{', '.join(CONFIGS)}")
        cells = [c for c in (a.cells or ",".join(CELLS)).split(",") if c]
        for c in cells:
            if c not in CELLS:
                raise ValueError(f"--cells: unknown cell {c!r}; choose from {', '.join(CELLS)}")
        cases = make_cases(names, cells)
        if a.onnx:                                    # onnxruntime has no backward pass
            cases = [c for c in cases if c["op"] != "fwd+bwd"]
        return cases

    def run(self):
        sides, cases = self.sides(), self.cases()
        self.busy = busy_fraction()           # before our own workers add load
        # Timing workers, and memory workers with glibc's mmap threshold pinned (see cmd_mem).
        env = dict(os.environ, **self.path_env())
        mem_env = dict(env, MALLOC_MMAP_THRESHOLD_="131072")
        base_env = self.baseline_env(env) if "baseline" in sides else None
        workers = {s: WorkerProcess(s, env=env) for s in sides if s != "baseline"}
        if base_env:
            workers["baseline"] = WorkerProcess("baseline", env=base_env, runs="seqcore",
                                                cwd=os.path.abspath(self.args.baseline))
        memw = ({s: WorkerProcess(s, env=mem_env) for s in sides
                 if s not in ("reference", "onnxruntime", "baseline")}
                if not self.args.no_memory else {})
        try:
            return self._run(sides, cases, workers, memw)
        finally:
            for w in list(workers.values()) + list(memw.values()):
                w.close()

    def _run(self, sides, cases, workers, memw):
        a = self.args
        meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.machine(),
                "load": getattr(self.args, "load", 0) or 0,   # busy processes beside the run
                "load_kind": getattr(self.args, "load_kind", None),
                "processor": cpu_name(), "cpus": os.cpu_count(), "quick": self.quick,
                "rounds": self.rounds, "settle_s": self.settle, "sides": sides,
                "tolerance": TOLERANCE, "step_tokens": STEP_TOKENS,
                "env": {k: os.environ.get(k) for k in
                        ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                         "OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
        infos = {s: w.call("info") for s, w in workers.items()}
        base = "seqcore" if "seqcore" in infos else sides[0]
        threads = a.threads or _blas_threads(infos[base])
        for w in list(workers.values()) + list(memw.values()):
            w.call("threads", threads=threads)
        infos = {s: w.call("info") for s, w in workers.items()}
        meta.update(threads=threads, workers=infos, busy_before=self.busy,
                    loadavg=os.getloadavg(), isa_limits=self.limits)
        from .. import _dispatch
        meta.update(kernels=infos.get("seqcore", {}).get("kernels"),
                    cpu_supports=list(_dispatch.supported()))
        gemm = workers[base].call("gemm", n=2048, reps=3 if self.quick else 5)
        meta["gemm"] = gemm

        self._header(meta)
        results, failures = [], []
        for i, case in enumerate(cases, 1):
            r = self._run_case(case, sides, workers, memw, gemm)
            results.append(r)
            failures += [f"{case_label(case)}: {s} "
                         + ("failed" if r["status"][s] == "error"
                            else f"disagrees with {r['checked_against']}")
                         + f" ({r['agreement'][s]})" for s in r["mismatch"]]
            line = "  ".join(f"{s} {fmt_time(r['median_s'].get(s))}" for s in sides)
            self.log(f"[{i}/{len(cases)}] {case_label(case)}: {line}"
                     + ("  MISMATCH" if r["mismatch"] else ""))
        # The gemm rate again at the end, keeping the best of the two: one measured while
        # other processes were busy would inflate every %gemm.
        end = workers[base].call("gemm", n=2048, reps=3 if self.quick else 5)
        for k in ("sgemm", "dgemm"):
            gemm[k + "_start"], gemm[k + "_end"] = gemm[k], end[k]
            gemm[k] = max(gemm[k], end[k])
        for r in results:
            rate = gemm["sgemm" if r["dtype"] == "float32" else "dgemm"]
            r["pct_gemm"] = {s: 100 * g / rate for s, g in r["gflops"].items()}
        print(f"  machine:  sgemm {gemm['sgemm']:.1f} GFLOP/s, dgemm {gemm['dgemm']:.1f} GFLOP/s "
              "(best at the start and the end of the run; %gemm uses these)")
        print(self.table(results, sides))
        noisy = sum(1 for r in results if (r.get("foreign_load") or 0) >= BUSY)
        if noisy:
            print(f"\nWARNING: other processes used the CPUs during {noisy} of {len(results)} "
                  "rows (busy column); rerun on an idle machine for numbers to quote.")
        return finish({"meta": meta, "results": results, "failures": failures}, a.json,
                      "OUTPUTS DISAGREE OR A SIDE FAILED")

    def _header(self, meta):
        print(f"seqcore bench: {meta['processor']}, {meta['cpus']} CPUs, "
              f"{meta['threads']} threads per side, {meta['rounds']} rounds"
              + (" (quick)" if self.quick else ""))
        if meta["kernels"]:
            best = meta["cpu_supports"][0]
            print(f"  kernels:  seqcore's {meta['kernels']} path"
                  + (" (the CPU's best)" if meta["kernels"] == best else
                     f", forced (the CPU's best is {best})"))
        if meta["isa_limits"]:
            print("  limits:   the other sides held to the same instruction set: "
                  + " ".join(f"{k}={v!r}" if " " in v else f"{k}={v}"
                             for k, v in meta["isa_limits"].items()))
        for s, info in meta["workers"].items():
            print(f"  {s:<9} {blas_line(info)}")
        print("  (seqcore's core multiplies on its own packed kernels over its own threads; "
              "the reference calls NumPy's BLAS; PyTorch its MKL and oneDNN)")
        g = meta["gemm"]
        n = 3 if self.quick else 5
        print(f"  machine:  sgemm {g['sgemm']:.1f} GFLOP/s, dgemm {g['dgemm']:.1f} GFLOP/s "
              f"(best of {n}x n={g['n']}, NumPy's BLAS, at the start)")
        machine_warnings(meta, "seqcore bench")
        sys.stdout.flush()

    def _run_case(self, case, sides, workers, memw, gemm):
        r = dict(case, times={}, round_medians={}, median_s={}, status={}, agreement={},
                 peak_bytes={}, mismatch=[])
        dtype = case["dtype"]
        # 1. Build and check: every side once on the fixed input.
        checks, warm = {}, {}
        for s in list(sides):
            if s == "onnxruntime" and (case["op"] == "fwd+bwd" or dtype != "float32"):
                r["status"][s] = "n/a"                  # float32 forward passes only
                continue
            try:
                setup = workers[s].call("setup", case=case, perturb=s in self.perturb)
                if s == "torch":
                    r["torch_exact"] = setup["exact"]
                    r["torch_ran"] = setup["ran_cell"]
                c = workers[s].call("check")
            except WorkerError as exc:          # reported; the other sides go on
                r["status"][s] = "error"
                r["agreement"][s] = str(exc).splitlines()[0]
                r["mismatch"].append(s)
                continue
            checks[s], warm[s] = c["outputs"], c["warmup_s"]
        ref_side = "reference" if "reference" in checks else next(iter(checks), None)
        r["checked_against"] = ref_side
        for s in sides:
            if s == ref_side or s not in checks:
                continue
            if s == "torch" and not r.get("torch_exact", True):
                r["agreement"][s] = "n/a (closest PyTorch cell)"
                continue
            errs = compare(checks[s], checks[ref_side], dtype)
            ok = all(e <= TOLERANCE[dtype] for e in errs.values())
            r["agreement"][s] = {k: float(f"{e:.3g}") for k, e in errs.items()}
            if not ok:
                r["mismatch"].append(s)
        # 2. Time: rounds over the sides, order rotated each round.
        plan = {}
        for s in sides:
            if s in r["mismatch"]:
                r["status"].setdefault(s, "mismatch")
                continue
            if r["status"].get(s) == "n/a":
                continue
            call_s = max(warm[s] * (STEP_TOKENS if case["op"] == "step" else 1), 1e-9)
            if s == "reference" and call_s > self.ref_budget:
                r["status"][s] = f"skipped: one call {call_s:.1f} s > budget {self.ref_budget:g} s"
                continue
            # reps calls per visit (about visit_s); the reference, the slow side, gets
            # fewer rounds when they would exceed its budget (it never stalls the run).
            reps = max(1, min(200, round(self.visit_s / call_s)))
            rounds = self.rounds
            if s == "reference":
                rounds = max(1, min(rounds, int(self.ref_budget / (reps * call_s))))
            plan[s] = (rounds, reps)
            r["status"][s] = "ok"
            r["times"][s] = []
            r["round_medians"][s] = []
        pids = [os.getpid()] + [w.proc.pid for w in workers.values()]
        ticks0 = cpu_ticks(pids)
        for k in range(self.rounds):
            order = [s for s in sides[k % len(sides):] + sides[:k % len(sides)] if s in plan]
            for s in order:
                rounds, reps = plan[s]
                if k >= rounds:
                    continue
                reply = workers[s].call("time", reps=reps)
                times = reply["times"]
                r["times"][s] += times
                if reply.get("load"):
                    notice = r.setdefault("load_notice", {}).setdefault(
                        s, {"stalls": 0, "serial_calls": 0, "solo": 0})
                    for name, n in reply["load"].items():
                        notice[name] += n
                r["round_medians"][s].append(statistics.median(times))
                time.sleep(self.settle)   # let its idle BLAS/OpenMP threads go to sleep
                wait_idle(workers[s].proc.pid)
        # CPU used by other processes while this case was timed: the timings of a case
        # run on a shared, busy machine are flagged rather than silently wrong.
        r["foreign_load"] = foreign_load(ticks0, cpu_ticks(pids))
        for s, t in r["times"].items():
            r["median_s"][s] = statistics.median(t)
        # 3. Ratios (time of seqcore / time of the other: < 1 means seqcore is faster),
        # paired by round; the ratio of the overall medians is kept for comparison.
        rm, med = r["round_medians"], r["median_s"]
        for other, key in (("torch", "ratio_torch"), ("reference", "ratio_reference"),
                           ("onnxruntime", "ratio_onnxruntime"), ("baseline", "ratio_baseline")):
            both = "seqcore" in med and other in med
            r[key] = paired_ratio(rm["seqcore"], rm[other]) if both else None
            r[key + "_of_medians"] = med["seqcore"] / med[other] if both else None
        r["gflops"] = {s: case["flops"] / m / 1e9 for s, m in r["median_s"].items()}
        # 4. Peak memory of forward+backward, in the memory workers.
        if case["op"] == "fwd+bwd":
            for s, w in memw.items():
                if s in r["mismatch"]:
                    continue
                try:
                    w.call("setup", case=case, perturb=s in self.perturb)
                    r["peak_bytes"][s] = w.call("mem")["peak_bytes"]
                    w.call("clear")
                except WorkerError as exc:
                    self.log(f"seqcore bench: memory of {s} not measured: {exc}")
                    r["peak_bytes"][s] = None
        return r

    def table(self, results, sides):
        head = ["config", "cell", "op"] + [s for s in sides] + \
               (["sc/torch"] if "torch" in sides else []) + \
               (["sc/ref"] if "reference" in sides else []) + \
               (["sc/ort"] if "onnxruntime" in sides else []) + \
               (["sc/base"] if "baseline" in sides else []) + ["GFLOP/s", "%gemm"] + \
               [f"%gemm {SHORT[s]}" for s in sides if s not in ("seqcore", "baseline")]
        mem_sides = [s for s in sides if s not in ("reference", "onnxruntime", "baseline")]
        if not self.args.no_memory:
            head += [f"mem {s}" for s in mem_sides]
        head.append("busy")
        rows = []
        for r in results:
            row = [r["config"], r["cell"], r["op"]]
            for s in sides:
                st = r["status"].get(s, "")
                row.append(fmt_time(r["median_s"].get(s)) if st == "ok" else
                           {"mismatch": "MISMATCH", "error": "ERROR", "n/a": "-"}.get(
                               st, "skipped"))
            if "torch" in sides:
                v = r["ratio_torch"]
                row.append("-" if v is None else
                           (f"{v:.2f}" if r.get("torch_exact", True) else f"~{v:.2f}"))
            if "reference" in sides:
                v = r["ratio_reference"]
                row.append("-" if v is None else f"{v:.3f}")
            if "onnxruntime" in sides:
                v = r["ratio_onnxruntime"]
                row.append("-" if v is None else f"{v:.2f}")
            if "baseline" in sides:
                v = r["ratio_baseline"]
                row.append("-" if v is None else f"{v:.3f}")
            main = "seqcore" if "seqcore" in r["gflops"] else next(iter(r["gflops"]), None)
            row.append(f"{r['gflops'][main]:.1f}" if main else "-")
            row.append(f"{r['pct_gemm'][main]:.0f}%" if main else "-")
            row += [f"{r['pct_gemm'][s]:.0f}%" if s in r["pct_gemm"] else "-"
                    for s in sides if s not in ("seqcore", "baseline")]
            if not self.args.no_memory:
                row += [fmt_mem(r["peak_bytes"].get(s)) if r["op"] == "fwd+bwd" else ""
                        for s in mem_sides]
            fl = r.get("foreign_load")
            row.append("" if fl is None or fl < BUSY else f"{100 * fl:.0f}%!")
            rows.append(row)
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        line = lambda cells: "  ".join(str(c).rjust(w) if i >= 3 else str(c).ljust(w)  # noqa: E731
                                       for i, (c, w) in enumerate(zip(cells, widths)))
        out = ["", line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
        out.append("")
        out.append("medians per call (per token for op=step). sc/torch, sc/ref, sc/ort, sc/base: time of "
                   "seqcore over time of the other side (< 1: seqcore is faster; 0.50 = 2x faster), the "
                   "median over rounds of the ratio within a round; ~ marks PyTorch's closest "
                   "cell (gru: reset-after GRU; lstm-peep: LSTM without peepholes). GFLOP/s and "
                   "%gemm: seqcore's GEMM FLOPs over its median, against this run's sgemm/dgemm "
                   "rate; %gemm ref and %gemm torch: the same FLOPs over that side's median (a "
                   "side at 50% or more leaves no room for a 2x lead). mem: peak RSS of a second "
                   "forward+backward on a fresh layer above the RSS before the first (memory "
                   "kept between calls counts). busy: CPU share used by other processes while the "
                   f"row was timed, shown from {100 * BUSY:.0f}% (those timings are unreliable).")
        return "\n".join(out)


def cpu_ticks(pids):
    """(busy ticks of the whole machine, ticks used by `pids`, total ticks), or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        ours = 0
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ours += int(fields[11]) + int(fields[12])          # utime + stime
    except (OSError, ValueError, IndexError):
        return None
    return sum(v) - v[3] - v[4], ours, sum(v)


def wait_idle(pid, limit=0.5, quantum=0.03):
    """Wait (at most `limit` s) until process `pid` has used no CPU for `quantum` s.

    A side's BLAS threads may spin for a while after its turn, and the next side then
    runs with a core taken: the same build's medium peephole-LSTM forward+backward
    timed 596 ms after the reference's turns and 429 ms alone. `quantum` spans three
    clock ticks, the resolution of /proc's CPU times."""
    deadline = time.monotonic() + limit
    last = cpu_ticks([pid])
    while last is not None and time.monotonic() < deadline:
        time.sleep(quantum)
        now = cpu_ticks([pid])
        if now is None or now[1] == last[1]:
            return
        last = now


def foreign_load(start, end):
    """Fraction of the machine's CPU time used by processes other than the bench's."""
    if start is None or end is None or end[2] <= start[2]:
        return None
    busy, ours, total = (e - s for s, e in zip(start, end))
    return max(0.0, (busy - ours) / total)


def busy_fraction(seconds=0.5):
    """Fraction of all CPU time spent busy over a short interval (from /proc/stat), or None."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]                       # total, idle + iowait
    try:
        t0, i0 = sample()
        time.sleep(seconds)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1 - (i1 - i0) / max(t1 - t0, 1)


def path_envs(paths=None):
    """``[(path, env), ...]``: each kernel path of ``paths`` (a comma-separated string;
    None: every path this CPU runs) with the environment of a worker process on it:
    ``SEQCORE_CPU``, and below the CPU's best path ``ISA_LIMITS`` for the other
    libraries. Raises SystemExit naming a path the CPU does not run."""
    from .. import cpu_info
    supported = cpu_info()["supported"]
    chosen = paths.split(",") if paths else list(supported)
    for path in chosen:
        if path not in supported:
            raise SystemExit(f"--paths: this CPU runs {', '.join(supported)}, not {path!r}")
    out = []
    for path in chosen:
        env = dict(os.environ, SEQCORE_CPU=path)
        if path != supported[0]:
            env.update(ISA_LIMITS.get(path, {}))
        out.append((path, env))
    return out


def cpu_name():
    """The processor's model name (/proc/cpuinfo), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ------------------------------------------------------------------ command line

def add_arguments(p):
    p.add_argument("--quick", action="store_true",
                   help="a quick run (< 1 minute): small, stream and step; fewer, shorter rounds")
    p.add_argument("--only", metavar="CONFIGS",
                   help=f"comma-separated configurations: {', '.join(CONFIGS)}")
    p.add_argument("--cells", metavar="CELLS", help=f"comma-separated cells: {', '.join(CELLS)}")
    p.add_argument("--sides", metavar="SIDES",
                   help="comma-separated sides: seqcore,reference,torch (default: all available)")
    p.add_argument("--shape", metavar="B,T,D,H",
                   help="one custom configuration instead of the named ones")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                   help="dtype of --shape (default float32)")
    p.add_argument("--rounds", type=int, help="rounds over the sides (default 5; quick 3)")
    p.add_argument("--threads", type=int,
                   help="BLAS and torch threads (default: the BLAS thread count of seqcore's side)")
    p.add_argument("--ref-budget", type=float, metavar="SECONDS",
                   help="time budget of the reference per case: fewer rounds when slow, skipped "
                        "when one call takes longer (default 30; quick 1)")
    p.add_argument("--settle", type=float, metavar="SECONDS",
                   help="pause after each side's turn so its idle threads stop spinning "
                        "(default 0.1; quick 0.02)")
    p.add_argument("--kernels", choices=("avx512", "avx2", "generic"),
                   help="seqcore's kernel path (default: SEQCORE_CPU, else the CPU's best); "
                        "below the CPU's best, the other sides are held to the same "
                        "instruction set")
    p.add_argument("--others-native", action="store_true",
                   help="with a forced --kernels path, leave PyTorch and NumPy on all the "
                        "CPU has")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    p.add_argument("--json", metavar="PATH",
                   help="also write the results as JSON to PATH (default: none)")
    p.add_argument("--load", type=int, default=0, metavar="N",
                   help="run under load: N busy processes beside the benchmark for the "
                        "whole run, stopped at its end, on Ctrl-C too (default 0)")
    p.add_argument("--load-kind", choices=("bursty", "spin"), default="bursty",
                   help="what each busy process of --load does: bursty, compute 5 ms and "
                        "pause 1 ms (default); spin, never pause")
    p.add_argument("--onnx", action="store_true",
                   help="seqcore against onnxruntime on the same exported layers (seqcore.onnx), "
                        "each in its own process with the same threads: forward and the "
                        "one-token step of small, medium and stream (needs the onnx extra)")
    p.add_argument("--baseline", metavar="PATH",
                   help="also time the seqcore found at PATH (a source tree built in place, "
                   "or a site-packages folder) as the side 'baseline', in its own process: "
                   "before and after a change in one run (sc/base)")
    p.add_argument("--perturb", action="append", choices=SIDES, help=argparse.SUPPRESS)


# A busy process of --load: computes for 5 ms, pauses for 1 ms, as real work does when
# it waits for a disk, a network or a lock (a loop that never pauses is the gentler
# load for a team of threads: the scheduler then leaves them long slices). It stops
# when stopped, or when its parent is gone (a killed benchmark leaves none behind).
LOAD_KINDS = {
    "bursty": ("import os, time\nparent = os.getppid()\nwhile os.getppid() == parent:\n"
               "    end = time.perf_counter() + 0.005\n"
               "    while time.perf_counter() < end:\n        pass\n"
               "    time.sleep(0.001)\n"),
    "spin": ("import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n"
             "    for _ in range(1000000):\n        pass\n"),
}


@contextlib.contextmanager
def busy_processes(n, kind="bursty"):
    """n processes that keep a core busy each while the block runs (the load of
    `seqcore bench --load N`): "bursty" ones compute 5 ms and pause 1 ms, "spin" ones
    never pause. They are stopped when the block ends, by an exception or Ctrl-C too."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"load: expected a number of busy processes >= 0, got {n!r}")
    if kind not in LOAD_KINDS:
        raise ValueError(f"kind: expected one of {', '.join(LOAD_KINDS)}, got {kind!r}")
    procs = []
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", LOAD_KINDS[kind]],
                                          stdin=subprocess.DEVNULL))
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


LOAD_HELP = {"bursty": "computing 5 ms, pausing 1 ms", "spin": "a loop that never pauses"}
