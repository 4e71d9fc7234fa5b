"""The encoder-decoder (many-to-many, Tx != Ty): Seq2Seq."""

import numpy as np

from .. import _validation as V
from ..dense import Dense, softmax_cross_entropy
from ..text import NO_TOKEN, Vocab
from ._base import _inference, _locked, _Model, _recurrent, _seeds, _token_inputs
from .batching import index_batches, pad_ids, step_mask
from .decoding import _check_sampling, draw


class Seq2Seq(_Model):
    """Encoder-decoder for Tx != Ty: the encoder's final state a<Tx> starts the decoder.

    Encoder: src inputs -> rnn over the source followed by ``<EOS>``. Decoder: starts
    from the encoder's final state with x<1> = 0 and, in training, reads the true
    previous target token (teacher forcing); it predicts the target followed by
    ``<EOS>``. Both recurrent layers share cell, hidden size and depth (their states
    must match). ``reverse_source`` reads the source backwards (Sutskever et al. 2014),
    which puts the first source tokens next to the first target tokens.
    Data: a list of (source text, target text) pairs.
    """

    kind = "Seq2Seq"

    def __init__(self, src_vocab, tgt_vocab, *, cell="lstm", hidden_size=128, num_layers=1,
                 embedding_dim=None, reverse_source=False, dtype=np.float32,
                 backend="cython", seed=None, **cell_options):
        super().__init__()
        for name, v in (("src_vocab", src_vocab), ("tgt_vocab", tgt_vocab)):
            if not isinstance(v, Vocab):
                raise TypeError(f"{name}: expected a seqcore.Vocab, got {type(v).__name__}")
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab
        self.reverse_source = V.check_bool(reverse_source, "reverse_source")
        self._setup(cell, hidden_size, num_layers, embedding_dim, dtype, cell_options)
        s = _seeds(seed, 5)
        self.src_inputs = _token_inputs(len(src_vocab), self.embedding_dim, self.dtype, s[0])
        self.encoder = _recurrent(cell, self.src_inputs.output_size, self.hidden_size,
                                  self.num_layers, False, self.dtype, backend, s[1], cell_options)
        self.tgt_inputs = _token_inputs(len(tgt_vocab), self.embedding_dim, self.dtype, s[2])
        self.decoder = _recurrent(cell, self.tgt_inputs.output_size, self.hidden_size,
                                  self.num_layers, False, self.dtype, backend, s[3], cell_options)
        self.out = Dense(self.hidden_size, len(tgt_vocab), dtype=self.dtype, seed=s[4])
        self.layers = {"src_inputs": self.src_inputs, "encoder": self.encoder,
                       "tgt_inputs": self.tgt_inputs, "decoder": self.decoder, "out": self.out}

    def config(self):
        return {"src_vocab": self.src_vocab.config(), "tgt_vocab": self.tgt_vocab.config(),
                "reverse_source": self.reverse_source, **self._base_config()}

    def _source_ids(self, texts):
        seqs = []
        for t in texts:
            ids = self.src_vocab.encode(t)
            seqs.append((ids[::-1] if self.reverse_source else ids) + [self.src_vocab.eos_id])
        return pad_ids(seqs)

    @_locked
    def encode(self, src, src_lengths=None):
        """src (Tx, B) ids -> the encoder's state after each source's last valid step."""
        xs = self.src_inputs.forward(src)                          # (Tx, B, Ds)
        self._src_shape = xs.shape[:2]
        _, state = self.encoder.forward(xs, None, src_lengths)    # (L, B, H) [, c]
        return state

    @_locked
    def forward(self, src, src_lengths, dec_in, dec_lengths=None):
        """Teacher-forced pass: src (Tx, B), dec_in (Ty, B) = [x<1> = 0, y<1..Ty-1>] -> logits (Ty, B, V)."""
        state = self.encode(src, src_lengths)                      # hand-off: a<Tx> -> decoder a<0>
        xd = self.tgt_inputs.forward(dec_in)                       # (Ty, B, Dt)
        a, _ = self.decoder.forward(xd, state, dec_lengths)       # (Ty, B, H)
        return self.out.forward(a)                                 # (Ty, B, V)

    @_locked
    def loss_and_grads(self, batch, state=None, *, backward=True):
        logits = self.forward(batch["src"], batch["src_lengths"], batch["x"], batch["lengths"])
        loss, dlogits = softmax_cross_entropy(logits, batch["y"], batch["mask"])
        if backward:
            da = self.out.backward(dlogits)                        # (Ty, B, H)
            dxd, dstate0 = self.decoder.backward(da)              # dC/d(decoder's a<0>)
            self.tgt_inputs.backward(dxd)
            Tx, B = self._src_shape
            zero = np.zeros((Tx, B, self.hidden_size), self.dtype)  # encoder outputs unused
            dxs, _ = self.encoder.backward(zero, dstate0)          # the hand-off, backwards
            self.src_inputs.backward(dxs)
        return loss, None

    def _batches(self, data, batch_size, rng, *, train):
        pairs = list(data)
        if not pairs:
            raise ValueError("data: expected at least one (source, target) pair")
        srcs = [p[0] for p in pairs]
        tgts = [self.tgt_vocab.encode(p[1]) for p in pairs]
        sizes = np.array([len(self.src_vocab.tokenize(s)) for s in srcs])
        rng = rng if rng is not None else np.random.default_rng(0)
        for idx in index_batches(sizes, batch_size, rng, shuffle=train, repeat=train):
            src, src_lengths = self._source_ids([srcs[i] for i in idx])
            x, lengths = pad_ids([[NO_TOKEN] + tgts[i] for i in idx])
            y, _ = pad_ids([tgts[i] + [self.tgt_vocab.eos_id] for i in idx], fill=0)
            mask = step_mask(lengths, x.shape[0])
            yield {"src": src, "src_lengths": src_lengths, "x": x, "y": y,
                   "lengths": lengths, "mask": mask, "carry": False, "size": len(idx),
                   "tokens": float(mask.sum())}

    @_inference
    def translate(self, sources, *, greedy=True, temperature=1.0, top_k=None, seed=None,
                  max_len=100, allow_unk=False):
        """Decode each source text: greedy (default) or sampled (``greedy=False``).

        The decoder starts from the encoder's final state with x<1> = 0 and feeds
        each output token back, until ``<EOS>`` or ``max_len`` tokens.
        """
        if isinstance(sources, str):
            raise TypeError("sources: expected a list of texts, got one string")
        _check_sampling(temperature, top_k, max_len)
        rng = np.random.default_rng(seed)
        src, src_lengths = self._source_ids(sources)
        state = self.encode(src, src_lengths)
        n = len(sources)
        tok = np.full(n, NO_TOKEN, np.int64)
        out = [[] for _ in range(n)]
        done = np.zeros(n, bool)
        banned = () if allow_unk else (self.tgt_vocab.unk_id,)
        for _ in range(max_len):
            a, state = self.decoder.forward(self.tgt_inputs.forward(tok[None, :]), state)
            tok = draw(self.out.forward(a)[0], rng, temperature=temperature, top_k=top_k,
                       greedy=greedy, banned=banned)
            for b in np.flatnonzero(~done):
                if tok[b] == self.tgt_vocab.eos_id:
                    done[b] = True
                else:
                    out[b].append(int(tok[b]))
            if done.all():
                break
        return [self.tgt_vocab.decode(ids) for ids in out]
