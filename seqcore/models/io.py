"""Model files: ``save(model, path)`` and ``load(path)``, one .npz with no pickled objects.

Layout of the archive (every entry a plain array; read with ``allow_pickle=False``):

    format            "seqcore-model"               (str)    what this file is
    format_version    3                             (int64)  refuse newer ones
    config            JSON bytes                    (uint8)  model kind, architecture, vocab(s),
                                                             optimizer hyper-parameters, the
                                                             training run's record, the
                                                             dropout generator's state, and
                                                             "quantized" (bool)
    param/<layer>.<name>                                     the weights
    qparam/<layer>.<name>                           (int8)   a quantized model's int8 weights
    qscale/<layer>.<name>                                    and their scales, one per row
    optim/<entry>                                            optimizer state (Adam m, v, step t)
    run/carry/<i>                                            the state carried into the next
                                                             training window (a, and c for LSTM)
    sha256            hex digest of all of the above (str)   refuse truncated or altered files

Writes are atomic: the archive goes to a temporary file in the target's directory,
is flushed to disk, and then renamed over the target (``os.replace``), so a crash
leaves either the old file or the new one, never half of one.
"""

import hashlib
import json
import os
import tempfile

import numpy as np

from ..train import optim
from ..nn.quantized import set_qweight
from .quantized import quantize

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "seqcore-model"
FORMAT_VERSION = 3         # 2: training run, dropout generator, dropout/tie/stream config;
                           # 3: quantized models (qparam/, qscale/)
MODELS = {}                # kind -> the model class load() builds (filled by seqcore.models)


