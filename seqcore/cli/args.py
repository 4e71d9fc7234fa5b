"""What the commands share: the one-line errors and the argument types.

A ``CommandError`` is an error the user can cause (a bad file, a bad option): the
command line prints it in one line on stderr, without a traceback. The argument
types turn a bad value into argparse's one-line usage error naming the option.
"""

import argparse
import math

__all__ = ["CommandError", "Parser", "check_output_folder", "int_at_least", "positive_int", "nonnegative_int",
           "fraction", "number", "require_matplotlib"]


class CommandError(Exception):
    """An error to report to the user in one line (exit status 1)."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_at_least(minimum, words):
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


positive_int = int_at_least(1, "a positive integer")


def fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value

nonnegative_int = int_at_least(0, "an integer >= 0")


def number(minimum, strict):
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


def require_matplotlib():
    """matplotlib.pyplot on the Agg backend, or a CommandError saying how to install it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CommandError("--plot needs matplotlib, which is not installed: "
                           "pip install 'seqcore[plot]'") from None
    return plt


def check_output_folder(path, option):
    """Fail before any work: the folder that ``--option path`` writes into must exist."""
    import os
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CommandError(f"--{option} {path}: directory {folder} does not exist")
