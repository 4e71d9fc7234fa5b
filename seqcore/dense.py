"""The output map and the cost: Dense (y_hat = W_y a + b_y at every step) and softmax cross-entropy.

Fast path and reference side by side. ``Dense`` and ``softmax_cross_entropy`` check
their arguments here and run the compiled kernels of ``seqcore._kernels.{path}.train``
(csrc/_train.pyx): the products on the core's packed kernel and its threads, the cost
in one fused pass per row. The ``*_reference`` functions are the same math in plain
NumPy, the readable statement and the oracle the tests compare the kernels with.

Legend: N rows (all positions ``...`` of x flattened), K = in_features,
V = out_features (the vocabulary of a language model), T time steps, B batch.
"""

import sys
import threading

import numpy as np

from . import _dispatch
from . import _validation as V
from ._build_check import import_compiled

__all__ = ["Dense", "softmax_cross_entropy"]

_train_modules = {}     # kernel path -> seqcore._kernels.{path}.train
_scratch = threading.local()    # softmax_cross_entropy's last dlogits, per thread


def kernels():
    """The active kernel path's seqcore._kernels.{path}.train: Dense, softmax cross-entropy,
    Adam, the embedding's scatter (loaded on first use, loudly if not built)."""
    path = _dispatch.active()
    module = _train_modules.get(path)
    if module is None:
        module = _train_modules[path] = import_compiled(f"_kernels.{path}.train")
    return module


def threads():
    """The core's thread count (seqcore.set_num_threads): these kernels use the same."""
    return _dispatch.get_num_threads()


def _refs(kept, i):
    """The reference count of kept[i], as _kept sees it."""
    buf = kept[i]
    return sys.getrefcount(buf)


_FREE = _refs([np.empty(1)], 0)     # the count of an array nothing else references


def _kept(holder, attr, shape, dtype, pool=1):
    """An output array (shape, dtype) from holder.<attr>, a list of up to ``pool``
    arrays kept between calls: one that nothing but the list references (CPython's
    reference count against _FREE; a caller's name, a view or a memoryview of it each
    hold one), else a new one, kept in place of the oldest.

    Outputs are kept for reuse because a fresh array per call costs page faults once
    the previous step's arrays have gone back to the system (1666 faults, 3 ms of a
    46 ms char-level LSTM step). A pool of two serves an output that the next layer
    holds until the next call (the embedding's, in the recurrent layer's cache)."""
    kept = getattr(holder, attr, None)
    if kept is None:
        kept = []
        setattr(holder, attr, kept)
    for i in range(len(kept)):
        if _refs(kept, i) == _FREE and kept[i].shape == shape and kept[i].dtype == dtype:
            return kept[i]
    buf = np.empty(shape, dtype)
    if len(kept) >= pool:
        del kept[0]
    kept.append(buf)
    return buf


def _checked_grad(grads, name, shape, dtype):
    """grads[name], which the kernels add into: the right shape, dtype and layout."""
    g = grads.get(name)
    if (not isinstance(g, np.ndarray) or g.shape != shape or g.dtype != dtype
            or not g.flags.c_contiguous or not g.flags.writeable):
        raise ValueError(f"grads[{name!r}]: expected a writeable C-contiguous array of "
                         f"shape {shape} and dtype {dtype}; call zero_grad() to reset "
                         "the gradients")
    return g


# ------------------------------------------------------------------ references

def dense_forward_reference(x, W, b):
    """y (N, V) = x (N, K) @ W (V, K)^T + b (V,)."""
    return x @ W.T + b


def dense_backward_reference(dy, x, W, dW, db):
    """dW (V, K) += dy (N, V)^T @ x (N, K); db (V,) += column sums of dy; returns
    dx (N, K) = dy @ W."""
    dW += dy.T @ x
    db += dy.sum(axis=0)
    return dy @ W


