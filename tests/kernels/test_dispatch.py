"""Kernel paths: the choice at import, SEQCORE_CPU, cpu_info() and the clear refusal of a
path the CPU cannot run (in subprocesses: the choice is made once, at import)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import seqcore
from seqcore import _dispatch

# Import the same seqcore this test run imports, wherever it is installed.
SITE = os.path.dirname(os.path.dirname(seqcore.__file__))


def run_python(code, tmp_path, **env):
    environ = {k: v for k, v in os.environ.items() if k != "SEQCORE_CPU"}
    environ.update(env, PYTHONPATH=SITE)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env=environ, timeout=120)


def test_cpu_info_names_the_path_in_use():
    info = seqcore.cpu_info()
    assert info["kernels"] in info["supported"]
    assert info["supported"] == [p for p in _dispatch.PATHS if p in info["supported"]]
    assert info["supported"][-1] == "generic"        # every CPU runs the generic path
    assert info["threads"] == seqcore.get_num_threads()
    if not os.environ.get("SEQCORE_CPU"):
        assert info["kernels"] == info["supported"][0]     # the best by default
    assert seqcore.LSTM(2, 3)._kernels.__name__ == f"seqcore._kernels.{info['kernels']}.lstm"


@pytest.mark.parametrize("path", _dispatch.supported())
def test_forcing_a_supported_path_uses_it(path, tmp_path):
    code = ("import seqcore, numpy as np\n"
            "info = seqcore.cpu_info()\n"
            "layer = seqcore.GRU(3, 5)\n"
            "y, _ = layer.forward(np.ones((4, 2, 3), np.float32))\n"
            "print(info['kernels'], info['forced'], layer._kernels.__name__, y.shape)\n")
    proc = run_python(code, tmp_path, SEQCORE_CPU=path.upper())     # any case
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [path, "True", f"seqcore._kernels.{path}.gru", "(4,", "2,", "5)"]


def test_forcing_a_path_the_cpu_lacks_is_one_clear_error(tmp_path):
    """A CPU without AVX-512 (faked: seqcore._kernels.cpu answers for it) asked for the avx512
    kernels: an ImportError naming its best path, and no kernel of the path runs."""
    fake_cpu = ("import sys, types\n"
                "cpu = types.ModuleType('seqcore._kernels.cpu')\n"
                "cpu.supported_paths = lambda: ('avx2', 'generic')\n"
                "cpu.brand = lambda: 'Test CPU without AVX-512'\n"
                "sys.modules['seqcore._kernels.cpu'] = cpu\n")
    proc = run_python(fake_cpu + "import seqcore\n", tmp_path, SEQCORE_CPU="avx512")
    assert proc.returncode == 1, proc.stderr          # an exception, not a crash (signal)
    last = proc.stderr.strip().splitlines()[-1]
    assert last == ("ImportError: SEQCORE_CPU=avx512: Test CPU without AVX-512 cannot run "
                    "the avx512 kernels. Its best path is avx2 (it supports avx2, generic); "
                    "unset SEQCORE_CPU or set it to one of those.")
    # the same fake CPU with no path forced takes its best
    proc = run_python(fake_cpu + "import seqcore; print(seqcore.cpu_info()['kernels'])",
                      tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "avx2", proc.stderr


@pytest.mark.parametrize("path", [p for p in _dispatch.PATHS if p not in _dispatch.supported()]
                         or [None])
def test_forcing_a_path_this_cpu_really_lacks(path, tmp_path):
    """On a CPU that lacks a path for real (none here when it runs all three)."""
    if path is None:
        assert _dispatch.supported() == _dispatch.PATHS
        return
    proc = run_python("import seqcore", tmp_path, SEQCORE_CPU=path)
    assert proc.returncode == 1
    assert f"cannot run the {path} kernels" in proc.stderr


def test_an_unknown_path_is_refused(tmp_path):
    proc = run_python("import seqcore", tmp_path, SEQCORE_CPU="sse9")
    assert proc.returncode == 1
    assert "SEQCORE_CPU='sse9' is not a kernel path: expected one of avx512, avx2, generic" \
        in proc.stderr


def test_choose_reads_the_environment():
    best = _dispatch.supported()[0]
    assert _dispatch.choose({}) == best
    assert _dispatch.choose({"SEQCORE_CPU": " "}) == best
    assert _dispatch.choose({"SEQCORE_CPU": "generic"}) == "generic"
    with pytest.raises(ImportError, match="not a kernel path"):
        _dispatch.choose({"SEQCORE_CPU": "avx-512"})


@pytest.mark.parametrize("path", _dispatch.supported())
def test_thread_count_reaches_every_path(path):
    """The process has one thread count, passed to every kernel call: it holds across a
    switch of paths, and no kernel module keeps a count of its own."""
    old = seqcore.set_num_threads(1)
    try:
        with _dispatch.use(path):
            assert seqcore.get_num_threads() == 1
            seqcore.set_num_threads(2)
        assert seqcore.get_num_threads() == seqcore.cpu_info()["threads"] == 2
        for modules in _dispatch._modules.values():
            assert not any(hasattr(m, "set_num_threads") or hasattr(m, "get_num_threads")
                           for m in modules.values())
    finally:
        seqcore.set_num_threads(old)


def test_paths_give_the_same_results_to_rounding(rng):
    """The paths differ only in the order of their sums: float64 agrees to rounding."""
    x = rng.standard_normal((6, 13, 7))
    outs = []
    for path in _dispatch.supported():
        with _dispatch.use(path):
            layer = seqcore.LSTM(7, 19, dtype=np.float64, seed=0)
            outs.append(layer.forward(x)[0])
    for out in outs[1:]:
        np.testing.assert_allclose(out, outs[0], rtol=1e-13, atol=1e-15)
