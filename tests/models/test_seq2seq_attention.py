"""Seq2Seq with attention and a bidirectional encoder: gradients against finite differences
(float64, NumPy backend), float32 vs float64, decoding (greedy, beam, attention weights),
save/load, option checks, a tiny learning task and the translate-demo command."""
import time

import numpy as np
import pytest

import seqcore
from _cases import check_model_gradients, randomize as _randomize
from seqcore.models.seq2seq import plot_attention

EPS = 1e-6
SRC = seqcore.Vocab.build(["0123456789"])
TGT = seqcore.Vocab.build(["abcdef"])
PAIRS = [("12", "abcd"), ("98765", "e"), ("5", "ff"), ("0314", "abc")]   # padded both sides


def _model(attention, bidirectional=True, cell="lstm", dtype=np.float64, backend="numpy",
           seed=4, **kw):
    return seqcore.Seq2Seq(SRC, TGT, cell=cell, hidden_size=4, num_layers=2, embedding_dim=3,
                           attention=attention, bidirectional_encoder=bidirectional,
                           dtype=dtype, backend=backend, seed=seed, **kw)


def _check_gradients(model, batch, rng, n=5, full=("attention.", "combine.")):
    """Every parameter tensor at n random entries (all entries of the attention and combine
    params) against central differences."""
    return check_model_gradients(model, batch, rng, n=n, full=full)


@pytest.mark.parametrize("attention,bidirectional,cell", [
    ("bahdanau", True, "lstm"), ("luong", True, "gru"), ("dot", False, "lstm"),
    (None, True, "lstm"), (None, True, "gru"), ("bahdanau", False, "gru")])
def test_gradients_match_finite_differences(attention, bidirectional, cell, rng):
    model = _model(attention, bidirectional, cell)
    _randomize(model, rng)
    batch = next(model.batches(PAIRS, 4, None, train=False))
    assert len(set(batch["src_lengths"])) > 1 and len(set(batch["lengths"])) > 1
    checked = _check_gradients(model, batch, rng)
    want = {"src_inputs", "encoder", "tgt_inputs", "decoder", "out"}
    if attention is not None:
        want |= {"combine"} | ({"attention"} if attention != "dot" else set())
    assert checked == want
    # The encoder's reverse direction learns (through the bridge, and the attention).
    if bidirectional:
        assert np.abs(model.encoder.grads["W_l1_reverse"]).max() > 0


def test_dot_attention_has_no_parameters_but_is_a_layer():
    model = _model("dot", bidirectional=False)
    assert "attention" in model.layers and model.attention.params == {}
    assert not any(n.startswith("attention.") for n, _, _ in model.parameters())


def test_attention_changes_the_cost_and_padding_does_not(rng):
    """Padded source steps get no attention: a batch costs the mean of its examples alone."""
    model = _model("luong")
    _randomize(model, rng)
    together = model.evaluate(PAIRS, batch_size=4)["loss"]
    alone = np.mean([model.evaluate([p], batch_size=1)["loss"] for p in PAIRS])
    assert together == pytest.approx(alone, rel=1e-12)


@pytest.mark.parametrize("attention", ["bahdanau", "luong"])
def test_float32_agrees_with_float64(attention, rng):
    m64 = _model(attention, dtype=np.float64, backend="cython", seed=1)
    m32 = _model(attention, dtype=np.float32, backend="cython", seed=1)
    for (_, p64, _), (_, p32, _) in zip(m64.parameters(), m32.parameters()):
        p64[...] = rng.uniform(-0.5, 0.5, p64.shape)
        p32[...] = p64
    batch = next(m64.batches(PAIRS, 4, None, train=False))
    l64, _ = m64.loss_and_grads(batch)
    l32, _ = m32.loss_and_grads(batch)
    assert l32 == pytest.approx(l64, rel=1e-5)
    for (name, _, g64), (_, _, g32) in zip(m64.parameters(), m32.parameters()):
        np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("attention", [None, "bahdanau", "dot"])
def test_beam_size_one_is_greedy_exactly(attention, rng):
    model = _model(attention, bidirectional=attention != "dot", dtype=np.float32,
                   backend="cython", seed=2)
    _randomize(model, rng, scale=1.5)
    sources = ["12", "98765", "5", "0314", "777"]
    greedy = model.translate(sources, max_len=8)
    ids_b, _ = model._beam(sources, 1, 8, 0.0, (TGT.unk_id,), False)
    ids_g, _ = model._draw(sources, True, 1.0, None, None, 8, (TGT.unk_id,), False)
    assert ids_b == ids_g and [TGT.decode(t) for t in ids_b] == greedy
    assert any(len(t) > 0 for t in ids_g)                   # not a trivial all-empty output
    beam = model.translate(sources, max_len=8, beam_size=3)
    assert len(beam) == len(sources)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_attention_weights_per_example(beam_size, rng):
    model = _model("bahdanau", dtype=np.float64, backend="cython", seed=3)
    _randomize(model, rng, scale=1.5)
    sources = ["12", "98765", "5"]
    texts, attn = model.translate(sources, max_len=6, beam_size=beam_size,
                                  return_attention=True)
    ids, _ = (model._beam(sources, beam_size, 6, 0.0, (TGT.unk_id,), False) if beam_size > 1
              else model._draw(sources, True, 1.0, None, None, 6, (TGT.unk_id,), False))
    for s, t, ids_i, a in zip(sources, texts, ids, attn):
        tx = len(s) + 1                                     # its tokens + <EOS>
        assert len(model.source_tokens(s)) == tx
        ended = len(ids_i) < 6
        assert a.shape == (len(ids_i) + 1 if ended else 6, tx)
        np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=1e-12)
        assert (a >= 0).all()
    # Greedy weights equal those of a teacher-forced pass over the greedy output.
    if beam_size == 1:
        pairs = list(zip(sources, texts))
        batch = next(model.batches(pairs, 3, None, train=False))
        S_logits = model.forward(batch["src"], batch["src_lengths"], batch["x"], batch["lengths"])
        assert S_logits.shape[1] == 3
        h_enc, st = model._encode(batch["src"], batch["src_lengths"])
        S, _ = model.decoder.forward(model.tgt_inputs.forward(batch["x"]), st, batch["lengths"])
        _, alpha = model.attention.forward(S, h_enc, batch["src_lengths"])   # (Ty, B, Tx)
        for b, a in enumerate(attn):
            if len(ids[b]) < 6:
                np.testing.assert_allclose(alpha[:a.shape[0], b, :a.shape[1]], a, rtol=1e-10)
                assert np.all(alpha[:, b, a.shape[1]:] == 0)   # zero beyond its source


