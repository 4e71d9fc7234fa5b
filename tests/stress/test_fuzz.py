"""Property-based fuzzing (Hypothesis) of the recurrent layers.

1. The compiled core (``backend="cython"``) against the NumPy reference
   (``backend="numpy"``) on random configurations: every cell variant of
   ``_cases.CELLS``, T and B in 1..6, D and H in 1..9, one or two layers, one or two
   directions, batch-first or not, float32/float64, random lengths, initial states and
   final-state gradients, and inputs in odd layouts (Fortran order, every other entry
   of a bigger array, transposed, reversed, read-only and broadcast views). Forward
   (y, final state) and backward (dx, dstate0, every gradient) agree within the
   dtype's tolerance (``conftest.TOL``) on every kernel path this CPU runs, and no
   input array is written. The one-token path (T = B = 1, no lengths: the compiled
   stepper) has its own property, a short generation loop.
2. Invalid arguments to the constructors, ``forward`` and ``backward`` (wrong ndim or
   shape, empty dimensions, wrong dtypes, NaN/inf, lengths out of range, of the wrong
   count or type, state tuples of the wrong structure, objects of the wrong type,
   backward before forward) raise ValueError or TypeError, in-process, with a message
   that names the argument (docs/spec.md §Errors); the failed call changes no parameter or
   gradient, and the next valid call still matches the reference.

Budget. Every property runs a fixed number of examples, ``EXAMPLES``, derandomized
(Hypothesis seeds each test from its own source, so every run of the same code tries
the same examples and gives the same result), without a deadline and without an
example database. The profile is "ci" when the environment variable ``CI`` is set and
"seqcore-dev" otherwise; the two are the same settings. (Hypothesis also draws on
constants it finds in the non-test modules loaded, i.e. seqcore's source, and caches
them in ``.hypothesis/constants``, which git ignores: a change to seqcore can change
the examples, a rerun of the same code cannot.)

Local knob: ``SEQCORE_FUZZ_EXAMPLES=N`` runs N *random* examples per property instead
(profile "seqcore-random", not derandomized, also when ``CI`` is set; a failure prints
a ``@reproduce_failure`` line to replay it), e.g.::

    SEQCORE_FUZZ_EXAMPLES=2000 python -m pytest -q -p no:cacheprovider tests/stress/test_fuzz.py
"""
import copy
import os
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, example, given, note, settings
from hypothesis import strategies as st

from seqcore import _dispatch
from _cases import CELLS, CELL_IDS, copy_params, make_layer
from conftest import assert_close

# ------------------------------------------------------------------- profiles

EXAMPLES = 500      # per property: the whole file runs in about 20 s on 3 kernel paths

# No explain phase: its "lines only failing cases ran" are NumPy internals here.
_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow],
               phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink])
settings.register_profile("ci", max_examples=EXAMPLES, derandomize=True, **_COMMON)
settings.register_profile("seqcore-dev", max_examples=EXAMPLES, derandomize=True, **_COMMON)

_RANDOM = os.environ.get("SEQCORE_FUZZ_EXAMPLES", "").strip()
if _RANDOM:
    if not _RANDOM.isdigit() or int(_RANDOM) < 1:
        raise ValueError(f"SEQCORE_FUZZ_EXAMPLES: expected an integer >= 1, got {_RANDOM!r}")
    settings.register_profile("seqcore-random", max_examples=int(_RANDOM),
                              derandomize=False, **_COMMON)
    PROFILE = "seqcore-random"
else:
    PROFILE = "ci" if os.environ.get("CI") else "seqcore-dev"

# Applied to each test (rather than settings.load_profile, which would change the
# defaults of every other Hypothesis test in the session).
FUZZ = settings(settings.get_profile(PROFILE))

PATHS = _dispatch.supported()               # every kernel path this CPU runs
DTYPES = (np.float32, np.float64)
CELL_CLASS = {cid: (cls, opts) for cid, cls, opts in CELLS}


def _num_states(cell):
    return 2 if cell.startswith("lstm") else 1


def _arrays(state):
    """The arrays of a state (one array, or LSTM's pair as a tuple or list)."""
    return list(state) if isinstance(state, (tuple, list)) else [state]


def _pack(arrays):
    return arrays[0] if len(arrays) == 1 else tuple(arrays)


# ------------------------------------------------------------ array layouts

LAYOUTS = ("c", "fortran", "step2", "transposed", "reversed", "readonly", "broadcast")