def softmax_cross_entropy_reference(logits, targets, w):
    """loss = sum_t,b w[t, b] * L(softmax(logits[t, b]), targets[t, b]), and dloss/dlogits.

    logits (T, B, V), targets (T, B) in [0, V), w (T, B) the weight of each position
    (mask / B). L is the cross-entropy -log p[target].
    """
    shifted = logits - logits.max(axis=2, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=2, keepdims=True))
    log_p = shifted - log_z                                        # log softmax
    nll = -np.take_along_axis(log_p, targets[:, :, None], axis=2)[:, :, 0]
    loss = float((nll * w).sum())
    dlogits = np.exp(log_p)                                        # softmax
    np.put_along_axis(dlogits, targets[:, :, None],
                      np.take_along_axis(dlogits, targets[:, :, None], axis=2) - 1, axis=2)
    dlogits *= w[:, :, None]                                       # d(w L)/dlogits
    return loss, dlogits


# ----------------------------------------------------------------------- Dense

class Dense:
    """The notes' output map ``ŷ⟨t⟩ = W_y a⟨t⟩ + b_y`` at every position of ``x``.

    ``forward``, ``backward``, ``params``, ``grads`` and ``zero_grad`` follow the
    contract of the recurrent layers. The products run on the compiled core's threads
    (``seqcore.set_num_threads``). The layer keeps their packing workspace between
    calls, and its last ``y`` and ``dx``, which it fills again once the caller has let
    go of them (fresh arrays cost page faults); a ``y`` or ``dx`` the caller still
    holds is never written.

    Parameters
    ----------
    in_features : int
        The width of the input's last axis.
    out_features : int
        The width of the output's last axis.
    dtype : numpy.float32 or numpy.float64, default numpy.float32
        The parameters' and the inputs' dtype.
    seed : int, optional
        Seed of the initial weights, uniform in ``±1/√in_features``.

    Attributes
    ----------
    params : dict of str to numpy.ndarray
        ``W (out_features, in_features)`` and ``b (out_features,)``.
    grads : dict of str to numpy.ndarray
        Their gradients; ``backward`` adds into them.

    Examples
    --------
    >>> import numpy as np, seqcore
    >>> out = seqcore.Dense(32, 10, seed=0)
    >>> out.forward(np.zeros((5, 3, 32), np.float32)).shape
    (5, 3, 10)
    """

    def __init__(self, in_features, out_features, *, dtype=np.float32, seed=None):
        self.in_features = V.check_int(in_features, "in_features")
        self.out_features = V.check_int(out_features, "out_features")
        self.dtype = V.check_dtype(dtype)
        if seed is not None:
            seed = V.check_int(seed, "seed", minimum=0)
        rng = np.random.default_rng(seed)
        k = 1.0 / np.sqrt(self.in_features)
        self.params = {
            "W": rng.uniform(-k, k, (self.out_features, self.in_features)).astype(self.dtype),
            "b": rng.uniform(-k, k, (self.out_features,)).astype(self.dtype),
        }
        self.zero_grad()
        self._x = None
        self._lock = threading.Lock()   # guards the workspace and the kept outputs
        self._work = None               # (work, abuf) of the packed products
        self._y = self._dx = None       # the last outputs, reused when let go of (_kept)

    # A copy or pickle gets a lock and a workspace of its own.
    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_lock", None)
        state["_work"] = state["_y"] = state["_dx"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def zero_grad(self):
        self.grads = {k: np.zeros(v.shape, self.dtype) for k, v in self.params.items()}

    def _checked_params(self):
        W = V.check_array(self.params.get("W"), "params['W']",
                          (self.out_features, self.in_features), self.dtype, finite=False)
        b = V.check_array(self.params.get("b"), "params['b']", (self.out_features,),
                          self.dtype, finite=False)
        return W, b

    def _workspace(self, N, nthreads):
        """The products' workspaces for N rows (held under self._lock)."""
        nw, na = kernels().dense_work_len(N, self.in_features, self.out_features, nthreads,
                                          self.dtype == np.float64)
        ws = self._work
        if ws is None or ws[0].size < nw or (na and (ws[1] is None or ws[1].size < na)):
            ws = self._work = (np.empty(max(nw, 1), self.dtype),
                               np.empty(na, self.dtype) if na else None)
        return ws

    def forward(self, x):
        """Apply ``W x + b`` along the last axis.

        Parameters
        ----------
        x : numpy.ndarray
            ``(..., in_features)``, of the layer's dtype.

        Returns
        -------
        numpy.ndarray
            ``(..., out_features)``.

        Raises
        ------
        TypeError
            ``x`` not a numpy array of the layer's dtype.
        ValueError
            ``x`` of the wrong width, empty, or with NaN or infinity.
        """
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x: expected a numpy array of shape (..., {self.in_features}), "
                            f"got {type(x).__name__}")
        shape = ("...",) * (x.ndim - 1) + (self.in_features,)
        x = V.check_array(x, "x", shape if x.ndim else (self.in_features,), self.dtype)
        W, b = self._checked_params()
        self._x = x
        x2 = x.reshape(-1, self.in_features)                       # (N, K)
        shape = x.shape[:-1] + (self.out_features,)
        n = threads()
        with self._lock:
            y = _kept(self, "_y", shape, self.dtype)   # the last y, if let go of
            work, abuf = self._workspace(x2.shape[0], n)
            kernels().dense_forward(y.reshape(-1, self.out_features), x2, W, b, work, abuf, n)
        return y

    def backward(self, dy):
        """Gradients of the most recent ``forward``; adds into ``grads["W"]`` and ``grads["b"]``.

        Parameters
        ----------
        dy : numpy.ndarray
            ``(..., out_features)``, the gradient of the cost with respect to ``y``.

        Returns
        -------
        numpy.ndarray
            ``dx``, ``(..., in_features)``.

        Raises
        ------
        ValueError
            ``backward`` before ``forward``, or ``dy`` of the wrong shape.
        """
        if self._x is None:
            raise ValueError("backward() called before forward(): run forward() first")
        x = self._x
        want = x.shape[:-1] + (self.out_features,)
        dy = V.check_array(dy, "dy", want, self.dtype)
        W, _ = self._checked_params()
        dW = _checked_grad(self.grads, "W", W.shape, self.dtype)
        db = _checked_grad(self.grads, "b", (self.out_features,), self.dtype)
        x2 = x.reshape(-1, self.in_features)                       # (N, K)
        dy2 = dy.reshape(-1, self.out_features)                    # (N, V)
        n = threads()
        with self._lock:
            dx = _kept(self, "_dx", x.shape, self.dtype)
            work, abuf = self._workspace(x2.shape[0], n)
            kernels().dense_backward(dx.reshape(-1, self.in_features), dW, db, dy2, x2, W,
                                     work, abuf, n)
        return dx


def softmax_cross_entropy(logits, targets, mask=None):
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
        Shapes that do not match, ids outside ``[0, V)``, NaN or infinity in ``logits``.

    Examples
    --------
    >>> import numpy as np, seqcore
    >>> loss, dlogits = seqcore.softmax_cross_entropy(np.zeros((2, 1, 4), np.float32),
    ...                                               np.zeros((2, 1), int))
    >>> round(loss, 4)                       # 2 steps of ln 4
    2.7726
    """
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
    ids = np.ascontiguousarray(targets.reshape(-1), dtype=np.int64)
    dlogits = _kept(_scratch, "dlogits", logits.shape, logits.dtype)   # this thread's last
    loss, bad = kernels().softmax_cross_entropy(
        dlogits.reshape(-1, Vsize), logits.reshape(-1, Vsize), ids, weight, 1.0 / B, threads())
    if bad:
        raise ValueError("logits: contains NaN or infinity")
    return float(loss), dlogits
