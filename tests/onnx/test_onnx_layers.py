"""ONNX export and import of the recurrent layers, checked in onnxruntime.

Every cell variant, stacked and bidirectional, on a padded batch of mixed lengths:
the exported graph passes onnx's full check, and onnxruntime gives seqcore's
outputs and final states within 1e-5 relative, on every kernel path this CPU runs.
Import reads back what seqcore writes bitwise, and what torch.onnx.export writes
for nn.RNN, nn.GRU and nn.LSTM, with PyTorch's outputs as the oracle.
"""
import os

import numpy as np
import pytest

import seqcore
from seqcore.onnx import cells

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

RTOL = 1e-5          # docs/spec.md, "ONNX": float32 graphs against seqcore's float32 layers

VARIANTS = {
    "rnn-tanh": (seqcore.RNN, {}),
    "rnn-relu": (seqcore.RNN, {"nonlinearity": "relu"}),
    "gru": (seqcore.GRU, {}),
    "gru-reset-after": (seqcore.GRU, {"reset_after": True}),
    "lstm": (seqcore.LSTM, {}),
    "lstm-peephole": (seqcore.LSTM, {"peephole": True}),
}
SHAPES = [(1, False), (2, False), (1, True), (2, True)]      # (num_layers, bidirectional)


def _session(path):
    options = ort.SessionOptions()
    options.log_severity_level = 3          # the default states' note on overridable inputs
    options.intra_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _randomize(layer, rng):
    for p in layer.params.values():                 # random biases and peepholes too
        p[...] = rng.uniform(-0.6, 0.6, p.shape)


def _rel(actual, expected):
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-30))