def in_layout(a, kind, axis):
    """An array with the values of ``a`` in memory layout ``kind`` (along ``axis``).

    "broadcast" repeats a's first slice along ``axis`` (a zero stride), so its values
    differ from a's: callers give the reference ``np.array(view)``. "step2" takes every
    other entry of a bigger array whose other entries are NaN, so reading the gaps
    shows up in the results.
    """
    axis %= a.ndim
    if kind == "c":
        return np.ascontiguousarray(a)
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "step2":
        shape = list(a.shape)
        shape[axis] = 2 * shape[axis] + 1
        big = np.full(shape, np.nan, a.dtype)
        index = [slice(None)] * a.ndim
        index[axis] = slice(1, None, 2)
        view = big[tuple(index)]
        view[...] = a
        return view
    if kind == "transposed":
        axis = axis or a.ndim - 1                   # the axis to make the slowest one
        return np.moveaxis(np.ascontiguousarray(np.moveaxis(a, axis, 0)), 0, axis)
    if kind == "reversed":
        return np.flip(np.ascontiguousarray(np.flip(a, axis)), axis)
    if kind == "readonly":
        view = a.copy()
        view.flags.writeable = False
        return view
    if kind == "broadcast":
        return np.broadcast_to(np.take(a, [0], axis=axis), a.shape)
    raise AssertionError(kind)


def unaligned(a):
    """A C-contiguous copy of a whose data starts one byte off its itemsize's alignment."""
    buf = np.empty(a.nbytes + a.itemsize, np.uint8)
    start = 1 if buf.ctypes.data % a.itemsize == 0 else 0
    out = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned and out.flags.c_contiguous
    return out


def byteswapped(a):
    """The same values in the non-native byte order."""
    out = a.astype(a.dtype.newbyteorder())
    assert out.dtype != a.dtype and np.array_equal(out, a)
    return out


LENGTHS_AS = ("list", "tuple", "int64", "int32", "uint8", "whole_floats", "strided")


def lengths_as(values, kind):
    if kind == "list":
        return [int(v) for v in values]
    if kind == "tuple":
        return tuple(int(v) for v in values)
    if kind == "strided":
        big = np.zeros(2 * len(values), np.int64)
        big[::2] = values
        return big[::2]
    if kind == "whole_floats":
        return np.asarray(values, np.float64)
    return np.asarray(values, kind)


def _plain(a):
    """What the compiled stepper takes as it is: an aligned C-contiguous ndarray."""
    return isinstance(a, np.ndarray) and a.flags.c_contiguous and a.flags.aligned


def layout_of(ndim):
    return st.tuples(st.sampled_from(LAYOUTS), st.integers(0, ndim - 1))


# ------------------------------------------------------ property 1: compiled == reference

def run(layer, x, state, lengths, dy, dstate):
    """forward then backward from zeroed gradients; copies of everything they give."""
    layer.zero_grad()
    y, final = layer.forward(x, state, lengths)
    out = dict(y=[np.array(y)], final=[np.array(s) for s in _arrays(final)])
    dx, dstate0 = layer.backward(dy, dstate)
    out.update(dx=[np.array(dx)], dstate0=[np.array(s) for s in _arrays(dstate0)])
    out["grads"] = {k: np.array(g) for k, g in layer.grads.items()}
    return out


def assert_same_results(got, want, dtype, what):
    assert got["grads"].keys() == want["grads"].keys(), what
    for key in ("y", "final", "dx", "dstate0"):
        assert len(got[key]) == len(want[key]), f"{what} {key}: {len(got[key])} arrays"
        for i, (g, w) in enumerate(zip(got[key], want[key])):
            assert g.dtype == np.dtype(dtype), f"{what} {key}[{i}]: dtype {g.dtype}"
            assert_close(g, w, dtype, f"{what} {key}[{i}]")
    for k, w in want["grads"].items():
        assert got["grads"][k].dtype == np.dtype(dtype), f"{what} grads[{k}]"
        assert_close(got["grads"][k], w, dtype, f"{what} grads[{k}]")


@st.composite
def configs(draw, one_token=False):
    c = types.SimpleNamespace()
    c.cell = draw(st.sampled_from(CELL_IDS))
    if one_token:
        c.T = c.B = 1
        c.bidirectional = False
    else:
        c.T, c.B = draw(st.integers(1, 6)), draw(st.integers(1, 6))
        c.bidirectional = draw(st.booleans())
    c.D, c.H = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    c.num_layers = draw(st.integers(1, 2))
    c.batch_first = draw(st.booleans())
    c.dtype = draw(st.sampled_from(DTYPES))
    c.lengths = None if one_token else draw(
        st.none() | st.lists(st.integers(1, c.T), min_size=c.B, max_size=c.B))
    c.lengths_as = draw(st.sampled_from(LENGTHS_AS))
    c.state = draw(st.booleans())                  # an initial state, else None
    c.dstate = draw(st.booleans())                 # a final-state gradient, else None
    c.state_as_list = draw(st.booleans())          # LSTM's pair as a list
    c.x_layout, c.dy_layout = draw(layout_of(3)), draw(layout_of(3))
    c.state_layout, c.dstate_layout = draw(layout_of(3)), draw(layout_of(3))
    c.scale = draw(st.sampled_from([1.0, 0.1, 3.0]))   # 3: saturated gates
    c.seed = draw(st.integers(0, 2**16))
    return c


