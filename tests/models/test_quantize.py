"""seqcore.quantize: int8 weights (one scale per row) checked against PyTorch's
per-channel quantizer, every layer kind and model computing with exactly the weights
the int8 values stand for, training refused, and exact round trips through files and
the command line."""
import copy

import numpy as np
import pytest

import seqcore
from seqcore.cli import main
from seqcore.models import io as sio
from seqcore.reference.quant import (dequantize_rows, qlinear, qlinear_int8,
                                     quantize_rows, quantize_vector)

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor")   # deprecated

LAYERS = [
    lambda dt: seqcore.RNN(5, 6, nonlinearity="relu", dtype=dt, seed=0),
    lambda dt: seqcore.RNN(5, 6, num_layers=2, bidirectional=True, dtype=dt, seed=1),
    lambda dt: seqcore.GRU(5, 6, dtype=dt, seed=2),
    lambda dt: seqcore.GRU(5, 6, reset_after=True, bidirectional=True, dtype=dt, seed=3),
    lambda dt: seqcore.LSTM(5, 6, num_layers=2, dtype=dt, seed=4),
    lambda dt: seqcore.LSTM(5, 6, peephole=True, bidirectional=True, dtype=dt, seed=5),
]
LAYER_IDS = ["rnn-relu", "rnn-bi-2", "gru", "gru-after-bi", "lstm-2", "lstm-peep-bi"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_int8_values_match_pytorchs_per_channel_quantizer(dtype, rng):
    W = (rng.standard_normal((40, 33)) * rng.uniform(0.01, 3, (40, 1))).astype(dtype)
    W[7] = 0                                                   # a row of zeros
    q, scale = quantize_rows(W)
    assert q.dtype == np.int8 and scale.dtype == dtype and scale.shape == (40,)
    assert np.abs(q).max() == 127 and np.all(q[7] == 0) and scale[7] == 0
    np.testing.assert_allclose(scale, np.abs(W).max(axis=1) / 127, rtol=1e-6)
    rows = np.flatnonzero(scale > 0)
    if dtype == np.float32:                    # PyTorch quantizes float32 tensors only
        want = torch.quantize_per_channel(
            torch.from_numpy(W[rows]), torch.from_numpy(scale[rows].astype(np.float64)),
            torch.zeros(len(rows), dtype=torch.int64), 0, torch.qint8).int_repr().numpy()
    else:                                      # Python's round: to nearest, ties to even
        want = [[round(w / s) for w in row] for row, s in zip(W[rows], scale[rows])]
    np.testing.assert_array_equal(q[rows], want)
    err = np.abs(dequantize_rows(q, scale) - W)
    assert np.all(err <= scale[:, None] / 2 * (1 + 1e-6))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_quantize_per_row_to_the_nearest(dtype, rng):
    a = (rng.standard_normal((5, 70)) * [[1], [1e-4], [30], [0], [1]]).astype(dtype)
    a[4, 3] = -5                                              # the largest is negative
    aq, s = quantize_vector(a)
    assert s.dtype == dtype and s.shape == (5, 1) and s[3, 0] == 0 and np.all(aq[3] == 0)
    np.testing.assert_array_equal(np.abs(aq).max(axis=1), [127, 127, 127, 0, 127])
    assert aq[4, 3] == -127
    err = np.abs(aq * s - a)
    assert np.all(err <= s / 2 * (1 + 1e-5))


def test_qlinear_is_the_product_with_the_dequantized_weights(rng):
    W = rng.standard_normal((9, 7))
    x, b = rng.standard_normal((4, 3, 7)), rng.standard_normal(9)
    q, scale = quantize_rows(W)
    np.testing.assert_allclose(qlinear(x, q, scale, b), x @ dequantize_rows(q, scale).T + b,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_recurrent_layer_runs_on_its_int8_weights(make, dtype, kernel_path, rng):
    layer = make(dtype)
    before = copy.deepcopy(layer.params)
    q = seqcore.quantize(layer)
    for name, p in layer.params.items():                  # the float layer is untouched
        np.testing.assert_array_equal(p, before[name])
    names = [k for k in layer.params if k.startswith("W_l")]
    assert set(q.qweights) == set(names) and q.quantized and not layer.quantized
    # the same layer with the weights set by hand from PyTorch's dequantization
    want_layer = copy.deepcopy(layer)
    for name in names:
        qv, scale = q.qweights[name]
        assert qv.dtype == np.int8 and qv.shape == layer.params[name].shape
        if dtype == np.float32:
            want_layer.params[name] = torch.dequantize(torch.quantize_per_channel(
                torch.from_numpy(layer.params[name]), torch.from_numpy(scale.astype(np.float64)),
                torch.zeros(len(scale), dtype=torch.int64), 0, torch.qint8)).numpy()
        else:
            want_layer.params[name] = qv * scale[:, None]
    x = rng.standard_normal((7, 3, 5)).astype(dtype)
    lengths = [7, 4, 1]
    y, _ = q.forward(x, lengths=lengths)
    want, _ = want_layer.forward(x, lengths=lengths)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    full, _ = layer.forward(x, lengths=lengths)
    assert 0 < np.abs(y - full).max() < 0.05                 # rounded, and close
    with pytest.raises(TypeError, match="backward: this .* is quantized for inference"):
        q.backward(np.ones_like(y))


STEP_LAYERS = [
    lambda dt, be: seqcore.RNN(37, 21, num_layers=2, dtype=dt, seed=0, backend=be),
    lambda dt, be: seqcore.RNN(37, 21, nonlinearity="relu", dtype=dt, seed=1, backend=be),
    lambda dt, be: seqcore.GRU(37, 21, num_layers=2, dtype=dt, seed=2, backend=be),
    lambda dt, be: seqcore.GRU(37, 21, reset_after=True, dtype=dt, seed=3, backend=be),
    lambda dt, be: seqcore.LSTM(37, 21, num_layers=2, dtype=dt, seed=4, backend=be),
    lambda dt, be: seqcore.LSTM(37, 21, peephole=True, dtype=dt, seed=5, backend=be),
]


@pytest.mark.parametrize("make", STEP_LAYERS,
                         ids=["rnn-2", "rnn-relu", "gru-2", "gru-after", "lstm-2", "lstm-peep"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_one_token_steps_are_int8_by_int8(make, dtype, threads, kernel_path, rng):
    """The compiled one-token step (csrc: row_dot_w, sc_rowdot2_q8 of _q8.h) against
    its NumPy twin (the reference cells on reference.quant.Int8Rows: a<t-1> and x<t>
    each quantized on its own, int8 x int8 sums), on every kernel path: sizes that
    leave partial blocks of rows and columns; the layer holds no float weights."""
    q, twin = seqcore.quantize(make(dtype, "cython")), seqcore.quantize(make(dtype, "numpy"))
    steps = [rng.standard_normal((1, 1, 37)).astype(dtype) for _ in range(4)]
    want, state = [], None
    for x in steps:
        y, state = twin.forward(x, state)
        want.append(y)
    general, state = [], None                # the float product on s * q: not the same
    for x in steps:
        y, state = q._forward(x, state, None)
        general.append(y)
    assert not set(q.qweights) & set(q.params)     # no float weights to read
    got, state = [], None
    with seqcore.limit_threads(threads):
        for x in steps:
            y, state = q.forward(x, state)
            got.append(y)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(np.concatenate(got), np.concatenate(want), rtol=tol, atol=tol)
    assert 1e-6 < np.abs(np.concatenate(general) - np.concatenate(want)).max() < 0.05


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("rows", [1, 3, 5])
def test_dense_rows_run_on_the_int8_weights(dtype, threads, rows, kernel_path, rng):
    """Dense's int8 x int8 kernel (dense_forward_q8, below 4 rows) against the twin
    qlinear_int8, and its float product on the dequantized weights (from 4) against
    qlinear, on every path."""
    dense = seqcore.quantize(seqcore.Dense(45, 301, dtype=dtype, seed=0))
    q, scale = dense.qweights["W"]
    x = rng.standard_normal((rows, 45)).astype(dtype)
    assert "W" not in dense.params
    if rows < 4:
        want = qlinear_int8([x], q, scale, dense.params["b"])
    else:
        want = qlinear(x, q, scale, dense.params["b"])
    with seqcore.limit_threads(threads):
        got = dense.forward(x)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    dense.qweights["W"] = (q.astype(np.int16), scale)
    with pytest.raises(TypeError, match=r"qweights\['W'\]\[0\]: expected dtype int8"):
        dense.forward(x[:1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("K, V", [(1, 3), (31, 5), (64, 257), (100, 300), (2049, 7),
                                  (4500, 260)])
def test_int8_rows_against_the_twin_at_every_edge(dtype, K, V, kernel_path, rng):
    """sc_rowdot2_q8's blocks: columns past whole vectors (K % 64, % 32, % 16), past
    one quantized chunk (2048 columns), rows past a group of 256 and past blocks of 4;
    a row of zeros in x and in the weights. The int32 sums are exact, so the kernel
    and qlinear_int8 agree to the last scalings' rounding."""
    dense = seqcore.Dense(K, V, dtype=dtype, seed=1)
    dense.params["W"][V // 2] = 0
    dense = seqcore.quantize(dense)
    q, scale = dense.qweights["W"]
    x = (rng.standard_normal((3, K)) * [[1], [1e-3], [0]]).astype(dtype)
    got = dense.forward(x)
    want = qlinear_int8([x], q, scale, dense.params["b"])
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
    np.testing.assert_array_equal(got[2], dense.params["b"])


def test_int8_products_do_not_saturate(kernel_path):
    """vpmaddubsw adds two products of int8 into int16 with saturation: with every
    weight and activation at +-127, pairs reach 2 * 127 * 127 = 32258 and must add
    up exactly (the sign moved onto the weights, _q8.h)."""
    K = 4099
    dense = seqcore.Dense(K, 4, dtype=np.float64, seed=0)
    signs = np.where(np.arange(K) % 3 == 0, -1.0, 1.0)
    dense.params["W"][:] = [signs, -signs, np.ones(K), signs * np.where(np.arange(K) % 2, 1, -1)]
    dense.params["b"][:] = 0
    dense = seqcore.quantize(dense)
    y = dense.forward(signs[None, :])
    np.testing.assert_allclose(y[0], [K, -K, signs.sum(), -(np.arange(K) % 2 == 0).sum()
                                      + (np.arange(K) % 2 == 1).sum()], rtol=1e-12)


def test_dense_and_embedding(rng):
    dense, emb = seqcore.Dense(6, 5, seed=0), seqcore.Embedding(9, 4, seed=1)
    qd, qe = seqcore.quantize(dense), seqcore.quantize(emb)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    q, scale = qd.qweights["W"]
    np.testing.assert_allclose(qd.forward(x), qlinear(x, q, scale, dense.params["b"]),
                               rtol=1e-5, atol=1e-6)                      # 4 rows: float
    np.testing.assert_allclose(qd.forward(x[:3]), qlinear_int8([x[:3]], q, scale,
                                                               dense.params["b"]),
                               rtol=1e-5, atol=1e-6)                      # int8 x int8
    ids = np.array([[0, 8], [3, -1]])
    np.testing.assert_array_equal(qe.forward(ids)[0, 1], dequantize_rows(*qe.qweights["W"])[8])
    with pytest.raises(TypeError, match="quantized for inference"):
        qd.backward(np.ones((3, 5), np.float32))
    qe.forward(ids)
    with pytest.raises(TypeError, match="quantized for inference"):
        qe.backward(np.ones((2, 2, 4), np.float32))
    with pytest.raises(TypeError, match="obj: expected a recurrent layer"):
        seqcore.quantize(np.zeros(3))


VOCAB = seqcore.Vocab.build(["hello world, held low"])
DIGITS = seqcore.Vocab.build(["0123456789"])


def _models():
    return [
        seqcore.LanguageModel(VOCAB, hidden_size=16, embedding_dim=16, tie_weights=True,
                              seed=0),
        seqcore.SequenceClassifier(3, input_size=2, cell="lstm", peephole=True, hidden_size=5,
                                   bidirectional=True, num_layers=2, seed=1),
        seqcore.SequenceTagger(4, vocab=VOCAB, cell="gru", hidden_size=5, embedding_dim=3,
                               seed=2),
        seqcore.Seq2Seq(DIGITS, DIGITS, hidden_size=8, embedding_dim=4, attention="luong",
                        seed=3),
        seqcore.SequenceTranscriber(seqcore.Vocab.build(["ab"]), input_size=3, hidden_size=6, seed=4),
    ]


def _use(model, rng):
    """What inference gives for the model: predictions, a loss, samples, translations."""
    if model.kind == "LanguageModel":
        return (model.evaluate(["hello", "world"])["loss"],
                model.sample(2, max_len=8, greedy=True), model.sample(2, max_len=8, seed=5))
    if model.kind == "Seq2Seq":
        data = [("123", "321"), ("45", "54")]
        return model.evaluate(data)["loss"], model.translate(["123", "98"], beam_size=1)
    if model.kind == "SequenceClassifier":
        xs = [rng.standard_normal((t, 2)).astype(np.float32) for t in (4, 2)]
        return model.evaluate((xs, [0, 2]))["loss"], model.predict(xs)
    if model.kind == "SequenceTagger":
        return model.evaluate((["hello", "low"], [[1, 2, 3, 0, 1], [0, 1, 2]]))["loss"], \
            model.predict(["hello", "low"])
    xs = [rng.standard_normal((t, 3)).astype(np.float32) for t in (6, 5)]
    return model.evaluate((xs, ["ab", "b"]))["loss"], model.predict(xs)


@pytest.mark.parametrize("model", _models(), ids=lambda m: m.kind)
def test_every_model_quantizes_infers_and_round_trips(model, tmp_path):
    q = seqcore.quantize(model)
    assert q.quantized and not model.quantized and q.optimizer is None
    kinds = {name: type(layer).__name__ for name, layer in q.layers.items()
             if getattr(layer, "qweights", None)}
    assert "rnn" in kinds or "encoder" in kinds
    if model.kind == "LanguageModel":                      # tied: one array, one int8 copy
        assert "W" not in q.out.params and "W" not in q.inputs.params
        assert q.out.qweights["W"][0] is q.inputs.qweights["W"][0]
    for name, layer in q.layers.items():             # inference only: no gradient buffers
        if getattr(layer, "qweights", None):
            assert layer.grads == {}
            assert model.layers[name].grads        # the float model keeps its own
    for name, _, grad in q.parameters():
        assert (grad is None) == bool(getattr(q.layers[name.split(".")[0]], "qweights", None))
    assert q.num_parameters() == model.num_parameters()
    float_bytes = sum(p.nbytes for _, p, _ in model.parameters())
    held = (sum(p.nbytes for _, p, _ in q.parameters())
            + sum(qv.nbytes + s.nbytes for _, qv, s in q.int8_weights()))
    assert held < 0.5 * float_bytes              # int8 in place of the float weights
    got = _use(q, np.random.default_rng(0))
    assert np.isfinite(got[0])
    path = q.save(tmp_path / "q.npz")
    loaded = seqcore.load(path)
    assert loaded.quantized and loaded.config() == q.config()
    for name, layer in q.layers.items():
        for key, (qv, scale) in (getattr(layer, "qweights", None) or {}).items():
            lq, ls = loaded.layers[name].qweights[key]
            np.testing.assert_array_equal(lq, qv)
            np.testing.assert_array_equal(ls, scale)
    again = _use(loaded, np.random.default_rng(0))
    assert repr(again) == repr(got)
    with pytest.raises(TypeError, match="fit: this .* is quantized for inference"):
        loaded.fit(None, steps=1)


def test_two_threads_on_one_quantized_model():
    """Two Python threads quantize, step and sample the same model at once: each gets
    what it gets alone (the model's lock serializes the layers' one-token kernels and
    their workspaces)."""
    import threading
    lm = seqcore.LanguageModel(VOCAB, hidden_size=32, embedding_dim=16, seed=0)
    q = seqcore.quantize(lm)
    want = q.sample(3, max_len=20, seed=7)
    got, errors = [], []

    def work():
        try:
            for _ in range(5):
                got.append(q.sample(3, max_len=20, seed=7))
                seqcore.quantize(lm)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert got == [want] * 10


def test_a_damaged_int8_entry_is_one_clear_error(tmp_path):
    q = seqcore.quantize(seqcore.LanguageModel(VOCAB, hidden_size=8, seed=0))
    q.save(tmp_path / "q.npz")
    with np.load(tmp_path / "q.npz") as f:
        arrays = {k: f[k] for k in f.files}
    del arrays["sha256"]
    arrays["qparam/rnn.W_l0"] = arrays["qparam/rnn.W_l0"].astype(np.int16)
    arrays["sha256"] = np.array(sio._digest(arrays))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=r"int8 weight rnn\.W_l0: dtype int16"):
        seqcore.load(tmp_path / "bad.npz")
    del arrays["sha256"], arrays["qscale/rnn.W_l0"]
    arrays["qparam/rnn.W_l0"] = arrays["qparam/rnn.W_l0"].astype(np.int8)
    arrays["sha256"] = np.array(sio._digest(arrays))
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="weights do not match the architecture"):
        seqcore.load(tmp_path / "bad.npz")


def test_the_command_line_quantizes_then_samples_and_evaluates(tmp_path, capsys):
    lm = seqcore.LanguageModel(VOCAB, hidden_size=32, seed=0)
    lm.fit(["hello world", "held low"], steps=3, progress=False)
    lm.save(tmp_path / "lm.npz")
    assert main(["quantize", str(tmp_path / "lm.npz"), str(tmp_path / "q.npz")]) == 0
    out = capsys.readouterr().out
    assert "int8 weights" in out and "weights:" in out and "smaller" in out
    ratio = float(out.split("(")[1].split("x smaller")[0])
    before = sum(p.nbytes for _, p, _ in lm.parameters())
    after = sum(p.size + 4 * p.shape[0] if name in ("rnn.W_l0", "out.W") else p.nbytes
                for name, p, _ in lm.parameters())  # int8, and a float32 scale per row
    assert ratio == round(before / after, 2) and ratio > 3
    (tmp_path / "t.txt").write_text("hello world\nheld low\n")
    assert main(["sample", str(tmp_path / "q.npz"), "--n", "2", "--seed", "1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["evaluate", str(tmp_path / "q.npz"), str(tmp_path / "t.txt")]) == 0
    assert "perplexity" in capsys.readouterr().out
    (tmp_path / "junk.npz").write_bytes(b"junk")
    assert main(["quantize", str(tmp_path / "junk.npz"), str(tmp_path / "o.npz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("seqcore: error: ") and err.count("\n") == 1


def test_a_quantized_layer_or_model_is_not_exported(tmp_path):
    """It holds no float weights: the exports name the float model instead."""
    from seqcore.interop import to_torch
    pytest.importorskip("onnx")
    lstm = seqcore.quantize(seqcore.LSTM(4, 5, seed=0))
    with pytest.raises(TypeError, match="to_torch: this LSTM has int8 weights"):
        to_torch(lstm)
    with pytest.raises(TypeError, match="export: this LSTM has int8 weights"):
        seqcore.onnx.export(lstm, tmp_path / "q.onnx")


def test_int8_sums_of_long_rows_do_not_overflow(kernel_path):
    """140,000 columns of products 127 * 127 sum to 2.26e9, past int32: the chunks'
    sums go to int64 (_q8.h), and the result is exact."""
    K = 140_000
    dense = seqcore.Dense(K, 2, dtype=np.float64, seed=0)
    dense.params["W"][:] = 1.0
    dense.params["W"][1, ::2] = -1.0
    dense.params["b"][:] = 0
    y = seqcore.quantize(dense).forward(np.ones((1, K)))
    np.testing.assert_allclose(y[0], [K, 0.0], rtol=1e-12, atol=1e-9)
