"""Kernel paths: which compiled kernel set runs, chosen once at import from the CPU.

The build holds every cell's kernels once per path (setup.py):
``seqcore._kernels.{path}.{cell}`` for ``avx512`` (AVX-512 F/BW/DQ/VL, 32 zmm registers), ``avx2`` (AVX2 + FMA, 16 ymm)
and ``generic`` (the x86-64 baseline, or any other architecture). At import the best
path the CPU runs is chosen, or the one ``SEQCORE_CPU`` names, as PyTorch's
``ATEN_CPU_CAPABILITY`` and oneDNN's ``ONEDNN_MAX_CPU_ISA`` let a user force a lower one.
A forced path the CPU cannot run is refused at import, before any of its code runs;
so is an import of such a path's modules by name (seqcore._kernels).
"""

import contextlib
import os

from ._build_check import import_compiled
from ._kernels import CELLS, PATHS

ENV = "SEQCORE_CPU"

_cpu = import_compiled("_kernels.cpu")
_modules = {}           # path -> {cell: module}, the paths imported so far
_active = None          # the path new layers use
_threads = 1            # the core's threads: every kernel call is given this count


def supported():
    """The kernel paths this CPU can run, best first."""
    return tuple(p for p in PATHS if p in _cpu.supported_paths())


def choose(environ=os.environ):
    """The path to use: SEQCORE_CPU if set (it must be one the CPU runs), else the best."""
    paths = supported()
    wanted = environ.get(ENV, "").strip().lower()
    if not wanted:
        return paths[0]
    if wanted not in PATHS:
        raise ImportError(f"{ENV}={wanted!r} is not a kernel path: expected one of "
                          f"{', '.join(PATHS)} (this CPU's best is {paths[0]}).")
    if wanted not in paths:
        name = _cpu.brand() or "this CPU"
        raise ImportError(f"{ENV}={wanted}: {name} cannot run the {wanted} kernels. Its "
                          f"best path is {paths[0]} (it supports {', '.join(paths)}); "
                          f"unset {ENV} or set it to one of those.")
    return wanted


def _load(path):
    """The kernel modules of a path, imported on first use."""
    if path not in _modules:
        _modules[path] = {cell: import_compiled(f"_kernels.{path}.{cell}") for cell in CELLS}
    return _modules[path]


def activate(path):
    """Make `path` the one new layers use (it must be supported)."""
    global _active
    if path not in supported():
        raise ValueError(f"kernel path {path!r}: this CPU runs {', '.join(supported())}")
    _load(path)
    _active = path


@contextlib.contextmanager
def use(path):
    """Context manager: layers made inside run `path` (tests and benchmarks compare paths).
    It switches the process-wide path: not for use from several threads at once."""
    old = _active
    activate(path)
    try:
        yield
    finally:
        activate(old)


def active():
    """The path new layers use."""
    return _active


def kernels(cell):
    """The active path's module of ``{cell}_forward`` / ``{cell}_backward``."""
    return _modules[_active][cell]


_other_modules = {}     # (kernel path, name) -> seqcore._kernels.{path}.{name}


def _kernel_module(name):
    """The active path's seqcore._kernels.{path}.{name} (loaded on first use, loudly
    if not built)."""
    module = _other_modules.get((_active, name))
    if module is None:
        module = _other_modules[_active, name] = import_compiled(f"_kernels.{_active}.{name}")
    return module


def train_kernels():
    """The active path's seqcore._kernels.{path}.train: Dense, softmax cross-entropy,
    Adam, the global norm and the embedding's scatter."""
    return _kernel_module("train")


def ctc_kernels():
    """The active path's seqcore._kernels.{path}.ctc: CTC's loss and gradient."""
    return _kernel_module("ctc")


def set_num_threads(n):
    """Sets the process's one thread count, which the callers of every kernel pass it
    (the kernels keep none)."""
    global _threads
    _threads = n if n > 0 else 1


def get_num_threads():
    return _threads


def cpu_info():
    """What the compiled core runs on.

    Returns
    -------
    dict
        ``"kernels"``: the kernel path in use (``"avx512"``, ``"avx2"`` or
        ``"generic"``); ``"supported"``: the paths this CPU can run, best first;
        ``"threads"``: the core's threads; ``"cpu"``: the processor's name (None when
        unknown); ``"forced"``: whether ``SEQCORE_CPU`` chose the path.

    Examples
    --------
    >>> import seqcore
    >>> info = seqcore.cpu_info()
    >>> info["kernels"] in info["supported"]
    True
    """
    return {"kernels": _active, "supported": list(supported()),
            "threads": get_num_threads(), "cpu": _cpu.brand() or None,
            "forced": bool(os.environ.get(ENV, "").strip())}


activate(choose())
