"""The `seqcore train`, `seqcore sample` and `seqcore evaluate` commands: a language model from a text file (or built-in names).

`seqcore train` with no corpus trains a character-level name generator on name-like
words that ship with every Python (the functions and classes its standard library
defines); no download, no extra package. With ``--stream`` the file is one running
text (a book, a code base), trained by truncated BPTT over parallel streams.

Files: ``--out`` holds the model with the best held-out loss, and the model after
the last step is kept beside it (``NAME.last.npz``; without held-out text the two
are one file). Ctrl-C ends training after the step under way, saves that step to
the last-step file (atomically) and says in one line how to continue: the same
command with ``--resume FILE``, which carries on with the same batches, masks and
updates, so the final model is the one an uninterrupted run gives (``--steps``
counts the run's total updates).

``--json`` (train, evaluate) prints the figures as one JSON object on stdout: the loss
per token in nats, the perplexity and the bits per character (None at word level),
with what else the command knows; the lines a person reads go to stderr.
"""

import contextlib
import hashlib
import json
import math
import os
import signal
import sys

import numpy as np

from .args import (CommandError, fraction, nonnegative_int, number, positive_int,
                   require_matplotlib)

DEFAULT_OUT = "seqcore-lm.npz"


def register(subparsers):
    t = subparsers.add_parser(
        "train", help="train a language model on a text file (default: built-in names)",
        description="Train a recurrent language model on CORPUS (a UTF-8 text file, one "
        "training sequence per line, or with --stream one running text), or, without "
        "CORPUS, a character-level name generator on name-like words from the Python "
        "standard library. Shows a progress bar and the held-out loss, prints samples as "
        "it goes, and saves the best and the last model. Ctrl-C saves the last finished "
        "step; --resume continues from it.")
    t.add_argument("corpus", nargs="?", metavar="CORPUS",
                   help="text file, one sequence per line (default: built-in names; with "
                   "--stream the standard library's docstrings)")
    t.add_argument("--stream", action="store_true",
                   help="read CORPUS as one running text (newlines are tokens), cut into "
                   "--batch-size parallel streams and trained in --seq-len windows with the "
                   "state carried between them")
    t.add_argument("--valid-frac", type=fraction, default=0.05, metavar="F",
                   help="hold out this fraction for the held-out loss: the end of the "
                   "text with --stream, random lines otherwise (default: 0.05)")
    t.add_argument("--eval-every", type=positive_int, default=None, metavar="N",
                   help="measure the held-out loss every N steps (default: --steps / 5)")
    t.add_argument("--dropout", type=fraction, default=0.0, metavar="P",
                   help="dropout on the inputs, between stacked layers and on the output "
                   "(training only; default: 0)")
    t.add_argument("--tie-weights", action="store_true",
                   help="share the embedding with the output layer (needs --embedding "
                   "equal to --hidden)")
    t.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default="adam",
                   help="adam, adamw (decoupled weight decay) or sgd (default: adam)")
    t.add_argument("--weight-decay", type=number(0, False), default=0.0, metavar="X",
                   help="weight decay: decoupled with adamw, L2 with sgd (default: 0)")
    t.add_argument("--schedule", choices=("cosine", "plateau", "constant"), default="cosine",
                   help="learning rate: cosine decay to a tenth, divided by --plateau-factor "
                   "when the held-out loss stops improving, or constant (default: cosine)")
    t.add_argument("--plateau-factor", type=number(0, True), default=0.25, metavar="X",
                   help="with --schedule plateau: multiply the rate by X (default: 0.25)")
    t.add_argument("--patience", type=nonnegative_int, default=0, metavar="N",
                   help="with --schedule plateau: measurements without improvement "
                   "tolerated before the rate drops (default: 0)")
    t.add_argument("--resume", metavar="MODEL",
                   help="continue the run saved in MODEL (by Ctrl-C or at the end) up to "
                   "--steps updates in all")
    t.add_argument("--level", choices=("char", "word"), default="char",
                   help="tokens are characters or words (default: char)")
    t.add_argument("--cell", choices=("lstm", "gru", "rnn"), default="lstm",
                   help="recurrent cell (default: lstm)")
    t.add_argument("--hidden", type=positive_int, default=128, metavar="N",
                   help="hidden units per layer (default: 128)")
    t.add_argument("--layers", type=positive_int, default=1, metavar="N",
                   help="stacked recurrent layers (default: 1)")
    t.add_argument("--embedding", type=nonnegative_int, default=0, metavar="N",
                   help="learned embedding width; 0 feeds 1-hot vectors (default: 0)")
    t.add_argument("--steps", type=positive_int, default=1000, metavar="N",
                   help="optimizer updates in the whole run (default: 1000)")
    t.add_argument("--seq-len", type=positive_int, default=64, metavar="N",
                   help="truncated BPTT length: longer lines are cut into chunks of N "
                   "steps with the state carried between them (default: 64)")
    t.add_argument("--batch-size", type=positive_int, default=64, metavar="N",
                   help="sequences per mini-batch (default: 64)")
    t.add_argument("--lr", type=number(0, True), default=0.01, metavar="X",
                   help="learning rate at the start; --schedule says how it changes "
                   "(default: 0.01)")
    t.add_argument("--clip", type=number(0, False), default=5.0, metavar="X",
                   help="clip the gradients' global norm to X; 0 turns clipping off "
                   "(default: 5)")
    t.add_argument("--seed", type=nonnegative_int, default=None, metavar="S",
                   help="random seed for the split, the weights and the batches")
    t.add_argument("--out", default=DEFAULT_OUT, metavar="PATH",
                   help=f"where to save the model (default: ./{DEFAULT_OUT})")
    t.add_argument("--plot", metavar="PNG",
                   help="also write the loss curve to PNG (needs matplotlib: "
                   "pip install 'seqcore[plot]')")
    t.add_argument("--samples", type=nonnegative_int, default=5, metavar="N",
                   help="samples printed during and after training (default: 5)")
    t.add_argument("--distributed", action="store_true",
                   help="train data-parallel over MPI: run under mpiexec -n N (or srun); "
                   "each rank trains on its block of the corpus, --batch-size per rank "
                   "(needs pip install 'seqcore[mpi]')")
    t.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="threads for BLAS and the compiled core (default: the compiled "
                   "core on every core, which steps down to one while other processes "
                   "take them; BLAS on one)")
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    t.add_argument("--json", action="store_true",
                   help="print the figures (held-out loss per token, perplexity, bits per "
                   "character, speed, files) as one JSON object on stdout; the other lines "
                   "go to stderr")
    t.set_defaults(func=_with_threads(cmd_train))

    s = subparsers.add_parser(
        "sample", help="print samples from a trained language model",
        description="Print samples from a language model saved by `seqcore train`, one "
        "per line. The same --seed prints the same lines.")
    s.add_argument("model", metavar="MODEL", help="model file (.npz) written by seqcore train")
    s.add_argument("--n", type=positive_int, default=10, metavar="N",
                   help="number of samples (default: 10)")
    s.add_argument("--temperature", type=number(0, False), default=1.0, metavar="T",
                   help="divide the logits by T: < 1 is safer, > 1 wilder; 0 is greedy "
                   "(default: 1)")
    s.add_argument("--top-k", type=positive_int, default=None, metavar="K",
                   help="draw only among the K most likely tokens")
    s.add_argument("--greedy", action="store_true", help="always take the most likely token")
    s.add_argument("--prime", default="", metavar="TEXT",
                   help="start every sample with TEXT (unknown symbols read as <UNK>)")
    s.add_argument("--seed", type=nonnegative_int, default=None, metavar="S",
                   help="random seed: the same seed prints the same samples")
    s.add_argument("--max-len", type=positive_int, default=100, metavar="M",
                   help="stop a sample after M new tokens (default: 100)")
    s.set_defaults(func=_with_threads(cmd_sample), threads=1, distributed=False)

    e = subparsers.add_parser(
        "evaluate", help="held-out loss of a language model on a text file",
        description="Print the loss per token, the perplexity and, at char level, the bits "
        "per character of a model saved by `seqcore train` on FILE (read as the model "
        "was trained: running text or one sequence per line).")
    e.add_argument("model", metavar="MODEL", help="model file (.npz) written by seqcore train")
    e.add_argument("file", metavar="FILE", help="UTF-8 text file")
    e.add_argument("--batch-size", type=positive_int, default=64, metavar="N",
                   help="sequences (or streams) per batch (default: 64)")
    e.add_argument("--seq-len", type=positive_int, default=None, metavar="N",
                   help="window length (default: the model's training window)")
    e.add_argument("--json", action="store_true",
                   help="print the figures as one JSON object (loss_per_token, perplexity, "
                   "bits_per_char, tokens, ...) instead of text")
    e.set_defaults(func=_with_threads(cmd_evaluate), threads=1, distributed=False)


