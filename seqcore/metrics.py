"""Scores for generated text: corpus BLEU (through sacrebleu) and exact match.

``bleu`` is sacrebleu's default ``corpus_bleu`` (13a tokenization, exponential
smoothing, case-sensitive), the score machine-translation papers report, so
numbers compare across tools. sacrebleu is an optional dependency, the extra
``seqcore[bleu]`` (``pip install 'seqcore[bleu]'``); it is imported only when
``bleu`` runs.

References, in both functions: either one string per hypothesis, or one list of
strings per hypothesis (several references; the lists may differ in length, each
needs at least one string). A plain string and a one-string list mean the same.
"""

__all__ = ["bleu", "exact_match"]


def _check_corpus(hypotheses, references):
    """-> (hypotheses as a list of str, references as a list of lists of str)."""
    for name, seq in (("hypotheses", hypotheses), ("references", references)):
        if isinstance(seq, (str, bytes)) or not hasattr(seq, "__len__"):
            raise TypeError(f"{name}: expected a list of strings (one per sentence), "
                            f"got {type(seq).__name__}")
    hyps = list(hypotheses)
    refs = list(references)
    if not hyps:
        raise ValueError("hypotheses: expected at least one sentence, got an empty list")
    if len(refs) != len(hyps):
        raise ValueError(f"references: expected one entry per hypothesis ({len(hyps)}), "
                         f"got {len(refs)}")
    for i, h in enumerate(hyps):
        if not isinstance(h, str):
            raise TypeError(f"hypotheses[{i}]: expected a string, got {type(h).__name__}")
    ref_lists = []
    for i, r in enumerate(refs):
        if isinstance(r, str):
            r = [r]
        elif isinstance(r, (list, tuple)):
            r = list(r)
            if not r:
                raise ValueError(f"references[{i}]: expected at least one reference string, "
                                 "got an empty list")
            for k, s in enumerate(r):
                if not isinstance(s, str):
                    raise TypeError(f"references[{i}][{k}]: expected a string, "
                                    f"got {type(s).__name__}")
        else:
            raise TypeError(f"references[{i}]: expected a string or a list of strings, "
                            f"got {type(r).__name__}")
        ref_lists.append(r)
    return hyps, ref_lists


def _reference_streams(ref_lists):
    """Per-hypothesis reference lists -> sacrebleu's layout [refs_stream_1, refs_stream_2, ...].

    Stream k holds the k-th reference of every hypothesis, None where a hypothesis
    has fewer than k + 1 references (sacrebleu ignores those entries)."""
    width = max(len(r) for r in ref_lists)
    return [[r[k] if k < len(r) else None for r in ref_lists] for k in range(width)]


def bleu(hypotheses, references):
    """Corpus BLEU in 0-100, equal to ``sacrebleu.corpus_bleu(hypotheses, streams).score``.

    Hypothesis ``i``'s references ``[r_i1, r_i2, ...]`` become sacrebleu's streams
    ``[[r_11, r_21, ...], [r_12, r_22, ...], ...]``, padded with None where a
    hypothesis has fewer references.

    Parameters
    ----------
    hypotheses : list of str
        Detokenized text, one sentence each.
    references : list of str or list of list of str
        Per hypothesis one string, or a list of strings (several references, at least
        one each).

    Returns
    -------
    float
        BLEU, 0 to 100.

    Raises
    ------
    ImportError
        sacrebleu is not installed (``pip install 'seqcore[bleu]'``).
    TypeError
        A hypothesis or reference that is not a string.
    ValueError
        No hypotheses, or not one references entry per hypothesis.

    Examples
    --------
    >>> from seqcore import metrics
    >>> round(metrics.bleu(["the cat sat on the mat"], ["the cat sat on the mat"]), 6)
    100.0
    """
    hyps, ref_lists = _check_corpus(hypotheses, references)
    try:
        import sacrebleu
    except ImportError as exc:
        raise ImportError("seqcore.metrics.bleu needs sacrebleu, an optional dependency: "
                          "pip install 'seqcore[bleu]' (or pip install sacrebleu)") from exc
    return float(sacrebleu.corpus_bleu(hyps, _reference_streams(ref_lists)).score)


def exact_match(hypotheses, references):
    """The fraction of hypotheses equal to one of their references.

    Compared after collapsing whitespace (``" ".join(s.split())``); case and
    punctuation count.

    Parameters
    ----------
    hypotheses : list of str
        One sentence each.
    references : list of str or list of list of str
        As for ``bleu``.

    Returns
    -------
    float
        0 to 1.
    """
    hyps, ref_lists = _check_corpus(hypotheses, references)

    def norm(s):
        return " ".join(s.split())

    hits = sum(norm(h) in {norm(r) for r in refs} for h, refs in zip(hyps, ref_lists))
    return hits / len(hyps)
