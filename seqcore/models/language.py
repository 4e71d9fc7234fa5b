"""The language model (one-to-many): next-token prediction over a Vocab, and sampling.

Two ways to read a corpus:
* lines (the default): a list of texts, each its own sequence, started from
  x<1> = 0 and a<0> = 0 and closed by ``<EOS>``; long ones are cut into windows of
  ``seq_len`` steps with the state carried between them;
* a stream (``stream=True``, Karpathy's char-rnn, PyTorch's word_language_model):
  one string read as one token sequence (at word level each line ends with
  ``<EOS>``), cut into ``batch_size`` parallel streams and trained by truncated BPTT
  over windows of ``seq_len`` steps, the state carried (gradients stopped) from one
  window to the next and reset at each pass over the text.

Legend: T time steps (a window), B batch (sequences or streams), E embedding width,
H hidden units, V vocabulary size, N tokens in a stream.
"""

import math

import numpy as np

from .. import _validation as V
from ..nn import Dense, Embedding, softmax_cross_entropy
from ..nn.dropout import check_dropout
from ..data.text import NO_TOKEN, Vocab
from .base import _inference, _locked, Model, recurrent_stack, split_seeds, _token_inputs
from ..data.batching import check_batching, index_batches, pad_ids, step_mask
from .decoding import _check_sampling, draw, log_softmax


