"""The four architectures of the course notes, built from the layers, Dense and softmax cross-entropy.

* ``LanguageModel``       one-to-many sampling / next-token prediction (the notes' language model)
* ``SequenceClassifier``  many-to-one: one label per sequence, from the last valid state
* ``SequenceTagger``      many-to-many, Tx = Ty: one label per step
* ``Seq2Seq``             many-to-many, Tx != Ty: encoder, then decoder started from its final state

Legend: T time steps (Tx source, Ty target), B batch, D input features, E embedding
width, H hidden units per direction, dirs directions (1 or 2), V vocabulary size,
C classes.

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
layer also locks itself, ``seqcore.layers``, but a model's forward pass keeps state
for its backward pass in several layers, and a generation loop feeds a state from
call to call). ``fit`` holds the lock for the whole of training: two threads training
one model run one after the other, each as if alone, and other threads' calls wait
until training ends (a ``callback`` running inside ``fit``, in its thread, may call
``sample`` and the rest). A training loop of your own (``zero_grad``,
``loss_and_grads``, an optimizer step) holds ``with model.lock:`` around each step if
other threads use the model. Different models run in parallel.
"""

import functools
import threading

import numpy as np

from . import _validation as V
from .dense import Dense, softmax_cross_entropy
from .embedding import Embedding, OneHot
from .layers import GRU, LSTM, RNN
from .text import NO_TOKEN, Vocab

__all__ = ["LanguageModel", "SequenceClassifier", "SequenceTagger", "Seq2Seq"]

CELLS = {"rnn": RNN, "gru": GRU, "lstm": LSTM}
CELL_OPTIONS = {"rnn": ("nonlinearity",), "gru": ("reset_after",), "lstm": ("peephole",)}


# ------------------------------------------------------------------------- helpers

def _seeds(seed, n):
    """n independent sub-seeds from one seed (None stays random)."""
    if seed is None:
        return [None] * n
    seed = V.check_int(seed, "seed", minimum=0)
    return [int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, size=n)]


def _recurrent(cell, input_size, hidden_size, num_layers, bidirectional, dtype, backend,
               seed, cell_options):
    V.check_choice(cell, "cell", tuple(CELLS))
    unknown = set(cell_options) - set(CELL_OPTIONS[cell])
    if unknown:
        raise TypeError(f"cell {cell!r} takes no option {', '.join(sorted(unknown))} "
                        f"(its options: {', '.join(CELL_OPTIONS[cell])})")
    return CELLS[cell](input_size, hidden_size, num_layers=num_layers,
                       bidirectional=bidirectional, dtype=dtype, backend=backend, seed=seed,
                       **cell_options)


def _token_inputs(vocab_size, embedding_dim, dtype, seed):
    if embedding_dim is None:
        return OneHot(vocab_size, dtype=dtype)
    return Embedding(vocab_size, embedding_dim, dtype=dtype, seed=seed)


def pad_ids(seqs, fill=NO_TOKEN):
    """List of B id lists -> (ids (T, B) int64 padded with ``fill``, lengths (B,))."""
    lengths = np.array([len(s) for s in seqs], np.int64)
    if lengths.size == 0 or lengths.min() < 1:
        raise ValueError("sequences: expected at least one sequence, each of at least one token")
    ids = np.full((int(lengths.max()), len(seqs)), fill, np.int64)
    for b, s in enumerate(seqs):
        ids[: len(s), b] = s
    return ids, lengths


def pad_features(seqs, dtype):
    """List of B arrays (T_b, D) -> (x (T, B, D) zero-padded, lengths (B,))."""
    seqs = [np.asarray(s) for s in seqs]
    if not seqs or any(s.ndim != 2 or len(s) == 0 for s in seqs):
        raise ValueError("sequences: expected a list of non-empty (T_b, D) arrays")
    lengths = np.array([len(s) for s in seqs], np.int64)
    x = np.zeros((int(lengths.max()), len(seqs), seqs[0].shape[1]), dtype)
    for b, s in enumerate(seqs):
        x[: len(s), b] = s
    return x, lengths


