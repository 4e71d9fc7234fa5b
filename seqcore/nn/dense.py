"""The output map: Dense, y_hat = W_y a + b_y at every step.

``Dense`` checks its arguments here and runs the compiled kernels of
``seqcore._kernels.{path}.train`` (csrc/_train.pyx): the products on the core's packed
kernel and its threads. ``seqcore.reference.dense_forward``/``dense_backward`` are
the same math in plain NumPy, the oracle the tests compare the kernels with.

Legend: N rows (all positions ``...`` of x flattened), K = in_features,
V = out_features (the vocabulary of a language model), T time steps, B batch.
"""

import threading

import numpy as np

from .. import _validation as V
from .. import reference
from .._dispatch import get_num_threads, train_kernels
from ..reference.quant import dequantize_rows
from .buffers import aligned_empty, checked_grad, kept
from .qweights import checked_qweight

__all__ = ["Dense"]

# A quantized layer's forward of fewer rows than this runs one row at a time against
# the int8 weights, int8 x int8 (dense_forward_q8; the twin is
# reference.quant.qlinear_int8): N/4 of the bytes float32's one pass over W reads.
# More rows go through the float product, on the weights the int8 values stand for.
Q8_ROWS = 4


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
    backend : {"cython", "numpy"}, default "cython"
        The compiled core, or its NumPy twin (``seqcore.reference.dense_forward`` and
        ``dense_backward``).
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

    quantized = False  # int8 weights (seqcore.quantize): inference only
    qweights = None    # then {name: (q int8, scale)} (seqcore.nn.quantized)

    def __init__(self, in_features, out_features, *, dtype=np.float32, backend="cython",
                 seed=None):
        self.in_features = V.check_int(in_features, "in_features")
        self.out_features = V.check_int(out_features, "out_features")
        self.dtype = V.check_dtype(dtype)
        self.backend = V.check_backend(backend)
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
        self._y = self._dx = None       # the last outputs, reused when let go of (kept)

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
        """(W, b, qw), checked: a quantized layer's W is None and qw its int8 pair
        (qweights'), a float layer's qw None."""
        qw = checked_qweight(self, "W", (self.out_features, self.in_features))
        W = None
        if qw is None:
            W = V.check_array(self.params.get("W"), "params['W']",
                              (self.out_features, self.in_features), self.dtype, finite=False)
        b = V.check_array(self.params.get("b"), "params['b']", (self.out_features,),
                          self.dtype, finite=False)
        return W, b, qw

    def _workspace(self, N, nthreads):
        """The products' workspaces for N rows (held under self._lock)."""
        nw, na = train_kernels().dense_work_len(N, self.in_features, self.out_features, nthreads,
                                          self.dtype == np.float64)
        ws = self._work
        if ws is None or ws[0].size < nw or (na and (ws[1] is None or ws[1].size < na)):
            ws = self._work = (aligned_empty(max(nw, 1), self.dtype),
                               aligned_empty(na, self.dtype) if na else None)
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
        W, b, qw = self._checked_params()
        self._x = x
        x2 = x.reshape(-1, self.in_features)                       # (N, K)
        shape = x.shape[:-1] + (self.out_features,)
        if qw is not None and x2.shape[0] >= Q8_ROWS:    # the float product, for this call
            W, qw = dequantize_rows(*qw), None
        if self.backend == "numpy":
            if qw is not None:
                return reference.quant.qlinear_int8([x2], *qw, b).reshape(shape)
            return reference.dense_forward(x2, W, b).reshape(shape)
        n = get_num_threads()
        with self._lock:
            y = kept(self, "_y", shape, self.dtype)   # the last y, if let go of
            if qw is not None:
                train_kernels().dense_forward_q8(y.reshape(-1, self.out_features), x2, *qw,
                                                 b, n)
                return y
            work, abuf = self._workspace(x2.shape[0], n)
            train_kernels().dense_forward(y.reshape(-1, self.out_features), x2, W, b, work, abuf, n)
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
        TypeError
            A layer with int8 weights (``seqcore.quantize``).
        """
        V.check_trainable(self, "backward")
        if self._x is None:
            raise ValueError("backward() called before forward(): run forward() first")
        x = self._x
        want = x.shape[:-1] + (self.out_features,)
        dy = V.check_array(dy, "dy", want, self.dtype)
        W, _, _ = self._checked_params()
        dW = checked_grad(self.grads, "W", W.shape, self.dtype)
        db = checked_grad(self.grads, "b", (self.out_features,), self.dtype)
        x2 = x.reshape(-1, self.in_features)                       # (N, K)
        dy2 = dy.reshape(-1, self.out_features)                    # (N, V)
        if self.backend == "numpy":
            return reference.dense_backward(dy2, x2, W, dW, db).reshape(x.shape)
        n = get_num_threads()
        with self._lock:
            dx = kept(self, "_dx", x.shape, self.dtype)
            work, abuf = self._workspace(x2.shape[0], n)
            train_kernels().dense_backward(dx.reshape(-1, self.in_features), dW, db, dy2, x2, W,
                                     work, abuf, n)
        return dx
