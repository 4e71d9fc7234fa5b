"""The `seqcore` command line (also `python -m seqcore`): one subcommand per module.

Each module in COMMAND_MODULES defines ``register(subparsers)``, which adds its
subcommands and sets ``func`` on them. Errors a user can cause (bad files, bad
options) print one line on stderr and exit non-zero, without a traceback.
"""

import argparse
import importlib
import sys

COMMAND_MODULES = ["seqcore.cli_lm", "seqcore.cli_experiment", "seqcore.bench",
                   "seqcore.cli_translate"]


class CommandError(Exception):
    """An error to report to the user in one line (exit status 1)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    parser = _Parser(
        prog="seqcore",
        description="Recurrent sequence models (RNN, GRU, LSTM) with a compiled CPU core.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv=None):
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


if __name__ == "__main__":
    # `python -m seqcore` runs this file as __main__; the command modules import
    # seqcore.__main__, a second copy with its own CommandError. Run that copy's main
    # so that its `except CommandError` catches what they raise.
    from seqcore.__main__ import main as _main
    sys.exit(_main())
