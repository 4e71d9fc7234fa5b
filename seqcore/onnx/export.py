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

from .._validation import check_float_weights
from ..nn import GRU, LSTM, RNN
from . import cells

__all__ = ["export", "seq2seq_paths", "OPSET", "INPUTS", "OUTPUTS"]

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
    """The nodes of ``layer`` on the graph's values: returns the value names of y
    (T, B, dirs*H), the final states a and c (L*dirs, B, H; c None but for the LSTM)
    and the last layer's final states (dirs, B, H)."""
    cell = _cell(layer)
    H, L, dirs = layer.hidden_size, layer.num_layers, layer.num_directions
    seq_lens = ("" if lengths is None else                      # None: every step runs
                g.node("Cast", [lengths], to=g.onnx.TensorProto.INT32, stem="seq_lens"))
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
    return inp, a, c, finals["a"][-1]


def _token_inputs(g, inputs, ids):
    """x (T, B, E) from ids (T, B): the embedding's (or the 1-hot code's) row of each id,
    and the zero vector for id -1 (the notes' x<1> = 0), from one table with a zero row
    appended at index V."""
    V = inputs.num_embeddings
    table = (inputs.params["W"] if "W" in getattr(inputs, "params", {})
             else np.eye(V, dtype=np.float32))
    table = np.concatenate([table, np.zeros((1, table.shape[1]), table.dtype)])
    row = g.node("Where", [g.node("Less", [ids, g.const("zero", np.array(0, np.int64))]),
                           g.const("V", np.array(V, np.int64)), ids], stem="row")
    return g.node("Gather", [g.const("table", table.astype(np.float32)), row], axis=0,
                  stem="x")


def _dense(g, dense, h, stem="logits"):
    """``W h + b`` along the last axis of h."""
    W = np.ascontiguousarray(dense.params["W"].T, np.float32)      # (in, out)
    return g.node("Add", [g.node("MatMul", [h, g.const("W_T", W)]),
                          g.const("b", dense.params["b"].astype(np.float32))], stem=stem)


def _check_float32(obj):
    if np.dtype(obj.dtype) != np.float32:
        raise TypeError(f"obj: onnxruntime runs its RNN, GRU and LSTM kernels in float32 "
                        f"only; this {type(obj).__name__} is {np.dtype(obj.dtype).name}. "
                        "Export a float32 copy (build the layer with dtype=np.float32 and "
                        "copy its params with .astype(np.float32))")


def _value(h, T, name, dtype, shape):
    return h.make_tensor_value_info(name, dtype, shape)


def _layer_graph(onnx, g, layer):
    """The graph of a recurrent layer (the module notes)."""
    h, T = onnx.helper, onnx.TensorProto
    cell = _cell(layer)
    rows, H = layer.num_layers * layer.num_directions, layer.hidden_size
    inputs = [_value(h, T, "x", T.FLOAT, ["T", "B", layer.input_size]),
              _value(h, T, "lengths", T.INT64, ["B"])]
    inputs += _state_inputs(onnx, g, cell, rows, H)
    y, a, c, _ = _recurrent(g, layer, "x", "lengths", "a0", "c0" if cell == "lstm" else None)
    outputs = {"y": (y, ["T", "B", layer.num_directions * H]), "a": (a, [rows, "B", H])}
    if cell == "lstm":
        outputs["c"] = (c, [rows, "B", H])
    return inputs, outputs


def _state_inputs(onnx, g, cell, rows, H):
    """The initial-state inputs a0 (and c0), each with a zero default of batch 1."""
    h, T = onnx.helper, onnx.TensorProto
    zeros = np.zeros((rows, 1, H), np.float32)
    names = ("a0", "c0") if cell == "lstm" else ("a0",)
    for name in names:
        g.inits.append(onnx.numpy_helper.from_array(zeros, name))
    return [_value(h, T, name, T.FLOAT, [rows, "state_batch", H]) for name in names]


def _model_inputs(onnx, model):
    """ids (T, B) int64 for token models, x (T, B, D) float32 for feature ones."""
    h, T = onnx.helper, onnx.TensorProto
    if getattr(model, "inputs", None) is not None:
        return "ids", _value(h, T, "ids", T.INT64, ["T", "B"])
    return "x", _value(h, T, "x", T.FLOAT, ["T", "B", model.input_size])