def make_inputs(c, rng):
    """(views, plain copies) of x, state, lengths, dy, dstate for config c."""
    dirs = 2 if c.bidirectional else 1
    T, B = c.T, c.B
    xs = (B, T, c.D) if c.batch_first else (T, B, c.D)
    ys = (B, T, dirs * c.H) if c.batch_first else (T, B, dirs * c.H)
    ss = (c.num_layers * dirs, B, c.H)
    n = _num_states(c.cell)

    def arr(shape, scale):
        return (rng.standard_normal(shape) * scale).astype(c.dtype)

    def states(layout):
        arrays = [in_layout(arr(ss, 0.5 * c.scale), *layout) for _ in range(n)]
        if n == 2 and c.state_as_list:
            return arrays
        return _pack(arrays)

    views = dict(x=in_layout(arr(xs, c.scale), *c.x_layout),
                 state=states(c.state_layout) if c.state else None,
                 lengths=None if c.lengths is None else lengths_as(c.lengths, c.lengths_as),
                 dy=in_layout(arr(ys, 1.0), *c.dy_layout),
                 dstate=states(c.dstate_layout) if c.dstate else None)
    plain = {}
    for k, v in views.items():
        if v is None or k == "lengths":
            plain[k] = None if v is None else np.array(v, np.int64)
        elif isinstance(v, (tuple, list)):
            plain[k] = tuple(np.array(s) for s in v)
        else:
            plain[k] = np.array(v)
    return views, plain


def snapshot(views):
    return {k: [np.array(a) for a in _arrays(v)] for k, v in views.items()
            if v is not None and k != "lengths"}


def twins(c, **kwargs):
    kw = dict(num_layers=c.num_layers, bidirectional=c.bidirectional,
              batch_first=c.batch_first, **kwargs)
    ref = make_layer(c.cell, c.D, c.H, dtype=c.dtype, backend="numpy", seed=c.seed, **kw)
    return ref, kw


def check_compiled_matches_reference(c):
    rng = np.random.default_rng(c.seed)
    views, plain = make_inputs(c, rng)
    note(f"x {views['x'].shape} strides {views['x'].strides}")
    event(f"x layout {c.x_layout[0]}")
    event("one token" if c.T == c.B == 1 and c.lengths is None else
          "T*B > 1" if c.T * c.B > 1 else "T = B = 1 with lengths")
    event(f"layers {c.num_layers}, directions {2 if c.bidirectional else 1}")
    ref, kw = twins(c)
    want = run(ref, *(plain[k] for k in ("x", "state", "lengths", "dy", "dstate")))
    before = snapshot(views)
    for path in PATHS:
        with _dispatch.use(path):
            fast = make_layer(c.cell, c.D, c.H, dtype=c.dtype, backend="cython", **kw)
            copy_params(fast, ref)
            got = run(fast, *(views[k] for k in ("x", "state", "lengths", "dy", "dstate")))
        assert_same_results(got, want, c.dtype, f"{path} {c.cell}")
        for k, arrays in snapshot(views).items():      # inputs are only read
            for a, b in zip(arrays, before[k]):
                np.testing.assert_array_equal(a, b, err_msg=f"{path}: {k} was written")


_ONE_TOKEN = types.SimpleNamespace(
    cell="lstm_peephole", T=1, B=1, D=3, H=5, num_layers=2, bidirectional=False,
    batch_first=False, dtype=np.float32, lengths=None, lengths_as="list", state=True,
    dstate=True, state_as_list=False, x_layout=("c", 0), dy_layout=("c", 0),
    state_layout=("c", 0), dstate_layout=("c", 0), scale=1.0, seed=1)


@FUZZ
@given(c=configs())
@example(c=_ONE_TOKEN)
def test_compiled_matches_reference(c):
    check_compiled_matches_reference(c)


@FUZZ
@given(c=configs(one_token=True), steps=st.integers(1, 4))
def test_one_token_steps_match_reference(c, steps):
    """A generation loop of one-token calls (T = B = 1, no lengths: the compiled
    stepper whenever x and the state are plain C-contiguous arrays, the general path
    otherwise), the state of each call fed to the next, then backward of the last."""
    rng = np.random.default_rng(c.seed)
    ref, kw = twins(c)
    calls = [make_inputs(c, rng) for _ in range(steps)]
    for path in PATHS:
        with _dispatch.use(path):
            fast = make_layer(c.cell, c.D, c.H, dtype=c.dtype, backend="cython", **kw)
            copy_params(fast, ref)
            state = state_ref = None
            for i, (views, plain) in enumerate(calls):
                if i == 0:
                    state, state_ref = views["state"], plain["state"]
                fast.zero_grad()
                ref.zero_grad()
                state_in = state if state is not None else []
                y, state = fast.forward(views["x"], state)
                y_ref, state_ref = ref.forward(plain["x"], state_ref)
                if _plain(views["x"]) and all(_plain(s) for s in _arrays(state_in)):
                    assert fast._cache is fast._stepper.cache, "the stepper did not run"
                what = f"{path} {c.cell} token {i}"
                assert_close(y, y_ref, c.dtype, f"{what} y")
                for s, s_ref in zip(_arrays(state), _arrays(state_ref)):
                    assert s.dtype == np.dtype(c.dtype)
                    assert_close(s, s_ref, c.dtype, f"{what} state")
            views, plain = calls[-1]
            dx, ds0 = fast.backward(views["dy"], views["dstate"])
            dx_ref, ds0_ref = ref.backward(plain["dy"], plain["dstate"])
        assert_close(dx, dx_ref, c.dtype, f"{path} {c.cell} dx")
        for g, g_ref in zip(_arrays(ds0), _arrays(ds0_ref)):
            assert_close(g, g_ref, c.dtype, f"{path} {c.cell} dstate0")
        for k in ref.grads:
            assert_close(fast.grads[k], ref.grads[k], c.dtype, f"{path} {c.cell} grads[{k}]")


