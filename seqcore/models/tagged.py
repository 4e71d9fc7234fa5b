"""Many-to-one (SequenceClassifier) and many-to-many with Tx = Ty (SequenceTagger), on token or feature inputs."""

import numpy as np

from .. import _validation as V
from ..nn import Dense, softmax_cross_entropy
from ..nn.dropout import check_dropout
from ..data.text import Vocab
from .base import _inference, _locked, Model, recurrent_stack, split_seeds, _token_inputs
from ..data.batching import index_batches, pad_features, pad_ids, step_mask


class _Tagged(Model):
    """Shared by the classifier and the tagger: inputs are token texts (with a vocab) or features.

    ``dropout`` = p drops, in training mode, the layer inputs x, the outputs of every
    recurrent layer but the last, and what ``out`` reads (the classifier's h, the
    tagger's a<t>).
    """

    def __init__(self, num_classes, *, vocab=None, input_size=None, cell="lstm",
                 hidden_size=64, num_layers=1, bidirectional=False, embedding_dim=None,
                 dropout=0.0, dtype=np.float32, backend="cython", seed=None,
                 **cell_options):
        super().__init__()
        self._setup(cell, hidden_size, num_layers, embedding_dim, dtype, cell_options)
        self.num_classes = V.check_int(num_classes, "num_classes", minimum=2)
        self.bidirectional = V.check_bool(bidirectional, "bidirectional")
        self.backend = V.check_backend(backend)
        s_in, s_rnn, s_out = split_seeds(seed, 3)
        D = self._setup_inputs(vocab, input_size, s_in)
        self.rnn = recurrent_stack(cell, D, self.hidden_size, self.num_layers, self.bidirectional,
                              self.dtype, backend, s_rnn, cell_options, check_dropout(dropout))
        self._setup_dropout(dropout, seed, self.rnn)
        dirs = self.rnn.num_directions
        self.out = Dense(dirs * self.hidden_size, self.num_classes, dtype=self.dtype,
                         backend=backend, seed=s_out)
        self.layers.update(rnn=self.rnn, out=self.out)

    def config(self):
        return {**self._input_config(), "dropout": self.dropout, **self._base_config()}

    def _setup_inputs(self, vocab, input_size, seed):
        if (vocab is None) == (input_size is None):
            raise TypeError("give exactly one of vocab= (token inputs) or input_size= "
                            "(feature vectors)")
        if vocab is not None and not isinstance(vocab, Vocab):
            raise TypeError(f"vocab: expected a seqcore.Vocab, got {type(vocab).__name__}")
        self.vocab = vocab
        self.input_size = None if input_size is None else V.check_int(input_size, "input_size")
        if vocab is not None:
            self.inputs = _token_inputs(len(vocab), self.embedding_dim, self.dtype, seed,
                                        self.backend)
            self.layers["inputs"] = self.inputs
            return self.inputs.output_size
        self.inputs = None
        return self.input_size

    def _encode(self, x):
        """x (T, B) ids or (T, B, D) features -> (T, B, D) layer input (after input dropout)."""
        return self.drop_in.forward(self.inputs.forward(x) if self.inputs is not None else x)

    def _encode_backward(self, dx):
        dx = self.drop_in.backward(dx)
        if self.inputs is not None:
            self.inputs.backward(dx)

    def _check_inputs(self, xs, name):
        """xs: a list of texts (token inputs) or of (T_b, D) arrays, checked item by item."""
        if self.vocab is not None:
            return V.check_texts(xs, name)
        return V.check_feature_sequences(xs, name, self.input_size)

    def _check_data(self, data, batch_options, name="data"):
        if not (isinstance(data, (tuple, list)) and len(data) == 2):
            raise TypeError(f"{name}: expected a pair (sequences, {self._targets}), got "
                            f"{type(data).__name__}"
                            + (f" of length {len(data)}" if isinstance(data, (tuple, list))
                               else ""))
        return self._check_inputs(data[0], f"{name}[0]"), data[1]

    def _pad(self, xs):
        """A list of B texts (or (T_b, D) arrays) -> (padded x, lengths)."""
        if self.vocab is not None:
            return pad_ids([self.vocab.encode(t) for t in xs])
        return pad_features(xs, self.dtype)

    def _input_config(self):
        return {"vocab": None if self.vocab is None else self.vocab.config(),
                "input_size": self.input_size, "bidirectional": self.bidirectional,
                "num_classes": self.num_classes}


