"""The `seqcore` command line (also `python -m seqcore`): one subcommand per module.

Each module in COMMAND_MODULES defines ``register(subparsers)``, which adds its
subcommands and sets ``func`` on them. Errors a user can cause (bad files, bad
options) print one line on stderr and exit non-zero, without a traceback.
"""

import argparse
import importlib
import sys

COMMAND_MODULES = ["seqcore.bench"]


class CommandError(Exception):
    """An error to report to the user in one line (exit status 1)."""


def build_parser():
    parser = argparse.ArgumentParser(
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
    except (CommandError, ValueError, TypeError, OSError) as exc:
        print(f"seqcore: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
