"""The NumPy twin of the compiled CTC kernel (csrc/_ctc.pyx): Connectionist Temporal
Classification's loss and its gradient (Graves et al. 2006), in log space.

CTC scores a label sequence ``l`` (length L) against per-step class scores without
an alignment. An alignment is a path of T symbols, labels or the blank, that reads
``l`` once repeats are merged and blanks dropped. The loss is ``-log p(l | x)``, the
log of the sum of the probabilities of every such path. The paths are counted over the
extended sequence ``l' = (blank, l_1, blank, l_2, ..., l_L, blank)``, ``S = 2L + 1``,
by two recursions over time:

    alpha[t, s] = log P(the path's first t+1 symbols read l'_1..s, ending at s)
                = logsumexp(alpha[t-1, s], alpha[t-1, s-1], alpha[t-1, s-2]*) + lp[t, l'_s]
    beta[t, s]  = log P(the path's symbols t..T-1 read l'_s..S, starting at s)
                = logsumexp(beta[t+1, s], beta[t+1, s+1], beta[t+1, s+2]*) + lp[t, l'_s]

where ``lp = log_softmax(logits)`` and the ``*`` term (a skip over a blank) exists
only when ``l'_s`` is a label that differs from ``l'_{s-2}`` (resp. ``l'_{s+2}``).
Then ``p(l | x) = exp(alpha[T-1, S-1]) + exp(alpha[T-1, S-2])``, and through the
softmax the gradient with respect to the logits is

    d loss / d logits[t, k] = softmax[t, k] - sum_{s : l'_s = k} exp(alpha[t, s] + beta[t, s] - lp[t, k] - log p)

(the softmax minus the posterior of class k at step t), for t below the input's
length and 0 beyond it.

Legend: T steps, B batch, C classes (the blank included), L a target's length,
S = 2L + 1.
"""

import numpy as np

__all__ = ["ctc_loss"]

NEG_INF = -np.inf


def _logsumexp(*terms):
    """Elementwise log(sum(exp(terms))), exact for -inf entries."""
    stacked = np.stack(terms)
    top = stacked.max(axis=0)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(stacked - safe).sum(axis=0)) + safe


def _later(x, k):
    """x moved k places up: out[s] = x[s - k], -inf where s < k (a path from s - k)."""
    return np.concatenate([np.full(k, NEG_INF), x])[:len(x)]


def _earlier(x, k):
    """x moved k places down: out[s] = x[s + k], -inf past the end (a path to s + k)."""
    return np.concatenate([x, np.full(k, NEG_INF)])[k:]


def _one(lp, labels, blank):
    """-log p(labels | lp) and d(-log p)/d lp for one example: lp (T, C) log-softmax
    rows, labels (L,). Returns (loss, posterior (T, C)), the posterior of each class at
    each step (the gradient with respect to lp is -posterior)."""
    T, C = lp.shape
    ext = np.full(2 * len(labels) + 1, blank, np.int64)      # l' = (b, l1, b, ..., lL, b)
    ext[1::2] = labels
    S = len(ext)
    skip = np.zeros(S, bool)                                  # s may come from s - 2
    skip[2:] = (ext[2:] != blank) & (ext[2:] != ext[:-2])
    emit = lp[:, ext]                                         # (T, S) lp[t, l'_s]
    alpha = np.full((T, S), NEG_INF)
    alpha[0, 0] = emit[0, 0]
    if S > 1:
        alpha[0, 1] = emit[0, 1]
    for t in range(1, T):
        prev = alpha[t - 1]                                   # stay at s, or come from
        jump = np.where(skip, _later(prev, 2), NEG_INF)       # s - 1, or over a blank
        alpha[t] = _logsumexp(prev, _later(prev, 1), jump) + emit[t]
    beta = np.full((T, S), NEG_INF)
    beta[T - 1, S - 1] = emit[T - 1, S - 1]
    if S > 1:
        beta[T - 1, S - 2] = emit[T - 1, S - 2]
    skip_back = np.zeros(S, bool)                             # s may go to s + 2
    skip_back[:-2] = skip[2:]
    for t in range(T - 2, -1, -1):
        nxt = beta[t + 1]
        jump = np.where(skip_back, _earlier(nxt, 2), NEG_INF)
        beta[t] = _logsumexp(nxt, _earlier(nxt, 1), jump) + emit[t]
    log_p = _logsumexp(alpha[T - 1, S - 1], alpha[T - 1, S - 2]) if S > 1 else alpha[T - 1, 0]
    posterior = np.zeros((T, C))
    if np.isfinite(log_p):
        gamma = np.exp(alpha + beta - emit - log_p)           # (T, S) P(at s at step t)
        for s in range(S):                                    # a class's share over its states
            posterior[:, ext[s]] += gamma[:, s]
    return -float(log_p), posterior


def ctc_loss(dlogits, losses, logits, targets, target_starts, target_lengths,
             input_lengths, blank, scale, zero_infinity):
    """CTC loss per example and the gradient of ``sum_b scale[b] * loss[b]``.

    Parameters
    ----------
    dlogits : numpy.ndarray
        Out: ``(T, B, C)``, ``scale[b] * d loss[b] / d logits[:, b]``; 0 at steps past
        an input's length; for an impossible alignment NaN, or 0 with
        ``zero_infinity``.
    losses : numpy.ndarray
        Out: ``(B,)`` float64, ``-log p(l_b | x_b)``: inf when no alignment exists,
        0 then with ``zero_infinity``.
    logits : numpy.ndarray
        ``(T, B, C)``, float32 or float64; the log-softmax is applied here.
    targets : numpy.ndarray
        ``(N,)`` int64, every example's labels one after another.
    target_starts, target_lengths : numpy.ndarray
        ``(B,)`` int64: example b's labels are ``targets[start : start + length]``.
    input_lengths : numpy.ndarray
        ``(B,)`` int64, each in ``[1, T]``.
    blank : int
        The blank's class.
    scale : numpy.ndarray
        ``(B,)`` float64, each example's weight in the gradient.
    zero_infinity : bool
        Zero the loss and the gradient of an example without any alignment.
    """
    T, B, C = logits.shape
    z = logits.astype(np.float64)
    lp = z - z.max(axis=2, keepdims=True)
    lp -= np.log(np.exp(lp).sum(axis=2, keepdims=True))               # log_softmax
    dlogits[...] = 0
    for b in range(B):
        Tb = int(input_lengths[b])
        start, L = int(target_starts[b]), int(target_lengths[b])
        loss, posterior = _one(lp[:Tb, b], targets[start:start + L], blank)
        if np.isinf(loss):
            losses[b] = 0.0 if zero_infinity else np.inf
            dlogits[:Tb, b] = 0.0 if zero_infinity else np.nan
            continue
        losses[b] = loss
        dlogits[:Tb, b] = scale[b] * (np.exp(lp[:Tb, b]) - posterior)