def step_mask(lengths, T):
    """(T, B) float 0/1: 1 where step t is inside sequence b."""
    return (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).astype(np.float64)


def index_batches(sizes, batch_size, rng, *, shuffle=True, repeat=True, pool=16):
    """Index arrays of mini-batches over examples of ``sizes`` (their lengths).

    Examples of similar length go together (sorted within pools of ``pool`` batches)
    to waste little on padding; ``shuffle`` mixes examples and batch order each epoch.
    """
    sizes = np.asarray(sizes)
    n = len(sizes)
    while True:
        order = rng.permutation(n) if shuffle else np.arange(n)
        batches = []
        for start in range(0, n, batch_size * pool):
            part = order[start:start + batch_size * pool]
            part = part[np.argsort(sizes[part], kind="stable")]
            batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
        if shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        yield from batches
        if not repeat:
            return


def draw(logits, rng, *, temperature=1.0, top_k=None, greedy=False, banned=()):
    """One token per row of logits (N, V): argmax, or a draw from softmax(logits / temperature).

    ``top_k`` keeps only the k most likely tokens; ``banned`` ids are never drawn.
    Uses its own random source ``rng`` and guards the rounding at the end of the
    cumulative distribution (a draw never lands past the last possible token).
    """
    z = np.array(logits, dtype=np.float64)                     # (N, V)
    if len(banned):
        z[:, list(banned)] = -np.inf
    if greedy or temperature == 0:
        return z.argmax(axis=1)
    z /= temperature
    if top_k is not None and top_k < z.shape[1]:
        kth = np.partition(z, -top_k, axis=1)[:, -top_k][:, None]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max(axis=1, keepdims=True))               # unnormalized softmax
    cdf = np.cumsum(p, axis=1)
    u = rng.random(len(z)) * cdf[:, -1]                        # uniform in [0, total)
    idx = (cdf <= u[:, None]).sum(axis=1)                      # first i with cdf[i] > u
    last_possible = p.shape[1] - 1 - np.argmax(p[:, ::-1] > 0, axis=1)
    return np.minimum(idx, last_possible)


def _check_sampling(temperature, top_k, max_len):
    if not (isinstance(temperature, (int, float)) and temperature >= 0):
        raise ValueError(f"temperature: expected a number >= 0, got {temperature!r}")
    if top_k is not None:
        V.check_int(top_k, "top_k")
    V.check_int(max_len, "max_len")


# ---------------------------------------------------------------------- base class