def _tagged_graph(onnx, g, model, classifier):
    """SequenceClassifier: ids or x, lengths -> logits (B, C), from the last valid state
    (both ends if bidirectional: the last layer's final states). SequenceTagger: ->
    logits (T, B, C) at every step (past a sequence's length, those of a zero state)."""
    h, T = onnx.helper, onnx.TensorProto
    source, first = _model_inputs(onnx, model)
    inputs = [first, _value(h, T, "lengths", T.INT64, ["B"])]
    x = _token_inputs(g, model.inputs, source) if source == "ids" else source
    rows, H = model.rnn.num_layers * model.rnn.num_directions, model.hidden_size
    cell = _cell(model.rnn)
    a0 = g.const("a0_zero", np.zeros((rows, 1, H), np.float32))
    c0 = g.const("c0_zero", np.zeros((rows, 1, H), np.float32)) if cell == "lstm" else None
    y, _, _, last = _recurrent(g, model.rnn, x, "lengths", a0, c0)
    C = model.num_classes
    if classifier:                                   # (dirs, B, H) -> (B, dirs*H)
        both = g.node("Transpose", [last], perm=[1, 0, 2], stem="last_bdh")
        feat = g.node("Reshape", [both, g.const("b_flat", np.array([0, -1], np.int64))],
                      stem="last")
        return inputs, {"logits": (_dense(g, model.out, feat), ["B", C])}
    return inputs, {"logits": (_dense(g, model.out, y), ["T", "B", C])}


def _language_graph(onnx, g, model):
    """LanguageModel: ids (T, B), lengths (B,), a0 [c0] -> logits (T, B, V) and the new
    state a [c]: fed back with the next tokens, the state carries a text on, so a
    runtime can generate token by token."""
    h, T = onnx.helper, onnx.TensorProto
    cell = _cell(model.rnn)
    rows, H = model.rnn.num_layers, model.hidden_size
    inputs = [_value(h, T, "ids", T.INT64, ["T", "B"]), _value(h, T, "lengths", T.INT64, ["B"])]
    inputs += _state_inputs(onnx, g, cell, rows, H)
    x = _token_inputs(g, model.inputs, "ids")
    y, a, c, _ = _recurrent(g, model.rnn, x, "lengths", "a0", "c0" if cell == "lstm" else None)
    V = model.out.out_features
    outputs = {"logits": (_dense(g, model.out, y), ["T", "B", V]), "a": (a, [rows, "B", H])}
    if cell == "lstm":
        outputs["c"] = (c, [rows, "B", H])
    return inputs, outputs


def _i64(*values):
    return np.array(values, np.int64)


def _keys(g, attention, memory):
    """The query-independent part of the scores, from the encoder's outputs (Tx, B, Hh):
    W_h h_j + b (Bahdanau), W h_j (Luong), h_j (dot)."""
    p = attention.params
    if attention.kind == "bahdanau":
        return g.node("Add", [g.node("MatMul", [memory, g.const("W_h_T", p["W_h"].T.copy())]),
                              g.const("b_h", p["b"])], stem="keys")
    if attention.kind == "luong":
        return g.node("MatMul", [memory, g.const("W_T", p["W"].T.copy())], stem="keys")
    return g.node("Identity", [memory], stem="keys")


def _attend(g, attention, s, memory, keys, src_lengths):
    """One step of attention: s (B, Hs) -> context (B, Hh), alpha (B, Tx), the softmax of
    the scores over each source's own positions j < src_lengths[b]."""
    s0 = g.node("Unsqueeze", [s, g.const("ax0", _i64(0))], stem="s_1bh")          # (1, B, Hs)
    if attention.kind == "bahdanau":
        p = attention.params
        q = g.node("MatMul", [s0, g.const("W_s_T", p["W_s"].T.copy())], stem="q")  # (1, B, A)
        z = g.node("Tanh", [g.node("Add", [q, keys])], stem="z")                    # (Tx, B, A)
        e = g.node("MatMul", [z, g.const("v", p["v"])], stem="e_tb")                # (Tx, B)
    else:                                                   # s . k_j
        e = g.node("ReduceSum", [g.node("Mul", [s0, keys]), g.const("ax2", _i64(2))],
                   keepdims=0, stem="e_tb")
    e = g.node("Transpose", [e], perm=[1, 0], stem="e")                             # (B, Tx)
    Tx = g.node("Gather", [g.node("Shape", [keys]), g.const("i0", np.array(0, np.int64))],
                axis=0, stem="Tx")
    positions = g.node("Range", [g.const("r0", np.array(0, np.int64)), Tx,
                                 g.const("r1", np.array(1, np.int64))], stem="j")
    lens = g.node("Unsqueeze", [src_lengths, g.const("ax1", _i64(1))], stem="lens_b1")
    valid = g.node("Less", [positions, lens], stem="valid")                         # (B, Tx)
    masked = g.node("Where", [valid, e, g.const("minus_inf", np.array(-np.inf, np.float32))],
                    stem="e_masked")
    alpha = g.node("Softmax", [masked], axis=1, stem="alpha")                       # (B, Tx)
    weights = g.node("Unsqueeze", [g.node("Transpose", [alpha], perm=[1, 0]),
                                   g.const("ax2", _i64(2))], stem="alpha_tb1")     # (Tx, B, 1)
    context = g.node("ReduceSum", [g.node("Mul", [weights, memory]), g.const("ax0", _i64(0))],
                     keepdims=0, stem="context")                                    # (B, Hh)
    return context, alpha


