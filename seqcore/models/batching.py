"""Batching helpers shared by the models: padding, step masks, length-sorted mini-batches."""

import numpy as np

from ..text import NO_TOKEN


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


def index_batches(sizes, batch_size, rng, *, shuffle=True, repeat=True, pool=16):
    """Index arrays of mini-batches over examples of ``sizes`` (their lengths).

    Examples of similar length go together (sorted within pools of ``pool`` batches)
    to waste little on padding; ``shuffle`` mixes examples and batch order each epoch.
    """
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
