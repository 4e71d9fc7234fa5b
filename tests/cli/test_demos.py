"""Demos that are tests: each architecture learns a small task to a stated bar (compiled core, float32).

* a character language model on the built-in names: held-out cost far below T ln V;
* Seq2Seq translating human-readable dates ("25th of November 2026") to ISO ("2026-11-25");
* a classifier (are there more a's than b's?) and a tagger (does a token repeat a neighbour?).
Every task is generated here, with held-out examples never seen in training.
"""
import datetime
import math
import time

import numpy as np
import pytest

import seqcore
from seqcore._threads import limit_threads
from seqcore.experiments import date_pairs, human_date
from seqcore.optim import Adam, Cosine
from seqcore.text import default_corpus


@pytest.fixture(autouse=True)
def one_blas_thread():
    # Small models run fastest on one BLAS thread (see seqcore/_threads.py).
    with limit_threads(1):
        yield


def _adam(steps, lr=0.01):
    return Adam(lr, schedule=Cosine(steps, final=0.05))


def test_char_language_model_beats_the_uniform_baseline():
    names = default_corpus()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(names))
    valid = [names[i] for i in order[:300]]
    train = [names[i] for i in order[300:]]
    vocab = seqcore.Vocab.build(train)
    lm = seqcore.LanguageModel(vocab, hidden_size=128, seed=0)
    t0 = time.perf_counter()
    lm.fit(train, steps=1000, batch_size=64, optimizer=_adam(1000), progress=False, seed=0)
    held = lm.evaluate(valid)
    # Uniform baseline: each sequence costs T ln V, T = its tokens + <EOS>.
    uniform = np.mean([(len(vocab.encode(n)) + 1) * math.log(len(vocab)) for n in valid])
    print(f"char LM: {time.perf_counter() - t0:.1f} s, held-out cost {held['loss']:.2f} per name "
          f"vs uniform {uniform:.2f}; {held['token_loss']:.3f} nats/token, perplexity "
          f"{held['perplexity']:.2f} (V = {len(vocab)}); samples {lm.sample(5, seed=0)}")
    assert held["loss"] < 0.6 * uniform
    assert held["perplexity"] < 0.35 * len(vocab)


# The date generator lives in seqcore.experiments (the translate-demo command uses it).
_human, _date_pairs = human_date, date_pairs


def test_seq2seq_translates_dates_to_iso():
    assert _human(datetime.date(2026, 11, 25), 0) == "25th of November 2026"
    rng = np.random.default_rng(0)
    days = np.arange(datetime.date(1950, 1, 1).toordinal(), datetime.date(2050, 1, 1).toordinal())
    held_out = rng.random(len(days)) < 0.1                      # dates never seen in training
    train = _date_pairs(days[~held_out], 20000, rng)
    test = _date_pairs(days[held_out], 500, rng)
    src = seqcore.Vocab.build(s for s, _ in train)
    tgt = seqcore.Vocab.build(t for _, t in train)
    model = seqcore.Seq2Seq(src, tgt, hidden_size=64, embedding_dim=16, seed=0)
    t0 = time.perf_counter()
    model.fit(train, steps=1200, batch_size=64, optimizer=_adam(1200), progress=False, seed=0)
    pred = model.translate([s for s, _ in test])
    exact = np.mean([p == t for p, (_, t) in zip(pred, test)])
    wrong = [(s, p) for p, (s, t) in zip(pred, test) if p != t][:3]
    print(f"dates: {time.perf_counter() - t0:.1f} s, exact match {exact:.1%} on {len(test)} "
          f"held-out dates; e.g. {test[0][0]!r} -> {pred[0]!r}; wrong: {wrong}")
    assert exact >= 0.95


def _abc(rng, n, lo=3, hi=16):
    return ["".join(rng.choice(list("abc"), rng.integers(lo, hi))) for _ in range(n)]


def test_classifier_counts_a_against_b():
    rng = np.random.default_rng(1)
    label = lambda s: int(s.count("a") > s.count("b"))  # noqa: E731
    train = [s for s in _abc(rng, 4000) if s.count("a") != s.count("b")]
    test = [s for s in _abc(rng, 500) if s.count("a") != s.count("b")]
    vocab = seqcore.Vocab.build(["abc"])
    clf = seqcore.SequenceClassifier(2, vocab=vocab, hidden_size=32, bidirectional=True, seed=0)
    t0 = time.perf_counter()
    clf.fit((train, [label(s) for s in train]), steps=500, batch_size=32,
            optimizer=_adam(500), progress=False, seed=0)
    acc = np.mean(clf.predict(test) == np.array([label(s) for s in test]))
    print(f"classifier: {time.perf_counter() - t0:.1f} s, held-out accuracy {acc:.1%}")
    assert acc >= 0.95


def _neighbour_tags(s):
    """0: same as the token before; 1: same as the token after (only); 2: neither."""
    return [0 if t > 0 and s[t - 1] == c else 1 if t + 1 < len(s) and s[t + 1] == c else 2
            for t, c in enumerate(s)]


def test_tagger_marks_repeated_neighbours():
    assert _neighbour_tags("aabca") == [1, 0, 2, 2, 2]
    rng = np.random.default_rng(2)
    train, test = _abc(rng, 3000), _abc(rng, 300)
    vocab = seqcore.Vocab.build(["abc"])
    tagger = seqcore.SequenceTagger(3, vocab=vocab, cell="gru", hidden_size=32,
                                    bidirectional=True, seed=0)
    t0 = time.perf_counter()
    tagger.fit((train, [_neighbour_tags(s) for s in train]), steps=400, batch_size=32,
               optimizer=_adam(400), progress=False, seed=0)
    pred = tagger.predict(test)
    acc = np.mean(np.concatenate([p == _neighbour_tags(s) for p, s in zip(pred, test)]))
    print(f"tagger: {time.perf_counter() - t0:.1f} s, held-out per-token accuracy {acc:.1%}")
    assert acc >= 0.95
