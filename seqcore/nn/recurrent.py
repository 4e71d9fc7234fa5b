"""The recurrent layers RNN, GRU and LSTM: stacking, directions, lengths and state.

This is the thin Python skin over the kernels. It validates every argument, lays the
data out time-major and C-contiguous, allocates every output, and then calls one
kernel per layer and direction: ``seqcore.reference`` (``backend="numpy"``) or the
compiled modules ``seqcore._kernels.{path}.rnn``, ``.gru``, ``.lstm``
(``backend="cython"``) of the kernel path chosen at import (``seqcore._dispatch``),
which have the same functions.

Legend: T time steps, B batch, D input features, H hidden units per direction,
G gate blocks (RNN 1, GRU 3, LSTM 4), L layers, dirs directions (1 or 2).

Kernels only run forward in time. The reverse direction runs them on each sequence
reversed within its own length (``reverse_padded``), and reverses the results back, which
gives exactly the packed-sequence semantics of docs/spec.md §Cells (variable lengths).

Threads: a layer owns mutable scratch that its kernels write with the GIL released
(the forward cache and workspaces ``_cache``/``_workspaces``, the one-token
``_stepper``'s buffers and parameter pointers). Each layer therefore holds a
reentrant lock, ``lock``, for the whole of every ``forward``, ``backward`` and
``zero_grad``: calls on one layer from several threads run one at a time and each
gives exactly what it gives alone (without it, 4 threads of forward calls on one
LSTM gave wrong outputs in about half of them, and the stepper could crash on a
parameter pointer another thread had just cleared). Different layers still run in
parallel. ``backward`` uses the most recent ``forward`` of *any* thread, so a thread
that trains a layer shared with other threads holds ``with layer.lock:`` around its
forward/backward pair (the models do this for you: ``seqcore.models``).
"""

import math
import threading
import warnings

import numpy as np

from .. import _dispatch, _validation as V
from ..reference.quant import Int8Rows, dequantize_rows
from .buffers import aligned_empty
from .dense import Dense
from .dropout import Switchable, check_dropout, dropout_mask
from .embedding import Embedding
from .qweights import checked_qweight

__all__ = ["RNN", "GRU", "LSTM"]


def kernels(backend, cell):
    """The module holding ``{cell}_forward`` / ``{cell}_backward`` for a backend."""
    if backend == "numpy":
        from .. import reference
        return reference
    return _dispatch.kernels(cell)


def reverse_index(lengths, T, B):
    """(T, B) time index that reverses each sequence within its length.

    idx[t, b] = lengths[b] - 1 - t for t < lengths[b], else t (padding stays put).
    It is its own inverse, so the same gather reverses and un-reverses.
    """
    t = np.arange(T)[:, None]
    return np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def reverse_padded(x, rev):
    """x (T, B, ...) with each sequence reversed; rev from ``reverse_index`` or None."""
    if rev is None:
        return np.ascontiguousarray(x[::-1])
    return np.ascontiguousarray(x[rev, np.arange(x.shape[1])[None, :]])


