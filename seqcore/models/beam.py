"""Beam search over any step-by-step decoder, batched over sources, with the GNMT length penalty.

Plain NumPy and Python: the decoder's ``step`` does the arithmetic; this module
keeps the hypotheses.

Legend: B sources (``batch_size``), K beams per source (``beam_size``), N = B*K
decoder rows, V vocabulary size. Row ``b*K + k`` holds beam k of source b.

The search (as in fairseq and GNMT, Wu et al. 2016):

* Every source starts with one live beam (the others are dead: log-probability -inf)
  reading ``bos``. At each step every live beam is extended by every token; a
  candidate's log-probability is its beam's plus ``log_probs[row, token]``.
* Per source the candidates are ranked by log-probability (ties: the lower beam,
  then the lower token id, first), and the best 2K kept. An ``eos`` candidate among
  the K best finishes a hypothesis; the K best candidates that are not ``eos``
  become the next beams (fewer if there are fewer finite candidates).
* A source is done when it holds K finished hypotheses. After ``max_len`` steps the
  live beams are finished as they stand, without ``eos`` (cut off, as the greedy
  decoders do).
* Finished hypotheses are ranked by log P(Y) / lp(Y), the GNMT length penalty
  lp(Y) = ((5 + |Y|) / 6) ** length_penalty (length_penalty = 0: no normalization).
  |Y| is the number of generated tokens *counting the final eos* (the number of
  log-probabilities in the sum): a hypothesis returned as n tokens has |Y| = n + 1
  when it ended with eos, and |Y| = n = max_len when it was cut off.

With ``beam_size=1`` this is greedy decoding exactly: the one candidate kept at each
step is the argmax of the row (lowest id among ties), and the source is done as soon
as that argmax is ``eos``.

The decoder state can be anything ``reorder(state, index)`` maps to the state of the
rows ``index`` (an int64 array of row numbers; rows may repeat). The default,
``reorder_rows``, handles seqcore's layouts: arrays of 1 or 2 dimensions hold the rows
on axis 0 ((N,) lengths, (N, H) a previous context), arrays of 3 or more on axis 1
((L, N, H) a recurrent state, (Tx, N, H) encoder states), and tuples (NamedTuples
included, such as ``seqcore.nn.attention.AttentionSource`` and an LSTM's ``(a, c)``),
lists and dicts of those, recursively; ``None`` stays ``None``. The initial state
has B rows (one per source); the search tiles it to N rows with the same
``reorder``.

Rows of a source that is done, and dead beams, still run through ``step`` (reading
``eos``) so that N stays fixed; their results are ignored. ``trace(state)`` records
something per row after every step (say the attention weights a decoder keeps in its
state) and hands each finished hypothesis its own history of it.
"""

import math
import numbers
from typing import NamedTuple

import numpy as np

from .. import _validation as V

__all__ = ["beam_search", "reorder_rows", "length_penalty_factor", "Hypothesis"]


class Hypothesis(NamedTuple):
    """One finished hypothesis of a source."""

    tokens: list          # the generated token ids, without the final eos
    score: float          # log_prob / lp(|Y|): what the hypotheses are ranked by
    log_prob: float       # sum of the log-probabilities of its |Y| tokens
    ended: bool           # True: ended with eos (|Y| = len(tokens) + 1); False: cut off at max_len
    trace: object = None  # (|Y|, ...) what trace(state) gave for this hypothesis at each step


def length_penalty_factor(length, alpha):
    """The GNMT length penalty ``lp = ((5 + length) / 6) ** alpha``; 1 for ``alpha = 0``.

    Parameters
    ----------
    length : int
        ``|Y|``, counting the eos.
    alpha : float

    Returns
    -------
    float
    """
    return ((5.0 + length) / 6.0) ** alpha


