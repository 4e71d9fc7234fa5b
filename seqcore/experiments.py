"""Long-range tasks generated on the fly (adding, copy) and the experiments behind `seqcore experiment`.

What the course notes claim about vanishing and exploding gradients, measured:
``run_adding`` trains one cell on the adding problem and records the gradient flow
(``seqcore.diagnostics.gradient_norms``) at initialization and at the end;
``run_copy`` does the same for the copy/recall task; ``run_exploding`` shows a run
that blows up without gradient clipping and converges with it; ``run_table`` runs
every cell at several lags (docs/why-gated-cells.md).

Legend: T time steps, B batch, H hidden units, K symbols to recall, A alphabet size.

The tasks (Hochreiter & Schmidhuber 1997, in the form of later work such as
Arjovsky et al. 2016):

* **adding**, lag N: sequences of T = N steps, input x<t> = [value, marker] (D = 2),
  values uniform in [0, 1). Exactly two steps are marked (marker 1, elsewhere 0): the
  first among the first ceil(N/10) steps, the second in the second half (steps
  floor(N/2) .. N-1, 0-based). The target, read from the last state a<T>, is the sum
  of the two marked values. The first value must therefore be carried for at least
  N - ceil(N/10) >= 0.9 N steps. Always predicting 1 (the target's mean) gives
  MSE = Var(u1 + u2) = 1/6 ~ 0.167; the task counts as solved below 0.01.
* **copy**, lag N, K symbols from an alphabet of A: K random symbols, N blanks, a go
  marker, then K blank steps during which the model must output the K symbols in
  order. Inputs are 1-hot over A + 2 (the symbols, blank, go), T = 2K + N + 1; the
  loss (cross-entropy) is on the K recall steps only. Guessing gives ln A nats per
  symbol and accuracy 1/A; solved means accuracy >= 99 %.
"""

import datetime
import math
import time

import numpy as np

from . import _validation as V
from ._threads import limit_threads
from .nn import Dense
from .diagnostics import gate_stats, gradient_norms
from .models import Model, SequenceTagger, recurrent_stack, split_seeds
from .train import optim
from .train.loop import TrainingDiverged, train
from .train.optim import global_norm

__all__ = ["CELLS", "adding_batch", "copy_batch", "AddingRegressor", "run_adding",
           "run_copy", "run_exploding", "run_table", "plot_gradient_flow",
           "markdown_table", "gates_table", "ADDING_BASELINE", "SOLVED_MSE",
           "MONTHS", "ordinal", "human_date", "date_pairs", "date_split"]

# Command-line cell names -> (cell, cell options) of the models.
CELLS = {
    "rnn": ("rnn", {"nonlinearity": "tanh"}),
    "gru": ("gru", {"reset_after": False}),
    "gru-reset-after": ("gru", {"reset_after": True}),
    "lstm": ("lstm", {"peephole": False}),
    "lstm-peephole": ("lstm", {"peephole": True}),
}
ADDING_BASELINE = 1.0 / 6.0     # MSE of always predicting 1: Var(U1 + U2) = 2/12
SOLVED_MSE = 0.01
SOLVED_ACCURACY = 0.99
FLOOR = 1e-20      # plots stop here: float32 gradients vanish to exactly 0 near 1e-45


# --------------------------------------------------------------------------- tasks

def _check_lag(lag, minimum):
    return V.check_int(lag, "lag", minimum=minimum)


