"""LanguageModel.score: each text's log-probability, <EOS> included, against evaluate, the NumPy reference and PyTorch."""
import importlib.util

import numpy as np
import pytest

import seqcore
from _cases import randomize

HAVE_TORCH = importlib.util.find_spec("torch") is not None
TRAIN = ["the cat sat", "a dog", "cats and dogs", "x" * 90, "sat on the mat"] * 3
# Lines longer than a window, one token, none at all, and a symbol outside the vocabulary.
TEXTS = ["the cat", "a" * 150, "d", "", "dogs sat on a cat", "z?!", "mat"]


def _model(dtype=np.float64, backend="cython", **kw):
    kw = {"hidden_size": 6, "seed": 3, **kw}
    lm = seqcore.LanguageModel(seqcore.Vocab.build(TRAIN), dtype=dtype, backend=backend, **kw)
    randomize(lm, np.random.default_rng(7))        # weights far from a uniform model
    return lm


def _tokens(lm, texts):
    return sum(len(lm.vocab.encode(t)) + 1 for t in texts)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-6)])
@pytest.mark.parametrize("cell, embedding_dim", [("lstm", None), ("gru", 5), ("rnn", 4)])
def test_minus_the_summed_scores_over_the_tokens_is_evaluates_loss(cell, embedding_dim, dtype,
                                                                   rtol):
    lm = _model(dtype, cell=cell, embedding_dim=embedding_dim, num_layers=2)
    scores, per_token = lm.score(TEXTS, per_token=True)
    held = lm.evaluate(TEXTS, batch_size=3, seq_len=16)
    assert held["tokens"] == _tokens(lm, TEXTS)
    np.testing.assert_allclose(-scores.sum() / held["tokens"], held["token_loss"], rtol=rtol)
    np.testing.assert_allclose(-scores.sum(), held["total"], rtol=rtol)
    assert scores.dtype == np.float64 and scores.shape == (len(TEXTS),)
    assert np.all(scores < 0)
    for text, s, lp in zip(TEXTS, scores, per_token):
        assert lp.shape == (len(lm.vocab.encode(text)) + 1,)     # the tokens, then <EOS>
        assert np.all(lp <= 0)
        assert lp.sum() == pytest.approx(s, rel=1e-12)
    # Each text alone: the same number, whatever batch it was scored in.
    for text, s in zip(TEXTS, scores):
        alone = lm.evaluate([text], batch_size=1)
        np.testing.assert_allclose(-s, alone["total"], rtol=rtol)


def test_batches_and_windows_do_not_change_the_scores():
    lm = _model()
    base = lm.score(TEXTS)
    for batch_size, seq_len in [(1, 1), (2, 7), (64, 1000)]:
        np.testing.assert_allclose(lm.score(TEXTS, batch_size=batch_size, seq_len=seq_len),
                                   base, rtol=1e-12)
    assert np.array_equal(lm.score(TEXTS[::-1]), base[::-1])


def _reference_log_probs(lm, text):
    """log P of each target of ``text`` from the NumPy reference backend, one text, no padding."""
    ref = _model(backend="numpy", hidden_size=lm.hidden_size, cell=lm.cell,
                 embedding_dim=lm.embedding_dim, num_layers=lm.num_layers)
    for (name, p, _), (_, q, _) in zip(ref.parameters(), lm.parameters()):
        p[...] = q
    ids = [seqcore.text.NO_TOKEN] + lm.vocab.encode(text)
    logits, _ = ref.forward(np.array(ids)[:, None])                  # (T, 1, V)
    z = logits[:, 0].astype(np.float64)
    logp = z - z.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    targets = lm.vocab.encode(text) + [lm.vocab.eos_id]
    return logp[np.arange(len(targets)), targets]


def test_scores_equal_the_numpy_reference_text_by_text():
    lm = _model(cell="gru", embedding_dim=4, num_layers=2)
    _, per_token = lm.score(TEXTS, per_token=True)
    for text, lp in zip(TEXTS, per_token):
        np.testing.assert_allclose(lp, _reference_log_probs(lm, text), rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
@pytest.mark.parametrize("cell, embedding_dim", [("lstm", None), ("gru", 5)])
def test_scores_equal_pytorch_from_the_same_weights(cell, embedding_dim):
    import torch
    from seqcore.interop import to_torch
    options = {"reset_after": True} if cell == "gru" else {}
    lm = _model(cell=cell, embedding_dim=embedding_dim, **options)
    scores, per_token = lm.score(TEXTS, per_token=True)
    rnn = to_torch(lm.rnn)
    V = len(lm.vocab)
    W_out = torch.from_numpy(lm.out.params["W"])
    b_out = torch.from_numpy(lm.out.params["b"])
    for text, s, lp in zip(TEXTS, scores, per_token):
        ids = torch.tensor([-1] + lm.vocab.encode(text))
        if embedding_dim is None:                   # 1-hot, x<1> = 0
            x = torch.nn.functional.one_hot(ids.clamp(min=0), V).double() * (ids >= 0)[:, None]
        else:
            x = torch.from_numpy(lm.inputs.params["W"])[ids.clamp(min=0)] * (ids >= 0)[:, None]
        with torch.no_grad():
            a, _ = rnn(x[:, None, :])
            logp = torch.log_softmax(a[:, 0] @ W_out.T + b_out, dim=1)
        targets = torch.tensor(lm.vocab.encode(text) + [lm.vocab.eos_id])
        want = logp[torch.arange(len(targets)), targets].numpy()
        np.testing.assert_allclose(lp, want, rtol=1e-10, atol=1e-12)
        assert s == pytest.approx(want.sum(), rel=1e-10)


def test_scores_rank_texts_like_the_training_data_first():
    lm = seqcore.LanguageModel(seqcore.Vocab.build(TRAIN), hidden_size=16, seed=0)
    lm.fit(TRAIN, steps=150, batch_size=8, lr=0.02, progress=False, seed=0)
    seen, shuffled = "cats and dogs", "dsgo atcsnd a"   # the same characters
    scores = lm.score([seen, shuffled])
    assert scores[0] > scores[1] + 5                    # e^5: far more probable


def test_score_runs_in_evaluation_mode_and_restores_the_mode():
    lm = _model(dropout=0.5, num_layers=2)
    lm.train()
    first, second = lm.score(TEXTS), lm.score(TEXTS)
    assert np.array_equal(first, second) and lm.training
    lm.eval()
    assert np.array_equal(lm.score(TEXTS), first) and not lm.training


def test_score_checks_its_arguments():
    lm = _model()
    assert lm.score([]).shape == (0,)
    scores, per_token = lm.score([], per_token=True)
    assert scores.shape == (0,) and per_token == []
    with pytest.raises(TypeError, match="texts: expected a list of texts, got one string"):
        lm.score("the cat")
    with pytest.raises(TypeError, match="per_token: expected True or False"):
        lm.score(TEXTS, per_token="yes")
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 1"):
        lm.score(TEXTS, batch_size=0)
    with pytest.raises(TypeError, match="seq_len: expected an integer"):
        lm.score(TEXTS, seq_len=2.5)
    stream = _model()
    stream.fit(" ".join(TRAIN), steps=1, stream=True, batch_size=2, progress=False)
    with pytest.raises(ValueError, match="score: this model reads running text"):
        stream.score(TEXTS)