def _digest(arrays):
    """SHA-256 over every entry's name, dtype, shape and bytes, in sorted name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode() + b"\0" + a.dtype.str.encode() + b"\0"
                 + repr(a.shape).encode() + b"\0")
        h.update(a.tobytes())
    return h.hexdigest()


def _config_array(config):
    return np.frombuffer(json.dumps(config, sort_keys=True).encode("utf-8"), np.uint8)


def _put_state(arrays, prefix, state):
    """A recurrent state (None, an array, or a tuple of arrays) into ``arrays`` as
    prefix/0, prefix/1...; returns how many (the JSON side of it)."""
    parts = [] if state is None else list(state) if isinstance(state, tuple) else [state]
    for i, a in enumerate(parts):
        arrays[f"{prefix}/{i}"] = a
    return len(parts)


def _get_state(arrays, prefix, count):
    parts = [arrays[f"{prefix}/{i}"] for i in range(int(count))]
    return None if not parts else parts[0] if len(parts) == 1 else tuple(parts)


def save(model, path):
    """Write ``model`` (and its optimizer state, if any) to ``path``, atomically.

    ``model.save(path)`` calls it. The format is in docs/spec.md §Model files.

    Parameters
    ----------
    model : LanguageModel, SequenceClassifier, SequenceTagger or Seq2Seq
    path : str or os.PathLike

    Returns
    -------
    str or os.PathLike
        ``path``.
    """
    path = os.fspath(path)
    optimizer = getattr(model, "optimizer", None)
    run = getattr(model, "run", None)
    generator = getattr(model, "generator", None)
    arrays = {}
    if run is not None:
        run = dict(run)
        run["carry"] = _put_state(arrays, "run/carry", run.get("carry"))
        if run.get("ranks") is not None:           # a data-parallel run: each rank's own
            run["ranks"] = [{"carry": _put_state(arrays, f"run/rank{r}/carry", x["carry"]),
                             "generator": x["generator"]} for r, x in enumerate(run["ranks"])]
    config = {"kind": model.kind, "model": model.config(),
              "optimizer": None if optimizer is None else optimizer.config(), "run": run,
              "generator": None if generator is None else generator.bit_generator.state,
              "quantized": bool(getattr(model, "quantized", False))}
    arrays.update({"format": np.array(FORMAT),
                   "format_version": np.array(FORMAT_VERSION, np.int64),
                   "config": _config_array(config)})
    for name, p, _ in model.parameters():
        arrays[f"param/{name}"] = p
    for name, q, scale in model.int8_weights():
        arrays[f"qparam/{name}"], arrays[f"qscale/{name}"] = q, scale
    if optimizer is not None:
        for name, a in optimizer.state_dict().items():
            arrays[f"optim/{name}"] = np.asarray(a)
    arrays["sha256"] = np.array(_digest(arrays))

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _reason(exc):
    """The first line of an exception's message, or its type's name if it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read(path):
    """{name: array} of a .npz file, or a one-line ValueError saying why it is not one.

    A damaged archive can fail in many ways inside zipfile, zlib/bz2/lzma and the .npy
    reader (BadZipFile, NotImplementedError for an unsupported compression method or
    zip version, RuntimeError for an "encrypted" entry, zlib.error, struct.error,
    UnicodeDecodeError, EOFError, MemoryError for an absurd array size, ...): every
    one of them is the same refusal here.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory, not a model file")
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an archive")
        with npz:
            arrays = {}
            for name in npz.files:
                value = npz[name]
                if not isinstance(value, np.ndarray):     # a member that is not a .npy
                    raise ValueError(f"entry {name!r} is not an array")
                arrays[name] = value
            return arrays
    except Exception as exc:      # noqa: BLE001 - any failure to read is a bad file
        raise ValueError(f"{path}: not a readable seqcore model file "
                         f"(damaged, truncated or not a .npz archive: {_reason(exc)})") from None


def load(path, *, backend="cython"):
    """Read a model written by ``model.save(path)``.

    Parameters
    ----------
    path : str or os.PathLike
        A model file (docs/spec.md §Model files).
    backend : {"cython", "numpy"}, default "cython"
        The backend of the model's layers.

    Returns
    -------
    LanguageModel, SequenceClassifier, SequenceTagger or Seq2Seq
        The model, with its optimizer restored as ``model.optimizer`` and its
        training run as ``model.run``: ``model.fit(..., resume=True)`` continues it.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    IsADirectoryError
        ``path`` is a directory.
    ValueError
        The file is not a seqcore model, is truncated or altered (checksum), or was
        written by a newer format version; the message says which, in one line.
    """
    path = os.fspath(path)
    arrays = _read(path)
    fmt = arrays.get("format")
    if fmt is None or fmt.shape != () or fmt.dtype.kind != "U" or str(fmt) != FORMAT:
        raise ValueError(f"{path}: not a seqcore model file (no '{FORMAT}' marker)")
    version = arrays.get("format_version")
    if version is None or version.shape != () or version.dtype.kind not in "iu":
        raise ValueError(f"{path}: damaged seqcore model file (no format version)")
    if int(version) > FORMAT_VERSION:
        raise ValueError(f"{path}: written by a newer seqcore (model format {int(version)}; "
                         f"this version reads up to {FORMAT_VERSION}) - upgrade seqcore")
    stored = arrays.pop("sha256", None)
    if stored is None or stored.shape != () or str(stored) != _digest(arrays):
        raise ValueError(f"{path}: damaged seqcore model file (checksum mismatch: the file "
                         "was truncated or modified)")
    try:
        config = json.loads(arrays["config"].tobytes().decode("utf-8"))
        cls = MODELS[config["kind"]]
        model = cls.from_config(config["model"], backend=backend)
        if config.get("quantized", False):
            model = quantize(model)
    except Exception as exc:      # noqa: BLE001 - whatever the config holds, one refusal
        raise ValueError(f"{path}: damaged seqcore model file (bad config: "
                         f"{type(exc).__name__}: {_reason(exc)})") from None

    expected = {name: p for name, p, _ in model.parameters()}
    stored_params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    stored_q = {k[len("qparam/"):]: v for k, v in arrays.items() if k.startswith("qparam/")}
    stored_s = {k[len("qscale/"):]: v for k, v in arrays.items() if k.startswith("qscale/")}
    want_q = {name for name, _, _ in model.int8_weights()}
    if set(stored_params) != set(expected) or set(stored_q) != want_q \
            or set(stored_s) != want_q:
        found, want = set(stored_params) | set(stored_q), set(expected) | want_q
        raise ValueError(f"{path}: damaged seqcore model file (weights do not match the "
                         f"architecture: {sorted(found ^ want)[:3] or 'int8 weights'})")
    for name in sorted(want_q):
        q, scale = stored_q[name], stored_s[name]
        if q.dtype != np.int8:
            raise ValueError(f"{path}: damaged seqcore model file (int8 weight {name}: "
                             f"dtype {q.dtype})")
        layer, key = name.split(".", 1)
        try:
            set_qweight(model.layers.values(), model.layers[layer], key, q, scale)
        except ValueError as exc:
            raise ValueError(f"{path}: damaged seqcore model file ({exc})") from None
    for name, p in expected.items():
        w = stored_params[name]
        if w.shape != p.shape or w.dtype != p.dtype:
            raise ValueError(f"{path}: damaged seqcore model file (weight {name}: shape "
                             f"{w.shape} {w.dtype}, expected {p.shape} {p.dtype})")
        p[...] = w

    if config.get("optimizer") is not None:
        try:
            opt = optim.make_optimizer(config["optimizer"])
            opt.load_state_dict({k[len("optim/"):]: v for k, v in arrays.items()
                                 if k.startswith("optim/")})
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"{path}: damaged seqcore model file (bad optimizer state: "
                             f"{type(exc).__name__}: {_reason(exc)})") from None
        model.optimizer = opt
    try:
        _restore_run(model, config, arrays)
    except Exception as exc:      # noqa: BLE001
        raise ValueError(f"{path}: damaged seqcore model file (bad training run: "
                         f"{type(exc).__name__}: {_reason(exc)})") from None
    return model


def _restore_run(model, config, arrays):
    """The training run's record (with its carried state) and the dropout generator."""
    if config.get("generator") is not None:
        model.generator.bit_generator.state = config["generator"]   # in place: it is shared
    run = config.get("run")
    if run is None:
        return
    run = dict(run)
    run["carry"] = _check_carry(model, _get_state(arrays, "run/carry", run["carry"]))
    if run.get("ranks") is not None:
        run["ranks"] = [{"carry": _check_carry(model, _get_state(arrays, f"run/rank{r}/carry",
                                                                  x["carry"])),
                         "generator": dict(x["generator"])} for r, x in enumerate(run["ranks"])]
    model.run = run


def _check_carry(model, state):
    if state is not None:
        first = state[0] if isinstance(state, tuple) else state
        model.rnn._check_state(state, first.shape[1], "run/carry")
    return state
