"""Optimizers (SGD, Adam, AdamW), gradient clipping (by value, by global norm) and learning-rate schedules.

Optimizers update parameters in place. An optimizer's ``step(parameters)`` takes a
list of ``(name, param, grad)`` triples (what a model's ``parameters()`` returns);
its state is keyed by those names, so it can be saved with the model
(``state_dict()``, which holds the schedule's state too) and training resumed
(``load_state_dict``). Adam's update and the global norm run compiled
(seqcore._kernels.{path}.train: one pass over each parameter, no temporaries), with
``seqcore.reference.adam_update`` beside it as the readable statement of the math.

Clipping works on a list of grads dicts (``[layer.grads, ...]``) or of arrays.
A schedule is a multiplier of the learning rate, ``schedule(step)``; one that also
has ``observe(metric)`` (ReduceOnPlateau) is told the held-out loss by the trainer.
"""

import math

import numpy as np

from .. import reference
from .._dispatch import get_num_threads, train_kernels
from .. import _validation as V
from .._validation import FLOAT_DTYPES

__all__ = ["SGD", "Adam", "AdamW", "clip_grad_value", "clip_grad_norm", "global_norm",
           "Constant", "StepDecay", "Cosine", "ReduceOnPlateau", "make_schedule",
           "make_optimizer"]


# ------------------------------------------------------------------------ clipping

def grad_arrays(grads):
    """The gradient arrays in a list of dicts (or of arrays, or of (name, p, g) triples)."""
    out = []
    for g in grads:
        if isinstance(g, dict):
            out.extend(g.values())
        elif isinstance(g, tuple):
            out.append(g[2])
        else:
            out.append(g)
    return out


def _sum_squares(g, backend):
    """sum(g ** 2), accumulated in float64 (compiled for contiguous float arrays), and
    inf when it exceeds the range of g's dtype: the sum of squares of a float32
    gradient beyond float32's range is an overflow, as in PyTorch, whose norms are
    computed in the gradients' dtype (the trainer stops on it: "the gradient norm is
    inf")."""
    if (isinstance(g, np.ndarray) and g.dtype in FLOAT_DTYPES and g.flags.c_contiguous
            and g.size):
        s = (train_kernels().sum_squares(g.reshape(-1)) if backend == "cython"
             else reference.sum_squares(g))
        return math.inf if s > _FLOAT_MAX[g.dtype] else s          # (NaN stays NaN)
    return reference.sum_squares(g)


_FLOAT_MAX = {dt: float(np.finfo(dt).max) for dt in FLOAT_DTYPES}


def global_norm(grads, *, backend="cython"):
    """The global norm of the gradients: the square root of the sum of every entry's square.

    Parameters
    ----------
    grads : list
        Gradient dicts (``[layer.grads, ...]``, ``model.grads()``) or arrays.
    backend : {"cython", "numpy"}, default "cython"
        The compiled sum of squares, or its NumPy twin (``seqcore.reference.sum_squares``).

    Returns
    -------
    float
        Computed in float64.
    """
    V.check_backend(backend)
    return math.sqrt(sum(_sum_squares(g, backend) for g in grad_arrays(grads)))


def clip_grad_value(grads, clip):
    """Clip every gradient entry to ``[-clip, clip]``, in place.

    Parameters
    ----------
    grads : list
        Gradient dicts (``[layer.grads, ...]``, ``model.grads()``) or arrays.
    clip : float
        A positive number.

    Raises
    ------
    ValueError
        ``clip`` not positive.
    """
    if not clip > 0:
        raise ValueError(f"clip: expected a positive number, got {clip}")
    for g in grad_arrays(grads):
        np.clip(g, -clip, clip, out=g)


