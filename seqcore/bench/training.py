"""Training-speed benchmark (`seqcore bench --train`): seqcore.LanguageModel against the same model in PyTorch.

Both sides train the same next-token model on the same synthetic token batches:
Embedding -> LSTM or GRU (``num_layers``) -> Linear -> cross-entropy summed over the
window and averaged over the batch -> clipping to global norm 5 -> Adam (lr 1e-3),
state carried from window to window with the gradient cut at the window's start
(truncated BPTT, as char-rnn and word-level language models train).

* **seqcore**: a ``seqcore.LanguageModel`` trained by ``seqcore.train.loop.train``, the
  loop ``LanguageModel.fit`` runs (zero_grad, loss_and_grads, clip_grad_norm, the
  optimizer's step, its divergence checks): what a user gets. Batches are whole
  windows (``lengths`` and ``mask`` None), as PyTorch's.
* **torch**: ``nn.Embedding``, ``nn.LSTM``/``nn.GRU``, ``nn.Linear``,
  ``F.cross_entropy(reduction="sum") / B``, ``clip_grad_norm_``, ``torch.optim.Adam``
  with its defaults, ``zero_grad()`` before each step. The GRU is PyTorch's
  (reset-after; seqcore's ``reset_after=True``).

The ``transcriber`` configuration trains ``seqcore.SequenceTranscriber`` instead: a
bidirectional 2-layer LSTM or GRU over (T, B, D) input frames, ``Linear`` to C classes
(CTC's blank and the labels), the CTC loss summed over the batch and divided by B
(PyTorch: ``F.ctc_loss(log_softmax(logits), ..., reduction="sum") / B``), the same
clipping and Adam, each batch on its own (no state carried): speech frames to
characters, or image columns to text. Its tokens are the input frames, B * T.

Both start from the same weights (seqcore's, copied into PyTorch through
``seqcore.interop``). Before anything is timed, each side trains three steps on the
same batches; their losses (which after the first step reflect the updates) and the
first step's gradient norm over the weights must agree (1e-3 relative, float32), or
the configuration is not timed and the command exits 1. (The norm leaves out the
recurrent biases: PyTorch keeps two, ``b_ih`` and ``b_hh``, with the same gradient,
where seqcore's one ``b`` is their sum, so PyTorch's global norm counts that gradient
twice and its Adam moves the sum twice as fast; the same models all the same.)

Each side runs in its own worker process, started afresh for every configuration and
thread count (as ``seqcore bench`` does, so the thread pools of the two libraries never
share a process, and so each process's peak resident memory, ``ru_maxrss``, belongs to
that configuration alone). Rounds visit the sides in turn, the order rotated each
round; a visit runs a few training steps. Reported: tokens per second (B * S over the
median step), the ratio seqcore/torch of throughputs (the median over rounds of the
ratio within a round: > 1 means seqcore trains faster), and peak memory: ``ru_maxrss``
of the process, and its growth over the process's resident size before the model was
built (what the model and its training cost, without the library's import).

Threads: ``seqcore.set_num_threads(n)`` and n BLAS threads (threadpoolctl) for seqcore,
``torch.set_num_threads(n)`` for PyTorch.

Legend: V vocabulary, E embedding width, H hidden units, L layers, B batch, S window
(time steps per batch).
"""

import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time

from . import layers as _bench

SEED = 20240517
CHECK_STEPS = 3
CHECK_TOL = {"float32": 1e-3, "float64": 1e-9}
LR = 1e-3
CLIP = 5.0
BATCH_POOL = 8           # distinct batches, cycled

# name: V, E, H, L, B, S. char: a 100-symbol alphabet with a learned 64-wide
# embedding on both sides; word: a 10,000-word vocabulary, E = H (PTB-style).
CONFIGS = {
    "char-h256":    dict(V=100, E=64, H=256, L=1, B=64, S=64),
    "char-h256-l2": dict(V=100, E=64, H=256, L=2, B=64, S=64),
    "char-h512":    dict(V=100, E=64, H=512, L=1, B=64, S=64),
    "char-h512-l2": dict(V=100, E=64, H=512, L=2, B=64, S=64),
    "word":         dict(V=10000, E=256, H=256, L=1, B=32, S=35),
    "tiny":         dict(V=20, E=8, H=16, L=1, B=4, S=8),      # smoke tests only
    # SequenceTranscriber: D features a frame, S frames, C = V classes (blank + labels),
    # targets of U_MIN..U_MAX labels, E unused
    "transcriber":  dict(V=80, E=0, D=40, H=128, L=2, B=32, S=200, ctc=True,
                         U_MIN=30, U_MAX=50),
    "tiny-ctc":     dict(V=10, E=0, D=6, H=8, L=2, B=4, S=12, ctc=True, U_MIN=2,
                         U_MAX=5),                              # smoke tests only
}
DEFAULT_CONFIGS = ("char-h256", "char-h256-l2", "char-h512", "char-h512-l2", "word",
                   "transcriber")
