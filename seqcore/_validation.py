"""Argument checks at the public boundary: every array that reaches a kernel passes here.

Each check names the argument and the expected shape in its message, and returns a
C-contiguous array of the right dtype, so kernels (which run without the GIL and
trust their inputs) never see anything unchecked.
"""

import math
import numbers
import sys

import numpy as np

from . import _checks

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except Exception as exc:    # noqa: BLE001 - NumPy's parser raises TypeError, ValueError,
        # even SyntaxError for some strings: all of them are the same bad argument
        raise TypeError(f"dtype: expected numpy.float32 or numpy.float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype: expected numpy.float32 or numpy.float64, got {dt}")
    return dt


def check_int(value, name, minimum=1):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return int(value)


def check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


BACKENDS = ("cython", "numpy")   # the compiled core, or its NumPy twin (seqcore.reference)


def check_backend(backend):
    return check_choice(backend, "backend", BACKENDS)


def check_trainable(obj, what):
    """Refuse ``what`` (``"backward"``, ``"fit"``) on a layer or model whose weights are
    int8 (``seqcore.quantize``): rounding has no gradient to train through."""
    if getattr(obj, "quantized", False):
        raise TypeError(f"{what}: this {type(obj).__name__} is quantized for inference "
                        "(seqcore.quantize) and cannot be trained; train the float model, "
                        "then quantize it")


def check_float_weights(obj, what):
    """Refuse ``what`` (an export) on a layer or model whose weights are int8
    (``seqcore.quantize``), which keeps no float weights to write."""
    if getattr(obj, "quantized", False):
        raise TypeError(f"{what}: this {type(obj).__name__} has int8 weights "
                        "(seqcore.quantize) and no float ones to export; export the float "
                        "model it was quantized from")


def check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _shape_str(shape):
    return "(" + ", ".join(str(s) for s in shape) + ")"


def all_finite(x):
    """True when the array x has no NaN or infinity."""
    if x.dtype in FLOAT_DTYPES and (x.flags.c_contiguous or x.flags.f_contiguous):
        return _checks.all_finite(x)    # compiled: ~0.2 us, where NumPy needs ~1 us
    # otherwise one sum, and an exact look only if it overflows
    if math.isfinite(np.add.reduce(x, axis=None)):
        return True                     # NaN and inf always reach the sum
    return bool(np.isfinite(x).all())   # the sum may overflow with finite entries


def check_array(x, name, shape, dtype, *, finite=True):
    """Return ``x`` as a C-contiguous array of ``dtype`` with exactly ``shape``.

    ``shape`` holds ints, or strings naming a free dimension (for the message).
    Returns the array (converted only in layout, never in dtype).
    """
    if not isinstance(x, np.ndarray):
        if isinstance(x, (list, tuple)) or np.isscalar(x):
            try:
                x = np.asarray(x)
            except ValueError as exc:     # ragged nesting
                raise ValueError(f"{name}: expected an array of shape {_shape_str(shape)}, "
                                 f"got nested sequences of uneven lengths") from exc
        else:
            raise TypeError(f"{name}: expected a numpy array of shape {_shape_str(shape)}, "
                            f"got {type(x).__name__}")
    if x.dtype != dtype:
        hint = f" (convert with .astype(numpy.{np.dtype(dtype)}))" if x.dtype.kind in "fiu" else ""
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype)}, got {x.dtype}{hint}")
    if x.ndim != len(shape):
        raise ValueError(f"{name}: expected {len(shape)} dimensions {_shape_str(shape)}, "
                         f"got shape {x.shape}")
    for got, want in zip(x.shape, shape):
        if got != want and want.__class__ is int:
            raise ValueError(f"{name}: expected shape {_shape_str(shape)}, got {x.shape}")
        if got == 0:
            raise ValueError(f"{name}: expected shape {_shape_str(shape)} with no empty "
                             f"dimension, got {x.shape}")
    if not x.flags.aligned:      # the kernels read aligned values: copy such an array
        x = np.require(x, requirements=["C", "A"])
    if finite and not all_finite(x):
        raise ValueError(f"{name}: contains NaN or infinity")
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def check_lengths(lengths, T, B):
    """``lengths (B,)``: integers with 1 <= lengths[b] <= T; returned as int64."""
    if lengths is None:
        return None
    arr = np.asarray(lengths)
    if arr.ndim != 1 or arr.shape[0] != B:
        raise ValueError(f"lengths: expected shape ({B},), got {arr.shape}")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            pass  # whole numbers stored as floats are accepted
        else:
            raise TypeError(f"lengths: expected integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 1 or arr.max() > T):
        raise ValueError(f"lengths: expected values in [1, {T}] (T = {T}), "
                         f"got min {arr.min()} and max {arr.max()}")
    return np.ascontiguousarray(arr, dtype=np.int64)


# ------------------------------------------------------------------ model data

def _item(value):
    """A short description of a bad item for a message: its type and a clipped repr."""
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def check_texts(texts, name):
    """``texts`` as a list of str. TypeError naming ``name``: for one string (not a list
    of texts), for something that is not a sequence, and for the first item that is not a
    str, with its index."""
    if isinstance(texts, str):
        raise TypeError(f"{name}: expected a list of texts, got one string")
    if not hasattr(texts, "__iter__"):
        raise TypeError(f"{name}: expected a list of texts (str), got {type(texts).__name__}")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}: expected a list of texts (str), but item {i} is "
                            f"{_item(text)}")
    return texts


