"""Exact weight conversion between seqcore layers and torch.nn.RNN / GRU / LSTM.

PyTorch keeps two matrices and two biases per layer and direction
(``weight_ih (G*H, D_in)``, ``weight_hh (G*H, H)``, ``bias_ih``, ``bias_hh``);
seqcore keeps the notes' concatenation ``W = [W_aa | W_ax] = [weight_hh | weight_ih]``
and one bias. Gate orders already agree (RNN; GRU r, z, n; LSTM i, f, g, o), except
that PyTorch's GRU gate z multiplies the *old* state where the notes' Γu multiplies
the candidate: Γu = 1 - z = σ(-s), so the u block of W and b is negated. PyTorch's
GRU is the reset-after form, with ``bias_hh``'s n block as seqcore's ``b_cc``.

PyTorch is optional: it is imported only when these functions run.
"""

import numpy as np

from . import _validation as V
from .nn import GRU, LSTM, RNN

__all__ = ["from_torch", "to_torch"]


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise ImportError("seqcore.interop needs PyTorch: pip install 'seqcore[torch]'") from exc
    return torch


def _numpy(t):
    return t.detach().cpu().numpy().copy()


def from_torch(module, backend="cython"):
    """A seqcore layer holding exactly the weights of a ``torch.nn.RNN``, ``GRU`` or ``LSTM``.

    Any ``num_layers``, ``bidirectional`` and ``batch_first``; the layer has the
    module's dtype (float32 or float64). A GRU becomes ``seqcore.GRU(...,
    reset_after=True)``, its ``z`` gate turned into ``Γu = 1 - z``; an LSTM's two
    biases are summed.

    Parameters
    ----------
    module : torch.nn.RNN, torch.nn.GRU or torch.nn.LSTM
        The PyTorch layer.
    backend : {"cython", "numpy"}, default "cython"
        The new layer's backend.

    Returns
    -------
    seqcore.RNN, seqcore.GRU or seqcore.LSTM

    Raises
    ------
    ImportError
        PyTorch is not installed (``pip install 'seqcore[torch]'``).
    TypeError
        Not one of those modules, or weights that are not float32 or float64.
    ValueError
        An LSTM with ``proj_size > 0``.
    """
    torch = _torch()

    nn = torch.nn
    if isinstance(module, nn.LSTM):
        cls, kwargs = LSTM, {}
        if module.proj_size:
            raise ValueError("module: LSTM with proj_size > 0 has no seqcore equivalent")
    elif isinstance(module, nn.GRU):
        cls, kwargs = GRU, {"reset_after": True}
    elif isinstance(module, nn.RNN):
        cls, kwargs = RNN, {"nonlinearity": module.nonlinearity}
    else:
        raise TypeError(f"module: expected torch.nn.RNN, GRU or LSTM, got {type(module).__name__}")
    dtype = module.weight_ih_l0.dtype
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"module: expected float32 or float64 weights, got {dtype}")
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    layer = cls(module.input_size, module.hidden_size, num_layers=module.num_layers,
                bidirectional=module.bidirectional, batch_first=module.batch_first,
                dtype=np_dtype, backend=backend, **kwargs)
    H = module.hidden_size
    for l in range(module.num_layers):
        for sfx in layer._suffixes():
            w_ih = _numpy(getattr(module, f"weight_ih_l{l}{sfx}"))
            w_hh = _numpy(getattr(module, f"weight_hh_l{l}{sfx}"))
            if module.bias:
                b_ih = _numpy(getattr(module, f"bias_ih_l{l}{sfx}"))
                b_hh = _numpy(getattr(module, f"bias_hh_l{l}{sfx}"))
            else:
                b_ih = np.zeros(w_ih.shape[0], np_dtype)
                b_hh = np.zeros(w_ih.shape[0], np_dtype)
            W = np.concatenate([w_hh, w_ih], axis=1)
            if cls is GRU:
                b = b_ih.copy()
                b[:2 * H] += b_hh[:2 * H]
                W[H:2 * H] *= -1                     # z = 1 - gamma_u
                b[H:2 * H] *= -1
                layer.params[f"b_cc_l{l}{sfx}"] = np.ascontiguousarray(b_hh[2 * H:])
            else:
                b = b_ih + b_hh
            layer.params[f"W_l{l}{sfx}"] = np.ascontiguousarray(W, dtype=np_dtype)
            layer.params[f"b_l{l}{sfx}"] = np.ascontiguousarray(b, dtype=np_dtype)
    layer.zero_grad()
    return layer


def to_torch(layer):
    """A ``torch.nn.RNN``, ``GRU`` or ``LSTM`` holding exactly the weights of a seqcore layer.

    The inverse of ``from_torch``.

    Parameters
    ----------
    layer : seqcore.RNN, seqcore.GRU or seqcore.LSTM
        A GRU must have ``reset_after=True`` and an LSTM no peepholes: PyTorch has
        no other form.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ImportError
        PyTorch is not installed.
    TypeError
        Not a seqcore recurrent layer, or a quantized one (``seqcore.quantize``).
    ValueError
        A reset-before GRU or a peephole LSTM.
    """
    V.check_float_weights(layer, "to_torch")
    torch = _torch()

    common = dict(num_layers=layer.num_layers, bidirectional=layer.bidirectional,
                  batch_first=layer.batch_first)
    if isinstance(layer, LSTM):
        if layer.peephole:
            raise ValueError("layer: PyTorch's LSTM has no peephole connections")
        module = torch.nn.LSTM(layer.input_size, layer.hidden_size, **common)
    elif isinstance(layer, GRU):
        if not layer.reset_after:
            raise ValueError("layer: PyTorch's GRU is the reset_after=True form; "
                             "this GRU has reset_after=False")
        module = torch.nn.GRU(layer.input_size, layer.hidden_size, **common)
    elif isinstance(layer, RNN):
        module = torch.nn.RNN(layer.input_size, layer.hidden_size,
                              nonlinearity=layer.nonlinearity, **common)
    else:
        raise TypeError(f"layer: expected a seqcore RNN, GRU or LSTM, got {type(layer).__name__}")
    tdtype = torch.float32 if layer.dtype == np.float32 else torch.float64
    module = module.to(tdtype)
    H = layer.hidden_size
    with torch.no_grad():
        for l in range(layer.num_layers):
            for sfx in layer._suffixes():
                W = np.array(layer.params[f"W_l{l}{sfx}"], dtype=layer.dtype)
                b = np.array(layer.params[f"b_l{l}{sfx}"], dtype=layer.dtype)
                b_hh = np.zeros_like(b)
                if isinstance(layer, GRU):
                    W[H:2 * H] *= -1
                    b[H:2 * H] *= -1
                    b_hh[2 * H:] = layer.params[f"b_cc_l{l}{sfx}"]
                getattr(module, f"weight_hh_l{l}{sfx}").copy_(torch.from_numpy(W[:, :H].copy()))
                getattr(module, f"weight_ih_l{l}{sfx}").copy_(torch.from_numpy(W[:, H:].copy()))
                getattr(module, f"bias_ih_l{l}{sfx}").copy_(torch.from_numpy(b))
                getattr(module, f"bias_hh_l{l}{sfx}").copy_(torch.from_numpy(b_hh))
    return module
