"""The `seqcore translate-demo` command: an encoder-decoder with attention learns to read dates.

Human-readable dates ("Wednesday, November 25th, 2026", "due 25.11.2026", "nov 25th
2026", ...; ``seqcore.experiments.date_pairs`` with noise words and long forms) are
translated to ISO ("2026-11-25"). Training and held-out pairs are generated on the
fly; the held-out dates are days never seen in training. Prints examples, exact
match and corpus BLEU on the held-out set, and writes the attention of one example
as a heat map (``--plot``, needs matplotlib).
"""

import os
import time

import numpy as np

from .args import (CommandError, check_output_folder, nonnegative_int, number,
                   positive_int)

ATTENTION_CHOICES = ("bahdanau", "luong", "dot", "none")


def register(subparsers):
    t = subparsers.add_parser(
        "translate-demo", help="seq2seq with attention: human-readable dates to ISO",
        description="Train a Seq2Seq model with a bidirectional encoder and attention to "
        "translate human-readable dates (long forms, noise words) to ISO dates, generated "
        "on the fly; print examples, exact match and BLEU on held-out dates (days never "
        "seen in training) and plot the attention of one example.")
    t.add_argument("--attention", choices=ATTENTION_CHOICES, default="luong",
                   help="attention kind, or none (default: luong)")
    t.add_argument("--unidirectional", action="store_true",
                   help="a unidirectional encoder (default: bidirectional; needed for "
                   "--attention dot)")
    t.add_argument("--cell", choices=("gru", "lstm", "rnn"), default="gru",
                   help="recurrent cell (default: gru)")
    t.add_argument("--hidden", type=positive_int, default=64, metavar="N",
                   help="hidden units per direction (default: 64)")
    t.add_argument("--embedding", type=positive_int, default=16, metavar="N",
                   help="embedding width (default: 16)")
    t.add_argument("--steps", type=positive_int, default=1000, metavar="N",
                   help="optimizer updates (default: 1000, about 10 s on one core)")
    t.add_argument("--batch-size", type=positive_int, default=64, metavar="N",
                   help="pairs per mini-batch (default: 64)")
    t.add_argument("--lr", type=number(0, True), default=0.01, metavar="X",
                   help="Adam learning rate, cosine-decayed (default: 0.01)")
    t.add_argument("--train-size", type=positive_int, default=20000, metavar="N",
                   help="training pairs (default: 20000)")
    t.add_argument("--test-size", type=positive_int, default=500, metavar="N",
                   help="held-out pairs (default: 500)")
    t.add_argument("--beam-size", type=positive_int, default=1, metavar="K",
                   help="beam size for the held-out translations (default: 1, greedy)")
    t.add_argument("--examples", type=nonnegative_int, default=5, metavar="N",
                   help="held-out examples to print (default: 5)")
    t.add_argument("--plot", metavar="PNG", default="attention.png",
                   help="write the attention of the first held-out example to PNG (default: "
                   "attention.png; needs matplotlib: pip install 'seqcore[plot]')")
    t.add_argument("--no-plot", action="store_true", help="write no plot")
    t.add_argument("--save", metavar="MODEL", help="save the trained model to MODEL (.npz)")
    t.add_argument("--seed", type=nonnegative_int, default=0, metavar="S",
                   help="random seed for the weights and the data (default: 0)")
    t.add_argument("--threads", type=positive_int, default=1, metavar="N",
                   help="threads for BLAS and the compiled core (default: 1)")
    t.add_argument("--quiet", action="store_true", help="no progress lines")
    t.set_defaults(func=cmd_translate_demo)


def cmd_translate_demo(args):
    from .._threads import limit_threads
    plot = None if args.no_plot else args.plot
    if plot:
        check_output_folder(plot, "plot")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CommandError("--plot needs matplotlib, which is not installed: pip install "
                               "'seqcore[plot]' (or pass --no-plot)") from None
    attention = None if args.attention == "none" else args.attention
    if attention == "dot" and not args.unidirectional:
        raise CommandError("--attention dot needs --unidirectional (dot scores need the "
                           "decoder width to equal the encoder output width)")
    with limit_threads(args.threads):
        return _run(args, attention, plot)


def _run(args, attention, plot):
    from ..data.text import Vocab
    from ..experiments import date_pairs, date_split
    from ..models import Seq2Seq
    from ..models.seq2seq import plot_attention
    from ..train.optim import Adam, Cosine

    rng = np.random.default_rng(args.seed)
    train_days, test_days = date_split(rng=rng)
    train = date_pairs(train_days, args.train_size, rng, noise=True)
    test = date_pairs(test_days, args.test_size, rng, noise=True)
    src = Vocab.build(s for s, _ in train)
    tgt = Vocab.build(t for _, t in train)
    model = Seq2Seq(src, tgt, cell=args.cell, hidden_size=args.hidden,
                            embedding_dim=args.embedding, attention=attention,
                            bidirectional_encoder=not args.unidirectional, seed=args.seed)
    print(f"dates -> ISO: {len(train)} training pairs, {len(test)} held-out (unseen days); "
          f"attention={attention}, bidirectional encoder={not args.unidirectional}, "
          f"{args.cell} {args.hidden}, {model.num_parameters()} parameters")

    t0 = time.perf_counter()
    model.fit(train, steps=args.steps, batch_size=args.batch_size,
              optimizer=Adam(args.lr, schedule=Cosine(args.steps, final=0.05)),
              valid=None if args.quiet else test[:200],
              eval_every=None if args.quiet else max(args.steps // 5, 1),
              progress=not args.quiet,
              seed=args.seed)
    seconds = time.perf_counter() - t0
    scores = model.evaluate(test, metrics=True, beam_size=args.beam_size)
    sources = [s for s, _ in test]
    shown = model.translate(sources[:max(args.examples, 1)], beam_size=args.beam_size,
                            return_attention=attention is not None)
    preds, attn = shown if attention is not None else (shown, None)
    for (s, t), p in list(zip(test, preds))[:args.examples]:
        print(f"  {s!r:48} -> {p!r:14} {'ok' if p == t else 'expected ' + repr(t)}")
    print(f"trained {args.steps} steps in {seconds:.1f} s; held-out ({len(test)} pairs, "
          f"beam {args.beam_size}): exact match {scores['exact_match']:.1%}, "
          f"BLEU {scores['bleu']:.1f}, loss {scores['loss']:.3f} per date")
    if plot and attn is not None:
        outputs = list(tgt.tokenize(preds[0]))
        labels = outputs + ["<EOS>"] if len(outputs) + 1 == attn[0].shape[0] else outputs
        plot_attention(attn[0], model.source_tokens(sources[0]), labels, plot,
                       title=f"{sources[0]} -> {preds[0]}")
        print(f"attention plot written to {plot}")
    elif plot:
        print("no attention plot: the model has no attention (--attention none)")
    if args.save:
        model.save(args.save)
        print(f"model saved to {args.save}")
    return 0