def clip_grad_norm(grads, max_norm, *, backend="cython"):
    """Scale all gradients together so that their global norm is at most ``max_norm``, in place.

    Parameters
    ----------
    grads : list
        Gradient dicts (``[layer.grads, ...]``, ``model.grads()``) or arrays.
    max_norm : float
        A positive number.
    backend : {"cython", "numpy"}, default "cython"
        As in ``global_norm``.

    Returns
    -------
    float
        The global norm before clipping (inf or nan when a gradient is not finite, in
        which case nothing is scaled).

    Raises
    ------
    ValueError
        ``max_norm`` not positive.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm: expected a positive number, got {max_norm}")
    norm = global_norm(grads, backend=backend)
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        for g in grad_arrays(grads):
            g *= scale
    return norm


# ----------------------------------------------------------------------- schedules

class Constant:
    """A constant learning rate: ``lr(t) = lr``."""

    def __call__(self, step):
        return 1.0

    def config(self):
        return {"name": "constant"}


class StepDecay:
    """Step decay: ``lr(t) = lr * factor ** (t // every)``.

    Parameters
    ----------
    every : int
        Steps between decays, ``>= 1``.
    factor : float, default 0.5
        In ``(0, 1]``.

    Raises
    ------
    ValueError
        A value out of range.
    """

    def __init__(self, every, factor=0.5):
        if every < 1 or not 0 < factor <= 1:
            raise ValueError(f"StepDecay: expected every >= 1 and 0 < factor <= 1, "
                             f"got every={every}, factor={factor}")
        self.every, self.factor = int(every), float(factor)

    def __call__(self, step):
        return self.factor ** (step // self.every)

    def config(self):
        return {"name": "step", "every": self.every, "factor": self.factor}


class Cosine:
    """Linear warm-up over ``warmup`` steps, then cosine decay from ``lr`` to ``final * lr`` at ``total``.

    Parameters
    ----------
    total : int
        The step at which the decay ends (usually the run's ``steps``), ``>= 1``.
    warmup : int, default 0
        Steps of linear warm-up.
    final : float, default 0.1
        The final rate as a fraction of ``lr``, in ``[0, 1]``.

    Raises
    ------
    ValueError
        A value out of range.
    """

    def __init__(self, total, warmup=0, final=0.1):
        if total < 1 or warmup < 0 or not 0 <= final <= 1:
            raise ValueError(f"Cosine: expected total >= 1, warmup >= 0, 0 <= final <= 1, "
                             f"got total={total}, warmup={warmup}, final={final}")
        self.total, self.warmup, self.final = int(total), int(warmup), float(final)

    def __call__(self, step):
        if step < self.warmup:
            return (step + 1) / self.warmup
        span = max(self.total - self.warmup, 1)
        progress = min((step - self.warmup) / span, 1.0)
        return self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * progress))

    def config(self):
        return {"name": "cosine", "total": self.total, "warmup": self.warmup,
                "final": self.final}


class ReduceOnPlateau:
    """Multiply the learning rate by ``factor`` when the held-out loss stops improving.

    PyTorch's ``ReduceLROnPlateau`` in mode "min" with a relative threshold, as a
    multiplier: ``observe(metric)`` is told the loss after each evaluation (``fit``
    does it for every held-out measurement). A loss below ``best * (1 - threshold)``
    is an improvement (it becomes ``best``); after more than ``patience`` evaluations
    in a row without one, the multiplier becomes ``max(scale * factor, min_scale)``,
    and the next ``cooldown`` evaluations count no bad ones. ``schedule(step)``
    returns the current multiplier, whatever the step. (PyTorch skips a reduction
    smaller than ``eps`` in lr units; here in units of the multiplier, the same for
    lr = 1.) Its state (``state_dict``) is saved with the optimizer's.

    Parameters
    ----------
    factor : float, default 0.25
        In ``(0, 1)``.
    patience : int, default 0
        Evaluations without improvement tolerated.
    threshold : float, default 1e-4
        The relative improvement that counts.
    min_scale : float, default 0.0
        The multiplier's floor.
    cooldown : int, default 0
        Evaluations after a reduction that count no bad ones.
    eps : float, default 1e-8
        A smaller reduction of the multiplier is skipped.

    Raises
    ------
    ValueError
        A value out of range.
    """

    def __init__(self, factor=0.25, patience=0, threshold=1e-4, min_scale=0.0, cooldown=0,
                 eps=1e-8):
        if not 0 < factor < 1:
            raise ValueError(f"ReduceOnPlateau: expected 0 < factor < 1, got {factor}")
        if patience < 0 or cooldown < 0 or threshold < 0 or not 0 <= min_scale <= 1:
            raise ValueError(f"ReduceOnPlateau: expected patience >= 0, cooldown >= 0, "
                             f"threshold >= 0, 0 <= min_scale <= 1, got patience={patience}, "
                             f"cooldown={cooldown}, threshold={threshold}, "
                             f"min_scale={min_scale}")
        self.factor, self.threshold = float(factor), float(threshold)
        self.patience, self.cooldown = int(patience), int(cooldown)
        self.min_scale, self.eps = float(min_scale), float(eps)
        self.best = math.inf          # lowest loss seen so far
        self.bad = 0                  # evaluations in a row without an improvement
        self.cooling = 0              # evaluations of cooldown still to go
        self.scale = 1.0              # the current multiplier

    def __call__(self, step):
        return self.scale

    def observe(self, metric):
        """Take the held-out loss of one evaluation.

        Parameters
        ----------
        metric : float
            The held-out loss.

        Returns
        -------
        float
            The multiplier after it.
        """
        metric = float(metric)
        if metric < self.best * (1 - self.threshold):
            self.best, self.bad = metric, 0
        else:
            self.bad += 1
        if self.cooling > 0:
            self.cooling -= 1
            self.bad = 0
        if self.bad > self.patience:
            scale = max(self.scale * self.factor, self.min_scale)
            if self.scale - scale > self.eps:
                self.scale = scale
            self.cooling, self.bad = self.cooldown, 0
        return self.scale

    def config(self):
        return {"name": "plateau", "factor": self.factor, "patience": self.patience,
                "threshold": self.threshold, "min_scale": self.min_scale,
                "cooldown": self.cooldown, "eps": self.eps}

    def state_dict(self):
        return {"best": np.array(self.best), "bad": np.array(self.bad, np.int64),
                "cooling": np.array(self.cooling, np.int64), "scale": np.array(self.scale)}

    def load_state_dict(self, state):
        unknown = set(state) - {"best", "bad", "cooling", "scale"}
        if unknown:
            raise ValueError(f"schedule state: unknown entries {sorted(unknown)}")
        self.best = float(state.get("best", math.inf))
        self.bad = int(state.get("bad", 0))
        self.cooling = int(state.get("cooling", 0))
        self.scale = float(state.get("scale", 1.0))


def make_schedule(config):
    """A schedule from its ``config()`` dict (as saved with a model).

    Parameters
    ----------
    config : dict or None
        ``{"name": "constant" | "step" | "cosine" | "plateau", ...}``; None for
        ``Constant()``.

    Returns
    -------
    Constant, StepDecay, Cosine or ReduceOnPlateau

    Raises
    ------
    ValueError
        An unknown name.
    """
    if config is None:
        return Constant()
    config = dict(config)
    name = config.pop("name")
    kinds = {"constant": Constant, "step": StepDecay, "cosine": Cosine,
             "plateau": ReduceOnPlateau}
    if name not in kinds:
        raise ValueError(f"schedule: unknown name {name!r}")
    return kinds[name](**config)


# ---------------------------------------------------------------------- optimizers

def _compiled_ok(p, g, m, v):
    """Whether the compiled update takes these arrays: one float dtype, one shape,
    C-contiguous, the updated ones writeable (else the reference runs)."""
    return (isinstance(g, np.ndarray) and p.dtype in FLOAT_DTYPES
            and p.dtype == g.dtype == m.dtype == v.dtype
            and p.shape == g.shape == m.shape == v.shape
            and p.flags.c_contiguous and g.flags.c_contiguous and m.flags.c_contiguous
            and v.flags.c_contiguous and p.flags.writeable and m.flags.writeable
            and v.flags.writeable and p.size > 0)


class _Optimizer:
    def __init__(self, lr, schedule):
        if not lr > 0:
            raise ValueError(f"lr: expected a positive learning rate, got {lr}")
        self.lr = float(lr)
        self.schedule = schedule if schedule is not None else Constant()
        self.t = 0                 # updates done so far

    @property
    def current_lr(self):
        return self.lr * self.schedule(self.t)

    def step(self, parameters, *, backend="cython"):
        """One update of every parameter, in place.

        Parameters
        ----------
        parameters : list of (str, numpy.ndarray, numpy.ndarray)
            ``(name, param, grad)``, as ``model.parameters()`` gives them.
        backend : {"cython", "numpy"}, default "cython"
            The compiled update, or its NumPy twin (Adam's
            ``seqcore.reference.adam_update``); ``fit`` passes the model's backend.
        """
        V.check_backend(backend)
        lr = self.current_lr
        for name, p, g in parameters:
            self._update(name, p, g, lr, backend)
        self.t += 1

    def config(self):
        return {"name": self.name, "lr": self.lr, "schedule": self.schedule.config(),
                **self._hyper()}

    def state_dict(self):
        """{"t": int, "<slot>/<param name>": array, "schedule/<entry>": array}:
        everything needed to resume (the schedule's entries when it has a state)."""
        state = {"t": np.array(self.t, np.int64)}
        for slot, arrays in self._slots().items():
            for name, arr in arrays.items():
                state[f"{slot}/{name}"] = arr
        if hasattr(self.schedule, "state_dict"):
            for key, value in self.schedule.state_dict().items():
                state[f"schedule/{key}"] = value
        return state

    def load_state_dict(self, state):
        self.t = int(state["t"])
        slots = self._slots()
        schedule = {}
        for key, arr in state.items():
            if key == "t":
                continue
            slot, _, name = key.partition("/")
            if slot == "schedule":
                schedule[name] = arr
                continue
            if slot not in slots:
                raise ValueError(f"optimizer state: unknown entry {key!r}")
            slots[slot][name] = np.array(arr)
        if schedule:
            if not hasattr(self.schedule, "load_state_dict"):
                raise ValueError(f"optimizer state: schedule entries "
                                 f"{sorted(schedule)} for a schedule without state "
                                 f"({self.schedule.config()['name']})")
            self.schedule.load_state_dict(schedule)


class SGD(_Optimizer):
    """Stochastic gradient descent: ``v = momentum * v + g``, ``p -= lr * v``.

    Plain gradient descent when ``momentum = 0``. ``weight_decay`` adds
    ``weight_decay * p`` to the gradient first (coupled L2, as ``torch.optim.SGD``);
    the model's grads themselves are left as they are.

    Parameters
    ----------
    lr : float, default 0.1
        The learning rate (``fit(optimizer="sgd")`` uses 0.5).
    momentum : float, default 0.0
        In ``[0, 1)``.
    weight_decay : float, default 0.0
        Coupled L2 weight decay, ``>= 0``.
    schedule : schedule object, optional
        A multiplier of ``lr`` by step (``Cosine``, ``StepDecay``,
        ``ReduceOnPlateau``, ``Constant``); None for a constant rate.

    Raises
    ------
    ValueError
        A learning rate that is not positive, or a value out of range.

    Examples
    --------
    >>> import seqcore
    >>> opt = seqcore.optim.SGD(0.5, momentum=0.9, schedule=seqcore.optim.Cosine(1000))
    """

    name = "sgd"

    def __init__(self, lr=0.1, *, momentum=0.0, weight_decay=0.0, schedule=None):
        super().__init__(lr, schedule)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum: expected 0 <= momentum < 1, got {momentum}")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay: expected a number >= 0, got {weight_decay}")
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.velocity = {}

    def _update(self, name, p, g, lr, backend):
        if self.weight_decay:
            g = g + self.weight_decay * p               # L2: the gradient of wd/2 |p|^2
        if self.momentum:
            v = self.velocity.get(name)
            if v is None:
                v = self.velocity[name] = np.array(g, copy=True)
            else:
                v *= self.momentum
                v += g                                  # v = momentum v + g
            p -= lr * v
        else:
            p -= lr * g

    def _hyper(self):
        return {"momentum": self.momentum, "weight_decay": self.weight_decay}

    def _slots(self):
        return {"velocity": self.velocity}


class Adam(_Optimizer):
    """Adam (Kingma & Ba 2015).

    ``m = β1 m + (1 - β1) g``, ``v = β2 v + (1 - β2) g²``,
    ``p -= lr m̂ / (√v̂ + eps)`` with the bias-corrected ``m̂`` and ``v̂``.

    Parameters
    ----------
    lr : float, default 1e-3
        The learning rate (``fit`` uses 1e-2 by default).
    betas : tuple of float, default (0.9, 0.999)
        ``(β1, β2)``, each in ``[0, 1)``.
    eps : float, default 1e-8
        Added to the denominator.
    schedule : schedule object, optional
        A multiplier of ``lr`` by step (``Cosine``, ``StepDecay``,
        ``ReduceOnPlateau``, ``Constant``); None for a constant rate.

    Raises
    ------
    ValueError
        A learning rate that is not positive, or betas outside ``[0, 1)``.
    """

    name = "adam"
    weight_decay = 0.0             # decoupled weight decay: AdamW's; none for Adam

    def __init__(self, lr=1e-3, *, betas=(0.9, 0.999), eps=1e-8, schedule=None):
        super().__init__(lr, schedule)
        self.beta1, self.beta2 = (float(b) for b in betas)
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"betas: expected two numbers in [0, 1), got {betas}")
        self.eps = float(eps)
        self.m, self.v = {}, {}

    def step(self, parameters, *, backend="cython"):
        t = self.t + 1
        lr = self.current_lr
        # Bias corrections folded into the step size (the paper's "efficient version").
        self._alpha = lr * math.sqrt(1 - self.beta2 ** t) / (1 - self.beta1 ** t)
        self._eps_hat = self.eps * math.sqrt(1 - self.beta2 ** t)
        self._decay = 1.0 - lr * self.weight_decay      # p *= decay first (AdamW)
        super().step(parameters, backend=backend)

    def _update(self, name, p, g, lr, backend):
        m = self.m.get(name)
        if m is None:
            m = self.m[name] = np.zeros_like(p)
            self.v[name] = np.zeros_like(p)
        v = self.v[name]
        if backend == "cython" and _compiled_ok(p, g, m, v):
            train_kernels().adam_update(p.reshape(-1), m.reshape(-1), v.reshape(-1), g.reshape(-1),
                                  self.beta1, self.beta2, self._alpha, self._eps_hat,
                                  self._decay, get_num_threads())
        else:
            reference.adam_update(p, g, m, v, self.beta1, self.beta2, self._alpha,
                                  self._eps_hat, self._decay)

    def _hyper(self):
        return {"betas": [self.beta1, self.beta2], "eps": self.eps}

    def _slots(self):
        return {"m": self.m, "v": self.v}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as ``torch.optim.AdamW``.

    ``p *= 1 - lr * weight_decay``, then the Adam step (``lr``: the scheduled rate).

    Parameters
    ----------
    lr : float, default 1e-3
        The learning rate.
    betas : tuple of float, default (0.9, 0.999)
        ``(β1, β2)``, each in ``[0, 1)``.
    eps : float, default 1e-8
        Added to the denominator.
    weight_decay : float, default 0.01
        Decoupled weight decay, ``>= 0``.
    schedule : schedule object, optional
        A multiplier of ``lr`` by step (``Cosine``, ``StepDecay``,
        ``ReduceOnPlateau``, ``Constant``); None for a constant rate.

    Raises
    ------
    ValueError
        A learning rate that is not positive, or a value out of range.
    """

    name = "adamw"

    def __init__(self, lr=1e-3, *, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 schedule=None):
        super().__init__(lr, betas=betas, eps=eps, schedule=schedule)
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay: expected a number >= 0, got {weight_decay}")
        self.weight_decay = float(weight_decay)

    def _hyper(self):
        return {**super()._hyper(), "weight_decay": self.weight_decay}


def make_optimizer(config):
    """An optimizer from its ``config()`` dict (as saved with a model).

    Parameters
    ----------
    config : dict
        ``{"name": "sgd" | "adam" | "adamw", ...}``.

    Returns
    -------
    SGD, Adam or AdamW

    Raises
    ------
    ValueError
        An unknown name.
    """
    config = dict(config)
    name = config.pop("name")
    schedule = make_schedule(config.pop("schedule", None))
    kinds = {"sgd": SGD, "adam": Adam, "adamw": AdamW}
    if name not in kinds:
        raise ValueError(f"optimizer: unknown name {name!r}")
    return kinds[name](schedule=schedule, **config)
