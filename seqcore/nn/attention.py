"""Attention for the encoder-decoder: additive (Bahdanau), multiplicative (Luong "general") and dot.

Plain NumPy, forward and backward: a few batched matrix products per decoder step,
at BLAS speed already, so there is no compiled twin. This file is the reference.

Legend: Tx source steps, Ty decoder steps, B batch rows, Hs query width (the
decoder state s), Hh key/value width (the encoder states h_j), A attention width
(Bahdanau only), K key width (A for Bahdanau, Hs for Luong, Hh = Hs for dot).

At decoder step t, with s = s<t> the decoder state (B, Hs) and h_j the encoder state
at source position j (row j of H (Tx, B, Hh)):

    e_j     = score(s, h_j)                           the alignment scores
    alpha_j = exp(e_j) / sum_{i < len} exp(e_i)       for j < len, and alpha_j = 0
                                                      for j >= len (padding)
    c       = sum_j alpha_j h_j                       the context vector (B, Hh)

    kind        score(s, h_j)                        params
    "bahdanau"  v . tanh(W_s s + W_h h_j + b)        W_s (A, Hs), W_h (A, Hh), b (A,), v (A,)
    "luong"     s . (W h_j)                          W (Hs, Hh)
    "dot"       s . h_j            (Hs == Hh)        none

The part of the score that does not depend on s, the *keys* k_j (W_h h_j + b,
W h_j, or h_j itself), is computed once per source (``precompute``/``set_source``)
and reused at every decoder step. Padded positions (j >= lengths[b]) are masked
out of the softmax, not pushed down by a large negative number: their weight is
exactly 0, and so are the gradients that reach their scores, keys and states.

Three ways to run a layer ``attn`` (``make_attention`` builds one):

Step by step, for a decoder that needs c<t> before s<t+1> (input feeding)::

    attn.set_source(H, lengths)              # H (Tx, B, Hh); keys computed once
    for t in range(Ty):                      # forward, in time order
        s = ...                              # (B, Hs) decoder state at step t
        c, alpha = attn.forward_step(s)      # (B, Hh), (B, Tx); caches step t
        ...
    for t in reversed(range(Ty)):            # backward, last step first
        ...
        ds = attn.backward_step(dc, dalpha)  # (B, Hs); dalpha may be None
        ...
    dH = attn.backward_source()              # (Tx, B, Hh): summed over all steps

``backward_step`` takes the steps back last-in first-out (the t-th call undoes the
(Ty-1-t)-th ``forward_step``); it adds the grads of the query side (W_s, v) and
accumulates the gradients of the keys and of H. ``backward_source`` closes the
pass: it backpropagates the accumulated key gradient through the key projection
(adding the grads of W_h, b or W) and returns dH, the whole gradient w.r.t. the
encoder states.

Whole sequence, for teacher forcing when the decoder states do not depend on the
contexts (no input feeding)::

    C, alpha = attn.forward(S, H, lengths)   # S (Ty, B, Hs) -> (Ty, B, Hh), (Ty, B, Tx)
    dS, dH = attn.backward(dC, dalpha)       # adds every parameter grad

It gives the same numbers as ``Ty`` calls of ``forward_step``.

Inference (greedy or beam search), no caches and no gradients::

    src = attn.precompute(H, lengths)        # AttentionSource(H, keys, lengths)
    c, alpha = attn.attend(s, src)           # (B, Hh), (B, Tx)

``AttentionSource`` is a NamedTuple whose arrays keep the batch rows where
``seqcore.models.beam.reorder_rows`` expects them (axis 1 of H and keys, axis 0 of
lengths), so a beam search reorders it with the rest of the decoder's state.

Like the other layers: ``params``/``grads`` dicts, backward *adds* into ``grads``,
``zero_grad`` clears them, and every argument is checked at the boundary.
"""

from typing import NamedTuple

import numpy as np

from .. import _validation as V
from .dropout import Switchable

__all__ = ["ATTENTION_KINDS", "AttentionSource", "BahdanauAttention", "LuongAttention",
           "DotAttention", "make_attention"]

ATTENTION_KINDS = ("bahdanau", "luong", "dot")


