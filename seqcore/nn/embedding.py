"""Token inputs: Embedding (token ids -> learned vectors) and OneHot (ids -> 1-hot vectors), with backward.

A NumPy gather forward, into outputs kept between calls (buffers.kept); the
scatter-add backward runs compiled (seqcore._kernels.{path}.train: one pass over the rows,
where NumPy's ``np.add.at`` took 1.8 ms for 4096 rows of 64), with
``seqcore.reference.embedding_backward`` as its twin.

Legend: V vocabulary size, E embedding width, ``...`` any leading shape (T, B).
The id ``-1`` (``seqcore.data.NO_TOKEN``) is the notes' x<1> = 0: it maps to the
zero vector in both encodings and receives no gradient.
"""

import threading

import numpy as np

from .. import _validation as V
from .. import reference
from .._dispatch import train_kernels
from .buffers import checked_grad, kept
from .qweights import checked_qweight

__all__ = ["Embedding", "OneHot"]


def _check_ids(ids, num_embeddings):
    """ids (...) integers in [-1, V), returned as int64."""
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"ids: expected integer token ids, got dtype {ids.dtype}")
    if ids.size and (ids.min() < -1 or ids.max() >= num_embeddings):
        raise ValueError(f"ids: expected ids in [0, {num_embeddings}) (or -1 for no token), "
                         f"got min {ids.min()} and max {ids.max()}")
    return ids.astype(np.int64, copy=False)


class Embedding:
    """``x = W[id]`` at every position of ``ids``: the learned alternative to 1-hot inputs.

    Same ``params``/``grads``/``zero_grad`` contract as the other layers.

    Parameters
    ----------
    num_embeddings : int
        ``V``, the number of token ids.
    embedding_dim : int
        ``E``, the width of each vector.
    dtype : numpy.float32 or numpy.float64, default numpy.float32
        The parameters' dtype.
    backend : {"cython", "numpy"}, default "cython"
        Where the backward's scatter runs: compiled, or its NumPy twin
        (``seqcore.reference.embedding_backward``).
    seed : int, optional
        Seed of the initial weights, ``N(0, 1)`` as PyTorch's ``nn.Embedding``.

    Attributes
    ----------
    params : dict of str to numpy.ndarray
        ``W (V, E)``.
    grads : dict of str to numpy.ndarray
        Its gradient; ``backward`` adds into it.

    Examples
    --------
    >>> import numpy as np, seqcore
    >>> emb = seqcore.Embedding(10, 4, seed=0)
    >>> emb.forward(np.array([[1, 2], [3, -1]])).shape     # id -1: the zero vector
    (2, 2, 4)
    """

    quantized = False  # int8 weights (seqcore.quantize): inference only
    qweights = None    # then {name: (q int8, scale)} (seqcore.nn.quantized)

    def __init__(self, num_embeddings, embedding_dim, *, dtype=np.float32, backend="cython",
                 seed=None):
        self.num_embeddings = V.check_int(num_embeddings, "num_embeddings")
        self.embedding_dim = V.check_int(embedding_dim, "embedding_dim")
        self.dtype = V.check_dtype(dtype)
        self.backend = V.check_backend(backend)
        if seed is not None:
            seed = V.check_int(seed, "seed", minimum=0)
        rng = np.random.default_rng(seed)
        self.params = {"W": rng.standard_normal(
            (self.num_embeddings, self.embedding_dim)).astype(self.dtype)}
        self.zero_grad()
        self._ids = None
        self._out = None          # the last outputs, reused when let go of (buffers.kept)
        self._lock = threading.Lock()       # guards them

    # A copy or pickle gets outputs and a lock of its own.
    def __getstate__(self):
        state = {**self.__dict__, "_out": None}
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def output_size(self):
        return self.embedding_dim

    def zero_grad(self):
        self.grads = {k: np.zeros(v.shape, self.dtype) for k, v in self.params.items()}

    def forward(self, ids):
        """Look up the vectors of ``ids``.

        Parameters
        ----------
        ids : array_like of int
            ``(...)``, ids in ``[0, V)``, or -1 for no token (the zero vector).

        Returns
        -------
        numpy.ndarray
            ``(..., E)``.

        Raises
        ------
        TypeError
            ``ids`` not integers.
        ValueError
            An id outside ``[-1, V)``.
        """
        ids = _check_ids(ids, self.num_embeddings)
        shape = (self.num_embeddings, self.embedding_dim)
        qw = checked_qweight(self, "W", shape)
        if qw is None:
            W = V.check_array(self.params.get("W"), "params['W']", shape, self.dtype,
                              finite=False)
        self._ids = ids
        # a pool of two: the recurrent layer keeps the last x until its next forward
        with self._lock:
            x = kept(self, "_out", ids.shape + (self.embedding_dim,), self.dtype, pool=2)
            rows = np.maximum(ids, 0)
            if qw is None:
                np.take(W, rows, axis=0, out=x, mode="clip")           # (..., E) gather
            else:                                       # int8: the rows' scale * q
                np.multiply(qw[0][rows], qw[1][rows][..., None], out=x)
            x[ids < 0] = 0                                     # x<1> = 0
        return x

    def backward(self, dx):
        """Add ``dx`` into ``grads["W"]`` at the rows of the most recent ``forward``'s ids.

        A token seen at several positions collects the sum of their gradients.

        Parameters
        ----------
        dx : numpy.ndarray
            ``(..., E)``, shaped like the output of ``forward``.

        Returns
        -------
        None
            Ids have no gradient.

        Raises
        ------
        ValueError
            ``backward`` before ``forward``, or ``dx`` of the wrong shape.
        TypeError
            A layer with int8 weights (``seqcore.quantize``).
        """
        V.check_trainable(self, "backward")
        if self._ids is None:
            raise ValueError("backward() called before forward(): run forward() first")
        ids = self._ids
        dx = V.check_array(dx, "dx", ids.shape + (self.embedding_dim,), self.dtype)
        dW = checked_grad(self.grads, "W", (self.num_embeddings, self.embedding_dim),
                           self.dtype)
        # dW[id] += dx at each position, in order: a token seen at several positions
        # collects the sum of their gradients (seqcore.reference.embedding_backward)
        if self.backend == "numpy":
            reference.embedding_backward(dW, ids, dx)
            return None
        train_kernels().embedding_backward(dW, dx.reshape(-1, self.embedding_dim),
                                     np.ascontiguousarray(ids.reshape(-1)))
        return None

    def config(self):
        return {"num_embeddings": self.num_embeddings, "embedding_dim": self.embedding_dim}


class OneHot:
    """x = the 1-hot column of id at every position (the notes' encoding); no parameters."""

    def __init__(self, num_embeddings, *, dtype=np.float32):
        self.num_embeddings = V.check_int(num_embeddings, "num_embeddings")
        self.dtype = V.check_dtype(dtype)
        self.params = {}
        self.grads = {}

    @property
    def output_size(self):
        return self.num_embeddings

    def zero_grad(self):
        pass

    def forward(self, ids):
        """ids (...) -> x (..., V); id -1 gives the zero vector."""
        ids = _check_ids(ids, self.num_embeddings)
        x = np.zeros(ids.shape + (self.num_embeddings,), self.dtype)
        np.put_along_axis(x, np.maximum(ids, 0)[..., None], 1, axis=-1)
        x[ids < 0] = 0
        return x

    def backward(self, dx):
        return None

    def config(self):
        return {"num_embeddings": self.num_embeddings}
