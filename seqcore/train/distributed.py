"""Data-parallel training over MPI (the Horovod pattern on mpi4py): ranks, broadcasts, shards, one gradient all-reduce per step.

Every rank (one process of an MPI launch) holds a whole copy of the model and trains
on its own shard of the data. After each backward pass the ranks average their
gradients, so every rank takes the same optimizer step and the copies stay equal::

    import seqcore
    from seqcore import distributed as dist

    dist.init()                                     # MPI_Init (mpi4py)
    seqcore.set_num_threads(dist.default_threads())  # the cores of one rank, not of the machine
    with dist.abort_on_error():                     # an error on one rank ends every rank
        model = seqcore.LanguageModel(vocab, ...)   # the same model on every rank
        dist.broadcast_parameters(model)            # rank 0's weights everywhere
        dist.broadcast_optimizer_state(optimizer)   # when resuming
        examples = dist.shard(examples)             # a disjoint block per rank
        for step in range(steps):
            model.zero_grad()
            loss, state = model.loss_and_grads(batch, state)
            reduced = dist.allreduce_gradients(model.grads(), batch["size"], loss=loss,
                                               totals=(batch["tokens"],))
            # clip, check for NaN, optimizer.step(model.parameters()): the same on every rank
            if dist.is_root():
                ...                                 # only rank 0 prints and writes files

Launch with ``mpiexec -n 4 python train.py`` (``seqcore train ... --distributed``).
``pip install 'seqcore[mpi]'`` installs mpi4py and an MPI runtime (the ``mpich``
wheel, whose ``mpiexec`` lands in the environment's ``bin``).

Why the weights: rank r's loss is averaged over its B_r sequences, and so is its
gradient g_r. The gradient of the loss averaged over the union of the ranks' batches
is sum_r B_r g_r / sum_r B_r, which is what ``allreduce_gradients(grads, B_r)``
leaves in every rank's arrays: one step on R ranks with batches B_r is one step on
a batch of sum_r B_r. Clip and check for divergence *after* the all-reduce: every
rank then sees the same numbers and takes the same decision.

Without a launcher (or with one rank) everything works as a single process: rank 0
of 1; broadcasts and all-reduces leave the arrays as they are.

Errors: in a launch of several ranks, ``import seqcore`` makes an uncaught exception
on any rank end every rank (``seqcore._launch.excepthook``: the traceback on stderr,
then ``MPI_Abort``, or, on a rank where MPI has not started, SIGTERM, which the
launcher passes on to every rank), as ``python -m mpi4py`` does; so a rank that fails
before its first collective does not leave the others waiting in it. An exception
that the script catches is not uncaught: ``abort_on_error`` ends every rank on an
error inside its block whatever happens to it later.

Importing this module does not import mpi4py. The first call that needs MPI does;
without mpi4py (or without an MPI library) it raises ``MPIUnavailable``, which
names the extra to install.
"""

import contextlib
import os
import sys
import time
from collections import namedtuple

import numpy as np

from .. import _launch
from .optim import grad_arrays

__all__ = ["MPIUnavailable", "init", "is_initialized", "launched", "communicator", "rank", "size",
           "local_size", "is_root", "barrier", "default_threads", "shard", "rank_seed",
           "broadcast_parameters", "broadcast_optimizer_state", "broadcast_object",
           "gather_object", "allreduce_gradients", "allreduce_sum", "allreduce_stats",
           "Allreduced", "abort_on_error"]

INSTALL = "pip install 'seqcore[mpi]'"

# The ranks on this machine: Open MPI; Hydra and Intel MPI; MVAPICH.
_LOCAL_SIZE_VARS = ("OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS",
                    "MV2_COMM_WORLD_LOCAL_SIZE")

_MPI = None            # the mpi4py.MPI module, once init() ran
_comm = None           # the communicator of the ranks (COMM_WORLD unless init got another)
_local_size = None     # ranks sharing this machine, measured by init()
_buffers = {}          # dtype -> the flat all-reduce buffer, reused from step to step
_stats = {"calls": 0, "seconds": 0.0, "bytes": 0}


class MPIUnavailable(ImportError):
    """mpi4py, or the MPI library it loads, is not installed."""


# ------------------------------------------------------------------ the ranks

def launched():
    """Whether an MPI launcher (mpiexec, mpirun, srun) started this process as one of several ranks.

    Reads the launcher's environment variables only: needs neither mpi4py nor
    ``MPI_Init``.

    Returns
    -------
    bool
    """
    return _launch.launched()