@pytest.mark.parametrize("kind", ["unaligned", "byteswapped"])
@FUZZ
@given(c=st.booleans().flatmap(lambda one: configs(one_token=one)),
       target=st.sampled_from(["x", "state", "dy", "dstate"]))
def test_unaligned_or_byteswapped_arrays(kind, c, target):
    """A float array of the layer's dtype that is not aligned, or holds its values in
    the other byte order, is either used as what it holds (the reference's numbers)
    or refused with a ValueError/TypeError that names the argument; never read as
    raw native floats."""
    c = copy.copy(c)                        # (the drawn value stays as Hypothesis shows it)
    c.state = c.state or target == "state"
    c.dstate = c.dstate or target == "dstate"
    c.x_layout = c.dy_layout = c.state_layout = c.dstate_layout = ("c", 0)
    c.state_as_list = False
    rng = np.random.default_rng(c.seed)
    _, plain = make_inputs(c, rng)
    odd = unaligned if kind == "unaligned" else byteswapped
    args = dict(plain)
    args[target] = _pack([odd(a) for a in _arrays(plain[target])])
    ref, kw = twins(c)
    want = run(ref, *(plain[k] for k in ("x", "state", "lengths", "dy", "dstate")))
    for backend, path in [("cython", p) for p in PATHS] + [("numpy", PATHS[0])]:
        with _dispatch.use(path):
            layer = make_layer(c.cell, c.D, c.H, dtype=c.dtype, backend=backend, **kw)
            copy_params(layer, ref)
            try:
                got = run(layer, *(args[k] for k in ("x", "state", "lengths", "dy", "dstate")))
            except (ValueError, TypeError) as exc:
                assert target in str(exc), (
                    f"{backend} {path}: {kind} {target} refused with a message that does "
                    f"not name it: {type(exc).__name__}: {exc}")
                continue
        assert_same_results(got, want, c.dtype, f"{backend} {path}: {kind} {target}")


# --------------------------------------------------- property 2: invalid arguments

def assert_clear_error(excinfo, name):
    """ValueError/TypeError whose message is not empty and names the argument."""
    msg = str(excinfo.value)
    assert msg.strip(), f"{excinfo.type.__name__} with an empty message"
    assert name in msg, f"the message does not name {name!r}: {excinfo.type.__name__}: {msg}"


class _Weird:
    """An object of no type the layers know."""

    def __repr__(self):
        return "<object>"


# Objects of the wrong type, by name (readable in Hypothesis' falsifying examples);
# "ragged" is the valid array as a nested list with one more, shallower, entry.
OBJECTS = ("str", "empty_str", "dict", "object", "list_of_str", "nested_str", "ragged",
           "int", "float", "complex", "set", "bytes", "function", "none")


def an_object(key, a):
    if key == "ragged":
        rows = a.tolist()
        rows.append([0.5])                  # one entry a level shallower than the others
        return rows
    return {"str": "hello", "empty_str": "", "dict": {"a": 1}, "object": _Weird(),
            "list_of_str": ["a", "b"], "nested_str": [[["a"]]], "int": 7, "float": 0.5,
            "complex": 1 + 2j, "set": {1, 2}, "bytes": b"xy", "function": len,
            "none": None}[key]


BAD_DTYPES = ("int64", "int32", "int8", "uint8", "bool", "float16", "complex64",
              "complex128", "object", "U8", "other_float")
if np.dtype(np.longdouble) not in (np.dtype(np.float32), np.dtype(np.float64)):
    BAD_DTYPES += ("longdouble",)               # (it is float64 on some platforms)


def array_spoils(allow_none=True):
    objects = OBJECTS if allow_none else tuple(o for o in OBJECTS if o != "none")
    return st.one_of(
        st.tuples(st.just("ndim"), st.sampled_from(["add_front", "add_back", "drop_front",
                                                    "flatten"])),
        st.tuples(st.just("shape"), st.integers(0, 2), st.sampled_from([-3, -2, -1, 1, 2, 3])),
        st.tuples(st.just("empty"), st.integers(0, 2)),
        st.tuples(st.just("dtype"), st.sampled_from(BAD_DTYPES)),
        st.tuples(st.just("nonfinite"), st.sampled_from([np.nan, np.inf, -np.inf]),
                  st.floats(0, 1, exclude_max=True)),
        st.tuples(st.just("object"), st.sampled_from(objects)),
    )


