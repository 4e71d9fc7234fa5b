"""Reading label sequences out of CTC's per-step class scores: greedy decoding and
prefix beam search, with optional shallow fusion of a character language model.

A CTC output is a path of labels and blanks, one symbol per step, read by merging
repeats and then dropping blanks (``a a - b b`` and ``a - - b -`` both read ``ab``).
Greedy decoding reads the most likely path; prefix beam search (Hannun et al. 2014)
keeps the ``beam_size`` most likely *label sequences*, summing the probabilities of
all the paths that read each one, which is what the CTC loss is trained on.

Legend: T steps, B batch, C classes (the blank included).
"""

import math

import numpy as np

from .. import _validation as V

__all__ = ["ctc_greedy_decode", "ctc_beam_search"]

NEG_INF = -math.inf


def _log_softmax(logits, input_lengths, name="logits"):
    if not isinstance(logits, np.ndarray) or logits.dtype not in V.FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a float32 or float64 numpy array of shape (T, B, C)")
    logits = V.check_array(logits, name, ("T", "B", "C"), logits.dtype)
    T, B, _ = logits.shape
    if input_lengths is None:
        lengths = np.full(B, T, np.int64)
    else:
        lengths = V.check_lengths(input_lengths, T, B)
    z = logits.astype(np.float64)
    z -= z.max(axis=2, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=2, keepdims=True))
    return z, lengths


def _check_blank(blank, C):
    blank = V.check_int(blank, "blank", minimum=0)
    if blank >= C:
        raise ValueError(f"blank: expected a class in [0, {C}), got {blank}")
    return blank


def ctc_greedy_decode(logits, input_lengths=None, *, blank=0):
    """The labels of the most likely path: the best class at each step, repeats merged,
    blanks dropped.

    Parameters
    ----------
    logits : numpy.ndarray
        ``(T, B, C)`` class scores (or log-probabilities), float32 or float64.
    input_lengths : array_like of int, optional
        ``(B,)``, each in ``[1, T]``; None: every example has T steps.
    blank : int, default 0
        The blank's class.

    Returns
    -------
    list of list of int
        One label sequence per example.

    Examples
    --------
    >>> import numpy as np, seqcore
    >>> best = np.array([1, 1, 0, 1, 2, 2, 0])                 # a a - a b b -
    >>> seqcore.ctc_greedy_decode(np.eye(3)[best][:, None, :])
    [[1, 1, 2]]
    """
    lp, lengths = _log_softmax(logits, input_lengths)
    blank = _check_blank(blank, lp.shape[2])
    best = lp.argmax(axis=2)                                   # (T, B)
    out = []
    for b in range(lp.shape[1]):
        path = best[:lengths[b], b]
        keep = np.ones(len(path), bool)
        keep[1:] = path[1:] != path[:-1]                       # merge repeats
        out.append([int(c) for c in path[keep] if c != blank])   # then drop blanks
    return out


def _lse(a, b):
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    m = a if a > b else b
    return m + math.log1p(math.exp(-abs(a - b)))


class _LMScorer:
    """log P_lm(next label | the labels so far) from a seqcore character LanguageModel,
    its state carried prefix by prefix; labels map CTC classes to the LM's tokens."""

    def __init__(self, lm, labels, blank):
        from .language import LanguageModel
        if not isinstance(lm, LanguageModel):
            raise TypeError(f"lm: expected a seqcore.LanguageModel, got {type(lm).__name__}")
        if labels is None:
            raise ValueError("labels: give the text of each class (blank: any) to fuse an lm")
        ids = []
        for c, text in enumerate(labels):
            if c == blank:
                ids.append(-1)
                continue
            enc = lm.vocab.encode(text)
            if len(enc) != 1:
                raise ValueError(f"labels[{c}]: {text!r} is not one token of the lm's "
                                 "vocabulary")
            ids.append(enc[0])
        self.lm, self.ids, self.cache = lm, np.array(ids), {}

    def scores(self, prefix):
        """(log P(each class | prefix) (C,), log P(<EOS> | prefix), the LM's state after
        reading prefix)."""
        if prefix not in self.cache:
            if prefix:
                state = self.scores(prefix[:-1])[2]
                token = self.ids[prefix[-1]]
            else:
                state, token = None, -1                        # x<1> = 0, a<0> = 0
            logits, state = self.lm.forward(np.array([[token]], np.int64), state)
            z = logits[0, 0].astype(np.float64)
            lp = z - z.max() - math.log(np.exp(z - z.max()).sum())
            per_class = np.where(self.ids >= 0, lp[np.maximum(self.ids, 0)], 0.0)
            self.cache[prefix] = (per_class, float(lp[self.lm.vocab.eos_id]), state)
        return self.cache[prefix]