class AttentionSource(NamedTuple):
    """What an attention layer keeps of one batch of sources (``precompute``)."""

    H: np.ndarray          # (Tx, B, Hh) encoder states: the values
    keys: np.ndarray       # (Tx, B, K)  the query-independent part of the scores
    lengths: np.ndarray    # (B,) int64: positions 0 .. lengths[b]-1 are valid


def _bt(x):
    """Swap the first two axes: (T, B, ...) time-major <-> (B, T, ...) batch-major (a view)."""
    return x.swapaxes(0, 1)


def _linear(x, W):
    """x (..., n) @ W.T -> (..., m) for W (m, n), as one 2-D product (NumPy's stacked
    matmul of a 3-D array by a matrix is several times slower than the 2-D one)."""
    return (x.reshape(-1, x.shape[-1]) @ W.T).reshape(x.shape[:-1] + (W.shape[0],))


def _sum_outer(dy, x):
    """sum over all leading positions of dy x^T: dy (..., m), x (..., n) -> (m, n), the
    gradient of W in y = W x."""
    return dy.reshape(-1, dy.shape[-1]).T @ x.reshape(-1, x.shape[-1])


def _masked_softmax(e, lengths):
    """e (Ty, B, Tx) scores -> alpha (Ty, B, Tx), softmax over j < lengths[b], 0 beyond."""
    Tx = e.shape[2]
    valid = np.arange(Tx)[None, :] < lengths[:, None]                  # (B, Tx)
    e_max = np.where(valid, e, -np.inf).max(axis=2, keepdims=True)      # (Ty, B, 1); lengths >= 1
    shifted = np.where(valid, e - e_max, -np.inf)                       # exp(-inf) = 0 exactly
    w = np.exp(shifted)                                                 # (Ty, B, Tx)
    return w / w.sum(axis=2, keepdims=True)


