"""Optimizers (SGD, Adam), gradient clipping (by value, by global norm) and learning-rate schedules.

Plain NumPy, updating parameters in place. An optimizer's ``step(parameters)``
takes a list of ``(name, param, grad)`` triples (what a model's ``parameters()``
returns); its state is keyed by those names, so it can be saved with the model
(``state_dict()``) and training resumed (``load_state_dict``).

Clipping works on a list of grads dicts (``[layer.grads, ...]``) or of arrays.
"""

import math

import numpy as np

__all__ = ["SGD", "Adam", "clip_grad_value", "clip_grad_norm", "global_norm",
           "Constant", "StepDecay", "Cosine", "make_schedule", "make_optimizer"]


# ------------------------------------------------------------------------ clipping

def _arrays(grads):
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


def global_norm(grads):
    """sqrt(sum of squares) over every gradient array (computed in float64)."""
    return math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in _arrays(grads)))


def clip_grad_value(grads, clip):
    """Clip every gradient entry to [-clip, clip], in place."""
    if not clip > 0:
        raise ValueError(f"clip: expected a positive number, got {clip}")
    for g in _arrays(grads):
        np.clip(g, -clip, clip, out=g)


def clip_grad_norm(grads, max_norm):
    """Scale all gradients together so their global norm is at most ``max_norm``, in place.

    Returns the global norm before clipping (inf or nan when a gradient is not finite,
    in which case nothing is scaled).
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm: expected a positive number, got {max_norm}")
    norm = global_norm(grads)
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        for g in _arrays(grads):
            g *= scale
    return norm


# ----------------------------------------------------------------------- schedules

class Constant:
    """lr(t) = lr."""

    def __call__(self, step):
        return 1.0

    def config(self):
        return {"name": "constant"}


class StepDecay:
    """lr(t) = lr * factor ** (t // every)."""

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
    """Linear warm-up over ``warmup`` steps, then cosine decay from lr to ``final * lr`` at ``total``."""

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


def make_schedule(config):
    """A schedule from its ``config()`` dict (or None for constant)."""
    if config is None:
        return Constant()
    config = dict(config)
    name = config.pop("name")
    kinds = {"constant": Constant, "step": StepDecay, "cosine": Cosine}
    if name not in kinds:
        raise ValueError(f"schedule: unknown name {name!r}")
    return kinds[name](**config)


# ---------------------------------------------------------------------- optimizers

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

    def step(self, parameters):
        """One update of every (name, param, grad) in ``parameters``, in place."""
        lr = self.current_lr
        for name, p, g in parameters:
            self._update(name, p, g, lr)
        self.t += 1

    def config(self):
        return {"name": self.name, "lr": self.lr, "schedule": self.schedule.config(),
                **self._hyper()}

    def state_dict(self):
        """{"t": int, "<slot>/<param name>": array}: everything needed to resume."""
        state = {"t": np.array(self.t, np.int64)}
        for slot, arrays in self._slots().items():
            for name, arr in arrays.items():
                state[f"{slot}/{name}"] = arr
        return state

    def load_state_dict(self, state):
        self.t = int(state["t"])
        slots = self._slots()
        for key, arr in state.items():
            if key == "t":
                continue
            slot, _, name = key.partition("/")
            if slot not in slots:
                raise ValueError(f"optimizer state: unknown entry {key!r}")
            slots[slot][name] = np.array(arr)


class SGD(_Optimizer):
    """p -= lr * v,  v = momentum * v + g  (plain gradient descent when momentum = 0)."""

    name = "sgd"

    def __init__(self, lr=0.1, *, momentum=0.0, schedule=None):
        super().__init__(lr, schedule)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum: expected 0 <= momentum < 1, got {momentum}")
        self.momentum = float(momentum)
        self.velocity = {}

    def _update(self, name, p, g, lr):
        if self.momentum:
            v = self.velocity.get(name)
            v = g.copy() if v is None else self.momentum * v + g
            self.velocity[name] = v
            p -= lr * v
        else:
            p -= lr * g

    def _hyper(self):
        return {"momentum": self.momentum}

    def _slots(self):
        return {"velocity": self.velocity}


class Adam(_Optimizer):
    """Adam (Kingma & Ba 2015): m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2, p -= lr m_hat / (sqrt(v_hat) + eps)."""

    name = "adam"

    def __init__(self, lr=1e-3, *, betas=(0.9, 0.999), eps=1e-8, schedule=None):
        super().__init__(lr, schedule)
        self.beta1, self.beta2 = (float(b) for b in betas)
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"betas: expected two numbers in [0, 1), got {betas}")
        self.eps = float(eps)
        self.m, self.v = {}, {}

    def step(self, parameters):
        t = self.t + 1
        # Bias corrections folded into the step size (the paper's "efficient version").
        self._alpha = self.current_lr * math.sqrt(1 - self.beta2 ** t) / (1 - self.beta1 ** t)
        self._eps_hat = self.eps * math.sqrt(1 - self.beta2 ** t)
        super().step(parameters)

    def _update(self, name, p, g, lr):
        m = self.m.get(name)
        if m is None:
            m = self.m[name] = np.zeros_like(p)
            self.v[name] = np.zeros_like(p)
        v = self.v[name]
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * (g * g)
        p -= self._alpha * m / (np.sqrt(v) + self._eps_hat)

    def _hyper(self):
        return {"betas": [self.beta1, self.beta2], "eps": self.eps}

    def _slots(self):
        return {"m": self.m, "v": self.v}


def make_optimizer(config):
    """An optimizer from its ``config()`` dict."""
    config = dict(config)
    name = config.pop("name")
    schedule = make_schedule(config.pop("schedule", None))
    kinds = {"sgd": SGD, "adam": Adam}
    if name not in kinds:
        raise ValueError(f"optimizer: unknown name {name!r}")
    return kinds[name](schedule=schedule, **config)