def spoil_array(a, spoil, fixed_axes):
    """a (valid) made invalid as ``spoil`` says; fixed_axes: the axes whose size is
    prescribed (the others, T and B of x, are free)."""
    kind = spoil[0]
    if kind == "ndim":
        return {"add_front": a[None], "add_back": a[..., None], "drop_front": a[0],
                "flatten": a.reshape(-1)}[spoil[1]]
    if kind == "shape":
        axis = fixed_axes[spoil[1] % len(fixed_axes)]
        size = max(a.shape[axis] + spoil[2], 1)
        if size == a.shape[axis]:
            size += 1
        if size < a.shape[axis]:
            return np.take(a, range(size), axis=axis)
        extra = list(a.shape)
        extra[axis] = size - a.shape[axis]
        return np.concatenate([a, np.full(extra, 0.25, a.dtype)], axis=axis)
    if kind == "empty":
        return np.take(a, [], axis=spoil[1] % a.ndim)
    if kind == "dtype":
        dt = spoil[1]
        if dt == "other_float":
            dt = np.float64 if a.dtype == np.float32 else np.float32
        return a.astype(dt)
    if kind == "nonfinite":
        out = a.copy()
        out.reshape(-1)[int(spoil[2] * out.size)] = spoil[1]
        return out
    if kind == "object":
        return an_object(spoil[1], a)
    raise AssertionError(spoil)


def state_spoils(cell):
    """Spoils of a state or dstate argument (None is valid there, so not among them)."""
    structure = (["pair", "list_pair", "triple_tuple"] if _num_states(cell) == 1 else
                 ["single_array", "one_tuple", "triple_tuple", "triple_list"])
    return st.one_of(st.tuples(st.just("structure"), st.sampled_from(structure)),
                     st.tuples(st.just("element"), st.integers(0, 1),
                               array_spoils(allow_none=False)),
                     st.tuples(st.just("whole"), st.sampled_from(
                         [o for o in OBJECTS if o != "none"])))


def spoil_state(arrays, spoil):
    """arrays: the valid state as a list of one or two arrays."""
    a = arrays[0]
    if spoil[0] == "structure":
        return {"pair": (a, a), "list_pair": [a, a], "triple_tuple": (a, a, a),
                "single_array": a, "one_tuple": (a,), "triple_list": [a, a, a]}[spoil[1]]
    if spoil[0] == "whole":
        return an_object(spoil[1], a)
    i = spoil[1] % len(arrays)
    arrays = list(arrays)
    arrays[i] = spoil_array(arrays[i], spoil[2], (0, 1, 2))
    return _pack(arrays)


LENGTH_SPOILS = st.one_of(
    st.tuples(st.just("value"), st.sampled_from(["zero", "negative", "above_T", "huge"]),
              st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("count"), st.sampled_from([-2, -1, 1, 2])),
    st.tuples(st.just("form"), st.sampled_from(["2d", "scalar", "half", "nan", "inf", "bool",
                                                "complex", "strings", "none_inside",
                                                "object_dtype"])),
    st.tuples(st.just("object"), st.sampled_from(["str", "dict", "object", "set", "bytes",
                                                  "function", "float"])),
)


def spoil_lengths(lengths, spoil, T):
    B = len(lengths)
    out = np.array(lengths, np.int64)
    kind = spoil[0]
    if kind == "value":
        out[int(spoil[2] * B)] = {"zero": 0, "negative": -1, "above_T": T + 1,
                                  "huge": 2**40}[spoil[1]]
        return out
    if kind == "count":
        n = max(B + spoil[1], 0)
        return np.resize(out, n) if n else np.zeros(0, np.int64)
    if kind == "form":
        form = spoil[1]
        if form == "2d":
            return out[None]
        if form == "scalar":
            return int(out[0])
        if form in ("half", "nan", "inf"):
            f = out.astype(np.float64)
            f[0] = {"half": 0.5, "nan": np.nan, "inf": np.inf}[form]
            return f
        if form == "bool":
            return out > 0
        if form == "complex":
            return out.astype(np.complex128)
        if form == "strings":
            return [str(v) for v in out]
        if form == "none_inside":
            return [None] + [int(v) for v in out[1:]]
        if form == "object_dtype":
            return out.astype(object)
    if kind == "object":
        return an_object(spoil[1], out)
    raise AssertionError(spoil)


