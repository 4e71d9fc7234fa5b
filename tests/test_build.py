"""The compiled core is really there, really compiled, and there is no silent fallback."""
import importlib.machinery
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

import seqcore


# Every kernel path is built on x86-64, even those this CPU cannot run (one build
# serves every CPU); elsewhere the generic one only.
X86_64 = platform.machine().lower() in ("x86_64", "amd64")
BUILT_PATHS = seqcore._dispatch.PATHS if X86_64 else ("generic",)


@pytest.mark.parametrize("path", BUILT_PATHS)
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_core_is_a_compiled_extension_module(cell, path):
    mod = importlib.import_module(f"seqcore._{cell}_{path}")
    assert isinstance(mod.__loader__, importlib.machinery.ExtensionFileLoader)
    assert mod.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    assert callable(getattr(mod, f"{cell}_forward"))


def test_default_backend_is_the_compiled_core():
    layer = seqcore.LSTM(3, 4)
    assert layer.backend == "cython"
    assert type(layer._kernels).__name__ == "module"
    assert layer._kernels.__name__ == f"seqcore._lstm_{seqcore.cpu_info()['kernels']}"
    assert isinstance(layer._kernels.__loader__, importlib.machinery.ExtensionFileLoader)


def test_missing_core_fails_loudly(tmp_path):
    """With the compiled modules unimportable, `import seqcore` says so instead of falling back."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith(('seqcore._rnn_', 'seqcore._gru_', 'seqcore._lstm_')):\n"
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