def _encoder_graph(onnx, g, model):
    """Seq2Seq's encoder: src_ids (Tx, B) as the encoder reads them (``source_tokens``:
    reversed if ``reverse_source``, then <EOS>), src_lengths (B,) -> memory (Tx, B, Hh),
    keys (Tx, B, K) with attention, and the decoder's initial state a [c] (L, B, H):
    the encoder's final state, the two directions of each layer summed."""
    h, T = onnx.helper, onnx.TensorProto
    cell = _cell(model.encoder)
    L, H, dirs = model.num_layers, model.hidden_size, model.encoder.num_directions
    inputs = [_value(h, T, "src_ids", T.INT64, ["Tx", "B"]),
              _value(h, T, "src_lengths", T.INT64, ["B"])]
    x = _token_inputs(g, model.src_inputs, "src_ids")
    zeros = np.zeros((L * dirs, 1, H), np.float32)
    memory, a, c, _ = _recurrent(g, model.encoder, x, "src_lengths", g.const("a0_zero", zeros),
                                 g.const("c0_zero", zeros) if cell == "lstm" else None)
    outputs = {"memory": (memory, ["Tx", "B", dirs * H])}
    if model.attention is not None:
        outputs["keys"] = (_keys(g, model.attention, memory),
                           ["Tx", "B", model.attention.key_width])
    for name, state in (("a", a), ("c", c)):
        if state is None:
            continue
        if dirs == 2:                                       # rows l*2 + d: sum over d
            state = g.node("ReduceSum", [g.node("Reshape", [state, g.const(
                "l2bh", _i64(L, 2, -1, H))]), g.const("ax1", _i64(1))], keepdims=0,
                stem=f"{name}_bridged")
        outputs[name] = (state, [L, "B", H])
    return inputs, outputs


def _decoder_graph(onnx, g, model):
    """Seq2Seq's decoder, one step: token (B,) int64 (-1 at the first step: x<1> = 0), the
    state a0 [c0] (L, B, H), and with attention memory, keys and src_lengths from the
    encoder -> logits (B, V), the new state a [c], and alpha (B, Tx) with attention."""
    h, T = onnx.helper, onnx.TensorProto
    cell = _cell(model.decoder)
    L, H = model.num_layers, model.hidden_size
    inputs = [_value(h, T, "token", T.INT64, ["B"]), _value(h, T, "a0", T.FLOAT, [L, "B", H])]
    if cell == "lstm":
        inputs.append(_value(h, T, "c0", T.FLOAT, [L, "B", H]))
    if model.attention is not None:
        inputs += [_value(h, T, "memory", T.FLOAT, ["Tx", "B", model.enc_width]),
                   _value(h, T, "keys", T.FLOAT, ["Tx", "B", model.attention.key_width]),
                   _value(h, T, "src_lengths", T.INT64, ["B"])]
    ids = g.node("Unsqueeze", ["token", g.const("ax0", _i64(0))], stem="ids")       # (1, B)
    x = _token_inputs(g, model.tgt_inputs, ids)
    y, a, c, _ = _recurrent(g, model.decoder, x, None, "a0", "c0" if cell == "lstm" else None)
    s = g.node("Squeeze", [y, g.const("ax0", _i64(0))], stem="s")                  # (B, H)
    V = model.out.out_features
    outputs = {}
    if model.attention is None:
        outputs["logits"] = (_dense(g, model.out, s), ["B", V])
    else:
        context, alpha = _attend(g, model.attention, s, "memory", "keys", "src_lengths")
        h_tilde = g.node("Tanh", [_dense(g, model.combine, g.node(
            "Concat", [context, s], axis=-1, stem="cs"), stem="combined")], stem="h_tilde")
        outputs["logits"] = (_dense(g, model.out, h_tilde), ["B", V])
    outputs["a"] = (a, [L, "B", H])
    if cell == "lstm":
        outputs["c"] = (c, [L, "B", H])
    if model.attention is not None:
        outputs["alpha"] = (alpha, ["B", "Tx"])
    return inputs, outputs