class _Attention(Switchable):
    """Shared machinery: source handling, softmax and context, the step and sequence forms.

    A kind supplies the keys (``_keys_forward``/``_keys_backward``) and the scores
    (``_scores_forward``/``_scores_backward``), both written over a leading Ty axis so
    that a step is the Ty = 1 case of the sequence form.
    """

    kind = None

    def __init__(self, query_size, key_size, *, dtype=np.float32, seed=None):
        self.query_size = V.check_int(query_size, "query_size")
        self.key_size = V.check_int(key_size, "key_size")
        self.dtype = V.check_dtype(dtype)
        if seed is not None:
            seed = V.check_int(seed, "seed", minimum=0)
        self.params = self._init_params(np.random.default_rng(seed))
        self.zero_grad()
        self._source = None       # AttentionSource of the step form (set_source)
        self._steps = []          # per forward_step: (Q (1, B, Hs), score cache, alpha (1, B, Tx))
        self._dkeys = None        # (Tx, B, K)  accumulated over backward_step calls
        self._dH = None           # (Tx, B, Hh) accumulated through the contexts
        self._seq = None          # cache of the sequence form

    # ------------------------------------------------------------ parameters

    def param_shapes(self):
        return {}

    def _init_params(self, rng):
        return {}

    def zero_grad(self):
        self.grads = {k: np.zeros(v.shape, self.dtype) for k, v in self.params.items()}

    def _param(self, name):
        return V.check_array(self.params.get(name), f"params[{name!r}]",
                             self.param_shapes()[name], self.dtype, finite=False)

    @property
    def key_width(self):
        """K, the width of the keys."""
        return self.key_size

    def config(self):
        """The arguments of ``make_attention`` that rebuild this layer (without dtype, seed)."""
        return {"kind": self.kind, "query_size": self.query_size, "key_size": self.key_size,
                "attention_size": None}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if v is not None)
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------ checks

    def _check_H(self, H):
        H = V.check_array(H, "H", ("Tx", "B", self.key_size), self.dtype)
        return H

    def _check_source(self, source):
        if not isinstance(source, AttentionSource):
            raise TypeError("source: expected the AttentionSource that precompute() returns, "
                            f"got {type(source).__name__}")
        H = V.check_array(source.H, "source.H", ("Tx", "B", self.key_size), self.dtype,
                          finite=False)
        Tx, B, _ = H.shape
        keys = V.check_array(source.keys, "source.keys", (Tx, B, self.key_width), self.dtype,
                             finite=False)
        lengths = V.check_lengths(source.lengths, Tx, B)
        if lengths is None:
            raise ValueError(f"source.lengths: expected shape ({B},), got None")
        return AttentionSource(H, keys, lengths)

    def _check_query(self, s, B, name):
        return V.check_array(s, name, (B, self.query_size), self.dtype)

    # ------------------------------------------------------------ the math, over a leading Ty axis

    def _attend_forward(self, Q, source):
        """Q (Ty, B, Hs) -> context (Ty, B, Hh), alpha (Ty, B, Tx), cache."""
        H, keys, lengths = source
        e, score_cache = self._scores_forward(Q, keys)                 # (Ty, B, Tx)
        alpha = _masked_softmax(e, lengths)                            # (Ty, B, Tx)
        # batched over B: (B,Ty,Tx) @ (B,Tx,Hh) -> context (Ty, B, Hh)
        context = np.ascontiguousarray(_bt(_bt(alpha) @ _bt(H)))
        return context, alpha, (Q, score_cache, alpha)

    def _attend_backward(self, dcontext, dalpha, cache, source):
        """-> dQ (Ty, B, Hs), dkeys (Tx, B, K), dH through the values (Tx, B, Hh).

        Adds the grads of the query-side parameters."""
        Q, score_cache, alpha = cache
        H = source.H
        # c = sum_j alpha_j h_j: both factors receive a gradient
        # dalpha_j = dc . h_j: (B,Ty,Hh) @ (B,Hh,Tx) -> (Ty, B, Tx)
        dalpha_all = _bt(_bt(dcontext) @ _bt(H).swapaxes(1, 2))
        if dalpha is not None:
            dalpha_all += dalpha
        # dh_j = sum_t alpha_tj dc_t: (B,Tx,Ty) @ (B,Ty,Hh) -> (Tx, B, Hh)
        dH = _bt(_bt(alpha).swapaxes(1, 2) @ _bt(dcontext))
        # backprop through the softmax: de_j = alpha_j (dalpha_j - sum_i alpha_i dalpha_i);
        # alpha_j = 0 at padded positions, so de_j = 0 there
        de = alpha * (dalpha_all - (alpha * dalpha_all).sum(axis=2, keepdims=True))  # (Ty, B, Tx)
        dQ, dkeys = self._scores_backward(de, Q, source.keys, score_cache)
        return dQ, dkeys, dH

    # ------------------------------------------------------------ inference

    def precompute(self, H, lengths=None):
        """The keys of a batch of sources, for inference; nothing is cached in the layer.

        The keys are the part of every score that does not depend on the decoder state,
        computed once per source.

        Parameters
        ----------
        H : numpy.ndarray
            ``(Tx, B, Hh)``, the encoder states.
        lengths : array_like of int, optional
            ``(B,)``, each in ``[1, Tx]``: positions ``j >= lengths[b]`` get weight 0;
            None: all ``Tx`` positions are valid.

        Returns
        -------
        AttentionSource
            ``(H, keys, lengths)``.
        """
        H = self._check_H(H)
        Tx, B, _ = H.shape
        lengths = V.check_lengths(lengths, Tx, B)
        if lengths is None:
            lengths = np.full(B, Tx, np.int64)
        return AttentionSource(H, self._keys_forward(H), lengths)

    def attend(self, s, source):
        """Attend from decoder states to a precomputed source; no cache, no gradients.

        Parameters
        ----------
        s : numpy.ndarray
            ``(B, Hs)``, the decoder state.
        source : AttentionSource
            From ``precompute``.

        Returns
        -------
        context : numpy.ndarray
            ``(B, Hh)``.
        alpha : numpy.ndarray
            ``(B, Tx)``, the attention weights.
        """
        source = self._check_source(source)
        s = self._check_query(s, source.H.shape[1], "s")
        context, alpha, _ = self._attend_forward(s[None], source)
        return context[0], alpha[0]

    # ------------------------------------------------------------ the step form

    def set_source(self, H, lengths=None):
        """Start a step-by-step pass over a batch of sources.

        Computes the keys once, forgets the steps of any earlier pass and zeroes the
        accumulated ``dH``.

        Parameters
        ----------
        H : numpy.ndarray
            ``(Tx, B, Hh)``, the encoder states.
        lengths : array_like of int, optional
            ``(B,)``, each in ``[1, Tx]``: positions ``j >= lengths[b]`` get weight 0;
            None: all ``Tx`` positions are valid.

        Returns
        -------
        AttentionSource
        """
        self._source = self.precompute(H, lengths)
        self._steps = []
        self._dkeys = np.zeros(self._source.keys.shape, self.dtype)   # (Tx, B, K)
        self._dH = np.zeros(self._source.H.shape, self.dtype)         # (Tx, B, Hh)
        return self._source

    @property
    def pending_steps(self):
        """The number of ``forward_step`` calls that ``backward_step`` has not yet taken back.

        Returns
        -------
        int
        """
        return len(self._steps)

    def forward_step(self, s):
        """Attend from the decoder state at the next step; caches what ``backward_step`` needs.

        Parameters
        ----------
        s : numpy.ndarray
            ``(B, Hs)``.

        Returns
        -------
        context : numpy.ndarray
            ``(B, Hh)``.
        alpha : numpy.ndarray
            ``(B, Tx)``.
        """
        if self._source is None:
            raise ValueError("forward_step() called before set_source(): call "
                             "set_source(H, lengths) first")
        s = self._check_query(s, self._source.H.shape[1], "s")
        context, alpha, cache = self._attend_forward(s[None], self._source)
        self._steps.append(cache)
        return context[0], alpha[0]

    def backward_step(self, dcontext, dalpha=None):
        """Backward of the most recent ``forward_step`` not yet backpropagated.

        Adds the query-side grads and accumulates the gradients of the keys and of ``H``
        for ``backward_source``.

        Parameters
        ----------
        dcontext : numpy.ndarray
            ``(B, Hh)``, the gradient with respect to that step's context.
        dalpha : numpy.ndarray, optional
            ``(B, Tx)``, the gradient with respect to its weights.

        Returns
        -------
        numpy.ndarray
            ``ds``, ``(B, Hs)``.
        """
        if not self._steps:
            raise ValueError("backward_step() called with no forward_step() left to take "
                             "back: one backward_step per forward_step, last step first")
        Tx, B, _ = self._source.H.shape
        dcontext = V.check_array(dcontext, "dcontext", (B, self.key_size), self.dtype)
        if dalpha is not None:
            dalpha = V.check_array(dalpha, "dalpha", (B, Tx), self.dtype)[None]
        cache = self._steps.pop()
        dQ, dkeys, dH = self._attend_backward(dcontext[None], dalpha, cache, self._source)
        self._dkeys += dkeys                 # the keys serve every step: their gradients add up
        self._dH += dH
        return dQ[0]

    def backward_source(self):
        """Close a step-by-step backward pass.

        Backpropagates the accumulated key gradient through the key projection (adding
        its parameter grads). Every ``forward_step`` must have been taken back. The
        accumulators start again from zero: another pass of ``forward_step`` /
        ``backward_step`` / ``backward_source`` on the same source needs no
        ``set_source``.

        Returns
        -------
        numpy.ndarray
            ``dH``, ``(Tx, B, Hh)``, summed over all steps.
        """
        if self._source is None:
            raise ValueError("backward_source() called before set_source(): run the "
                             "step-by-step forward pass first")
        if self._steps:
            raise ValueError(f"backward_source(): {len(self._steps)} forward_step() calls not "
                             "yet taken back by backward_step()")
        dH = self._dH + self._keys_backward(self._dkeys, self._source.H)  # (Tx, B, Hh)
        self._dkeys = np.zeros_like(self._dkeys)      # ready for another pass on this source
        self._dH = np.zeros_like(self._dH)
        return dH

    # ------------------------------------------------------------ the sequence form

    def forward(self, S, H, lengths=None):
        """Attend from every decoder state of a sequence at once; caches for ``backward``.

        Gives the same numbers as ``Ty`` calls of ``forward_step``.

        Parameters
        ----------
        S : numpy.ndarray
            ``(Ty, B, Hs)``, the decoder states.
        H : numpy.ndarray
            ``(Tx, B, Hh)``, the encoder states.
        lengths : array_like of int, optional
            ``(B,)``, each in ``[1, Tx]``: positions ``j >= lengths[b]`` get weight 0;
            None: all ``Tx`` positions are valid.

        Returns
        -------
        context : numpy.ndarray
            ``(Ty, B, Hh)``.
        alpha : numpy.ndarray
            ``(Ty, B, Tx)``.
        """
        source = self.precompute(H, lengths)
        S = V.check_array(S, "S", ("Ty", source.H.shape[1], self.query_size), self.dtype)
        context, alpha, cache = self._attend_forward(S, source)
        self._seq = (source, cache)
        return context, alpha

    def backward(self, dcontext, dalpha=None):
        """Backward of ``forward``; adds every parameter grad.

        Parameters
        ----------
        dcontext : numpy.ndarray
            ``(Ty, B, Hh)``.
        dalpha : numpy.ndarray, optional
            ``(Ty, B, Tx)``.

        Returns
        -------
        dS : numpy.ndarray
            ``(Ty, B, Hs)``.
        dH : numpy.ndarray
            ``(Tx, B, Hh)``.
        """
        if self._seq is None:
            raise ValueError("backward() called before forward(): run forward() first")
        source, cache = self._seq
        Ty = cache[0].shape[0]
        Tx, B, _ = source.H.shape
        dcontext = V.check_array(dcontext, "dcontext", (Ty, B, self.key_size), self.dtype)
        if dalpha is not None:
            dalpha = V.check_array(dalpha, "dalpha", (Ty, B, Tx), self.dtype)
        dS, dkeys, dH = self._attend_backward(dcontext, dalpha, cache, source)
        dH = dH + self._keys_backward(dkeys, source.H)                 # (Tx, B, Hh) values + keys
        return np.ascontiguousarray(dS), dH