@pytest.mark.parametrize("layers, bidirectional", SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_onnxruntime_gives_seqcores_outputs(variant, layers, bidirectional, kernel_path,
                                            tmp_path, rng):
    cls, options = VARIANTS[variant]
    layer = cls(5, 7, num_layers=layers, bidirectional=bidirectional, seed=3, **options)
    _randomize(layer, rng)
    path = tmp_path / "layer.onnx"
    model = seqcore.onnx.export(layer, path)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    assert sum(n.op_type == cells.OP[cls.__name__.lower()] for n in model.graph.node) == layers
    sess = _session(str(path))
    T, B = 9, 6
    x = rng.standard_normal((T, B, 5)).astype(np.float32)
    lengths = np.array([9, 4, 1, 7, 9, 2], np.int64)
    y, state = layer.forward(x, lengths=lengths)
    states = state if isinstance(state, tuple) else (state,)
    out = sess.run(None, {"x": x, "lengths": lengths})             # zero initial states
    assert out[0].shape == y.shape
    for got, want in zip(out, (y, *states)):
        assert _rel(got, want) < RTOL
    assert not out[0][lengths[1]:, 1].any()                         # 0 past the length
    # with initial states of the batch's size fed
    s0 = tuple(rng.standard_normal(s.shape).astype(np.float32) for s in states)
    y2, state2 = layer.forward(x, state=s0 if len(s0) == 2 else s0[0], lengths=lengths)
    feed = {"x": x, "lengths": lengths, "a0": s0[0]}
    if len(s0) == 2:
        feed["c0"] = s0[1]
    out2 = sess.run(None, feed)
    for got, want in zip(out2, (y2, *(state2 if isinstance(state2, tuple) else (state2,)))):
        assert _rel(got, want) < RTOL


def test_the_graph_is_named_as_the_contract_says(tmp_path):
    model = seqcore.onnx.export(seqcore.LSTM(3, 4, peephole=True, seed=0), tmp_path / "m.onnx")
    assert [i.name for i in model.graph.input] == ["x", "lengths", "a0", "c0"]
    assert [o.name for o in model.graph.output] == ["y", "a", "c"]
    model = seqcore.onnx.export(seqcore.GRU(3, 4, seed=0), tmp_path / "g.onnx")
    assert [i.name for i in model.graph.input] == list(seqcore.onnx.INPUTS["gru"])
    assert [o.name for o in model.graph.output] == list(seqcore.onnx.OUTPUTS["gru"])
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["T", "B", 3]


def test_batch_and_time_are_dynamic(tmp_path, rng):
    layer = seqcore.GRU(3, 4, bidirectional=True, reset_after=True, seed=0)
    _randomize(layer, rng)
    seqcore.onnx.export(layer, tmp_path / "m.onnx")
    sess = _session(str(tmp_path / "m.onnx"))
    for T, B in ((1, 1), (12, 3), (4, 17)):
        x = rng.standard_normal((T, B, 3)).astype(np.float32)
        lengths = rng.integers(1, T + 1, B).astype(np.int64)
        y, _ = layer.forward(x, lengths=lengths)
        assert _rel(sess.run(["y"], {"x": x, "lengths": lengths})[0], y) < RTOL


def test_float64_and_other_objects_are_refused_by_name(tmp_path):
    with pytest.raises(TypeError, match="float32 only.*float64"):
        seqcore.onnx.export(seqcore.LSTM(3, 4, dtype=np.float64), tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="obj: expected a seqcore RNN, GRU or LSTM"):
        seqcore.onnx.export(seqcore.Dense(3, 4), tmp_path / "m.onnx")
    assert not os.path.exists(tmp_path / "m.onnx")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_import_of_an_export_is_bitwise(variant, tmp_path, rng):
    cls, options = VARIANTS[variant]
    layer = cls(4, 6, num_layers=2, bidirectional=True, seed=1, **options)
    _randomize(layer, rng)
    seqcore.onnx.export(layer, tmp_path / "m.onnx")
    back = seqcore.onnx.layers(tmp_path / "m.onnx")
    assert [type(b) for b in back] == [cls, cls]
    for l, b in enumerate(back):
        assert b.bidirectional and b.num_layers == 1
        assert set(b.params) == {k.replace(f"_l{l}", "_l0") for k in layer.params
                                 if f"_l{l}" in k}
        for name, value in b.params.items():
            assert np.array_equal(value, layer.params[name.replace("_l0", f"_l{l}")]), name


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
def test_import_of_torchs_export_runs_as_torch_does(kind, batch_first, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = getattr(torch.nn, kind)(4, 6, num_layers=2, bidirectional=True,
                                     batch_first=batch_first)
    x = torch.randn(3, 5, 4)
    torch.onnx.export(module, (x,), str(tmp_path / "t.onnx"), dynamo=False)
    layers = seqcore.onnx.layers(tmp_path / "t.onnx")
    assert [type(layer).__name__ for layer in layers] == [kind, kind]
    with torch.no_grad():
        want = module(x)[0].numpy()
    h = x.numpy().transpose(1, 0, 2) if batch_first else x.numpy()    # the graph's Transpose
    for layer in layers:
        h, _ = layer.forward(np.ascontiguousarray(h))
    if batch_first:
        h = h.transpose(1, 0, 2)
    assert _rel(h, want) < RTOL


def _graph(tmp_path, op, G=4, H=2, D=3, **attrs):
    h, T = onnx.helper, onnx.TensorProto
    dirs = 2 if attrs.get("direction") == "bidirectional" else 1
    W = onnx.numpy_helper.from_array(np.ones((dirs, G * H, D), np.float32), "W")
    R = onnx.numpy_helper.from_array(np.ones((dirs, G * H, H), np.float32), "R")
    node = h.make_node(op, ["x", "W", "R"], ["y"], name="rec", hidden_size=H, **attrs)
    graph = h.make_graph([node], "g", [h.make_tensor_value_info("x", T.FLOAT, ["T", "B", D])],
                         [h.make_tensor_value_info("y", T.FLOAT, None)], initializer=[W, R])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    path = tmp_path / "g.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("op, attrs, attr", [
    ("LSTM", {"clip": 3.0}, "clip"),
    ("LSTM", {"input_forget": 1}, "input_forget"),
    ("LSTM", {"direction": "reverse"}, "direction"),
    ("LSTM", {"activations": ["Sigmoid", "Relu", "Tanh"]}, "activations"),
    ("RNN", {"activations": ["Sigmoid"]}, "activations"),
    ("GRU", {"activation_alpha": [1.0]}, "activation_alpha"),
])
def test_what_seqcore_has_no_cell_for_is_refused_naming_node_and_attribute(
        op, attrs, attr, tmp_path):
    G = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    path = _graph(tmp_path, op, G=G, **attrs)
    with pytest.raises(ValueError, match=f"node rec \\({op}\\): attribute {attr}"):
        seqcore.onnx.layers(path)


