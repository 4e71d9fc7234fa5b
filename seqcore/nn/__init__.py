"""Layers and losses: the recurrent layers (``recurrent``), the output map (``dense``),
token inputs (``embedding``), dropout, attention, and the costs (``losses``: softmax
cross-entropy; ``ctc``: connectionist temporal classification).

Each layer has ``forward``, ``backward``, ``params``, ``grads`` and ``zero_grad``;
the compiled kernels behind them are chosen by ``seqcore._dispatch``, and their
NumPy twins are in ``seqcore.reference``.
"""

from .ctc import ctc_loss
from .dense import Dense
from .dropout import Dropout
from .embedding import Embedding, OneHot
from .losses import softmax_cross_entropy
from .recurrent import GRU, LSTM, RNN

__all__ = ["RNN", "GRU", "LSTM", "Dense", "Dropout", "Embedding", "OneHot",
           "softmax_cross_entropy", "ctc_loss"]
