"""The whole model on the reference: backend="numpy" runs every compiled piece (the
recurrent layers, Dense, the cost, the embedding's scatter, the global norm and
Adam) on its NumPy twin, and trains exactly as the compiled core does.

Each model is built twice from one seed, once per backend, and trained for the same
steps on the same batches; the losses of every step, the held-out loss and every
weight after training agree within docs/spec.md's tolerances (float64: 1e-9 relative
after training, where the per-call agreement is ~1e-12; float32: 1e-3).
"""
import numpy as np
import pytest

import seqcore
from seqcore import _dispatch, reference
from seqcore.experiments import AddingRegressor

# after a few dozen updates, from kernels that agree to ~1e-12 (float64) / ~1e-5 (float32)
TRAINED = {np.float64: dict(rtol=1e-9, atol=1e-11), np.float32: dict(rtol=1e-3, atol=1e-4)}
STEPS = 12

VOCAB = seqcore.Vocab.build(["abcdefgh"])
WORDS = ["abc", "bad", "cafe", "fade", "deaf", "bead", "aged", "head", "ace", "gab"]


def _lm(backend, dtype):
    return seqcore.LanguageModel(VOCAB, cell="gru", hidden_size=12, embedding_dim=6,
                                 dtype=dtype, backend=backend, seed=3)


def _classifier(backend, dtype):
    return seqcore.SequenceClassifier(3, vocab=VOCAB, cell="lstm", hidden_size=10,
                                      embedding_dim=5, bidirectional=True, dtype=dtype,
                                      backend=backend, seed=4, peephole=True)


def _features_classifier(backend, dtype):
    return seqcore.SequenceClassifier(2, input_size=4, cell="rnn", hidden_size=9,
                                      num_layers=2, dtype=dtype, backend=backend, seed=5)


def _tagger(backend, dtype):
    return seqcore.SequenceTagger(4, vocab=VOCAB, cell="gru", hidden_size=8,
                                  embedding_dim=4, dtype=dtype, backend=backend, seed=6,
                                  reset_after=True)


def _seq2seq(backend, dtype):
    return seqcore.Seq2Seq(VOCAB, VOCAB, cell="lstm", hidden_size=10, embedding_dim=6,
                           attention="bahdanau", bidirectional_encoder=True, dtype=dtype,
                           backend=backend, seed=7)


def _data(kind):
    rng = np.random.default_rng(11)
    if kind == "lm":
        return WORDS
    if kind == "classifier":
        return WORDS, [int(rng.integers(3)) for _ in WORDS]
    if kind == "features":
        return ([rng.standard_normal((int(rng.integers(2, 7)), 4)) for _ in range(10)],
                [int(rng.integers(2)) for _ in range(10)])
    if kind == "tagger":
        return WORDS, [[int(rng.integers(4)) for _ in w] for w in WORDS]
    return [(w, w[::-1]) for w in WORDS]


MODELS = {"lm": _lm, "classifier": _classifier, "features": _features_classifier,
          "tagger": _tagger, "seq2seq": _seq2seq}


def _train(kind, backend, dtype):
    model = MODELS[kind](backend, dtype)
    data = _data(kind)
    history = model.fit(data, steps=STEPS, batch_size=4, lr=1e-2, clip_norm=1.0, seed=2,
                        progress=False)
    return model, history, model.evaluate(data)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", sorted(MODELS))
def test_both_backends_train_the_same(kind, dtype):
    compiled, h_c, eval_c = _train(kind, "cython", dtype)
    twin, h_n, eval_n = _train(kind, "numpy", dtype)
    assert twin.backend == "numpy" and compiled.backend == "cython"
    np.testing.assert_allclose(h_n["loss"], h_c["loss"], **TRAINED[dtype])
    assert len(h_c["loss"]) == STEPS
    np.testing.assert_allclose(eval_n["loss"], eval_c["loss"], **TRAINED[dtype])
    for (name, p_n, _), (name_c, p_c, _) in zip(twin.parameters(), compiled.parameters()):
        assert name == name_c
        np.testing.assert_allclose(p_n, p_c, **TRAINED[dtype], err_msg=name)
    # and training moved the weights: the agreement is not that of two untouched copies
    fresh = MODELS[kind]("numpy", dtype)
    moved = max(float(np.abs(p - q).max())
                for (_, p, _), (_, q, _) in zip(twin.parameters(), fresh.parameters()))
    assert moved > 1e-3


def test_adding_regressor_trains_the_same_on_both_backends():
    runs = {}
    for backend in ("cython", "numpy"):
        model = AddingRegressor(cell="lstm", hidden_size=6, dtype=np.float64, backend=backend,
                                seed=1)
        runs[backend] = model.fit(5, steps=6, batch_size=8, lr=1e-2, seed=3,
                                  progress=False)["loss"]
    np.testing.assert_allclose(runs["numpy"], runs["cython"], **TRAINED[np.float64])


class _Spy:
    """Counts the calls of every compiled training kernel of the active path."""

    def __init__(self, module):
        self.module, self.calls = module, []

    def __getattr__(self, name):
        attr = getattr(self.module, name)
        if callable(attr):
            def spied(*args, **kwargs):
                self.calls.append(name)
                return attr(*args, **kwargs)
            return spied
        return attr


def test_the_numpy_backend_calls_no_compiled_kernel(monkeypatch):
    """A fit on backend="numpy" never enters the compiled core: the training kernels are
    spied on, and the recurrent layers run seqcore.reference's cells."""
    spy = _Spy(_dispatch.train_kernels())
    monkeypatch.setattr(_dispatch, "train_kernels", lambda: spy)
    for module in ("seqcore.nn.dense", "seqcore.nn.losses", "seqcore.nn.embedding",
                   "seqcore.train.optim"):
        monkeypatch.setattr(f"{module}.train_kernels", lambda: spy)
    model = _lm("numpy", np.float64)
    assert model.rnn._kernels is reference
    model.fit(WORDS, steps=3, batch_size=4, lr=1e-2, seed=2, progress=False)
    assert spy.calls == []
    compiled = _lm("cython", np.float64)
    compiled.fit(WORDS, steps=3, batch_size=4, lr=1e-2, seed=2, progress=False)
    assert {"dense_forward", "dense_backward", "softmax_cross_entropy",
            "embedding_backward", "sum_squares", "adam_update"} <= set(spy.calls)


@pytest.mark.parametrize("bad", ["torch", "", None, 1])
def test_a_bad_backend_is_refused_by_name(bad):
    for make in (lambda: seqcore.Dense(3, 2, backend=bad),
                 lambda: seqcore.Embedding(4, 2, backend=bad),
                 lambda: seqcore.softmax_cross_entropy(np.zeros((1, 1, 2)), np.zeros((1, 1), int),
                                                       backend=bad),
                 lambda: seqcore.optim.global_norm([np.ones(2)], backend=bad),
                 lambda: seqcore.optim.Adam().step([], backend=bad),
                 lambda: _lm(bad, np.float32)):
        with pytest.raises(ValueError, match="backend"):
            make()