def check_text_pairs(pairs, name):
    """``pairs`` as a list of (source, target) tuples of two str; TypeError naming ``name``
    and the index of the first item that is not one."""
    if isinstance(pairs, str) or not hasattr(pairs, "__iter__"):
        raise TypeError(f"{name}: expected a list of (source, target) pairs of texts, got "
                        f"{type(pairs).__name__}")
    pairs = list(pairs)
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2
                and isinstance(pair[0], str) and isinstance(pair[1], str)):
            raise TypeError(f"{name}: expected a list of (source, target) pairs of texts "
                            f"(str), but item {i} is {_item(pair)}")
    return [tuple(pair) for pair in pairs]


def check_feature_sequences(seqs, name, D):
    """``seqs`` as a list of arrays of shape (T_b, D), T_b >= 1, of real numbers.
    TypeError (not numbers) or ValueError (wrong shape), naming ``name`` and the index."""
    if isinstance(seqs, (str, np.ndarray)) or not hasattr(seqs, "__iter__"):
        raise TypeError(f"{name}: expected a list of (T_b, {D}) arrays, got "
                        f"{type(seqs).__name__}")
    seqs = list(seqs)
    for i, x in enumerate(seqs):
        try:
            arr = np.asarray(x)
        except ValueError:                   # ragged nesting
            arr = None
        if arr is None or arr.dtype.kind not in "biuf" or isinstance(x, str):
            raise TypeError(f"{name}: expected a list of (T_b, {D}) arrays of numbers, but "
                            f"item {i} is {_item(x)}")
        if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] != D:
            raise ValueError(f"{name}: expected a list of (T_b, {D}) arrays with T_b >= 1, "
                             f"but item {i} has shape {arr.shape}")
    return seqs


# ------------------------------------------------------------------ sizes
#
# A size that cannot be served must fail here, as a ValueError or MemoryError that
# names it, before NumPy allocates or a kernel runs: the kernels trust their shapes
# (they run without the GIL), so an index that wrapped, or an allocation the system
# granted on credit (Linux overcommits: NumPy's np.empty of 16 GB succeeds on a 24 GB
# machine, and so does the next one) and a kernel then writes, ends in a crash or in
# the OOM killer instead of an exception. Counts are Python ints, which cannot wrap.

INDEX_MAX = int(np.iinfo(np.intp).max)   # the largest array, in bytes, NumPy can index
C_INT_MAX = 2**31 - 1                    # some sizes reach the compiled core as C ints
ARRAY_OVERHEAD = sys.getsizeof(np.empty(0))  # bytes of an array object without its data

_memory_limit = []


def memory_limit():
    """Bytes of RAM plus swap of this machine (Linux: /proc/meminfo), or None when
    unknown. What one process's arrays can ever hold at once: more is never served,
    whatever the allocator grants on credit."""
    if not _memory_limit:
        total = None
        try:
            with open("/proc/meminfo") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            total = sum(int(fields[k].split()[0]) * 1024 for k in ("MemTotal", "SwapTotal"))
        except (OSError, KeyError, ValueError, IndexError):
            pass
        _memory_limit.append(total)
    return _memory_limit[0]


def format_bytes(n):
    """n bytes in binary units, for messages: '16.0 TiB'."""
    if n < 1024:
        return f"{n} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} EiB"


def check_sizes(what, arrays, *, memory=True):
    """Refuse a set of arrays that cannot exist at once.

    what: who needs them (for the message). arrays: (name, shape, itemsize, count)
    entries, count arrays of that shape each, all alive at the same time (a lower
    bound of the need: nothing that might not be allocated; each array costs its data
    and ARRAY_OVERHEAD, which matters for a million tiny ones). Raises ValueError when
    one array would hold more bytes than an index reaches (INDEX_MAX), MemoryError
    when all of them need more than the machine's memory and swap (memory_limit();
    not with ``memory=False``). Returns the total bytes.
    """
    total = 0
    for name, shape, itemsize, count in arrays:
        n = 1
        for s in shape:
            n *= int(s)
        nbytes = n * itemsize
        if nbytes > INDEX_MAX:
            raise ValueError(f"{what}: {name} of shape {_shape_str(shape)} would hold {n:,} "
                             f"values ({nbytes:,} bytes), more than an array can index "
                             f"({INDEX_MAX:,} bytes)")
        total += (nbytes + ARRAY_OVERHEAD) * count
    limit = memory_limit() if memory else None
    if limit is not None and total > limit:
        parts = ", ".join(f"{name} {_shape_str(shape)}" + (f" x {count:,}" if count > 1 else "")
                          for name, shape, _, count in arrays if count)
        raise MemoryError(f"{what}: needs at least {format_bytes(total)} ({total:,} bytes: "
                          f"{parts}), more than this machine's memory and swap "
                          f"({format_bytes(limit)})")
    return total


def check_c_int(what, sizes):
    """sizes: {description: value}; refuse a value the compiled kernels would hold in
    a C int (ValueError naming it), where it would wrap."""
    for name, value in sizes.items():
        if value > C_INT_MAX:
            raise ValueError(f"{what}: {name} = {value:,} exceeds {C_INT_MAX:,}, the largest "
                             "size the compiled kernels index (a C int)")
