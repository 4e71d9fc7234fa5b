"""Exact match against input length: Seq2Seq without and with attention, same step budget.

The task: reverse a digit string of length 3..MAX (char level). Train each model for
the same number of Adam steps on fresh random strings, then measure exact match on
held-out strings bucketed by length. Hidden sizes are chosen so that the models have
similar parameter counts (printed). Several seeds; the table shows mean exact match
per bucket. Run from the repository root:
PYTHONPATH=. python bench/attention_length.py [--steps N] [--seeds N] [--max-len N]
"""
import argparse
import time

import numpy as np

import seqcore
from seqcore import limit_threads
from seqcore.metrics import exact_match
from seqcore.optim import Adam, Cosine

DIGITS = "0123456789"
VOCAB = seqcore.Vocab.build([DIGITS])
# (label, attention, bidirectional encoder, hidden size): about 20k parameters each.
MODELS = [("none (bi)", None, True, 48), ("bahdanau (bi)", "bahdanau", True, 36),
          ("luong (bi)", "luong", True, 36), ("dot (uni)", "dot", False, 48)]


def pairs(rng, n, lo, hi):
    out = []
    for _ in range(n):
        s = "".join(rng.choice(list(DIGITS), rng.integers(lo, hi + 1)))
        out.append((s, s[::-1]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--max-len", type=int, default=16)
    ap.add_argument("--test", type=int, default=300, help="held-out strings per bucket")
    args = ap.parse_args()
    buckets = [(3, 6), (7, 10), (11, 13), (14, args.max_len)]
    rows = []
    for label, attention, bi, hidden in MODELS:
        acc = np.zeros((args.seeds, len(buckets)))
        t0 = time.perf_counter()
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            train = pairs(rng, 20000, 3, args.max_len)
            model = seqcore.Seq2Seq(VOCAB, VOCAB, cell="gru", hidden_size=hidden,
                                    embedding_dim=8, attention=attention,
                                    bidirectional_encoder=bi, seed=seed)
            model.fit(train, steps=args.steps, batch_size=32,
                      optimizer=Adam(0.01, schedule=Cosine(args.steps, final=0.05)),
                      progress=False, seed=seed)
            test_rng = np.random.default_rng(1000 + seed)
            for j, (lo, hi) in enumerate(buckets):
                test = pairs(test_rng, args.test, lo, hi)
                pred = model.translate([s for s, _ in test], max_len=hi + 2)
                acc[seed, j] = exact_match(pred, [t for _, t in test])
        rows.append((label, model.num_parameters(), acc.mean(axis=0), acc.std(axis=0),
                     (time.perf_counter() - t0) / args.seeds))
    head = " | ".join(f"len {lo}-{hi}" for lo, hi in buckets)
    print(f"\nReverse a digit string, {args.steps} steps x 32, {args.seeds} seeds "
          f"(mean exact match, ± std over seeds)\n")
    print(f"| attention | params | {head} | s/run |")
    print("|---" * (len(buckets) + 3) + "|")
    for label, n, mean, std, sec in rows:
        cells = " | ".join(f"{m:.0%} ± {s:.0%}" for m, s in zip(mean, std))
        print(f"| {label} | {n:,} | {cells} | {sec:.1f} |")


if __name__ == "__main__":
    with limit_threads(1):
        main()
