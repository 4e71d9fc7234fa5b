"""The `seqcore ocr-demo` command: a CTC transcriber learns to read rendered text lines.

Random lines (words of random letters and digits) are drawn with the font that Pillow
ships, in varied sizes, letter spacing and vertical positions, with pixel noise
(``seqcore.data.ocr``). Each image's pixel columns, left to right, are the input
sequence of a ``SequenceTranscriber``. No alignment between columns and characters is
given: CTC learns it. Prints the held-out character and word error rates on lines
never seen in training, and with ``--plot`` draws one line above its CTC posteriors.
"""

import time

import numpy as np

from .args import (CommandError, check_output_folder, nonnegative_int, number, positive_int,
                   require_matplotlib)

__all__ = ["register"]


def register(subparsers):
    p = subparsers.add_parser(
        "ocr-demo", help="CTC: a transcriber learns to read rendered text lines",
        description="Train a SequenceTranscriber (bidirectional recurrent layers read out "
        "with CTC) on random text lines rendered with Pillow's own font, whose pixel "
        "columns are the input sequence; print the character and word error rates on "
        "held-out lines. Needs Pillow and jiwer: pip install 'seqcore[ocr]'.")
    p.add_argument("--cell", choices=("gru", "lstm", "rnn"), default="gru",
                   help="recurrent cell (default: gru)")
    p.add_argument("--hidden", type=positive_int, default=64, metavar="N",
                   help="hidden units per direction (default: 64)")
    p.add_argument("--layers", type=positive_int, default=2, metavar="N",
                   help="stacked bidirectional layers (default: 2)")
    p.add_argument("--steps", type=positive_int, default=1500, metavar="N",
                   help="optimizer updates (default: 1500)")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N",
                   help="lines per mini-batch (default: 32)")
    p.add_argument("--lr", type=number(0, True), default=0.01, metavar="X",
                   help="Adam learning rate, cosine-decayed (default: 0.01)")
    p.add_argument("--train-size", type=positive_int, default=4000, metavar="N",
                   help="training lines (default: 4000)")
    p.add_argument("--test-size", type=positive_int, default=300, metavar="N",
                   help="held-out lines (default: 300)")
    p.add_argument("--beam-size", type=positive_int, default=1, metavar="K",
                   help="beam size for the held-out lines (default: 1, greedy)")
    p.add_argument("--examples", type=nonnegative_int, default=5, metavar="N",
                   help="held-out lines to print (default: 5)")
    p.add_argument("--plot", metavar="PNG",
                   help="draw the first held-out line above its CTC posteriors (needs "
                        "matplotlib)")
    p.add_argument("--save", metavar="MODEL", help="save the trained model to MODEL (.npz)")
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="S",
                   help="random seed for the weights and the lines (default: 0)")
    p.add_argument("--threads", type=positive_int, metavar="N",
                   help="the core's threads (default: all cores; BLAS on one)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_ocr_demo)


def cmd_ocr_demo(args):
    from .._threads import limit_threads
    if args.plot:
        check_output_folder(args.plot, "plot")
    plt = require_matplotlib() if args.plot else None
    try:
        import jiwer  # noqa: F401
        import PIL  # noqa: F401
    except ImportError as exc:
        raise CommandError(f"ocr-demo needs Pillow and jiwer ({exc.name} is missing): "
                           "pip install 'seqcore[ocr]'") from None
    with limit_threads(args.threads, 1):
        return _run(args, plt)


def _run(args, plt):
    from ..data.ocr import CHARSET, HEIGHT, ocr_dataset
    from ..data.text import Vocab
    from ..models import SequenceTranscriber
    from ..train.optim import Adam, Cosine

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    train = ocr_dataset(args.train_size, rng)
    test = ocr_dataset(args.test_size, rng)
    seen = set(train[1])
    keep = [i for i, t in enumerate(test[1]) if t not in seen]      # lines never seen
    test = ([test[0][i] for i in keep], [test[1][i] for i in keep])
    labels = Vocab.build([CHARSET + " "])
    model = SequenceTranscriber(labels, input_size=HEIGHT, cell=args.cell,
                                hidden_size=args.hidden, num_layers=args.layers,
                                seed=args.seed)
    print(f"rendered {len(train[1])} training lines and {len(test[1])} held-out lines "
          f"({time.perf_counter() - t0:.1f} s); {args.cell} {args.layers}x{args.hidden} "
          f"bidirectional, {model.num_parameters()} parameters")
    t0 = time.perf_counter()
    model.fit(train, steps=args.steps, batch_size=args.batch_size,
              optimizer=Adam(args.lr, schedule=Cosine(args.steps, final=0.05)),
              progress=not args.quiet, seed=args.seed)
    seconds = time.perf_counter() - t0
    scores = model.evaluate(test, beam_size=args.beam_size)
    shown = model.predict(test[0][:args.examples], beam_size=args.beam_size)
    for text, pred in zip(test[1], shown):
        print(f"  {text!r:28} read as {pred!r:28} {'ok' if pred == text else ''}")
    print(f"held-out: character error rate {100 * scores['cer']:.2f}%, word error rate "
          f"{100 * scores['wer']:.2f}%, loss {scores['token_loss']:.3f} per label "
          f"({args.steps} steps in {seconds:.0f} s)")
    if args.save:
        model.save(args.save)
        print(f"model saved to {args.save}")
    if plt is not None:
        _plot(plt, model, test[0][0], test[1][0], args.plot)
        print(f"plot written to {args.plot}")
    return 0


def _plot(plt, model, image, text, path):
    """The line's image above the softmax of its CTC logits over the columns."""
    logits = model.forward(image[:, None, :])[:, 0].astype(np.float64)   # (T, C)
    post = np.exp(logits - logits.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6, image.shape[0] / 20), 5),
                                      sharex=True, gridspec_kw={"height_ratios": [1, 2]})
    top.imshow(image.T, cmap="gray_r", aspect="auto")
    top.set_title(f"{text!r} read as {model.predict([image])[0]!r}")
    top.set_yticks([])
    labels = model.labels
    shown = [c for c in range(post.shape[1]) if post[:, c].max() > 0.3]
    for c in shown:
        name = "blank" if c == 0 else ("space" if labels[c] == " " else labels[c])
        bottom.plot(post[:, c], label=name)
    bottom.set_xlabel("pixel column (time step)")
    bottom.set_ylabel("posterior")
    bottom.legend(ncol=8, fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
