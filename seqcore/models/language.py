"""The language model (one-to-many): next-token prediction over a Vocab, and sampling."""

import numpy as np

from .. import _validation as V
from ..dense import Dense, softmax_cross_entropy
from ..text import NO_TOKEN, Vocab
from ._base import _Model, _locked, _recurrent, _seeds, _token_inputs
from .batching import index_batches, pad_ids, step_mask
from .decoding import _check_sampling, draw


class LanguageModel(_Model):
    """Next-token model over a Vocab: P(x<t+1> | x<1..t>), trained on the sequences of a corpus.

    x<1> = 0 (no token), a<0> = 0; the target at step t is the input at t+1, and
    ``<EOS>`` is the target after the last token. Layers: inputs (1-hot or
    Embedding) -> rnn (RNN/GRU/LSTM, ``num_layers``) -> out (Dense H -> V).
    """

    kind = "LanguageModel"

    def __init__(self, vocab, *, cell="lstm", hidden_size=128, num_layers=1,
                 embedding_dim=None, dtype=np.float32, backend="cython", seed=None,
                 **cell_options):
        super().__init__()
        if not isinstance(vocab, Vocab):
            raise TypeError(f"vocab: expected a seqcore.Vocab, got {type(vocab).__name__}")
        self.vocab = vocab
        self._setup(cell, hidden_size, num_layers, embedding_dim, dtype, cell_options)
        s_in, s_rnn, s_out = _seeds(seed, 3)
        self.inputs = _token_inputs(len(vocab), self.embedding_dim, self.dtype, s_in)
        self.rnn = _recurrent(cell, self.inputs.output_size, self.hidden_size, self.num_layers,
                              False, self.dtype, backend, s_rnn, cell_options)
        self.out = Dense(self.hidden_size, len(vocab), dtype=self.dtype, seed=s_out)
        self.layers = {"inputs": self.inputs, "rnn": self.rnn, "out": self.out}

    def config(self):
        return {"vocab": self.vocab.config(), **self._base_config()}

    @_locked
    def forward(self, ids, state=None, lengths=None):
        """ids (T, B) (-1 for x = 0) -> logits (T, B, V) and the final state."""
        x = self.inputs.forward(ids)                           # (T, B, D)
        a, state = self.rnn.forward(x, state, lengths)         # (T, B, H)
        return self.out.forward(a), state                      # (T, B, V)

    @_locked
    def loss_and_grads(self, batch, state=None, *, backward=True):
        logits, state = self.forward(batch["x"], state, batch["lengths"])
        loss, dlogits = softmax_cross_entropy(logits, batch["y"], batch["mask"])
        if backward:
            da = self.out.backward(dlogits)                    # (T, B, H)
            dx, _ = self.rnn.backward(da)                      # BPTT; truncated at the chunk start
            self.inputs.backward(dx)
        return loss, state

    def _batches(self, data, batch_size, rng, *, train, seq_len=64):
        """Batches of whole sequences, cut into chunks of ``seq_len`` steps (truncated BPTT).

        A sequence x = [x<1> = 0, tokens...] predicts y = [tokens..., <EOS>]. Chunks of
        one batch after the first have ``carry=True``: the trainer passes the final
        state of the previous chunk on as the initial state (stateful training).
        """
        if isinstance(data, str):
            raise TypeError("data: expected a list of texts (one sequence each), got one string")
        seqs = [self.vocab.encode(text) for text in data]
        if not seqs:
            raise ValueError("data: expected at least one text")
        S = V.check_int(seq_len, "seq_len")
        sizes = np.array([len(s) + 1 for s in seqs])
        rng = rng if rng is not None else np.random.default_rng(0)
        for idx in index_batches(sizes, batch_size, rng, shuffle=train, repeat=train):
            x, lengths = pad_ids([[NO_TOKEN] + seqs[i] for i in idx])
            y, _ = pad_ids([seqs[i] + [self.vocab.eos_id] for i in idx], fill=0)
            T = x.shape[0]
            for k, start in enumerate(range(0, T, S)):
                left = lengths - start                          # steps still to go
                mask = step_mask(left, min(S, T - start))
                yield {"x": x[start:start + S], "y": y[start:start + S],
                       "lengths": np.clip(left, 1, S), "mask": mask,
                       "carry": k > 0, "size": len(idx), "tokens": float(mask.sum())}

    @_locked
    def sample(self, n=1, *, max_len=100, temperature=1.0, top_k=None, greedy=False,
               prime="", seed=None, allow_unk=False):
        """n texts drawn from the model, as the notes sample.

        Start from x<1> = 0 and a<0> = 0 (after reading ``prime``, whose unknown
        symbols become ``<UNK>``), draw x<t+1> from softmax(y_hat<t> / temperature)
        (or its argmax when ``greedy``, among the ``top_k`` most likely when given),
        feed it back, until ``<EOS>`` or ``max_len`` new tokens. The same ``seed`` gives
        the same texts. ``<UNK>`` is never drawn unless ``allow_unk``. Each text
        starts with the prime.
        """
        n = V.check_int(n, "n")
        _check_sampling(temperature, top_k, max_len)
        rng = np.random.default_rng(seed)
        prime_ids = self.vocab.encode(prime)
        ids = np.array([[NO_TOKEN] + prime_ids] * n, np.int64).T     # (1 + P, n)
        logits, state = self.forward(ids)
        logits = logits[-1]                                          # (n, V)
        out = [list(prime_ids) for _ in range(n)]
        done = np.zeros(n, bool)
        banned = () if allow_unk else (self.vocab.unk_id,)
        for _ in range(max_len):
            tok = draw(logits, rng, temperature=temperature, top_k=top_k, greedy=greedy,
                       banned=banned)
            for b in np.flatnonzero(~done):
                if tok[b] == self.vocab.eos_id:
                    done[b] = True
                else:
                    out[b].append(int(tok[b]))
            if done.all():
                break
            logits, state = self.forward(tok[None, :], state)        # feed the draw back
            logits = logits[0]
        return [self.vocab.decode(ids) for ids in out]
