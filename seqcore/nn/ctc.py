"""Connectionist Temporal Classification (Graves et al. 2006): the loss for a label
sequence shorter than its input and not aligned to it, as for speech and handwriting.

``ctc_loss`` checks its arguments here and runs the compiled kernel of
``seqcore._kernels.{path}.ctc`` (csrc/_ctc.pyx: the forward-backward recursion in log
space, parallel over the batch), or with ``backend="numpy"`` its NumPy twin,
``seqcore.reference.ctc.ctc_loss``, which states the math.

Legend: T steps, B batch, C classes (the blank included), L a target's length.
"""

import numpy as np

from .. import _validation as V
from .. import reference
from .._dispatch import ctc_kernels, get_num_threads

__all__ = ["ctc_loss", "REDUCTIONS"]

REDUCTIONS = ("mean", "sum", "none")


def _int_vector(value, name, B):
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.shape[0] != B:
        raise ValueError(f"{name}: expected shape ({B},) (one per example of logits), got "
                         f"{arr.shape}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integers, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _flat_targets(targets, target_lengths, B):
    """The labels one example after another, and where each example's start."""
    t = np.asarray(targets)
    if t.dtype.kind not in "iu":
        raise TypeError(f"targets: expected integer labels, got dtype {t.dtype}")
    if t.ndim == 2:                                    # padded (B, S_max)
        if t.shape[0] != B:
            raise ValueError(f"targets: expected {B} rows (one per example of logits), got "
                             f"{t.shape[0]}")
        if target_lengths.size and target_lengths.max() > t.shape[1]:
            raise ValueError(f"target_lengths: expected values <= {t.shape[1]} (the width "
                             f"of the padded targets), got {target_lengths.max()}")
        flat = np.concatenate([t[b, :target_lengths[b]] for b in range(B)]) if B else t[:0]
    elif t.ndim == 1:                                  # concatenated (sum of lengths,)
        if t.shape[0] != target_lengths.sum():
            raise ValueError(f"target_lengths: expected to sum to len(targets) = "
                             f"{t.shape[0]} (targets concatenated), got {target_lengths.sum()}")
        flat = t
    else:
        raise ValueError(f"targets: expected (B, S) padded or 1-D concatenated labels, got "
                         f"{t.ndim} dimensions")
    starts = np.zeros(B, np.int64)
    starts[1:] = np.cumsum(target_lengths)[:-1]
    return np.ascontiguousarray(flat, dtype=np.int64), starts


def ctc_loss(logits, targets, input_lengths, target_lengths, *, blank=0, reduction="mean",
             zero_infinity=False, backend="cython"):
    """The CTC loss of label sequences given per-step class scores, and its gradient.

    ``loss_b = -log p(l_b | x_b)``, the probability of all alignments (paths of blanks
    and labels that read ``l_b`` once repeats are merged and blanks dropped) under the
    softmax of the logits at each of the example's steps.

    Parameters
    ----------
    logits : numpy.ndarray
        ``(T, B, C)``, float32 or float64; the log-softmax is applied inside.
    targets : array_like of int
        The labels: padded ``(B, S)`` (the first ``target_lengths[b]`` of row b), or
        all examples' labels concatenated, 1-D, as PyTorch accepts. Each in ``[0, C)``
        and not the blank.
    input_lengths : array_like of int
        ``(B,)``, each in ``[1, T]``: steps past an input's length do not count.
    target_lengths : array_like of int
        ``(B,)``, each ``>= 0``.
    blank : int, default 0
        The blank's class.
    reduction : {"mean", "sum", "none"}, default "mean"
        As ``torch.nn.functional.ctc_loss``: "mean" divides each loss by its target
        length (at least 1) and averages over the batch; "sum" adds them; "none"
        returns them.
    zero_infinity : bool, default False
        An example whose target its input cannot hold gets loss 0 and gradient 0.
        Off, such an example is refused (``ValueError``).
    backend : {"cython", "numpy"}, default "cython"
        The compiled kernel or its NumPy twin.

    Returns
    -------
    loss : float or numpy.ndarray
        The reduced loss; with ``reduction="none"``, ``(B,)`` float64.
    dlogits : numpy.ndarray
        ``(T, B, C)`` in the logits' dtype: the gradient of the reduced loss (of the
        sum of the losses, for "none"); 0 at steps past an input's length.

    Raises
    ------
    TypeError
        ``logits`` not a float32/float64 array, or integers that are not.
    ValueError
        Shapes or lengths that do not match, a label out of range or equal to the
        blank, NaN or infinity in ``logits``, or (``zero_infinity=False``) a target
        longer than its input can hold.

    Examples
    --------
    >>> import numpy as np, seqcore
    >>> logits = np.zeros((4, 1, 3), np.float32)      # 4 steps, classes: blank, 1, 2
    >>> loss, dlogits = seqcore.ctc_loss(logits, [[1, 2]], [4], [2], reduction="sum")
    >>> round(loss, 4)                        # -log(15 paths of the 3**4 read "12")
    1.6864
    """
    V.check_backend(backend)
    if not isinstance(logits, np.ndarray) or logits.dtype not in V.FLOAT_DTYPES:
        raise TypeError("logits: expected a float32 or float64 numpy array of shape (T, B, C)")
    logits = V.check_array(logits, "logits", ("T", "B", "C"), logits.dtype, finite=False)
    T, B, C = logits.shape
    blank = V.check_int(blank, "blank", minimum=0)
    if blank >= C:
        raise ValueError(f"blank: expected a class in [0, {C}), got {blank}")
    reduction = V.check_choice(reduction, "reduction", REDUCTIONS)
    zero_infinity = V.check_bool(zero_infinity, "zero_infinity")
    input_lengths = _int_vector(input_lengths, "input_lengths", B)
    if input_lengths.min() < 1 or input_lengths.max() > T:
        raise ValueError(f"input_lengths: expected values in [1, {T}] (T = {T}), got min "
                         f"{input_lengths.min()} and max {input_lengths.max()}")
    target_lengths = _int_vector(target_lengths, "target_lengths", B)
    if target_lengths.min() < 0:
        raise ValueError(f"target_lengths: expected values >= 0, got {target_lengths.min()}")
    flat, starts = _flat_targets(targets, target_lengths, B)
    if flat.size and (flat.min() < 0 or flat.max() >= C):
        raise ValueError(f"targets: expected labels in [0, {C}), got min {flat.min()} and "
                         f"max {flat.max()}")
    if np.any(flat == blank):
        b = int(np.searchsorted(starts, np.flatnonzero(flat == blank)[0], side="right") - 1)
        raise ValueError(f"targets: example {b} holds the blank ({blank}) as a label")
    # the shortest input that holds l: a step per label, and a blank between repeats
    needed = target_lengths.copy()
    repeats = np.zeros(flat.shape[0], bool)
    repeats[1:] = flat[1:] == flat[:-1]
    repeats[starts[target_lengths > 0]] = False          # no repeat across examples
    np.add.at(needed, np.searchsorted(starts, np.flatnonzero(repeats), side="right") - 1, 1)
    short = np.flatnonzero(needed > input_lengths)
    if short.size and not zero_infinity:
        b = int(short[0])
        raise ValueError(f"targets: example {b}'s {target_lengths[b]} labels need at least "
                         f"{needed[b]} steps, but its input has {input_lengths[b]}: no "
                         "alignment exists (pass zero_infinity=True to count such "
                         "examples as loss 0 with no gradient)")
    if reduction == "mean":
        scale = 1.0 / (B * np.maximum(target_lengths, 1))
    else:
        scale = np.ones(B)
    dlogits = np.empty_like(logits)
    losses = np.empty(B, np.float64)
    args = (dlogits, losses, logits, flat, starts, target_lengths, input_lengths, blank,
            np.ascontiguousarray(scale, np.float64), zero_infinity)
    if backend == "numpy":
        if not all(np.isfinite(logits[:input_lengths[b], b]).all() for b in range(B)):
            raise ValueError("logits: contains NaN or infinity")
        reference.ctc.ctc_loss(*args)
    else:
        ctc_kernels().ctc_loss(*args, get_num_threads())
        if np.isnan(losses).any():                       # found in its log-softmax pass
            raise ValueError("logits: contains NaN or infinity")
    if reduction == "none":
        return losses, dlogits
    return float((losses * scale).sum()), dlogits      # mean: scale = 1 / (B max(1, L))
