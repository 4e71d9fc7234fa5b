"""What every model shares: named layers, parameters, the lock, save/load config, evaluate and fit.

Also the builders the models use for their parts (``_recurrent``, ``_token_inputs``)
and ``_seeds``, which splits one seed into independent sub-seeds.
"""

import functools
import itertools
import threading

import numpy as np

from .. import _validation as V
from ..dropout import Switchable
from ..embedding import Embedding, OneHot
from ..layers import GRU, LSTM, RNN
from ..text import Vocab

CELLS = {"rnn": RNN, "gru": GRU, "lstm": LSTM}
CELL_OPTIONS = {"rnn": ("nonlinearity",), "gru": ("reset_after",), "lstm": ("peephole",)}


def _seeds(seed, n):
    """n independent sub-seeds from one seed (None stays random)."""
    if seed is None:
        return [None] * n
    seed = V.check_int(seed, "seed", minimum=0)
    return [int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, size=n)]


def _recurrent(cell, input_size, hidden_size, num_layers, bidirectional, dtype, backend,
               seed, cell_options, dropout=0.0):
    V.check_choice(cell, "cell", tuple(CELLS))
    unknown = set(cell_options) - set(CELL_OPTIONS[cell])
    if unknown:
        raise TypeError(f"cell {cell!r} takes no option {', '.join(sorted(unknown))} "
                        f"(its options: {', '.join(CELL_OPTIONS[cell])})")
    return CELLS[cell](input_size, hidden_size, num_layers=num_layers,
                       bidirectional=bidirectional, dtype=dtype, backend=backend, seed=seed,
                       dropout=dropout if num_layers > 1 else 0.0, **cell_options)


def _token_inputs(vocab_size, embedding_dim, dtype, seed):
    if embedding_dim is None:
        return OneHot(vocab_size, dtype=dtype)
    return Embedding(vocab_size, embedding_dim, dtype=dtype, seed=seed)


