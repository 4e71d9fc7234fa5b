"""The `seqcore bench` command: the layer benchmark, or with ``--train`` the training
benchmark (seqcore.bench), optionally under load (``--load N``)."""

from ..bench import layers, training

__all__ = ["register"]


def run(args):
    if args.train and args.baseline:
        raise ValueError("--baseline: the layer benchmark's option; --train does not take it")
    if args.load:
        print(f"  load:     {args.load} busy process(es) beside the benchmark "
              f"({args.load_kind}: {layers.LOAD_HELP[args.load_kind]})", flush=True)
    with layers.busy_processes(args.load, args.load_kind):
        if args.train:
            return training.TrainBench(args).run()
        return layers.Bench(args).run()


def register(subparsers):
    p = subparsers.add_parser(
        "bench", help="time seqcore's core against its NumPy reference and PyTorch "
                      "(--train: whole training steps of a language model)",
        description=layers.__doc__.split("\n\n")[0])
    layers.add_arguments(p)
    p.add_argument("--train", action="store_true",
                   help="time training steps of seqcore.LanguageModel against the same model "
                        "in PyTorch (seqcore/bench/training.py); --only and --cells then name "
                        "its configurations (char-h256, char-h256-l2, char-h512, "
                        "char-h512-l2, word, transcriber: a bidirectional CTC model; "
                        "--quick: char-h256 and word) and cells (lstm, gru), --threads one thread count (default: 1 and 2)")
    p.set_defaults(func=run)
