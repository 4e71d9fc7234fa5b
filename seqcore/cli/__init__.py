"""The `seqcore` command line (also `python -m seqcore`): one module per command.

Each module in COMMAND_MODULES defines ``register(subparsers)``, which adds its
subcommands and sets ``func`` on them; what they share (the one-line errors, the
argument types) is ``seqcore.cli.args``. Errors a user can cause (bad files, bad
options) print one line on stderr and exit non-zero, without a traceback.
"""

import importlib
import sys

from .args import CommandError, Parser

__all__ = ["main", "build_parser", "CommandError"]

COMMAND_MODULES = ["seqcore.cli.lm", "seqcore.cli.experiment", "seqcore.cli.bench",
                   "seqcore.cli.translate", "seqcore.cli.export", "seqcore.cli.quantize",
                   "seqcore.cli.ocr"]


def build_parser():
    """The argument parser of every command."""
    parser = Parser(
        prog="seqcore",
        description="Recurrent sequence models (RNN, GRU, LSTM) with a compiled CPU core.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None):
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("seqcore: interrupted", file=sys.stderr)
        return 130
    except (CommandError, ValueError, TypeError, OSError, ImportError) as exc:
        print(f"seqcore: error: {exc}", file=sys.stderr)
        return 1