class _Recurrent(Switchable):
    """Shared machinery of RNN, GRU and LSTM; subclasses define the cell."""

    _cell = ""         # kernel prefix: "rnn", "gru" or "lstm"
    _num_gates = 1     # G
    _num_states = 1    # 1: a (RNN, GRU); 2: (a, c) (LSTM)
    quantized = False  # int8 weights (seqcore.quantize): inference only
    qweights = None    # then {name: (q int8, scale)} (seqcore.nn.quantized)

    def __init__(self, input_size, hidden_size, *, num_layers=1, bidirectional=False,
                 batch_first=False, dropout=0.0, dtype=np.float32, backend="cython",
                 seed=None):
        self.input_size = V.check_int(input_size, "input_size")
        self.hidden_size = V.check_int(hidden_size, "hidden_size")
        self.num_layers = V.check_int(num_layers, "num_layers")
        self.bidirectional = V.check_bool(bidirectional, "bidirectional")
        self.batch_first = V.check_bool(batch_first, "batch_first")
        self.dropout = check_dropout(dropout)
        if self.dropout and self.num_layers == 1:
            warnings.warn(f"dropout={self.dropout} acts between stacked layers only, and this "
                          "layer has num_layers=1: nothing will be dropped", stacklevel=3)
        self.dtype = V.check_dtype(dtype)
        self.backend = V.check_backend(backend)
        if seed is not None:
            seed = V.check_int(seed, "seed", minimum=0)
        self._kernels = kernels(self.backend, self._cell)
        self._forward_kernel = getattr(self._kernels, f"{self._cell}_forward")
        self._backward_kernel = getattr(self._kernels, f"{self._cell}_backward")
        self.params = {}
        self._shape_cache = {}
        self._check_param_sizes()
        self._init_params(np.random.default_rng(seed))
        # The dropout masks' own stream (a model replaces it by its shared generator).
        self.generator = np.random.default_rng(None if seed is None else [seed, 1])
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.last_grad_sq = None   # {"a": (T, L*dirs, B)[, "c": ...]} of the last backward
        self._init_scratch()

    def _init_scratch(self):
        """The per-object state that is not the layer's configuration or weights: the
        lock (see the module notes), the forward cache, the workspaces and the stepper.
        Made by __init__ and again for each copy (__setstate__): a copy never shares
        them with its original."""
        self.lock = threading.RLock()
        self._cache = None
        self._workspaces = {}
        self._sizes_checked = {"forward": None, "backward": None}   # the last (T, B) passed
        self._stepper = self._make_stepper()

    # Copies and pickles carry the configuration, the weights and the gradients; the
    # kernels are looked up again and the scratch is made anew (a lock, a kernel
    # module and the compiled stepper cannot be pickled, and a copy sharing the
    # original's workspaces would race with it).
    _TRANSIENT = ("lock", "_cache", "_workspaces", "_sizes_checked", "_stepper", "_kernels",
                  "_forward_kernel", "_backward_kernel")

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in self._TRANSIENT}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._kernels = kernels(self.backend, self._cell)
        self._forward_kernel = getattr(self._kernels, f"{self._cell}_forward")
        self._backward_kernel = getattr(self._kernels, f"{self._cell}_backward")
        self._init_scratch()

    # ------------------------------------------------------------------ parameters

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    def _suffixes(self):
        return ("", "_reverse")[: self.num_directions]

    def _layer_input_size(self, l):
        return self.input_size if l == 0 else self.hidden_size * self.num_directions

    def param_shapes(self):
        """{name: shape} of every parameter, in the layout of docs/spec.md §Parameter names."""
        shapes = {}
        for l in range(self.num_layers):
            for sfx in self._suffixes():
                shapes.update(self._param_shapes_of(l, sfx))
        return shapes

    def _extra_param_shapes(self, l, sfx):
        return {}

    def _flag(self):
        """The cell's option as its kernels take it (relu, reset_after or peephole)."""
        raise NotImplementedError

    def _cache_shapes(self, T, B):
        """{name: shape} of the arrays forward keeps for backward after x, in the
        kernels' order (the states (T+1, B, H) first)."""
        raise NotImplementedError

    def _gate_activations(self, cache):
        """(T, B, G*H) gate activations kept by forward for one layer and direction."""
        return None

    # ------------------------------------------------------------------- sizes
    #
    # A size that cannot be served is refused before anything is allocated or any
    # kernel runs (see _validation's notes on sizes): at construction, parameters that
    # cannot be made or that the kernels would index in a wrapping C int; in forward
    # and backward, workspaces beyond an array's index or the machine's memory. The
    # counts are lower bounds of what is needed, so a shape that can run is never
    # refused. A size checked once is not checked again (one dict lookup per call).

    def _describe(self):
        return (f"{type(self).__name__}(input_size={self.input_size}, "
                f"hidden_size={self.hidden_size}, num_layers={self.num_layers}"
                + (", bidirectional=True" if self.bidirectional else "") + ")")

    def _check_param_sizes(self):
        G, H, D = self._num_gates, self.hidden_size, self.input_size
        L, dirs = self.num_layers, self.num_directions
        what, item = self._describe(), self.dtype.itemsize
        # every parameter and its gradient (layers 1 and up all have layer 1's shapes)
        arrays = [(name, shape, item, 2 * dirs)
                  for name, shape in self._param_shapes_of(0, "").items()]
        if L > 1:
            arrays += [(f"{name}..l{L - 1}" if L > 2 else name, shape, item, 2 * dirs * (L - 1))
                       for name, shape in self._param_shapes_of(1, "").items()]
        V.check_sizes(what + " parameters", arrays, memory=False)   # each one indexable
        if self.backend == "cython":
            sizes = {"input_size": D, "num_gates * hidden_size": G * H,
                     "hidden_size + input_size": H + D, "num_layers * directions": L * dirs}
            if L > 1:
                sizes["hidden_size * (1 + directions)"] = H + dirs * H
            V.check_c_int(what, sizes)
        V.check_sizes(what + " parameters and their gradients", arrays)
        # _init_params draws each parameter in float64, then casts it
        shape = max((a[1] for a in arrays), key=math.prod)
        V.check_sizes(what + " initial weights",
                      [("float64 draw", shape, 8, 1), ("its cast", shape, item, 1)])

    def _workspace_sizes(self, T, B):
        """(name, shape, itemsize, count) of the forward cache of all layers and directions."""
        n = self.num_layers * self.num_directions
        return [(name, shape, self.dtype.itemsize, n)
                for name, shape in self._cache_shapes(T, B).items()]

    def _check_forward_sizes(self, T, B):
        if self._sizes_checked["forward"] == (T, B):
            return
        item = self.dtype.itemsize
        V.check_sizes(f"{self._describe()}.forward with T={T}, B={B}",
                      self._workspace_sizes(T, B)
                      + [("y", (T, B, self.num_directions * self.hidden_size), item, 1),
                         ("final state", self._state_shape(B), item, self._num_states)])
        self._sizes_checked["forward"] = (T, B)

    def _check_backward_sizes(self, T, B):
        if self._sizes_checked["backward"] == (T, B):
            return
        L, dirs = self.num_layers, self.num_directions
        V.check_sizes(f"{self._describe()}.backward with T={T}, B={B}",
                      self._workspace_sizes(T, B)
                      + [("dx", (T, B, self.input_size), self.dtype.itemsize, 1),
                         ("last_grad_sq", (T, L * dirs, B), 8, self._num_states)])
        self._sizes_checked["backward"] = (T, B)

    def _init_params(self, rng):
        # Uniform in +-1/sqrt(H), as PyTorch initializes its recurrent layers.
        k = 1.0 / np.sqrt(self.hidden_size)
        for name, shape in self.param_shapes().items():
            self.params[name] = rng.uniform(-k, k, size=shape).astype(self.dtype)

    def _checked_params(self, l, sfx, int8_rows=False):
        """The parameters of one layer and direction, checked: a user may have replaced
        them. A quantized W comes as its float weights, or with int8_rows as the int8
        rows themselves (reference.quant.Int8Rows)."""
        out = []
        for name, shape in self._param_shapes_of(l, sfx).items():
            if self.qweights and name in self.qweights:     # int8 (seqcore.quantize)
                pair = checked_qweight(self, name, shape)
                # the reference cells' one-token step reads the int8 rows; every other
                # forward the float weights they stand for, made for this call
                out.append(Int8Rows(*pair) if int8_rows else dequantize_rows(*pair))
                continue
            p = self.params.get(name)
            if (p.__class__ is np.ndarray and p.shape == shape and p.dtype == self.dtype
                    and p.flags.c_contiguous):
                out.append(p)               # the common case, checked in a few attribute reads
                continue
            if p is None:
                raise ValueError(f"params[{name!r}]: missing; expected shape {shape}")
            out.append(V.check_array(p, f"params[{name!r}]", shape, self.dtype, finite=False))
        return out

    def _checked_grads(self, l, sfx):
        out = []
        for name, shape in self._param_shapes_of(l, sfx).items():
            g = self.grads.get(name)
            if (not isinstance(g, np.ndarray) or g.shape != shape or g.dtype != self.dtype
                    or not g.flags.c_contiguous or not g.flags.writeable):
                raise ValueError(f"grads[{name!r}]: expected a writeable C-contiguous array "
                                 f"of shape {shape} and dtype {self.dtype}; "
                                 "call zero_grad() to reset the gradients")
            out.append(g)
        return out

    def _param_shapes_of(self, l, sfx):
        """{name: shape} of layer l, direction sfx (fixed at construction, so cached)."""
        shapes = self._shape_cache.get((l, sfx))
        if shapes is None:
            G, H = self._num_gates, self.hidden_size
            shapes = {f"W_l{l}{sfx}": (G * H, H + self._layer_input_size(l)),
                      f"b_l{l}{sfx}": (G * H,)}
            shapes.update(self._extra_param_shapes(l, sfx))
            self._shape_cache[(l, sfx)] = shapes
        return shapes

    def _full_lengths(self, T, B):
        """lengths (B,) all equal to T, kept between calls (the kernels only read it)."""
        lens = self._workspaces.get("lengths")
        if lens is None or lens.shape[0] != B or lens[0] != T:
            lens = self._workspaces["lengths"] = np.full(B, T, np.int64)
        return lens

    def _workspace(self, k, name, shape):
        """The array forward keeps for backward, reused from the previous forward when the
        shape matches: a fresh tens-of-megabytes array costs a page fault per 4 KiB on
        every call (measured: 6% of a medium LSTM forward). Only the most recent
        forward's cache is ever read, and none of it is returned to the caller."""
        key = (k, name)
        buf = self._workspaces.get(key)
        if buf is None or buf.shape != shape:
            buf = self._workspaces[key] = aligned_empty(shape, self.dtype)
        return buf

    def _workspaces_for(self, k, x):
        """The arrays the forward kernel of layer/direction k fills for input x (T, B, D)
        (its cache for backward, after x): see _workspace and _cache_shapes."""
        T, B, _ = x.shape
        return [self._workspace(k, name, shape)
                for name, shape in self._cache_shapes(T, B).items()]

    def _backward_scratch(self, T, B):
        """Keyword arguments of the compiled backward kernels: the (C, B, G*H) array
        dz_work they fill with dC/d(pre-activations) of a chunk of C steps (backward
        runs in chunks of 512 rows or a million values, each followed by its rows of
        dW and dx), kept like forward's cache and shared by all layers and directions
        (backward runs them one after another). A fresh one per call cost page
        faults, and on a VM whose host reclaims freed memory after an idle second, a
        medium LSTM backward took 15-25% longer. The reference kernels take no
        scratch."""
        if self.backend != "cython":
            return {}
        n = self._num_gates * self.hidden_size
        shape = (self._kernels.dz_chunk_steps(T, B, n), B, n)
        return {"dz_work": self._workspace("backward", "dz", shape)}

    def _threads(self):
        """The compiled kernels' thread count, passed at every call (the reference takes none)."""
        return {"threads": _dispatch.get_num_threads()} if self.backend == "cython" else {}

    def _make_stepper(self):
        """The compiled forward of one token (T = B = 1, generation) of a unidirectional
        layer on the cython backend, else None. It fills arrays of its own, laid out as
        _run_forward's cache, so backward works after it as after any forward."""
        if self.backend != "cython" or self.bidirectional:
            return None
        x_in = np.zeros((1, 1, self.input_size), self.dtype)
        names, caches = [], []
        for l in range(self.num_layers):
            ws = tuple(np.zeros(shape, self.dtype) for shape in self._cache_shapes(1, 1).values())
            caches.append((x_in,) + ws)
            names.append(tuple(self._param_shapes_of(l, "").items()))
            x_in = ws[0][1:]                   # the next layer's input: this one's new state
        cache = dict(caches=caches, T=1, B=1, lens=np.ones(1, np.int64), rev=None,
                     x_shape=(1, 1, self.input_size))
        return self._kernels.Stepper(self, names, caches, cache, self._flag())

    def _unused(self, shape):
        """A zero array standing in for a parameter the cell's options switch off (the
        kernels do not read it); kept, as forward may run once per generated token."""
        key = ("unused", shape)
        buf = self._workspaces.get(key)
        if buf is None:
            buf = self._workspaces[key] = np.zeros(shape, self.dtype)
        return buf

    def zero_grad(self):
        """Clear the accumulated parameter gradients (backward adds into them)."""
        with self.lock:
            self.grads = {k: np.zeros(v.shape, self.dtype) for k, v in self.params.items()}

    # ----------------------------------------------------------------------- state

    def _state_shape(self, B):
        return (self.num_layers * self.num_directions, B, self.hidden_size)

    def _check_state(self, state, B, name):
        """A tuple of ``_num_states`` arrays (L*dirs, B, H); zeros when ``state`` is None."""
        shape = self._state_shape(B)
        if state is None:
            return tuple(np.zeros(shape, self.dtype) for _ in range(self._num_states))
        if self._num_states == 1:
            if isinstance(state, (tuple, list)):
                raise TypeError(f"{name}: expected one array of shape {shape} for "
                                f"{type(self).__name__}, got a {type(state).__name__}")
            return (V.check_array(state, name, shape, self.dtype),)
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(f"{name}: expected a pair (a, c) of arrays of shape {shape} "
                            f"for LSTM, got {type(state).__name__}")
        return tuple(V.check_array(s, f"{name}[{i}]", shape, self.dtype)
                     for i, s in enumerate(state))

    def _pack_state(self, arrays):
        return arrays[0] if self._num_states == 1 else tuple(arrays)

    # --------------------------------------------------------------- forward pass

    def _time_major(self, x, name, width):
        """Check ``x`` against (T, B, width), or (B, T, width) batch-first; return (T, B, width)."""
        shape = ("B", "T", width) if self.batch_first else ("T", "B", width)
        x = V.check_array(x, name, shape, self.dtype)
        if self.batch_first:
            x = np.ascontiguousarray(x.transpose(1, 0, 2))
        return x

    def forward(self, x, state=None, lengths=None):
        """Run all layers and directions over a batch of sequences.

        In training mode (``train()``, the default) with ``dropout`` = p > 0, each
        layer's output but the last is multiplied by a fresh mask m / (1 - p) (drawn
        from ``generator``) before the next layer reads it; ``eval()`` turns it off.

        Parameters
        ----------
        x : numpy.ndarray
            ``(T, B, D)``, or ``(B, T, D)`` with ``batch_first``, of the layer's dtype.
        state : numpy.ndarray or tuple of numpy.ndarray, optional
            The initial state: one array ``(L*dirs, B, H)``, for the LSTM a pair
            ``(a, c)`` of them; row ``l*dirs + d`` is layer ``l``, direction ``d``.
            Zeros when None.
        lengths : array_like of int, optional
            ``(B,)``, each in ``[1, T]``: steps past a sequence's length leave its
            state as it was and output 0. None: every sequence has length ``T``.

        Returns
        -------
        y : numpy.ndarray
            ``(T, B, dirs*H)`` (or batch-first): the last layer's output at every step.
        state : numpy.ndarray or tuple of numpy.ndarray
            The final state (after each sequence's last valid step), shaped like
            ``state``.

        Raises
        ------
        TypeError
            ``x`` or a state that is not an array of the layer's dtype, or
            ``lengths`` that are not integers.
        ValueError
            A wrong shape or number of dimensions, an empty dimension, NaN or
            infinity, ``lengths`` outside ``[1, T]``.

        Notes
        -----
        Calls on one layer from several threads run one at a time (``lock``).
        """
        with self.lock:
            if lengths is None and self._stepper is not None and not self._dropping():
                out = self._stepper.step(x, state, _dispatch.get_num_threads())  # all in C, or None
                if out is not None:
                    self._cache = self._stepper.cache
                    return out
            return self._forward(x, state, lengths)

    def forward_token(self, ids, embedding, out, state=None):
        """A language model's forward of one token: ``embedding``, this layer, ``out``.

        Gives ``out.forward(self.forward(embedding.forward(ids), state)[0])`` and the
        final state. When it can, it is one compiled call (the embedding's row, every
        layer's step, ``out``'s product; float or int8 weights): generation reads the
        weights and little else per token, and the Python between the three layers
        costs most after a step has moved megabytes of weights through the caches.
        Otherwise (a layer on the reference backend, a bidirectional one, dropout
        active, ``ids`` not int64, or anything ``forward`` would refuse) the three
        forwards run one after the other and raise what they raise.

        Parameters
        ----------
        ids : numpy.ndarray
            ``(1, 1)`` token id, -1 for no token (the zero vector).
        embedding : Embedding
            Gives this layer's input.
        out : Dense
            Reads this layer's output.
        state : optional
            As ``forward``'s.

        Returns
        -------
        logits : numpy.ndarray
            ``(1, 1, out.out_features)``.
        state
            The final state, as ``forward`` returns it.

        Notes
        -----
        The compiled call keeps what this layer's ``backward`` needs, not what
        ``embedding``'s and ``out``'s do: their ``backward`` after it raises as
        before any ``forward``. The logits may differ from the three forwards' in the
        last bits with float weights (``out`` then runs one row's product, not the
        batched one); with int8 weights they are the same.
        """
        if not isinstance(embedding, Embedding):
            raise TypeError(f"embedding: expected an Embedding, got {type(embedding).__name__}")
        if not isinstance(out, Dense):
            raise TypeError(f"out: expected a Dense layer, got {type(out).__name__}")
        with self.lock:
            if (self._stepper is not None and not self._dropping()
                    and embedding.backend == out.backend == "cython"
                    and embedding.dtype == out.dtype == self.dtype):
                got = self._stepper.token(ids, state, embedding, out,
                                          _dispatch.get_num_threads())
                if got is not None:
                    self._cache = self._stepper.cache
                    embedding._ids = None              # (their backward: nothing to use)
                    out._x = None
                    return got
        a, state = self.forward(embedding.forward(ids), state)
        return out.forward(a), state

    def _dropping(self):
        """Whether forward drops between layers now (training mode, p > 0, stacked)."""
        return self.training and self.dropout > 0.0 and self.num_layers > 1

    def _forward(self, x, state, lengths):
        """forward() on the general path (any T, B, lengths), with the lock held."""
        if isinstance(x, np.ndarray) and x.ndim == 3:  # sizes first: before x is scanned or copied
            self._check_forward_sizes(*(x.shape[1::-1] if self.batch_first else x.shape[:2]))
        x = self._time_major(x, "x", self.input_size)
        T, B, _ = x.shape
        self._check_forward_sizes(T, B)     # (x was not an array; else a dict lookup)
        lengths = V.check_lengths(lengths, T, B)
        states0 = self._check_state(state, B, "state")
        # The previous call's cache goes before this call allocates: it holds arrays
        # made per call (the reversed input of a bidirectional layer, a stacked layer's
        # input when it is bidirectional or has lengths), which would otherwise be
        # alive twice during this forward.
        self._cache = None
        H, dirs = self.hidden_size, self.num_directions
        lens = lengths if lengths is not None else self._full_lengths(T, B)
        rev = reverse_index(lens, T, B) if lengths is not None and dirs == 2 else None
        mask = (np.arange(T)[:, None] < lens[None, :])[:, :, None] if lengths is not None else None

        finals = [np.empty(self._state_shape(B), self.dtype) for _ in range(self._num_states)]
        caches = []
        drop_masks = []           # per layer below the top: m / (1 - p) (T, B, dirs*H)
        dropping = self._dropping()
        # A quantized layer's step of one token: int8 x int8 products (the contract's
        # int8 weights). The compiled stepper takes it in forward(); the reference's
        # cells get the int8 rows here.
        int8_step = (self.backend == "numpy" and self.qweights and T == B == 1
                     and lengths is None and dirs == 1 and not dropping)
        layer_in = x
        for l in range(self.num_layers):
            # A unidirectional layer's full-length output is its states a[1:]: the
            # layer above reads them in place (the cache keeps them anyway). The last
            # layer's y is the caller's, so it is always a fresh array.
            in_place = dirs == 1 and mask is None and l < self.num_layers - 1 and not dropping
            y = None if in_place else np.empty((T, B, dirs * H), self.dtype)
            for d, sfx in enumerate(self._suffixes()):
                k = l * dirs + d
                params = self._checked_params(l, sfx, int8_rows=int8_step)
                x_d = layer_in if d == 0 else reverse_padded(layer_in, rev)
                s0 = [np.ascontiguousarray(s[k]) for s in states0]
                cache = self._run_forward(k, x_d, s0, params, lens)
                caches.append(cache)
                a = cache[1]                                     # states (T+1, B, H)
                for i in range(self._num_states):
                    finals[i][k] = cache[1 + i][T]
                if in_place:
                    y = a[1:]
                else:
                    out = a[1:] if mask is None else np.where(mask, a[1:], 0)
                    y[:, :, d * H:(d + 1) * H] = out if d == 0 else reverse_padded(out, rev)
            if dropping and l < self.num_layers - 1:
                # Dropout on this layer's output, the next layer's input (PyTorch's
                # semantics: between stacked layers, never after the last one).
                m = dropout_mask(self.generator, y.shape, self.dropout, self.dtype)
                drop_masks.append(m)
                y = y * m
            layer_in = y
        self._cache = dict(caches=caches, T=T, B=B, lens=lens, rev=rev,
                           x_shape=(T, B, self.input_size), drop_masks=drop_masks)
        if self.batch_first:
            layer_in = np.ascontiguousarray(layer_in.transpose(1, 0, 2))
        return layer_in, self._pack_state(finals)

    # -------------------------------------------------------------- backward pass

    def backward(self, dy, dstate=None):
        """Backpropagation through time for the most recent ``forward``.

        *Adds* the parameter gradients into ``self.grads`` (``zero_grad`` clears them).

        Parameters
        ----------
        dy : numpy.ndarray
            Gradient of the cost with respect to ``y``, shaped like ``y``.
        dstate : numpy.ndarray or tuple of numpy.ndarray, optional
            Gradient with respect to the final state, shaped like it; None for zero.

        Returns
        -------
        dx : numpy.ndarray
            Gradient with respect to ``x``, shaped like ``x``.
        dstate0 : numpy.ndarray or tuple of numpy.ndarray
            Gradient with respect to the initial state, shaped like it.

        Raises
        ------
        ValueError
            ``backward`` before any ``forward``, or ``dy``/``dstate`` of the wrong
            shape or with NaN or infinity.
        TypeError
            ``dy`` or ``dstate`` not an array of the layer's dtype, or a layer with
            int8 weights (``seqcore.quantize``).

        Notes
        -----
        It uses the most recent ``forward`` of any thread: a thread that trains a
        layer shared with other threads holds ``with layer.lock:`` around its
        forward/backward pair.
        """
        V.check_trainable(self, "backward")
        with self.lock:
            return self._backward(dy, dstate)

    def _backward(self, dy, dstate):
        if self._cache is None:
            raise ValueError("backward() called before forward(): run forward() first")
        cache = self._cache
        T, B, lens, rev = cache["T"], cache["B"], cache["lens"], cache["rev"]
        self._check_backward_sizes(T, B)
        H, dirs, L = self.hidden_size, self.num_directions, self.num_layers
        dy = self._time_major(dy, "dy", dirs * H)
        if dy.shape[:2] != (T, B):
            want = (B, T, dirs * H) if self.batch_first else (T, B, dirs * H)
            got = dy.shape[:2] if not self.batch_first else dy.shape[1::-1]
            raise ValueError(f"dy: expected shape {want} (the shape of y), got "
                             f"{tuple(got) + (dirs * H,)}")
        dfinal = self._check_state(dstate, B, "dstate")
        dstate0 = [np.empty(self._state_shape(B), self.dtype) for _ in range(self._num_states)]
        grad_sq = {n: np.zeros((T, L * dirs, B), np.float64)
                   for n in ("a", "c")[: self._num_states]}

        # Every layer's parameters and gradients are checked before any gradient is
        # added, so a bad one fails the call having changed nothing.
        checked = {(l, sfx): (self._checked_params(l, sfx), self._checked_grads(l, sfx))
                   for l in range(L) for sfx in self._suffixes()}

        d_layer_out = dy
        for l in reversed(range(L)):
            d_layer_in = None
            for d, sfx in enumerate(self._suffixes()):
                k = l * dirs + d
                params, grads = checked[(l, sfx)]
                dy_d = np.ascontiguousarray(d_layer_out[:, :, d * H:(d + 1) * H])
                if d == 1:
                    dy_d = reverse_padded(dy_d, rev)
                dT = [np.ascontiguousarray(s[k]) for s in dfinal]
                dx_d, ds0, sq = self._run_backward(cache["caches"][k], dy_d, dT,
                                                   params, grads, lens)
                for i in range(self._num_states):
                    dstate0[i][k] = ds0[i]
                for name, s in zip(grad_sq, sq):
                    grad_sq[name][:, k] = s if d == 0 else reverse_padded(s, rev)
                if d == 1:
                    dx_d = reverse_padded(dx_d, rev)
                d_layer_in = dx_d if d_layer_in is None else d_layer_in + dx_d
            if l > 0 and cache.get("drop_masks"):
                d_layer_in = d_layer_in * cache["drop_masks"][l - 1]   # back through dropout
            d_layer_out = d_layer_in
        self.last_grad_sq = grad_sq
        dx = d_layer_out
        if self.batch_first:
            dx = np.ascontiguousarray(dx.transpose(1, 0, 2))
        return dx, self._pack_state(dstate0)

    def __repr__(self):
        opts = "".join(f", {k}={v!r}" for k, v in self._options().items())
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}, "
                f"num_layers={self.num_layers}, bidirectional={self.bidirectional}, "
                f"batch_first={self.batch_first}"
                + (f", dropout={self.dropout}" if self.dropout else "")
                + f"{opts}, dtype=numpy.{self.dtype}, "
                f"backend={self.backend!r})")

    def _options(self):
        return {}

    def config(self):
        """The constructor arguments (without dtype, backend and seed), for saving."""
        return dict(input_size=self.input_size, hidden_size=self.hidden_size,
                    num_layers=self.num_layers, bidirectional=self.bidirectional,
                    batch_first=self.batch_first, dropout=self.dropout, **self._options())


