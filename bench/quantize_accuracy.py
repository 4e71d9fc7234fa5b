"""What int8 weights (seqcore.quantize) cost in accuracy, each model against its own
float32 model (the table of docs/performance.md, "int8 weights: accuracy").

    python bench/quantize_accuracy.py [--out DIR] [--quick]

1. The stream language model of docs/language-models.md (`seqcore train --stream
   --layers 2 --hidden 128 --embedding 64 --dropout 0.2 --steps 1500 --seed 0`):
   held-out bits per character (the last 5% of the text, as `seqcore train` holds it
   out), through `seqcore quantize` and `seqcore evaluate --json` (batches: the float
   product on the int8 weights), and on its first 4,000 characters read one token at
   a time (the path of sampling: int8 x int8 products).
2. A word-level LSTM language model on the same text: held-out perplexity, the same
   two ways (1,500 words one at a time).
3. A SequenceClassifier (bidirectional LSTM, character inputs): the share of held-out
   examples whose predicted class is the same.
4. `seqcore translate-demo` (its defaults, `--save`): held-out exact match and BLEU on
   its 500 unseen dates.

Targets (the issue's): bits/char within 1%, perplexity within 2%, the same class on at
least 99% of held-out examples, exact match within 1 point. --quick trains every model
a tenth as long (a smoke run: the figures then mean little).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np


def _seqcore(*args):
    out = subprocess.run([sys.executable, "-m", "seqcore", *args], capture_output=True,
                         text=True, check=True)
    return out.stdout


def _evaluate(model, text_file):
    return json.loads(_seqcore("evaluate", model, text_file, "--json"))


def lm_rows(out, level, steps, extra):
    """Train on the built-in text (a file of it at word level, which `seqcore train`
    takes only as a CORPUS), quantize, evaluate both on the held-out 5%."""
    import seqcore
    text = seqcore.text.default_text()
    corpus = os.path.join(out, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write(text)
    held = os.path.join(out, f"held-{level}.txt")
    with open(held, "w", encoding="utf-8") as f:
        f.write(text[int(len(text) * 0.95):])
    model = os.path.join(out, f"lm-{level}.npz")
    small = os.path.join(out, f"lm-{level}.int8.npz")
    _seqcore("train", *([corpus] if level == "word" else []), "--stream", "--level", level,
             "--steps", str(steps), "--seed", "0", "--out", model, "--no-progress",
             "--samples", "0", *extra)
    sizes = _seqcore("quantize", model, small).splitlines()[1].split(":", 1)[1].strip()
    f32, i8 = _evaluate(model, held), _evaluate(small, held)
    key = "bits_per_char" if level == "char" else "perplexity"
    stepped = [stepped_nll(seqcore.load(m), text[int(len(text) * 0.95):], STEPPED[level])
               for m in (model, small)]
    return key, f32[key], i8[key], sizes, stepped


# Tokens of the held-out text read one at a time (the int8 x int8 step, as in sampling).
STEPPED = {"char": 4000, "word": 1500}


def stepped_nll(model, text, n):
    """Mean negative log-likelihood (nats) of the first n tokens of text after the
    first, read one token at a time: each step a forward of one token of one
    sequence, the path generation takes (for an int8 model, int8 x int8 products)."""
    model.eval()                                    # no dropout, as evaluate runs
    ids = model.stream_ids(text)[:n + 1]
    state, nll = None, 0.0
    for t in range(len(ids) - 1):
        logits, state = model.forward(np.array([[ids[t]]]), state)
        z = logits[0, 0].astype(np.float64)
        nll += np.log(np.exp(z - z.max()).sum()) + z.max() - z[ids[t + 1]]
    return nll / (len(ids) - 1)


def classifier_row(steps):
    import seqcore
    rng = np.random.default_rng(0)

    def data(n):
        xs = ["".join(rng.choice(list("abcd"), int(rng.integers(5, 30)))) for _ in range(n)]
        ys = [int(np.argmax([x.count(c) + 0.1 * i for i, c in enumerate("abcd")])) for x in xs]
        return xs, ys

    train, held = data(4000), data(2000)
    clf = seqcore.SequenceClassifier(4, vocab=seqcore.Vocab.build(["abcd"]), cell="lstm",
                                     hidden_size=64, embedding_dim=16, bidirectional=True,
                                     seed=0)
    clf.fit(train, steps=steps, batch_size=64, progress=False, seed=0)
    f32 = np.asarray(clf.predict(held[0]))
    i8 = np.asarray(seqcore.quantize(clf).predict(held[0]))
    return float(np.mean(f32 == np.asarray(held[1]))), float(np.mean(i8 == np.asarray(held[1]))), \
        float(np.mean(f32 == i8))


def translate_row(out, steps):
    import seqcore
    from seqcore.experiments import date_pairs, date_split
    model = os.path.join(out, "s2s.npz")
    _seqcore("translate-demo", "--steps", str(steps), "--save", model, "--no-plot",
             "--quiet", "--examples", "0")
    rng = np.random.default_rng(0)                 # the demo's held-out set, as it makes it
    train_days, test_days = date_split(rng=rng)
    date_pairs(train_days, 20000, rng, noise=True)
    test = date_pairs(test_days, 500, rng, noise=True)
    f32 = seqcore.load(model)
    a = f32.evaluate(test, metrics=True)
    b = seqcore.quantize(f32).evaluate(test, metrics=True)
    return a["exact_match"], b["exact_match"], a["bleu"], b["bleu"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="quantize-accuracy", help="folder for the models")
    p.add_argument("--quick", action="store_true", help="a tenth of the training (smoke)")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    div = 10 if args.quick else 1
    import seqcore
    from seqcore.bench import cpu_name
    print(f"int8 weights against each model's own float32 weights; {cpu_name()}, "
          f"seqcore {seqcore.__version__}, kernel path {seqcore.cpu_info()['kernels']}")
    print("| model | measure | float32 | int8 | int8 / float32 | target |")
    print("|---|---|---|---|---|---|")
    key, a, b, sizes, (s32, s8) = lm_rows(
        args.out, "char", 1500 // div,
        ["--layers", "2", "--hidden", "128", "--embedding", "64", "--dropout", "0.2"])
    print(f"| stream LM, 2-layer LSTM 128 (weights {sizes}) | held-out bits/char | "
          f"{a:.4f} | {b:.4f} | {b / a:.4f} | within 1% |", flush=True)
    a, b = s32 / np.log(2), s8 / np.log(2)
    print(f"| the same, {STEPPED['char']} characters a token at a time | bits/char | "
          f"{a:.4f} | {b:.4f} | {b / a:.4f} | within 1% |", flush=True)
    key, a, b, sizes, (s32, s8) = lm_rows(
        args.out, "word", 1000 // div,
        ["--hidden", "256", "--embedding", "128", "--seq-len", "32"])
    print(f"| word LM, LSTM 256 (weights {sizes}) | held-out perplexity | {a:.2f} | "
          f"{b:.2f} | {b / a:.4f} | within 2% |", flush=True)
    a, b = np.exp(s32), np.exp(s8)
    print(f"| the same, {STEPPED['word']} words a token at a time | perplexity | "
          f"{a:.2f} | {b:.2f} | {b / a:.4f} | within 2% |", flush=True)
    acc32, acc8, same = classifier_row(600 // div)
    print(f"| classifier, bidirectional LSTM 64 | held-out accuracy (same class) | "
          f"{acc32:.2%} | {acc8:.2%} ({same:.2%} the same) | | the same on 99% |", flush=True)
    em32, em8, bleu32, bleu8 = translate_row(args.out, 1000 // div)
    print(f"| translate-demo, GRU 64 + Luong attention | held-out exact match (BLEU) | "
          f"{em32:.1%} ({bleu32:.1f}) | {em8:.1%} ({bleu8:.1f}) | {100 * (em8 - em32):+.1f} "
          f"points | within 1 point |", flush=True)


if __name__ == "__main__":
    main()
