"""Decoding helpers shared by the generating models: log-probabilities, drawing a token from logits, checking sampling options."""

import numpy as np

from .. import _validation as V


def log_softmax(logits):
    """logits (..., V) -> log-probabilities (..., V) in float64 (log softmax over the last axis)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def draw(logits, rng, *, temperature=1.0, top_k=None, greedy=False, banned=()):
    """One token per row of logits (N, V): argmax, or a draw from softmax(logits / temperature).

    ``top_k`` keeps only the k most likely tokens; ``banned`` ids are never drawn.
    Uses its own random source ``rng`` and guards the rounding at the end of the
    cumulative distribution (a draw never lands past the last possible token).
    """
    z = np.array(logits, dtype=np.float64)                     # (N, V)
    if len(banned):
        z[:, list(banned)] = -np.inf
    if greedy or temperature == 0:
        return z.argmax(axis=1)
    z /= temperature
    if top_k is not None and top_k < z.shape[1]:
        kth = np.partition(z, -top_k, axis=1)[:, -top_k][:, None]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max(axis=1, keepdims=True))               # unnormalized softmax
    cdf = np.cumsum(p, axis=1)
    u = rng.random(len(z)) * cdf[:, -1]                        # uniform in [0, total)
    idx = (cdf <= u[:, None]).sum(axis=1)                      # first i with cdf[i] > u
    last_possible = p.shape[1] - 1 - np.argmax(p[:, ::-1] > 0, axis=1)
    return np.minimum(idx, last_possible)


def _check_sampling(temperature, top_k, max_len):
    if not (isinstance(temperature, (int, float)) and temperature >= 0):
        raise ValueError(f"temperature: expected a number >= 0, got {temperature!r}")
    if top_k is not None:
        V.check_int(top_k, "top_k")
    V.check_int(max_len, "max_len")
