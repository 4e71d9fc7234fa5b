"""What every model shares: named layers, parameters, the lock, save/load config, evaluate and fit.

Also the builders the models use for their parts (``recurrent_stack``, ``_token_inputs``)
and ``split_seeds``, which splits one seed into independent sub-seeds.
"""

import functools
import itertools
import os
import threading

import numpy as np

from .. import _launch
from .. import _validation as V
from ..nn.dropout import Dropout, Switchable, check_dropout
from ..nn.embedding import Embedding, OneHot
from ..nn.recurrent import GRU, LSTM, RNN
from ..data.text import Vocab
from ..data.batching import check_batching
from .io import save as save_model

# In an MPI launch of several ranks, an uncaught exception on any rank ends every rank
# (seqcore._launch): a rank that fails before ``fit(..., distributed=True)`` would
# otherwise leave the others waiting in its first collective. Every ``import seqcore``
# comes through here.
_launch.install_excepthook()

CELLS = {"rnn": RNN, "gru": GRU, "lstm": LSTM}
CELL_OPTIONS = {"rnn": ("nonlinearity",), "gru": ("reset_after",), "lstm": ("peephole",)}


def split_seeds(seed, n):
    """n independent sub-seeds from one seed (None stays random)."""
    if seed is None:
        return [None] * n
    seed = V.check_int(seed, "seed", minimum=0)
    return [int(s) for s in np.random.default_rng(seed).integers(0, 2**31 - 1, size=n)]


def recurrent_stack(cell, input_size, hidden_size, num_layers, bidirectional, dtype, backend,
               seed, cell_options, dropout=0.0):
    V.check_choice(cell, "cell", tuple(CELLS))
    unknown = set(cell_options) - set(CELL_OPTIONS[cell])
    if unknown:
        raise TypeError(f"cell {cell!r} takes no option {', '.join(sorted(unknown))} "
                        f"(its options: {', '.join(CELL_OPTIONS[cell])})")
    return CELLS[cell](input_size, hidden_size, num_layers=num_layers,
                       bidirectional=bidirectional, dtype=dtype, backend=backend, seed=seed,
                       dropout=dropout if num_layers > 1 else 0.0, **cell_options)


def _token_inputs(vocab_size, embedding_dim, dtype, seed, backend):
    if embedding_dim is None:
        return OneHot(vocab_size, dtype=dtype)
    return Embedding(vocab_size, embedding_dim, dtype=dtype, backend=backend, seed=seed)


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


