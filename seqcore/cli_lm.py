"""The `seqcore train` and `seqcore sample` commands: a language model from a text file (or built-in names), and its samples.

`seqcore train` with no corpus trains a character-level name generator on name-like
words that ship with every Python (the functions and classes its standard library
defines); no download, no extra package.
"""

import argparse
import math
import os
import sys

import numpy as np

DEFAULT_OUT = "seqcore-lm.npz"


def _int_at_least(minimum, words):
    """An argparse type: an integer >= minimum, else a one-line error naming ``words``."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {words}, got {text!r}")
        return value
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonnegative_int = _int_at_least(0, "an integer >= 0")


def _number(minimum, strict):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            bound = ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"expected a number {bound} {minimum}, got {text!r}")
        return value
    return parse


def register(subparsers):
    t = subparsers.add_parser(
        "train", help="train a language model on a text file (default: built-in names)",
        description="Train a recurrent language model on CORPUS (a UTF-8 text file, one "
        "training sequence per line), or, without CORPUS, a character-level name "
        "generator on name-like words from the Python standard library. Shows a progress "
        "bar, prints samples as it goes, and saves the model.")
    t.add_argument("corpus", nargs="?", metavar="CORPUS",
                   help="text file, one sequence per line (default: built-in names)")
    t.add_argument("--level", choices=("char", "word"), default="char",
                   help="tokens are characters or words (default: char)")
    t.add_argument("--cell", choices=("lstm", "gru", "rnn"), default="lstm",
                   help="recurrent cell (default: lstm)")
    t.add_argument("--hidden", type=_positive_int, default=128, metavar="N",
                   help="hidden units per layer (default: 128)")
    t.add_argument("--layers", type=_positive_int, default=1, metavar="N",
                   help="stacked recurrent layers (default: 1)")
    t.add_argument("--embedding", type=_nonnegative_int, default=0, metavar="N",
                   help="learned embedding width; 0 feeds 1-hot vectors (default: 0)")
    t.add_argument("--steps", type=_positive_int, default=1000, metavar="N",
                   help="optimizer updates (default: 1000)")
    t.add_argument("--seq-len", type=_positive_int, default=64, metavar="N",
                   help="truncated BPTT length: longer lines are cut into chunks of N "
                   "steps with the state carried between them (default: 64)")
    t.add_argument("--batch-size", type=_positive_int, default=64, metavar="N",
                   help="sequences per mini-batch (default: 64)")
    t.add_argument("--lr", type=_number(0, True), default=0.01, metavar="X",
                   help="Adam learning rate, decayed to a tenth by a cosine schedule "
                   "(default: 0.01)")
    t.add_argument("--clip", type=_number(0, False), default=5.0, metavar="X",
                   help="clip the gradients' global norm to X; 0 turns clipping off "
                   "(default: 5)")
    t.add_argument("--seed", type=_nonnegative_int, default=None, metavar="S",
                   help="random seed for the split, the weights and the batches")
    t.add_argument("--out", default=DEFAULT_OUT, metavar="PATH",
                   help=f"where to save the model (default: ./{DEFAULT_OUT})")
    t.add_argument("--plot", metavar="PNG",
                   help="also write the loss curve to PNG (needs matplotlib: "
                   "pip install 'seqcore[plot]')")
    t.add_argument("--samples", type=_nonnegative_int, default=5, metavar="N",
                   help="samples printed during and after training (default: 5)")
    t.add_argument("--threads", type=_positive_int, default=1, metavar="N",
                   help="threads for BLAS and the compiled core; small models run "
                   "fastest on one (default: 1)")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    t.set_defaults(func=_with_threads(cmd_train))

    s = subparsers.add_parser(
        "sample", help="print samples from a trained language model",
        description="Print samples from a language model saved by `seqcore train`, one "
        "per line. The same --seed prints the same lines.")
    s.add_argument("model", metavar="MODEL", help="model file (.npz) written by seqcore train")
    s.add_argument("--n", type=_positive_int, default=10, metavar="N",
                   help="number of samples (default: 10)")
    s.add_argument("--temperature", type=_number(0, False), default=1.0, metavar="T",
                   help="divide the logits by T: < 1 is safer, > 1 wilder; 0 is greedy "
                   "(default: 1)")
    s.add_argument("--top-k", type=_positive_int, default=None, metavar="K",
                   help="draw only among the K most likely tokens")
    s.add_argument("--greedy", action="store_true", help="always take the most likely token")
    s.add_argument("--prime", default="", metavar="TEXT",
                   help="start every sample with TEXT (unknown symbols read as <UNK>)")
    s.add_argument("--seed", type=_nonnegative_int, default=None, metavar="S",
                   help="random seed: the same seed prints the same samples")
    s.add_argument("--max-len", type=_positive_int, default=100, metavar="M",
                   help="stop a sample after M new tokens (default: 100)")
    s.set_defaults(func=_with_threads(cmd_sample), threads=1)


def _with_threads(command):
    def run(args):
        from ._threads import limit_threads
        with limit_threads(args.threads):
            return command(args)
    return run


def _require_matplotlib():
    from .__main__ import CommandError
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CommandError("--plot needs matplotlib, which is not installed: "
                           "pip install 'seqcore[plot]'") from None
    return plt


def _plot(plt, history, baseline, path):
    loss = np.asarray(history["loss"])
    steps = np.asarray(history["step"])
    window = max(len(loss) // 50, 1)
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, loss, color="0.8", lw=0.8, label="training loss (each step)")
    ax.plot(steps[window - 1:], smooth, color="C0", label=f"training loss ({window}-step mean)")
    if history["valid_step"]:
        ax.plot(history["valid_step"], history["valid_loss"], "o-", color="C1",
                label="held-out loss")
    ax.axhline(baseline, color="C3", ls="--", lw=1, label="uniform baseline ln V")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy per token (nats)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cmd_train(args):
    from . import LanguageModel, Vocab, optim
    from .__main__ import CommandError
    from .text import default_corpus, read_corpus
    from tqdm.auto import tqdm

    plt = _require_matplotlib() if args.plot else None
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise CommandError(f"--out {args.out}: directory {out_dir} does not exist")
    if args.corpus is None:
        texts = default_corpus()
        print(f"corpus: {len(texts)} names defined in the Python standard library "
              "(no CORPUS given)")
        if args.level != "char":
            raise CommandError("the built-in names are for --level char; give a CORPUS "
                               "file for word level")
    else:
        texts = read_corpus(args.corpus)
        print(f"corpus: {len(texts)} lines from {args.corpus}")

    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(texts))
    n_valid = len(texts) // 20 if len(texts) >= 40 else 0          # 5% held out
    valid = [texts[i] for i in order[:n_valid]] or None
    train_texts = [texts[i] for i in order[n_valid:]]
    vocab = Vocab.build(train_texts, args.level)
    seed = int(rng.integers(2**31 - 1)) if args.seed is not None else None
    model = LanguageModel(vocab, cell=args.cell, hidden_size=args.hidden,
                          num_layers=args.layers, embedding_dim=args.embedding or None,
                          seed=seed)
    baseline = math.log(len(vocab))
    print(f"model: {args.cell.upper()} {args.layers}x{args.hidden}, vocabulary {len(vocab)} "
          f"{args.level} tokens, {model.num_parameters():,} parameters; "
          f"{len(train_texts)} training and {n_valid} held-out sequences")
    sys.stdout.flush()

    every = max(args.steps // 4, 1)

    def show_samples(step, model, history):
        if args.samples and step % every == 0 and step < args.steps:
            lines = model.sample(args.samples, seed=step, max_len=50)
            tqdm.write(f"step {step} samples: " + ", ".join(lines))

    schedule = optim.Cosine(args.steps, final=0.1)
    history = model.fit(train_texts, steps=args.steps, batch_size=args.batch_size,
                        lr=args.lr, optimizer=optim.Adam(args.lr, schedule=schedule),
                        clip_norm=args.clip or None, valid=valid, seed=seed,
                        progress=not args.no_progress, callback=show_samples,
                        seq_len=args.seq_len)
    path = model.save(args.out)

    secs = history["seconds"]
    print(f"trained {args.steps} steps in {secs:.1f} s "
          f"({history['tokens_per_second']:,.0f} tokens/s)")
    if valid:
        print(f"held-out loss {history['valid_loss'][-1]:.3f} nats/token, perplexity "
              f"{history['valid_perplexity'][-1]:.2f} (uniform baseline {baseline:.3f}, "
              f"perplexity {len(vocab)})")
    if args.samples:
        print("samples:")
        for line in model.sample(args.samples, seed=args.seed, max_len=100):
            print(f"  {line}")
    if plt is not None:
        _plot(plt, history, baseline, args.plot)
        print(f"loss curve saved to {args.plot}")
    print(f"model saved to {path}  (try: seqcore sample {path})")
    return 0


def cmd_sample(args):
    from . import LanguageModel, load
    from .__main__ import CommandError

    model = load(args.model)
    if not isinstance(model, LanguageModel):
        raise CommandError(f"{args.model}: holds a {model.kind}, not a language model")
    for line in model.sample(args.n, max_len=args.max_len, temperature=args.temperature,
                             top_k=args.top_k, greedy=args.greedy, prime=args.prime,
                             seed=args.seed):
        print(line)
    return 0
