"""SequenceTranscriber: its gradients against finite differences (float64), both
backends training alike, learning a task with no alignment given, the model file,
error rates, and bad data refused by name."""
import numpy as np
import pytest

import seqcore
from _cases import check_model_gradients

LABELS = seqcore.Vocab.build(["abcd"])
CHARS = "abcd"


def _frames(text, rng, D=6):
    """A feature sequence that spells ``text`` with no alignment: each character held
    for 1-3 noisy frames of its own code, runs of noise frames in between."""
    rows = []
    for ch in text:
        for _ in range(int(rng.integers(0, 3))):                  # gaps of 0-2 frames
            rows.append(rng.normal(0, 0.3, D))
        code = np.zeros(D)
        code[CHARS.index(ch)] = 2.0
        for _ in range(int(rng.integers(1, 4))):
            rows.append(code + rng.normal(0, 0.3, D))
        rows.append(rng.normal(0, 0.3, D))                         # repeats need a gap
    return np.array(rows)


def _data(n, rng, dtype=np.float32):
    texts = ["".join(rng.choice(list(CHARS), int(rng.integers(1, 7)))) for _ in range(n)]
    return [_frames(t, rng).astype(dtype) for t in texts], texts


@pytest.mark.parametrize("cell, options", [("lstm", {"peephole": True}), ("gru", {}),
                                           ("rnn", {})])
def test_gradients_match_finite_differences(cell, options, rng):
    model = seqcore.SequenceTranscriber(LABELS, input_size=6, cell=cell, hidden_size=5,
                                        dtype=np.float64, backend="numpy", seed=1, **options)
    xs, texts = _data(4, rng, np.float64)
    batch = next(model.batches((xs, texts), 4, None, train=False))
    assert check_model_gradients(model, batch, rng) == {"rnn", "out"}


def test_token_inputs_and_gradients(rng):
    vocab = seqcore.Vocab.build(["xyz"])
    model = seqcore.SequenceTranscriber(LABELS, vocab=vocab, embedding_dim=3, hidden_size=4,
                                        dtype=np.float64, seed=2)
    batch = next(model.batches((["xxyyzz", "zyzyzy"], ["ab", "cd"]), 2, None, train=False))
    assert check_model_gradients(model, batch, rng) == {"inputs", "rnn", "out"}


def test_both_backends_train_alike(rng):
    xs, texts = _data(12, rng, np.float64)
    losses = {}
    for backend in ("cython", "numpy"):
        model = seqcore.SequenceTranscriber(LABELS, input_size=6, hidden_size=8,
                                            dtype=np.float64, backend=backend, seed=3)
        losses[backend] = model.fit((xs, texts), steps=8, batch_size=4, lr=1e-2, seed=1,
                                    progress=False)["loss"]
    np.testing.assert_allclose(losses["numpy"], losses["cython"], rtol=1e-9)


def test_it_learns_to_transcribe_without_alignments(rng):
    train, valid = _data(400, rng), _data(60, rng)
    model = seqcore.SequenceTranscriber(LABELS, input_size=6, hidden_size=24, seed=4)
    before = model.evaluate(valid)
    model.fit(train, steps=300, batch_size=16, lr=1e-2, progress=False, seed=0)
    after = model.evaluate(valid)
    assert after["loss"] < before["loss"] / 4
    assert after["cer"] < 0.05 <= before["cer"]
    assert 0 <= after["wer"] <= 1
    hyps = model.predict(valid[0])
    assert sum(h == t for h, t in zip(hyps, valid[1])) >= 0.8 * len(hyps)
    assert model.predict(valid[0][:5], beam_size=4) == hyps[:5]    # a clear model: the same


def test_the_model_file_round_trips(tmp_path, rng):
    xs, texts = _data(8, rng)
    model = seqcore.SequenceTranscriber(LABELS, input_size=6, hidden_size=6, cell="gru",
                                        reset_after=True, seed=5)
    model.fit((xs, texts), steps=3, batch_size=4, progress=False)
    model.save(tmp_path / "t.npz")
    back = seqcore.load(tmp_path / "t.npz")
    assert type(back) is seqcore.SequenceTranscriber and back.config() == model.config()
    assert back.predict(xs) == model.predict(xs)
    np.testing.assert_array_equal(back.forward(*model._pad(xs)), model.forward(*model._pad(xs)))


def test_bad_data_is_refused_by_name(rng):
    model = seqcore.SequenceTranscriber(LABELS, input_size=6, hidden_size=4, seed=0)
    xs, texts = _data(3, rng)
    with pytest.raises(TypeError, match="label_vocab: expected a seqcore.Vocab"):
        seqcore.SequenceTranscriber("abcd", input_size=6)
    with pytest.raises(TypeError, match=r"data\[1\]"):
        model.fit((xs, [1, 2, 3]), steps=1, progress=False)
    with pytest.raises(ValueError, match="one text per sequence"):
        model.fit((xs, texts[:2]), steps=1, progress=False)
    with pytest.raises(ValueError, match="zero_infinity"):            # 5 labels, 2 frames
        model.fit(([xs[0][:2]], ["abcda"]), steps=1, progress=False)
    with pytest.raises(ValueError, match="lm: shallow fusion needs beam search"):
        model.predict(xs, lm=seqcore.LanguageModel(LABELS, hidden_size=4))
