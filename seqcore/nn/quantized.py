"""int8 weights in a layer: ``quantize_layer`` and the inference-only guard.

A quantized layer keeps, for each of its weight matrices, the int8 values and the
per-row scales of ``seqcore.reference.quant`` in ``qweights`` (``{name: (q, scale)}``),
and in ``params[name]`` the weights they stand for, ``scale * q``, in the layer's
dtype: ``forward`` computes with exactly the weights the int8 file holds. Its
``backward`` raises ``TypeError``: the rounding has no gradient to train through, and
the layer keeps no gradient buffers (``grads`` is empty).

Which matrices: a recurrent layer's ``W_l{l}`` (every layer and direction; one row
per gate unit), a Dense layer's ``W`` (one row per output), an embedding's ``W`` (one
row per token). Biases and peepholes stay as they are.
"""

from ..reference.quant import dequantize_rows, quantize_rows
from .dense import Dense
from .embedding import Embedding
from .recurrent import GRU, LSTM, RNN

__all__ = ["QUANTIZABLE", "weight_names", "quantize_layer", "set_qweight"]

QUANTIZABLE = (RNN, GRU, LSTM, Dense, Embedding)


def weight_names(layer):
    """The names of the layer's parameters that ``quantize_layer`` stores as int8."""
    if isinstance(layer, (RNN, GRU, LSTM)):
        return [k for k in layer.params if k.startswith("W_l")]
    if isinstance(layer, (Dense, Embedding)):
        return ["W"]
    return []


def quantize_layer(layer, memo):
    """Quantize ``layer``'s weights in place (see the module notes).

    memo: ``{id(array): (q, scale, weights)}`` shared by the layers of one model, so
    that an array two layers share (a language model's tied embedding and output)
    stays one array, quantized once.
    """
    layer.qweights = {}
    for name in weight_names(layer):
        W = layer.params[name]
        if id(W) not in memo:
            q, scale = quantize_rows(W)
            memo[id(W)] = (q, scale, dequantize_rows(q, scale).astype(W.dtype))
        q, scale, weights = memo[id(W)]
        layer.params[name] = weights
        layer.qweights[name] = (q, scale)
    layer.grads = {}             # inference only: no gradient buffers (zero_grad makes them)
    layer.quantized = True
    return layer


def set_qweight(layers, layer, name, q, scale):
    """Give ``layer``'s int8 weight ``name`` the values ``(q, scale)`` (a file's), in
    every layer of ``layers`` that shares its array."""
    W = layer.params[name]
    if q.shape != W.shape or scale.shape != W.shape[:1] or scale.dtype != W.dtype:
        raise ValueError(f"int8 weight {name}: shape {q.shape} with scales "
                         f"{scale.shape} {scale.dtype}, expected {W.shape} with "
                         f"{W.shape[:1]} {W.dtype}")
    W[...] = dequantize_rows(q, scale)
    for other in layers:
        for key in getattr(other, "qweights", None) or {}:
            if other.params[key] is W:
                other.qweights[key] = (q, scale)