class SequenceClassifier(_Tagged):
    """Many-to-one: ``ŷ = softmax(W_y h + b_y)``, ``h`` the state after each sequence's last valid step.

    With ``bidirectional=True`` ``h = [a→ at the last valid step, a← at step 1]``
    (both ends). Layers: ``inputs`` (for token inputs) → ``rnn`` → ``out`` (``Dense``
    dirs*H → C). Data for ``fit`` and ``evaluate``: ``(xs, labels)``, ``xs`` a list of
    texts (with a ``vocab``) or of ``(T_b, D)`` arrays, ``labels`` a list of ints in
    ``[0, C)``.

    Parameters
    ----------
    num_classes : int
        ``C``, the number of classes (at least 2).
    vocab : seqcore.Vocab, optional
        For inputs that are texts; give ``vocab`` or ``input_size``.
    input_size : int, optional
        ``D``, for inputs that are ``(T_b, D)`` float arrays.
    cell : {"lstm", "gru", "rnn"}, default "lstm"
        The recurrent cell.
    hidden_size : int, default 64
        ``H``, hidden units per direction.
    num_layers : int, default 1
        Stacked recurrent layers.
    embedding_dim : int, optional
        Width of a learned ``Embedding`` of the tokens; None: 1-hot inputs.
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
    bidirectional : bool, default False
        A bidirectional recurrent layer.

    Examples
    --------
    >>> import seqcore
    >>> clf = seqcore.SequenceClassifier(2, vocab=seqcore.Vocab.build(["ab"]), seed=0)
    >>> history = clf.fit((["aab", "bba", "abaa"], [1, 0, 1]), steps=20, progress=False)
    >>> clf.predict(["aaab", "bbb"]).shape
    (2,)
    """

    kind = "SequenceClassifier"
    _targets = "labels"

    @_locked
    def forward(self, x, lengths=None):
        """The class logits of each sequence, from its state after its last valid step.

        Parameters
        ----------
        x : numpy.ndarray
            ``(T, B)`` token ids, or ``(T, B, D)`` features.
        lengths : array_like of int, optional
            ``(B,)``, each in ``[1, T]``.

        Returns
        -------
        numpy.ndarray
            ``(B, C)`` logits.
        """
        xin = self._encode(x)                                  # (T, B, D)
        T, B = xin.shape[:2]
        lengths = V.check_lengths(lengths, T, B)
        lens = lengths if lengths is not None else np.full(B, T, np.int64)
        a, _ = self.rnn.forward(xin, None, lengths)            # (T, B, dirs*H)
        h = self._gather_last(a, lens)                         # (B, dirs*H)
        self._last = (a.shape, lens)
        return self.out.forward(self.drop_out.forward(h))      # (B, C)

    def _gather_last(self, a, lens):
        """h (B, dirs*H): forward half at step lens-1, reverse half at step 0 (its last)."""
        H, B = self.hidden_size, a.shape[1]
        h = np.empty((B, a.shape[2]), a.dtype)
        h[:, :H] = a[lens - 1, np.arange(B), :H]               # a-> after the last valid step
        if self.bidirectional:
            h[:, H:] = a[0, :, H:]                             # a<- after it has read back to t = 1
        return h

    def _scatter_last(self, dh):
        """Backward of ``_gather_last``: dh (B, dirs*H) -> da (T, B, dirs*H), zero elsewhere."""
        shape, lens = self._last
        H, B = self.hidden_size, shape[1]
        da = np.zeros(shape, dh.dtype)
        da[lens - 1, np.arange(B), :H] = dh[:, :H]
        if self.bidirectional:
            da[0, :, H:] += dh[:, H:]
        return da

    @_locked
    def loss_and_grads(self, batch, state=None, *, backward=True):
        logits = self.forward(batch["x"], batch["lengths"])    # (B, C)
        loss, dlogits = softmax_cross_entropy(logits[None], batch["y"][None],
                                              backend=self.backend)
        if backward:
            dh = self.drop_out.backward(self.out.backward(dlogits[0]))   # (B, dirs*H)
            dx, _ = self.rnn.backward(self._scatter_last(dh))  # BPTT from the last valid state
            self._encode_backward(dx)
        return loss, None

    def batches(self, data, batch_size, rng, *, train, batching=None):
        xs, labels = data
        labels = np.asarray(labels, np.int64)
        if len(xs) != len(labels) or len(xs) == 0:
            raise ValueError(f"data: expected as many labels as sequences (and at least one), "
                             f"got {len(xs)} sequences and {len(labels)} labels")
        sizes = np.array([len(self.vocab.tokenize(t)) if self.vocab else len(t) for t in xs])
        rng = rng if rng is not None else np.random.default_rng(0)
        for idx in index_batches(sizes, batch_size, rng, shuffle=train, repeat=train,
                                 batching=batching):
            x, lengths = self._pad([xs[i] for i in idx])
            yield {"x": x, "y": labels[idx], "lengths": lengths, "carry": False,
                   "size": len(idx), "tokens": float(len(idx))}

    @_inference
    def predict_proba(self, xs):
        """The class probabilities of each sequence, in evaluation mode.

        Parameters
        ----------
        xs : list
            Texts (with a ``vocab``) or ``(T_b, D)`` arrays.

        Returns
        -------
        numpy.ndarray
            ``(B, C)``, each row summing to 1.
        """
        x, lengths = self._pad(self._check_inputs(xs, "xs"))
        z = self.forward(x, lengths).astype(np.float64)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)

    @_inference
    def predict(self, xs):
        """The most likely class of each sequence.

        Parameters
        ----------
        xs : list
            Texts (with a ``vocab``) or ``(T_b, D)`` arrays.

        Returns
        -------
        numpy.ndarray
            ``(B,)`` ints in ``[0, C)``.
        """
        return self.predict_proba(xs).argmax(axis=1)