def _locked(method):
    """The method with ``self.lock`` held for the whole call (see the module notes)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)
    return locked


class _Model:
    """Shared machinery: named layers, parameters, gradients, config, save, fit."""

    def __init__(self):
        self.lock = threading.RLock()   # see the module notes
        self.layers = {}          # name -> layer, in forward order
        self.optimizer = None     # set by fit(); saved with the model, so training resumes

    # A copy or pickle gets a lock of its own (a lock cannot be pickled); its layers
    # get fresh scratch the same way (seqcore.layers).
    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.lock = threading.RLock()

    def parameters(self):
        """[(name, param, grad)] over every layer: what the optimizers update."""
        return [(f"{lname}.{k}", layer.params[k], layer.grads[k])
                for lname, layer in self.layers.items() for k in layer.params]

    def grads(self):
        """The grads dicts of every layer (for clipping)."""
        return [layer.grads for layer in self.layers.values()]

    @_locked
    def zero_grad(self):
        for layer in self.layers.values():
            layer.zero_grad()

    def num_parameters(self):
        return sum(p.size for _, p, _ in self.parameters())

    @_locked
    def save(self, path):
        """Write the model (config, vocab, weights, optimizer state) to one .npz file, atomically."""
        from .io import save
        return save(self, path)

    @classmethod
    def from_config(cls, config, *, backend="cython"):
        config = dict(config)
        for key in [k for k in config if k.endswith("vocab") and config[k] is not None]:
            config[key] = Vocab.from_config(config[key])
        config["dtype"] = np.dtype(config["dtype"])
        cell_options = config.pop("cell_options", {})
        return cls(**config, **cell_options, backend=backend)

    def _base_config(self):
        return {"cell": self.cell, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "embedding_dim": self.embedding_dim,
                "dtype": str(self.dtype), "cell_options": self.cell_options}

    def _setup(self, cell, hidden_size, num_layers, embedding_dim, dtype, cell_options):
        self.cell = cell
        self.hidden_size = V.check_int(hidden_size, "hidden_size")
        self.num_layers = V.check_int(num_layers, "num_layers")
        self.embedding_dim = (None if embedding_dim is None
                              else V.check_int(embedding_dim, "embedding_dim"))
        self.dtype = V.check_dtype(dtype)
        self.cell_options = dict(cell_options)

    # ---------------------------------------------------------------- training

    def loss_and_grads(self, batch, state=None, *, backward=True):
        """Cost of one batch (summed over time, averaged over the batch), gradients added into grads.

        Returns (loss, final state); the state matters only for stateful models.
        """
        raise NotImplementedError

    @_locked
    def evaluate(self, data, *, batch_size=64, **batch_options):
        """Held-out cost: {"loss": per sequence, "token_loss": per predicted token, "perplexity"}.

        ``loss`` is the notes' C (summed over a sequence's steps) averaged over the
        sequences; ``perplexity`` = exp(token_loss). ``batch_options`` as in ``fit``.
        """
        total = tokens = sequences = 0.0
        state = None
        for batch in self._batches(data, batch_size, None, train=False, **batch_options):
            if not batch["carry"]:
                state = None
                sequences += batch["size"]
            loss, state = self.loss_and_grads(batch, state, backward=False)
            total += loss * batch["size"]
            tokens += batch["tokens"]
        token_loss = total / tokens
        return {"loss": total / sequences, "token_loss": token_loss,
                "perplexity": float(np.exp(min(token_loss, 700.0)))}

    @_locked
    def fit(self, data, *, steps=1000, batch_size=32, lr=None, optimizer=None,
            schedule=None, clip_norm=5.0, clip_value=None, valid=None, eval_every=None,
            seed=None, progress=True, callback=None, **batch_options):
        """Train on ``data`` for ``steps`` optimizer updates; returns the history dict.

        optimizer: "adam" (default for a new model), "sgd", an optimizer object, or None
        to continue with ``self.optimizer`` (restored by ``seqcore.load``) when there
        is one. lr: the learning rate (default 1e-2 for Adam, 0.5 for SGD). schedule:
        a schedule from ``seqcore.optim``. clip_norm / clip_value: gradient clipping
        by global norm / by value (None for none). valid: held-out data, evaluated
        every ``eval_every`` steps and at the end. ``batch_options``: ``seq_len`` for
        the language model (truncated BPTT length). Holds ``self.lock`` throughout:
        other threads' calls on this model wait until training ends (module notes).
        """
        from . import optim
        from .training import train
        if optimizer is None and self.optimizer is not None:
            opt = self.optimizer
            if lr is not None:
                opt.lr = float(lr)
        elif optimizer is None or isinstance(optimizer, str):
            name = optimizer or "adam"
            V.check_choice(name, "optimizer", ("adam", "sgd"))
            opt = (optim.Adam(lr or 1e-2) if name == "adam" else optim.SGD(lr or 0.5))
        else:
            opt = optimizer
        if schedule is not None:
            opt.schedule = schedule
        self.optimizer = opt
        rng = np.random.default_rng(seed)
        batches = self._batches(data, V.check_int(batch_size, "batch_size"), rng,
                                train=True, **batch_options)
        return train(self, batches, steps=steps, optimizer=opt, clip_norm=clip_norm,
                     clip_value=clip_value, valid=valid, eval_every=eval_every,
                     progress=progress, callback=callback)


# ---------------------------------------------------------------- language model

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


# ------------------------------------------------------------------- shared input

class _Tagged(_Model):
    """Shared by the classifier and the tagger: inputs are token texts (with a vocab) or features."""

    def __init__(self, num_classes, *, vocab=None, input_size=None, cell="lstm",
                 hidden_size=64, num_layers=1, bidirectional=False, embedding_dim=None,
                 dtype=np.float32, backend="cython", seed=None, **cell_options):
        super().__init__()
        self._setup(cell, hidden_size, num_layers, embedding_dim, dtype, cell_options)
        self.num_classes = V.check_int(num_classes, "num_classes", minimum=2)
        self.bidirectional = V.check_bool(bidirectional, "bidirectional")
        s_in, s_rnn, s_out = _seeds(seed, 3)
        D = self._setup_inputs(vocab, input_size, s_in)
        self.rnn = _recurrent(cell, D, self.hidden_size, self.num_layers, self.bidirectional,
                              self.dtype, backend, s_rnn, cell_options)
        dirs = self.rnn.num_directions
        self.out = Dense(dirs * self.hidden_size, self.num_classes, dtype=self.dtype, seed=s_out)
        self.layers.update(rnn=self.rnn, out=self.out)

    def config(self):
        return {**self._input_config(), **self._base_config()}

    def _setup_inputs(self, vocab, input_size, seed):
        if (vocab is None) == (input_size is None):
            raise TypeError("give exactly one of vocab= (token inputs) or input_size= "
                            "(feature vectors)")
        if vocab is not None and not isinstance(vocab, Vocab):
            raise TypeError(f"vocab: expected a seqcore.Vocab, got {type(vocab).__name__}")
        self.vocab = vocab
        self.input_size = None if input_size is None else V.check_int(input_size, "input_size")
        if vocab is not None:
            self.inputs = _token_inputs(len(vocab), self.embedding_dim, self.dtype, seed)
            self.layers["inputs"] = self.inputs
            return self.inputs.output_size
        self.inputs = None
        return self.input_size

    def _encode(self, x):
        """x (T, B) ids or (T, B, D) features -> (T, B, D) layer input."""
        return self.inputs.forward(x) if self.inputs is not None else x

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
    """Many-to-one: y_hat = softmax(W_y h + b_y), h = the state after each sequence's last valid step.

    With ``bidirectional=True`` h = [a-> at the last valid step, a<- at step 1] (both
    ends). Layers: inputs (when token inputs) -> rnn -> out (Dense dirs*H -> C).
    Data for ``fit``/``evaluate``: (xs, labels), xs a list of texts (with a vocab) or
    of (T_b, D) arrays, labels a list of ints in [0, C).
    """

    kind = "SequenceClassifier"

    @_locked
    def forward(self, x, lengths=None):
        """x (T, B) ids or (T, B, D) -> logits (B, C)."""
        xin = self._encode(x)                                  # (T, B, D)
        T, B = xin.shape[:2]
        lengths = V.check_lengths(lengths, T, B)
        lens = lengths if lengths is not None else np.full(B, T, np.int64)
        a, _ = self.rnn.forward(xin, None, lengths)            # (T, B, dirs*H)
        h = self._gather_last(a, lens)                         # (B, dirs*H)
        self._last = (a.shape, lens)
        return self.out.forward(h)                             # (B, C)

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
        loss, dlogits = softmax_cross_entropy(logits[None], batch["y"][None])
        if backward:
            dh = self.out.backward(dlogits[0])                 # (B, dirs*H)
            dx, _ = self.rnn.backward(self._scatter_last(dh))  # BPTT from the last valid state
            if self.inputs is not None:
                self.inputs.backward(dx)
        return loss, None

    def _batches(self, data, batch_size, rng, *, train):
        xs, labels = data
        labels = np.asarray(labels, np.int64)
        if len(xs) != len(labels) or len(xs) == 0:
            raise ValueError(f"data: expected as many labels as sequences (and at least one), "
                             f"got {len(xs)} sequences and {len(labels)} labels")
        sizes = np.array([len(self.vocab.tokenize(t)) if self.vocab else len(t) for t in xs])
        rng = rng if rng is not None else np.random.default_rng(0)
        for idx in index_batches(sizes, batch_size, rng, shuffle=train, repeat=train):
            x, lengths = self._pad([xs[i] for i in idx])
            yield {"x": x, "y": labels[idx], "lengths": lengths, "carry": False,
                   "size": len(idx), "tokens": float(len(idx))}

    @_locked
    def predict_proba(self, xs):
        """Class probabilities (B, C) for a list of texts (or of (T_b, D) arrays)."""
        x, lengths = self._pad(xs)
        z = self.forward(x, lengths).astype(np.float64)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)

    @_locked
    def predict(self, xs):
        """The most likely class of each sequence, (B,) ints."""
        return self.predict_proba(xs).argmax(axis=1)


class SequenceTagger(_Tagged):
    """Many-to-many with Tx = Ty: y_hat<t> = softmax(W_y a<t> + b_y) at every step.

    Layers: inputs (when token inputs) -> rnn (optionally bidirectional) -> out (Dense
    dirs*H -> C). Data: (xs, tags), xs a list of texts (with a vocab) or of (T_b, D)
    arrays, tags a list of int sequences of the same lengths.
    """

    kind = "SequenceTagger"

    @_locked
    def forward(self, x, lengths=None):
        """x (T, B) ids or (T, B, D) -> logits (T, B, C) (padding steps: meaningless)."""
        a, _ = self.rnn.forward(self._encode(x), None, lengths)   # (T, B, dirs*H)
        return self.out.forward(a)                                 # (T, B, C)

    @_locked
    def loss_and_grads(self, batch, state=None, *, backward=True):
        logits = self.forward(batch["x"], batch["lengths"])
        loss, dlogits = softmax_cross_entropy(logits, batch["y"], batch["mask"])
        if backward:
            dx, _ = self.rnn.backward(self.out.backward(dlogits))
            if self.inputs is not None:
                self.inputs.backward(dx)
        return loss, None

    def _batches(self, data, batch_size, rng, *, train):
        xs, tags = data
        if len(xs) != len(tags) or len(xs) == 0:
            raise ValueError(f"data: expected one tag sequence per sequence (and at least one), "
                             f"got {len(xs)} sequences and {len(tags)} tag sequences")
        sizes = np.array([len(t) for t in tags])
        rng = rng if rng is not None else np.random.default_rng(0)
        for idx in index_batches(sizes, batch_size, rng, shuffle=train, repeat=train):
            x, lengths = self._pad([xs[i] for i in idx])
            y, ylen = pad_ids([list(tags[i]) for i in idx], fill=0)
            if not np.array_equal(lengths, ylen):
                raise ValueError("data: every tag sequence must have one tag per input step")
            mask = step_mask(lengths, x.shape[0])
            yield {"x": x, "y": y, "lengths": lengths, "mask": mask, "carry": False,
                   "size": len(idx), "tokens": float(mask.sum())}

    @_locked
    def predict(self, xs):
        """The most likely tag at every step: a list of B int arrays, one per sequence."""
        x, lengths = self._pad(xs)
        best = self.forward(x, lengths).argmax(axis=2)           # (T, B)
        return [best[:n, b] for b, n in enumerate(lengths)]


# ------------------------------------------------------------------ encoder-decoder

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

    @_locked
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


MODELS = {cls.kind: cls for cls in (LanguageModel, SequenceClassifier, SequenceTagger, Seq2Seq)}
