"""SequenceTranscriber: an input sequence in, a shorter text out, with no alignment
given: bidirectional stacked recurrent layers read out with CTC (Graves et al. 2006),
as for speech frames to characters or image columns to text."""

import numpy as np

from .. import _validation as V
from ..data.batching import index_batches, pad_ids
from ..data.text import Vocab
from ..nn.ctc import ctc_loss
from .base import _inference, _locked
from .ctc import ctc_beam_search, ctc_greedy_decode
from .tagged import _Tagged

__all__ = ["SequenceTranscriber"]

BLANK = 0           # class 0 is CTC's blank; class 1 + i is the label vocabulary's token i


def _error_rates():
    try:
        import jiwer
    except ImportError as exc:
        raise ImportError("the error rates need jiwer: pip install 'seqcore[ocr]'") from exc
    return jiwer


class SequenceTranscriber(_Tagged):
    """Many-to-many with ``Ty <= Tx`` and no alignment: per-step class scores read out by CTC.

    Layers: ``inputs`` (for token inputs) → ``rnn`` (bidirectional by default) →
    ``out`` (``Dense`` dirs*H → C). The classes are CTC's blank (class 0) and the
    tokens of ``label_vocab`` (class ``1 + id``). The cost is the CTC loss of each
    sequence's text, averaged over the batch (``seqcore.ctc_loss``). Data for ``fit``
    and ``evaluate``: ``(xs, texts)``, ``xs`` a list of texts (with a ``vocab``) or of
    ``(T_b, D)`` arrays (with ``input_size``), ``texts`` a list of str, each no longer
    than its input can hold (a step per label, and one more between repeated labels).

    Parameters
    ----------
    label_vocab : seqcore.Vocab
        The output alphabet (characters, for ``level="char"``).
    vocab : seqcore.Vocab, optional
        For inputs that are texts; give ``vocab`` or ``input_size``.
    input_size : int, optional
        ``D``, for inputs that are ``(T_b, D)`` float arrays (frames, image columns).
    cell : {"lstm", "gru", "rnn"}, default "lstm"
        The recurrent cell.
    hidden_size : int, default 64
        ``H``, hidden units per direction.
    num_layers : int, default 2
        Stacked recurrent layers.
    bidirectional : bool, default True
        Read each sequence both ways.
    embedding_dim : int, optional
        Width of a learned ``Embedding`` of input tokens; None: 1-hot inputs.
    dropout : float, default 0.0
        Drops, in training mode, the layer inputs, the outputs of every recurrent
        layer but the last, and what ``out`` reads.
    dtype : numpy.float32 or numpy.float64, default numpy.float32
        The parameters' dtype.
    backend : {"cython", "numpy"}, default "cython"
        The compiled core or the NumPy reference.
    seed : int, optional
        Seed of the initial weights and of the dropout masks.
    **cell_options
        The cell's options: ``reset_after`` (GRU), ``peephole`` (LSTM),
        ``nonlinearity`` (RNN).

    Examples
    --------
    >>> import numpy as np, seqcore
    >>> labels = seqcore.Vocab.build(["ab"])
    >>> model = seqcore.SequenceTranscriber(labels, input_size=3, hidden_size=8, seed=0)
    >>> model.out.out_features                 # the blank, <EOS>, <UNK>, a, b
    5
    """

    kind = "SequenceTranscriber"
    _targets = "texts"

    def __init__(self, label_vocab, *, vocab=None, input_size=None, cell="lstm",
                 hidden_size=64, num_layers=2, bidirectional=True, embedding_dim=None,
                 dropout=0.0, dtype=np.float32, backend="cython", seed=None, **cell_options):
        if not isinstance(label_vocab, Vocab):
            raise TypeError(f"label_vocab: expected a seqcore.Vocab, got "
                            f"{type(label_vocab).__name__}")
        self.label_vocab = label_vocab
        super().__init__(len(label_vocab) + 1, vocab=vocab, input_size=input_size, cell=cell,
                         hidden_size=hidden_size, num_layers=num_layers,
                         bidirectional=bidirectional, embedding_dim=embedding_dim,
                         dropout=dropout, dtype=dtype, backend=backend, seed=seed,
                         **cell_options)

    def config(self):
        config = super().config()
        del config["num_classes"]                          # 1 + len(label_vocab)
        return {"label_vocab": self.label_vocab.config(), **config}

    @property
    def labels(self):
        """The text of each class: "" for the blank, then the label vocabulary's tokens."""
        return [""] + list(self.label_vocab.tokens)

    # ------------------------------------------------------------------ training

    def _check_data(self, data, batch_options, name="data"):
        xs, texts = super()._check_data(data, batch_options, name)
        return xs, V.check_texts(texts, f"{name}[1]")

    @_locked
    def forward(self, x, lengths=None):
        """x (T, B) ids or (T, B, D) -> logits (T, B, C) of the blank and the labels."""
        a, _ = self.rnn.forward(self._encode(x), None, lengths)     # (T, B, dirs*H)
        return self.out.forward(self.drop_out.forward(a))           # (T, B, C)

    @_locked
    def loss_and_grads(self, batch, state=None, *, backward=True):
        logits = self.forward(batch["x"], batch["lengths"])
        B = logits.shape[1]
        loss, dlogits = ctc_loss(logits, batch["targets"], batch["lengths"],
                                 batch["target_lengths"], blank=BLANK, reduction="sum",
                                 backend=self.backend)
        dlogits /= B                                                 # averaged over the batch
        if backward:
            dx, _ = self.rnn.backward(self.drop_out.backward(self.out.backward(dlogits)))
            self._encode_backward(dx)
        return loss / B, None

    def batches(self, data, batch_size, rng, *, train, batching=None):
        xs, texts = data
        if len(xs) != len(texts) or len(xs) == 0:
            raise ValueError(f"data: expected one text per sequence (and at least one), got "
                             f"{len(xs)} sequences and {len(texts)} texts")
        sizes = np.array([len(self.vocab.tokenize(x)) if self.vocab else len(x) for x in xs])
        labels = [[1 + i for i in self.label_vocab.encode(t)] for t in texts]
        rng = rng if rng is not None else np.random.default_rng(0)
        for idx in index_batches(sizes, batch_size, rng, shuffle=train, repeat=train,
                                 batching=batching):
            x, lengths = self._pad([xs[i] for i in idx])
            targets, target_lengths = pad_ids([labels[i] for i in idx], fill=0)   # (S, B)
            yield {"x": x, "lengths": lengths, "targets": np.ascontiguousarray(targets.T),
                   "target_lengths": target_lengths, "carry": False, "size": len(idx),
                   "tokens": float(max(target_lengths.sum(), 1))}

    # ------------------------------------------------------------------ inference

    @_inference
    def predict(self, xs, *, beam_size=1, lm=None, lm_weight=0.5):
        """The text of each sequence: greedy CTC decoding, or prefix beam search.

        Parameters
        ----------
        xs : list
            Texts (with a ``vocab``) or ``(T_b, D)`` arrays.
        beam_size : int, default 1
            1: the best path (greedy); more: prefix beam search keeping that many.
        lm : seqcore.LanguageModel, optional
            A character language model over the label vocabulary's characters,
            fused into the beam search (``beam_size > 1``).
        lm_weight : float, default 0.5
            The weight of its log-probabilities.

        Returns
        -------
        list of str
        """
        xs = self._check_inputs(xs, "xs")
        beam_size = V.check_int(beam_size, "beam_size")
        if lm is not None and beam_size == 1:
            raise ValueError("lm: shallow fusion needs beam search; pass beam_size > 1")
        out = []
        for start in range(0, len(xs), 64):
            x, lengths = self._pad(xs[start:start + 64])
            logits = self.forward(x, lengths)
            if beam_size == 1:
                paths = ctc_greedy_decode(logits, lengths, blank=BLANK)
            else:
                paths = ctc_beam_search(logits, lengths, beam_size=beam_size, blank=BLANK,
                                        lm=lm, lm_weight=lm_weight,
                                        labels=self.labels if lm is not None else None)
            out += [self.label_vocab.decode([c - 1 for c in p]) for p in paths]
        return out

    @_inference
    def evaluate(self, data, *, batch_size=64, beam_size=1, lm=None, lm_weight=0.5,
                 **batch_options):
        """The held-out loss, and the character and word error rates of ``predict``.

        Returns
        -------
        dict
            As the other models' ``evaluate`` (``"loss"`` per sequence, ``"token_loss"``
            per label, ``"perplexity"``, ``"tokens"``, ``"total"``), plus ``"cer"`` and
            ``"wer"``: the error rates of the predicted texts against the targets
            (jiwer: edits over the reference's characters or words). The model's lock is
            held for the whole call, so the loss and the error rates are of one model.
        """
        result = super().evaluate(data, batch_size=batch_size, **batch_options)
        xs, texts = self._check_data(data, batch_options)
        hyps = self.predict(xs, beam_size=beam_size, lm=lm, lm_weight=lm_weight)
        jiwer = _error_rates()
        refs = [t if t.strip() else " " for t in texts]           # jiwer needs some reference
        result["cer"] = float(jiwer.cer(refs, [h if h else "" for h in hyps]))
        result["wer"] = float(jiwer.wer(refs, hyps))
        return result
