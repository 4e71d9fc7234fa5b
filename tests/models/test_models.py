"""The four models: gradients against finite differences (float64, NumPy backend), masks, state, sampling."""
import numpy as np
import pytest

import seqcore
from _cases import check_model_gradients, randomize as _randomize
from seqcore.models import draw

EPS = 1e-6
VOCAB = seqcore.Vocab.build(["abcdef"])


def _check_gradients(model, batch, rng, n=6):
    check_model_gradients(model, batch, rng, n=n)


@pytest.mark.parametrize("cell,embedding_dim", [("lstm", 3), ("gru", None), ("rnn", 4)])
def test_language_model_gradients(cell, embedding_dim, rng):
    lm = seqcore.LanguageModel(VOCAB, cell=cell, hidden_size=5, num_layers=2,
                               embedding_dim=embedding_dim, dtype=np.float64,
                               backend="numpy", seed=1)
    _randomize(lm, rng)
    batch = next(lm.batches(["abc", "f", "deadbeef"], 3, None, train=False))
    _check_gradients(lm, batch, rng)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_gradients_through_the_last_valid_state(bidirectional, rng):
    clf = seqcore.SequenceClassifier(3, input_size=2, cell="lstm", hidden_size=4,
                                     bidirectional=bidirectional, num_layers=2,
                                     dtype=np.float64, backend="numpy", seed=2)
    _randomize(clf, rng)
    xs = [rng.standard_normal((n, 2)) for n in (5, 1, 3)]
    batch = next(clf.batches((xs, [0, 2, 1]), 3, None, train=False))
    _check_gradients(clf, batch, rng)


def test_classifier_reads_the_state_after_the_last_valid_step(rng):
    clf = seqcore.SequenceClassifier(2, input_size=3, hidden_size=4, bidirectional=True,
                                     dtype=np.float64, backend="numpy", seed=0)
    x = rng.standard_normal((4, 1, 3))
    short = clf.forward(x[:2], None)
    padded = x.copy()
    padded[2:] = 99.0                                   # garbage past the length
    np.testing.assert_allclose(clf.forward(padded, [2]), short, rtol=1e-12)


def test_tagger_gradients_with_variable_lengths(rng):
    tagger = seqcore.SequenceTagger(3, vocab=VOCAB, embedding_dim=3, cell="gru", hidden_size=4,
                                    bidirectional=True, dtype=np.float64, backend="numpy",
                                    seed=3, reset_after=True)
    _randomize(tagger, rng)
    data = (["abc", "d", "fed"], [[0, 1, 2], [1], [2, 2, 0]])
    batch = next(tagger.batches(data, 3, None, train=False))
    assert batch["mask"].sum() == 7
    _check_gradients(tagger, batch, rng)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_seq2seq_gradients_through_the_state_handoff(cell, rng):
    src = seqcore.Vocab.build(["0123456789"])
    s2s = seqcore.Seq2Seq(src, VOCAB, cell=cell, hidden_size=4, num_layers=2, embedding_dim=3,
                          dtype=np.float64, backend="numpy", seed=4)
    _randomize(s2s, rng)
    batch = next(s2s.batches([("12", "abcd"), ("9876", "e"), ("5", "ff")], 3, None,
                              train=False))
    _check_gradients(s2s, batch, rng)
    # The encoder is trained only through the hand-off: its gradient must not be zero.
    assert np.abs(s2s.encoder.grads["W_l0"]).max() > 0


def test_padded_batch_costs_the_same_as_its_sequences_one_by_one():
    lm = seqcore.LanguageModel(VOCAB, hidden_size=6, dtype=np.float64, backend="numpy", seed=0)
    texts = ["abcdef", "a", "fed", "bb"]
    together = lm.evaluate(texts, batch_size=4)
    alone = [lm.evaluate([t], batch_size=1)["loss"] for t in texts]
    assert together["loss"] == pytest.approx(np.mean(alone), rel=1e-12)