@st.composite
def setups(draw):
    """A small layer and the valid arguments of its calls (as a config and a seed)."""
    c = types.SimpleNamespace()
    c.cell = draw(st.sampled_from(CELL_IDS))
    c.T, c.B = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    c.D, c.H = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    c.num_layers = draw(st.integers(1, 2))
    c.bidirectional = draw(st.booleans())
    c.batch_first = draw(st.booleans())
    c.dtype = draw(st.sampled_from(DTYPES))
    c.backend = draw(st.sampled_from(["cython", "numpy"]))
    c.path = draw(st.sampled_from(PATHS))
    c.lengths = draw(st.booleans())
    c.state = draw(st.booleans())
    c.dstate = draw(st.booleans())
    c.seed = draw(st.integers(0, 2**16))
    return c


def valid_args(c, rng):
    dirs = 2 if c.bidirectional else 1
    T, B = c.T, c.B
    n = _num_states(c.cell)

    def arr(shape):
        return rng.standard_normal(shape).astype(c.dtype)

    ss = (c.num_layers * dirs, B, c.H)
    return dict(x=arr((B, T, c.D) if c.batch_first else (T, B, c.D)),
                state=_pack([arr(ss) * 0.5 for _ in range(n)]) if c.state else None,
                lengths=rng.integers(1, T + 1, B) if c.lengths else None,
                dy=arr((B, T, dirs * c.H) if c.batch_first else (T, B, dirs * c.H)),
                dstate=_pack([arr(ss) for _ in range(n)]) if c.dstate else None,
                any_state=[arr(ss) * 0.5 for _ in range(n)])


def layer_pair(c):
    """(layer under test on its backend and kernel path, reference with the same params)."""
    kw = dict(num_layers=c.num_layers, bidirectional=c.bidirectional,
              batch_first=c.batch_first)
    ref = make_layer(c.cell, c.D, c.H, dtype=c.dtype, backend="numpy", seed=c.seed, **kw)
    layer = make_layer(c.cell, c.D, c.H, dtype=c.dtype, backend=c.backend, **kw)
    copy_params(layer, ref)
    return layer, ref


def copies(d):
    return {k: np.array(v) for k, v in d.items()}


def assert_unchanged(layer, params, grads, when):
    assert layer.params.keys() == params.keys(), f"{when}: params keys changed"
    assert layer.grads.keys() == grads.keys(), f"{when}: grads keys changed"
    for k in params:
        np.testing.assert_array_equal(layer.params[k], params[k],
                                      err_msg=f"{when}: params[{k!r}] changed")
    for k in grads:
        np.testing.assert_array_equal(layer.grads[k], grads[k],
                                      err_msg=f"{when}: grads[{k!r}] changed")


def assert_valid_call_matches(layer, ref, c, rng, what):
    """A fresh valid forward and backward give the reference's numbers."""
    args = valid_args(c, rng)
    got = run(layer, *(args[k] for k in ("x", "state", "lengths", "dy", "dstate")))
    want = run(ref, *(args[k] for k in ("x", "state", "lengths", "dy", "dstate")))
    assert_same_results(got, want, c.dtype, what)


# --- constructors

SIZE_ARGS = ("input_size", "hidden_size", "num_layers")
FLAG_ARGS = ("bidirectional", "batch_first")
CELL_OPTION = {"rnn_tanh": "nonlinearity", "rnn_relu": "nonlinearity",
               "gru": "reset_after", "gru_reset_after": "reset_after",
               "lstm": "peephole", "lstm_peephole": "peephole"}

_WRONG_TYPES = st.one_of(st.none(), st.text(max_size=4), st.lists(st.text(max_size=2),
                                                                   min_size=1, max_size=2),
                         st.just({"a": 1}), st.just(_Weird()), st.complex_numbers(),
                         st.just(np.array(["cython", "numpy"])), st.just(np.array([1, 2])))


def _not_a_float_dtype(value):
    try:
        return np.dtype(value) not in (np.dtype(np.float32), np.dtype(np.float64))
    except Exception:           # NumPy's own parsing errors (even SyntaxError) are the point
        return True


BAD_VALUES = {
    "size": st.one_of(st.integers(max_value=0), st.floats(), st.booleans(),
                      st.just(np.float64(3.0)), st.just(np.array([3])), st.just([3]),
                      st.text(max_size=3), st.none(), st.complex_numbers()),
    "flag": st.one_of(st.integers(), st.floats(), st.just(np.array([True])),
                      st.just(np.array(True)), _WRONG_TYPES),
    "dtype": st.one_of(
        st.sampled_from([d for d in (
            np.int64, np.int32, np.uint8, np.float16, np.longdouble, np.complex64,
            np.complex128, np.bool_, object, str, "banana", "int32", "U8", [np.float32],
            np.dtype(">f4"), np.dtype(">f8"), np.dtype([("a", "f4")]),
            np.dtype(("f8", (2,))), 3, _Weird()) if _not_a_float_dtype(d)]),
        st.text(alphabet="fdiucb<>=|0123456789,()[]' ", max_size=6).filter(_not_a_float_dtype)),
    "backend": st.one_of(st.text(max_size=8).filter(lambda s: s not in ("cython", "numpy")),
                         st.integers(), _WRONG_TYPES.filter(lambda v: v is None or not
                                                            isinstance(v, str))),
    "nonlinearity": st.one_of(st.text(max_size=8).filter(lambda s: s not in ("tanh", "relu")),
                              st.integers(), _WRONG_TYPES.filter(lambda v: v is None or not
                                                                 isinstance(v, str))),
    "seed": st.one_of(st.integers(max_value=-1), st.floats(), st.text(max_size=3),
                      st.just([1]), st.just(np.array([1])), st.booleans(),
                      st.complex_numbers()),
}