class Model(Switchable):
    """Shared machinery: named layers, parameters, gradients, config, save, fit.

    Training mode (``train()``, the default) and evaluation mode (``eval()``) switch
    every dropout of the model; ``evaluate``, ``sample``, ``predict`` and
    ``translate`` always run in evaluation mode.
    """

    quantized = False   # int8 weights (seqcore.quantize): inference only

    def __init__(self):
        self.lock = threading.RLock()   # see the module notes
        self.layers = {}          # name -> layer, in forward order
        self.optimizer = None     # set by fit(); saved with the model, so training resumes
        self.run = None           # where fit() is in its run (seqcore.train.loop.new_run)
        self._dist = None         # seqcore.distributed during a data-parallel fit
        self.dropout = 0.0
        self.generator = np.random.default_rng()   # dropout masks; seeded by the model

    def _children(self):
        """Everything ``train()``/``eval()`` switches: the layers and the dropouts."""
        return [m for m in (*self.layers.values(), *self._dropouts())
                if isinstance(m, Switchable)]

    def _dropouts(self):
        return tuple(d for d in (getattr(self, "drop_in", None), getattr(self, "drop_out", None))
                     if d is not None)

    def _setup_dropout(self, dropout, seed, *recurrent):
        """``dropout`` = p: the model's seeded generator, its input and output dropouts
        (``drop_in``, ``drop_out``), and the same generator for the recurrent layers'
        own dropout between stacked layers (made with ``dropout`` = p)."""
        self.dropout = check_dropout(dropout)
        self.generator = np.random.default_rng(None if seed is None else [seed, 2])
        self.drop_in = Dropout(self.dropout, dtype=self.dtype, generator=self.generator)
        self.drop_out = Dropout(self.dropout, dtype=self.dtype, generator=self.generator)
        for layer in recurrent:
            layer.generator = self.generator

    # A copy or pickle gets a lock of its own (a lock cannot be pickled); its layers
    # get fresh scratch the same way (seqcore.nn.recurrent).
    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("lock", None)
        state.pop("_dist", None)      # a copy is not part of the MPI run
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.lock = threading.RLock()
        self._dist = None

    def parameters(self):
        """Every parameter of the model, with its gradient: what the optimizers update.

        A parameter shared by two layers (tied weights) is listed once.

        Returns
        -------
        list of (str, numpy.ndarray, numpy.ndarray)
            ``(name, param, grad)``, named ``"<layer>.<key>"`` (``"rnn.W_l0"``). In a
            quantized model (``seqcore.quantize``) grad is None, and the int8 weights
            are not listed (``int8_weights``).
        """
        return [(f"{lname}.{k}", layer.params[k], layer.grads.get(k))
                for lname, layer in self.layers.items() for k in layer.params
                if f"{lname}.{k}" not in self._tied()]

    def _tied(self):
        """Names of parameters that are another layer's (listed and updated there)."""
        return ()

    def int8_weights(self):
        """The int8 weights of a quantized model (``seqcore.quantize``), tied ones once.

        Returns
        -------
        list of (str, numpy.ndarray, numpy.ndarray)
            ``(name, q, scale)``: int8 ``q (N, K)`` and the rows' scales ``(N,)``,
            named as in ``parameters``; empty for a float model.
        """
        return [(f"{lname}.{k}", q, scale)
                for lname, layer in self.layers.items()
                for k, (q, scale) in (getattr(layer, "qweights", None) or {}).items()
                if f"{lname}.{k}" not in self._tied()]

    def grads(self):
        """The gradient arrays of ``parameters()``, in the same order (for clipping).

        Returns
        -------
        list of numpy.ndarray
        """
        return [g for _, _, g in self.parameters()]

    @_locked
    def zero_grad(self):
        for layer in self.layers.values():
            layer.zero_grad()

    def num_parameters(self):
        return (sum(p.size for _, p, _ in self.parameters())
                + sum(q.size for _, q, _ in self.int8_weights()))

    @_locked
    def save(self, path):
        """Write the model (config, vocab, weights, optimizer state, training run) to one .npz file.

        The write is atomic (a temporary file renamed over ``path``); the format is in
        docs/spec.md §Model files. During and after a data-parallel ``fit`` every rank
        calls it: rank 0 writes, with every rank's carried state and dropout stream.

        Parameters
        ----------
        path : str or os.PathLike
            Where to write; ``seqcore.load(path)`` reads it back.
        """
        dist = getattr(self, "_dist", None)
        if dist is None or dist.size() == 1:
            return save_model(self, path)
        ranks = dist.gather_object({"carry": self.run["carry"],
                                    "generator": self.generator.bit_generator.state})
        written, error = os.fspath(path), None
        if dist.is_root():
            self.run["ranks"] = ranks
            try:
                written = save_model(self, path)
            except Exception as exc:  # noqa: BLE001 - raised below, on every rank
                error = exc
            finally:
                del self.run["ranks"]
        # Every rank returns once the file is written, or raises if rank 0 could not.
        if dist.allreduce_sum(0.0 if error is None else 1.0) > 0:
            if error is not None:
                raise error
            raise OSError(f"{written}: rank 0 could not write the model file")
        return written

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

    def _check_data(self, data, batch_options, name="data"):
        """``data`` of ``fit``/``evaluate`` checked before any batch is made: TypeError
        (or ValueError) naming ``name`` and the index of a bad item. Returns it."""
        return data

    def loss_and_grads(self, batch, state=None, *, backward=True):
        """Cost of one batch (summed over time, averaged over the batch), gradients added into grads.

        Returns (loss, final state); the state matters only for stateful models.
        """
        raise NotImplementedError

    @_inference
    def evaluate(self, data, *, batch_size=64, **batch_options):
        """The held-out cost of ``data``, in evaluation mode (no dropout).

        Parameters
        ----------
        data
            In the form ``fit`` takes.
        batch_size : int, default 64
            Examples per batch (the result does not depend on it).
        **batch_options
            As in ``fit``.

        Returns
        -------
        dict
            ``"loss"``: the notes' cost C (summed over a sequence's steps) averaged over
            the sequences (for a stream: over the streams); ``"token_loss"``: per
            predicted token (nats); ``"perplexity"``: ``exp(token_loss)``; ``"tokens"``:
            the tokens predicted; ``"total"``: the summed loss.
        """
        data = self._check_data(data, batch_options)
        total = tokens = sequences = 0.0
        state = None
        for batch in self.batches(data, V.check_int(batch_size, "batch_size"), None,
                                   train=False, **batch_options):
            if not batch["carry"]:
                state = None
                sequences += batch["size"]
            loss, state = self.loss_and_grads(batch, state, backward=False)
            total += loss * batch["size"]
            tokens += batch["tokens"]
        token_loss = total / tokens
        return {"loss": total / sequences, "token_loss": token_loss,
                "perplexity": float(np.exp(min(token_loss, 700.0))), "tokens": tokens,
                "total": total}

    def _train_batches(self, data, batch_size, rng, start, **batch_options):
        """The training batches of ``fit``, the first ``start`` of them skipped."""
        batches = self.batches(data, batch_size, rng, train=True, **batch_options)
        return itertools.islice(batches, start, None)

    def _make_optimizer(self, optimizer, lr, schedule):
        from ..train import optim
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
            should_stop=None, run_info=None, distributed=False, **batch_options):
        """Train on ``data`` for ``steps`` optimizer updates.

        The model trains in training mode (dropout on) and is left in it; held-out
        evaluation runs in evaluation mode. Holds ``self.lock`` throughout: other
        threads' calls on this model wait until training ends.

        Parameters
        ----------
        data
            The training data: for ``LanguageModel`` a list of texts (or, with
            ``stream=True``, one string); for ``SequenceClassifier`` and
            ``SequenceTagger`` a pair ``(xs, labels)``; for ``Seq2Seq`` a list of
            ``(source, target)`` pairs.
        steps : int, default 1000
            Optimizer updates in the whole run (with ``resume=True``, counted from the
            run's start).
        batch_size : int, optional
            Examples (or streams) per batch; 32 by default. Per rank when distributed.
        lr : float, optional
            The learning rate; 1e-2 for Adam, 0.5 for SGD by default.
        optimizer : {"adam", "sgd"} or optimizer object, optional
            ``"adam"`` (the default for a new model), ``"sgd"``, an object of
            ``seqcore.optim``, or None to continue with ``self.optimizer`` (restored by
            ``seqcore.load``) when there is one.
        schedule : schedule object, optional
            A learning-rate schedule of ``seqcore.optim`` (``Cosine``,
            ``ReduceOnPlateau``, ...).
        clip_norm : float or None, default 5.0
            Clip the gradients by their global norm; None for no clipping.
        clip_value : float, optional
            Clip each gradient element to ``[-clip_value, clip_value]``.
        valid : optional
            Held-out data, in the form of ``data``, measured every ``eval_every`` steps
            and at the end; a schedule with ``observe`` (``ReduceOnPlateau``) is told each
            held-out loss.
        eval_every : int, optional
            Steps between held-out measurements.
        seed : int, optional
            The batches' order (and a new run's record); None draws one.
        progress : bool, default True
            Show a progress bar.
        callback : callable, optional
            ``callback(step, model, history)``, called after every update (on rank 0
            only when distributed).
        resume : bool, default False
            Continue the run recorded in ``self.run`` (saved with the model) exactly
            where it stopped: the same batches, dropout masks and updates as a run that
            never stopped. A call's last step is measured on ``valid`` even off the
            ``eval_every`` grid, and a plateau schedule acts on it: for a run split into
            calls to equal one run, end them on the grid or through ``should_stop``,
            which skips that measurement (as Ctrl-C does).
        on_best : callable, optional
            ``on_best(step, model)``, called when the held-out loss improves.
        should_stop : callable, optional
            ``should_stop()``, asked after every update; True ends training early
            (``history["stopped"]``).
        run_info : dict, optional
            JSON-able, kept in the run's record as ``run["info"]``.
        distributed : bool, default False
            Train data-parallel over MPI (``seqcore.distributed``; run under
            ``mpiexec -n N``): every rank calls ``fit`` with the same data and
            arguments and trains on its own block of it; rank 0's weights (and optimizer
            state) are broadcast first, and the gradients are summed over the ranks every
            step, weighted by each rank's batch, so one step equals one step on the union
            of the ranks' batches. Only rank 0 shows progress and runs ``callback``;
            held-out losses are summed over the ranks' blocks of ``valid``; ``save`` is
            then collective. The core runs at most ``distributed.default_threads()``
            threads per rank during the call.
        **batch_options
            ``batching`` (every model; not for a stream): ``"sorted"`` (the default)
            sorts each epoch's shuffled examples by length within pools of 16 batches
            and shuffles the batches, so a batch holds examples of similar length;
            ``"random"`` draws plain random batches (PyTorch's
            ``DataLoader(shuffle=True)``). On lines of mixed lengths ``"sorted"`` gives
            the lower held-out loss per second of training (docs/performance.md,
            "Batching lines"). For the language model also ``seq_len`` (the truncated
            BPTT length) and ``stream`` (``data`` is one running text).

        Returns
        -------
        dict
            The history: ``"step"`` and ``"loss"`` (per token) of every update,
            ``"valid_step"``, ``"valid_loss"``, ``"valid_perplexity"`` of each held-out
            measurement, ``"stopped"``, ``"seconds"``, ``"tokens_per_second"``, and
            ``"allreduce_seconds"``/``"allreduce_bytes"`` when distributed.

        Raises
        ------
        TypeError
            Data of the wrong form (a bad item names its argument and index), an
            argument of the wrong type, or a model with int8 weights
            (``seqcore.quantize``).
        ValueError
            A value out of range.
        seqcore.TrainingDiverged
            The loss or the gradients became NaN or infinite; the model was not updated
            with that step.
        """
        V.check_trainable(self, "fit")
        resume = V.check_bool(resume, "resume")
        if batch_options.get("batching") is not None:
            check_batching(batch_options["batching"])
        data = self._check_data(data, batch_options)
        if valid is not None:
            valid = self._check_data(valid, batch_options, "valid")
        if not V.check_bool(distributed, "distributed"):
            return self._fit(data, steps, batch_size, lr, optimizer, schedule, clip_norm,
                             clip_value, valid, eval_every, seed, progress, callback, resume,
                             on_best, should_stop, run_info, None, batch_options)
        from ..train import distributed as dist
        from .._threads import get_num_threads, limit_threads
        dist.init()
        threads = min(get_num_threads(), dist.default_threads())   # the cores of one rank
        with dist.abort_on_error(), limit_threads(threads):
            return self._fit(data, steps, batch_size, lr, optimizer, schedule, clip_norm,
                             clip_value, valid, eval_every, seed, progress, callback, resume,
                             on_best, should_stop, run_info, dist, batch_options)

    def _fit(self, data, steps, batch_size, lr, optimizer, schedule, clip_norm, clip_value,
             valid, eval_every, seed, progress, callback, resume, on_best, should_stop,
             run_info, dist, batch_options):
        from ..train.loop import new_run, train
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
            if dist is not None:
                seed = dist.broadcast_object(seed)             # rank 0's, on every rank
            run = new_run(V.check_int(seed, "seed", minimum=0),
                          V.check_int(32 if batch_size is None else batch_size,
                                      "batch_size"), batch_options)
            run["info"] = run_info
        self.optimizer = self._make_optimizer(optimizer, lr, schedule)
        self.run = run
        batch_seed, valid_batch = run["seed"], 64
        if dist is not None:
            self._join(dist, resume)
            batch_seed = dist.rank_seed(run["seed"])
            valid_batch = -(-valid_batch // dist.size())      # 64 over all the ranks
            data = self._shard(data, dist, run["batch_size"])
            valid = None if valid is None else self._shard(valid, dist, valid_batch)
        rng = np.random.default_rng(batch_seed)
        batches = self._train_batches(data, run["batch_size"], rng, run["batches"],
                                      **run["batch_options"])
        valid_options = {k: v for k, v in run["batch_options"].items()
                         if k in ("seq_len", "stream")}
        self.train()
        root = dist is None or dist.is_root()
        self._dist = dist            # save() is collective from now on (until a plain fit)
        return train(self, batches, steps=steps, optimizer=self.optimizer,
                     clip_norm=clip_norm, clip_value=clip_value, valid=valid,
                     eval_every=eval_every, progress=progress and root,
                     callback=callback if root else None, valid_options=valid_options,
                     on_best=on_best, should_stop=should_stop, dist=dist,
                     valid_batch_size=valid_batch)

    # ------------------------------------------------------------ data-parallel

    def _join(self, dist, resume):
        """Make this rank's copy rank 0's: weights, optimizer state; on resume this rank's
        own carried state and dropout stream (saved by a run on as many ranks), on a new
        run a dropout stream of its own."""
        dist.broadcast_parameters(self)
        dist.broadcast_optimizer_state(self.optimizer)
        r, ranks = dist.rank(), self.run.pop("ranks", None)
        if resume and dist.size() > 1:
            if ranks is None or len(ranks) != dist.size():
                saved = 1 if ranks is None else len(ranks)
                raise ValueError(f"resume: the run was saved by {saved} rank(s); resume it on "
                                 f"as many (this launch has {dist.size()})")
            self.run["carry"] = ranks[r]["carry"]
            self.generator.bit_generator.state = ranks[r]["generator"]
        elif not resume and r > 0:
            self.generator.bit_generator.state = \
                np.random.default_rng([self.run["seed"], 3, r]).bit_generator.state

    def _shard(self, data, dist, batch_size):
        """This rank's contiguous block of ``data`` (a list of examples; a pair of lists)."""
        if isinstance(data, tuple) and len(data) == 2:
            return dist.shard(list(data[0])), dist.shard(list(data[1]))
        return dist.shard(list(data))