def test_truncated_bptt_carries_the_state_between_chunks():
    """Chunks of 2 steps with the state carried give the same cost as whole sequences."""
    lm = seqcore.LanguageModel(VOCAB, hidden_size=6, dtype=np.float64, backend="numpy", seed=0)
    texts = ["abcdefabc", "fed", "a"]
    chunks = list(lm.batches(texts, 3, None, train=False, seq_len=2))
    assert len(chunks) == 5 and [c["carry"] for c in chunks] == [False] + [True] * 4
    whole = lm.evaluate(texts, seq_len=100)
    cut = lm.evaluate(texts, seq_len=2)
    assert cut["loss"] == pytest.approx(whole["loss"], rel=1e-12)
    assert cut["perplexity"] == pytest.approx(whole["perplexity"], rel=1e-12)
    # Without the carried state, the cost would differ: the carry is doing the work.
    state_free = 0.0
    for c in chunks:
        state_free += lm.loss_and_grads(c, None, backward=False)[0] * c["size"]
    assert abs(state_free / 3 - whole["loss"]) > 1e-3


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_training_stops_with_a_clear_message_when_the_activations_explode():
    """A relu RNN whose recurrent gain is 8 overflows float32 within 60 steps."""
    lm = seqcore.LanguageModel(VOCAB, cell="rnn", hidden_size=8, nonlinearity="relu",
                               dtype=np.float32, backend="numpy", seed=0)
    lm.rnn.params["W_l0"][...] = 1.0
    lm.rnn.params["b_l0"][...] = 1.0
    with pytest.raises(seqcore.TrainingDiverged) as info:
        lm.fit(["abcdef" * 10] * 2, steps=5, batch_size=2, clip_norm=None, progress=False)
    msg = str(info.value)
    assert "\n" not in msg and "explod" in msg and "clip" in msg.lower()
    assert all(np.isfinite(p).all() for _, p, _ in lm.parameters())   # never garbage


def test_nan_in_the_loss_stops_training_before_the_update():
    lm = seqcore.LanguageModel(VOCAB, hidden_size=4, dtype=np.float64, backend="numpy", seed=0)
    lm.out.params["b"][2] = np.nan
    before = lm.rnn.params["W_l0"].copy()
    with pytest.raises(seqcore.TrainingDiverged, match="NaN"):
        lm.fit(["abc"], steps=3, progress=False)
    np.testing.assert_array_equal(lm.rnn.params["W_l0"], before)


def test_fit_lowers_the_loss_and_records_history():
    lm = seqcore.LanguageModel(VOCAB, hidden_size=16, backend="numpy", seed=0)
    texts = ["abc", "abcd", "abcde", "bcd"] * 4
    before = lm.evaluate(texts)["token_loss"]
    hist = lm.fit(texts, steps=60, batch_size=8, lr=0.02, valid=texts, eval_every=30,
                  progress=False, seed=0)
    assert hist["valid_step"] == [30, 60] and len(hist["loss"]) == 60
    assert hist["valid_loss"][-1] < 0.5 * before
    assert lm.optimizer.t == 60


# ------------------------------------------------------------------------ sampling

def test_draw_follows_the_softmax_and_guards_the_end_of_the_cdf():
    rng = np.random.default_rng(0)
    logits = np.array([[np.log(0.5), np.log(0.3), np.log(0.2), -np.inf]])   # last: impossible
    counts = np.bincount(np.concatenate([draw(logits, rng) for _ in range(20000)]), minlength=4)
    np.testing.assert_allclose(counts / counts.sum(), [0.5, 0.3, 0.2, 0.0], atol=0.015)
    assert (draw(np.log([[0.1, 0.9]]), rng, temperature=0) == 1).all()
    assert (draw(np.log([[0.4, 0.6]]), rng, top_k=1) == 1).all()
    assert (draw(np.log([[0.5, 0.5]]), rng, banned=[0]) == 1).all()


