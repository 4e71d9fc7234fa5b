"""The compiled core is really there, really compiled, and there is no silent fallback."""
import importlib.machinery
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import seqcore
from seqcore import _kernels


# Every kernel path is built on x86-64, even those this CPU cannot run (one build
# serves every CPU); elsewhere the generic one only.
X86_64 = platform.machine().lower() in ("x86_64", "amd64")
BUILT_PATHS = _kernels.PATHS if X86_64 else ("generic",)
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize("path", BUILT_PATHS)
@pytest.mark.parametrize("name", _kernels.KERNELS)
def test_every_kernel_path_is_built(name, path):
    """Each path's module file is there, whether or not this CPU can run it (its import
    is tested only where it can: below, and under emulation by tests/kernels/emulated.sh)."""
    folder = os.path.join(os.path.dirname(_kernels.__file__), path)
    files = [os.path.join(folder, name + suffix)
             for suffix in importlib.machinery.EXTENSION_SUFFIXES]
    assert any(os.path.isfile(f) for f in files), f"no compiled module among {files}"


@pytest.mark.parametrize("path", BUILT_PATHS)
@pytest.mark.parametrize("name", _kernels.KERNELS)
def test_a_path_imports_where_the_cpu_runs_it_and_is_refused_elsewhere(name, path):
    if path not in seqcore.cpu_info()["supported"]:
        with pytest.raises(_kernels.UnsupportedCPU, match=f"cannot run the {path} kernels"):
            importlib.import_module(f"seqcore._kernels.{path}.{name}")
        return
    mod = importlib.import_module(f"seqcore._kernels.{path}.{name}")
    assert isinstance(mod.__loader__, importlib.machinery.ExtensionFileLoader)
    assert mod.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    if name in _kernels.CELLS:
        assert callable(getattr(mod, f"{name}_forward"))


def run_python(code, tmp_path, *args):
    """`code` (or a script with args) in a fresh interpreter that imports this seqcore."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(seqcore.__file__)))
    env.pop("SEQCORE_CPU", None)
    command = [sys.executable, *args] if code is None else [sys.executable, "-c", code]
    return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=300)


def test_a_path_the_cpu_lacks_is_refused_before_its_code_loads(tmp_path):
    """A CPU without AVX-512 (faked: seqcore._kernels.cpu answers for it): importing an
    avx512 module by name, as a package walk or a user would, raises UnsupportedCPU and
    leaves the compiled module unloaded; the avx2 modules import."""
    code = ("import importlib, sys, types\n"
            "cpu = types.ModuleType('seqcore._kernels.cpu')\n"
            "cpu.supported_paths = lambda: ('avx2', 'generic')\n"
            "cpu.brand = lambda: 'Test CPU without AVX-512'\n"
            "sys.modules['seqcore._kernels.cpu'] = cpu\n"
            "import seqcore\n"
            "for name in ('seqcore._kernels.avx512', 'seqcore._kernels.avx512.lstm',\n"
            "             'seqcore._kernels.avx512.train'):\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except seqcore._kernels.UnsupportedCPU as exc:\n"
            "        print('refused', name, '|', exc)\n"
            "importlib.import_module('seqcore._kernels.avx2.train')\n"
            "print(sorted(m for m in sys.modules if m.startswith('seqcore._kernels.a')))\n")
    proc = run_python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(" | ")[0] for line in lines[:3]] == [
        "refused seqcore._kernels.avx512", "refused seqcore._kernels.avx512.lstm",
        "refused seqcore._kernels.avx512.train"]
    assert "Test CPU without AVX-512 cannot run the avx512 kernels (it runs avx2, " \
           "generic)" in lines[0]
    # nothing of the avx512 path was loaded; the avx2 path (the best) was
    assert lines[3] == str(["seqcore._kernels.avx2", "seqcore._kernels.avx2.gru",
                            "seqcore._kernels.avx2.lstm", "seqcore._kernels.avx2.rnn",
                            "seqcore._kernels.avx2.train"])


def test_every_module_of_the_package_imports(tmp_path):
    """The walk of tests/kernels/emulated.sh, on this CPU: every module imports (a path this
    CPU lacks is refused with ImportError), none is missed by the walk."""
    refused = [p for p in BUILT_PATHS if p not in seqcore.cpu_info()["supported"]]
    proc = run_python(None, tmp_path, os.path.join(HERE, "import_every_module.py"),
                      "--refused", *refused)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = proc.stdout.splitlines()[0]
    imported = int(summary.split()[0])
    assert imported >= 40 and ", 0 unexpected;" in summary, summary


def test_default_backend_is_the_compiled_core():
    layer = seqcore.LSTM(3, 4)
    assert layer.backend == "cython"
    assert type(layer._kernels).__name__ == "module"
    assert layer._kernels.__name__ == f"seqcore._kernels.{seqcore.cpu_info()['kernels']}.lstm"
    assert isinstance(layer._kernels.__loader__, importlib.machinery.ExtensionFileLoader)


def test_missing_core_fails_loudly(tmp_path):
    """With the compiled modules unimportable, `import seqcore` says so instead of falling back."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith(('seqcore._kernels.avx512.', 'seqcore._kernels.avx2.',\n"
        "                             'seqcore._kernels.generic.')):\n"
        "            raise ImportError('blocked for the test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import seqcore\n"
    )
    # Import the same seqcore this test run imports, wherever it is installed.
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(seqcore.__file__)))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env=env)
    assert proc.returncode != 0
    assert "has not been built correctly" in proc.stderr


def test_core_keeps_the_dtype_end_to_end():
    for dtype in (np.float32, np.float64):
        layer = seqcore.GRU(3, 4, dtype=dtype)
        y, h = layer.forward(np.zeros((2, 1, 3), dtype))
        assert y.dtype == dtype and h.dtype == dtype
        dx, dh = layer.backward(np.ones_like(y))
        assert dx.dtype == dtype and dh.dtype == dtype
