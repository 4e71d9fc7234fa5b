"""ONNX export of the models, driven in onnxruntime: each graph reproduces the model's
own results, on every kernel path this CPU runs.

- SequenceClassifier (tokens and features) and SequenceTagger: ``predict``, and the
  logits within 1e-5 relative;
- LanguageModel: ``evaluate``'s loss, from the graph's logits on the same padded
  batches, and greedy ``sample``, token by token with the state carried;
- Seq2Seq (no attention, Bahdanau, Luong, dot): ``translate(beam_size=1)``, from the
  encoder graph and the decoder step graph.
"""
import numpy as np
import pytest

import seqcore
from seqcore.data import pad_features, pad_ids

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

RTOL = 1e-5
VOCAB = seqcore.Vocab.build(["abcdefgh"])
WORDS = ["abc", "bad", "cafe", "fade", "deaf", "bead", "aged", "head", "ace", "gab",
         "hedge", "badge"]


def _session(path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(sess, feed):
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))


def _rel(actual, expected):
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-30))


def _checked(model, path):
    written = seqcore.onnx.export(model, path)
    for m in (written.values() if isinstance(written, dict) else [written]):
        onnx.checker.check_model(m, full_check=True)
    return written


@pytest.mark.parametrize("cell, options", [("lstm", {"peephole": True}), ("gru", {}),
                                           ("rnn", {"nonlinearity": "relu"})])
def test_classifier_from_token_ids(cell, options, kernel_path, tmp_path):
    model = seqcore.SequenceClassifier(3, vocab=VOCAB, cell=cell, hidden_size=10,
                                       embedding_dim=5, num_layers=2, bidirectional=True,
                                       seed=4, **options)
    model.fit((WORDS, [i % 3 for i in range(len(WORDS))]), steps=25, progress=False)
    _checked(model, tmp_path / "c.onnx")
    ids, lengths = pad_ids([VOCAB.encode(w) for w in WORDS])
    logits = _run(_session(tmp_path / "c.onnx"), {"ids": ids, "lengths": lengths})["logits"]
    assert _rel(logits, model.forward(ids, lengths)) < RTOL
    assert np.array_equal(logits.argmax(axis=1), model.predict(WORDS))


def test_classifier_from_features_and_one_hot_tagger(kernel_path, tmp_path, rng):
    model = seqcore.SequenceClassifier(2, input_size=4, cell="gru", hidden_size=9,
                                       reset_after=True, seed=5)
    xs = [rng.standard_normal((n, 4)).astype(np.float32) for n in (3, 7, 1, 5)]
    model.fit((xs, [0, 1, 1, 0]), steps=10, progress=False)
    _checked(model, tmp_path / "f.onnx")
    x, lengths = pad_features(xs, np.float32)
    logits = _run(_session(tmp_path / "f.onnx"), {"x": x, "lengths": lengths})["logits"]
    assert np.array_equal(logits.argmax(axis=1), model.predict(xs))
    assert _rel(logits, model.forward(x, lengths)) < RTOL
    tagger = seqcore.SequenceTagger(4, vocab=VOCAB, cell="lstm", hidden_size=8, seed=6)
    tagger.fit((WORDS, [[i % 4 for i in range(len(w))] for w in WORDS]), steps=15,
               progress=False)
    _checked(tagger, tmp_path / "t.onnx")
    ids, lengths = pad_ids([VOCAB.encode(w) for w in WORDS])
    logits = _run(_session(tmp_path / "t.onnx"), {"ids": ids, "lengths": lengths})["logits"]
    assert logits.shape == (ids.shape[0], len(WORDS), 4)
    for b, tags in enumerate(tagger.predict(WORDS)):
        assert np.array_equal(logits[:len(tags), b].argmax(axis=-1), tags)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_tagger_logits(bidirectional, kernel_path, tmp_path):
    tagger = seqcore.SequenceTagger(4, vocab=VOCAB, cell="gru", hidden_size=8,
                                    embedding_dim=4, bidirectional=bidirectional, seed=6)
    _checked(tagger, tmp_path / "t.onnx")
    ids, lengths = pad_ids([VOCAB.encode(w) for w in WORDS])
    logits = _run(_session(tmp_path / "t.onnx"), {"ids": ids, "lengths": lengths})["logits"]
    want = tagger.forward(ids, lengths)
    valid = np.arange(ids.shape[0])[:, None] < lengths[None, :]
    assert _rel(logits[valid], want[valid]) < RTOL


@pytest.mark.parametrize("cell, embedding_dim, tie", [("lstm", None, False), ("gru", 12, True),
                                                      ("rnn", 6, False)])