def _with_threads(command):
    def run(args):
        from .._threads import limit_threads
        threads, blas = args.threads, None
        if threads is None and args.distributed:
            threads = _distributed(args).default_threads()      # the cores of one rank
        elif threads is None:
            # the core on every core: it moves to one thread by itself while other
            # processes hold them (docs/performance.md, "Under load"); BLAS on one
            blas = 1
        with limit_threads(threads, blas):
            return command(args)
    return run


def _distributed(args):
    """seqcore.distributed, started, for --distributed; and the refusal of an MPI launch
    without it (every rank would train its own copy and write the same files)."""
    from ..train import distributed as dist
    if not getattr(args, "distributed", False):
        if dist.launched():
            raise CommandError("seqcore train runs under an MPI launcher with several ranks: "
                               "add --distributed (else every rank trains alone)")
        return None
    dist.init()
    if dist.size() == 1 and dist.is_root() and not dist.launched():
        print("seqcore: --distributed without an MPI launcher: training as one process "
              "(launch with mpiexec -n N)", file=sys.stderr)
    return dist


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


def _last_path(out):
    root, ext = os.path.splitext(out)
    return f"{root}.last{ext or '.npz'}"


def _read(path, stream):
    """The corpus: one string (stream) or its lines; a fingerprint to check on --resume."""
    from ..data.text import read_corpus, read_text
    text = read_text(path)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return (text if stream else read_corpus(path)), digest


