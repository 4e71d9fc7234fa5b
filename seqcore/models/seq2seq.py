"""The encoder-decoder (many-to-many, Tx != Ty): Seq2Seq, with optional attention and a bidirectional encoder.

Legend: Tx source steps (tokens + <EOS>), Ty decoder steps, B batch, H hidden units,
L layers, dirs encoder directions (1 or 2), Hh = dirs*H the encoder output width,
V target vocabulary size, K beams, N = B*K decoder rows in a beam search.
"""

import numpy as np

from .. import _validation as V
from ..nn.attention import ATTENTION_KINDS, make_attention
from ..nn import Dense, softmax_cross_entropy
from ..nn.dropout import Dropout, check_dropout
from ..data.text import NO_TOKEN, Vocab
from .base import _inference, _locked, Model, recurrent_stack, split_seeds, _token_inputs
from ..data.batching import index_batches, pad_ids, step_mask
from .beam import _check_length_penalty, beam_search
from .decoding import _check_sampling, draw, log_softmax

__all__ = ["Seq2Seq", "plot_attention"]


class Seq2Seq(Model):
    """Encoder–decoder for ``Tx != Ty``, with optional (Luong-style) attention.

    Encoder: the source inputs → ``rnn`` over the source followed by ``<EOS>`` (read
    backwards first when ``reverse_source``, Sutskever et al. 2014); with
    ``bidirectional_encoder=True`` a bidirectional rnn whose outputs are
    ``[h→_j, h←_j]`` (width 2H). Decoder: starts from the encoder's final state with
    ``x⟨1⟩ = 0`` and, in training, reads the true previous target token (teacher
    forcing); it predicts the target followed by ``<EOS>``. Both recurrent layers share
    cell, hidden size and depth. Data for ``fit`` and ``evaluate``: a list of
    ``(source text, target text)`` pairs.

    Parameters
    ----------
    src_vocab : seqcore.Vocab
        The source tokens.
    tgt_vocab : seqcore.Vocab
        The target tokens.
    cell : {"lstm", "gru", "rnn"}, default "lstm"
        The recurrent cell of the encoder and the decoder.
    hidden_size : int, default 128
        ``H``, hidden units per direction.
    num_layers : int, default 1
        Stacked recurrent layers, in the encoder and in the decoder.
    embedding_dim : int, optional
        Width of learned embeddings of the tokens; None: 1-hot inputs.
    reverse_source : bool, default False
        The encoder reads each source backwards.
    attention : {"bahdanau", "luong", "dot"} or None, default None
        ``None``: the logits come from the decoder state alone. Otherwise Luong et
        al. (2015) global attention without input feeding, scored as Bahdanau's
        additive form, Luong's general form, or the dot product (which needs a
        unidirectional encoder).
    bidirectional_encoder : bool, default False
        A bidirectional encoder; the decoder starts from the sum of its two final
        states per layer.
    attention_size : int, optional
        The width of ``"bahdanau"`` attention (default ``H``).
    dropout : float, default 0.0
        Drops, in training mode, the source and target embeddings, the outputs of
        every encoder and decoder layer but the last, and what ``out`` reads.
    dtype : numpy.float32 or numpy.float64, default numpy.float32
        The parameters' dtype.
    backend : {"cython", "numpy"}, default "cython"
        The compiled core or the NumPy reference.
    seed : int, optional
        Seed of the initial weights and of the dropout masks.
    **cell_options
        The cell's options: ``reset_after`` (GRU), ``peephole`` (LSTM),
        ``nonlinearity`` (RNN).

    Raises
    ------
    TypeError
        A vocabulary that is not a ``seqcore.Vocab``, or an argument of the wrong type.
    ValueError
        ``attention="dot"`` with a bidirectional encoder, ``attention_size``
        without ``"bahdanau"``, or a value out of range.

    Notes
    -----
    The hand-off (bridge) from a bidirectional encoder: the decoder's initial state of
    layer ``l`` is the *sum* of the encoder's two final states of layer ``l``,
    ``s⟨0⟩[l] = a→[l] + a←[l]`` (each of ``a`` and ``c`` for an LSTM). Its backward
    copies the decoder's ``dstate0[l]`` to both directions. No parameters.

    With attention the decoder runs over the whole teacher-forced target in one call,
    ``S = (s⟨1⟩ .. s⟨Ty⟩)`` (Ty, B, H); then::

        C, alpha = attention(S, H_enc, src_lengths)    C (Ty, B, Hh), alpha (Ty, B, Tx)
        h~<t>    = tanh(W_c [c<t>; s<t>] + b_c)         combine: Dense(Hh + H -> H)
        logits   = out(h~)                              (Ty, B, V)

    ``H_enc`` (Tx, B, Hh) are the encoder outputs (zero at padded source steps, which
    the attention masks out exactly). Backward mirrors it: dh~ → tanh' → combine →
    (dC, dS1); attention.backward(dC) → (dS2, dH_enc); decoder.backward(dS1 + dS2) →
    dstate0; encoder.backward(dH_enc, bridged-back dstate0).

    Examples
    --------
    >>> import seqcore
    >>> pairs = [("3rd of May 1999", "1999-05-03"), ("25th of June 2026", "2026-06-25")]
    >>> s2s = seqcore.Seq2Seq(seqcore.Vocab.build(s for s, _ in pairs),
    ...                       seqcore.Vocab.build(t for _, t in pairs), cell="gru",
    ...                       hidden_size=16, attention="luong", seed=0)
    >>> history = s2s.fit(pairs, steps=5, progress=False)
    >>> texts, attn = s2s.translate(["3rd of May 1999"], return_attention=True)
    >>> attn[0].shape[1] == len(s2s.source_tokens("3rd of May 1999"))
    True
    """

    kind = "Seq2Seq"

    def __init__(self, src_vocab, tgt_vocab, *, cell="lstm", hidden_size=128, num_layers=1,
                 embedding_dim=None, reverse_source=False, attention=None,
                 bidirectional_encoder=False, attention_size=None, dropout=0.0,
                 dtype=np.float32, backend="cython", seed=None, **cell_options):
        super().__init__()
        for name, v in (("src_vocab", src_vocab), ("tgt_vocab", tgt_vocab)):
            if not isinstance(v, Vocab):
                raise TypeError(f"{name}: expected a seqcore.Vocab, got {type(v).__name__}")
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.reverse_source = V.check_bool(reverse_source, "reverse_source")
        self.bidirectional_encoder = V.check_bool(bidirectional_encoder, "bidirectional_encoder")
        if attention is not None:
            V.check_choice(attention, "attention", ATTENTION_KINDS)
        self.attention_kind = attention
        self._setup(cell, hidden_size, num_layers, embedding_dim, dtype, cell_options)
        dirs = 2 if self.bidirectional_encoder else 1
        self.enc_width = dirs * self.hidden_size                          # Hh
        if attention is None and attention_size is not None:
            raise ValueError("attention_size: applies to attention='bahdanau' only, got "
                             f"attention_size={attention_size!r} with attention=None")
        if attention == "dot" and self.bidirectional_encoder:
            raise ValueError("attention='dot' scores s . h_j and needs the decoder width "
                             f"(hidden_size={self.hidden_size}) to equal the encoder output "
                             f"width ({self.enc_width} with bidirectional_encoder=True); use "
                             "attention='luong' or 'bahdanau' with a bidirectional encoder")
        s = split_seeds(seed, 7)      # the first 5 are those of a model without attention
        self.backend = V.check_backend(backend)
        self.src_inputs = _token_inputs(len(src_vocab), self.embedding_dim, self.dtype, s[0],
                                        backend)
        self.encoder = recurrent_stack(cell, self.src_inputs.output_size, self.hidden_size,
                                  self.num_layers, self.bidirectional_encoder, self.dtype,
                                  backend, s[1], cell_options, check_dropout(dropout))
        self.tgt_inputs = _token_inputs(len(tgt_vocab), self.embedding_dim, self.dtype, s[2],
                                        backend)
        self.decoder = recurrent_stack(cell, self.tgt_inputs.output_size, self.hidden_size,
                                  self.num_layers, False, self.dtype, backend, s[3], cell_options,
                                  check_dropout(dropout))
        self.out = Dense(self.hidden_size, len(tgt_vocab), dtype=self.dtype, backend=backend,
                         seed=s[4])
        self.layers = {"src_inputs": self.src_inputs, "encoder": self.encoder,
                       "tgt_inputs": self.tgt_inputs, "decoder": self.decoder}
        self.attention = self.combine = None
        if attention is not None:
            self.attention = make_attention(attention, self.hidden_size, self.enc_width,
                                            attention_size=attention_size, dtype=self.dtype,
                                            seed=s[5])
            self.combine = Dense(self.enc_width + self.hidden_size, self.hidden_size,
                                 dtype=self.dtype, backend=backend, seed=s[6])
            self.layers["attention"] = self.attention
            self.layers["combine"] = self.combine
        self.layers["out"] = self.out
        self.attention_size = attention_size
        self._setup_dropout(dropout, seed, self.encoder, self.decoder)
        self.drop_tgt = Dropout(self.dropout, dtype=self.dtype, generator=self.generator)

    def _dropouts(self):
        return (self.drop_in, self.drop_tgt, self.drop_out)

    def config(self):
        return {"src_vocab": self.src_vocab.config(), "tgt_vocab": self.tgt_vocab.config(),
                "reverse_source": self.reverse_source, "attention": self.attention_kind,
                "bidirectional_encoder": self.bidirectional_encoder,
                "attention_size": self.attention_size, "dropout": self.dropout,
                **self._base_config()}

    # ---------------------------------------------------------------- the source

    def _source_ids(self, texts):
        seqs = []
        for t in texts:
            ids = self.src_vocab.encode(t)
            seqs.append((ids[::-1] if self.reverse_source else ids) + [self.src_vocab.eos_id])
        return pad_ids(seqs)

    def source_tokens(self, text):
        """The source positions of ``text`` as the encoder reads them.

        Parameters
        ----------
        text : str
            A source text.

        Returns
        -------
        list of str
            Its tokens (reversed if ``reverse_source``) then ``"<EOS>"``: the columns of
            its attention matrix.
        """
        toks = list(self.src_vocab.tokenize(text))
        return (toks[::-1] if self.reverse_source else toks) + ["<EOS>"]

    def _bridge(self, state):
        """Encoder final state (L*dirs, B, H) [, c] -> decoder initial state (L, B, H) [, c]:
        the sum of the two directions of each layer (identity when unidirectional)."""
        if not self.bidirectional_encoder:
            return state
        if isinstance(state, tuple):
            return tuple(self._bridge(x) for x in state)
        L2, B, H = state.shape
        return state.reshape(L2 // 2, 2, B, H).sum(axis=1)              # rows l*2 + d

    def _bridge_backward(self, dstate):
        """d(decoder initial state) -> d(encoder final state): the sum's gradient, copied
        to both directions."""
        if not self.bidirectional_encoder:
            return dstate
        if isinstance(dstate, tuple):
            return tuple(self._bridge_backward(x) for x in dstate)
        return np.repeat(dstate, 2, axis=0)                              # (L*2, B, H)

    def _encode(self, src, src_lengths):
        """src (Tx, B) -> encoder outputs H_enc (Tx, B, Hh), decoder initial state (L, B, H) [, c]."""
        xs = self.drop_in.forward(self.src_inputs.forward(src))         # (Tx, B, Ds)
        h_enc, state = self.encoder.forward(xs, None, src_lengths)     # (Tx, B, Hh), (L*dirs, B, H)
        return h_enc, self._bridge(state)

    @_locked
    def encode(self, src, src_lengths=None):
        """The decoder's initial state: the encoder's final state, bridged.

        Parameters
        ----------
        src : numpy.ndarray
            ``(Tx, B)`` source token ids.
        src_lengths : array_like of int, optional
            ``(B,)``.

        Returns
        -------
        state
            The decoder's initial state.
        """
        return self._encode(src, src_lengths)[1]

    # ---------------------------------------------------------------- teacher forcing

    def _head(self, S, h_enc, src_lengths):
        """Decoder states S (Ty, B, H) -> logits (Ty, B, V), and alpha (Ty, B, Tx) or None."""
        if self.attention is None:
            return self.out.forward(self.drop_out.forward(S)), None
        C, alpha = self.attention.forward(S, h_enc, src_lengths)        # (Ty, B, Hh), (Ty, B, Tx)
        self._h_tilde = np.tanh(self.combine.forward(np.concatenate([C, S], axis=-1)))
        return self.out.forward(self.drop_out.forward(self._h_tilde)), alpha   # (Ty, B, V)

    @_locked
    def forward(self, src, src_lengths, dec_in, dec_lengths=None):
        """The teacher-forced pass over a batch.

        Parameters
        ----------
        src : numpy.ndarray
            ``(Tx, B)`` source token ids.
        src_lengths : array_like of int
            ``(B,)``.
        dec_in : numpy.ndarray
            ``(Ty, B)``: ``[x⟨1⟩ = 0, y⟨1..Ty-1⟩]``, the previous target tokens.
        dec_lengths : array_like of int, optional
            ``(B,)``.

        Returns
        -------
        numpy.ndarray
            ``(Ty, B, V)`` logits.
        """
        h_enc, state = self._encode(src, src_lengths)                   # hand-off: a<Tx> -> s<0>
        self._h_enc_shape = h_enc.shape
        xd = self.drop_tgt.forward(self.tgt_inputs.forward(dec_in))     # (Ty, B, Dt)
        S, _ = self.decoder.forward(xd, state, dec_lengths)            # (Ty, B, H)
        return self._head(S, h_enc, src_lengths)[0]

    @_locked
    def loss_and_grads(self, batch, state=None, *, backward=True):
        logits = self.forward(batch["src"], batch["src_lengths"], batch["x"], batch["lengths"])
        loss, dlogits = softmax_cross_entropy(logits, batch["y"], batch["mask"],
                                              backend=self.backend)
        if backward:
            dh = self.drop_out.backward(self.out.backward(dlogits))     # (Ty, B, H)
            if self.attention is None:
                dS = dh
                dh_enc = np.zeros(self._h_enc_shape, self.dtype)        # encoder outputs unused
            else:
                dz = dh * (1 - self._h_tilde ** 2)                      # backprop through tanh
                dCS = self.combine.backward(dz)                         # (Ty, B, Hh + H)
                dC, dS1 = dCS[..., :self.enc_width], dCS[..., self.enc_width:]
                dS2, dh_enc = self.attention.backward(np.ascontiguousarray(dC))
                dS = dS1 + dS2                                          # s<t> feeds both
            dxd, dstate0 = self.decoder.backward(np.ascontiguousarray(dS))  # dC/ds<0>
            self.tgt_inputs.backward(self.drop_tgt.backward(dxd))
            dxs, _ = self.encoder.backward(dh_enc, self._bridge_backward(dstate0))
            self.src_inputs.backward(self.drop_in.backward(dxs))
        return loss, None

    def _check_data(self, data, batch_options, name="data"):
        return V.check_text_pairs(data, name)

    def batches(self, data, batch_size, rng, *, train, batching=None):
        pairs = list(data)
        if not pairs:
            raise ValueError("data: expected at least one (source, target) pair")
        srcs = [p[0] for p in pairs]
        tgts = [self.tgt_vocab.encode(p[1]) for p in pairs]
        sizes = np.array([len(self.src_vocab.tokenize(s)) for s in srcs])
        rng = rng if rng is not None else np.random.default_rng(0)
        for idx in index_batches(sizes, batch_size, rng, shuffle=train, repeat=train,
                                 batching=batching):
            src, src_lengths = self._source_ids([srcs[i] for i in idx])
            x, lengths = pad_ids([[NO_TOKEN] + tgts[i] for i in idx])
            y, _ = pad_ids([tgts[i] + [self.tgt_vocab.eos_id] for i in idx], fill=0)
            mask = step_mask(lengths, x.shape[0])
            yield {"src": src, "src_lengths": src_lengths, "x": x, "y": y,
                   "lengths": lengths, "mask": mask, "carry": False, "size": len(idx),
                   "tokens": float(mask.sum())}

    # ---------------------------------------------------------------- decoding

    def _start(self, sources):
        """-> (decoder state for step(), src_lengths (B,)): (dec_state, AttentionSource, alpha)."""
        src, src_lengths = self._source_ids(sources)
        h_enc, state = self._encode(src, src_lengths)
        if self.attention is None:
            return (state, None, None), src_lengths
        return (state, self.attention.precompute(h_enc, src_lengths), None), src_lengths

    def _step_logits(self, tokens, state):
        """One decoder step for N rows: tokens (N,), state -> logits (N, V), new state.

        state = (decoder state (L, N, H) [, c], AttentionSource or None, alpha (N, Tx) or
        None: the attention weights of the step just taken)."""
        dec_state, source, _ = state
        a, dec_state = self.decoder.forward(self.tgt_inputs.forward(tokens[None, :]), dec_state)
        s = a[0]                                                         # (N, H)
        if self.attention is None:
            return self.out.forward(s), (dec_state, None, None)
        c, alpha = self.attention.attend(s, source)                     # (N, Hh), (N, Tx)
        h_tilde = np.tanh(self.combine.forward(np.concatenate([c, s], axis=-1)))
        return self.out.forward(h_tilde), (dec_state, source, alpha)

    @_inference
    def translate(self, sources, *, greedy=True, temperature=1.0, top_k=None, seed=None,
                  max_len=100, allow_unk=False, beam_size=1, length_penalty=0.0,
                  return_attention=False):
        """Decode each source text: greedy (default), sampled (``greedy=False``) or beam search.

        The decoder starts from the encoder's final state with ``x⟨1⟩ = 0`` and feeds
        each output token back, until ``<EOS>`` or ``max_len`` decoder steps. Runs in
        evaluation mode.

        Parameters
        ----------
        sources : list of str
            The source texts.
        greedy : bool, default True
            Take the most likely token at every step; ``False`` samples.
        temperature : float, default 1.0
            Sampling temperature (``greedy=False``).
        top_k : int, optional
            Sample among the ``top_k`` most likely tokens only.
        seed : int, optional
            The sampling's random source.
        max_len : int, default 100
            Decoder steps at most.
        allow_unk : bool, default False
            Let ``<UNK>`` be produced.
        beam_size : int, default 1
            Above 1: beam search with that many hypotheses per source (needs
            ``greedy=True``); 1 is greedy decoding exactly.
        length_penalty : float, default 0.0
            GNMT's ``alpha``: hypotheses rank by ``log P / ((5 + |Y|) / 6) ** alpha``,
            ``|Y|`` counting ``<EOS>``.
        return_attention : bool, default False
            Also return the attention weights (attention models only).

        Returns
        -------
        translations : list of str
            One per source.
        attentions : list of numpy.ndarray
            Only with ``return_attention=True``: ``attentions[i]`` (Ty_i, Tx_i) float64,
            row ``t`` the weights of decoder step ``t`` over example ``i``'s own source
            positions, the source as the encoder read it (``source_tokens``: its tokens,
            reversed if ``reverse_source``, then ``<EOS>``, so Tx_i = tokens + 1). The
            rows cover every decoder step *including the step that produced* ``<EOS>``:
            Ty_i = output tokens + 1, or ``max_len`` when cut off without ``<EOS>``. Each
            row sums to 1.

        Raises
        ------
        ValueError
            ``return_attention=True`` on a model without attention, or ``beam_size > 1``
            with ``greedy=False``.
        """
        sources = V.check_texts(sources, "sources")
        _check_sampling(temperature, top_k, max_len)
        beam_size = V.check_int(beam_size, "beam_size")
        length_penalty = _check_length_penalty(length_penalty)    # checked for beam 1 too
        V.check_bool(return_attention, "return_attention")
        if return_attention and self.attention is None:
            raise ValueError("return_attention=True: this model has no attention "
                             "(built with attention=None); build it with attention="
                             "'bahdanau', 'luong' or 'dot'")
        if beam_size > 1 and not greedy:
            raise ValueError(f"beam_size={beam_size}: beam search is deterministic; "
                             "use greedy=True (or beam_size=1 to sample)")
        if not sources:
            return ([], []) if return_attention else []
        banned = () if allow_unk else (self.tgt_vocab.unk_id,)
        if beam_size > 1:
            ids, attn = self._beam(sources, beam_size, max_len, length_penalty, banned,
                                   return_attention)
        else:
            ids, attn = self._draw(sources, greedy, temperature, top_k, seed, max_len, banned,
                                   return_attention)
        texts = [self.tgt_vocab.decode(t) for t in ids]
        return (texts, attn) if return_attention else texts

    def _draw(self, sources, greedy, temperature, top_k, seed, max_len, banned, keep):
        """Greedy or sampled decoding, all sources at once -> (ids per source, attentions or None)."""
        rng = np.random.default_rng(seed)
        state, src_lengths = self._start(sources)
        n = len(sources)
        tok = np.full(n, NO_TOKEN, np.int64)
        out = [[] for _ in range(n)]
        rows = [[] for _ in range(n)]                                  # alpha rows per source
        done = np.zeros(n, bool)
        for _ in range(max_len):
            logits, state = self._step_logits(tok, state)
            tok = draw(logits, rng, temperature=temperature, top_k=top_k, greedy=greedy,
                       banned=banned)
            for b in np.flatnonzero(~done):
                if keep:
                    rows[b].append(state[2][b, :src_lengths[b]])
                if tok[b] == self.tgt_vocab.eos_id:
                    done[b] = True
                else:
                    out[b].append(int(tok[b]))
            if done.all():
                break
        attn = [np.array(r, np.float64) for r in rows] if keep else None
        return out, attn

    def _beam(self, sources, beam_size, max_len, length_penalty, banned, keep):
        """Beam search over all sources at once -> (ids per source, attentions or None)."""
        state, src_lengths = self._start(sources)

        def step(tokens, st):
            logits, st = self._step_logits(tokens, st)
            return log_softmax(logits), st            # float64: beam_size=1 is greedy exactly

        trace = (lambda st: st[2]) if keep else None
        tokens, _, nbest = beam_search(step, state, len(sources), bos=NO_TOKEN,
                                       eos=self.tgt_vocab.eos_id, beam_size=beam_size,
                                       max_len=max_len, length_penalty=length_penalty,
                                       banned=banned, trace=trace, return_all=True)
        attn = None
        if keep:
            attn = [np.asarray(h[0].trace[:, :n], np.float64) if h else np.zeros((0, n))
                    for h, n in zip(nbest, src_lengths)]
        return tokens, attn

    # ---------------------------------------------------------------- held-out scores

    @_inference
    def evaluate(self, data, *, batch_size=64, metrics=False, beam_size=1, length_penalty=0.0,
                 max_len=100):
        """The held-out cost of ``(source, target)`` pairs, and optionally the translations' scores.

        Parameters
        ----------
        data : list of (str, str)
            ``(source, target)`` pairs.
        batch_size : int, default 64
            Pairs per batch.
        metrics : bool, default False
            Also translate the sources (``translate(sources, beam_size=beam_size,
            length_penalty=length_penalty, max_len=max_len)``) and score the
            translations against the targets.
        beam_size : int, default 1
            As in ``translate``.
        length_penalty : float, default 0.0
            As in ``translate``.
        max_len : int, default 100
            As in ``translate``.

        Returns
        -------
        dict
            ``"loss"``, ``"token_loss"``, ``"perplexity"``, ``"tokens"``, ``"total"`` (as
            the other models' ``evaluate``); with ``metrics=True`` also
            ``"exact_match"`` (fraction 0-1, ``seqcore.metrics.exact_match``) and
            ``"bleu"`` (0-100, corpus BLEU, ``seqcore.metrics.bleu``; needs sacrebleu).
        """
        pairs = V.check_text_pairs(data, "data")
        result = super().evaluate(pairs, batch_size=batch_size)
        if V.check_bool(metrics, "metrics"):
            from ..metrics import bleu, exact_match
            hyps = self.translate([s for s, _ in pairs], beam_size=beam_size,
                                  length_penalty=length_penalty, max_len=max_len)
            refs = [t for _, t in pairs]
            result["exact_match"] = exact_match(hyps, refs)
            result["bleu"] = bleu(hyps, refs)
        return result


def plot_attention(attention, source_tokens, output_tokens, path, *, title=None):
    """Write an attention matrix as a PNG heat map: source along x, output along y.

    Needs matplotlib (``pip install 'seqcore[plot]'``).

    Parameters
    ----------
    attention : array_like
        ``(Ty, Tx)``, one of the ``attentions`` of ``Seq2Seq.translate(...,
        return_attention=True)``.
    source_tokens : list of str
        ``Tx`` labels, e.g. ``model.source_tokens(text)``.
    output_tokens : list of str
        ``Ty`` labels: the output tokens and ``"<EOS>"`` for the EOS step, as
        ``translate`` counts them.
    path : str or os.PathLike
        The PNG file to write.
    title : str, optional
        A title above the map.

    Returns
    -------
    str or os.PathLike
        ``path``.

    Raises
    ------
    ValueError
        ``attention`` not 2-D, or label counts that do not match its shape.
    ImportError
        matplotlib is not installed.
    """
    A = np.asarray(attention, dtype=np.float64)
    if A.ndim != 2:
        raise ValueError(f"attention: expected a 2-D array (Ty, Tx), got shape {A.shape}")
    source_tokens, output_tokens = list(source_tokens), list(output_tokens)
    if len(source_tokens) != A.shape[1] or len(output_tokens) != A.shape[0]:
        raise ValueError(f"attention of shape {A.shape}: expected {A.shape[1]} source_tokens "
                         f"and {A.shape[0]} output_tokens, got {len(source_tokens)} and "
                         f"{len(output_tokens)}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plot_attention needs matplotlib, an optional dependency: "
                          "pip install 'seqcore[plot]'") from None
    Ty, Tx = A.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * Tx + 1.5), max(3.0, 0.35 * Ty + 1.2)))
    im = ax.imshow(A, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(Tx))
    ax.set_xticklabels([repr(t)[1:-1] if t != " " else "␣" for t in source_tokens],
                       rotation=90)
    ax.set_yticks(range(Ty))
    ax.set_yticklabels([t if t != " " else "␣" for t in output_tokens])
    ax.set_xlabel("source position")
    ax.set_ylabel("output step")
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
