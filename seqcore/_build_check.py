"""Import the compiled core loudly: no silent fallback to the NumPy reference."""

import importlib

CELLS = ("rnn", "gru", "lstm")


def load_core():
    """Import seqcore._rnn, _gru and _lstm, or raise an ImportError that says what to do."""
    modules = {}
    for cell in CELLS:
        try:
            modules[cell] = importlib.import_module(f"seqcore._{cell}")
        except ImportError as exc:
            raise ImportError(
                f"seqcore's compiled core (seqcore._{cell}) has not been built correctly: "
                f"{exc}. Install seqcore with `pip install .` from its source tree (this "
                "compiles the Cython core); importing from an unbuilt source checkout does "
                "not work."
            ) from exc
    return modules