QUICK_CONFIGS = ("char-h256", "word")
CELLS = ("lstm", "gru")


# ------------------------------------------------------------------------ worker

def batches(cfg):
    """BATCH_POOL (x, y) pairs of token ids (S, B): the same on both sides. For CTC
    configurations, (x, targets, target_lengths): frames (S, B, D) float32, labels
    (B, U_MAX) in 1..V-1 padded with 0, and their lengths (B,)."""
    import numpy as np
    rng = np.random.default_rng(SEED + 2)
    if cfg.get("ctc"):
        out = []
        for _ in range(BATCH_POOL):
            x = rng.standard_normal((cfg["S"], cfg["B"], cfg["D"])).astype(np.float32)
            lengths = rng.integers(cfg["U_MIN"], cfg["U_MAX"] + 1, cfg["B"])
            targets = np.zeros((cfg["B"], cfg["U_MAX"]), np.int64)
            for b, n in enumerate(lengths):
                targets[b, :n] = rng.integers(1, cfg["V"], n)
            out.append((x, targets, lengths.astype(np.int64)))
        return out
    ids = rng.integers(0, cfg["V"], (BATCH_POOL, cfg["S"] + 1, cfg["B"]))
    return [(d[:-1].copy(), d[1:].copy()) for d in ids]


def _seqcore_model(cfg, cell, dtype):
    import seqcore
    from seqcore.data import Vocab
    options = {"reset_after": True} if cell == "gru" else {}
    if cfg.get("ctc"):          # C = V classes: the blank and V - 1 labels
        labels = Vocab(["<EOS>", "<UNK>"] + [f"t{i:05d}" for i in range(cfg["V"] - 3)],
                       "word")
        return seqcore.SequenceTranscriber(labels, input_size=cfg["D"], cell=cell,
                                           hidden_size=cfg["H"], num_layers=cfg["L"],
                                           bidirectional=True, dtype=dtype, seed=SEED,
                                           **options)
    vocab = Vocab(["<EOS>", "<UNK>"] + [f"t{i:05d}" for i in range(cfg["V"] - 2)], "word")
    return seqcore.LanguageModel(vocab, cell=cell, hidden_size=cfg["H"],
                                 num_layers=cfg["L"], embedding_dim=cfg["E"], dtype=dtype,
                                 seed=SEED, **options)


