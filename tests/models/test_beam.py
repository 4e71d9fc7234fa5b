"""Beam search: greedy at beam_size=1, the exhaustive optimum at large beams, batching, errors."""
import itertools
from typing import NamedTuple

import numpy as np
import pytest

from seqcore.models.beam import beam_search, length_penalty_factor, reorder_rows

P = 1009                     # rows of the toy model's table (a prime)
BOS = -1                     # seqcore's decoders read -1 (no token) first


class ToyDecoder:
    """log P(next | prefix) from a fixed random table, indexed by a hash of the prefix.

    The state is a tuple (code (N,), mirror (2, N, 3)): the prefix hash, and the same
    hash in a 3-D array whose rows are on axis 1, as a recurrent state's (L, N, H) are;
    step() checks that both were reordered alike.
    """

    def __init__(self, V, seed, sharpness=1.5, ties=False):
        rng = np.random.default_rng(seed)
        if ties:        # few distinct values per row: many exact ties, the argmax is the lowest id
            z = rng.integers(0, 3, (P, V)).astype(np.float64)
        else:
            z = rng.standard_normal((P, V)) * sharpness
        self.table = z - np.log(np.exp(z).sum(axis=1, keepdims=True))   # (P, V) log-softmax rows
        self.V = V
        self.calls = 0

    @staticmethod
    def extend(code, tok):
        return (code * 31 + tok + 7) % P

    def init_state(self, sources):
        code = (np.asarray(sources, np.int64) * 101 + 13) % P
        return code, np.broadcast_to(code.astype(np.float64)[None, :, None],
                                     (2, len(code), 3)).copy()

    def step(self, tokens, state):
        self.calls += 1
        code, mirror = state
        assert np.array_equal(mirror, np.broadcast_to(code[None, :, None], mirror.shape))
        code = np.where(tokens == BOS, code, self.extend(code, tokens))   # bos: no token yet
        return self.table[code].copy(), (code, np.broadcast_to(
            code.astype(np.float64)[None, :, None], mirror.shape).copy())

    def log_prob(self, source, tokens):
        """log P of a token sequence from one source, token by token (no beam machinery)."""
        code = int(self.init_state([source])[0][0])
        total = 0.0
        for tok in tokens:
            total += self.table[code, tok]
            code = self.extend(code, tok)
        return total


def greedy(dec, source, *, eos, max_len, banned=()):
    """The argmax at every step, stopping at eos: the reference for beam_size=1."""
    code = int(dec.init_state([source])[0][0])
    out, total = [], 0.0
    for _ in range(max_len):
        row = dec.table[code].copy()
        row[list(banned)] = -np.inf
        tok = int(np.argmax(row))
        total += row[tok]
        if tok == eos:
            return out, total, True
        out.append(tok)
        code = dec.extend(code, tok)
    return out, total, False


def exhaustive(dec, source, *, eos, max_len, alpha, banned=()):
    """Every hypothesis the search can return, scored, best first: all token sequences of
    n < max_len non-eos tokens followed by eos (|Y| = n + 1), and all of max_len non-eos
    tokens (cut off, |Y| = max_len)."""
    words = [w for w in range(dec.V) if w != eos and w not in banned]
    out = []
    for n in range(max_len + 1):
        for seq in itertools.product(words, repeat=n):
            ended = n < max_len
            length = n + 1 if ended else n
            lp = dec.log_prob(source, list(seq) + ([eos] if ended else []))
            out.append((lp / ((5 + length) / 6) ** alpha, list(seq), ended))
    out.sort(key=lambda h: -h[0])
    return out


@pytest.mark.parametrize("alpha", [0.0, 0.8])
@pytest.mark.parametrize("V,eos,max_len,banned,ties", [(6, 2, 7, (), False),
                                                       (5, 0, 30, (3,), False),
                                                       (40, 39, 12, (0, 5), False),
                                                       (6, 4, 8, (1,), True)])
def test_beam_size_one_is_greedy(V, eos, max_len, banned, ties, alpha):
    dec = ToyDecoder(V, seed=V, sharpness=0.7, ties=ties)
    sources = list(range(8))
    tokens, scores = beam_search(dec.step, dec.init_state(sources), len(sources), bos=BOS,
                                 eos=eos, beam_size=1, max_len=max_len,
                                 length_penalty=alpha, banned=banned)
    n_cut = 0
    for b, s in enumerate(sources):
        ref, lp, ended = greedy(dec, s, eos=eos, max_len=max_len, banned=banned)
        n_cut += not ended
        assert tokens[b] == ref
        length = len(ref) + 1 if ended else len(ref)
        assert scores[b] == pytest.approx(lp / ((5 + length) / 6) ** alpha, rel=1e-12)
    if V == 6:
        assert 0 < n_cut < len(sources)      # the case covers cut-off and ended hypotheses
    if V == 5:
        assert n_cut == 0


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
@pytest.mark.parametrize("V,eos,max_len,banned", [(3, 1, 4, ()), (4, 3, 4, ()),
                                                   (5, 0, 4, (2,))])
