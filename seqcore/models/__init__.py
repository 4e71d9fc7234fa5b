"""The four architectures of the course notes, built from the layers, Dense and softmax cross-entropy.

* ``LanguageModel``       one-to-many sampling / next-token prediction (the notes' language model)
* ``SequenceClassifier``  many-to-one: one label per sequence, from the last valid state
* ``SequenceTagger``      many-to-many, Tx = Ty: one label per step
* ``Seq2Seq``             many-to-many, Tx != Ty: encoder, then decoder started from its final state

Legend: T time steps (Tx source, Ty target), B batch, D input features, E embedding
width, H hidden units per direction, dirs directions (1 or 2), V vocabulary size,
C classes.

One module per model (``language``, ``tagged``: classifier and tagger, ``seq2seq``),
over the shared ``base`` (the ``Model`` class), ``decoding`` (drawing tokens), ``beam``
(beam search) and ``io`` (the model file); padding, masks and mini-batches are
``seqcore.data.batching``.

Every model owns named sub-layers (``self.layers``), each with ``params``/``grads``/
``zero_grad``; ``parameters()`` lists ``(name, param, grad)`` for the optimizers. The
cost is the notes' C = sum_t L(y<t>, y_hat<t>), averaged over the batch
(``softmax_cross_entropy``); ``loss_and_grads(batch)`` runs forward and backward,
where backward goes through each layer's own ``backward`` (BPTT is the core's).

Token inputs are ids, with -1 (``NO_TOKEN``) as the notes' x<1> = 0 (zero vector);
they are encoded 1-hot (the notes) or by a learned ``Embedding`` (``embedding_dim``).

Threads: every public method that runs the layers (``forward``, ``loss_and_grads``,
``evaluate``, ``fit``, ``sample``, ``predict``, ``predict_proba``, ``encode``,
``translate``, plus ``zero_grad`` and ``save``) holds the model's reentrant lock,
``model.lock``, for the whole call. Inference on one model from several threads
therefore gives exactly the results of the same calls made one after another (each
layer also locks itself, ``seqcore.nn.recurrent``, but a model's forward pass keeps state
for its backward pass in several layers, and a generation loop feeds a state from
call to call). ``fit`` holds the lock for the whole of training: two threads training
one model run one after the other, each as if alone, and other threads' calls wait
until training ends (a ``callback`` running inside ``fit``, in its thread, may call
``sample`` and the rest). A training loop of your own (``zero_grad``,
``loss_and_grads``, an optimizer step) holds ``with model.lock:`` around each step if
other threads use the model. Different models run in parallel.
"""

from .base import Model, recurrent_stack, split_seeds  # noqa: F401  (seqcore.experiments)
from .ctc import ctc_beam_search, ctc_greedy_decode  # noqa: F401
from .decoding import draw  # noqa: F401
from .io import MODELS, load, save  # noqa: F401
from .language import LanguageModel
from .quantized import quantize
from .seq2seq import Seq2Seq
from .tagged import SequenceClassifier, SequenceTagger
from .transcriber import SequenceTranscriber

__all__ = ["LanguageModel", "SequenceClassifier", "SequenceTagger", "Seq2Seq",
           "SequenceTranscriber", "load", "save", "quantize"]

MODELS.update({cls.kind: cls for cls in (LanguageModel, SequenceClassifier, SequenceTagger,
                                         Seq2Seq, SequenceTranscriber)})   # what load() restores
