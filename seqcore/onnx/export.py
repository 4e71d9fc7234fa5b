"""ONNX export of seqcore's recurrent layers: one ONNX RNN, GRU or LSTM node per layer.

The graph of a layer (docs/spec.md, "ONNX"):

| name | shape | dtype | |
|---|---|---|---|
| input ``x`` | ``(T, B, D)`` | float32 | time-major, whatever the layer's ``batch_first`` |
| input ``lengths`` | ``(B,)`` | int64 | each in ``[1, T]`` |
| input ``a0`` | ``(L*dirs, B, H)`` | float32 | the initial state (the GRU's ``c``); zeros by default |
| input ``c0`` | ``(L*dirs, B, H)`` | float32 | the LSTM's initial memory cell; zeros by default |
| output ``y`` | ``(T, B, dirs*H)`` | float32 | 0 at steps past a sequence's length |
| output ``a`` | ``(L*dirs, B, H)`` | float32 | the final states, row ``l*dirs + d`` |
| output ``c`` | ``(L*dirs, B, H)`` | float32 | the LSTM's final memory cells |

``T`` and ``B`` are dynamic. ``a0`` and ``c0`` have a default, a zero initializer of
batch 1 broadcast to ``B`` (``Expand``), so a runtime may leave them out; a state of
batch ``B`` may be fed instead. Layer ``l``'s node reads the output of layer ``l-1``,
reshaped from ONNX's ``(T, dirs, B, H)`` to ``(T, B, dirs*H)``.
"""

import os

import numpy as np

from ..nn import GRU, LSTM, RNN
from . import cells

__all__ = ["export", "OPSET", "INPUTS", "OUTPUTS"]

OPSET = 17
INPUTS = {"rnn": ("x", "lengths", "a0"), "gru": ("x", "lengths", "a0"),
          "lstm": ("x", "lengths", "a0", "c0")}
OUTPUTS = {"rnn": ("y", "a"), "gru": ("y", "a"), "lstm": ("y", "a", "c")}

_CELL = {RNN: "rnn", GRU: "gru", LSTM: "lstm"}


def _onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("seqcore.onnx needs onnx: pip install 'seqcore[onnx]'") from exc
    return onnx


def _cell(layer):
    for cls, name in _CELL.items():
        if type(layer) is cls:
            return name
    raise TypeError(f"obj: expected a seqcore RNN, GRU or LSTM layer, got "
                    f"{type(layer).__name__}")


class _Graph:
    """Nodes, initializers and unique names of a graph being built."""

    def __init__(self, onnx):
        self.onnx, self.h = onnx, onnx.helper
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, stem):
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, stem, array):
        name = self.name(stem)
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op, inputs, n_out=1, stem=None, **attrs):
        outs = [self.name(stem or op.lower()) for _ in range(n_out)]
        self.nodes.append(self.h.make_node(op, list(inputs), outs, **attrs))
        return outs if n_out > 1 else outs[0]


def _layer_weights(layer, cell, l):
    """ONNX's W, R, B (and P) of layer ``l``, directions stacked on axis 0."""
    H = layer.hidden_size
    per_dir = []
    for sfx in ("", "_reverse")[:layer.num_directions]:
        p = layer.params
        per_dir.append(cells.to_onnx(
            cell, p[f"W_l{l}{sfx}"], p[f"b_l{l}{sfx}"], H,
            b_cc=p.get(f"b_cc_l{l}{sfx}"), p=p.get(f"p_l{l}{sfx}")))
    W, R, B, P = (None if parts[0] is None else np.stack(parts).astype(np.float32)
                  for parts in zip(*per_dir))
    return W, R, B, P


