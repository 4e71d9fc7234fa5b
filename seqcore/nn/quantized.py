"""int8 weights in a layer: ``quantize_layer`` and the inference-only guard.

A quantized layer keeps, for each of its weight matrices, only the int8 values and
the per-row scales of ``seqcore.reference.quant``, in ``qweights`` (``{name: (q,
scale)}``): the name leaves ``params``, which holds the rest (biases, peepholes), and
the layer keeps no gradient buffers (``grads`` is empty). Its weights in memory take
a quarter of float32's bytes. A forward that computes in floating point (a batch, a
sequence, 4 rows or more of a Dense layer) takes the weights the int8 values stand
for, ``scale * q``, for the time of the call (``seqcore.nn.qweights``); the products of one
row read the int8 values themselves. ``backward`` raises ``TypeError``: the rounding
has no gradient to train through.

Which matrices: a recurrent layer's ``W_l{l}`` (every layer and direction; one row
per gate unit), a Dense layer's ``W`` (one row per output), an embedding's ``W`` (one
row per token). Biases and peepholes stay as they are.
"""

from ..reference.quant import quantize_rows
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

    memo: ``{id(array): (q, scale)}`` shared by the layers of one model, so that an
    array two layers share (a language model's tied embedding and output) stays one
    pair, quantized once.
    """
    layer.qweights = {}
    for name in weight_names(layer):
        W = layer.params.pop(name)
        if id(W) not in memo:
            memo[id(W)] = quantize_rows(W)
        layer.qweights[name] = memo[id(W)]
    layer.grads = {}             # inference only: no gradient buffers (zero_grad makes them)
    layer.quantized = True
    return layer


def set_qweight(layers, layer, name, q, scale):
    """Give ``layer``'s int8 weight ``name`` the values ``(q, scale)`` (a file's), in
    every layer of ``layers`` that shares it."""
    old = layer.qweights[name]
    if q.shape != old[0].shape or scale.shape != old[1].shape or scale.dtype != old[1].dtype:
        raise ValueError(f"int8 weight {name}: shape {q.shape} with scales "
                         f"{scale.shape} {scale.dtype}, expected {old[0].shape} with "
                         f"{old[1].shape} {old[1].dtype}")
    for other in layers:
        qweights = getattr(other, "qweights", None) or {}
        for key in qweights:
            if qweights[key] is old:
                qweights[key] = (q, scale)
