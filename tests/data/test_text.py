"""Vocab, tokenizers, corpus reading, the default corpus, Embedding and OneHot (finite differences)."""
import numpy as np
import pytest

import seqcore
from seqcore.nn import OneHot
from seqcore.text import EOS, NO_TOKEN, UNK, default_corpus, read_corpus, tokenize

from conftest import numeric_grad


def test_vocab_is_specials_then_sorted_tokens_whatever_the_text_order():
    a = seqcore.Vocab.build(["banana", "cab"])
    b = seqcore.Vocab.build(["cab", "banana"])
    assert a.tokens == b.tokens == [EOS, UNK, "a", "b", "c", "n"]
    assert a.eos_id == 0 and a.unk_id == 1 and len(a) == 6


def test_encode_decode_round_trip_and_unknown_symbols_become_unk():
    v = seqcore.Vocab.build(["hello world"])
    assert v.decode(v.encode("hello")) == "hello"
    ids = v.encode("hex!", eos=True)
    assert ids[2:] == [v.unk_id, v.unk_id, v.eos_id]       # 'x', '!' unseen; <EOS> closes
    assert v.decode(ids) == "he<UNK><UNK>"                  # decoding stops at <EOS>


def test_word_level_splits_words_and_symbols():
    assert tokenize("Don't stop, now.", "word") == ["Don", "'", "t", "stop", ",", "now", "."]
    v = seqcore.Vocab.build(["the cat sat", "the dog"], "word")
    assert v.tokens == [EOS, UNK, "cat", "dog", "sat", "the"]
    assert v.decode(v.encode("the cat ran")) == "the cat <UNK>"


def test_min_count_and_max_size_leave_rare_tokens_to_unk():
    v = seqcore.Vocab.build(["aaab", "aac"], min_count=2)
    assert v.tokens == [EOS, UNK, "a"]
    v = seqcore.Vocab.build(["aaabbc"], max_size=4)      # specials + the 2 most frequent
    assert v.tokens == [EOS, UNK, "a", "b"]


def test_vocab_config_round_trip_and_checks():
    v = seqcore.Vocab.build(["xyz"], "char")
    assert seqcore.Vocab.from_config(v.config()) == v
    with pytest.raises(ValueError, match="sorted"):
        seqcore.Vocab([EOS, UNK, "b", "a"])
    with pytest.raises(ValueError, match="level"):
        seqcore.Vocab.build(["x"], "byte")


def test_read_corpus_keeps_non_empty_lines_and_refuses_empty_or_binary(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("alpha\n\n  \nbeta  \n", encoding="utf-8")
    assert read_corpus(p) == ["alpha", "beta"]
    p.write_text("\n\n")
    with pytest.raises(ValueError, match="no text"):
        read_corpus(p)
    p.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_corpus(p)


def test_default_corpus_is_deterministic_names_from_the_standard_library():
    names = default_corpus()
    assert len(names) > 1000
    assert names == sorted(set(names)) == default_corpus()
    assert all(n.replace("_", "").isalpha() and n.islower() and 3 <= len(n) <= 16 for n in names)
    assert {"getattr", "urlopen"} & set(names)



def test_embedding_backward_matches_finite_differences(rng):
    emb = seqcore.Embedding(5, 3, dtype=np.float64, seed=0)
    ids = np.array([[0, 4, NO_TOKEN], [4, 4, 2]])          # repeated ids and a "no token"
    dy = rng.standard_normal((2, 3, 3))
    x = emb.forward(ids)
    np.testing.assert_array_equal(x[0, 2], 0)              # x<1> = 0
    np.testing.assert_array_equal(x[1, 0], emb.params["W"][4])
    assert emb.backward(dy) is None
    num = numeric_grad(lambda: float((emb.forward(ids) * dy).sum()), emb.params["W"])
    err = np.abs(emb.grads["W"] - num).max()
    print(f"embedding dW max abs err {err:.2e}")
    np.testing.assert_allclose(emb.grads["W"], num, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(emb.grads["W"][[1, 3]], 0)  # unseen ids get nothing


def test_embedding_and_onehot_refuse_bad_ids():
    emb = seqcore.Embedding(5, 3)
    with pytest.raises(ValueError, match="ids"):
        emb.forward(np.array([5]))
    with pytest.raises(TypeError, match="integer"):
        emb.forward(np.array([0.5]))
    with pytest.raises(ValueError, match="ids"):
        OneHot(3).forward(np.array([-2]))


def test_onehot_is_the_notes_encoding():
    x = OneHot(4, dtype=np.float64).forward(np.array([[2, NO_TOKEN]]))
    np.testing.assert_array_equal(x, [[[0, 0, 1, 0], [0, 0, 0, 0]]])
