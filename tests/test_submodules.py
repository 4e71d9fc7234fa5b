"""The submodules of docs/spec.md §Submodules are reachable after a plain `import seqcore`, imported on first use."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

import seqcore

SHIPPED = ("interop", "diagnostics", "experiments", "metrics", "distributed")
# where each lives: seqcore.distributed is a short name of seqcore.train.distributed
MODULE = {n: f"seqcore.{n}" for n in SHIPPED} | {"distributed": "seqcore.train.distributed"}
# Named by docs/spec.md §Submodules but not shipped by this version: not attributes.
NOT_SHIPPED = tuple(n for n in ("metrics", "distributed")
                    if importlib.util.find_spec(f"seqcore.{n}") is None)
HAVE_TORCH = importlib.util.find_spec("torch") is not None


def _python(code):
    """Run ``code`` in a fresh interpreter importing this run's seqcore; its stdout as JSON."""
    site = os.path.dirname(os.path.dirname(os.path.abspath(seqcore.__file__)))
    # run where this seqcore is: `python -c` puts the working directory first on
    # sys.path, and a clone's root would shadow the installed package
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=site), cwd=site, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_plain_import_reaches_the_submodules_lazily():
    out = _python(
        "import json, sys\n"
        "import seqcore\n"
        f"names = {SHIPPED!r}\n"
        "before = {n: f'seqcore.{n}' in sys.modules for n in names}\n"
        "before['distributed'] |= 'seqcore.train.distributed' in sys.modules\n"
        "torch_after_import = 'torch' in sys.modules\n"
        "listed = [n for n in names if n in dir(seqcore)]\n"
        "got = {n: getattr(seqcore, n).__name__ for n in names}\n"
        "torch_after_access = 'torch' in sys.modules\n"
        "print(json.dumps(dict(before=before, torch_after_import=torch_after_import,\n"
        "                      listed=listed, got=got, torch_after_access=torch_after_access)))\n"
    )
    assert not any(out["before"].values()), f"imported eagerly: {out['before']}"
    assert out["torch_after_import"] is False, "`import seqcore` imported torch"
    assert out["listed"] == list(SHIPPED)
    assert out["got"] == MODULE
    assert out["torch_after_access"] is False, "reaching seqcore.interop imported torch"


@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
def test_torch_is_imported_when_interop_is_used():
    out = _python(
        "import json, sys\n"
        "import seqcore\n"
        "a = 'torch' in sys.modules\n"
        "m = seqcore.interop.to_torch(seqcore.GRU(2, 3, reset_after=True, seed=0))\n"
        "print(json.dumps(dict(a=a, b='torch' in sys.modules, kind=type(m).__name__)))\n"
    )
    assert out == {"a": False, "b": True, "kind": "GRU"}


def test_readme_spelling_works_in_process():
    assert seqcore.interop.from_torch is sys.modules["seqcore.interop"].from_torch
    assert callable(seqcore.diagnostics.gradient_norms)
    assert callable(seqcore.experiments.run_adding)
    assert set(SHIPPED) <= set(dir(seqcore))


@pytest.mark.parametrize("name", NOT_SHIPPED + ("no_such_module",))
def test_missing_names_are_a_plain_attribute_error(name):
    with pytest.raises(AttributeError, match=f"module 'seqcore' has no attribute '{name}'"):
        getattr(seqcore, name)
    assert not hasattr(seqcore, name)
    assert name not in dir(seqcore)


@pytest.mark.parametrize("short, where", [("optim", "seqcore.train.optim"),
                                          ("distributed", "seqcore.train.distributed"),
                                          ("training", "seqcore.train.loop"),
                                          ("text", "seqcore.data.text"),
                                          ("attention", "seqcore.nn.attention"),
                                          ("io", "seqcore.models.io")])
def test_short_names_are_the_modules_where_they_live(short, where):
    out = _python(
        "import importlib, json, sys\n"
        f"m = importlib.import_module('seqcore.{short}')\n"
        f"w = importlib.import_module('{where}')\n"
        "import seqcore\n"
        f"print(json.dumps(dict(same=m is w and getattr(seqcore, '{short}') is w,\n"
        "                       name=m.__name__, spec=m.__spec__.name)))\n"
    )
    assert out == {"same": True, "name": where, "spec": where}