class BahdanauAttention(_Attention):
    """Additive attention: ``score(s, h_j) = v · tanh(W_s s + W_h h_j + b)`` (Bahdanau et al. 2015).

    Keys: ``W_h h_j + b`` (Tx, B, A). The backward pass needs ``z = tanh(W_s s + k_j)``
    at every ``(t, j)``: the forward caches it, ``Ty * B * Tx * A`` values for a whole
    sequence (``B * Tx * A`` per step).

    Parameters
    ----------
    query_size : int
        ``Hs``, the width of the decoder state ``s``.
    key_size : int
        ``Hh``, the width of the encoder states ``h_j`` (2H for a bidirectional
        encoder).
    attention_size : int, optional
        ``A``; default ``query_size``.
    dtype : numpy.float32 or numpy.float64, default numpy.float32
    seed : int, optional
        Seed of the initial weights, uniform in ``±1/√fan_in``.

    Attributes
    ----------
    params : dict of str to numpy.ndarray
        ``W_s (A, Hs)``, ``W_h (A, Hh)``, ``b (A,)``, ``v (A,)``.
    grads : dict of str to numpy.ndarray
        Their gradients; the backward passes add into them.
    """

    kind = "bahdanau"

    def __init__(self, query_size, key_size, attention_size=None, *, dtype=np.float32,
                 seed=None):
        if attention_size is None:
            attention_size = V.check_int(query_size, "query_size")
        self.attention_size = V.check_int(attention_size, "attention_size")
        super().__init__(query_size, key_size, dtype=dtype, seed=seed)

    def param_shapes(self):
        A, Hs, Hh = self.attention_size, self.query_size, self.key_size
        return {"W_s": (A, Hs), "W_h": (A, Hh), "b": (A,), "v": (A,)}

    def _init_params(self, rng):
        A, Hs, Hh = self.attention_size, self.query_size, self.key_size
        bound = {"W_s": Hs, "W_h": Hh, "b": Hh, "v": A}
        return {k: rng.uniform(-1 / np.sqrt(bound[k]), 1 / np.sqrt(bound[k]), shape)
                .astype(self.dtype) for k, shape in self.param_shapes().items()}

    @property
    def key_width(self):
        return self.attention_size

    def config(self):
        return {**super().config(), "attention_size": self.attention_size}

    def _keys_forward(self, H):
        """H (Tx, B, Hh) -> keys W_h h_j + b (Tx, B, A)."""
        return _linear(H, self._param("W_h")) + self._param("b")

    def _keys_backward(self, dkeys, H):
        """dkeys (Tx, B, A) -> dH (Tx, B, Hh); adds grads W_h, b."""
        self.grads["W_h"] += _sum_outer(dkeys, H)                         # dW_h = sum dk h^T
        self.grads["b"] += dkeys.sum(axis=(0, 1))                         # db = sum dk
        return _linear(dkeys, self._param("W_h").T)                       # dh = W_h^T dk

    def _scores_forward(self, Q, keys):
        """Q (Ty, B, Hs), keys (Tx, B, A) -> e (Ty, B, Tx), cache (z (Ty, B, Tx, A))."""
        q = _linear(Q, self._param("W_s"))                             # (Ty, B, A)  W_s s
        z = q[:, :, None, :] + _bt(keys)[None]                         # (Ty, B, Tx, A)  W_s s + k_j
        np.tanh(z, out=z)                                              # the largest array: in place
        A = self.attention_size
        e = (z.reshape(-1, A) @ self._param("v")).reshape(z.shape[:3])  # (Ty, B, Tx) v . z
        return e, z

    def _scores_backward(self, de, Q, keys, z):
        """de (Ty, B, Tx) -> dQ (Ty, B, Hs), dkeys (Tx, B, A); adds grads W_s, v."""
        A = self.attention_size
        v = self._param("v")
        self.grads["v"] += de.reshape(-1) @ z.reshape(-1, A)           # dv = sum_j de_j z_j
        # dz_j = de_j v (e_j = v . z_j), then dpre_j = dz_j * (1 - z_j^2) (backprop through
        # tanh), in one (Ty, B, Tx, A) buffer: these are the largest arrays of the layer
        dpre = z * z
        np.subtract(1, dpre, out=dpre)                                 # 1 - z^2
        dpre *= de[..., None]
        dpre *= v                                                      # (de_j v) * (1 - z^2)
        dq = dpre.sum(axis=2)                                          # (Ty, B, A)  q meets every j
        dkeys = _bt(dpre.sum(axis=0))                                  # (Tx, B, A)  k_j meets all t
        self.grads["W_s"] += _sum_outer(dq, Q)                         # dW_s = sum dq s^T
        dQ = _linear(dq, self._param("W_s").T)                         # ds = W_s^T dq
        return dQ, np.ascontiguousarray(dkeys)


