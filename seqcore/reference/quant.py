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

Legend: N outputs (rows), K inputs (columns).
"""

import numpy as np

__all__ = ["quantize_rows", "dequantize_rows", "qlinear", "QMAX"]

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
