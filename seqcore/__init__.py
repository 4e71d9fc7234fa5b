"""seqcore: recurrent sequence models (RNN, GRU, LSTM) with a compiled CPU core.

The layers run on the Cython core by default (``backend="cython"``); the pure-NumPy
reference that states the math (``seqcore.reference``) runs with ``backend="numpy"``.
"""

import os as _os
import sys as _sys

from ._build_check import import_compiled as _import_compiled

_import_compiled("_checks")
from ._dispatch import cpu_info  # noqa: E402  (chooses the kernel path: SEQCORE_CPU)

from .nn import (GRU, LSTM, RNN, Dense, Dropout, Embedding, ctc_loss,  # noqa: E402
                 softmax_cross_entropy)
from .train.loop import TrainingDiverged  # noqa: E402
from .data import Vocab  # noqa: E402
from .models import (LanguageModel, Seq2Seq, SequenceClassifier, SequenceTagger,  # noqa: E402
                     SequenceTranscriber, ctc_beam_search, ctc_greedy_decode, load,
                     quantize)
from ._threads import get_num_threads, limit_threads, set_num_threads  # noqa: E402
from . import _threads  # noqa: E402

from .train import optim  # noqa: E402
from . import _aliases  # noqa: E402  (seqcore.optim, .distributed, .text, ...: docs/spec.md)

set_num_threads(_threads.default_core_threads())
if hasattr(_os, "register_at_fork"):       # a forked child runs the core on one thread
    _os.register_at_fork(after_in_child=_threads.one_thread_after_fork)

__version__ = "0.1.0"

# Submodules reachable as attributes after a plain `import seqcore` (docs/spec.md §Submodules),
# each imported on first use (PEP 562): `seqcore.interop` imports torch only when a
# conversion runs, `seqcore.distributed` loads no MPI and `seqcore.onnx` no onnx until
# they are used. A name here whose module this version does not ship is not an
# attribute (AttributeError, as for any other missing name).
_LAZY_SUBMODULES = ("interop", "diagnostics", "experiments", "metrics", "distributed", "onnx")


def __getattr__(name):
    if name in _LAZY_SUBMODULES or f"{__name__}.{name}" in _aliases.ALIASES:
        import importlib
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise                           # the submodule exists; something it needs is missing
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    import importlib.util
    shipped = [name for name in _LAZY_SUBMODULES
               if importlib.util.find_spec(f"{__name__}.{name}") is not None]
    return sorted(set(globals()) | set(shipped))


__all__ = ["RNN", "GRU", "LSTM", "Dense", "Dropout", "softmax_cross_entropy", "ctc_loss", "ctc_greedy_decode", "ctc_beam_search",
           "Vocab", "Embedding", "LanguageModel", "SequenceClassifier", "SequenceTagger",
           "SequenceTranscriber",
           "Seq2Seq", "load", "optim", "TrainingDiverged", "set_num_threads", "get_num_threads",
           "limit_threads", "cpu_info", "quantize"]
