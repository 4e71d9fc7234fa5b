"""Data-parallel `fit` on the ranks of an MPI launch: `mpiexec -n R python mpi_fit_worker.py MODE OUTDIR`.

Each mode trains one model with ``fit(..., distributed=True)`` on data every rank
builds alike, and each rank writes its parameters to OUTDIR/rank<r>.npz (and its
history to rank<r>.json); tests/train/test_distributed_training.py compares them across
ranks and with one process trained on the union of the ranks' batches.
"""
import json
import os
import sys

import numpy as np

TEXT = ("It was the best of times, it was the worst of times,\n"
        "it was the age of wisdom, it was the age of foolishness,\n") * 20


def language_model(dtype, seed=3):
    import seqcore
    vocab = seqcore.Vocab.build([TEXT], "char")
    return seqcore.LanguageModel(vocab, hidden_size=10, num_layers=2, embedding_dim=6,
                                 dtype=dtype, seed=seed)


def lm_stream(batch_size, distributed, dtype=np.float64):
    """20 steps of stream training; B streams per rank, global-norm clipping, Adam."""
    model = language_model(dtype)
    history = model.fit(TEXT, steps=20, batch_size=batch_size, seq_len=7, stream=True,
                        seed=5, lr=1e-2, clip_norm=1.0, progress=False, valid=TEXT[:400],
                        eval_every=10, distributed=distributed)
    return model, history


CLASSES = (["ab", "ba", "aab", "bba", "abab", "bbaa", "a", "b", "aaa", "bbb", "abba", "baab"],
           [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0])


def classifier(batch_size, distributed):
    """Each step's batch is a rank's whole block (6 of the 12 examples)."""
    import seqcore
    model = seqcore.SequenceClassifier(2, vocab=seqcore.Vocab.build(["ab"]), hidden_size=5,
                                       dtype=np.float64, seed=2)
    history = model.fit(CLASSES, steps=20, batch_size=batch_size, seed=1, lr=1e-2,
                        progress=False, distributed=distributed)
    return model, history


def other_models(distributed):
    """A tagger and an encoder-decoder: data-parallel fit runs and keeps the ranks equal."""
    import seqcore
    vocab = seqcore.Vocab.build(["ab"])
    tagger = seqcore.SequenceTagger(2, vocab=vocab, hidden_size=4, seed=1)
    tagger.fit((["ab", "bba", "ab", "aab"], [[1, 0], [0, 0, 1], [1, 0], [1, 1, 0]]), steps=5,
               batch_size=2, seed=0, progress=False, distributed=distributed)
    s2s = seqcore.Seq2Seq(vocab, vocab, hidden_size=4, seed=1)
    s2s.fit([("ab", "ba"), ("aab", "baa"), ("b", "b"), ("abb", "bba")], steps=5, batch_size=2,
            seed=0, progress=False, distributed=distributed)
    return {**{f"tagger.{n}": p for n, p, _ in tagger.parameters()},
            **{f"s2s.{n}": p for n, p, _ in s2s.parameters()}}


def lm_dropout(dist, outdir, split):
    """20 steps with dropout (each rank its own masks) in one go, or 8, a save, a load
    and 12 more with resume=True: the same model."""
    import seqcore
    model = language_model(np.float64)
    model = seqcore.LanguageModel(model.vocab, hidden_size=10, num_layers=2, embedding_dim=6,
                                  dropout=0.3, dtype=np.float64, seed=3)
    kw = dict(progress=False, distributed=True)
    first = 8 if split else 20
    model.fit(TEXT, steps=first, batch_size=2, seq_len=7, stream=True, seed=5, lr=1e-2, **kw)
    if split:
        path = model.save(os.path.join(outdir, "run.npz"))   # collective: rank 0 writes
        model = seqcore.load(path)
        model.fit(TEXT, steps=12, resume=True, **kw)
    return model


def failing(dist):
    """Rank 1 raises inside fit; rank 0 would wait in the next Allreduce."""
    model = language_model(np.float32)
    model.fit(TEXT, steps=10_000, batch_size=2, seq_len=7, stream=True, seed=5,
              progress=False, should_stop=lambda: dist.rank() == 1 and 1 / 0,
              distributed=True)


def fails_before_fit():
    """Rank 1 raises before fit (MPI not started there); rank 0 waits in fit's first
    collective. Uncaught: seqcore's excepthook must end both."""
    from seqcore import _launch
    if _launch.launch_rank() == 1:
        raise ValueError("made to fail before fit on rank 1")
    model = language_model(np.float32)
    model.fit(TEXT, steps=10, batch_size=2, seq_len=7, stream=True, seed=5, progress=False,
              distributed=True)


def fails_after_fit(dist, outdir):
    """Both ranks train; then rank 1 raises (MPI running there) while rank 0 waits in the
    collective save. Uncaught: seqcore's excepthook must end both (MPI_Abort)."""
    model = language_model(np.float32)
    model.fit(TEXT, steps=2, batch_size=2, seq_len=7, stream=True, seed=5, progress=False,
              distributed=True)
    if dist.rank() == 1:
        raise ValueError("made to fail after fit on rank 1")
    model.save(os.path.join(outdir, "never.npz"))


def main(mode, outdir):
    from seqcore import distributed as dist
    if mode == "failing":
        failing(dist)
        return
    if mode == "fails_before_fit":
        fails_before_fit()
        return
    if mode == "fails_after_fit":
        fails_after_fit(dist, outdir)
        return
    history = {}
    if mode == "lm_stream64":
        model, history = lm_stream(2, True)
        params = {n: p for n, p, _ in model.parameters()}
    elif mode == "lm_stream64_by4":                 # 4 ranks of 1 stream each
        model, history = lm_stream(1, True)
        params = {n: p for n, p, _ in model.parameters()}
    elif mode == "lm_stream32":
        model, history = lm_stream(2, True, np.float32)
        params = {n: p for n, p, _ in model.parameters()}
    elif mode == "classifier":
        model, history = classifier(6, True)
        params = {n: p for n, p, _ in model.parameters()}
    elif mode in ("dropout_whole", "dropout_resumed"):
        model = lm_dropout(dist, outdir, mode == "dropout_resumed")
        params = {n: p for n, p, _ in model.parameters()}
    elif mode == "others":
        params = other_models(True)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    r = dist.rank()
    np.savez(os.path.join(outdir, f"rank{r}.npz"), **params)
    with open(os.path.join(outdir, f"rank{r}.json"), "w") as f:
        json.dump({k: history[k] for k in ("loss", "valid_loss", "allreduce_bytes")
                   if k in history}, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
