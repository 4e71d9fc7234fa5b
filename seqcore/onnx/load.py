"""ONNX import: one seqcore layer per RNN, GRU or LSTM node of a graph, weights converted.

Reads what seqcore writes (``seqcore.onnx.export``: the round trip is bitwise) and
what ``torch.onnx.export`` writes for ``nn.RNN``, ``nn.GRU`` and ``nn.LSTM``. A node's
weights must be constants of the graph (initializers or ``Constant`` nodes). Whatever
seqcore has no cell for is refused with a ``ValueError`` naming the node and the
attribute; so is a graph with no recurrent node, and a file that is not a readable
ONNX model.
"""

import os

import numpy as np

from ..nn import GRU, LSTM, RNN
from . import cells

__all__ = ["layers"]

_CELLS = {"RNN": "rnn", "GRU": "gru", "LSTM": "lstm"}
_LAYERS = {"rnn": RNN, "gru": GRU, "lstm": LSTM}
# the activations of each operator that seqcore's cells compute (ONNX's defaults)
_ACTIVATIONS = {"GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
_DTYPES = {np.dtype(np.float32), np.dtype(np.float64)}


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("seqcore.onnx needs onnx: pip install 'seqcore[onnx]'") from exc
    return onnx


def _read(onnx, path):
    try:
        model = onnx.load(path)
    except FileNotFoundError:
        raise
    except Exception as exc:        # noqa: BLE001 - whatever the bytes are, one refusal
        raise ValueError(f"{path}: not a readable ONNX model ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else 'damaged'})") from None
    if not model.graph.node:
        raise ValueError(f"{path}: not a readable ONNX model (no graph)")
    return model


def _constants(onnx, graph):
    """{value name: numpy array} of the graph's initializers and Constant nodes."""
    out = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    out[node.output[0]] = onnx.numpy_helper.to_array(attr.t)
    return out


def _attributes(onnx, node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _layer(onnx, node, consts, where):
    op = node.op_type
    cell = _CELLS[op]
    attrs = _attributes(onnx, node)
    name = f"{where}: node {node.name or '(unnamed)'} ({op})"

    def refuse(attr, why):
        raise ValueError(f"{name}: attribute {attr} = {attrs.get(attr)!r}: {why}")

    if "clip" in attrs:
        refuse("clip", "seqcore's cells do not clip their pre-activations")
    if attrs.get("input_forget", 0):
        refuse("input_forget", "seqcore's LSTM has no coupled input and forget gates")
    for attr in ("activation_alpha", "activation_beta"):
        if attr in attrs:
            refuse(attr, "seqcore's activations take no parameters")
    direction = _text(attrs.get("direction", b"forward"))
    if direction not in ("forward", "bidirectional"):
        refuse("direction", "seqcore runs a reverse direction only beside a forward one "
                            "(bidirectional)")
    dirs = 2 if direction == "bidirectional" else 1
    layout = attrs.get("layout", 0)
    if layout not in (0, 1):
        refuse("layout", "expected 0 (time-major) or 1 (batch-major)")
    acts = [_text(a) for a in attrs.get("activations", [])]
    options = {}
    if op == "RNN":
        acts = acts or ["Tanh"] * dirs
        if len(set(acts)) != 1 or acts[0] not in ("Tanh", "Relu") or len(acts) != dirs:
            refuse("activations", "seqcore's RNN is tanh or relu, the same in both "
                                  "directions")
        options["nonlinearity"] = acts[0].lower()
    elif acts and acts != _ACTIVATIONS[op] * dirs:
        refuse("activations", f"seqcore's {op} computes {', '.join(_ACTIVATIONS[op])}")
    if op == "GRU":
        options["reset_after"] = bool(attrs.get("linear_before_reset", 0))

    def constant(index, what):
        if len(node.input) <= index or not node.input[index]:
            return None
        value = consts.get(node.input[index])
        if value is None:
            raise ValueError(f"{name}: input {what} ({node.input[index]}) is not a constant "
                             "of the graph; seqcore imports fixed weights only")
        return value

    W, R = constant(1, "W"), constant(2, "R")
    B = constant(3, "B")
    P = constant(7, "P") if op == "LSTM" else None
    if "hidden_size" not in attrs:
        refuse("hidden_size", "required")
    H, G = int(attrs["hidden_size"]), cells.GATES[cell]
    if W is None or R is None or W.ndim != 3 or W.shape[:2] != (dirs, G * H) \
            or R.shape != (dirs, G * H, H):
        raise ValueError(f"{name}: weights of shapes W {getattr(W, 'shape', None)}, R "
                         f"{getattr(R, 'shape', None)} do not fit hidden_size {H} and "
                         f"{dirs} direction(s)")
    dtype = np.dtype(W.dtype)
    if dtype not in _DTYPES:
        raise ValueError(f"{name}: weights of dtype {dtype}; seqcore runs float32 and "
                         "float64")
    B = np.zeros((dirs, 2 * G * H), dtype) if B is None else B
    if B.shape != (dirs, 2 * G * H) or (P is not None and P.shape != (dirs, 3 * H)):
        raise ValueError(f"{name}: biases of shape {B.shape}"
                         + (f" or peepholes of shape {P.shape}" if P is not None else "")
                         + f" do not fit hidden_size {H}")
    if op == "LSTM":
        options["peephole"] = P is not None
    layer = _LAYERS[cell](W.shape[2], H, bidirectional=dirs == 2, batch_first=layout == 1,
                          dtype=dtype, **options)
    for d, sfx in enumerate(("", "_reverse")[:dirs]):
        w, b, b_cc, p = cells.from_onnx(cell, W[d], R[d], B[d], H,
                                        P=None if P is None else P[d],
                                        reset_after=options.get("reset_after", False))
        layer.params[f"W_l0{sfx}"][...] = w
        layer.params[f"b_l0{sfx}"][...] = b
        if b_cc is not None:
            layer.params[f"b_cc_l0{sfx}"][...] = b_cc
        if p is not None:
            layer.params[f"p_l0{sfx}"][...] = p
    return layer


def layers(path):
    """One seqcore layer per RNN, GRU or LSTM node of the ONNX model at ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        An ONNX model: one that ``seqcore.onnx.export`` or ``torch.onnx.export``
        wrote, or any graph whose recurrent nodes have constant weights.

    Returns
    -------
    list of seqcore.RNN, seqcore.GRU or seqcore.LSTM
        In graph order, each of one layer (a node is one layer, of one or two
        directions), with the node's weights converted exactly (docs/spec.md, "ONNX").

    Raises
    ------
    ValueError
        A file that is not a readable ONNX model, a graph with no recurrent node, or a
        node seqcore has no cell for (``clip``, ``input_forget``, other activations, a
        reverse-only direction, weights that are not constants); the message names the
        node and the attribute.
    ImportError
        onnx is not installed.

    Examples
    --------
    >>> import tempfile, os, seqcore
    >>> path = os.path.join(tempfile.mkdtemp(), "gru.onnx")
    >>> _ = seqcore.onnx.export(seqcore.GRU(4, 8, num_layers=2, seed=0), path)
    >>> [type(layer).__name__ for layer in seqcore.onnx.layers(path)]
    ['GRU', 'GRU']
    """
    onnx = _onnx()
    path = os.fspath(path)
    model = _read(onnx, path)
    consts = _constants(onnx, model.graph)
    found = [_layer(onnx, node, consts, path) for node in model.graph.node
             if node.op_type in _CELLS and node.domain in ("", "ai.onnx")]
    if not found:
        raise ValueError(f"{path}: the graph has no RNN, GRU or LSTM node")
    return found
