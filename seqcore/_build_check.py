"""Import the compiled core loudly: no silent fallback to the NumPy reference."""

import importlib

from ._kernels import UnsupportedCPU


def import_compiled(name):
    """seqcore.{name} (a compiled module, e.g. "_checks" or "_kernels.avx2.lstm"), or an
    ImportError that says what to do. A kernel path the CPU cannot run keeps its own
    error (seqcore._kernels.UnsupportedCPU): the build is not at fault."""
    try:
        return importlib.import_module(f"seqcore.{name}")
    except UnsupportedCPU:
        raise
    except ImportError as exc:
        raise ImportError(
            f"seqcore's compiled core (seqcore.{name}) has not been built correctly: "
            f"{exc}. Install seqcore with `pip install .` from its source tree (this "
            "compiles the Cython core); importing from an unbuilt source checkout does "
            "not work."
        ) from exc