class _ConstantRng:
    """A random source whose uniform draws are all 1 - 2**-53 (the largest below 1)."""

    def random(self, n):
        return np.full(n, 1 - 2.0 ** -53)


def test_draw_never_lands_past_the_last_possible_token():
    logits = np.array([[np.log(0.25), np.log(0.75), -np.inf, -np.inf]])
    assert draw(logits, _ConstantRng())[0] == 1


def test_low_temperature_concentrates_the_draws():
    rng = np.random.default_rng(1)
    logits = np.log(np.array([[0.6, 0.4]]))
    cold = np.mean([draw(logits, rng, temperature=0.1)[0] == 0 for _ in range(2000)])
    hot = np.mean([draw(logits, rng, temperature=10.0)[0] == 0 for _ in range(2000)])
    assert cold > 0.95 and 0.45 < hot < 0.6


def test_sampling_is_reproducible_and_follows_its_options():
    lm = seqcore.LanguageModel(VOCAB, hidden_size=8, backend="numpy", seed=0)
    a = lm.sample(5, seed=7, max_len=12)
    assert a == lm.sample(5, seed=7, max_len=12)
    assert a != lm.sample(5, seed=8, max_len=12)
    assert all(len(s) <= 12 for s in a) and all("<UNK>" not in s for s in a)
    greedy = lm.sample(3, greedy=True, max_len=10)
    assert len(set(greedy)) == 1 and greedy == lm.sample(3, top_k=1, seed=1, max_len=10)
    primed = lm.sample(3, prime="caé", seed=0, max_len=5)       # 'é' was never seen
    assert all(s.startswith("ca<UNK>") for s in primed)
    assert all(set(s) <= set("abcdef") for s in lm.sample(20, seed=3, max_len=8))


def test_sampling_stops_at_eos():
    """A model whose output always says <EOS> samples empty texts; one that never does runs to max_len."""
    lm = seqcore.LanguageModel(VOCAB, hidden_size=4, backend="numpy", seed=0)
    lm.out.params["W"][...] = 0
    lm.out.params["b"][...] = -50
    lm.out.params["b"][VOCAB.eos_id] = 50
    assert lm.sample(3, seed=0) == ["", "", ""]
    lm.out.params["b"][VOCAB.eos_id] = -50
    lm.out.params["b"][VOCAB.encode("d")[0]] = 50
    assert lm.sample(2, seed=0, max_len=7) == ["ddddddd"] * 2


def test_seq2seq_decodes_greedy_and_sampled():
    src = seqcore.Vocab.build(["0123456789"])
    s2s = seqcore.Seq2Seq(src, VOCAB, hidden_size=8, backend="numpy", seed=0)
    g = s2s.translate(["12", "345"], max_len=6)
    assert g == s2s.translate(["12", "345"], max_len=6) and all(len(t) <= 6 for t in g)
    s = s2s.translate(["12"] * 4, greedy=False, seed=3, max_len=6)
    assert s == s2s.translate(["12"] * 4, greedy=False, seed=3, max_len=6)


def test_models_check_their_arguments():
    with pytest.raises(TypeError, match="vocab"):
        seqcore.LanguageModel(["a", "b"])
    with pytest.raises(ValueError, match="cell"):
        seqcore.LanguageModel(VOCAB, cell="transformer")
    with pytest.raises(TypeError, match="peephole"):
        seqcore.LanguageModel(VOCAB, cell="gru", peephole=True)
    with pytest.raises(TypeError, match="exactly one"):
        seqcore.SequenceClassifier(2)
    lm = seqcore.LanguageModel(VOCAB, hidden_size=4, backend="numpy")
    with pytest.raises(ValueError, match="temperature"):
        lm.sample(1, temperature=-1)
    with pytest.raises(TypeError, match="one string"):
        lm.fit("abc", steps=1, progress=False)
