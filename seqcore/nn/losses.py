"""The cost: softmax cross-entropy over the steps of a batch, with its gradient.

It checks its arguments here and runs the compiled kernel of
``seqcore._kernels.{path}.train`` (one fused pass per row);
``seqcore.reference.softmax_cross_entropy`` is its NumPy twin.
"""

import threading

import numpy as np

from .. import _validation as V
from .. import reference
from .._dispatch import get_num_threads, train_kernels
from .buffers import kept

__all__ = ["softmax_cross_entropy"]

_scratch = threading.local()    # softmax_cross_entropy's last dlogits, per thread


def softmax_cross_entropy(logits, targets, mask=None, *, backend="cython"):
    """The notes' cost ``C = Σ_t L(y⟨t⟩, ŷ⟨t⟩)``, summed over time, averaged over the batch.

    ``L`` is the cross-entropy of the softmax of the logits; for ``B = 1`` the loss is
    exactly the notes' sum.

    Parameters
    ----------
    logits : numpy.ndarray
        ``(T, B, V)``, float32 or float64.
    targets : array_like of int
        ``(T, B)``, token ids in ``[0, V)``.
    mask : array_like, optional
        ``(T, B)`` of 0/1 (or bool): the steps that count. None: every step.
    backend : {"cython", "numpy"}, default "cython"
        The compiled kernel (one fused pass per row), or its NumPy twin
        (``seqcore.reference.softmax_cross_entropy``).

    Returns
    -------
    loss : float
        ``C``.
    dlogits : numpy.ndarray
        ``dC/dlogits``, ``(T, B, V)``, in the logits' dtype.

    Raises
    ------
    TypeError
        ``logits`` not a float32/float64 array, or ``targets`` not integers.
    ValueError
        Shapes that do not match, ids outside ``[0, V)``, NaN or infinity in
        ``logits``, or an unknown ``backend``.

    Examples
    --------
    >>> import numpy as np, seqcore
    >>> loss, dlogits = seqcore.softmax_cross_entropy(np.zeros((2, 1, 4), np.float32),
    ...                                               np.zeros((2, 1), int))
    >>> round(loss, 4)                       # 2 steps of ln 4
    2.7726
    """
    V.check_backend(backend)
    if not isinstance(logits, np.ndarray) or logits.dtype not in V.FLOAT_DTYPES:
        raise TypeError("logits: expected a float32 or float64 numpy array of shape (T, B, V)")
    # NaN and infinity are found by the kernel, in its first pass over each row
    logits = V.check_array(logits, "logits", ("T", "B", "V"), logits.dtype, finite=False)
    T, B, Vsize = logits.shape
    targets = np.asarray(targets)
    if targets.shape != (T, B):
        raise ValueError(f"targets: expected shape ({T}, {B}), got {targets.shape}")
    if targets.dtype.kind not in "iu":
        raise TypeError(f"targets: expected integer token ids, got dtype {targets.dtype}")
    if targets.size and (targets.min() < 0 or targets.max() >= Vsize):
        raise ValueError(f"targets: expected ids in [0, {Vsize}), got min {targets.min()} "
                         f"and max {targets.max()}")
    weight = None                                      # (T*B,) mask / B; None: all 1 / B
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != (T, B):
            raise ValueError(f"mask: expected shape ({T}, {B}), got {mask.shape}")
        if mask.dtype.kind not in "biuf" or not np.isfinite(mask).all():
            raise TypeError(f"mask: expected 0/1 or bool values, got dtype {mask.dtype}")
        weight = np.ascontiguousarray((mask.astype(logits.dtype) / B).reshape(-1))
    if backend == "numpy":
        if not np.isfinite(logits).all():
            raise ValueError("logits: contains NaN or infinity")
        w = (np.full((T, B), 1.0 / B, logits.dtype) if weight is None
             else weight.reshape(T, B))
        return reference.softmax_cross_entropy(logits, targets.astype(np.int64), w)
    ids = np.ascontiguousarray(targets.reshape(-1), dtype=np.int64)
    dlogits = kept(_scratch, "dlogits", logits.shape, logits.dtype)   # this thread's last
    loss, bad = train_kernels().softmax_cross_entropy(
        dlogits.reshape(-1, Vsize), logits.reshape(-1, Vsize), ids, weight, 1.0 / B, get_num_threads())
    if bad:
        raise ValueError("logits: contains NaN or infinity")
    return float(loss), dlogits