@st.composite
def constructor_cases(draw):
    cell = draw(st.sampled_from(CELL_IDS))
    name = draw(st.sampled_from(SIZE_ARGS + FLAG_ARGS + ("dtype", "backend", "seed",
                                                         CELL_OPTION[cell])))
    group = ("size" if name in SIZE_ARGS else
             "flag" if name in FLAG_ARGS + ("reset_after", "peephole") else name)
    return cell, name, draw(BAD_VALUES[group])


@FUZZ
@given(case=constructor_cases())
@example(case=("gru", "dtype", ","))
@example(case=("rnn_tanh", "backend", np.array(["cython", "numpy"])))
def test_bad_constructor_arguments_raise_clear_errors(case):
    cell, name, value = case
    cls, opts = CELL_CLASS[cell]
    kwargs = dict(input_size=3, hidden_size=4, **opts)
    kwargs[name] = value
    with pytest.raises((ValueError, TypeError)) as excinfo:
        cls(**kwargs)
    assert_clear_error(excinfo, name)


# --- forward

@st.composite
def forward_cases(draw):
    c = draw(setups())
    target = draw(st.sampled_from(["x", "state", "lengths"]))
    if target == "x":
        spoil = draw(array_spoils())
    elif target == "state":
        spoil = draw(state_spoils(c.cell))
    else:
        spoil = draw(LENGTH_SPOILS)
    prior = draw(st.booleans())            # a valid forward before the bad one
    return c, target, spoil, prior


@FUZZ
@given(case=forward_cases())
@example(case=(types.SimpleNamespace(
    cell="gru", T=2, B=2, D=3, H=4, num_layers=1, bidirectional=False, batch_first=False,
    dtype=np.float64, backend="numpy", path=PATHS[0], lengths=False, state=False,
    dstate=False, seed=0), "x", ("object", "ragged"), False))
def test_bad_forward_arguments_raise_clear_errors(case):
    """forward with one bad argument: a clear error; params and grads untouched; the
    previous forward's backward (if any) and a new valid call still give the
    reference's numbers."""
    c, target, spoil, prior = case
    rng = np.random.default_rng(c.seed)
    args = valid_args(c, rng)
    bad = dict(x=args["x"], state=args["state"], lengths=args["lengths"])
    if target == "x":
        bad["x"] = spoil_array(args["x"], spoil, (2,))
    elif target == "state":
        bad["state"] = spoil_state(args["any_state"], spoil)
    else:
        lengths = args["lengths"] if args["lengths"] is not None else np.full(c.B, c.T)
        bad["lengths"] = spoil_lengths(lengths, spoil, c.T)
    with _dispatch.use(c.path):
        layer, ref = layer_pair(c)
        if prior:
            layer.forward(args["x"], args["state"], args["lengths"])
            ref.forward(args["x"], args["state"], args["lengths"])
        params, grads = copies(layer.params), copies(layer.grads)
        with pytest.raises((ValueError, TypeError)) as excinfo:
            layer.forward(bad["x"], bad["state"], bad["lengths"])
        assert_clear_error(excinfo, target)
        assert_unchanged(layer, params, grads, f"after the bad {target}")
        if prior:
            # backward still belongs to the last forward that worked, or refuses to run
            try:
                dx, ds0 = layer.backward(args["dy"], args["dstate"])
            except ValueError as exc:
                assert "forward" in str(exc), f"backward after a failed forward: {exc}"
                assert_unchanged(layer, params, grads, "after the refused backward")
            else:
                dx_ref, ds0_ref = ref.backward(args["dy"], args["dstate"])
                assert_close(dx, dx_ref, c.dtype, "dx of the previous forward")
                for g, g_ref in zip(_arrays(ds0), _arrays(ds0_ref)):
                    assert_close(g, g_ref, c.dtype, "dstate0 of the previous forward")
                for k in ref.grads:
                    assert_close(layer.grads[k], ref.grads[k], c.dtype,
                                 f"grads[{k}] of the previous forward")
        assert_valid_call_matches(layer, ref, c, rng, f"valid call after the bad {target}")


# --- backward

@st.composite
def backward_cases(draw):
    c = draw(setups())
    target = draw(st.sampled_from(["dy", "dstate"]))
    if target == "dy":
        spoil = draw(array_spoils() | st.just(("swap_TB",)))
        if spoil == ("swap_TB",) and c.T == c.B:
            c.T += 1                        # (B, T) for (T, B) is only wrong when T != B
    else:
        spoil = draw(state_spoils(c.cell))
    return c, target, spoil