def reorder_rows(state, index):
    """The state of the decoder rows ``index``, in seqcore's layouts (see the module notes).

    Arrays of 1 or 2 dimensions are taken on axis 0, of 3 or more on axis 1; tuples,
    NamedTuples, lists and dicts are reordered item by item; None stays None.

    Parameters
    ----------
    state
        A decoder state.
    index : numpy.ndarray
        ``(N',)`` row indices.

    Returns
    -------
    state
        Of the same structure.
    """
    if state is None:
        return None
    if isinstance(state, np.ndarray):
        if state.ndim == 0:
            raise TypeError("reorder_rows: a 0-dimensional array has no rows; pass "
                            "reorder=... to beam_search for this state")
        return state[index] if state.ndim <= 2 else state[:, index]
    if isinstance(state, tuple):
        items = [reorder_rows(x, index) for x in state]
        return type(state)(*items) if hasattr(state, "_fields") else tuple(items)
    if isinstance(state, list):
        return [reorder_rows(x, index) for x in state]
    if isinstance(state, dict):
        return {k: reorder_rows(x, index) for k, x in state.items()}
    raise TypeError(f"reorder_rows: cannot reorder the rows of a {type(state).__name__}; "
                    "use arrays, tuples, lists or dicts of arrays, or pass reorder=... to "
                    "beam_search")


def _check_token(value, name, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer token id, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected a token id >= {minimum}, got {value}")
    return int(value)


def _check_length_penalty(alpha):
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"length_penalty: expected a number >= 0, got {type(alpha).__name__}")
    alpha = float(alpha)
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"length_penalty: expected a finite number >= 0, got {alpha!r}")
    return alpha


def _check_banned(banned):
    if isinstance(banned, (str, bytes)) or not hasattr(banned, "__iter__"):
        raise TypeError(f"banned: expected a collection of token ids, got {type(banned).__name__}")
    return sorted({_check_token(t, "banned", 0) for t in banned})


def _check_log_probs(log_probs, N, eos, banned, step_index):
    """The step's output as a fresh float64 (N, V) array, checked."""
    where = f"step() at step {step_index}"
    if not isinstance(log_probs, np.ndarray) or log_probs.dtype.kind != "f":
        raise TypeError(f"{where}: expected log_probs as a float numpy array of shape ({N}, V), "
                        f"got {type(log_probs).__name__}"
                        + (f" of dtype {log_probs.dtype}" if isinstance(log_probs, np.ndarray)
                           else ""))
    if log_probs.ndim != 2 or log_probs.shape[0] != N or log_probs.shape[1] == 0:
        raise ValueError(f"{where}: expected log_probs of shape ({N}, V) (one row per beam: "
                         f"batch_size * beam_size), got {log_probs.shape}")
    lp = np.array(log_probs, dtype=np.float64)                     # (N, V), a copy we may edit
    if np.isnan(lp).any() or np.isposinf(lp).any():
        raise ValueError(f"{where}: log_probs contain NaN or +infinity")
    Vsize = lp.shape[1]
    if eos >= Vsize:
        raise ValueError(f"eos: expected a token id in [0, {Vsize}) (the step's vocabulary), "
                         f"got {eos}")
    if banned and banned[-1] >= Vsize:
        raise ValueError(f"banned: expected token ids in [0, {Vsize}), got {banned[-1]}")
    if banned:
        lp[:, banned] = -np.inf
    return lp


def _ranked(row, n):
    """Indices of the n largest finite entries of row, best first (ties: lower index first)."""
    finite = np.isfinite(row)
    if np.count_nonzero(finite) <= n:
        cand = np.flatnonzero(finite)
    else:
        cut = row.size - n
        threshold = np.partition(row, cut)[cut]                   # the n-th largest value
        cand = np.flatnonzero((row >= threshold) & finite)        # every tie of it, too
    order = np.lexsort((cand, -row[cand]))                        # by value down, then index up
    return cand[order[:n]]