def test_graphs_without_recurrent_nodes_and_damaged_files_are_refused(tmp_path):
    h, T = onnx.helper, onnx.TensorProto
    graph = h.make_graph([h.make_node("Relu", ["x"], ["y"])], "g",
                         [h.make_tensor_value_info("x", T.FLOAT, [2])],
                         [h.make_tensor_value_info("y", T.FLOAT, [2])])
    onnx.save(h.make_model(graph), tmp_path / "relu.onnx")
    with pytest.raises(ValueError, match="no RNN, GRU or LSTM node"):
        seqcore.onnx.layers(tmp_path / "relu.onnx")
    seqcore.onnx.export(seqcore.LSTM(3, 4, seed=0), tmp_path / "ok.onnx")
    data = (tmp_path / "ok.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[:len(data) // 2])
    (tmp_path / "junk.onnx").write_bytes(b"\x00\xff" * 64)
    for bad in ("cut.onnx", "junk.onnx"):
        with pytest.raises(ValueError, match="not a readable ONNX model"):
            seqcore.onnx.layers(tmp_path / bad)
    with pytest.raises(FileNotFoundError):
        seqcore.onnx.layers(tmp_path / "missing.onnx")


def test_weights_that_are_not_constants_are_refused(tmp_path):
    h, T = onnx.helper, onnx.TensorProto
    node = h.make_node("GRU", ["x", "W", "R"], ["y"], name="g0", hidden_size=2)
    graph = h.make_graph([node], "g", [h.make_tensor_value_info(n, T.FLOAT, None)
                                       for n in ("x", "W", "R")],
                         [h.make_tensor_value_info("y", T.FLOAT, None)])
    onnx.save(h.make_model(graph), tmp_path / "g.onnx")
    with pytest.raises(ValueError, match="node g0 \\(GRU\\): input W .* not a constant"):
        seqcore.onnx.layers(tmp_path / "g.onnx")


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_the_cell_mapping_inverts_exactly(cell, rng):
    H, D, G = 3, 2, cells.GATES[cell]
    W, b = rng.standard_normal((G * H, H + D)), rng.standard_normal(G * H)
    b_cc = rng.standard_normal(H) if cell == "gru" else None
    p = rng.standard_normal((3, H)) if cell == "lstm" else None
    W_onnx, R, B, P = cells.to_onnx(cell, W, b, H, b_cc=b_cc, p=p)
    assert W_onnx.shape == (G * H, D) and R.shape == (G * H, H) and B.shape == (2 * G * H,)
    back = cells.from_onnx(cell, W_onnx, R, B, H, P=P, reset_after=b_cc is not None)
    assert np.array_equal(back[0], W) and np.array_equal(back[1], b)
    if cell == "gru":
        assert np.array_equal(back[2], b_cc)
        assert np.array_equal(R[:H], -W[H:2 * H, :H])               # z = 1 - gamma_u
    if cell == "lstm":
        assert np.array_equal(back[3], p)
        assert np.array_equal(R[H:2 * H], W[3 * H:, :H])            # ONNX o is seqcore's 4th


def test_export_holds_the_layers_lock(tmp_path):
    """Another thread that holds the layer (training it, say) makes export wait, so the
    graph holds the weights of one moment."""
    import threading
    import time
    layer = seqcore.GRU(3, 4, seed=0)
    done = []
    with layer.lock:
        worker = threading.Thread(
            target=lambda: done.append(seqcore.onnx.export(layer, tmp_path / "g.onnx")))
        worker.start()
        time.sleep(0.3)
        assert not done                     # waiting for the lock
        layer.params["W_l0"][...] = 0.25    # the change export must see
    worker.join(30)
    assert done
    W = onnx.numpy_helper.to_array(next(t for t in onnx.load(tmp_path / "g.onnx").graph.initializer
                                        if t.name.startswith("W_l0")))
    assert np.all(np.abs(W) == 0.25)
