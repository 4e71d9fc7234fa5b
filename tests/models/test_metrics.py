"""seqcore.metrics: BLEU against sacrebleu and against BLEU computed independently here;
exact match."""
import math
import sys
from collections import Counter

import numpy as np
import pytest

import seqcore
from seqcore.metrics import bleu, exact_match

needs_sacrebleu = pytest.mark.skipif(
    __import__("importlib").util.find_spec("sacrebleu") is None,
    reason="sacrebleu not installed (pip install 'seqcore[bleu]')")


def ngrams(words, n):
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def bleu_by_definition(hypotheses, references):
    """Corpus BLEU of Papineni et al. 2002 over whitespace tokens, with sacrebleu's defaults
    (what mteval-v13a does): clipped n-gram counts (n = 1..4) summed over the corpus, the
    reference length closest to each hypothesis (the shorter one on a tie), the brevity
    penalty, 'exp' smoothing (the k-th order with no match counts as 1 / (2^k total)), and
    0 when nothing matches at all or the corpus has no n-gram of some order. For text
    that 13a tokenization leaves as it is (lowercase words, no punctuation)."""
    correct, total = [0] * 4, [0] * 4
    sys_len = ref_len = 0
    for hyp, refs in zip(hypotheses, references):
        refs = [refs] if isinstance(refs, str) else refs
        h = hyp.split()
        rs = [r.split() for r in refs]
        sys_len += len(h)
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in rs)[1]
        for n in range(1, 5):
            hn = ngrams(h, n)
            most = Counter()
            for r in rs:
                most |= ngrams(r, n)           # the max count over the references
            correct[n - 1] += sum(min(c, most[g]) for g, c in hn.items())
            total[n - 1] += sum(hn.values())
    if not any(correct) or not all(total):
        return 0.0
    log_p, k = 0.0, 0
    for c, t in zip(correct, total):
        if c == 0:
            k += 1
            log_p += math.log(1 / (2 ** k * t))
        else:
            log_p += math.log(c / t)
    bp = 1.0 if sys_len >= ref_len else math.exp(1 - ref_len / sys_len)
    return 100 * bp * math.exp(log_p / 4)