class RNN(_Recurrent):
    """Vanilla RNN: ``a⟨t⟩ = g(W [a⟨t-1⟩, x⟨t⟩] + b)``, ``g`` = tanh or relu.

    One weight matrix ``W = [W_aa | W_ax]`` of shape ``(H, H + D_in)`` and a bias
    ``b (H,)`` per layer and direction (docs/spec.md §Cells).

    Parameters
    ----------
    input_size : int
        ``D``, the features of each input step.
    hidden_size : int
        ``H``, the hidden units per direction.
    num_layers : int, default 1
        ``L``, stacked layers; layer ``l > 0`` reads the output sequence of ``l - 1``.
    bidirectional : bool, default False
        Add a second set of parameters that runs from the end of each sequence to its
        start; the output at ``t`` is ``[a→⟨t⟩, a←⟨t⟩]``, width ``2H``.
    batch_first : bool, default False
        Inputs and outputs are ``(B, T, ...)`` instead of time-major ``(T, B, ...)``.
    dropout : float, default 0.0
        Probability of dropping each output of every layer but the last, in training
        mode only (PyTorch's semantics); in ``[0, 1)``.
    dtype : numpy.float32 or numpy.float64, default numpy.float32
        The parameters' and the inputs' dtype.
    backend : {"cython", "numpy"}, default "cython"
        The compiled core, or the NumPy reference that states the same math.
    seed : int or None, default None
        Seed of the initial weights (uniform in ``±1/√H``) and of the dropout masks.
    nonlinearity : {"tanh", "relu"}, default "tanh"
        ``g``.

    Attributes
    ----------
    params : dict of str to numpy.ndarray
        The parameters, named as in docs/spec.md §Parameter names
        (``W_l{l}``, ``b_l{l}``, suffix ``_reverse`` for the reverse direction).
    grads : dict of str to numpy.ndarray
        The gradients, same keys and shapes; ``backward`` adds into them.
    training : bool
        Training mode (dropout on); ``train()`` and ``eval()`` switch it.
    lock : threading.RLock
        Held for the whole of every ``forward``, ``backward`` and ``zero_grad``.

    Raises
    ------
    TypeError
        An argument of the wrong type (``True`` for a size, a dtype other than
        float32 or float64).
    ValueError
        A size below 1, an unknown choice, a dropout outside ``[0, 1)``.

    Examples
    --------
    >>> import numpy as np, seqcore
    >>> rnn = seqcore.RNN(8, 16, nonlinearity="relu", seed=0)
    >>> y, a = rnn.forward(np.zeros((5, 3, 8), np.float32))
    >>> y.shape, a.shape
    ((5, 3, 16), (1, 3, 16))
    """

    _cell, _num_gates, _num_states = "rnn", 1, 1

    def __init__(self, input_size, hidden_size, *, nonlinearity="tanh", **kwargs):
        self.nonlinearity = V.check_choice(nonlinearity, "nonlinearity", ("tanh", "relu"))
        super().__init__(input_size, hidden_size, **kwargs)

    def _options(self):
        return {"nonlinearity": self.nonlinearity}

    def _flag(self):
        return self.nonlinearity == "relu"

    def _cache_shapes(self, T, B):
        return {"a": (T + 1, B, self.hidden_size)}

    def _run_forward(self, k, x, s0, params, lens):
        W, b = params
        (a,) = self._workspaces_for(k, x)
        self._forward_kernel(a, x, s0[0], W, b, lens, self._flag(), **self._threads())
        return (x, a)

    def _run_backward(self, cache, dy, dT, params, grads, lens):
        x, a = cache
        W, _ = params
        dW, db = grads
        dx = np.empty_like(x)
        da0 = np.empty_like(dT[0])
        da_sq = np.empty(x.shape[:2], self.dtype)
        self._backward_kernel(dx, da0, dW, db, da_sq, dy, dT[0], x, a, W, lens, self._flag(),
                              **self._threads(), **self._backward_scratch(*x.shape[:2]))
        return dx, (da0,), (da_sq,)