def _import_mpi():
    try:
        import mpi4py
    except ImportError as exc:
        raise MPIUnavailable(
            f"seqcore.distributed needs mpi4py and an MPI runtime: {INSTALL} "
            f"(mpi4py could not be imported: {exc})") from None
    if "mpi4py.MPI" not in sys.modules:
        # MPI is called from one thread at a time (the training loop); THREAD_MULTIPLE,
        # mpi4py's default, would make every call take a lock.
        mpi4py.rc.thread_level = "serialized"
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError, OSError) as exc:
        raise MPIUnavailable(
            f"seqcore.distributed: mpi4py found no MPI library: {INSTALL} installs one "
            f"(the mpich wheel), or install your system's MPI ({exc})") from None
    return MPI


def init(comm=None):
    """Start MPI (once; later calls do nothing) and use ``comm`` for every collective.

    Every rank must call it (directly or through its first collective): it also counts
    the ranks that share this machine (``local_size``).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        The ranks' communicator; default ``COMM_WORLD``.

    Raises
    ------
    MPIUnavailable
        mpi4py, or the MPI library it loads, is not installed.
    RuntimeError
        The launcher started several ranks but MPI sees one: the mpiexec run is not
        the one of the MPI library that mpi4py loaded (use the environment's own,
        ``<venv>/bin/mpiexec``).
    """
    global _MPI, _comm, _local_size
    if _comm is not None:
        if comm is not None and comm is not _comm:
            raise ValueError("init: seqcore.distributed already runs on another communicator")
        return
    MPI = _import_mpi()
    world = comm if comm is not None else MPI.COMM_WORLD
    announced = _launch.env_int(_launch.SIZE_VARS)
    if comm is None and announced is not None and announced > 1 and world.Get_size() == 1:
        library = MPI.Get_library_version().splitlines()[0].strip()
        raise RuntimeError(
            f"the launcher started {announced} ranks but MPI sees 1: this mpiexec does not "
            f"belong to the MPI library that mpi4py loaded ({library}); launch with the "
            f"mpiexec installed beside this Python ({os.path.dirname(sys.executable)})")
    shared = world.Split_type(MPI.COMM_TYPE_SHARED)     # collective: every rank is in init()
    _local_size = shared.Get_size()
    shared.Free()
    _MPI, _comm = MPI, world


def is_initialized():
    """Whether ``init()`` ran (directly or through the first call that needs MPI).

    Returns
    -------
    bool
    """
    return _comm is not None


def _world():
    if _comm is None:
        init()
    return _comm


def communicator():
    """The mpi4py communicator of the ranks, for collectives this module does not wrap.

    Starts MPI.

    Returns
    -------
    mpi4py.MPI.Comm
    """
    return _world()


def rank():
    """This process's rank (starts MPI on first use).

    Returns
    -------
    int
        ``0 .. size() - 1``.
    """
    return _world().Get_rank()


def size():
    """The number of ranks (starts MPI on first use).

    Returns
    -------
    int
    """
    return _world().Get_size()


def is_root():
    """Whether this is rank 0: the one rank that prints, evaluates for the log and writes files.

    Returns
    -------
    bool
    """
    return rank() == 0


def barrier():
    """Wait until every rank gets here."""
    _world().Barrier()


def local_size():
    """The ranks on this machine: measured by ``init()``, else the launcher's variables, else 1.

    Returns
    -------
    int
    """
    if _local_size is not None:
        return _local_size
    return max(_launch.env_int(_LOCAL_SIZE_VARS) or 1, 1)