def _locked(method):
    """The method with ``self.lock`` held for the whole call (see the module notes)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)
    return locked


def _inference(method):
    """``_locked``, in evaluation mode for the call (no dropout), the mode restored after."""
    @functools.wraps(method)
    def inferring(self, *args, **kwargs):
        with self.lock:
            was_training = self.training
            self.eval()
            try:
                return method(self, *args, **kwargs)
            finally:
                self.train(was_training)
    return inferring


class _Model(Switchable):
    """Shared machinery: named layers, parameters, gradients, config, save, fit.

    Training mode (``train()``, the default) and evaluation mode (``eval()``) switch
    every dropout of the model; ``evaluate``, ``sample``, ``predict`` and
    ``translate`` always run in evaluation mode.
    """

    def __init__(self):
        self.lock = threading.RLock()   # see the module notes
        self.layers = {}          # name -> layer, in forward order
        self.optimizer = None     # set by fit(); saved with the model, so training resumes
        self.run = None           # where fit() is in its run (seqcore.training.Run)
        self.dropout = 0.0
        self.generator = np.random.default_rng()   # dropout masks; seeded by the model

    def _children(self):
        """Everything ``train()``/``eval()`` switches: the layers and the dropouts."""
        return [m for m in (*self.layers.values(), *self._dropouts())
                if isinstance(m, Switchable)]

    def _dropouts(self):
        return ()

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
        """[(name, param, grad)] over every layer: what the optimizers update.

        A parameter shared by two layers (tied weights) is listed once.
        """
        return [(f"{lname}.{k}", layer.params[k], layer.grads[k])
                for lname, layer in self.layers.items() for k in layer.params
                if f"{lname}.{k}" not in self._tied()]

    def _tied(self):
        """Names of parameters that are another layer's (listed and updated there)."""
        return ()

    def grads(self):
        """The gradient arrays of ``parameters()`` (for clipping)."""
        return [g for _, _, g in self.parameters()]

    @_locked
    def zero_grad(self):
        for layer in self.layers.values():
            layer.zero_grad()

    def num_parameters(self):
        return sum(p.size for _, p, _ in self.parameters())

    @_locked
    def save(self, path):
        """Write the model (config, vocab, weights, optimizer state) to one .npz file, atomically."""
        from ..io import save
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

    @_inference
    def evaluate(self, data, *, batch_size=64, **batch_options):
        """Held-out cost: {"loss": per sequence, "token_loss": per predicted token,
        "perplexity", "tokens"}, in evaluation mode (no dropout).

        ``loss`` is the notes' C (summed over a sequence's steps) averaged over the
        sequences (for a stream: over the streams); ``perplexity`` = exp(token_loss).
        ``batch_options`` as in ``fit``.
        """
        total = tokens = sequences = 0.0
        state = None
        for batch in self._batches(data, V.check_int(batch_size, "batch_size"), None,
                                   train=False, **batch_options):
            if not batch["carry"]:
                state = None
                sequences += batch["size"]
            loss, state = self.loss_and_grads(batch, state, backward=False)
            total += loss * batch["size"]
            tokens += batch["tokens"]
        token_loss = total / tokens
        return {"loss": total / sequences, "token_loss": token_loss,
                "perplexity": float(np.exp(min(token_loss, 700.0))), "tokens": tokens}

    def _train_batches(self, data, batch_size, rng, start, **batch_options):
        """The training batches of ``fit``, the first ``start`` of them skipped."""
        batches = self._batches(data, batch_size, rng, train=True, **batch_options)
        return itertools.islice(batches, start, None)

    def _make_optimizer(self, optimizer, lr, schedule):
        from .. import optim
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
        return opt

    @_locked
    def fit(self, data, *, steps=1000, batch_size=None, lr=None, optimizer=None,
            schedule=None, clip_norm=5.0, clip_value=None, valid=None, eval_every=None,
            seed=None, progress=True, callback=None, resume=False, on_best=None,
            should_stop=None, run_info=None, **batch_options):
        """Train on ``data`` for ``steps`` optimizer updates; returns the history dict.

        optimizer: "adam" (default for a new model), "sgd", an optimizer object, or None
        to continue with ``self.optimizer`` (restored by ``seqcore.load``) when there
        is one. lr: the learning rate (default 1e-2 for Adam, 0.5 for SGD). schedule:
        a schedule from ``seqcore.optim``. clip_norm / clip_value: gradient clipping
        by global norm / by value (None for none). valid: held-out data, evaluated
        every ``eval_every`` steps and at the end (a schedule with ``observe``, such
        as ``ReduceOnPlateau``, is told each held-out loss). ``batch_options``:
        ``seq_len`` (truncated BPTT length) and ``stream`` for the language model.
        batch_size: 32 by default. seed: the batches' order (and a new run's
        record); None draws one.

        The model trains in training mode (dropout on) and is left in it; held-out
        evaluation runs in evaluation mode. ``self.run`` records where the run is
        (its seed, batch size and options, the batches done, the state carried into
        the next window, the best held-out loss); it is saved with the model, and
        ``resume=True`` continues exactly there: the same batches, masks and updates
        as a run that never stopped. ``on_best(step, model)`` is called when the
        held-out loss improves; ``should_stop()`` is asked after every update and
        ends training early when true (``history["stopped"]``). ``run_info``: a
        JSON-able dict kept in the record as ``run["info"]`` (the command line keeps
        its corpus and split there). Holds ``self.lock``
        throughout: other threads' calls on this model wait until training ends.
        """
        from ..training import new_run, train
        if resume:
            run = self.run
            if run is None or self.optimizer is None:
                raise ValueError("resume=True: this model holds no training run to continue "
                                 "(save it during or after fit, then load it)")
            given = dict(seed=seed, batch_size=batch_size, **batch_options)
            stored = dict(seed=run["seed"], batch_size=run["batch_size"],
                          **run["batch_options"])
            clash = sorted(k for k, v in given.items() if v is not None and v != stored.get(k))
            if clash:
                saved = ", ".join(f"{k}={stored.get(k)!r}" for k in clash)
                raise ValueError(f"resume=True continues the saved run: give {saved} as "
                                 "saved, or leave them out")
        else:
            if seed is None:
                seed = int(np.random.default_rng().integers(2**31 - 1))
            run = new_run(V.check_int(seed, "seed", minimum=0),
                          V.check_int(batch_size or 32, "batch_size"), batch_options)
            run["info"] = run_info
        self.optimizer = self._make_optimizer(optimizer, lr, schedule)
        self.run = run
        rng = np.random.default_rng(run["seed"])
        batches = self._train_batches(data, run["batch_size"], rng, run["batches"],
                                      **run["batch_options"])
        valid_options = {k: v for k, v in run["batch_options"].items()
                         if k in ("seq_len", "stream")}
        self.train()
        return train(self, batches, steps=steps, optimizer=self.optimizer,
                     clip_norm=clip_norm, clip_value=clip_value, valid=valid,
                     eval_every=eval_every, progress=progress, callback=callback,
                     valid_options=valid_options, on_best=on_best, should_stop=should_stop)
