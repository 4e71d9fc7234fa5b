"""The training benchmark (`seqcore bench --train`) runs, checks agreement and writes its JSON.

Not a timed test: the tiny configuration, one round; what is checked is the machinery.
"""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

import seqcore
from seqcore.bench import training as bench_train

HAS_TORCH = importlib.util.find_spec("torch") is not None


def run_train_bench(tmp_path, *args):
    out = tmp_path / "train.json"
    proc = subprocess.run(
        [sys.executable, "-m", "seqcore", "bench", "--train", "--only", "tiny", "--rounds", "1",
         "--threads", "1", "--settle", "0", "--json", str(out), *args],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        # the workers import the same seqcore as this test run, wherever it is installed
        env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(seqcore.__file__))))
    return proc, (json.loads(out.read_text()) if out.exists() else None)


def test_configurations_of_the_task_are_there():
    c = bench_train.CONFIGS
    assert {(c[n]["V"], c[n]["H"], c[n]["L"], c[n]["B"], c[n]["S"])
            for n in bench_train.DEFAULT_CONFIGS} == {
        (100, 256, 1, 64, 64), (100, 256, 2, 64, 64), (100, 512, 1, 64, 64),
        (100, 512, 2, 64, 64), (10000, 256, 1, 32, 35), (80, 128, 2, 32, 200)}
    # the transcriber: B 32, T 200 frames, C 80 classes, targets of about 40 labels
    assert c["transcriber"]["ctc"] and (c["transcriber"]["U_MIN"], c["transcriber"]["U_MAX"]) == (30, 50)
    assert c["word"]["E"] == c["word"]["H"] == 256
    assert bench_train.CELLS == ("lstm", "gru")


def test_train_bench_runs_checks_and_reports(tmp_path):
    proc, doc = run_train_bench(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "seqcore bench --train" in proc.stdout and "tok/s" in proc.stdout
    assert doc["meta"]["kernels"] == seqcore.cpu_info()["kernels"]
    assert [(r["config"], r["cell"], r["threads"]) for r in doc["results"]] == [
        ("tiny", "lstm", 1), ("tiny", "gru", 1)]
    sides = ["seqcore", "torch"] if HAS_TORCH else ["seqcore"]
    for r in doc["results"]:
        assert not r["mismatch"]
        for s in sides:
            assert r["tok_s"][s] > 0 and r["peak_mb"][s] > r["growth_mb"][s] > 0
        if HAS_TORCH:
            # checked before timed: the same losses from the same weights and batches
            assert r["check_rel_err"] < 1e-3
            assert r["speedup"] > 0


@pytest.mark.skipif(not HAS_TORCH, reason="the agreement check needs PyTorch")
def test_a_side_that_disagrees_is_not_timed(tmp_path):
    """A deliberately wrong PyTorch model (--perturb torch): checked, not timed, exit 1."""
    proc, doc = run_train_bench(tmp_path, "--cells", "lstm", "--perturb", "torch")
    assert proc.returncode == 1
    assert "MISMATCH" in proc.stdout and "differ" in proc.stdout
    r, = doc["results"]
    assert r["mismatch"] and not r["tok_s"]


@pytest.mark.skipif(not HAS_TORCH, reason="the agreement check needs PyTorch")
def test_transcriber_trains_the_same_in_both(tmp_path):
    """The CTC transcriber (bidirectional, 2 layers) against LSTM/GRU + Linear +
    CTCLoss: the same losses and gradient norm from the same weights, then timed."""
    out = tmp_path / "train.json"
    proc = subprocess.run(
        [sys.executable, "-m", "seqcore", "bench", "--train", "--only", "tiny-ctc",
         "--rounds", "1", "--threads", "1", "--settle", "0", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(seqcore.__file__))))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "transcriber:" in proc.stdout
    doc = json.loads(out.read_text())
    for r in doc["results"]:
        assert not r["mismatch"] and r["check_rel_err"] < 1e-3
        assert r["tok_s"]["seqcore"] > 0 and r["tok_s"]["torch"] > 0