def _rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class TrainWorker:
    """One side in its own process: builds the model, checks it, times steps."""

    def __init__(self, side):
        self.side = side
        if side == "torch":
            import torch
            self.torch = torch
        import numpy  # noqa: F401  (both sides pay for it before the baseline RSS)
        import seqcore  # noqa: F401
        self.np = numpy

    def cmd_info(self, msg):
        return _bench.Worker.cmd_info(self, msg)

    def cmd_threads(self, msg):
        return _bench.Worker.cmd_threads(self, msg)

    def cmd_setup(self, msg):
        """Build the side's model; seqcore's writes its initial weights to
        msg["weights"], from which PyTorch's starts."""
        np = self.np
        cfg, cell = msg["config"], msg["cell"]
        self.cfg, self.cell = cfg, cell
        self.rss0 = _rss_kb()
        self.data = batches(cfg)
        self.k = 0
        if self.side == "torch":
            self._setup_torch(msg["weights"], msg.get("perturb", False))
            return {"rss_before_kb": self.rss0}
        import seqcore
        self.model = _seqcore_model(cfg, cell, np.float32)
        self.opt = seqcore.optim.Adam(LR)
        self._stream = self._seqcore_batches()
        np.savez(msg["weights"], **{name: p for name, p, _ in self.model.parameters()})
        return {"rss_before_kb": self.rss0}

    # -- seqcore

    def _seqcore_batches(self):
        B, S = self.cfg["B"], self.cfg["S"]
        if self.cfg.get("ctc"):
            lengths = self.np.full(B, S, self.np.int64)
            while True:
                x, targets, target_lengths = self.data[self.k % BATCH_POOL]
                self.k += 1
                yield {"x": x, "lengths": lengths, "targets": targets,
                       "target_lengths": target_lengths, "carry": False, "size": B,
                       "tokens": float(B * S)}
        while True:
            x, y = self.data[self.k % BATCH_POOL]
            self.k += 1
            yield {"x": x, "y": y, "lengths": None, "mask": None, "carry": self.k > 1,
                   "size": B, "tokens": float(B * S)}

    def _seqcore_check(self, n):
        """n steps as seqcore.train.loop.train takes them, recording the losses and the
        first step's gradient norm over the weights (see _weights_norm)."""
        from seqcore.optim import clip_grad_norm, global_norm
        model, out, state = self.model, {"loss": [], "norm": []}, None
        for _ in range(n):
            batch = next(self._stream)
            model.zero_grad()
            loss, state = model.loss_and_grads(batch, state if batch["carry"] else None)
            out["norm"].append(global_norm([g for name, _, g in model.parameters()
                                            if not name.startswith("rnn.b")]))
            clip_grad_norm(model.grads(), CLIP)
            self.opt.step(model.parameters())
            out["loss"].append(loss)
        return out

    def _seqcore_steps(self, n):
        """Seconds of each of n steps of seqcore.train.loop.train (LanguageModel.fit's loop)."""
        from seqcore.train.loop import train
        stamps = []
        t0 = time.perf_counter()
        train(self.model, self._stream, steps=n, optimizer=self.opt, clip_norm=CLIP,
              progress=False, callback=lambda *_: stamps.append(time.perf_counter()))
        return [b - a for a, b in zip([t0] + stamps[:-1], stamps)]

    # -- torch

    def _setup_torch(self, weights, perturb):
        torch, np = self.torch, self.np
        import seqcore
        from seqcore import interop
        cfg = self.cfg
        w = dict(np.load(weights))
        # the recurrent layer through seqcore.interop (its tested weight conversion)
        kind = {"lstm": seqcore.LSTM, "gru": seqcore.GRU}[self.cell]
        options = {"reset_after": True} if self.cell == "gru" else {}
        if cfg.get("ctc"):
            options["bidirectional"] = True
        rnn = kind(cfg["D"] if cfg.get("ctc") else cfg["E"], cfg["H"], num_layers=cfg["L"],
                   **options)
        for k in rnn.params:
            rnn.params[k] = w[f"rnn.{k}"]
        net = torch.nn.Module()
        dirs = 2 if cfg.get("ctc") else 1
        if not cfg.get("ctc"):
            net.emb = torch.nn.Embedding(cfg["V"], cfg["E"])
        net.rnn = interop.to_torch(rnn)
        if cfg.get("ctc"):
            self._one_bias(net.rnn, cfg["H"])
        net.out = torch.nn.Linear(dirs * cfg["H"], cfg["V"])
        with torch.no_grad():
            if not cfg.get("ctc"):
                net.emb.weight.copy_(torch.from_numpy(w["inputs.W"]))
            net.out.weight.copy_(torch.from_numpy(w["out.W"]))
            net.out.bias.copy_(torch.from_numpy(w["out.b"]))
            if perturb:          # a deliberately wrong side, to test the agreement check
                net.out.weight[0] += 0.5   # (one class: a shift of all would not show)
        del rnn, w
        self.net = net
        self.opt = torch.optim.Adam(net.parameters(), lr=LR)
        if cfg.get("ctc"):
            self.tdata = [(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(n))
                          for x, t, n in self.data]
            self.input_lengths = torch.full((cfg["B"],), cfg["S"], dtype=torch.int64)
        else:
            self.tdata = [(torch.from_numpy(x), torch.from_numpy(y).reshape(-1))
                          for x, y in self.data]
        self._tstate = None

    def _one_bias(self, rnn, H):
        """PyTorch's recurrent layers keep two biases, ``bias_ih`` and ``bias_hh``, where
        seqcore keeps one ``b`` (their sum; the GRU's ``b_cc`` is ``bias_hh``'s n block):
        trained, the sum moves twice as fast under Adam and counts twice in the clipping
        norm. For the transcriber, whose CTC loss shows it after one step, ``bias_hh``
        stays at its start (the GRU's n block, ``b_cc``, trains): the same model."""
        for name, p in rnn.named_parameters():
            if not name.startswith("bias_hh"):
                continue
            if isinstance(rnn, self.torch.nn.LSTM):
                p.requires_grad_(False)
            else:                                   # GRU: r and z blocks kept at zero
                p.register_hook(lambda g, H=H: self.torch.cat(
                    [self.torch.zeros_like(g[:2 * H]), g[2 * H:]]))

    def _torch_step(self, before_step=None):
        torch, cfg, net = self.torch, self.cfg, self.net
        F = torch.nn.functional
        batch = self.tdata[self.k % BATCH_POOL]
        self.k += 1
        self.opt.zero_grad()
        if cfg.get("ctc"):
            x, targets, target_lengths = batch
            a, state = net.rnn(x)
            logp = F.log_softmax(net.out(a), dim=-1)
            loss = F.ctc_loss(logp, targets, self.input_lengths, target_lengths, blank=0,
                              reduction="sum") / cfg["B"]
        else:
            x, y = batch
            a, state = net.rnn(net.emb(x), self._tstate)
            logits = net.out(a)
            loss = F.cross_entropy(logits.reshape(-1, cfg["V"]), y, reduction="sum") / cfg["B"]
        loss.backward()
        if before_step is not None:
            before_step()
        norm = torch.nn.utils.clip_grad_norm_(net.parameters(), CLIP)
        self.opt.step()
        self._tstate = (tuple(s.detach() for s in state) if isinstance(state, tuple)
                        else state.detach())              # carried, gradient cut
        return loss, norm

    def _torch_check(self, n):
        out = {"loss": [], "norm": []}
        weights = [p for name, p in self.net.named_parameters() if ".bias_" not in name]
        for _ in range(n):
            loss, _ = self._torch_step(before_step=lambda: out["norm"].append(float(
                self.torch.sqrt(sum((p.grad.double() ** 2).sum() for p in weights)))))
            out["loss"].append(float(loss.detach()))
        return out

    def _torch_steps(self, n):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            self._torch_step()
            times.append(time.perf_counter() - t0)
        return times

    # -- commands

    def cmd_check(self, msg):
        """CHECK_STEPS steps on the first batches from the shared weights: the losses and
        gradient norms the parent compares; then one timed warm-up step."""
        torch = self.side == "torch"
        out = self._torch_check(CHECK_STEPS) if torch else self._seqcore_check(CHECK_STEPS)
        out["warmup_s"] = min((self._torch_steps if torch else self._seqcore_steps)(2))
        return out

    def cmd_time(self, msg):
        import gc
        gc.collect()
        steps = int(msg["steps"])
        times = (self._torch_steps(steps) if self.side == "torch"
                 else self._seqcore_steps(steps))
        return {"times": times}

    def cmd_mem(self, msg):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss      # kB on Linux
        return {"peak_kb": peak, "rss_before_kb": self.rss0}