def ctc_beam_search(logits, input_lengths=None, *, beam_size=8, blank=0, lm=None,
                    lm_weight=0.5, labels=None):
    """The most likely label sequences by prefix beam search, optionally fused with a
    character language model.

    Every step extends each kept prefix by the blank, by its last label (a repeat,
    merged) or by a new label, summing the probabilities of the paths that read the
    same prefix (kept apart by whether they end in a blank, which decides whether a
    repeated label is new). The ``beam_size`` best prefixes go on. With ``lm``, each
    new label adds ``lm_weight * log P_lm(label | prefix)`` and each finished sequence
    ``lm_weight * log P_lm(<EOS> | sequence)`` (shallow fusion).

    Parameters
    ----------
    logits : numpy.ndarray
        ``(T, B, C)`` class scores (or log-probabilities), float32 or float64.
    input_lengths : array_like of int, optional
        ``(B,)``, each in ``[1, T]``; None: every example has T steps.
    beam_size : int, default 8
        Prefixes kept after each step.
    blank : int, default 0
        The blank's class.
    lm : seqcore.LanguageModel, optional
        A character language model to fuse.
    lm_weight : float, default 0.5
        The weight of the language model's log-probabilities.
    labels : list of str, optional
        With ``lm``: the text of each class (any for the blank), one token of the
        LM's vocabulary each.

    Returns
    -------
    list of list of int
        The best label sequence of each example.

    Examples
    --------
    >>> import numpy as np, seqcore
    >>> p = np.array([[0.4, 0.6], [0.4, 0.6]])[:, None, :]      # blank, "a"; 2 steps
    >>> seqcore.ctc_greedy_decode(np.log(p)), seqcore.ctc_beam_search(np.log(p))
    ([[1]], [[1]])
    """
    lp, lengths = _log_softmax(logits, input_lengths)
    T, B, C = lp.shape
    blank = _check_blank(blank, C)
    beam_size = V.check_int(beam_size, "beam_size")
    lm_weight = float(lm_weight)
    if not math.isfinite(lm_weight) or lm_weight < 0:
        raise ValueError(f"lm_weight: expected a number >= 0, got {lm_weight}")
    if labels is not None and len(labels) != C:
        raise ValueError(f"labels: expected {C} texts (one per class), got {len(labels)}")
    scorer = _LMScorer(lm, labels, blank) if lm is not None else None
    out = []
    for b in range(B):
        # prefix -> [log P(paths reading it, ending in blank), ... ending in a label]
        beams = {(): [0.0, NEG_INF]}
        for t in range(lengths[b]):
            row = lp[t, b]
            nxt = {}

            def add(prefix, k, value):
                entry = nxt.setdefault(prefix, [NEG_INF, NEG_INF])
                entry[k] = _lse(entry[k], value)

            for prefix, (pb, pnb) in beams.items():
                total = _lse(pb, pnb)
                add(prefix, 0, total + row[blank])               # a blank: the same prefix
                fused = scorer.scores(prefix)[0] * lm_weight if scorer else None
                for c in range(C):
                    if c == blank:
                        continue
                    bonus = fused[c] if scorer else 0.0
                    if prefix and c == prefix[-1]:
                        add(prefix, 1, pnb + row[c])             # a repeat: merged
                        add(prefix + (c,), 1, pb + row[c] + bonus)   # after a blank: new
                    else:
                        add(prefix + (c,), 1, total + row[c] + bonus)
            beams = dict(sorted(nxt.items(), key=lambda kv: -_lse(*kv[1]))[:beam_size])

        def final(item):
            prefix, (pb, pnb) = item
            eos = scorer.scores(prefix)[1] * lm_weight if scorer else 0.0
            return _lse(pb, pnb) + eos

        out.append([int(c) for c in max(beams.items(), key=final)[0]])
    return out
