"""The NumPy reference: the readable statement of every compiled kernel's math.

Each compiled module of csrc/ has its twin here, in one place: ``cells`` for the
recurrent cells (csrc/_rnn.pyx, _gru.pyx, _lstm.pyx), ``train`` for the output
map, the cost, the embedding's scatter and the optimizer (csrc/_train.pyx), and
``ctc`` for CTC's loss and gradient (csrc/_ctc.pyx), and ``quant`` for the int8
weights of ``seqcore.quantize``. The tests compare every kernel with its twin, on every kernel path, and
``backend="numpy"`` runs a whole model on them.
"""

from .cells import (gru_backward, gru_forward, lstm_backward, lstm_forward,  # noqa: F401
                    rnn_backward, rnn_forward, sigmoid)
from .train import (adam_update, dense_backward, dense_forward,  # noqa: F401
                    embedding_backward, softmax_cross_entropy, sum_squares)
from . import ctc  # noqa: F401,E402  (ctc.ctc_loss: the twin of csrc/_ctc.pyx)
from . import quant  # noqa: F401,E402  (int8 weights: seqcore.quantize)

__all__ = ["rnn_forward", "rnn_backward", "gru_forward", "gru_backward",
           "lstm_forward", "lstm_backward", "dense_forward", "dense_backward",
           "softmax_cross_entropy", "embedding_backward", "adam_update", "sum_squares"]