class GRU(_Recurrent):
    """Gated recurrent unit, in the notes' form or (``reset_after=True``) PyTorch's.

    Gate blocks ``r`` (Γr), ``u`` (Γu), ``c`` (c̃) of ``W (3H, H + D_in)`` and
    ``b (3H,)``; ``c⟨t⟩ = Γu * c̃ + (1 - Γu) * c⟨t-1⟩`` and ``a⟨t⟩ = c⟨t⟩``
    (docs/spec.md §Cells). PyTorch's ``z`` is ``1 - Γu``.

    Parameters
    ----------
    input_size : int
        ``D``, the features of each input step.
    hidden_size : int
        ``H``, the hidden units per direction.
    num_layers : int, default 1
        ``L``, stacked layers; layer ``l > 0`` reads the output sequence of ``l - 1``.
    bidirectional : bool, default False
        Add a second set of parameters that runs from the end of each sequence to its
        start; the output at ``t`` is ``[a→⟨t⟩, a←⟨t⟩]``, width ``2H``.
    batch_first : bool, default False
        Inputs and outputs are ``(B, T, ...)`` instead of time-major ``(T, B, ...)``.
    dropout : float, default 0.0
        Probability of dropping each output of every layer but the last, in training
        mode only (PyTorch's semantics); in ``[0, 1)``.
    dtype : numpy.float32 or numpy.float64, default numpy.float32
        The parameters' and the inputs' dtype.
    backend : {"cython", "numpy"}, default "cython"
        The compiled core, or the NumPy reference that states the same math.
    seed : int or None, default None
        Seed of the initial weights (uniform in ``±1/√H``) and of the dropout masks.
    reset_after : bool, default False
        ``False``: the notes' form, ``c̃ = tanh(W_c [Γr * c⟨t-1⟩, x⟨t⟩] + b_c)``.
        ``True``: the form of PyTorch, cuDNN and Keras,
        ``c̃ = tanh(W_cx x⟨t⟩ + b_c + Γr * (W_cc c⟨t-1⟩ + b_cc))``, with one more
        bias ``b_cc_l{l} (H,)``.

    Attributes
    ----------
    params : dict of str to numpy.ndarray
        The parameters, named as in docs/spec.md §Parameter names
        (``W_l{l}``, ``b_l{l}``, suffix ``_reverse`` for the reverse direction).
    grads : dict of str to numpy.ndarray
        The gradients, same keys and shapes; ``backward`` adds into them.
    training : bool
        Training mode (dropout on); ``train()`` and ``eval()`` switch it.
    lock : threading.RLock
        Held for the whole of every ``forward``, ``backward`` and ``zero_grad``.

    Raises
    ------
    TypeError
        An argument of the wrong type (``True`` for a size, a dtype other than
        float32 or float64).
    ValueError
        A size below 1, an unknown choice, a dropout outside ``[0, 1)``.

    Examples
    --------
    >>> import numpy as np, seqcore
    >>> gru = seqcore.GRU(8, 16, num_layers=2, bidirectional=True, seed=0)
    >>> y, a = gru.forward(np.zeros((5, 3, 8), np.float32), lengths=[5, 4, 2])
    >>> y.shape, a.shape
    ((5, 3, 32), (4, 3, 16))
    """

    _cell, _num_gates, _num_states = "gru", 3, 1

    def __init__(self, input_size, hidden_size, *, reset_after=False, **kwargs):
        self.reset_after = V.check_bool(reset_after, "reset_after")
        super().__init__(input_size, hidden_size, **kwargs)

    def _options(self):
        return {"reset_after": self.reset_after}

    def _extra_param_shapes(self, l, sfx):
        return {f"b_cc_l{l}{sfx}": (self.hidden_size,)} if self.reset_after else {}

    def _gate_activations(self, cache):
        return cache[2]

    def _b_cc(self, params):
        return params[2] if self.reset_after else self._unused((self.hidden_size,))

    def _flag(self):
        return self.reset_after

    def _cache_shapes(self, T, B):
        H = self.hidden_size
        return {"c": (T + 1, B, H), "gates": (T, B, 3 * H), "hc": (T, B, H)}

    def _run_forward(self, k, x, s0, params, lens):
        c, gates, hc = self._workspaces_for(k, x)
        self._forward_kernel(c, gates, hc, x, s0[0], params[0], params[1],
                             self._b_cc(params), lens, self.reset_after, **self._threads())
        return (x, c, gates, hc)

    def _run_backward(self, cache, dy, dT, params, grads, lens):
        x, c, gates, hc = cache
        dx = np.empty_like(x)
        dc0 = np.empty_like(dT[0])
        da_sq = np.empty(x.shape[:2], self.dtype)
        db_cc = grads[2] if self.reset_after else np.zeros(self.hidden_size, self.dtype)
        self._backward_kernel(dx, dc0, grads[0], grads[1], db_cc, da_sq, dy, dT[0],
                              x, c, gates, hc, params[0], lens, self.reset_after,
                              **self._threads(), **self._backward_scratch(*x.shape[:2]))
        return dx, (dc0,), (da_sq,)