class LanguageModel(Model):
    """Next-token model over a Vocab: ``P(x⟨t+1⟩ | x⟨1..t⟩)``, trained on the sequences of a corpus.

    ``x⟨1⟩ = 0`` (no token), ``a⟨0⟩ = 0``; the target at step ``t`` is the input at
    ``t+1``, and ``<EOS>`` is the target after the last token. Layers: ``inputs``
    (1-hot or ``Embedding``) → ``rnn`` (``RNN``/``GRU``/``LSTM``, ``num_layers``) →
    ``out`` (``Dense`` H → V).

    Parameters
    ----------
    vocab : seqcore.Vocab
        The tokens (``Vocab.build(texts, level="char"|"word")``).
    cell : {"lstm", "gru", "rnn"}, default "lstm"
        The recurrent cell.
    hidden_size : int, default 128
        ``H``, hidden units per direction.
    num_layers : int, default 1
        Stacked recurrent layers.
    embedding_dim : int, optional
        Width of a learned ``Embedding`` of the tokens; None: 1-hot inputs.
    dropout : float, default 0.0
        Drops, in training mode, the inputs, the outputs of every recurrent layer
        but the last (the layers' own ``dropout``) and the last layer's output
        before ``out`` (as PyTorch's word_language_model).
    dtype : numpy.float32 or numpy.float64, default numpy.float32
        The parameters' dtype.
    backend : {"cython", "numpy"}, default "cython"
        The compiled core or the NumPy reference.
    seed : int, optional
        Seed of the initial weights and of the dropout masks.
    **cell_options
        The cell's options: ``reset_after`` (GRU), ``peephole`` (LSTM),
        ``nonlinearity`` (RNN).
    tie_weights : bool, default False
        Share the embedding matrix with ``out``'s ``W`` (Press & Wolf 2016; needs
        ``embedding_dim == hidden_size``): one ``(V, E)`` parameter, its gradient the
        sum of both uses.
    stream : bool, default False
        The model reads running text (set by ``fit(..., stream=True)``): then
        ``sample`` writes ``max_len`` tokens of it.

    Raises
    ------
    TypeError
        ``vocab`` not a ``seqcore.Vocab``, or an argument of the wrong type.
    ValueError
        ``tie_weights`` with ``embedding_dim != hidden_size``, or a value out of range.

    Examples
    --------
    >>> import seqcore
    >>> names = ["anna", "bob", "carla", "dave", "eve"] * 20
    >>> lm = seqcore.LanguageModel(seqcore.Vocab.build(names), hidden_size=32, seed=0)
    >>> history = lm.fit(names, steps=50, batch_size=16, progress=False)
    >>> len(lm.sample(3, seed=1))
    3
    """

    kind = "LanguageModel"

    def __init__(self, vocab, *, cell="lstm", hidden_size=128, num_layers=1,
                 embedding_dim=None, dropout=0.0, tie_weights=False, stream=False,
                 dtype=np.float32, backend="cython", seed=None, **cell_options):
        super().__init__()
        if not isinstance(vocab, Vocab):
            raise TypeError(f"vocab: expected a seqcore.Vocab, got {type(vocab).__name__}")
        self.vocab = vocab
        self._setup(cell, hidden_size, num_layers, embedding_dim, dtype, cell_options)
        dropout = check_dropout(dropout)
        self.tie_weights = V.check_bool(tie_weights, "tie_weights")
        self.stream = V.check_bool(stream, "stream")
        if self.tie_weights and self.embedding_dim != self.hidden_size:
            raise ValueError(f"tie_weights=True: expected embedding_dim == hidden_size (the "
                             f"embedding is out's W), got embedding_dim={self.embedding_dim} "
                             f"and hidden_size={self.hidden_size}")
        s_in, s_rnn, s_out = split_seeds(seed, 3)
        self.backend = V.check_backend(backend)
        self.inputs = _token_inputs(len(vocab), self.embedding_dim, self.dtype, s_in, backend)
        self.rnn = recurrent_stack(cell, self.inputs.output_size, self.hidden_size, self.num_layers,
                              False, self.dtype, backend, s_rnn, cell_options, dropout)
        self.out = Dense(self.hidden_size, len(vocab), dtype=self.dtype, backend=backend, seed=s_out)
        if self.tie_weights:
            self.out.params["W"] = self.inputs.params["W"]          # (V, E): one array
        self._setup_dropout(dropout, seed, self.rnn)
        self.layers = {"inputs": self.inputs, "rnn": self.rnn, "out": self.out}

    def config(self):
        return {"vocab": self.vocab.config(), "dropout": self.dropout,
                "tie_weights": self.tie_weights, "stream": self.stream, **self._base_config()}

    def _tied(self):
        return ("out.W",) if self.tie_weights else ()

    @_locked
    def forward(self, ids, state=None, lengths=None):
        """The logits of every step, from token ids.

        Parameters
        ----------
        ids : numpy.ndarray
            ``(T, B)`` int token ids; -1 for ``x = 0`` (no token).
        state : optional
            The recurrent layer's initial state; zeros when None.
        lengths : array_like of int, optional
            ``(B,)``, each in ``[1, T]``.

        Returns
        -------
        logits : numpy.ndarray
            ``(T, B, V)``.
        state
            The final state of the recurrent layer.
        """
        if (lengths is None and not self.training and isinstance(self.inputs, Embedding)
                and isinstance(ids, np.ndarray) and ids.shape == (1, 1)):
            return self.rnn.forward_token(ids, self.inputs, self.out, state)  # generation
        x = self.drop_in.forward(self.inputs.forward(ids))    # (T, B, D)
        a, state = self.rnn.forward(x, state, lengths)         # (T, B, H)
        return self.out.forward(self.drop_out.forward(a)), state   # (T, B, V)

    @_locked
    def loss_and_grads(self, batch, state=None, *, backward=True):
        logits, state = self.forward(batch["x"], state, batch["lengths"])
        loss, dlogits = softmax_cross_entropy(logits, batch["y"], batch["mask"],
                                              backend=self.backend)
        if backward:
            da = self.drop_out.backward(self.out.backward(dlogits))   # (T, B, H)
            dx, _ = self.rnn.backward(da)                      # BPTT; truncated at the window start
            self.inputs.backward(self.drop_in.backward(dx))
            if self.tie_weights:                               # out's share of the one W
                self.inputs.grads["W"] += self.out.grads["W"]
                self.out.grads["W"][...] = 0
        return loss, state

    # ------------------------------------------------------------------ batches

    def _check_data(self, data, batch_options, name="data"):
        stream = batch_options.get("stream")
        if self.stream if stream is None else stream:
            if not isinstance(data, (str, np.ndarray)):
                raise TypeError(f"{name}: stream=True reads one string (the whole text), got "
                                f"{type(data).__name__}")
            return data
        if isinstance(data, str):
            raise TypeError(f"{name}: expected a list of texts (one sequence each), got one "
                            "string; pass stream=True to read it as one running text")
        return V.check_texts(data, name)

    def batches(self, data, batch_size, rng, *, train, seq_len=64, stream=None, batching=None,
                 start=0):
        """Batch dicts for ``fit``/``evaluate`` (``seqcore.train.loop``); ``start`` skips
        that many windows first (to resume a run where it stopped)."""
        S = V.check_int(seq_len, "seq_len")
        stream = self.stream if stream is None else V.check_bool(stream, "stream")
        if batching is not None:
            check_batching(batching)
        if stream:
            if batching is not None:
                raise ValueError(f"batching={batching!r}: applies to lines (a list of texts); "
                                 "a stream is read as batch_size parallel streams")
            ids = data if isinstance(data, np.ndarray) else self.stream_ids(data)
            return self._stream_batches(ids, batch_size, S, train=train, start=start)
        if isinstance(data, str):
            raise TypeError("data: expected a list of texts (one sequence each), got one "
                            "string; pass stream=True to read it as one running text")
        seqs = [self.vocab.encode(text) for text in data]
        if not seqs:
            raise ValueError("data: expected at least one text")
        rng = rng if rng is not None else np.random.default_rng(0)
        return self._line_batches(seqs, batch_size, S, rng, train=train, start=start,
                                  batching=batching)

    def _train_batches(self, data, batch_size, rng, start, **options):
        if options.get("stream"):
            self.stream = True                 # it reads running text from now on
        return self.batches(data, batch_size, rng, train=True, start=start, **options)

    def _line_batches(self, seqs, B, S, rng, *, train, start, batching=None):
        """Batches of whole sequences, cut into windows of S steps (truncated BPTT).

        A sequence x = [x<1> = 0, tokens...] predicts y = [tokens..., <EOS>]. Windows
        of one batch after the first have ``carry=True``: the trainer passes the final
        state of the previous window on as the initial state.
        """
        sizes = np.array([len(s) + 1 for s in seqs])
        for idx in index_batches(sizes, B, rng, shuffle=train, repeat=train, batching=batching):
            T = int(sizes[idx].max())
            windows = math.ceil(T / S)
            if start >= windows:                               # resuming: skip it whole
                start -= windows
                continue
            x, lengths = pad_ids([[NO_TOKEN] + seqs[i] for i in idx])
            y, _ = pad_ids([seqs[i] + [self.vocab.eos_id] for i in idx], fill=0)
            for k in range(start, windows):
                t0 = k * S
                left = lengths - t0                             # steps still to go
                mask = step_mask(left, min(S, T - t0))
                yield {"x": x[t0:t0 + S], "y": y[t0:t0 + S],
                       "lengths": np.clip(left, 1, S), "mask": mask,
                       "carry": k > 0, "size": len(idx), "tokens": float(mask.sum())}
            start = 0

    def _shard(self, data, dist, batch_size):
        """This rank's streams: ranks r*B .. (r+1)*B - 1 of the R*B streams that one process
        with batch R*B would cut the text into (tokens r*B*n .. (r+1)*B*n, n = (N-1) //
        (R*B)), so R ranks of B streams train exactly as one process of R*B. Lines: a
        block of the lines."""
        stream = self.run["batch_options"].get("stream")
        if not (self.stream if stream is None else stream):
            return super()._shard(data, dist, batch_size)
        ids = np.asarray(self.stream_ids(data) if isinstance(data, str) else data, np.int64)
        B, R, r = batch_size, dist.size(), dist.rank()
        n = (len(ids) - 1) // (B * R)
        if n < 1:
            raise ValueError(f"data: a text of {len(ids)} tokens cannot be cut into {R} ranks "
                             f"x {B} streams of at least one step each")
        return ids[r * B * n:(r + 1) * B * n + 1]

    def stream_ids(self, text):
        """The token ids of running text.

        At word level each line is closed by ``<EOS>`` (the newline's token); at char
        level the newline is a character like any other.

        Parameters
        ----------
        text : str

        Returns
        -------
        list of int
            The ids, one per token.
        """
        if not isinstance(text, str):
            raise TypeError(f"data: stream=True reads one string (the whole text), got "
                            f"{type(text).__name__}")
        if self.vocab.level == "char":
            return self.vocab.encode(text)
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()                                         # the final newline's empty rest
        ids = []
        for line in lines:
            ids += self.vocab.encode(line, eos=True)
        return ids

    def _stream_batches(self, ids, B, S, *, train, start):
        """The stream cut into B parallel streams of n = (N - 1) // B steps, read in
        windows of S steps: x = stream[t], y = stream[t + 1]; ``carry`` within a pass.

        Stream b is tokens b*n .. (b+1)*n (its last token only a target); the final
        N - 1 - B*n tokens are left out (fewer than B). One pass when evaluating.
        """
        ids = np.asarray(ids, np.int64)
        n = (len(ids) - 1) // B
        if n < 1:
            raise ValueError(f"data: a text of {len(ids)} tokens cannot be cut into {B} "
                             "streams of at least one step each; give more text or a "
                             "smaller batch_size")
        x_all = ids[:B * n].reshape(B, n).T                     # (n, B): x[t, b] = ids[b*n + t]
        y_all = ids[1:B * n + 1].reshape(B, n).T                # (n, B): the next token
        windows = math.ceil(n / S)
        k = start % windows
        while True:
            for k in range(k, windows):
                t0 = k * S
                x = np.ascontiguousarray(x_all[t0:t0 + S])
                yield {"x": x, "y": np.ascontiguousarray(y_all[t0:t0 + S]), "lengths": None,
                       "mask": None, "carry": k > 0, "size": B, "tokens": float(x.size)}
            if not train:
                return
            k = 0

    @_inference
    def score(self, texts, *, per_token=False, batch_size=64, seq_len=256):
        """The natural-log probability of each text under the model, ``<EOS>`` included.

        Each text is read as ``fit`` reads a line: from ``x⟨1⟩ = 0`` and ``a⟨0⟩ = 0``,
        its tokens (symbols outside the vocabulary as ``<UNK>``), then ``<EOS>``::

            score(text) = sum_t log P(y<t> | x<1..t>),  y = (tokens..., <EOS>)

        so ``-score(text)`` is the text's cross-entropy C in nats and, over a list of
        texts, ``evaluate(texts)["token_loss"] == -sum(scores) / sum(len(tokens) + 1)``.
        Runs in evaluation mode (no dropout), in batches of ``batch_size`` texts and
        windows of ``seq_len`` steps with the state carried (the result does not
        depend on either). For a language model of lines (not ``stream``).

        Parameters
        ----------
        texts : list of str
            The texts to score (one string each; an empty string scores ``<EOS>``).
        per_token : bool, default False
            Also return each token's log-probability.
        batch_size : int, default 64
            Texts per batch.
        seq_len : int, default 256
            Steps per window.

        Returns
        -------
        scores : numpy.ndarray
            ``(n,)`` float64: ``log P(text)`` of each text (natural log, ``<= 0``).
        token_scores : list of numpy.ndarray
            Only with ``per_token=True``: for text ``i`` a float64 array of
            ``len(tokens) + 1`` log-probabilities, the last one that of ``<EOS>``; it sums
            to ``scores[i]``.

        Raises
        ------
        TypeError
            ``texts`` not a list of strings (one string alone is refused).
        ValueError
            A model of running text (``stream``).
        """
        texts = V.check_texts(texts, "texts")
        per_token = V.check_bool(per_token, "per_token")
        B, S = V.check_int(batch_size, "batch_size"), V.check_int(seq_len, "seq_len")
        if self.stream:
            raise ValueError("score: this model reads running text (trained with "
                             "stream=True), where a text has no start or end of its own; "
                             "score scores the lines of a model trained on lines")
        seqs = [self.vocab.encode(text) for text in texts]
        tokens = [np.empty(len(s) + 1) for s in seqs]              # log P of y<t>, per text
        sizes = np.array([len(s) + 1 for s in seqs])
        for idx in index_batches(sizes, B, None, shuffle=False, repeat=False):
            x, lengths = pad_ids([[NO_TOKEN] + seqs[i] for i in idx])        # (T, b)
            y, _ = pad_ids([seqs[i] + [self.vocab.eos_id] for i in idx], fill=0)
            logp, state = np.empty(y.shape), None                    # (T, b)
            for t0 in range(0, x.shape[0], S):
                left = np.clip(lengths - t0, 1, S)                   # steps of each in the window
                logits, state = self.forward(x[t0:t0 + S], state, left)   # (S', b, V)
                lp = log_softmax(logits)                             # (S', b, V) float64
                logp[t0:t0 + S] = np.take_along_axis(lp, y[t0:t0 + S, :, None], axis=2)[..., 0]
            for b, i in enumerate(idx):
                tokens[i][:] = logp[:sizes[i], b]
        scores = np.array([t.sum() for t in tokens], np.float64)
        return (scores, tokens) if per_token else scores

    @_inference
    def sample(self, n=1, *, max_len=100, temperature=1.0, top_k=None, greedy=False,
               prime="", seed=None, allow_unk=False):
        """Texts drawn from the model, as the notes sample.

        Start from ``x⟨1⟩ = 0`` and ``a⟨0⟩ = 0`` (after reading ``prime``, whose unknown
        symbols become ``<UNK>``), draw ``x⟨t+1⟩`` from ``softmax(ŷ⟨t⟩ / temperature)``
        (or its argmax when ``greedy``, among the ``top_k`` most likely when given),
        feed it back, until ``<EOS>`` or ``max_len`` new tokens. A stream model
        (``stream``) writes running text of ``max_len`` new tokens: it starts as after a
        line break when there is no prime, and ``<EOS>`` is a line break (word level) or
        never drawn (char level, where the newline is a character). Runs in evaluation
        mode.

        Parameters
        ----------
        n : int, default 1
            How many texts.
        max_len : int, default 100
            New tokens at most per text.
        temperature : float, default 1.0
            Divides the logits; below 1 is more conservative.
        top_k : int, optional
            Draw among the ``top_k`` most likely tokens only.
        greedy : bool, default False
            Take the most likely token at every step.
        prime : str, default ""
            The text each sample starts with.
        seed : int, optional
            The same seed gives the same texts.
        allow_unk : bool, default False
            Let ``<UNK>`` be drawn.

        Returns
        -------
        list of str
            ``n`` texts, each starting with ``prime``.
        """
        n = V.check_int(n, "n")
        _check_sampling(temperature, top_k, max_len)
        rng = np.random.default_rng(seed)
        prime_ids = self.vocab.encode(prime)
        first = [NO_TOKEN]
        if self.stream and not prime_ids:                            # as after a line break
            first = [self.vocab.eos_id if self.vocab.level == "word"
                     else self.vocab._ids.get("\n", NO_TOKEN)]
        ids = np.array([first + prime_ids] * n, np.int64).T          # (1 + P, n)
        logits, state = self.forward(ids)
        logits = logits[-1]                                          # (n, V)
        out = [list(prime_ids) for _ in range(n)]
        done = np.zeros(n, bool)
        banned = [] if allow_unk else [self.vocab.unk_id]
        ends = not self.stream                                       # <EOS> ends a text
        if self.stream and self.vocab.level == "char":
            banned.append(self.vocab.eos_id)
        for _ in range(max_len):
            tok = draw(logits, rng, temperature=temperature, top_k=top_k, greedy=greedy,
                       banned=banned)
            for b in np.flatnonzero(~done):
                if ends and tok[b] == self.vocab.eos_id:
                    done[b] = True
                else:
                    out[b].append(int(tok[b]))
            if done.all():
                break
            logits, state = self.forward(tok[None, :], state)        # feed the draw back
            logits = logits[0]
        return [self._decode(ids) for ids in out]

    def _decode(self, ids):
        if not self.stream:
            return self.vocab.decode(ids)
        lines, line = [], []                                  # running text: <EOS> is a newline
        for i in ids:
            if i == self.vocab.eos_id:
                lines.append(line)
                line = []
            else:
                line.append(i)
        return "\n".join(self.vocab.decode(part) for part in lines + [line])