def test_save_load_round_trip_keeps_translations(tmp_path, rng):
    model = _model("luong", dtype=np.float32, backend="cython", seed=5, reverse_source=True)
    _randomize(model, rng, scale=1.5)
    path = model.save(tmp_path / "m.npz")
    back = seqcore.load(path)
    assert back.attention_kind == "luong" and back.bidirectional_encoder
    sources = ["12", "98765", "5"]
    assert back.translate(sources, max_len=8) == model.translate(sources, max_len=8)
    a1 = model.translate(sources, max_len=8, return_attention=True, beam_size=2)[1]
    a2 = back.translate(sources, max_len=8, return_attention=True, beam_size=2)[1]
    for x, y in zip(a1, a2):
        np.testing.assert_array_equal(x, y)


def test_invalid_options_raise_clear_errors():
    with pytest.raises(ValueError, match="attention"):
        _model("general")
    with pytest.raises(ValueError, match="dot.*bidirectional"):
        _model("dot", bidirectional=True)
    with pytest.raises(TypeError, match="bidirectional_encoder"):
        _model(None, bidirectional="yes")
    with pytest.raises(ValueError, match="attention_size"):
        _model(None, attention_size=8)
    plain = _model(None)
    with pytest.raises(ValueError, match="no attention"):
        plain.translate(["12"], return_attention=True)
    att = _model("luong")
    with pytest.raises(ValueError, match="beam_size"):
        att.translate(["12"], beam_size=0)
    with pytest.raises(ValueError, match="deterministic"):
        att.translate(["12"], beam_size=2, greedy=False)
    with pytest.raises(ValueError, match="length_penalty"):
        att.translate(["12"], beam_size=2, length_penalty=-1)


def test_evaluate_adds_exact_match_and_bleu_on_request(rng):
    model = _model("luong", dtype=np.float32, backend="cython", seed=6)
    base = model.evaluate(PAIRS)
    assert "exact_match" not in base
    full = model.evaluate(PAIRS, metrics=True, beam_size=2, max_len=6)
    assert full["loss"] == base["loss"]
    hyps = model.translate([s for s, _ in PAIRS], beam_size=2, max_len=6)
    want = np.mean([h == t for h, (_, t) in zip(hyps, PAIRS)])
    assert full["exact_match"] == want
    assert 0 <= full["bleu"] <= 100
    perfect = model.evaluate([(s, h) for (s, _), h in zip(PAIRS, hyps)], metrics=True,
                             beam_size=2, max_len=6)
    assert perfect["exact_match"] == 1.0


def test_plot_attention_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = plot_attention(np.full((3, 4), 0.25), list("12") + [" ", "<EOS>"],
                          ["a", "b", "<EOS>"], tmp_path / "a.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="source_tokens"):
        plot_attention(np.zeros((3, 4)), ["x"], ["a", "b", "c"], tmp_path / "b.png")


def test_attention_learns_to_reverse_short_sequences():
    rng = np.random.default_rng(0)
    digits = list("0123456789")

    def pairs(n):
        out = []
        for _ in range(n):
            s = "".join(rng.choice(digits, rng.integers(3, 8)))
            out.append((s, s[::-1]))
        return out

    train, test = pairs(3000), pairs(200)
    tgt = seqcore.Vocab.build(["0123456789"])
    model = seqcore.Seq2Seq(SRC, tgt, cell="gru", hidden_size=32, embedding_dim=8,
                            attention="luong", bidirectional_encoder=True, seed=0)
    t0 = time.perf_counter()
    model.fit(train, steps=300, batch_size=32, lr=0.01, progress=False, seed=0)
    scores = model.evaluate(test, metrics=True)
    print(f"reverse: {time.perf_counter() - t0:.1f} s, exact {scores['exact_match']:.1%}, "
          f"BLEU {scores['bleu']:.1f}")
    assert scores["exact_match"] >= 0.8


def test_translate_demo_command(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from seqcore.cli import main
    png = tmp_path / "att.png"
    assert main(["translate-demo", "--steps", "20", "--hidden", "16", "--train-size", "500",
                 "--test-size", "20", "--plot", str(png), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "exact match" in out and "BLEU" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
