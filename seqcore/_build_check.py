"""Import the compiled core loudly: no silent fallback to the NumPy reference."""

import importlib

CELLS = ("rnn", "gru", "lstm")     # seqcore._rnn, _gru, _lstm: the kernels
MODULES = CELLS + ("checks",)     # and seqcore._checks


def load_core():
    """Import the extension modules, or raise an ImportError that says what to do."""
    modules = {}
    for name in MODULES:
        try:
            modules[name] = importlib.import_module(f"seqcore._{name}")
        except ImportError as exc:
            raise ImportError(
                f"seqcore's compiled core (seqcore._{name}) has not been built correctly: "
                f"{exc}. Install seqcore with `pip install .` from its source tree (this "
                "compiles the Cython core); importing from an unbuilt source checkout does "
                "not work."
            ) from exc
    return modules