def default_threads():
    """Compiled-core threads for one rank.

    Returns
    -------
    int
        ``SEQCORE_NUM_THREADS`` when set, else the machine's cores shared among its
        ranks, ``max(1, cpu_count // local_size())``, and no more than the cores this
        process may run on (a launcher that binds ranks to cores has already split
        them).
    """
    from .._threads import default_core_threads
    if os.environ.get("SEQCORE_NUM_THREADS"):
        return default_core_threads()
    share = max(1, (os.cpu_count() or 1) // local_size())
    return max(1, min(share, default_core_threads()))


def shard(items, rank=None, size=None):
    """Rank ``rank``'s block of ``items``.

    The blocks are contiguous and in order: block ``r`` of ``size`` holds items
    ``[r*q + min(r, m), (r+1)*q + min(r+1, m))`` with ``q, m = divmod(n, size)``, so
    block lengths differ by at most one, the blocks are disjoint and together hold
    every item once. Contiguous blocks suit a token stream (each rank reads its own
    stretch of the text and carries the state across its chunks); for examples, each
    rank then draws its batches from its block. The same on every run: no randomness.

    Parameters
    ----------
    items : sequence or int
        A list, str or array; an int ``n`` stands for ``range(n)``.
    rank : int, optional
        Default: this process's rank.
    size : int, optional
        Default: the number of ranks (given ``rank`` and ``size``, no MPI is needed).

    Returns
    -------
    sequence
        The block, a slice of ``items`` (a ``range`` for an int).
    """
    if rank is None or size is None:
        comm = _world()
        rank = comm.Get_rank() if rank is None else rank
        size = comm.Get_size() if size is None else size
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size: expected an integer >= 1, got {size!r}")
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < size:
        raise ValueError(f"rank: expected an integer in [0, {size}), got {rank!r}")
    if isinstance(items, (int, np.integer)) and not isinstance(items, bool):
        n, whole = int(items), None
    elif hasattr(items, "__len__") and hasattr(items, "__getitem__"):
        n, whole = len(items), items
    else:
        raise TypeError(f"items: expected a sequence or an int, got {type(items).__name__}")
    if n < size:
        raise ValueError(f"shard: {n} items for {size} ranks: every rank needs at least one")
    q, m = divmod(n, size)
    start, stop = rank * q + min(rank, m), (rank + 1) * q + min(rank + 1, m)
    return range(start, stop) if whole is None else whole[start:stop]


def rank_seed(seed, rank=None):
    """The seed of this rank's batch order and dropout masks.

    Parameters
    ----------
    seed : int or None
        The run's seed.
    rank : int, optional
        Default: this process's rank.

    Returns
    -------
    int or None
        ``seed`` itself on rank 0 (so a one-rank run repeats a plain run), on rank
        ``r > 0`` one derived from ``(seed, r)``; None stays None.
    """
    if seed is None:
        return None
    r = _world().Get_rank() if rank is None else int(rank)
    if r == 0:
        return seed
    return int(np.random.SeedSequence([int(seed), r]).generate_state(1)[0] & 0x7FFFFFFF)


# ------------------------------------------------------------------ broadcasts

def _named_arrays(params):
    """[(name, array)] of a model, of (name, param, grad) triples, or of a {name: array} dict."""
    if hasattr(params, "parameters"):
        params = params.parameters()
    if isinstance(params, dict):
        return list(params.items())
    return [(t[0], t[1]) for t in params]


def _bcast_packed(comm, arrays, root):
    """Broadcast ``arrays`` from root into every rank's arrays, in place: one Bcast per dtype."""
    groups = {}
    for a in arrays:
        groups.setdefault(a.dtype, []).append(a)
    is_root_rank = comm.Get_rank() == root
    for dtype, group in groups.items():            # same order everywhere (same metadata)
        buf = np.empty(sum(a.size for a in group), dtype)
        if is_root_rank:
            np.concatenate([a.ravel() for a in group], out=buf)
        comm.Bcast(buf, root=root)
        if not is_root_rank:
            offset = 0
            for a in group:
                np.copyto(a, buf[offset:offset + a.size].reshape(a.shape))
                offset += a.size


def _agree(comm, ok, what, detail):
    """Raise ValueError on every rank unless ``ok`` holds on every rank (a collective)."""
    if not comm.allreduce(bool(ok), op=_MPI.LAND):
        raise ValueError(f"{what}: the ranks differ from rank 0 "
                         f"({detail if not ok else 'on another rank'}); build the same model "
                         "(same vocabulary, sizes and dtype) on every rank")


def broadcast_parameters(params, root=0):
    """Overwrite every rank's parameters with ``root``'s, in place (call once, before training).

    Parameters
    ----------
    params : model, list or dict
        A model (its ``parameters()``), a list of ``(name, param, grad)``, or a
        ``{name: array}`` dict.
    root : int, default 0
        The rank whose parameters win.

    Raises
    ------
    ValueError
        On every rank, when the ranks' names, shapes or dtypes differ from the root's
        (compared first, so that no rank is left waiting).
    """
    comm = _world()
    if comm.Get_size() == 1:
        return
    named = _named_arrays(params)
    meta = [(name, tuple(a.shape), a.dtype.str) for name, a in named]
    root_meta = comm.bcast(meta if comm.Get_rank() == root else None, root=root)
    first = next((f"rank {comm.Get_rank()} has {m}, rank {root} has {r}"
                  for m, r in zip(meta, root_meta) if m != r),
                 f"rank {comm.Get_rank()} has {len(meta)} arrays, rank {root} {len(root_meta)}")
    _agree(comm, meta == root_meta, "broadcast_parameters", first)
    _bcast_packed(comm, [a for _, a in named], root)


def broadcast_optimizer_state(optimizer, root=0):
    """Give every rank ``root``'s optimizer state (step count, moments), for resuming.

    Uses the optimizer's ``state_dict()`` / ``load_state_dict()`` (``seqcore.optim``).
    The other ranks may hold no state yet (a new optimizer has none before its first
    step): the root sends the names, shapes and dtypes first, then the arrays, and
    every other rank's old state is dropped. Hyperparameters (lr, schedule) are not
    sent: every rank builds its optimizer from the same command line or file.

    Parameters
    ----------
    optimizer : seqcore.optim.SGD, Adam or AdamW
        This rank's optimizer.
    root : int, default 0
        The rank whose state wins.
    """
    comm = _world()
    if comm.Get_size() == 1:
        return
    is_root_rank = comm.Get_rank() == root
    state = ({k: np.array(v, order="C", copy=None) for k, v in optimizer.state_dict().items()}
             if is_root_rank else None)
    meta = comm.bcast(None if state is None else
                      (type(optimizer).__name__,
                       [(k, v.shape, v.dtype.str) for k, v in state.items()]), root=root)
    kind, entries = meta
    _agree(comm, type(optimizer).__name__ == kind, "broadcast_optimizer_state",
           f"rank {comm.Get_rank()} has {type(optimizer).__name__}, rank {root} {kind}")
    arrays = ([state[k] for k, _, _ in entries] if is_root_rank
              else [np.empty(shape, np.dtype(dt)) for _, shape, dt in entries])
    _bcast_packed(comm, arrays, root)
    if not is_root_rank:
        for slot in getattr(optimizer, "_slots", dict)().values():
            slot.clear()                     # moments of parameters the root has none for
        optimizer.load_state_dict({k: a for (k, _, _), a in zip(entries, arrays)})


def broadcast_object(obj, root=0):
    """``root``'s ``obj`` on every rank.

    Parameters
    ----------
    obj : object
        Anything picklable: a vocabulary, a config, a seed.
    root : int, default 0
        The rank that sends.

    Returns
    -------
    object
        ``root``'s ``obj``.
    """
    comm = _world()
    return obj if comm.Get_size() == 1 else comm.bcast(obj, root=root)


def gather_object(obj, root=0):
    """Every rank's ``obj``, on ``root``.

    Parameters
    ----------
    obj : object
        Anything picklable (e.g. each rank's data position and random state, to save
        them in one file).
    root : int, default 0
        The rank that receives.

    Returns
    -------
    list or None
        On ``root`` the objects in rank order; None on the other ranks.
    """
    comm = _world()
    return [obj] if comm.Get_size() == 1 else comm.gather(obj, root=root)


# ------------------------------------------------------------------ all-reduce

Allreduced = namedtuple("Allreduced", "weight loss totals seconds nbytes")
Allreduced.__doc__ = """What allreduce_gradients did: the total weight sum_r w_r, the
weighted mean loss sum_r w_r loss_r / sum_r w_r (None when no loss was given), the
sums over the ranks of ``totals`` (a tuple), the seconds spent in Allreduce and the
bytes each rank contributed."""


def _buffer(dtype, n):
    """The reused flat buffer of ``dtype``, at least ``n`` long (grown when needed): its first n."""
    buf = _buffers.get(dtype)
    if buf is None or buf.size < n:
        buf = _buffers[dtype] = np.empty(n, dtype)
    return buf[:n]


def allreduce_gradients(grads, weight, *, loss=None, totals=()):
    """Replace every rank's gradients with the weighted mean ``Σ_r w_r g_r / Σ_r w_r``, in place.

    The arrays, each scaled by the weight, are packed with the weight, weight * loss
    and the totals into one flat buffer per dtype (reused between calls) and summed by
    one ``Allreduce``: one message per step for a model of one dtype. The sum runs in
    the gradients' own dtype: float32 stays float32 (half the bytes of float64; the
    R - 1 additions round at float32's 6e-8 relative precision, far below the noise of
    a mini-batch gradient). Counts (weights, totals) are exact in float32 up to 2**24.
    With one rank the arrays are left exactly as they are.

    Parameters
    ----------
    grads : list
        The gradient arrays in one fixed order, the same on every rank (a model's
        ``grads()``: a list of arrays or of grads dicts; or ``parameters()``
        triples).
    weight : float
        What this rank's loss is averaged over (its batch size): the result is then
        the gradient of the loss averaged over the union of the ranks' batches. A
        rank with weight 0 (no data this step) contributes nothing.
    loss : float, optional
        This rank's loss, averaged the same way; its weighted mean comes back in the
        result.
    totals : tuple of float, default ()
        A few numbers summed over the ranks in the same message (e.g. the step's
        token count).

    Returns
    -------
    Allreduced
        ``(weight, loss, totals, seconds, nbytes)``; ``allreduce_stats`` adds up the
        seconds and bytes.
    """
    weight = float(weight)
    if not (weight >= 0 and np.isfinite(weight)):
        raise ValueError(f"weight: expected a finite number >= 0, got {weight}")
    totals = [float(t) for t in totals]
    comm = _world()
    arrays = grad_arrays(grads)                  # dicts, arrays or (name, p, g) triples
    if comm.Get_size() == 1:
        if weight == 0:
            raise ValueError("allreduce_gradients: the total weight is 0 (no rank had data)")
        return Allreduced(weight, None if loss is None else float(loss), tuple(totals), 0.0, 0)
    groups = {}
    for g in arrays:
        groups.setdefault(g.dtype, []).append(g)
    if not groups:
        groups[np.dtype(np.float64)] = []
    tail = [weight, 0.0 if loss is None else weight * float(loss), *totals]
    seconds, nbytes = 0.0, 0
    for dtype, group in groups.items():             # one Allreduce per dtype, in order
        n = sum(g.size for g in group)
        buf = _buffer(dtype, n + len(tail))         # [w_r g_r ... | w_r | w_r loss_r | totals]
        offset = 0
        for g in group:
            np.multiply(g, weight, out=buf[offset:offset + g.size].reshape(g.shape))
            offset += g.size
        buf[n:] = tail
        t0 = time.perf_counter()
        comm.Allreduce(_MPI.IN_PLACE, buf, op=_MPI.SUM)
        seconds += time.perf_counter() - t0
        nbytes += buf.nbytes
        total, loss_sum, *summed = buf[n:].tolist()
        if not total > 0:
            raise ValueError("allreduce_gradients: the total weight is 0 (no rank had data)")
        scale = dtype.type(1.0 / total)
        offset = 0
        for g in group:                             # g = (sum_r w_r g_r) / sum_r w_r
            np.multiply(buf[offset:offset + g.size].reshape(g.shape), scale, out=g)
            offset += g.size
    _stats["calls"] += 1
    _stats["seconds"] += seconds
    _stats["bytes"] += nbytes
    return Allreduced(total, None if loss is None else loss_sum / total, tuple(summed),
                      seconds, nbytes)


def allreduce_sum(values):
    """The sum over the ranks of a number or a short sequence of numbers, in float64.

    Parameters
    ----------
    values : float or sequence of float
        E.g. held-out loss totals and token counts.

    Returns
    -------
    float or numpy.ndarray
        The same shape back (a float for a number).
    """
    comm = _world()
    arr = np.array(values, dtype=np.float64)
    if comm.Get_size() > 1:
        comm.Allreduce(_MPI.IN_PLACE, arr, op=_MPI.SUM)
    return float(arr) if arr.ndim == 0 else arr


def allreduce_stats(reset=False):
    """What ``allreduce_gradients`` did so far, on this rank.

    Parameters
    ----------
    reset : bool, default False
        Zero the counts after reading them.

    Returns
    -------
    dict
        ``{"calls", "seconds", "bytes"}``.
    """
    out = dict(_stats)
    if reset:
        _stats.update(calls=0, seconds=0.0, bytes=0)
    return out


# ------------------------------------------------------------------ errors

def _abort(exc):
    comm = _comm
    try:
        _launch.write_report(comm.Get_rank(), comm.Get_size(), exc)
    finally:
        comm.Abort(1)
        os._exit(1)                      # not reached: Abort ends the process


@contextlib.contextmanager
def abort_on_error():
    """Context manager (or decorator, ``@abort_on_error()``): an exception inside, on any rank
    of a run with several ranks, is printed to stderr (one line naming the rank, then the
    traceback with every line prefixed ``[rank r]``) and ends every rank with MPI_Abort,
    exit status 1, instead of leaving the other ranks waiting in a collective forever.

    With one rank, or before MPI started in a process that no launcher started, the
    exception propagates as usual. ``sys.exit(0)`` is not an error.
    """
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, SystemExit) and exc.code in (None, 0):
            raise
        if _comm is None and launched():
            with contextlib.suppress(Exception):
                init()                   # MPI not started yet: start it to reach the others
        if _comm is None or _comm.Get_size() == 1:
            raise
        _abort(exc)