@needs_sacrebleu
def test_hand_computed_examples():
    # "the cat sat on the mat" against "the cat is on the mat", counted by hand:
    # 1-grams 5/6 (sat misses), 2-grams 3/5 (the cat, on the, the mat),
    # 3-grams 1/4 (on the mat), 4-grams 0/3 -> exp smoothing 1/(2*3); equal lengths, BP 1.
    got = bleu(["the cat sat on the mat"], ["the cat is on the mat"])
    assert got == pytest.approx(100 * (5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25, rel=1e-12)
    # "the cat on the mat" (5 words) against the same 6-word reference: 1-grams 5/5,
    # 2-grams 3/4 (cat on misses), 3-grams 1/3, 4-grams 0/2 -> 1/(2*2); BP exp(1 - 6/5).
    got = bleu(["the cat on the mat"], ["the cat is on the mat"])
    want = 100 * math.exp(1 - 6 / 5) * (1 * 3 / 4 * 1 / 3 * 1 / 4) ** 0.25
    assert got == pytest.approx(want, rel=1e-12)
    # identical text: every precision 1 and BP 1
    text = ["a quick brown fox jumps over the lazy dog", "Hello, world! How are you?"]
    assert bleu(text, text) == pytest.approx(100.0, rel=1e-12)
    # no word in common
    assert bleu(["alpha beta gamma delta"], ["one two three four"]) == 0.0


@needs_sacrebleu
@pytest.mark.parametrize("multi", [False, True])
def test_agrees_with_bleu_by_definition_on_random_corpora(multi):
    rng = np.random.default_rng(7 + multi)
    words = "the a cat dog sat ran on under mat rug big small red".split()
    for trial in range(20):
        n = int(rng.integers(1, 6))

        def sentence():
            return " ".join(rng.choice(words, int(rng.integers(1, 12))))

        def edited(text):    # a near miss: words dropped or replaced now and then
            out = [w if rng.random() > 0.2 else str(rng.choice(words))
                   for w in text.split() if rng.random() > 0.1]
            return " ".join(out) or words[0]

        if multi:     # a varying number of references per hypothesis
            refs = [[sentence() for _ in range(int(rng.integers(1, 4)))] for _ in range(n)]
            first = [r[0] for r in refs]
        else:
            refs = [sentence() for _ in range(n)]
            first = refs
        # half the corpora unrelated to their references, half close to them
        hyps = [sentence() for _ in range(n)] if trial % 2 else [edited(r) for r in first]
        assert bleu(hyps, refs) == pytest.approx(bleu_by_definition(hyps, refs),
                                                 rel=1e-9, abs=1e-12)


HYPS = ["The cat sat on the mat.", "It's raining -- again!", "Dogs (and cats) don't fly.",
        "A 3.5% rise in 2024, said the report.", "nothing matches here"]
REFS_1 = ["The cat is on the mat.", "It is raining again!", "Dogs and cats can't fly.",
          "A rise of 3.5% in 2024, the report said.", "completely different words"]
REFS_2 = ["There is a cat on the mat.", "Again, it's raining!", "Neither dogs nor cats fly.",
          "The report said: a 3.5% rise in 2024.", "nothing here matches"]


@needs_sacrebleu
def test_equals_sacrebleu_corpus_bleu_with_punctuation_and_case():
    import sacrebleu
    want = sacrebleu.corpus_bleu(HYPS, [REFS_1]).score
    assert bleu(HYPS, REFS_1) == want
    assert bleu(HYPS, [[r] for r in REFS_1]) == want          # one-string lists: the same
    # several references: hypothesis i's list [r1_i, r2_i] is sacrebleu's streams [r1, r2]
    want2 = sacrebleu.corpus_bleu(HYPS, [REFS_1, REFS_2]).score
    assert bleu(HYPS, [[a, b] for a, b in zip(REFS_1, REFS_2)]) == want2
    assert want2 > want      # a second reference can only add matches here
    # case counts (sacrebleu's default is case-sensitive)
    assert bleu([h.lower() for h in HYPS], REFS_1) < want


@needs_sacrebleu
def test_a_duplicated_reference_changes_nothing():
    assert bleu(HYPS, [[r, r] for r in REFS_1]) == bleu(HYPS, REFS_1)


def test_missing_sacrebleu_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sacrebleu", None)       # import sacrebleu -> ImportError
    with pytest.raises(ImportError, match=r"seqcore\[bleu\]"):
        bleu(["a b"], ["a b"])


def test_exact_match():
    hyps = ["the cat", "a  dog ", "The bird", "fish", "x"]
    refs = ["the cat", "a dog", "the bird", ["shark", "fish"], ["y", "z"]]
    # whitespace is collapsed; case counts; any reference of a list matches
    assert exact_match(hyps, refs) == pytest.approx(3 / 5)
    assert exact_match(["a"], ["a"]) == 1.0
    assert exact_match(["a"], ["b"]) == 0.0


@pytest.mark.parametrize("fn", [bleu, exact_match])
def test_invalid_inputs_raise_clear_errors(fn):
    with pytest.raises(TypeError, match="hypotheses: expected a list"):
        fn("the cat", ["the cat"])
    with pytest.raises(TypeError, match="references: expected a list"):
        fn(["the cat"], "the cat")
    with pytest.raises(ValueError, match="one entry per hypothesis"):
        fn(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="at least one sentence"):
        fn([], [])
    with pytest.raises(TypeError, match=r"hypotheses\[1\]"):
        fn(["a", 3], ["a", "b"])
    with pytest.raises(TypeError, match=r"references\[0\]\[1\]"):
        fn(["a"], [["a", None]])
    with pytest.raises(ValueError, match=r"references\[0\]: expected at least one"):
        fn(["a"], [[]])
    with pytest.raises(TypeError, match=r"references\[0\]"):
        fn(["a"], [b"a"])


def test_reachable_from_a_plain_import():
    assert seqcore.metrics.bleu is bleu
