"""Test the installed seqcore when this source tree has no compiled core.

`python -m pytest` puts the current directory on sys.path (and pytest puts this
file's directory there to import it), so from the root of a clone the source tree's
``seqcore/`` would shadow the package that `pip install .` built and installed; the
source tree has no compiled modules and `import seqcore` would fail. When this tree
holds no compiled core but an installed seqcore exists elsewhere on sys.path, drop
this directory from sys.path so that the tests import the installed one. A tree
built in place (`python setup.py build_ext --inplace`, `pip install -e .`) is
tested as it is; with no build anywhere, `import seqcore` says what to do.
"""
import importlib.machinery
import os
import sys

_ROOT = os.path.dirname(os.path.abspath(__file__))


def _has_compiled_core(package_dir):
    names = set(os.listdir(package_dir)) if os.path.isdir(package_dir) else set()
    return any(f"_checks{suffix}" in names for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def _is_root(entry):
    try:
        return os.path.samefile(entry or os.curdir, _ROOT)
    except OSError:
        return False


def _use_installed_seqcore():
    if _has_compiled_core(os.path.join(_ROOT, "seqcore")):
        return
    elsewhere = [p for p in sys.path if not _is_root(p)]
    spec = importlib.machinery.PathFinder.find_spec("seqcore", elsewhere)
    if spec is None or not spec.submodule_search_locations:
        return                  # nothing installed: let `import seqcore` explain
    if not any(_has_compiled_core(d) for d in spec.submodule_search_locations):
        return
    sys.path[:] = elsewhere
    for name in [m for m in sys.modules if m == "seqcore" or m.startswith("seqcore.")]:
        del sys.modules[name]
    importlib.invalidate_caches()


_use_installed_seqcore()
