"""int8 weights: the math of ``seqcore.quantize`` in plain NumPy.

A weight matrix ``W (N, K)`` (one row per output: a gate unit of a recurrent layer, a
class of a Dense layer, a token of an embedding) is stored as int8 with one scale per
row, symmetric (no zero point):

    s_n = max_k |W[n, k]| / 127            (0 for a row of zeros)
    q[n, k] = round(W[n, k] / s_n)         in [-127, 127] (-128 is never used, so
                                           that -q is an int8 too)
    W[n, k] ~ s_n * q[n, k]                error at most s_n / 2 per entry

A product with the weights is then ``y_n = s_n * sum_k q[n, k] x_k + b_n``: the scale
comes out of the sum, so a kernel multiplies int8 weights by the activations and
scales each output once (``qlinear``). The biases, the peepholes and the attention's
weights stay in the model's dtype.

A product of one row (a token's step of one sequence, a Dense layer's forward of a
few rows) quantizes its activations too, each vector with its own scale at each call
(``quantize_vector``), and sums int8 times int8 in int32, exactly:

    s_a = max_k |a_k| / 127,   aq_k = rint(a_k * (127 / max_k |a_k|))   in [-127, 127]
    y_n = s_n * (s_a * sum_k q[n, k] aq_k) + b_n                      (``qlinear_int8``)

and a step's ``W [a<t-1>, x<t>]`` quantizes ``a<t-1>`` and ``x<t>`` apart, so each keeps
its own range (``Int8Rows``, the weights as the reference cells see them then).

Legend: N outputs (rows), K inputs (columns).
"""

import numpy as np

__all__ = ["quantize_rows", "dequantize_rows", "qlinear", "quantize_vector",
           "qlinear_int8", "Int8Rows", "QMAX"]

QMAX = 127


def quantize_rows(W):
    """``(q, scale)`` of ``W (N, K)``: int8 ``q (N, K)`` and ``scale (N,)`` in W's dtype.

    Rounding is to nearest, ties to even (``numpy.rint``).
    """
    W = np.asarray(W)
    amax = np.max(np.abs(W), axis=1)
    scale = (amax / QMAX).astype(W.dtype)
    safe = np.where(scale > 0, scale, 1).astype(W.dtype)
    q = np.clip(np.rint(W / safe[:, None]), -QMAX, QMAX).astype(np.int8)
    return q, scale


def dequantize_rows(q, scale):
    """``s_n * q[n, k]``: the weights the int8 ones stand for, in scale's dtype."""
    return q.astype(scale.dtype) * scale[:, None]


def qlinear(x, q, scale, b=None):
    """``y = x @ (s * q).T + b`` for ``x (..., K)``, computed as a kernel does: the
    products with the int8 weights first, then each output's scale.

    Returns ``(..., N)`` in x's dtype.
    """
    y = (x @ q.T.astype(x.dtype)) * scale.astype(x.dtype)
    return y if b is None else y + b


def quantize_vector(a):
    """``(aq, s)``: each row of ``a (..., K)`` in int8 with its own scale, as the
    compiled products of one row quantize their activations (csrc/_q8.h).

    ``s (..., 1)`` is ``max |a| / 127`` in a's dtype, and ``aq = rint(a * (127 /
    max |a|))`` (a's dtype, then int32 for the exact sums); a row of zeros is 0 with
    scale 0.
    """
    a = np.asarray(a)
    amax = np.max(np.abs(a), axis=-1, keepdims=True, initial=0)
    inv = np.where(amax > 0, a.dtype.type(QMAX) / np.where(amax > 0, amax, 1), 0)
    aq = np.clip(np.rint(a * inv.astype(a.dtype)), -QMAX, QMAX).astype(np.int32)
    return aq, (amax / a.dtype.type(QMAX)).astype(a.dtype)


def qlinear_int8(parts, q, scale, b=None):
    """``[parts...] @ (s * q).T + b`` as one row's product computes it: each part
    ``(..., K_i)`` quantized on its own (``quantize_vector``), the int8 x int8 sums in
    int64 (exact), then the parts' scales and each output's.

    ``q (N, sum K_i)``; returns ``(..., N)`` in the parts' dtype.
    """
    dt = parts[0].dtype
    y, col = 0, 0
    for a in parts:
        aq, s = quantize_vector(a)
        k = a.shape[-1]
        y = y + (aq.astype(np.int64) @ q[:, col:col + k].T.astype(np.int64)).astype(dt) * s
        col += k
    y = y * scale.astype(dt)
    return y if b is None else y + b


class Int8Rows:
    """Rows of int8 weights with their scales, standing for ``W = s * q`` where the
    reference cells multiply by it: ``rows[i:j, c0:c1]`` selects as on W, and
    ``rows.times(a, x)`` is ``[a, x] @ W.T`` by ``qlinear_int8`` (each part quantized
    on its own)."""

    def __init__(self, q, scale):
        self.q, self.scale = q, scale

    def __getitem__(self, index):
        rows, cols = index if isinstance(index, tuple) else (index, slice(None))
        return Int8Rows(self.q[rows, cols], self.scale[rows])

    def times(self, *parts):
        return qlinear_int8(parts, self.q, self.scale)