def test_large_beam_finds_the_exhaustive_optimum(V, eos, max_len, banned, alpha):
    """K above the number of hypotheses: nothing is pruned, so the search returns every
    hypothesis, ranked exactly as the exhaustive enumeration ranks them."""
    dec = ToyDecoder(V, seed=10 * V + max_len)
    sources = [0, 1, 2]
    K = 128                      # >= every prefix x V and every hypothesis for these sizes
    tokens, scores, nbest = beam_search(dec.step, dec.init_state(sources), len(sources),
                                        bos=BOS, eos=eos, beam_size=K, max_len=max_len,
                                        length_penalty=alpha, banned=banned, return_all=True)
    for b, s in enumerate(sources):
        ref = exhaustive(dec, s, eos=eos, max_len=max_len, alpha=alpha, banned=banned)
        assert len(ref) <= K
        assert tokens[b] == ref[0][1]
        assert scores[b] == pytest.approx(ref[0][0], rel=1e-12)
        assert len(nbest[b]) == len(ref)
        assert [h.tokens for h in nbest[b]] == [r[1] for r in ref]
        np.testing.assert_allclose([h.score for h in nbest[b]], [r[0] for r in ref],
                                   rtol=1e-12)
        assert [h.ended for h in nbest[b]] == [r[2] for r in ref]
        for h in nbest[b]:
            length = len(h.tokens) + h.ended
            assert h.score == pytest.approx(h.log_prob / length_penalty_factor(length, alpha),
                                            rel=1e-12)


def test_length_penalty_changes_the_winner_as_the_enumeration_says():
    """With the same table, alpha = 0 and a large alpha prefer hypotheses of different
    lengths (checked on the enumeration), and the search follows each."""
    V, eos, max_len = 4, 3, 4
    found = False
    for seed in range(40):
        dec = ToyDecoder(V, seed=seed)
        short = exhaustive(dec, 0, eos=eos, max_len=max_len, alpha=0.0)[0][1]
        long = exhaustive(dec, 0, eos=eos, max_len=max_len, alpha=3.0)[0][1]
        if len(short) < len(long):
            found = True
            break
    assert found
    for alpha, want in ((0.0, short), (3.0, long)):
        tokens, _ = beam_search(dec.step, dec.init_state([0]), 1, bos=BOS, eos=eos,
                                beam_size=128, max_len=max_len, length_penalty=alpha)
        assert tokens[0] == want


@pytest.mark.parametrize("K,alpha", [(2, 0.0), (3, 0.7), (5, 1.0)])
def test_batched_equals_one_source_at_a_time(K, alpha):
    dec = ToyDecoder(7, seed=3, sharpness=0.8)
    sources = [4, 0, 9, 2, 7]
    args = dict(bos=BOS, eos=1, beam_size=K, max_len=9, length_penalty=alpha, banned=(5,),
                return_all=True)
    tokens, scores, nbest = beam_search(dec.step, dec.init_state(sources), len(sources), **args)
    for b, s in enumerate(sources):
        t1, s1, n1 = beam_search(dec.step, dec.init_state([s]), 1, **args)
        assert tokens[b] == t1[0]
        assert scores[b] == s1[0]
        assert nbest[b] == n1[0]
        assert 1 <= len(nbest[b]) <= K
        assert all(5 not in h.tokens and 1 not in h.tokens for h in nbest[b])
        assert [h.score for h in nbest[b]] == sorted((h.score for h in nbest[b]), reverse=True)
        for h in nbest[b]:      # each score is the model's log P of its tokens, normalized
            lp = dec.log_prob(s, h.tokens + ([1] if h.ended else []))
            assert h.log_prob == pytest.approx(lp, rel=1e-12)


@pytest.mark.parametrize("K", [1, 4])
def test_trace_follows_each_hypothesis(K):
    """trace(state) after each step, kept per hypothesis: the toy state after step i holds
    the hash of the first i tokens, which the test recomputes from the tokens alone."""
    dec = ToyDecoder(5, seed=11, sharpness=0.6)
    sources = [3, 1, 4]
    tokens, _, nbest = beam_search(dec.step, dec.init_state(sources), len(sources), bos=BOS,
                                   eos=4, beam_size=K, max_len=6, length_penalty=0.5,
                                   trace=lambda state: state[0], return_all=True)
    n_checked = 0
    for b, s in enumerate(sources):
        for h in nbest[b]:
            code = int(dec.init_state([s])[0][0])
            want = []
            for tok in h.tokens + ([4] if h.ended else []):
                want.append(code)                   # read before this token was produced
                code = dec.extend(code, tok)
            np.testing.assert_array_equal(h.trace, want)
            n_checked += 1
    assert n_checked >= len(sources) * K
    untraced = beam_search(dec.step, dec.init_state(sources), len(sources), bos=BOS, eos=4,
                           beam_size=K, max_len=6, length_penalty=0.5)
    assert untraced[0] == tokens