def test_language_model_loss_and_greedy_generation(cell, embedding_dim, tie, kernel_path,
                                                   tmp_path):
    model = seqcore.LanguageModel(VOCAB, cell=cell, hidden_size=12, num_layers=2,
                                  embedding_dim=embedding_dim, tie_weights=tie, seed=3)
    model.fit(WORDS, steps=40, batch_size=4, progress=False)
    _checked(model, tmp_path / "lm.onnx")
    sess = _session(tmp_path / "lm.onnx")
    # evaluate's loss, from the graph's logits on the model's own held-out batches
    total = sequences = 0.0
    for batch in model.batches(WORDS, 5, None, train=False):
        logits = _run(sess, {"ids": batch["x"], "lengths": batch["lengths"]})["logits"]
        loss, _ = seqcore.softmax_cross_entropy(logits, batch["y"], batch["mask"])
        total += loss * batch["size"]
        sequences += batch["size"]
    assert abs(total / sequences - model.evaluate(WORDS, batch_size=5)["loss"]) < 1e-4
    # greedy generation, token by token, the state fed back
    state_names = ["a", "c"] if cell == "lstm" else ["a"]
    feed = {"ids": np.full((1, 3), -1, np.int64), "lengths": np.ones(3, np.int64)}
    texts, done = [[] for _ in range(3)], np.zeros(3, bool)
    for _ in range(25):
        out = _run(sess, feed)
        logits = out["logits"][-1].astype(np.float64)
        logits[:, VOCAB.unk_id] = -np.inf
        tok = logits.argmax(axis=1)
        for b in np.flatnonzero(~done):
            if tok[b] == VOCAB.eos_id:
                done[b] = True
            else:
                texts[b].append(int(tok[b]))
        if done.all():
            break
        feed = {"ids": tok[None].astype(np.int64), "lengths": np.ones(3, np.int64),
                **{f"{n}0": out[n] for n in state_names}}
    assert [VOCAB.decode(t) for t in texts] == model.sample(3, greedy=True, seed=7, max_len=25)


SRC = seqcore.Vocab.build(["0123456789 "])
TGT = seqcore.Vocab.build(["0123456789-"])
PAIRS = [(f"{a} {b}", f"{b}-{a}") for a, b in [(1, 22), (333, 4), (56, 78), (9, 10),
                                                (12, 345), (7, 8)]]


@pytest.mark.parametrize("attention, bidirectional, cell, reverse", [
    (None, False, "lstm", False), ("bahdanau", True, "gru", True),
    ("luong", True, "lstm", False), ("dot", False, "rnn", True)])
def test_seq2seq_translates_as_the_model_does(attention, bidirectional, cell, reverse,
                                              kernel_path, tmp_path):
    model = seqcore.Seq2Seq(SRC, TGT, cell=cell, hidden_size=16, embedding_dim=8,
                            attention=attention, bidirectional_encoder=bidirectional,
                            reverse_source=reverse, num_layers=2, seed=1)
    model.fit(PAIRS, steps=40, batch_size=6, progress=False)
    paths = seqcore.onnx.seq2seq_paths(tmp_path / "s2s.onnx")
    assert set(_checked(model, tmp_path / "s2s.onnx")) == {"encoder", "decoder"}
    encoder, decoder = _session(paths["encoder"]), _session(paths["decoder"])
    sources = [p[0] for p in PAIRS]
    # the ids as the encoder reads them: source_tokens (reversed if reverse_source, <EOS>)
    ids, lengths = pad_ids([[SRC.eos_id if tok == "<EOS>" else SRC.encode(tok)[0]
                             for tok in model.source_tokens(s)] for s in sources])
    enc = _run(encoder, {"src_ids": ids, "src_lengths": lengths})
    state = {"a0": enc["a"], **({"c0": enc["c"]} if cell == "lstm" else {})}
    token = np.full(len(sources), -1, np.int64)
    out, done = [[] for _ in sources], np.zeros(len(sources), bool)
    for _ in range(30):
        feed = {"token": token, **state}
        if attention:
            feed.update(memory=enc["memory"], keys=enc["keys"], src_lengths=lengths)
        step = _run(decoder, feed)
        logits = step["logits"].astype(np.float64)
        logits[:, TGT.unk_id] = -np.inf
        token = logits.argmax(axis=1).astype(np.int64)
        for b in np.flatnonzero(~done):
            if token[b] == TGT.eos_id:
                done[b] = True
            else:
                out[b].append(int(token[b]))
        if attention:
            assert np.allclose(step["alpha"].sum(axis=1), 1, atol=1e-5)
            assert not step["alpha"][np.arange(ids.shape[0])[None, :] >= lengths[:, None]].any()
        if done.all():
            break
        state = {"a0": step["a"], **({"c0": step["c"]} if cell == "lstm" else {})}
    assert [TGT.decode(o) for o in out] == model.translate(sources, beam_size=1, max_len=30)


def test_models_other_than_these_are_refused(tmp_path):
    from seqcore.experiments import AddingRegressor
    with pytest.raises(TypeError, match="obj: expected a seqcore RNN"):
        seqcore.onnx.export(AddingRegressor(hidden_size=4), tmp_path / "a.onnx")
    with pytest.raises(TypeError, match="float32 only"):
        seqcore.onnx.export(seqcore.LanguageModel(VOCAB, hidden_size=4, dtype=np.float64),
                            tmp_path / "lm.onnx")


def test_transcriber_logits_and_transcripts(kernel_path, tmp_path, rng):
    labels = seqcore.Vocab.build(["abc"])
    model = seqcore.SequenceTranscriber(labels, input_size=4, hidden_size=6, seed=2)
    xs = [rng.standard_normal((n, 4)).astype(np.float32) for n in (5, 9, 3)]
    model.fit((xs, ["ab", "cab", "c"]), steps=10, progress=False)
    _checked(model, tmp_path / "t.onnx")
    x, lengths = pad_features(xs, np.float32)
    logits = _run(_session(tmp_path / "t.onnx"), {"x": x, "lengths": lengths})["logits"]
    valid = np.arange(x.shape[0])[:, None] < lengths[None, :]
    assert _rel(logits[valid], model.forward(x, lengths)[valid]) < RTOL
    paths = seqcore.ctc_greedy_decode(logits, lengths)
    assert [labels.decode([c - 1 for c in p]) for p in paths] == model.predict(xs)
