"""Import the compiled core loudly: no silent fallback to the NumPy reference."""

import importlib

CELLS = ("rnn", "gru", "lstm")     # seqcore._{cell}_{path}: the kernels of each path


def import_compiled(name):
    """seqcore._{name}, or an ImportError that says what to do."""
    try:
        return importlib.import_module(f"seqcore._{name}")
    except ImportError as exc:
        raise ImportError(
            f"seqcore's compiled core (seqcore._{name}) has not been built correctly: "
            f"{exc}. Install seqcore with `pip install .` from its source tree (this "
            "compiles the Cython core); importing from an unbuilt source checkout does "
            "not work."
        ) from exc
