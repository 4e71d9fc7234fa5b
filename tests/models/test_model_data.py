"""The models' data checked at the door (a bad item named by argument and index), and fit's batching option."""
import re

import numpy as np
import pytest

import seqcore
from seqcore.data import index_batches

TEXTS = ["anna", "bob", "carla", "dave", "eve", "frank", "gina", "hal", "ivy", "jo", "kim"]
VOCAB = seqcore.Vocab.build(TEXTS)


def _message(exc_info):
    return str(exc_info.value)


def _lm():
    return seqcore.LanguageModel(VOCAB, hidden_size=4, seed=0)


def _clf(**kw):
    return seqcore.SequenceClassifier(2, hidden_size=4, seed=0, **kw)


def _tagger(**kw):
    return seqcore.SequenceTagger(2, hidden_size=4, seed=0, **kw)


def _s2s():
    return seqcore.Seq2Seq(VOCAB, VOCAB, hidden_size=4, seed=0)


FIT = dict(steps=1, progress=False)
LABELS = [i % 2 for i in range(len(TEXTS))]
TAGS = [[0] * len(t) for t in TEXTS]
PAIRS = [(t, t[::-1]) for t in TEXTS]

# (what is called, the argument it names, the index of the bad item): each call gets
# the data of the issue, the first ten items and then a number.
CASES = [
    ("lm.fit", lambda: _lm().fit(TEXTS[:10] + [12345], **FIT), "data", 10),
    ("lm.fit valid", lambda: _lm().fit(TEXTS, valid=TEXTS[:3] + [None], **FIT), "valid", 3),
    ("lm.evaluate", lambda: _lm().evaluate(TEXTS[:10] + [12345]), "data", 10),
    ("lm.score", lambda: _lm().score(TEXTS[:10] + [12345]), "texts", 10),
    ("classifier.fit", lambda: _clf(vocab=VOCAB).fit((TEXTS[:10] + [12345], LABELS), **FIT),
     r"data\[0\]", 10),
    ("classifier.evaluate", lambda: _clf(vocab=VOCAB).evaluate((TEXTS[:10] + [1.5], LABELS)),
     r"data\[0\]", 10),
    ("classifier.predict", lambda: _clf(vocab=VOCAB).predict(TEXTS[:10] + [12345]), "xs", 10),
    ("classifier.predict_proba", lambda: _clf(vocab=VOCAB).predict_proba([b"bytes"]), "xs", 0),
    ("tagger.fit", lambda: _tagger(vocab=VOCAB).fit((TEXTS[:10] + [12345], TAGS), **FIT),
     r"data\[0\]", 10),
    ("tagger.evaluate", lambda: _tagger(vocab=VOCAB).evaluate((TEXTS[:4] + [["a"]], TAGS[:5])),
     r"data\[0\]", 4),
    ("tagger.predict", lambda: _tagger(vocab=VOCAB).predict(TEXTS[:10] + [12345]), "xs", 10),
    ("features classifier.predict", lambda: _clf(input_size=3).predict(
        [np.zeros((2, 3))] * 10 + ["text"]), "xs", 10),
    ("features tagger.fit", lambda: _tagger(input_size=3).fit(
        ([np.zeros((2, 3))] * 2 + [None], [[0, 1]] * 3), **FIT), r"data\[0\]", 2),
    ("seq2seq.fit", lambda: _s2s().fit(PAIRS[:10] + [12345], **FIT), "data", 10),
    ("seq2seq.fit pair", lambda: _s2s().fit(PAIRS[:5] + [("ab", 7)], **FIT), "data", 5),
    ("seq2seq.evaluate", lambda: _s2s().evaluate(PAIRS[:10] + [12345]), "data", 10),
    ("seq2seq.translate", lambda: _s2s().translate(TEXTS[:10] + [12345]), "sources", 10),
]