def _split(data, args, rng, level):
    """(training data, held-out data or None): the text's end, or random lines."""
    if args.stream:
        cut = int(len(data) * (1 - args.valid_frac))
        if level == "word" and args.valid_frac:
            nl = data.find("\n", cut)
            cut = nl + 1 if nl >= 0 else len(data)
        return data[:cut], (data[cut:] or None) if args.valid_frac else None
    order = rng.permutation(len(data))
    n_valid = int(len(data) * args.valid_frac)
    valid = [data[i] for i in order[:n_valid]] or None
    return [data[i] for i in order[n_valid:]], valid


def _optimizer(args):
    from ..train import optim
    if args.schedule == "plateau":
        schedule = optim.ReduceOnPlateau(factor=args.plateau_factor, patience=args.patience)
    elif args.schedule == "cosine":
        schedule = optim.Cosine(args.steps, final=0.1)
    else:
        schedule = None
    if args.optimizer == "adamw":
        return optim.AdamW(args.lr, weight_decay=args.weight_decay, schedule=schedule)
    if args.optimizer == "sgd":
        return optim.SGD(args.lr, weight_decay=args.weight_decay, schedule=schedule)
    if args.weight_decay:
            raise CommandError("--weight-decay needs --optimizer adamw (decoupled) or sgd")
    return optim.Adam(args.lr, schedule=schedule)


def _resumed(args):
    """The model and corpus of the run saved in --resume, checked against this command."""
    from ..models import LanguageModel, load
    model = load(args.resume)
    if not isinstance(model, LanguageModel):
        raise CommandError(f"--resume {args.resume}: holds a {model.kind}, not a language model")
    source = (model.run or {}).get("info") or {}
    if model.optimizer is None or not source:
        raise CommandError(f"--resume {args.resume}: holds no run of seqcore train to continue")
    if (args.corpus or None) != source["corpus"]:
        raise CommandError(f"--resume {args.resume}: the run trained on "
                           f"{source['corpus'] or 'the built-in names'}, not "
                           f"{args.corpus or 'the built-in names'}")
    args.stream, args.valid_frac, args.level = (source["stream"], source["valid_frac"],
                                                model.vocab.level)
    return model, source


def _figures(loss, level):
    """The figures of a loss per token (nats): the loss, the perplexity and, at char
    level, the bits per character (None at word level)."""
    return {"loss_per_token": loss, "perplexity": float(math.exp(min(loss, 700.0))),
            "bits_per_char": loss / math.log(2) if level == "char" else None}


def _print_json(result):
    json.dump(result, sys.stdout, indent=1, allow_nan=False)
    sys.stdout.write("\n")
    sys.stdout.flush()


def cmd_train(args):
    dist = _distributed(args)
    root = dist is None or dist.is_root()
    if root and not args.json:
        return _train(args, dist)[0]
    # --json: stdout carries the JSON alone; only rank 0 prints
    with open(os.devnull, "w") as quiet, \
            contextlib.redirect_stdout(sys.stderr if root else quiet):
        rc, result = _train(args, dist)
    if root:
        _print_json(result)
    return rc


