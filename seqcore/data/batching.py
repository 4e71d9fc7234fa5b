"""Batching helpers shared by the models: padding, step masks, mini-batches (length-sorted or random)."""

import numpy as np

from .. import _validation as V
from .text import NO_TOKEN

BATCHINGS = ("sorted", "random")
"""The values of ``fit(..., batching=...)``: how examples are grouped into mini-batches."""
DEFAULT_BATCHING = "sorted"
"""``batching`` when not given (docs/performance.md, "Batching lines", has the measurement)."""
POOL = 16
"""Batches per pool in ``batching="sorted"``: examples are sorted by length within it."""


def check_batching(batching):
    """``batching`` checked: one of BATCHINGS (ValueError naming the argument otherwise)."""
    return V.check_choice(batching, "batching", BATCHINGS)


def pad_ids(seqs, fill=NO_TOKEN):
    """List of B id lists -> (ids (T, B) int64 padded with ``fill``, lengths (B,))."""
    lengths = np.array([len(s) for s in seqs], np.int64)
    if lengths.size == 0 or lengths.min() < 1:
        raise ValueError("sequences: expected at least one sequence, each of at least one token")
    ids = np.full((int(lengths.max()), len(seqs)), fill, np.int64)
    for b, s in enumerate(seqs):
        ids[: len(s), b] = s
    return ids, lengths


def pad_features(seqs, dtype):
    """List of B arrays (T_b, D) -> (x (T, B, D) zero-padded, lengths (B,))."""
    seqs = [np.asarray(s) for s in seqs]
    if not seqs or any(s.ndim != 2 or len(s) == 0 for s in seqs):
        raise ValueError("sequences: expected a list of non-empty (T_b, D) arrays")
    lengths = np.array([len(s) for s in seqs], np.int64)
    x = np.zeros((int(lengths.max()), len(seqs), seqs[0].shape[1]), dtype)
    for b, s in enumerate(seqs):
        x[: len(s), b] = s
    return x, lengths


def step_mask(lengths, T):
    """(T, B) float 0/1: 1 where step t is inside sequence b."""
    return (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).astype(np.float64)


def index_batches(sizes, batch_size, rng, *, shuffle=True, repeat=True, batching=None):
    """Index arrays of mini-batches over examples of ``sizes`` (their lengths).

    ``batching="sorted"``: examples of similar length go together (sorted by length
    within pools of ``POOL`` batches of a shuffled order) to waste little on padding.
    ``batching="random"``: plain random batches (pools of one batch), as a PyTorch
    ``DataLoader(shuffle=True)``. ``shuffle`` mixes examples and batch order each
    epoch (without it, the examples' own order, sorted within pools when "sorted").
    None is ``DEFAULT_BATCHING``.
    """
    batching = DEFAULT_BATCHING if batching is None else check_batching(batching)
    pool = POOL if batching == "sorted" else 1
    sizes = np.asarray(sizes)
    n = len(sizes)
    while True:
        order = rng.permutation(n) if shuffle else np.arange(n)
        batches = []
        for start in range(0, n, batch_size * pool):
            part = order[start:start + batch_size * pool]
            part = part[np.argsort(sizes[part], kind="stable")]
            batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
        if shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        yield from batches
        if not repeat:
            return
