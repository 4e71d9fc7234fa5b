"""Dropout in every model: gradients through the input, inter-layer and output masks
(replayed from the model's generator) against finite differences in float64, and
inference that never drops."""
import copy

import numpy as np
import pytest

import seqcore
from _cases import check_model_gradients

AB = seqcore.Vocab.build(["ab"])


def _models():
    return {
        "classifier": (seqcore.SequenceClassifier(2, vocab=AB, hidden_size=4, num_layers=2,
                                                  bidirectional=True, embedding_dim=3,
                                                  dropout=0.4, dtype=np.float64, seed=1),
                       (["ab", "bba", "a"], [1, 0, 1])),
        "tagger": (seqcore.SequenceTagger(2, input_size=3, hidden_size=4, num_layers=2,
                                          dropout=0.4, dtype=np.float64, seed=2),
                   ([np.random.default_rng(0).standard_normal((n, 3)) for n in (2, 4, 3)],
                    [[1, 0], [0, 0, 1, 1], [1, 1, 0]])),
        "seq2seq": (seqcore.Seq2Seq(AB, AB, cell="gru", hidden_size=4, num_layers=2,
                                    embedding_dim=3, attention="bahdanau",
                                    bidirectional_encoder=True, dropout=0.4,
                                    dtype=np.float64, seed=3),
                    [("ab", "ba"), ("abb", "bba"), ("b", "b")]),
    }


@pytest.mark.parametrize("kind", ["classifier", "tagger", "seq2seq"])
def test_gradients_through_every_dropout_match_finite_differences(kind):
    model, data = _models()[kind]
    batch = next(model.batches(data, 3, None, train=False))
    g0 = copy.deepcopy(model.generator.bit_generator.state)

    def replay():
        model.generator.bit_generator.state = g0                     # the same masks

    replay()
    dropped = model.loss_and_grads(batch, backward=False)[0]
    assert dropped != model.eval().loss_and_grads(batch, backward=False)[0]   # masks act
    model.train()
    check_model_gradients(model, batch, np.random.default_rng(0), n=4, before=replay,
                          rel=1e-5)


@pytest.mark.parametrize("kind", ["classifier", "tagger", "seq2seq"])
def test_inference_never_drops(kind):
    model, data = _models()[kind]
    inputs = [d[0] for d in data] if kind == "seq2seq" else data[0]
    run = getattr(model, {"classifier": "predict_proba", "tagger": "predict",
                          "seq2seq": "translate"}[kind])
    first = run(inputs)
    for _ in range(3):
        again = run(inputs)
        if kind == "tagger":
            assert all(np.array_equal(a, b) for a, b in zip(first, again))
        else:
            assert np.array_equal(np.asarray(first), np.asarray(again))
    assert model.training                                  # the mode is restored after
    loss = [model.evaluate(data, batch_size=3)["loss"] for _ in range(2)]
    assert loss[0] == loss[1]


def test_dropout_is_saved_with_the_model(tmp_path):
    model, _ = _models()["seq2seq"]
    loaded = seqcore.load(model.save(tmp_path / "m.npz"))
    assert loaded.dropout == 0.4 and loaded.decoder.dropout == 0.4 and loaded.drop_tgt.p == 0.4
