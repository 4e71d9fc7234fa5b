"""``seqcore.quantize``: an inference-only copy of a layer or model with int8 weights.

Every recurrent layer (each cell, layer and direction), Dense layer and embedding of
the copy holds its weight matrices as int8 with one scale per row (the math is in
``seqcore.reference.quant``; the layers' side in ``seqcore.nn.quantized``). The copy
predicts, samples, evaluates and translates as the float model does, with the
rounded weights, and keeps no float copy of them (nor gradient buffers): its weights
take a quarter of float32's bytes in memory too. ``backward`` and ``fit`` raise
``TypeError``. ``save`` writes the
int8 values and the scales, a quarter of the float32 weights' bytes, and
``seqcore.load`` restores them exactly (docs/spec.md §Model files).
"""

import copy

from ..nn.quantized import QUANTIZABLE, quantize_layer, weight_names

__all__ = ["quantize"]


def quantize(obj):
    """An inference-only copy of ``obj`` with int8 weights.

    Symmetric int8, one scale per output row (a gate unit, a class, a token), the
    biases, peepholes and attention weights kept in the model's dtype.

    Parameters
    ----------
    obj : RNN, GRU, LSTM, Dense, Embedding or a model
        Left as it is.

    Returns
    -------
    The same kind of object, with ``quantized`` True and ``qweights`` holding each
    layer's ``{name: (q, scale)}`` in place of those ``params``. A model copy is in
    evaluation mode and carries no optimizer or training run.

    Raises
    ------
    TypeError
        ``obj`` is not a layer or model seqcore can quantize.

    Examples
    --------
    >>> import numpy as np, seqcore
    >>> lstm = seqcore.LSTM(8, 32, seed=0)
    >>> q = seqcore.quantize(lstm)
    >>> q.qweights["W_l0"][0].dtype, q.qweights["W_l0"][1].shape
    (dtype('int8'), (128,))
    >>> x = np.random.default_rng(0).standard_normal((5, 2, 8)).astype(np.float32)
    >>> bool(np.abs(q.forward(x)[0] - lstm.forward(x)[0]).max() < 0.01)
    True
    """
    if isinstance(getattr(obj, "layers", None), dict):    # a model (models.base.Model,
        with obj.lock:                                    # which imports this module)
            out = copy.deepcopy(obj, _not_copied(obj.layers.values()))
        memo = {}
        for layer in out.layers.values():
            if isinstance(layer, QUANTIZABLE) and not layer.quantized:
                quantize_layer(layer, memo)
        out.quantized = True
        out.optimizer = None
        out.run = None
        out.eval()
        return out
    if isinstance(obj, QUANTIZABLE):
        if obj.quantized:
            return copy.deepcopy(obj)
        lock = getattr(obj, "lock", None)
        if lock is not None:
            with lock:
                out = copy.deepcopy(obj, _not_copied([obj]))
        else:
            out = copy.deepcopy(obj, _not_copied([obj]))
        return quantize_layer(out, {})
    raise TypeError(f"obj: expected a recurrent layer, Dense, Embedding or a seqcore "
                    f"model to quantize, got {type(obj).__name__}")


def _not_copied(layers):
    """A deepcopy memo under which the copy shares (reads, never writes) the float
    weights it is about to quantize and the gradients it drops: the copy then costs
    their int8 bytes only, not another float model."""
    memo = {}
    for layer in layers:
        if isinstance(layer, QUANTIZABLE) and not layer.quantized:
            for name in weight_names(layer):
                memo[id(layer.params[name])] = layer.params[name]
            for g in layer.grads.values():
                memo[id(g)] = g
    return memo