def _recurrent(g, layer, x, lengths, a0, c0):
    """The nodes of ``layer`` on the graph's values: returns (y, a, c) value names."""
    cell = _cell(layer)
    H, L, dirs = layer.hidden_size, layer.num_layers, layer.num_directions
    seq_lens = g.node("Cast", [lengths], to=g.onnx.TensorProto.INT32, stem="seq_lens")
    batch = g.node("Slice", [g.node("Shape", [x]), g.const("one", np.array([1], np.int64)),
                             g.const("two", np.array([2], np.int64))], stem="batch")
    full = g.node("Concat", [g.const("rows", np.array([L * dirs], np.int64)), batch,
                             g.const("H", np.array([H], np.int64))], axis=0, stem="state_shape")
    states = {"a": g.node("Expand", [a0, full], stem="a0_b")}
    if c0 is not None:
        states["c"] = g.node("Expand", [c0, full], stem="c0_b")
    attrs = {"hidden_size": H, "direction": "bidirectional" if dirs == 2 else "forward"}
    if cell == "rnn":
        attrs["activations"] = ["Relu" if layer.nonlinearity == "relu" else "Tanh"] * dirs
    if cell == "gru":
        attrs["linear_before_reset"] = int(layer.reset_after)
    finals = {"a": [], "c": []}
    inp = x
    for l in range(L):
        W, R, B, P = _layer_weights(layer, cell, l)
        rows = [g.const("start", np.array([l * dirs], np.int64)),
                g.const("end", np.array([(l + 1) * dirs], np.int64))]
        ins = [inp, g.const(f"W_l{l}", W), g.const(f"R_l{l}", R), g.const(f"B_l{l}", B),
               seq_lens, g.node("Slice", [states["a"], *rows], stem=f"a0_l{l}")]
        if cell == "lstm":
            ins.append(g.node("Slice", [states["c"], *rows], stem=f"c0_l{l}"))
            if P is not None:
                ins.append(g.const(f"P_l{l}", P))
        n_out = 3 if cell == "lstm" else 2
        outs = g.node(cells.OP[cell], ins, n_out=n_out, stem=f"{cell}_l{l}", **attrs)
        y4 = outs[0]                                             # (T, dirs, B, H)
        y = g.node("Transpose", [y4], perm=[0, 2, 1, 3], stem=f"y_l{l}_tbdh")
        inp = g.node("Reshape", [y, g.const("tb_flat", np.array([0, 0, -1], np.int64))],
                     stem=f"y_l{l}")
        finals["a"].append(outs[1])
        if cell == "lstm":
            finals["c"].append(outs[2])
    a = finals["a"][0] if L == 1 else g.node("Concat", finals["a"], axis=0, stem="a_n")
    c = None
    if cell == "lstm":
        c = finals["c"][0] if L == 1 else g.node("Concat", finals["c"], axis=0, stem="c_n")
    return inp, a, c


def _check_float32(obj):
    if np.dtype(obj.dtype) != np.float32:
        raise TypeError(f"obj: onnxruntime runs its RNN, GRU and LSTM kernels in float32 "
                        f"only; this {type(obj).__name__} is {np.dtype(obj.dtype).name}. "
                        "Export a float32 copy (build the layer with dtype=np.float32 and "
                        "copy its params with .astype(np.float32))")


def export(obj, path):
    """Write ``obj`` to ``path`` as an ONNX model.

    Parameters
    ----------
    obj : seqcore.RNN, seqcore.GRU or seqcore.LSTM
        A float32 layer: any cell variant, stacked, one or two directions.
    path : str or os.PathLike
        Where the ``.onnx`` file goes.

    Returns
    -------
    onnx.ModelProto
        The model written, which ``onnx.checker.check_model(model, full_check=True)``
        accepts.

    Raises
    ------
    TypeError
        ``obj`` not a layer seqcore exports, or not float32 (onnxruntime's recurrent
        kernels are float32 only).
    ImportError
        onnx is not installed.

    Examples
    --------
    >>> import tempfile, os, seqcore
    >>> path = os.path.join(tempfile.mkdtemp(), "lstm.onnx")
    >>> model = seqcore.onnx.export(seqcore.LSTM(8, 16, num_layers=2, seed=0), path)
    >>> [i.name for i in model.graph.input], [o.name for o in model.graph.output]
    (['x', 'lengths', 'a0', 'c0'], ['y', 'a', 'c'])
    """
    onnx = _onnx()
    cell = _cell(obj)
    _check_float32(obj)
    path = os.fspath(path)
    h, T = onnx.helper, onnx.TensorProto
    g = _Graph(onnx)
    rows, H = obj.num_layers * obj.num_directions, obj.hidden_size
    zeros = np.zeros((rows, 1, H), np.float32)
    inputs = [h.make_tensor_value_info("x", T.FLOAT, ["T", "B", obj.input_size]),
              h.make_tensor_value_info("lengths", T.INT64, ["B"]),
              h.make_tensor_value_info("a0", T.FLOAT, [rows, "state_batch", H])]
    inits = [onnx.numpy_helper.from_array(zeros, "a0")]
    if cell == "lstm":
        inputs.append(h.make_tensor_value_info("c0", T.FLOAT, [rows, "state_batch", H]))
        inits.append(onnx.numpy_helper.from_array(zeros, "c0"))
    y, a, c = _recurrent(g, obj, "x", "lengths", "a0", "c0" if cell == "lstm" else None)
    g.nodes += [h.make_node("Identity", [y], ["y"]), h.make_node("Identity", [a], ["a"])]
    outputs = [h.make_tensor_value_info("y", T.FLOAT, ["T", "B", obj.num_directions * H]),
               h.make_tensor_value_info("a", T.FLOAT, [rows, "B", H])]
    if cell == "lstm":
        g.nodes.append(h.make_node("Identity", [c], ["c"]))
        outputs.append(h.make_tensor_value_info("c", T.FLOAT, [rows, "B", H]))
    graph = h.make_graph(g.nodes, f"seqcore_{cell}", inputs, outputs,
                         initializer=inits + g.inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)],
                         producer_name="seqcore")
    model.ir_version = min(model.ir_version, 9)        # what onnxruntime 1.18+ reads
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return model