class LuongAttention(_Attention):
    """Multiplicative ("general") attention: ``score(s, h_j) = s · (W h_j)`` (Luong et al. 2015).

    Keys: ``W h_j`` (Tx, B, Hs).

    Parameters
    ----------
    query_size : int
        ``Hs``, the width of the decoder state ``s``.
    key_size : int
        ``Hh``, the width of the encoder states ``h_j``.
    dtype : numpy.float32 or numpy.float64, default numpy.float32
    seed : int, optional
        Seed of the initial weights, uniform in ``±1/√Hh``.

    Attributes
    ----------
    params : dict of str to numpy.ndarray
        ``W (Hs, Hh)``.
    grads : dict of str to numpy.ndarray
        Its gradient.
    """

    kind = "luong"

    def param_shapes(self):
        return {"W": (self.query_size, self.key_size)}

    def _init_params(self, rng):
        k = 1 / np.sqrt(self.key_size)
        return {"W": rng.uniform(-k, k, (self.query_size, self.key_size)).astype(self.dtype)}

    @property
    def key_width(self):
        return self.query_size

    def _keys_forward(self, H):
        """H (Tx, B, Hh) -> keys W h_j (Tx, B, Hs)."""
        return _linear(H, self._param("W"))

    def _keys_backward(self, dkeys, H):
        """dkeys (Tx, B, Hs) -> dH (Tx, B, Hh); adds grad W."""
        self.grads["W"] += _sum_outer(dkeys, H)                           # dW = sum dk h^T
        return _linear(dkeys, self._param("W").T)                         # dh = W^T dk

    def _scores_forward(self, Q, keys):
        return _dot_scores(Q, keys), None

    def _scores_backward(self, de, Q, keys, cache):
        return _dot_scores_backward(de, Q, keys)


