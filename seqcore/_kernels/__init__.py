"""The compiled core: one subpackage per kernel path, each refusing its import on a CPU
that cannot run it.

A path's modules (``seqcore._kernels.avx512.lstm``, ...) are compiled whole with that
path's instruction set (setup.py), so the compiler may use it anywhere in them, their
initialisation included: loading one on a CPU without it would kill the process with
SIGILL. Python imports a package before any module in it, so each path's
``__init__.py`` asks ``seqcore._kernels.cpu`` (built for the x86-64 baseline) first and
raises :class:`UnsupportedCPU`, an ImportError, where the CPU lacks the path. Whatever
imports a module of the package (seqcore's dispatch, ``pkgutil.walk_packages``,
``pydoc``, a documentation generator, a user) gets that error instead of a signal.
"""

from .layout import CELLS, KERNELS, PATHS

__all__ = ["CELLS", "KERNELS", "PATHS", "UnsupportedCPU", "require"]


class UnsupportedCPU(ImportError):
    """A kernel path's modules were imported on a CPU that cannot run them."""


def require(path):
    """Raise UnsupportedCPU unless this CPU runs the kernel path `path`.

    Called by each path's ``__init__.py`` before any of its compiled modules loads."""
    from . import cpu                  # the baseline module: safe on every x86-64 CPU
    supported = cpu.supported_paths()
    if path not in supported:
        name = cpu.brand() or "this CPU"
        raise UnsupportedCPU(
            f"seqcore._kernels.{path}: {name} cannot run the {path} kernels (it runs "
            f"{', '.join(supported)}); seqcore chooses a path the CPU runs by itself "
            f"(seqcore.cpu_info()), so nothing needs to import this one.")