def _train(args, dist):
    from ..data.text import Vocab
    from ..models import LanguageModel
    from ..data.text import default_corpus, default_text
    from tqdm.auto import tqdm

    plt = require_matplotlib() if args.plot else None
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        raise CommandError(f"--out {args.out}: directory {out_dir} does not exist")
    model, source = _resumed(args) if args.resume else (None, None)
    if args.tie_weights and not args.resume and args.embedding != args.hidden:
        raise CommandError(f"--tie-weights shares the embedding with the output layer: give "
                           f"--embedding {args.hidden} (equal to --hidden)")
    if args.corpus is None and args.level != "char":
        raise CommandError("the built-in names and text are for --level char; give a "
                           "CORPUS file for word level")
    if args.corpus is None and args.stream:
        data = default_text()
        digest = hashlib.sha256(data.encode("utf-8")).hexdigest()
        print(f"corpus: {len(data):,} characters of the Python standard library's "
              "docstrings (no CORPUS given)")
    elif args.corpus is None:
        data, digest = default_corpus(), None
        print(f"corpus: {len(data)} names defined in the Python standard library "
              "(no CORPUS given)")
    else:
        data, digest = _read(args.corpus, args.stream)
        print(f"corpus: {len(data):,} {'characters' if args.stream else 'lines'} "
              f"from {args.corpus}")
    if source is not None and source["sha256"] != digest:
        raise CommandError(f"--resume {args.resume}: {args.corpus} has changed since the run "
                           "started (its contents differ)")

    if source is None and args.seed is None:
        args.seed = int(np.random.default_rng().integers(2**31 - 1))   # kept: --resume replays it
        if dist is not None:
            args.seed = dist.broadcast_object(args.seed)              # rank 0's everywhere
    seed = args.seed if source is None else source["seed"]
    rng = np.random.default_rng(seed)
    train_data, valid = _split(data, args, rng, args.level)
    if model is None:
        vocab = Vocab.build([train_data] if args.stream else train_data, args.level)
        seed = int(rng.integers(2**31 - 1))
        model = LanguageModel(vocab, cell=args.cell, hidden_size=args.hidden,
                              num_layers=args.layers, embedding_dim=args.embedding or None,
                              dropout=args.dropout, tie_weights=args.tie_weights, seed=seed)
        optimizer, done = _optimizer(args), 0
    else:
        vocab, optimizer, done = model.vocab, None, model.optimizer.t
    baseline = math.log(len(vocab))
    held = ("no held-out text" if valid is None else
            f"{len(valid):,} held-out {'characters' if args.stream else 'lines'}")
    print(f"model: {model.cell.upper()} {model.num_layers}x{model.hidden_size}, vocabulary "
          f"{len(vocab)} {vocab.level} tokens, {model.num_parameters():,} parameters; {held}"
          + (f"; resuming after step {done}" if done else ""))
    sys.stdout.flush()
    if done >= args.steps:
        raise CommandError(f"--resume {args.resume}: the run already has {done} steps "
                           f"(--steps {args.steps}); raise --steps to train further")

    last = _last_path(args.out) if valid is not None else args.out
    every = max(args.steps // 4, 1)
    sample_len = 200 if args.stream else 50

    def show_samples(step, model, history):
        if args.samples and step % every == 0 and step < args.steps:
            lines = model.sample(min(args.samples, 2) if args.stream else args.samples,
                                 seed=step, max_len=sample_len)
            tqdm.write(f"step {step} samples: " + " | ".join(t.replace("\n", " / ")
                                                            for t in lines))

    stop = []

    def on_sigint(signum, frame):
        if stop:
            raise KeyboardInterrupt              # a second Ctrl-C: stop at once
        stop.append(signum)

    info = {"corpus": args.corpus, "sha256": digest, "stream": args.stream,
            "valid_frac": args.valid_frac, "seed": args.seed}
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        history = model.fit(
            train_data, steps=args.steps - done, batch_size=args.batch_size, lr=None,
            optimizer=optimizer, clip_norm=args.clip or None, valid=valid,
            eval_every=args.eval_every or max(args.steps // 5, 1),
            seed=None if done else seed, progress=not args.no_progress,
            callback=show_samples, seq_len=args.seq_len, stream=args.stream or None,
            resume=bool(done), run_info=None if done else info,
            on_best=(lambda step, m: m.save(args.out)) if valid is not None else None,
            should_stop=lambda: bool(stop), distributed=dist is not None)
    finally:
        signal.signal(signal.SIGINT, previous)
    path = model.save(last)
    root = dist is None or dist.is_root()
    n = len(history["step"])
    result = {"steps": model.optimizer.t, "steps_this_call": n, "interrupted": history["stopped"],
              "seconds": history["seconds"], "tokens_per_second": history["tokens_per_second"],
              "train_loss_per_token": history["loss"][-1] if n else None,
              "level": vocab.level, "vocabulary": len(vocab),
              "parameters": model.num_parameters(), "held_out": None, "best": None,
              "model": args.out if valid is not None else path, "last": path}
    if valid is not None and history["valid_loss"]:
        result["held_out"] = {"step": history["valid_step"][-1],
                              **_figures(history["valid_loss"][-1], vocab.level)}
    if valid is not None and model.run["best_valid"] is not None:
        result["best"] = {"step": model.run["best_step"],
                          **_figures(model.run["best_valid"], vocab.level)}
    if history["stopped"]:
        if not root:
            return 130, result
        print(f"seqcore: interrupted: step {model.optimizer.t} of {args.steps} saved to {path}; "
              f"continue with the same command and --resume {path}", file=sys.stderr)
        return 130, result

    secs = history["seconds"]
    print(f"trained {len(history['step'])} steps in {secs:.1f} s "
          f"({history['tokens_per_second']:,.0f} tokens/s)")
    if valid is not None:
        loss = history["valid_loss"][-1]
        bpc = f", {loss / math.log(2):.3f} bits/char" if vocab.level == "char" else ""
        print(f"held-out loss {loss:.3f} nats/token{bpc}, perplexity "
              f"{history['valid_perplexity'][-1]:.2f} (uniform baseline {baseline:.3f}, "
              f"perplexity {len(vocab)})")
    if dist is not None and dist.size() > 1:
        print(f"{dist.size()} ranks: {history['allreduce_seconds'] / n * 1e3:.2f} ms of "
              f"Allreduce per step, {history['allreduce_bytes'] / n / 1e6:.2f} MB of gradients")
    if args.samples and root:
        print("samples:")
        for text in model.sample(args.samples, seed=args.seed, max_len=2 * sample_len):
            print("  " + text.replace("\n", "\n  "))
    if plt is not None:
        _plot(plt, history, baseline, args.plot)
        print(f"loss curve saved to {args.plot}")
    if valid is not None:
        print(f"model saved to {args.out} (best held-out loss {model.run['best_valid']:.3f} at "
              f"step {model.run['best_step']}); the last step to {path}  "
              f"(try: seqcore sample {args.out})")
    else:
        print(f"model saved to {path}  (try: seqcore sample {path})")
    return 0, result


def cmd_evaluate(args):
    from ..models import LanguageModel, load
    from ..data.text import read_corpus, read_text

    model = load(args.model)
    if not isinstance(model, LanguageModel):
        raise CommandError(f"{args.model}: holds a {model.kind}, not a language model")
    text = read_text(args.file)
    data = text if model.stream else read_corpus(args.file)
    # the tokens the model reads: a line model never sees the newlines between its lines
    ids = (model.stream_ids(text) if model.stream
           else [i for line in data for i in model.vocab.encode(line)])
    unknown = sum(i == model.vocab.unk_id for i in ids) / max(len(ids), 1)
    if unknown > 0.25:
        raise CommandError(f"{args.file}: {unknown:.0%} of its {model.vocab.level} tokens are "
                           f"not in the model's vocabulary of {len(model.vocab)}: not text of "
                           "the kind this model was trained on")
    seq_len = args.seq_len or ((model.run or {}).get("batch_options") or {}).get("seq_len", 64)
    batch_size = args.batch_size
    if model.stream:
        batch_size = max(1, min(batch_size, (len(ids) - 1) // 2))
    result = model.evaluate(data, batch_size=batch_size, seq_len=seq_len)
    loss = result["token_loss"]
    if args.json:
        _print_json({"file": args.file, "model": args.model, "level": model.vocab.level,
                     "read_as": "running text" if model.stream else "lines",
                     "tokens": int(result["tokens"]), "unknown": unknown,
                     **_figures(loss, model.vocab.level)})
        return 0
    print(f"{args.file}: {result['tokens']:,.0f} {model.vocab.level} tokens "
          f"({'running text' if model.stream else 'one sequence per line'}, "
          f"{unknown:.1%} unknown)")
    print(f"loss {loss:.4f} nats/token, perplexity {result['perplexity']:.3f}"
          + (f", {loss / math.log(2):.4f} bits/char" if model.vocab.level == "char" else ""))
    return 0


def cmd_sample(args):
    from ..models import LanguageModel, load

    model = load(args.model)
    if not isinstance(model, LanguageModel):
        raise CommandError(f"{args.model}: holds a {model.kind}, not a language model")
    for line in model.sample(args.n, max_len=args.max_len, temperature=args.temperature,
                             top_k=args.top_k, greedy=args.greedy, prime=args.prime,
                             seed=args.seed):
        print(line)
    return 0