def test_beam_stops_when_every_source_is_done():
    """A model that always puts eos first: one step, whatever max_len."""
    V = 5
    calls = []

    def step(tokens, state):
        calls.append(tokens.copy())
        lp = np.log(np.full((len(tokens), V), 0.1))
        lp[:, 2] = np.log(0.6)
        return lp, state

    tokens, scores = beam_search(step, np.zeros((3, 1)), 3, bos=BOS, eos=2, beam_size=1,
                                 max_len=50)
    assert tokens == [[], [], []] and len(calls) == 1
    np.testing.assert_allclose(scores, np.log(0.6), rtol=1e-15)
    np.testing.assert_array_equal(calls[0], [BOS] * 3)


class Pair(NamedTuple):
    states: np.ndarray
    lengths: np.ndarray


def test_reorder_rows_follows_seqcore_layouts():
    idx = np.array([1, 1, 0])
    a = np.arange(2 * 2 * 3).reshape(2, 2, 3)      # (L, N, H): rows on axis 1
    ctx = np.arange(4).reshape(2, 2)               # (N, H)
    lengths = np.array([5, 7])                     # (N,)
    out = reorder_rows({"s": (a, a + 1), "x": [ctx, lengths], "none": None}, idx)
    np.testing.assert_array_equal(out["s"][0], a[:, idx])
    np.testing.assert_array_equal(out["s"][1], (a + 1)[:, idx])
    assert isinstance(out["s"], tuple) and isinstance(out["x"], list)
    np.testing.assert_array_equal(out["x"][0], ctx[idx])
    np.testing.assert_array_equal(out["x"][1], [7, 7, 5])
    assert out["none"] is None
    pair = Pair(a, lengths)                        # a NamedTuple keeps its type
    moved = reorder_rows(pair, idx)
    assert type(moved) is Pair
    np.testing.assert_array_equal(moved.states, a[:, idx])
    np.testing.assert_array_equal(moved.lengths, lengths[idx])
    with pytest.raises(TypeError, match="reorder"):
        reorder_rows(object(), idx)


def test_custom_reorder_is_used():
    dec = ToyDecoder(6, seed=1)
    seen = []

    def reorder(state, index):
        seen.append(index.copy())
        return reorder_rows(state, index)

    sources = [0, 1]
    t1, s1 = beam_search(dec.step, dec.init_state(sources), 2, bos=BOS, eos=0, beam_size=3,
                         max_len=5, reorder=reorder)
    t2, s2 = beam_search(dec.step, dec.init_state(sources), 2, bos=BOS, eos=0, beam_size=3,
                         max_len=5)
    assert t1 == t2 and np.array_equal(s1, s2)
    np.testing.assert_array_equal(seen[0], [0, 0, 0, 1, 1, 1])    # the tiling to N rows
    assert all(len(i) == 6 for i in seen)


def test_invalid_arguments_raise_clear_errors():
    dec = ToyDecoder(4, seed=0)
    state = dec.init_state([0, 1])
    ok = dict(bos=BOS, eos=3, beam_size=2, max_len=5)

    def run(step=dec.step, batch_size=2, **kw):
        return beam_search(step, state, batch_size, **{**ok, **kw})

    for kw, exc, msg in [
            (dict(beam_size=0), ValueError, "beam_size"),
            (dict(beam_size=2.0), TypeError, "beam_size"),
            (dict(max_len=0), ValueError, "max_len"),
            (dict(batch_size="2"), TypeError, "batch_size"),
            (dict(eos=-1), ValueError, "eos"),
            (dict(eos=4), ValueError, r"eos: expected a token id in \[0, 4\)"),
            (dict(eos=1.0), TypeError, "eos"),
            (dict(bos=None), TypeError, "bos"),
            (dict(length_penalty=-0.5), ValueError, "length_penalty"),
            (dict(length_penalty=float("nan")), ValueError, "length_penalty"),
            (dict(length_penalty="1"), TypeError, "length_penalty"),
            (dict(banned=(3,)), ValueError, "eos"),
            (dict(banned=(9,)), ValueError, "banned"),
            (dict(banned=2), TypeError, "banned"),
            (dict(banned=("a",)), TypeError, "banned"),
            (dict(reorder=3), TypeError, "reorder"),
            (dict(trace=3), TypeError, "trace"),
            (dict(trace=lambda st: st[0][:3]), ValueError, "trace"),
            (dict(step=None), TypeError, "step"),
            (dict(return_all=1), TypeError, "return_all")]:
        with pytest.raises(exc, match=msg):
            run(**kw)

    def wrong_rows(tokens, st):
        return np.zeros((len(tokens) + 1, 4)), st

    def nan_step(tokens, st):
        lp = np.full((len(tokens), 4), -1.0)
        lp[0, 0] = np.nan
        return lp, st

    def int_step(tokens, st):
        return np.zeros((len(tokens), 4), np.int64), st

    with pytest.raises(ValueError, match=r"shape \(4, V\)"):
        run(step=wrong_rows)
    with pytest.raises(ValueError, match="NaN"):
        run(step=nan_step)
    with pytest.raises(TypeError, match="float"):
        run(step=int_step)