class LSTM(_Recurrent):
    """Long short-term memory, with or without diagonal peepholes.

    Gate blocks ``u`` (Γu), ``f`` (Γf), ``c`` (c̃), ``o`` (Γo) of ``W (4H, H + D_in)``
    and ``b (4H,)``; ``c⟨t⟩ = Γu * c̃ + Γf * c⟨t-1⟩``, ``a⟨t⟩ = Γo * tanh(c⟨t⟩)``
    (docs/spec.md §Cells). The forget-gate bias starts at 1. The state is a pair
    ``(a, c)``.

    Parameters
    ----------
    input_size : int
        ``D``, the features of each input step.
    hidden_size : int
        ``H``, the hidden units per direction.
    num_layers : int, default 1
        ``L``, stacked layers; layer ``l > 0`` reads the output sequence of ``l - 1``.
    bidirectional : bool, default False
        Add a second set of parameters that runs from the end of each sequence to its
        start; the output at ``t`` is ``[a→⟨t⟩, a←⟨t⟩]``, width ``2H``.
    batch_first : bool, default False
        Inputs and outputs are ``(B, T, ...)`` instead of time-major ``(T, B, ...)``.
    dropout : float, default 0.0
        Probability of dropping each output of every layer but the last, in training
        mode only (PyTorch's semantics); in ``[0, 1)``.
    dtype : numpy.float32 or numpy.float64, default numpy.float32
        The parameters' and the inputs' dtype.
    backend : {"cython", "numpy"}, default "cython"
        The compiled core, or the NumPy reference that states the same math.
    seed : int or None, default None
        Seed of the initial weights (uniform in ``±1/√H``) and of the dropout masks.
    peephole : bool, default False
        Add diagonal peephole weights ``p_l{l} (3, H)``: ``c⟨t-1⟩`` reaches Γu and Γf,
        ``c⟨t⟩`` reaches Γo, element by element (Gers & Schmidhuber 2000).

    Attributes
    ----------
    params : dict of str to numpy.ndarray
        The parameters, named as in docs/spec.md §Parameter names
        (``W_l{l}``, ``b_l{l}``, suffix ``_reverse`` for the reverse direction).
    grads : dict of str to numpy.ndarray
        The gradients, same keys and shapes; ``backward`` adds into them.
    training : bool
        Training mode (dropout on); ``train()`` and ``eval()`` switch it.
    lock : threading.RLock
        Held for the whole of every ``forward``, ``backward`` and ``zero_grad``.

    Raises
    ------
    TypeError
        An argument of the wrong type (``True`` for a size, a dtype other than
        float32 or float64).
    ValueError
        A size below 1, an unknown choice, a dropout outside ``[0, 1)``.

    Examples
    --------
    >>> import numpy as np, seqcore
    >>> lstm = seqcore.LSTM(8, 32, num_layers=2, bidirectional=True, seed=0)
    >>> x = np.random.randn(20, 4, 8).astype(np.float32)        # (T, B, D)
    >>> y, (a, c) = lstm.forward(x, lengths=[20, 17, 9, 3])
    >>> dx, (da0, dc0) = lstm.backward(np.ones_like(y))         # adds into lstm.grads
    >>> y.shape, a.shape, dx.shape
    ((20, 4, 64), (4, 4, 32), (20, 4, 8))
    """

    _cell, _num_gates, _num_states = "lstm", 4, 2

    def __init__(self, input_size, hidden_size, *, peephole=False, **kwargs):
        self.peephole = V.check_bool(peephole, "peephole")
        super().__init__(input_size, hidden_size, **kwargs)

    def _options(self):
        return {"peephole": self.peephole}

    def _extra_param_shapes(self, l, sfx):
        return {f"p_l{l}{sfx}": (3, self.hidden_size)} if self.peephole else {}

    def _init_params(self, rng):
        super()._init_params(rng)
        # Forget-gate bias 1 (Jozefowicz et al. 2015): start out remembering.
        H = self.hidden_size
        for name, value in self.params.items():
            if name.startswith("b_l"):
                value[H:2 * H] = 1

    def _gate_activations(self, cache):
        return cache[3]

    def _p(self, params):
        return params[2] if self.peephole else self._unused((3, self.hidden_size))

    def _flag(self):
        return self.peephole

    def _cache_shapes(self, T, B):
        H = self.hidden_size
        return {"a": (T + 1, B, H), "c": (T + 1, B, H), "gates": (T, B, 4 * H)}

    def _run_forward(self, k, x, s0, params, lens):
        a, c, gates = self._workspaces_for(k, x)
        self._forward_kernel(a, c, gates, x, s0[0], s0[1], params[0], params[1],
                             self._p(params), lens, self.peephole, **self._threads())
        return (x, a, c, gates)

    def _run_backward(self, cache, dy, dT, params, grads, lens):
        x, a, c, gates = cache
        dx = np.empty_like(x)
        da0 = np.empty_like(dT[0])
        dc0 = np.empty_like(dT[1])
        da_sq = np.empty(x.shape[:2], self.dtype)
        dc_sq = np.empty(x.shape[:2], self.dtype)
        dp = grads[2] if self.peephole else np.zeros((3, self.hidden_size), self.dtype)
        self._backward_kernel(dx, da0, dc0, grads[0], grads[1], dp, da_sq, dc_sq, dy,
                              dT[0], dT[1], x, a, c, gates, params[0], self._p(params),
                              lens, self.peephole, **self._threads(),
                              **self._backward_scratch(*x.shape[:2]))
        return dx, (da0, dc0), (da_sq, dc_sq)