def _extend_trace(traced, rows, B, K, t):
    """traced (B, K, t, ...) or None, rows (N, ...) from trace(state) -> (B, K, t+1, ...)."""
    rows = np.asarray(rows)
    if rows.ndim == 0 or rows.shape[0] != B * K:
        raise ValueError(f"trace(state) at step {t}: expected an array with {B * K} rows "
                         f"(batch_size * beam_size) on axis 0, got shape {rows.shape}")
    rows = rows.reshape((B, K, 1) + rows.shape[1:])
    if traced is None:
        return rows.copy()
    if traced.shape[3:] != rows.shape[3:]:
        raise ValueError(f"trace(state) at step {t}: expected rows of shape {traced.shape[3:]} "
                         f"as at the first step, got {rows.shape[3:]}")
    return np.concatenate([traced, rows], axis=2)


def beam_search(step, init_state, batch_size, *, bos, eos, beam_size, max_len,
                length_penalty=0.0, banned=(), reorder=None, trace=None, return_all=False):
    """Beam search for ``batch_size`` sources at once (see the module notes).

    Parameters
    ----------
    step : callable
        ``step(tokens, state) -> (log_probs, new_state)``: runs the decoder one token
        for all ``N = batch_size * beam_size`` rows; ``tokens`` ``(N,)`` int64,
        ``log_probs`` ``(N, V)`` float.
    init_state
        The decoder state of the ``B`` sources (``B`` rows), tiled to ``N`` rows with
        ``reorder``.
    batch_size : int
        ``B``, the sources.
    bos : int
        The token read at the first step (any integer; seqcore's decoders read -1,
        ``seqcore.data.NO_TOKEN``, for ``x⟨1⟩ = 0``).
    eos : int
        The token that ends a hypothesis.
    beam_size : int
        ``K``, hypotheses kept per source.
    max_len : int
        At most this many decoder steps, so at most ``max_len`` tokens counting the
        eos.
    length_penalty : float, default 0.0
        GNMT's ``alpha``: hypotheses rank by ``log P / lp``, ``lp = ((5 + |Y|) / 6) **
        alpha``.
    banned : iterable of int, default ()
        Token ids never generated (eos may not be banned).
    reorder : callable, optional
        ``reorder(state, index)``: the state of rows ``index``; default
        ``reorder_rows``.
    trace : callable, optional
        ``trace(state) -> (N, ...)`` array: something to record per row after every
        step (e.g. the attention weights ``(N, Tx)`` the step kept in its state); each
        returned ``Hypothesis`` then holds its own rows of it, stacked: ``trace``
        ``(|Y|, ...)``, row ``i`` from the step that produced its token ``i`` (the last
        row: the eos step, if it ended).
    return_all : bool, default False
        Also return every source's finished hypotheses.

    Returns
    -------
    tokens : list of list of int
        ``tokens[b]``, the best hypothesis of source ``b``, without eos.
    scores : numpy.ndarray
        ``(B,)`` float64, its ``log P / lp``. A source whose every candidate had
        log-probability -inf gets an empty hypothesis with score -inf.
    nbest : list of list of Hypothesis
        Only with ``return_all=True``: ``nbest[b]`` the (up to ``K``) finished
        hypotheses of source ``b``, best first.
    """
    if not callable(step):
        raise TypeError(f"step: expected a callable step(tokens, state), got "
                        f"{type(step).__name__}")
    B = V.check_int(batch_size, "batch_size")
    K = V.check_int(beam_size, "beam_size")
    max_len = V.check_int(max_len, "max_len")
    if isinstance(bos, (bool, np.bool_)) or not isinstance(bos, numbers.Integral):
        raise TypeError(f"bos: expected an integer token id, got {type(bos).__name__}")
    bos = int(bos)
    eos = _check_token(eos, "eos", 0)
    alpha = _check_length_penalty(length_penalty)
    banned = _check_banned(banned)
    if eos in banned:
        raise ValueError(f"banned: contains eos ({eos}); a hypothesis could never end")
    if reorder is None:
        reorder = reorder_rows
    elif not callable(reorder):
        raise TypeError(f"reorder: expected a callable reorder(state, index) or None, got "
                        f"{type(reorder).__name__}")
    if trace is not None and not callable(trace):
        raise TypeError(f"trace: expected a callable trace(state) or None, got "
                        f"{type(trace).__name__}")
    V.check_bool(return_all, "return_all")

    N = B * K
    state = reorder(init_state, np.repeat(np.arange(B), K))          # source b -> its K rows
    tokens = np.full(N, bos, np.int64)                                # (N,) the tokens read next
    beam_lp = np.full((B, K), -np.inf)                                # (B, K) log P of each beam
    beam_lp[:, 0] = 0.0                                               # one live beam per source
    history = np.zeros((B, K, 0), np.int64)                           # (B, K, t) tokens so far
    finished = [[] for _ in range(B)]                                 # Hypothesis per source
    traced = None                                                     # (B, K, t, ...) trace so far
    done = np.zeros(B, bool)

    for t in range(max_len):
        log_probs, state = step(tokens, state)
        lp = _check_log_probs(log_probs, N, eos, banned, t)          # (N, V)
        if trace is not None:
            traced = _extend_trace(traced, trace(state), B, K, t)     # (B, K, t+1, ...)
        Vsize = lp.shape[1]
        total = (beam_lp.reshape(N, 1) + lp).reshape(B, K * Vsize)    # (B, K*V) candidate log P
        last = t == max_len - 1
        next_lp = np.full((B, K), -np.inf)
        next_tok = np.full((B, K), eos, np.int64)                     # dead beams read eos
        parent = np.zeros((B, K), np.int64)                           # beam each one extends
        for b in np.flatnonzero(~done):
            alive = 0
            for rank, c in enumerate(_ranked(total[b], 2 * K)):
                k, w = divmod(int(c), Vsize)
                if w == eos:
                    if rank < K:            # only an eos among the K best ends a hypothesis
                        n = t + 1                                     # |Y|, the eos counted
                        finished[b].append(Hypothesis(
                            history[b, k].tolist(),
                            float(total[b, c]) / length_penalty_factor(n, alpha),
                            float(total[b, c]), True,
                            None if traced is None else traced[b, k].copy()))
                elif alive < K:
                    next_lp[b, alive], next_tok[b, alive], parent[b, alive] = total[b, c], w, k
                    alive += 1
            if last:                        # cut off: the live beams finish as they stand
                for k in range(alive):
                    finished[b].append(Hypothesis(
                        history[b, parent[b, k]].tolist() + [int(next_tok[b, k])],
                        float(next_lp[b, k]) / length_penalty_factor(max_len, alpha),
                        float(next_lp[b, k]), False,
                        None if traced is None else traced[b, parent[b, k]].copy()))
            if len(finished[b]) >= K or alive == 0:
                done[b] = True
        if last or done.all():
            break
        next_lp[done] = -np.inf                                       # a done source's rows: dead
        rows = (np.arange(B)[:, None] * K + parent).ravel()           # (N,) row each beam extends
        state = reorder(state, rows)
        history = np.concatenate([history[np.arange(B)[:, None], parent],
                                  next_tok[:, :, None]], axis=2)      # (B, K, t+1)
        if traced is not None:
            traced = traced[np.arange(B)[:, None], parent]            # follows the beams
        beam_lp = next_lp
        tokens = next_tok.ravel()

    best_tokens, scores, nbest = [], np.full(B, -np.inf), []
    for b in range(B):
        hyps = sorted(finished[b], key=lambda h: -h.score)[:K]        # stable: ties keep order
        nbest.append(hyps)
        best_tokens.append(list(hyps[0].tokens) if hyps else [])
        if hyps:
            scores[b] = hyps[0].score
    if return_all:
        return best_tokens, scores, nbest
    return best_tokens, scores
