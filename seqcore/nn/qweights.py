"""A quantized layer's int8 weights as its forward reads them (``seqcore.quantize``;
the layers' side is ``seqcore.nn.quantized``)."""

import numpy as np

from .. import _validation as V

__all__ = ["checked_qweight"]


def checked_qweight(layer, name, shape):
    """``(q, scale)`` of the layer's int8 weight ``name``, checked against ``shape``;
    None if the layer has no int8 weight of that name."""
    pair = (getattr(layer, "qweights", None) or {}).get(name)
    if pair is None:
        return None
    if not isinstance(pair, tuple) or len(pair) != 2:
        raise TypeError(f"qweights[{name!r}]: expected a pair (q, scale) of arrays")
    q = V.check_array(pair[0], f"qweights[{name!r}][0]", shape, np.int8, finite=False)
    scale = V.check_array(pair[1], f"qweights[{name!r}][1]", shape[:1], layer.dtype)
    return q, scale