@FUZZ
@given(case=backward_cases())
def test_bad_backward_arguments_raise_clear_errors(case):
    """backward before forward, and backward with one bad argument: a clear error;
    no gradient added; the same forward's valid backward gives the reference's."""
    c, target, spoil = case
    rng = np.random.default_rng(c.seed)
    args = valid_args(c, rng)
    with _dispatch.use(c.path):
        layer, ref = layer_pair(c)
        grads = copies(layer.grads)
        with pytest.raises((ValueError, TypeError)) as excinfo:
            layer.backward(args["dy"], args["dstate"])
        assert_clear_error(excinfo, "forward")
        assert_unchanged(layer, copies(ref.params), grads, "after backward before forward")

        y, final = layer.forward(args["x"], args["state"], args["lengths"])
        y_ref, final_ref = ref.forward(args["x"], args["state"], args["lengths"])
        if target == "dy":
            if spoil == ("swap_TB",):
                bad = np.ascontiguousarray(np.swapaxes(args["dy"], 0, 1))
            else:
                bad = spoil_array(args["dy"], spoil, (0, 1, 2))
            call = (bad, args["dstate"])
        else:
            n = _num_states(c.cell)
            dstate = _arrays(args["dstate"]) if args["dstate"] is not None else [
                np.ones_like(s) for s in args["any_state"][:n]]
            call = (args["dy"], spoil_state(dstate, spoil))
        params = copies(layer.params)
        with pytest.raises((ValueError, TypeError)) as excinfo:
            layer.backward(*call)
        assert_clear_error(excinfo, target)
        assert_unchanged(layer, params, grads, f"after the bad {target}")

        dx, ds0 = layer.backward(args["dy"], args["dstate"])
        dx_ref, ds0_ref = ref.backward(args["dy"], args["dstate"])
        got = dict(y=[y], final=_arrays(final), dx=[dx], dstate0=_arrays(ds0),
                   grads=layer.grads)
        want = dict(y=[y_ref], final=_arrays(final_ref), dx=[dx_ref],
                    dstate0=_arrays(ds0_ref), grads=ref.grads)
        assert_same_results(got, want, c.dtype, f"backward after the bad {target}")
        assert_valid_call_matches(layer, ref, c, rng, f"valid call after the bad {target}")


# --- parameters and gradients replaced by the user

@st.composite
def replaced_cases(draw):
    c = draw(setups())
    c.num_layers = 2          # several layers and directions: a bad one is not the first
    which = draw(st.sampled_from(["params", "grads"]))
    phase = "backward" if which == "grads" else draw(st.sampled_from(["forward", "backward"]))
    key_index = draw(st.integers(0, 10**6))
    spoil = draw(st.sampled_from(["drop_row", "other_float", "missing", "list"]))
    return c, which, phase, key_index, spoil


@FUZZ
@given(case=replaced_cases())
def test_bad_replaced_parameters_or_gradients_leave_the_layer_intact(case):
    """A parameter or gradient array replaced by one of the wrong shape or dtype, or
    removed: forward/backward refuse it naming it, add no gradient anywhere (also not
    to the layers and directions backward reaches before the bad one), and once it is
    restored the layer gives the reference's numbers."""
    c, which, phase, key_index, spoil = case
    rng = np.random.default_rng(c.seed)
    args = valid_args(c, rng)
    with _dispatch.use(c.path):
        layer, ref = layer_pair(c)
        store = getattr(layer, which)
        keys = sorted(store)
        key = keys[key_index % len(keys)]
        saved = store[key]
        bad = {"drop_row": saved[:-1] if saved.shape[0] > 1 else saved[None],
               "other_float": saved.astype(np.float64 if c.dtype == np.float32
                                           else np.float32),
               "missing": None, "list": [["a"]]}[spoil]
        if phase == "backward":
            layer.forward(args["x"], args["state"], args["lengths"])
            ref.forward(args["x"], args["state"], args["lengths"])
        params, grads = copies(layer.params), copies(layer.grads)
        if bad is None:
            del store[key]
        else:
            store[key] = bad
        with pytest.raises((ValueError, TypeError)) as excinfo:
            if phase == "forward":
                layer.forward(args["x"], args["state"], args["lengths"])
            else:
                layer.backward(args["dy"], args["dstate"])
        assert_clear_error(excinfo, f"{which}[{key!r}]")
        store[key] = saved
        assert_unchanged(layer, params, grads, f"after the bad {which}[{key!r}]")
        if phase == "backward":
            dx, ds0 = layer.backward(args["dy"], args["dstate"])
            dx_ref, ds0_ref = ref.backward(args["dy"], args["dstate"])
            assert_close(dx, dx_ref, c.dtype, "dx")
            for k in ref.grads:
                assert_close(layer.grads[k], ref.grads[k], c.dtype, f"grads[{k}]")
        assert_valid_call_matches(layer, ref, c, rng, f"valid call after the bad {which}")