class DotAttention(_Attention):
    """Dot-product attention: ``score(s, h_j) = s · h_j`` (Luong et al. 2015).

    No parameters. Keys: ``h_j`` itself.

    Parameters
    ----------
    query_size : int
        ``Hs``, the width of the decoder state ``s``.
    key_size : int
        ``Hh``; must equal ``query_size``.
    dtype : numpy.float32 or numpy.float64, default numpy.float32
    seed : int, optional
        Unused (no parameters).

    Raises
    ------
    ValueError
        ``query_size != key_size``.
    """

    kind = "dot"

    def __init__(self, query_size, key_size, *, dtype=np.float32, seed=None):
        q = V.check_int(query_size, "query_size")
        k = V.check_int(key_size, "key_size")
        if q != k:
            raise ValueError(f"dot attention scores s . h_j: expected query_size == key_size, "
                             f"got {q} and {k} (use 'luong' or 'bahdanau' for different widths)")
        super().__init__(query_size, key_size, dtype=dtype, seed=seed)

    def _keys_forward(self, H):
        return H                                                          # k_j = h_j

    def _keys_backward(self, dkeys, H):
        return dkeys                                                      # dh_j = dk_j

    def _scores_forward(self, Q, keys):
        return _dot_scores(Q, keys), None

    def _scores_backward(self, de, Q, keys, cache):
        return _dot_scores_backward(de, Q, keys)