def adding_batch(lag, batch_size, rng, dtype=np.float32):
    """One batch of the adding problem (see the module notes).

    Parameters
    ----------
    lag : int
        ``T``, the sequence length.
    batch_size : int
        ``B``.
    rng : numpy.random.Generator
        The random source.
    dtype : numpy dtype, default numpy.float32

    Returns
    -------
    x : numpy.ndarray
        ``(T, B, 2)``: ``x[:, :, 0]`` holds the values, ``x[:, :, 1]`` the two markers.
    y : numpy.ndarray
        ``(B,)``: the sum of the two marked values.
    """
    T = _check_lag(lag, 2)
    B = V.check_int(batch_size, "batch_size")
    values = rng.random((T, B))                                  # (T, B) in [0, 1)
    first = rng.integers(0, math.ceil(T / 10), size=B)           # first 10% of the steps
    second = rng.integers(T // 2, T, size=B)                     # second half
    marker = np.zeros((T, B))
    cols = np.arange(B)
    marker[first, cols] = 1.0
    marker[second, cols] = 1.0
    x = np.stack([values, marker], axis=2).astype(dtype)         # (T, B, 2)
    y = (values[first, cols] + values[second, cols]).astype(dtype)   # (B,)
    return x, y


def copy_batch(lag, batch_size, rng, *, symbols=8, length=5, dtype=np.float32):
    """One batch of the copy task.

    ``T = 2K + lag + 1`` with ``K = length``, ``A = symbols``; input ids ``A`` = blank,
    ``A+1`` = go.

    Parameters
    ----------
    lag : int
        Blanks between the symbols and the go marker.
    batch_size : int
        ``B``.
    rng : numpy.random.Generator
        The random source.
    symbols : int, default 8
        ``A``, the alphabet.
    length : int, default 5
        ``K``, the symbols to recall.
    dtype : numpy dtype, default numpy.float32

    Returns
    -------
    x : numpy.ndarray
        ``(T, B, A+2)``, 1-hot.
    y : numpy.ndarray
        ``(T, B)`` ids: the symbols at the ``K`` recall steps (0 elsewhere).
    mask : numpy.ndarray
        ``(T, B)``: 1 at the recall steps.
    """
    N = _check_lag(lag, 0)
    B = V.check_int(batch_size, "batch_size")
    A = V.check_int(symbols, "symbols", minimum=2)
    K = V.check_int(length, "length")
    T = 2 * K + N + 1
    seq = rng.integers(0, A, size=(K, B))                        # (K, B) what to remember
    ids = np.full((T, B), A, np.int64)                           # blanks
    ids[:K] = seq
    ids[K + N] = A + 1                                           # go
    x = np.zeros((T, B, A + 2), dtype)
    x[np.arange(T)[:, None], np.arange(B)[None, :], ids] = 1.0
    y = np.zeros((T, B), np.int64)
    y[K + N + 1:] = seq
    mask = np.zeros((T, B))
    mask[K + N + 1:] = 1.0
    return x, y, mask


# -------------------------------------------------------------------------- model

class AddingRegressor(Model):
    """Many-to-one regression: ``ŷ = W_y a⟨T⟩ + b_y`` from the last state; MSE cost.

    Layers: ``rnn`` (``RNN``/``GRU``/``LSTM`` over ``D`` inputs) → ``out`` (``Dense``
    H → 1). The cost is ``mean_b (ŷ_b - y_b)²``, the loss only at the last step. Data
    for ``fit``: an int (the lag: fresh adding batches forever) or a pair
    ``(x (T, N, D), y (N,))``.

    Parameters
    ----------
    input_size : int, default 2
        ``D``.
    cell : {"lstm", "gru", "rnn"}, default "lstm"
        The recurrent cell.
    hidden_size : int, default 32
        ``H``.
    dtype : numpy.float32 or numpy.float64, default numpy.float32
    backend : {"cython", "numpy"}, default "cython"
    seed : int, optional
    **cell_options
        The cell's options.
    """

    kind = "AddingRegressor"

    def __init__(self, *, input_size=2, cell="lstm", hidden_size=32, dtype=np.float32,
                 backend="cython", seed=None, **cell_options):
        super().__init__()
        self._setup(cell, hidden_size, 1, None, dtype, cell_options)
        self.input_size = V.check_int(input_size, "input_size")
        self.backend = V.check_backend(backend)
        s_rnn, s_out = split_seeds(seed, 2)
        self.rnn = recurrent_stack(cell, self.input_size, self.hidden_size, 1, False, self.dtype,
                              backend, s_rnn, cell_options)
        self.out = Dense(self.hidden_size, 1, dtype=self.dtype, backend=backend, seed=s_out)
        self.layers = {"rnn": self.rnn, "out": self.out}

    def forward(self, x):
        """x (T, B, D) -> y_hat (B,)."""
        a, _ = self.rnn.forward(x)                               # (T, B, H)
        self._T = a.shape[0]
        return self.out.forward(a[-1])[:, 0]                     # (B,)

    def loss_and_grads(self, batch, state=None, *, backward=True):
        y = batch["y"]
        y_hat = self.forward(batch["x"])
        err = y_hat - y                                          # (B,)
        loss = float(np.mean(err.astype(np.float64) ** 2))
        if backward:
            dy_hat = (2.0 / len(y)) * err                        # dC/dy_hat
            dh = self.out.backward(dy_hat[:, None].astype(self.dtype))   # (B, H)
            da = np.zeros((self._T,) + dh.shape, self.dtype)     # loss only at the last step
            da[-1] = dh
            self.rnn.backward(da)                                # BPTT
        return loss, None

    def mse(self, x, y, batch_size=256):
        """Held-out MSE over (x (T, N, D), y (N,))."""
        total = 0.0
        for start in range(0, len(y), batch_size):
            err = self.forward(x[:, start:start + batch_size]) - y[start:start + batch_size]
            total += float(np.sum(err.astype(np.float64) ** 2))
        return total / len(y)

    def batches(self, data, batch_size, rng, *, train):
        if isinstance(data, (int, np.integer)):                  # a lag: endless fresh data
            rng = rng if rng is not None else np.random.default_rng(0)
            while True:
                x, y = adding_batch(int(data), batch_size, rng, self.dtype)
                yield _batch(x, y, None)
        x, y = data
        for start in range(0, len(y), batch_size):
            yield _batch(x[:, start:start + batch_size], y[start:start + batch_size], None)


def _batch(x, y, mask):
    B = x.shape[1]
    return {"x": x, "y": y, "lengths": None, "mask": mask, "carry": False, "size": B,
            "tokens": float(B if mask is None else mask.sum())}


def _copy_accuracy(model, x, y, mask):
    """(cross-entropy per recalled symbol, accuracy) of a SequenceTagger on copy data."""
    loss, _ = model.loss_and_grads(_batch(x, y, mask), backward=False)
    hit = (model.forward(x).argmax(axis=2) == y) & (mask > 0)
    n = mask.sum()
    return loss * x.shape[1] / n, float(hit.sum() / n)


# ---------------------------------------------------------------------- experiments

def _options(cell):
    V.check_choice(cell, "cell", tuple(CELLS))
    return CELLS[cell]


def _flow(model, batch):
    """Gradient norms ||dC/da<t>||, t = 1..T, of one batch (and the parameters' global norm); gradients cleared after."""
    model.zero_grad()
    model.loss_and_grads(batch)
    norms = {"a": gradient_norms(model.rnn)[:, 0].tolist(), "params": global_norm(model.grads(), backend=model.backend)}
    if model.rnn._cell == "lstm":
        norms["c"] = gradient_norms(model.rnn, of="c")[:, 0].tolist()
    model.zero_grad()
    return norms


def _gates(layer):
    """Gate activity of the last forward, averaged over the steps: {gate: {mean, saturated}}."""
    return {name: {k: float(np.nanmean(v)) for k, v in s.items()}
            for name, s in gate_stats(layer).items()}


def _train_until(model, batches, *, steps, optimizer, clip, eval_every, evaluate, solved,
                 stop_when_solved, log):
    """Train in chunks of ``eval_every`` steps; evaluate after each; stop early once solved.

    Returns (curve [(step, held-out)], diverged message or None, steps done).
    """
    curve, done = [], 0
    while done < steps:
        chunk = min(eval_every, steps - done)
        try:
            train(model, batches, steps=chunk, optimizer=optimizer, clip_norm=clip or None,
                  progress=False)
        except TrainingDiverged as exc:
            return curve, str(exc), optimizer.t
        done += chunk
        value = evaluate()
        curve.append((done, value))
        if log:
            log(done, value)
        if stop_when_solved and solved(value):
            break
    return curve, None, done


def _optimizer(name, lr):
    V.check_choice(name, "optimizer", ("adam", "sgd"))
    return optim.Adam(lr) if name == "adam" else optim.SGD(lr)


def run_adding(cell="lstm", lag=50, *, steps=2000, hidden=32, batch_size=32, lr=1e-2,
               clip=1.0, optimizer="adam", seed=0, valid_size=1000, eval_every=250,
               stop_when_solved=True, recurrent_scale=None, nonlinearity=None,
               dtype=np.float32, threads=1, log=None):
    """Train ``cell`` on the adding problem at ``lag``.

    The held-out MSE is measured on ``valid_size`` fixed sequences every
    ``eval_every`` steps; with ``stop_when_solved`` training stops at the first
    evaluation below ``SOLVED_MSE``. A run whose gradients become NaN or infinite
    stops and reports ``diverged`` (the message of ``TrainingDiverged``).

    Parameters
    ----------
    cell : str, default "lstm"
        A key of ``CELLS``: ``"rnn"``, ``"gru"``, ``"gru-reset-after"``, ``"lstm"``,
        ``"lstm-peephole"``.
    lag : int, default 50
        The sequence length.
    steps : int, default 2000
        The budget of updates.
    hidden : int, default 32
        Hidden units.
    batch_size : int, default 32
        Fresh sequences per batch.
    lr : float
        Adam's (or SGD's) learning rate.
    clip : float or None
        Clip the gradients' global norm (None or 0: no clipping).
    seed : int, default 0
        Seed of the weights and the data.
    threads : int, default 1
        The core's threads during the run.
    log : callable, optional
        ``log(step, value)`` at each held-out measurement.
    optimizer : {"adam", "sgd"}, default "adam"
        The optimizer.
    valid_size : int, default 1000
        Held-out sequences.
    eval_every : int, default 250
        Steps between held-out measurements.
    stop_when_solved : bool, default True
        Stop at the first held-out MSE below ``SOLVED_MSE``.
    recurrent_scale : float, optional
        Multiply the recurrent weights ``W_aa`` at initialization (the exploding
        experiment).
    nonlinearity : {"tanh", "relu"}, optional
        The RNN's.
    dtype : numpy dtype, default numpy.float32

    Returns
    -------
    dict
        ``task``, ``cell``, ``lag``, ``steps`` (budget), ``steps_done``,
        ``final_mse``, ``baseline_mse`` (of always predicting 1, on the same held-out
        set), ``solved``, ``diverged``, ``seconds``, ``curve`` [(step, held-out
        MSE)], ``grad_norms_init`` / ``grad_norms_end`` (``{"a": [T values], "c"`` for
        the LSTM``}``: ``‖dC/da⟨t⟩‖`` for ``t = 1..T`` on one held-out batch),
        ``gates_end``, and the settings.
    """
    kind, opts = _options(cell)
    opts = dict(opts)
    if nonlinearity is not None:
        if kind != "rnn":
            raise ValueError(f"nonlinearity: only for --cell rnn, not {cell}")
        opts["nonlinearity"] = V.check_choice(nonlinearity, "nonlinearity", ("tanh", "relu"))
    lag = _check_lag(lag, 2)
    steps = V.check_int(steps, "steps")
    s_model, s_train, s_valid = split_seeds(seed, 3)
    with limit_threads(threads):
        t0 = time.perf_counter()
        model = AddingRegressor(cell=kind, hidden_size=hidden, dtype=dtype, seed=s_model, **opts)
        if recurrent_scale is not None:                      # W_aa = scale * I (an IRNN)
            H = model.hidden_size
            model.rnn.params["W_l0"][:H, :H] = recurrent_scale * np.eye(H)
        xv, yv = adding_batch(lag, valid_size, np.random.default_rng(s_valid), model.dtype)
        probe = _batch(xv[:, :256], yv[:256], None)
        flow_init = _flow(model, probe)
        opt = _optimizer(optimizer, lr)
        batches = model.batches(lag, batch_size, np.random.default_rng(s_train), train=True)

        def evaluate():
            value = model.mse(xv, yv)
            return value if math.isfinite(value) else float("inf")

        with np.errstate(over="ignore", invalid="ignore"):   # overflow -> TrainingDiverged
            curve, diverged, done = _train_until(
                model, batches, steps=steps, optimizer=opt, clip=clip, eval_every=eval_every,
                evaluate=evaluate, solved=lambda v: v < SOLVED_MSE,
                stop_when_solved=stop_when_solved, log=log)
        final = None if diverged else (curve[-1][1] if curve else evaluate())
        flow_end = None if diverged else _flow(model, probe)
        gates = None if diverged or kind == "rnn" else _gates(model.rnn)
        seconds = time.perf_counter() - t0
    return {"task": "adding", "cell": cell, "lag": lag, "steps": steps, "steps_done": done,
            "hidden": model.hidden_size, "batch_size": batch_size, "lr": lr, "clip": clip,
            "optimizer": optimizer, "seed": seed, "nonlinearity": opts.get("nonlinearity"),
            "recurrent_scale": recurrent_scale,
            "final_mse": final, "baseline_mse": float(np.mean((yv.astype(np.float64) - 1) ** 2)),
            "solved": final is not None and final < SOLVED_MSE, "diverged": diverged,
            "seconds": seconds, "curve": curve, "grad_norms_init": flow_init,
            "grad_norms_end": flow_end, "gates_end": gates}


def run_copy(cell="lstm", lag=20, *, steps=6000, hidden=64, batch_size=32, lr=3e-3,
             clip=1.0, symbols=8, length=5, seed=0, valid_size=512, eval_every=250,
             stop_when_solved=True, dtype=np.float32, threads=1, log=None):
    """Train ``cell`` (a ``SequenceTagger``) on the copy task at ``lag``.

    Parameters
    ----------
    cell : str, default "lstm"
        A key of ``CELLS``.
    lag : int, default 20
        Blanks between the symbols and the go marker.
    steps : int, default 6000
        The budget of updates.
    hidden : int, default 64
        Hidden units.
    batch_size : int, default 32
        Fresh sequences per batch.
    lr : float
        Adam's (or SGD's) learning rate.
    clip : float or None
        Clip the gradients' global norm (None or 0: no clipping).
    seed : int, default 0
        Seed of the weights and the data.
    threads : int, default 1
        The core's threads during the run.
    log : callable, optional
        ``log(step, value)`` at each held-out measurement.
    symbols : int, default 8
        The alphabet.
    length : int, default 5
        Symbols to recall.
    valid_size : int, default 512
        Held-out sequences.
    eval_every : int, default 250
        Steps between held-out measurements.
    stop_when_solved : bool, default True
        Stop once 99% of the symbols are recalled.
    dtype : numpy dtype, default numpy.float32

    Returns
    -------
    dict
        As ``run_adding``, with ``final_loss`` (cross-entropy per recalled symbol),
        ``baseline_loss`` = ln A, ``final_accuracy``, ``baseline_accuracy`` = 1/A;
        ``curve`` holds (step, accuracy).
    """
    kind, opts = _options(cell)
    lag = _check_lag(lag, 0)
    steps = V.check_int(steps, "steps")
    s_model, s_train, s_valid = split_seeds(seed, 3)
    A = V.check_int(symbols, "symbols", minimum=2)
    with limit_threads(threads):
        t0 = time.perf_counter()
        model = SequenceTagger(A, input_size=A + 2, cell=kind, hidden_size=hidden,
                               dtype=dtype, seed=s_model, **opts)
        xv, yv, mv = copy_batch(lag, valid_size, np.random.default_rng(s_valid), symbols=A,
                                length=length, dtype=model.dtype)
        probe = _batch(xv[:, :256], yv[:, :256], mv[:, :256])
        flow_init = _flow(model, probe)
        opt = _optimizer("adam", lr)
        rng = np.random.default_rng(s_train)

        def batches():
            while True:
                yield _batch(*copy_batch(lag, batch_size, rng, symbols=A, length=length,
                                         dtype=model.dtype))

        scores = {}

        def evaluate():
            scores["loss"], acc = _copy_accuracy(model, xv, yv, mv)
            return acc

        curve, diverged, done = _train_until(
            model, batches(), steps=steps, optimizer=opt, clip=clip, eval_every=eval_every,
            evaluate=evaluate, solved=lambda v: v >= SOLVED_ACCURACY,
            stop_when_solved=stop_when_solved, log=log)
        if not diverged and not curve:
            evaluate()
        accuracy = None if diverged else (curve[-1][1] if curve else None)
        flow_end = None if diverged else _flow(model, probe)
        gates = None if diverged or kind == "rnn" else _gates(model.rnn)
        seconds = time.perf_counter() - t0
    return {"task": "copy", "cell": cell, "lag": lag, "symbols": A, "length": length,
            "steps": steps, "steps_done": done, "hidden": model.hidden_size,
            "batch_size": batch_size, "lr": lr, "clip": clip, "seed": seed,
            "final_loss": None if diverged else scores["loss"], "baseline_loss": math.log(A),
            "final_accuracy": accuracy, "baseline_accuracy": 1.0 / A,
            "solved": accuracy is not None and accuracy >= SOLVED_ACCURACY,
            "diverged": diverged, "seconds": seconds, "curve": curve,
            "grad_norms_init": flow_init, "grad_norms_end": flow_end, "gates_end": gates}


def run_exploding(lag=20, *, steps=3000, hidden=32, batch_size=32, lr=0.05, clip=1.0,
                  recurrent_scale=1.0, seed=0, threads=1, log=None):
    """The same run twice, without and with gradient clipping: an IRNN on the adding problem.

    The IRNN of Le et al. (2015): a ReLU RNN whose recurrent weights start as the
    identity (times ``recurrent_scale``), trained by plain SGD. Nothing in it damps the
    state or the gradient through time: at initialization ``a⟨t⟩`` sums the inputs and
    the gradient is large; the first update throws the weights far off and the next
    forward pass overflows (``TrainingDiverged``). Clipping the gradients' global norm
    at ``clip`` bounds every step, and the same seed converges.

    Parameters
    ----------
    lag : int, default 20
        The sequence length.
    steps : int, default 3000
        The budget of updates.
    hidden : int, default 32
        Hidden units.
    batch_size : int, default 32
        Sequences per batch.
    lr : float, default 0.05
        SGD's learning rate.
    clip : float, default 1.0
        The clipped run's global-norm bound.
    recurrent_scale : float, default 1.0
        The recurrent weights start as this times the identity.
    seed : int, default 0
        Seed of both runs.
    threads : int, default 1
        The core's threads.
    log : callable, optional
        ``log(name, step, value)`` at each held-out measurement, ``name`` being
        ``"unclipped"`` or ``"clipped"``.

    Returns
    -------
    dict
        ``{"unclipped": result, "clipped": result}``, results of ``run_adding``.
    """
    if not (clip and clip > 0):
        raise ValueError(f"clip: expected a positive number, got {clip!r}")
    results = {}
    for name, c in (("unclipped", None), ("clipped", clip)):
        r = run_adding(
            "rnn", lag, steps=steps, hidden=hidden, batch_size=batch_size, lr=lr, clip=c,
            optimizer="sgd", seed=seed, stop_when_solved=False, nonlinearity="relu",
            recurrent_scale=recurrent_scale, eval_every=max(steps // 6, 1), threads=threads,
            log=(lambda s, v, n=name: log(n, s, v)) if log else None)
        r["label"] = f"IRNN, SGD lr {lr:g}, " + (f"clipped at {c:g}" if c else "no clipping")
        results[name] = r
    return results


def run_table(cells, lags, *, steps, seeds=1, hidden=32, batch_size=32, lr=1e-2, clip=1.0,
              seed=0, threads=1, log=None):
    """``run_adding`` for every cell at every lag, with seeds ``seed .. seed+seeds-1``.

    Parameters
    ----------
    cells : list of str
        Keys of ``CELLS``.
    lags : list of int
        Sequence lengths.
    steps : int
        The budget of updates per run.
    seeds : int, default 1
        Runs per cell and lag.
    hidden : int, default 32
        Hidden units.
    batch_size : int, default 32
        Sequences per batch.
    lr : float
        Adam's (or SGD's) learning rate.
    clip : float or None
        Clip the gradients' global norm (None or 0: no clipping).
    seed : int, default 0
        Seed of the weights and the data.
    threads : int, default 1
        The core's threads during the run.
    log : callable, optional
        ``log(result)`` after each run.

    Returns
    -------
    list of dict
        The results of ``run_adding``: cells outer, then lags, then seeds.
    """
    for cell in cells:
        _options(cell)
    for lag in lags:
        _check_lag(lag, 2)
    seeds = V.check_int(seeds, "seeds")
    results = []
    for cell in cells:
        for lag in lags:
            for s in range(seed, seed + seeds):
                r = run_adding(cell, lag, steps=steps, hidden=hidden, batch_size=batch_size,
                               lr=lr, clip=clip, seed=s, threads=threads)
                results.append(r)
                if log:
                    log(r)
    return results


# -------------------------------------------------------------------------- output

def describe(result):
    """One line: the outcome of one run."""
    head = f"{result['task']} lag {result['lag']}, {result['cell']}"
    if result["diverged"]:
        return f"{head}: {result['diverged']}"
    if result["task"] == "adding":
        what = (f"held-out MSE {result['final_mse']:.4f} (baseline {result['baseline_mse']:.3f}"
                f", solved below {SOLVED_MSE})")
    else:
        what = (f"held-out accuracy {result['final_accuracy']:.1%} (chance "
                f"{result['baseline_accuracy']:.1%}), {result['final_loss']:.3f} nats/symbol "
                f"(baseline ln A = {result['baseline_loss']:.3f})")
    verdict = "solved" if result["solved"] else "not solved"
    return (f"{head}: {what} - {verdict} after {result['steps_done']} of {result['steps']} "
            f"steps, {result['seconds']:.1f} s")


def markdown_table(results):
    """The Markdown table of ``run_table``'s results.

    Parameters
    ----------
    results : list of dict
        Results of ``run_adding``.

    Returns
    -------
    str
        Cells as rows, lags as columns: how many seeds solved the task, their median
        held-out MSE, and the steps the solved runs took.
    """
    cells = list(dict.fromkeys(r["cell"] for r in results))
    lags = sorted({r["lag"] for r in results})
    lines = ["| cell | " + " | ".join(f"lag {n}" for n in lags) + " |",
             "|---|" + "---|" * len(lags)]
    for cell in cells:
        row = []
        for n in lags:
            runs = [r for r in results if r["cell"] == cell and r["lag"] == n]
            row.append(_table_entry(runs) if runs else "")
        lines.append(f"| {cell} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def gates_table(results):
    """The Markdown table of the gates after training.

    Parameters
    ----------
    results : list of dict
        Results of ``run_adding``.

    Returns
    -------
    str
        Gated cells as rows: each gate's mean activation after training (and the
        fraction saturated).
    """
    names = [("gamma_u", "Γu"), ("gamma_f", "Γf"), ("gamma_r", "Γr"), ("gamma_o", "Γo")]
    lines = ["| cell | " + " | ".join(f"{sym} mean (saturated)" for _, sym in names) + " |",
             "|---|" + "---|" * len(names)]
    for r in results:
        if not r.get("gates_end"):
            continue
        cols = [f"{r['gates_end'][n]['mean']:.2f} ({r['gates_end'][n]['saturated']:.0%})"
                if n in r["gates_end"] else "" for n, _ in names]
        lines.append(f"| {r['cell']} | " + " | ".join(cols) + " |")
    return "\n".join(lines)


def _table_entry(runs):
    solved = [r for r in runs if r["solved"]]
    count = f"{len(solved)}/{len(runs)}"
    text = f"**{count} solved**" if len(solved) == len(runs) else f"{count} solved"
    finals = [r["final_mse"] for r in runs if not r["diverged"]]
    if finals:
        text += f", MSE {np.median(finals):.4f}"
    diverged = sum(1 for r in runs if r["diverged"])
    if diverged:
        text += f", {diverged} diverged"
    if solved:
        done = sorted(r["steps_done"] for r in solved)
        text += (f", {done[0]} steps" if done[0] == done[-1]
                 else f", {done[0]}-{done[-1]} steps")
    return text


def plot_gradient_flow(results, path, *, title=None):
    """Plot ``‖dC/da⟨t⟩‖ / ‖dC/da⟨T⟩‖`` against ``t`` (log scale), one curve per run, as a PNG.

    Left: at initialization; right: after training (when there is one). For the
    adding problem, whose loss is at the last step only, a curve says how much of the
    gradient at the output reaches step ``t``: how much BPTT can learn from step ``t``.
    Values below ``FLOOR`` are off the plot. Needs matplotlib (imported here).

    Parameters
    ----------
    results : list of dict
        Results of ``run_adding`` (their ``grad_norms_init`` / ``grad_norms_end``).
    path : str or os.PathLike
        The PNG file to write.
    title : str, optional
        A title above the plots.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("grad_norms_init", "at initialization")]
    if any(r.get("grad_norms_end") for r in results):
        panels.append(("grad_norms_end", "after training"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), sharey=True,
                             squeeze=False)
    lo = 1.0
    task = results[0]["task"] if results else "adding"
    for ax, (key, label) in zip(axes[0], panels):
        for i, r in enumerate(results):
            flow = r.get(key)
            if not flow:
                continue
            g = np.asarray(flow["a"], np.float64)
            rel = g / g[-1] if g[-1] > 0 else g
            t = np.arange(1, len(g) + 1)
            shown = rel > 0
            name = r.get("label", r["cell"])
            if key == "grad_norms_end" and r["task"] == "adding":
                name += f" (MSE {r['final_mse']:.3f})"
            elif key == "grad_norms_end":
                name += f" ({r['final_accuracy']:.0%} recalled)"
            style = "--" if r["cell"] in ("gru-reset-after", "lstm-peephole") else "-"
            ax.semilogy(t[shown], rel[shown], style, color=f"C{i}", label=name)
            if shown.any():
                lo = min(lo, rel[shown].min())
        if task == "adding":
            n = results[0]["lag"]
            ax.axvspan(0.5, math.ceil(n / 10) + 0.5, color="0.88", zorder=0,
                       label="first marker is here")
            ax.set_xlabel("time step t (the loss is at t = T only)")
        else:
            K = results[0]["length"]
            ax.axvspan(0.5, K + 0.5, color="0.88", zorder=0, label="symbols to recall")
            ax.set_xlabel("time step t (the loss is on the last K steps)")
        ax.set_title(label)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("‖∂C/∂a⟨t⟩‖ / ‖∂C/∂a⟨T⟩‖")
    axes[0][0].set_ylim(bottom=max(lo, FLOOR) / 3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- dates

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
NOISE_WORDS = ["on", "the", "date:", "due", "around", "by", "from", "until", "approx."]
DATE_STYLES = 5         # the short forms; with ``noise=True`` two long forms besides


def ordinal(d):
    """The ordinal of a day: 1 → "1st", 2 → "2nd", 11 → "11th", 23 → "23rd".

    Parameters
    ----------
    d : int

    Returns
    -------
    str
    """
    return f"{d}{'th' if 10 <= d % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(d % 10, 'th')}"


def human_date(date, style):
    """A date as people write it.

    Parameters
    ----------
    date : datetime.date
    style : int
        0-4 the short forms ("25th of November 2026", "November 25, 2026",
        "25 Nov 2026", "25.11.2026", "nov 25th 2026"), 5-6 the long forms
        ("Wednesday, November 25th, 2026", "the 25th day of November in the year
        2026").

    Returns
    -------
    str
    """
    m = MONTHS[date.month - 1]
    return [f"{ordinal(date.day)} of {m} {date.year}",           # 25th of November 2026
            f"{m} {date.day}, {date.year}",                      # November 25, 2026
            f"{date.day} {m[:3]} {date.year}",                   # 25 Nov 2026
            f"{date.day:02d}.{date.month:02d}.{date.year}",      # 25.11.2026
            f"{m[:3].lower()} {ordinal(date.day)} {date.year}",  # nov 25th 2026
            f"{WEEKDAYS[date.weekday()]}, {m} {ordinal(date.day)}, {date.year}",
            # Wednesday, November 25th, 2026
            f"the {ordinal(date.day)} day of {m} in the year {date.year}",
            ][style]


def date_pairs(days, n, rng, *, noise=False):
    """Pairs of (human-readable date, ISO date) of days drawn from ``days``.

    Parameters
    ----------
    days : numpy.ndarray
        Day ordinals (``datetime.date.toordinal``), e.g. one part of ``date_split``.
    n : int
        How many pairs.
    rng : numpy.random.Generator
        The random source.
    noise : bool, default False
        ``False``: the five short forms. ``True``: also the two long forms, and half
        of the sources get one or two noise words ("on", "due", ...) before them.

    Returns
    -------
    list of (str, str)
    """
    if not noise:
        return [(human_date(datetime.date.fromordinal(int(d)), int(rng.integers(DATE_STYLES))),
                 datetime.date.fromordinal(int(d)).isoformat()) for d in rng.choice(days, n)]
    out = []
    for d in rng.choice(days, n):
        date = datetime.date.fromordinal(int(d))
        text = human_date(date, int(rng.integers(DATE_STYLES + 2)))
        if rng.random() < 0.5:
            words = rng.choice(NOISE_WORDS, int(rng.integers(1, 3)), replace=False)
            text = " ".join([*words, text])
        out.append((text, date.isoformat()))
    return out


def date_split(first=1950, last=2050, held_out=0.1, rng=None):
    """The day ordinals of ``[first-01-01, last-01-01)``, split into training and held-out days.

    Parameters
    ----------
    first : int, default 1950
        The first year.
    last : int, default 2050
        The year after the last.
    held_out : float, default 0.1
        The fraction of the days kept out of training, drawn at random.
    rng : numpy.random.Generator, optional
        The random source; default ``numpy.random.default_rng(0)``.

    Returns
    -------
    train_days, held_out_days : numpy.ndarray
        Day ordinals.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    days = np.arange(datetime.date(first, 1, 1).toordinal(), datetime.date(last, 1, 1).toordinal())
    out = rng.random(len(days)) < held_out
    return days[~out], days[out]