# ------------------------------------------------------------------------ parent

class TrainBench:
    """One run: for each configuration, cell and thread count, fresh workers, the
    agreement check, the rounds, the memory; then the table and the JSON."""

    def __init__(self, args, log=None):
        self.args = args
        self.log = log or (lambda s: print(s, file=sys.stderr, flush=True))
        self.quick = args.quick
        self.rounds = args.rounds or (3 if self.quick else 5)
        self.visit_s = 0.3 if self.quick else 1.0        # time per side per round
        self.settle = args.settle if args.settle is not None else 0.1

    def plan(self):
        a = self.args
        names = [n for n in (a.only or ",".join(QUICK_CONFIGS if self.quick
                                                  else DEFAULT_CONFIGS)).split(",") if n]
        for n in names:
            if n not in CONFIGS:
                raise ValueError(f"--only: unknown training configuration {n!r}; choose "
                                 f"from {', '.join(CONFIGS)}")
        cells = [c for c in (a.cells or ",".join(CELLS)).split(",") if c]
        for c in cells:
            if c not in CELLS:
                raise ValueError(f"--cells: the training benchmark runs {', '.join(CELLS)}, "
                                 f"got {c!r}")
        threads = [a.threads] if a.threads else [1, 2]
        return [(n, c, t) for n in names for c in cells for t in threads]

    def sides(self):
        import importlib.util
        sides = ["seqcore", "torch"]
        if importlib.util.find_spec("torch") is None:
            self.log("seqcore bench --train: PyTorch is not installed; seqcore runs alone")
            sides.remove("torch")
        return sides

    def path_env(self):
        """SEQCORE_CPU for seqcore's path and, below the CPU's best, the same
        instruction-set limits for both sides as `seqcore bench` (bench.ISA_LIMITS)."""
        from .. import _dispatch
        path = self.args.kernels or _dispatch.active()
        supported = _dispatch.supported()
        if path not in supported:
            raise ValueError(f"--kernels {path}: this CPU runs {', '.join(supported)}")
        self.kernels, self.best = path, supported[0]
        self.limits = {}
        if path != supported[0] and not self.args.others_native:
            self.limits = _bench.ISA_LIMITS.get(path, {})
        return {_dispatch.ENV: path, **self.limits}

    def run(self):
        plan, sides = self.plan(), self.sides()
        env = dict(os.environ, **self.path_env())
        busy = _bench.busy_fraction()
        meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.machine(),
                "load": getattr(self.args, "load", 0) or 0,   # busy processes beside the run
                "load_kind": getattr(self.args, "load_kind", None),
                "processor": _bench.cpu_name(), "cpus": os.cpu_count(),
                "kernels": self.kernels, "cpu_best": self.best, "isa_limits": self.limits,
                "rounds": self.rounds, "busy_before": busy, "loadavg": os.getloadavg(),
                "lr": LR, "clip": CLIP, "configs": {n: CONFIGS[n] for n, _, _ in plan},
                "env": {k: os.environ.get(k) for k in
                        ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS")}}
        self._header(meta)
        results, failures = [], []
        for i, (name, cell, threads) in enumerate(plan, 1):
            r = self._run_one(name, cell, threads, sides, env)
            results.append(r)
            if r["mismatch"]:
                failures.append(f"{name}/{cell}/{threads}t: {r['mismatch']}")
            self.log(f"[{i}/{len(plan)}] {name}/{cell}, {threads} thread(s): "
                     + "  ".join(f"{s} {r['tok_s'].get(s, 0):,.0f} tok/s" for s in sides)
                     + (f"  MISMATCH {r['mismatch']}" if r["mismatch"] else ""))
        print(self.table(results, sides))
        path = self.args.json
        return _bench.finish({"meta": meta, "results": results, "failures": failures}, path,
                             "SIDES DISAGREE OR FAILED")

    def _header(self, meta):
        print(f"seqcore bench --train: {meta['processor']}, {meta['cpus']} CPUs, "
              f"{meta['rounds']} rounds" + (" (quick)" if self.quick else ""))
        print(f"  kernels:  seqcore's {meta['kernels']} path"
              + (" (the CPU's best)" if meta["kernels"] == meta["cpu_best"] else
                 f", forced (the CPU's best is {meta['cpu_best']})"))
        if meta["isa_limits"]:
            print("  limits:   both sides held to the same instruction set: "
                  + " ".join(f"{k}={v!r}" if " " in v else f"{k}={v}"
                             for k, v in meta["isa_limits"].items()))
        print("  model:    Embedding -> LSTM/GRU -> Linear -> softmax cross-entropy (summed "
              "over the window, averaged over the batch) -> clip global norm 5 -> Adam "
              f"lr {LR:g}; float32; state carried between windows")
        if any(CONFIGS[n].get("ctc") for n in meta["configs"]):
            print("  transcriber: frames (S, B, D) -> bidirectional LSTM/GRU, L layers -> "
                  "Linear -> CTC loss (summed, divided by B), blank 0, V classes; tok/s "
                  "counts frames")
        _bench.machine_warnings(meta, "seqcore bench --train")
        sys.stdout.flush()

    def _run_one(self, name, cell, threads, sides, env):
        cfg = CONFIGS[name]
        r = {"config": name, "cell": cell, "threads": threads, **cfg, "tok_s": {},
             "median_step_s": {}, "round_medians": {}, "check": {}, "peak_mb": {},
             "growth_mb": {}, "mismatch": "", "info": {}}
        workers = {s: _bench.WorkerProcess(s, env=env, bench="training")
                   for s in sides}
        tmp = tempfile.mkdtemp(prefix="seqcore-bench-train-")
        weights = os.path.join(tmp, "weights.npz")
        try:
            for s, w in workers.items():
                w.call("threads", threads=threads)
                r["info"][s] = {"blas": _bench.blas_line(w.call("info"))}
            warm = {}
            for s, w in workers.items():          # seqcore first: it writes the weights
                w.call("setup", config=cfg, cell=cell, weights=weights,
                       perturb=s in (self.args.perturb or ()))
                c = w.call("check")
                r["check"][s] = {"loss": c["loss"], "norm": c["norm"]}
                warm[s] = c["warmup_s"]
            if "torch" in r["check"]:
                a, b = r["check"]["seqcore"], r["check"]["torch"]
                err = max(abs(x - y) / max(abs(y), 1e-30)
                          for x, y in zip(a["loss"] + a["norm"][:1], b["loss"] + b["norm"][:1]))
                r["check_rel_err"] = err
                if not err <= CHECK_TOL["float32"]:
                    r["mismatch"] = (f"losses/norm differ by {err:.2e} (seqcore "
                                     f"{a['loss']}, torch {b['loss']})")
                    return r
            steps = {s: max(2, min(50, round(self.visit_s / max(warm[s], 1e-6))))
                     for s in sides}
            times = {s: [] for s in sides}
            pids = [os.getpid()] + [w.proc.pid for w in workers.values()]
            ticks0 = _bench.cpu_ticks(pids)
            for k in range(self.rounds):
                order = sides[k % len(sides):] + sides[:k % len(sides)]
                for s in order:
                    t = workers[s].call("time", steps=steps[s])["times"]
                    times[s] += t
                    r["round_medians"].setdefault(s, []).append(statistics.median(t))
                    time.sleep(self.settle)
                    _bench.wait_idle(workers[s].proc.pid)
            r["foreign_load"] = _bench.foreign_load(ticks0, _bench.cpu_ticks(pids))
            tokens = cfg["B"] * cfg["S"]
            for s in sides:
                med = statistics.median(times[s])
                r["median_step_s"][s] = med
                r["tok_s"][s] = tokens / med
            r["steps_timed"] = {s: len(times[s]) for s in sides}
            if "torch" in sides:
                rm = r["round_medians"]
                # throughput ratio seqcore / torch = time of torch / time of seqcore
                r["speedup"] = statistics.median(
                    t / s for s, t in zip(rm["seqcore"], rm["torch"]))
            for s, w in workers.items():
                m = w.call("mem")
                r["peak_mb"][s] = m["peak_kb"] / 1024
                r["growth_mb"][s] = (m["peak_kb"] - m["rss_before_kb"]) / 1024
        except _bench.WorkerError as exc:
            r["mismatch"] = f"a side failed: {str(exc).splitlines()[0]}"
        finally:
            for w in workers.values():
                w.close()
            shutil.rmtree(tmp, ignore_errors=True)
        return r

    def table(self, results, sides):
        head = ["config", "cell", "thr", "V", "E", "H", "L", "B", "S"]
        head += [f"{s} tok/s" for s in sides]
        if "torch" in sides:
            head.append("sc/torch")
        head += [f"peak MB {s}" for s in sides] + [f"+MB {s}" for s in sides] + ["busy"]
        rows = []
        for r in results:
            row = [r["config"], r["cell"], r["threads"], r["V"], r["E"], r["H"], r["L"],
                   r["B"], r["S"]]
            row += [f"{r['tok_s'][s]:,.0f}" if s in r["tok_s"] else "-" for s in sides]
            if "torch" in sides:
                row.append(f"{r['speedup']:.2f}x" if r.get("speedup") else
                           ("MISMATCH" if r["mismatch"] else "-"))
            row += [f"{r['peak_mb'][s]:.0f}" if s in r["peak_mb"] else "-" for s in sides]
            row += [f"{r['growth_mb'][s]:.0f}" if s in r["growth_mb"] else "-" for s in sides]
            fl = r.get("foreign_load")
            row.append("" if fl is None or fl < _bench.BUSY else f"{100 * fl:.0f}%!")
            rows.append(row)
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
        line = lambda cells: "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)  # noqa: E731
                                       for i, (c, w) in enumerate(zip(cells, widths)))
        out = ["", line(head), line(["-" * w for w in widths])] + [line(x) for x in rows]
        out += ["", "tok/s: B*S tokens over the median training step. sc/torch: seqcore's "
                "throughput over PyTorch's, the median over rounds of the ratio within a "
                "round (> 1: seqcore trains faster). peak MB: ru_maxrss of the side's "
                "process (one process per row); +MB: its growth over the resident size "
                "after the imports, before the model was built. busy: CPU share other "
                f"processes used while the row was timed, shown from {100 * _bench.BUSY:.0f}% "
                "(those timings are unreliable)."]
        return "\n".join(out)