def _dot_scores(Q, keys):
    """Q (Ty, B, K), keys (Tx, B, K) -> e_tj = q_t . k_j (Ty, B, Tx)."""
    return _bt(_bt(Q) @ _bt(keys).swapaxes(1, 2))                      # (B,Ty,K)@(B,K,Tx)


def _dot_scores_backward(de, Q, keys):
    """de (Ty, B, Tx) -> dQ (Ty, B, K), dkeys (Tx, B, K)."""
    dQ = _bt(_bt(de) @ _bt(keys))                                      # dq_t = sum_j de_tj k_j
    dkeys = _bt(_bt(de).swapaxes(1, 2) @ _bt(Q))                       # dk_j = sum_t de_tj q_t
    return np.ascontiguousarray(dQ), np.ascontiguousarray(dkeys)


_KINDS = {"bahdanau": BahdanauAttention, "luong": LuongAttention, "dot": DotAttention}


def make_attention(kind, query_size, key_size, *, attention_size=None, dtype=np.float32,
                   seed=None):
    """The attention layer of ``kind``.

    Parameters
    ----------
    kind : {"bahdanau", "luong", "dot"}
    query_size : int
        ``Hs``, the width of the decoder state ``s``.
    key_size : int
        ``Hh``, the width of the encoder states ``h_j`` (2H for a bidirectional
        encoder).
    attention_size : int, optional
        ``A``, for ``"bahdanau"`` only (default ``Hs``).
    dtype : numpy.float32 or numpy.float64, default numpy.float32
    seed : int, optional

    Returns
    -------
    BahdanauAttention, LuongAttention or DotAttention

    Raises
    ------
    ValueError
        An unknown kind, ``attention_size`` for another kind, or ``"dot"`` with
        ``Hs != Hh``.
    """
    V.check_choice(kind, "kind", ATTENTION_KINDS)
    if kind == "bahdanau":
        return BahdanauAttention(query_size, key_size, attention_size, dtype=dtype, seed=seed)
    if attention_size is not None:
        raise ValueError(f"attention_size: applies to kind='bahdanau' only, got "
                         f"attention_size={attention_size!r} with kind={kind!r}")
    return _KINDS[kind](query_size, key_size, dtype=dtype, seed=seed)
