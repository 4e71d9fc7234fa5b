"""seqcore: recurrent sequence models (RNN, GRU, LSTM) with a compiled CPU core.

The layers run on the Cython core by default (``backend="cython"``); the pure-NumPy
reference that states the math (``seqcore.reference``) runs with ``backend="numpy"``.
"""

import os as _os

from ._build_check import import_compiled as _import_compiled

_import_compiled("checks")
from ._dispatch import cpu_info  # noqa: E402  (chooses the kernel path: SEQCORE_CPU)

from .dense import Dense, softmax_cross_entropy  # noqa: E402
from .layers import GRU, LSTM, RNN  # noqa: E402
from . import optim  # noqa: E402
from .embedding import Embedding  # noqa: E402
from .io import load  # noqa: E402
from .models import LanguageModel, Seq2Seq, SequenceClassifier, SequenceTagger  # noqa: E402
from .text import Vocab  # noqa: E402
from .training import TrainingDiverged  # noqa: E402
from ._threads import (get_num_threads, set_num_threads,  # noqa: E402
                       _default_core_threads, _one_thread_after_fork)

set_num_threads(_default_core_threads())
if hasattr(_os, "register_at_fork"):       # a forked child runs the core on one thread
    _os.register_at_fork(after_in_child=_one_thread_after_fork)
del _default_core_threads, _one_thread_after_fork

__version__ = "0.1.0"

__all__ = ["RNN", "GRU", "LSTM", "Dense", "softmax_cross_entropy",
           "Vocab", "Embedding", "LanguageModel", "SequenceClassifier", "SequenceTagger",
           "Seq2Seq", "load", "optim", "TrainingDiverged", "set_num_threads", "get_num_threads",
           "cpu_info"]
