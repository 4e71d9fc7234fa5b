"""CTC decoding: greedy reads the best path; prefix beam search finds the most likely
label sequence, checked against an exhaustive search over every alignment on tiny
cases, with and without a fused character language model."""
import itertools

import numpy as np
import pytest

import seqcore


def _read(path, blank):
    out = []
    for i, c in enumerate(path):
        if c != blank and (i == 0 or c != path[i - 1]):
            out.append(c)
    return tuple(out)


def _exhaustive(lp, blank):
    """{labels: log P(labels)}: every path of len(lp) symbols, summed per reading."""
    T, C = lp.shape
    total = {}
    for path in itertools.product(range(C), repeat=T):
        p = sum(lp[t, c] for t, c in enumerate(path))
        key = _read(path, blank)
        total[key] = np.logaddexp(total.get(key, -np.inf), p)
    return total


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def test_greedy_merges_repeats_then_drops_blanks(rng):
    paths = np.array([[1, 1, 0, 1, 2, 2, 0], [0, 0, 2, 0, 2, 2, 1]]).T      # (T, B)
    logits = np.eye(3)[paths] * 5.0
    assert seqcore.ctc_greedy_decode(logits) == [[1, 1, 2], [2, 2, 1]]
    assert seqcore.ctc_greedy_decode(logits, [3, 7]) == [[1], [2, 2, 1]]
    assert seqcore.ctc_greedy_decode(logits, blank=2) == [[1, 0, 1, 0], [0, 0, 1]]


@pytest.mark.parametrize("seed", range(6))
def test_beam_search_finds_the_exhaustive_best(seed):
    rng = np.random.default_rng(seed)
    T, B, C, blank = 5, 3, 3, seed % 3
    logits = rng.standard_normal((T, B, C)) * 1.5
    lengths = np.array([5, 4, 3])
    got = seqcore.ctc_beam_search(logits, lengths, beam_size=64, blank=blank)
    for b in range(B):
        table = _exhaustive(_log_softmax(logits[:lengths[b], b]), blank)
        assert tuple(got[b]) == max(table, key=table.get)
    # the probabilities a wide beam sums are those of every alignment: greedy can differ
    greedy = seqcore.ctc_greedy_decode(logits, lengths, blank=blank)
    assert all(isinstance(g, list) for g in greedy)


def test_beam_search_beats_greedy_where_paths_add_up():
    # blank 0.6 at each step beats "a" 0.4, but "a" read by 3 of the 4 paths wins
    p = np.array([[0.6, 0.4], [0.6, 0.4]])[:, None, :]
    assert seqcore.ctc_greedy_decode(np.log(p)) == [[]]
    assert seqcore.ctc_beam_search(np.log(p), beam_size=4) == [[1]]   # 0.64 against 0.36


def test_shallow_fusion_finds_the_exhaustive_best_of_the_fused_score():
    rng = np.random.default_rng(3)
    vocab = seqcore.Vocab.build(["ab"])
    lm = seqcore.LanguageModel(vocab, hidden_size=6, seed=0)
    lm.fit(["ab", "abab", "ba"] * 5, steps=40, progress=False)
    labels = ["", "a", "b"]                                   # class 0 is the blank
    ids = {1: vocab.encode("a")[0], 2: vocab.encode("b")[0]}

    def lm_logp(seq):
        logits, _ = lm.forward(np.array([[-1] + [ids[c] for c in seq]], np.int64).T)
        lp = _log_softmax(logits[:, 0].astype(np.float64))
        steps = [lp[i, ids[c]] for i, c in enumerate(seq)]
        return sum(steps) + lp[len(seq), vocab.eos_id]

    logits = rng.standard_normal((4, 1, 3))
    for weight in (0.0, 0.7, 3.0):
        got = seqcore.ctc_beam_search(logits, beam_size=64, lm=lm, lm_weight=weight,
                                      labels=labels)
        table = _exhaustive(_log_softmax(logits[:, 0]), 0)
        fused = {k: v + weight * lm_logp(k) for k, v in table.items()}
        assert tuple(got[0]) == max(fused, key=fused.get)


def test_decoders_refuse_bad_input_by_name():
    z = np.zeros((3, 1, 4))
    with pytest.raises(TypeError, match="logits"):
        seqcore.ctc_greedy_decode(z.astype(int))
    with pytest.raises(ValueError, match="blank"):
        seqcore.ctc_beam_search(z, blank=4)
    with pytest.raises(ValueError, match="lengths"):
        seqcore.ctc_beam_search(z, [4])
    with pytest.raises(ValueError, match="beam_size"):
        seqcore.ctc_beam_search(z, beam_size=0)
    with pytest.raises(ValueError, match="lm_weight"):
        seqcore.ctc_beam_search(z, lm_weight=-1.0)
    lm = seqcore.LanguageModel(seqcore.Vocab.build(["ab"]), hidden_size=4, seed=0)
    with pytest.raises(ValueError, match="labels"):
        seqcore.ctc_beam_search(z, lm=lm)
    with pytest.raises(ValueError, match=r"labels\[2\]: 'zz' is not one token"):
        seqcore.ctc_beam_search(z, lm=lm, labels=["", "a", "zz", "b"])
    with pytest.raises(TypeError, match="lm: expected a seqcore.LanguageModel"):
        seqcore.ctc_beam_search(z, lm="lm", labels=["", "a", "b", "a"])