@pytest.mark.parametrize("call, name, index", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_item_is_a_type_error_naming_the_argument_and_its_index(call, name, index):
    with pytest.raises(TypeError) as exc_info:
        call()
    message = _message(exc_info)
    assert re.match(rf"{name}: expected ", message), message
    assert f"item {index} is " in message, message


def test_a_feature_sequence_of_the_wrong_shape_is_a_value_error_with_its_index():
    with pytest.raises(ValueError, match=r"xs: expected a list of \(T_b, 3\) arrays with "
                                         r"T_b >= 1, but item 1 has shape \(2, 4\)"):
        _tagger(input_size=3).predict([np.zeros((2, 3)), np.zeros((2, 4))])


def test_one_string_where_a_list_of_texts_belongs_is_refused():
    with pytest.raises(TypeError, match="data: expected a list of texts"):
        _lm().fit("anna bob", **FIT)
    with pytest.raises(TypeError, match="xs: expected a list of texts, got one string"):
        _clf(vocab=VOCAB).predict("anna")


def test_good_data_passes_the_checks_unchanged():
    lm = _lm()
    lm.fit(tuple(TEXTS), **FIT)                      # any sequence of texts
    assert lm.score(iter(TEXTS[:2])).shape == (2,)
    clf = _clf(input_size=2)
    xs = [np.ones((n, 2)) for n in (1, 3)]
    clf.fit((xs, [0, 1]), **FIT)
    assert clf.predict(xs).shape == (2,)
    assert len(_s2s().translate(TEXTS[:2], max_len=3)) == 2


# ---------------------------------------------------------------- batching

def _padding(batches, sizes):
    """The share of a batch's cells (examples x its longest) that are padding."""
    cells = sum(len(b) * sizes[b].max() for b in batches)
    return 1 - sum(sizes[b].sum() for b in batches) / cells


def test_random_batching_is_plain_random_batches_and_sorted_groups_similar_lengths():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 500, size=1024)
    B = 32
    epoch = len(sizes) // B
    sorted_ = list(index_batches(sizes, B, np.random.default_rng(1), repeat=False))
    random_ = list(index_batches(sizes, B, np.random.default_rng(1), repeat=False,
                                 batching="random"))
    for batches in (sorted_, random_):       # an epoch: every example once, B to a batch
        assert len(batches) == epoch and all(len(b) == B for b in batches)
        assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(len(sizes)))
    # Random batches: the examples' lengths within a batch are as spread as the data's;
    # sorted ones hold examples of similar length.
    assert _padding(random_, sizes) > 0.4
    assert _padding(sorted_, sizes) < 0.1
    spread = np.mean([sizes[b].std() for b in random_])
    assert spread == pytest.approx(sizes.std(), rel=0.15)
    # Random batches are those of a shuffled order cut in B's: unsorted within the epoch.
    firsts = [b.min() for b in random_]
    assert firsts != sorted(firsts)
    in_order = list(index_batches(sizes, B, None, shuffle=False, repeat=False,
                                  batching="random"))
    assert [sorted(b) for b in in_order[:2]] == [list(range(B)), list(range(B, 2 * B))]


def test_fit_takes_the_batching_option_and_records_it_for_resume(tmp_path):
    lines = [t * k for t in TEXTS for k in (1, 3, 7)]
    runs = {}
    for batching in ("sorted", "random"):
        lm = _lm()
        lm.fit(lines, steps=3, batch_size=4, seed=1, progress=False, batching=batching)
        assert lm.run["batch_options"]["batching"] == batching
        runs[batching] = lm
    assert not np.array_equal(runs["sorted"].out.params["W"], runs["random"].out.params["W"])
    # Resuming continues the recorded batching, and refuses another.
    path = runs["random"].save(tmp_path / "lm.npz")
    resumed = seqcore.load(path)
    with pytest.raises(ValueError, match="batching='random'"):
        resumed.fit(lines, steps=1, resume=True, batching="sorted", progress=False)
    resumed.fit(lines, steps=2, resume=True, progress=False)
    whole = _lm()
    whole.fit(lines, steps=5, batch_size=4, seed=1, progress=False, batching="random")
    for (name, a, _), (_, b, _) in zip(resumed.parameters(), whole.parameters()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_the_default_batching_is_the_documented_one():
    from seqcore.data import DEFAULT_BATCHING
    sizes = np.arange(1, 257)
    default = list(index_batches(sizes, 8, np.random.default_rng(3), repeat=False))
    named = list(index_batches(sizes, 8, np.random.default_rng(3), repeat=False,
                               batching=DEFAULT_BATCHING))
    assert all(np.array_equal(a, b) for a, b in zip(default, named))
    assert f'``"{DEFAULT_BATCHING}"`` (the default)' in seqcore.LanguageModel.fit.__doc__


@pytest.mark.parametrize("call, error, match", [
    (lambda: _lm().fit(TEXTS, batching="length", **FIT), ValueError,
     "batching: expected one of 'sorted', 'random', got 'length'"),
    (lambda: _clf(vocab=VOCAB).fit((TEXTS, LABELS), batching=1, **FIT), ValueError,
     "batching: expected one of"),
    (lambda: _lm().fit("anna bob " * 20, stream=True, batching="random", **FIT), ValueError,
     "batching='random': applies to lines"),
])
def test_fit_checks_the_batching_option(call, error, match):
    with pytest.raises(error, match=match):
        call()