class SequenceTagger(_Tagged):
    """Many-to-many with ``Tx = Ty``: ``ŷ⟨t⟩ = softmax(W_y a⟨t⟩ + b_y)`` at every step.

    Layers: ``inputs`` (for token inputs) → ``rnn`` (optionally bidirectional) →
    ``out`` (``Dense`` dirs*H → C). Data for ``fit`` and ``evaluate``: ``(xs, tags)``,
    ``xs`` a list of texts (with a ``vocab``) or of ``(T_b, D)`` arrays, ``tags`` a
    list of int sequences of the same lengths.

    Parameters
    ----------
    num_classes : int
        ``C``, the number of classes (at least 2).
    vocab : seqcore.Vocab, optional
        For inputs that are texts; give ``vocab`` or ``input_size``.
    input_size : int, optional
        ``D``, for inputs that are ``(T_b, D)`` float arrays.
    cell : {"lstm", "gru", "rnn"}, default "lstm"
        The recurrent cell.
    hidden_size : int, default 64
        ``H``, hidden units per direction.
    num_layers : int, default 1
        Stacked recurrent layers.
    embedding_dim : int, optional
        Width of a learned ``Embedding`` of the tokens; None: 1-hot inputs.
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
    bidirectional : bool, default False
        A bidirectional recurrent layer.

    Examples
    --------
    >>> import seqcore
    >>> tagger = seqcore.SequenceTagger(2, vocab=seqcore.Vocab.build(["ab"]), seed=0)
    >>> history = tagger.fit((["ab", "bba"], [[1, 0], [0, 0, 1]]), steps=20, progress=False)
    >>> [t.shape for t in tagger.predict(["abba", "a"])]
    [(4,), (1,)]
    """

    kind = "SequenceTagger"
    _targets = "tag sequences"

    @_locked
    def forward(self, x, lengths=None):
        """The tag logits of every step.

        Parameters
        ----------
        x : numpy.ndarray
            ``(T, B)`` token ids, or ``(T, B, D)`` features.
        lengths : array_like of int, optional
            ``(B,)``, each in ``[1, T]``.

        Returns
        -------
        numpy.ndarray
            ``(T, B, C)`` logits (meaningless at padding steps).
        """
        a, _ = self.rnn.forward(self._encode(x), None, lengths)   # (T, B, dirs*H)
        return self.out.forward(self.drop_out.forward(a))          # (T, B, C)

    @_locked
    def loss_and_grads(self, batch, state=None, *, backward=True):
        logits = self.forward(batch["x"], batch["lengths"])
        loss, dlogits = softmax_cross_entropy(logits, batch["y"], batch["mask"],
                                              backend=self.backend)
        if backward:
            dx, _ = self.rnn.backward(self.drop_out.backward(self.out.backward(dlogits)))
            self._encode_backward(dx)
        return loss, None

    def batches(self, data, batch_size, rng, *, train, batching=None):
        xs, tags = data
        if len(xs) != len(tags) or len(xs) == 0:
            raise ValueError(f"data: expected one tag sequence per sequence (and at least one), "
                             f"got {len(xs)} sequences and {len(tags)} tag sequences")
        sizes = np.array([len(t) for t in tags])
        rng = rng if rng is not None else np.random.default_rng(0)
        for idx in index_batches(sizes, batch_size, rng, shuffle=train, repeat=train,
                                 batching=batching):
            x, lengths = self._pad([xs[i] for i in idx])
            y, ylen = pad_ids([list(tags[i]) for i in idx], fill=0)
            if not np.array_equal(lengths, ylen):
                raise ValueError("data: every tag sequence must have one tag per input step")
            mask = step_mask(lengths, x.shape[0])
            yield {"x": x, "y": y, "lengths": lengths, "mask": mask, "carry": False,
                   "size": len(idx), "tokens": float(mask.sum())}

    @_inference
    def predict(self, xs):
        """The most likely tag at every step of each sequence.

        Parameters
        ----------
        xs : list
            Texts (with a ``vocab``) or ``(T_b, D)`` arrays.

        Returns
        -------
        list of numpy.ndarray
            One int array per sequence, as long as it.
        """
        x, lengths = self._pad(self._check_inputs(xs, "xs"))
        best = self.forward(x, lengths).argmax(axis=2)           # (T, B)
        return [best[:n, b] for b, n in enumerate(lengths)]