def seq2seq_paths(path):
    """The two files a Seq2Seq is exported to: ``{stem}.encoder.onnx`` and
    ``{stem}.decoder.onnx`` beside ``path`` (``stem``: ``path`` without ``.onnx``)."""
    path = os.fspath(path)
    stem = path[:-len(".onnx")] if path.endswith(".onnx") else path
    return {"encoder": f"{stem}.encoder.onnx", "decoder": f"{stem}.decoder.onnx"}


def _graphs(obj):
    """(name, builder) of each graph of ``obj``."""
    from ..models import (LanguageModel, Seq2Seq, SequenceClassifier, SequenceTagger,
                          SequenceTranscriber)
    if type(obj) in _CELL:
        return lambda onnx, g: _layer_graph(onnx, g, obj)
    if isinstance(obj, SequenceClassifier):
        return lambda onnx, g: _tagged_graph(onnx, g, obj, classifier=True)
    if isinstance(obj, (SequenceTagger, SequenceTranscriber)):    # logits at every step
        return lambda onnx, g: _tagged_graph(onnx, g, obj, classifier=False)
    if isinstance(obj, LanguageModel):
        return lambda onnx, g: _language_graph(onnx, g, obj)
    if isinstance(obj, Seq2Seq):
        return {"encoder": lambda onnx, g: _encoder_graph(onnx, g, obj),
                "decoder": lambda onnx, g: _decoder_graph(onnx, g, obj)}
    raise TypeError(f"obj: expected a seqcore RNN, GRU or LSTM layer, SequenceClassifier, "
                    f"SequenceTagger, SequenceTranscriber, LanguageModel or Seq2Seq, got "
                    f"{type(obj).__name__}")


def _write(onnx, build, name, path):
    h, T = onnx.helper, onnx.TensorProto
    g = _Graph(onnx)
    inputs, outputs = build(onnx, g)
    for out, (value, _) in outputs.items():
        g.nodes.append(h.make_node("Identity", [value], [out]))
    graph = h.make_graph(g.nodes, name, inputs,
                         [_value(h, T, out, T.FLOAT, shape) for out, (_, shape) in outputs.items()],
                         initializer=g.inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)],
                         producer_name="seqcore")
    model.ir_version = min(model.ir_version, 9)        # what onnxruntime 1.18+ reads
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return model


def export(obj, path):
    """Write ``obj`` to ``path`` as an ONNX model.

    Parameters
    ----------
    obj : seqcore.RNN, GRU, LSTM, SequenceClassifier, SequenceTagger, SequenceTranscriber, LanguageModel or Seq2Seq
        A float32 layer (any cell variant, stacked, one or two directions) or model.
    path : str or os.PathLike
        Where the ``.onnx`` file goes. A Seq2Seq is two graphs, an encoder and a
        decoder step, written to ``seq2seq_paths(path)``: ``{stem}.encoder.onnx`` and
        ``{stem}.decoder.onnx``.

    Returns
    -------
    onnx.ModelProto or dict of str to onnx.ModelProto
        The model written (a Seq2Seq: ``{"encoder": ..., "decoder": ...}``), which
        ``onnx.checker.check_model(model, full_check=True)`` accepts. Its inputs and
        outputs are those of docs/spec.md, "ONNX".

    Raises
    ------
    TypeError
        ``obj`` not something seqcore exports, not float32 (onnxruntime's recurrent
        kernels are float32 only), or quantized (``seqcore.quantize``).
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
    build = _graphs(obj)
    check_float_weights(obj, "export")
    onnx = _onnx()
    _check_float32(obj)
    name = f"seqcore_{type(obj).__name__}"
    with obj.lock:               # the weights of one moment, whatever other threads do
        if isinstance(build, dict):                                  # Seq2Seq: two graphs
            return {part: _write(onnx, build[part], f"{name}_{part}", file)
                    for part, file in seq2seq_paths(path).items()}
        return _write(onnx, build, name, os.fspath(path))
