"""The benchmark harness (seqcore.bench) runs, checks agreement, and writes its JSON.

Not a timed test: a tiny configuration, one round; what is checked is the machinery.
"""
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import pytest

import seqcore
from seqcore import _dispatch
from seqcore.bench import layers as bench
from seqcore.cli import bench as bench_cli

HAS_TORCH = importlib.util.find_spec("torch") is not None


def run_bench(tmp_path, *args):
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "seqcore.bench", "--quick", "--shape", "3,4,5,6", "--rounds", "1",
         "--settle", "0", "--json", str(out), *args],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        # the workers import the same seqcore as this test run, wherever it is installed
        env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(seqcore.__file__))))
    return proc, (json.loads(out.read_text()) if out.exists() else None)


def test_gemm_flops_formula():
    # forward: 2*T*B*G*H*(D+H) per layer and direction; fwd+bwd: 3x; step: T = B = 1
    case = dict(cell="lstm", op="forward", B=2, T=3, D=5, H=7, num_layers=1,
                bidirectional=False)
    assert bench.gemm_flops(case) == 2 * 3 * 2 * 4 * 7 * (5 + 7)
    assert bench.gemm_flops(dict(case, op="fwd+bwd")) == 3 * bench.gemm_flops(case)
    assert bench.gemm_flops(dict(case, op="step")) == 2 * 4 * 7 * (5 + 7)
    two = dict(case, num_layers=2, bidirectional=True)     # layer 1 reads 2H features
    assert bench.gemm_flops(two) == 2 * (2 * 3 * 2 * 4 * 7 * (5 + 7)) + \
        2 * (2 * 3 * 2 * 4 * 7 * (14 + 7))


def test_ratios_are_paired_by_round():
    # A slowdown striking round 2 for both sides, then one striking torch's turn only:
    # the ratio of the overall medians reads 1.5, the paired ratio the true 0.5.
    sc, torch = [1.0, 3.0, 3.0, 1.0, 1.0], [2.0, 2.0, 6.0, 2.0, 2.0]
    assert bench.paired_ratio(sc, torch) == pytest.approx(0.5)
    sc, torch = [1.0, 3.0, 3.0], [2.0, 2.0, 6.0]
    assert statistics.median(sc) / statistics.median(torch) == pytest.approx(1.5)
    assert bench.paired_ratio(sc, torch) == pytest.approx(0.5)
    # The reference runs the first rounds only: pairs are taken while both ran.
    assert bench.paired_ratio([1.0, 1.0, 9.0, 9.0], [4.0, 4.0]) == pytest.approx(0.25)
    assert bench.paired_ratio([1.0], []) is None


def test_every_configuration_of_the_issue_is_there():
    cases = bench.make_cases(list(bench.CONFIGS), list(bench.CELLS))
    names = {(c["config"], c["cell"], c["op"]) for c in cases}
    assert ("large", "lstm", "fwd+bwd") in names
    assert ("step", "gru", "step") in names
    assert ("medium-bidir", "lstm-peep", "forward") in names
    assert bench.CONFIGS["medium"] == dict(B=64, T=100, D=256, H=512, dtype="float32")


def test_runs_and_writes_json(tmp_path):
    sides = "seqcore,reference,torch" if HAS_TORCH else "seqcore,reference"
    proc, doc = run_bench(tmp_path, "--sides", sides, "--cells", "lstm,gru")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sc/ref" in proc.stdout and "machine:  sgemm" in proc.stdout
    assert "%gemm ref" in proc.stdout and ("%gemm torch" in proc.stdout) == HAS_TORCH
    meta = doc["meta"]
    assert meta["gemm"]["sgemm"] > 0 and meta["gemm"]["dgemm"] > 0
    assert meta["threads"] >= 1 and set(meta["workers"]) == set(sides.split(","))
    assert doc["failures"] == []
    assert [(r["cell"], r["op"]) for r in doc["results"]] == [
        ("lstm", "forward"), ("lstm", "fwd+bwd"), ("gru", "forward"), ("gru", "fwd+bwd")]
    for r in doc["results"]:
        for s in sides.split(","):
            assert r["status"][s] == "ok"
            assert r["median_s"][s] > 0 and len(r["times"][s]) >= 1
        assert r["agreement"]["seqcore"]["y"] < 1e-4
        assert r["ratio_reference"] > 0 and r["gflops"]["seqcore"] > 0
        for s in sides.split(","):
            assert len(r["round_medians"][s]) == 1
            assert r["pct_gemm"][s] == pytest.approx(
                100 * r["gflops"][s] / meta["gemm"]["sgemm"])
        # one round: the paired ratio is the ratio of the round's medians
        assert r["ratio_reference"] == pytest.approx(r["ratio_reference_of_medians"])
        assert r["foreign_load"] is None or 0 <= r["foreign_load"] <= 1
        if r["op"] == "fwd+bwd":
            assert set(r["agreement"]["seqcore"]) == {"y", "dx", "dW"}
            assert r["peak_bytes"]["seqcore"] is not None
        if HAS_TORCH:
            assert r["ratio_torch"] > 0
            # PyTorch has the reset-after GRU only: timed, marked closest, not compared.
            assert r["torch_exact"] == (r["cell"] == "lstm")
            if r["cell"] == "gru":
                assert r["agreement"]["torch"].startswith("n/a")
            else:
                assert r["agreement"]["torch"]["y"] < 1e-4


@pytest.mark.parametrize("path", _dispatch.supported())
def test_a_forced_kernel_path_is_run_and_recorded(tmp_path, path):
    """--kernels runs seqcore's side on that path; below the CPU's best the other sides
    get the limits of a CPU of that path (ISA_LIMITS), and the header and JSON say so."""
    sides = "seqcore,torch" if HAS_TORCH else "seqcore,reference"
    proc, doc = run_bench(tmp_path, "--sides", sides, "--cells", "rnn", "--no-memory",
                          "--kernels", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    meta = doc["meta"]
    best = _dispatch.supported()[0]
    assert meta["kernels"] == path and meta["workers"]["seqcore"]["kernels"] == path
    assert meta["cpu_supports"] == list(_dispatch.supported())
    assert f"kernels:  seqcore's {path} path" in proc.stdout
    assert ("forced (the CPU's best is" in proc.stdout) == (path != best)
    limits = bench.ISA_LIMITS.get(path, {}) if path != best else {}
    assert meta["isa_limits"] == limits
    assert ("limits:   the other sides held" in proc.stdout) == bool(limits)
    if limits and HAS_TORCH:        # PyTorch's worker really runs under them
        assert meta["workers"]["torch"]["cpu_capability"] == limits["ATEN_CPU_CAPABILITY"]


def test_agreement_check_catches_a_mismatched_side(tmp_path):
    side = "seqcore"
    proc, doc = run_bench(tmp_path, "--sides", f"reference,{side}", "--cells", "rnn",
                          "--no-memory", "--perturb", side)
    assert proc.returncode == 1
    assert "OUTPUTS DISAGREE" in proc.stdout and "MISMATCH" in proc.stdout
    assert len(doc["failures"]) == 2                       # forward and fwd+bwd
    for r in doc["results"]:
        assert r["mismatch"] == [side] and r["status"][side] == "mismatch"
        assert side not in r["median_s"] and r["status"]["reference"] == "ok"


def test_cli_is_registered():
    from seqcore.cli import build_parser
    args = build_parser().parse_args(["bench", "--quick", "--only", "small", "--json", ""])
    assert args.func is bench_cli.run and args.quick and args.only == "small"


def _busy_loops():
    """pids of this machine's busy processes of `seqcore bench --load`."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if b"while os.getppid() == parent:" in f.read():
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_busy_processes_run_inside_and_stop_after_even_on_an_error():
    with bench.busy_processes(2) as procs:
        assert len(procs) == 2 and all(p.poll() is None for p in procs)
        deadline = time.monotonic() + 10      # a child shows its command once it has exec'd
        while not set(p.pid for p in procs) <= set(_busy_loops()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert set(p.pid for p in procs) <= set(_busy_loops())
    assert all(p.returncode is not None for p in procs)
    with pytest.raises(KeyboardInterrupt):
        with bench.busy_processes(1) as procs:
            raise KeyboardInterrupt          # what Ctrl-C raises in the benchmark
    assert procs[0].returncode is not None and procs[0].pid not in _busy_loops()
    with bench.busy_processes(1, "spin") as procs:
        assert procs[0].poll() is None
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="load"):
            with bench.busy_processes(bad):
                pass
    with pytest.raises(ValueError, match="kind"):
        with bench.busy_processes(1, "idle"):
            pass


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_load_option_runs_the_benchmark_beside_busy_processes(tmp_path):
    before = set(_busy_loops())
    proc, doc = run_bench(tmp_path, "--sides", "seqcore", "--cells", "lstm", "--load", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "load:     1 busy process(es) beside the benchmark (bursty" in proc.stdout
    assert doc["meta"]["load"] == 1 and doc["meta"]["load_kind"] == "bursty"
    assert doc["failures"] == []
    assert set(_busy_loops()) <= before                  # none left behind


def test_onnx_mode_times_seqcore_against_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    proc, doc = run_bench(tmp_path, "--onnx", "--cells", "lstm-peep,gru", "--no-memory")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert doc["meta"]["sides"] == ["seqcore", "onnxruntime"]
    assert doc["meta"]["workers"]["onnxruntime"]["onnxruntime"]
    assert {r["op"] for r in doc["results"]} == {"forward"}        # no backward in onnxruntime
    for r in doc["results"]:
        assert r["status"] == {"seqcore": "ok", "onnxruntime": "ok"}
        assert max(r["agreement"]["onnxruntime"].values()) < 2e-3
        assert r["ratio_onnxruntime"] > 0
    assert "sc/ort" in proc.stdout


def test_onnxruntime_rows_it_cannot_run_are_marked_not_failed(tmp_path):
    pytest.importorskip("onnxruntime")
    proc, doc = run_bench(tmp_path, "--sides", "seqcore,onnxruntime", "--cells", "rnn",
                          "--no-memory")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    by_op = {r["op"]: r for r in doc["results"]}
    assert by_op["fwd+bwd"]["status"]["onnxruntime"] == "n/a"
    assert by_op["forward"]["status"]["onnxruntime"] == "ok"
    assert not doc["failures"]


def test_a_wrong_onnxruntime_side_fails_the_check(tmp_path):
    pytest.importorskip("onnxruntime")
    proc, doc = run_bench(tmp_path, "--onnx", "--cells", "gru-ra", "--no-memory",
                          "--perturb", "onnxruntime")
    assert proc.returncode == 1
    assert doc["results"][0]["mismatch"] == ["onnxruntime"]


def test_baseline_times_a_second_build_side_by_side(tmp_path):
    """--baseline PATH: the seqcore at PATH (here this same one) as a side of its own,
    checked against the reference like the others, with its ratio sc/base."""
    here = os.path.dirname(os.path.dirname(seqcore.__file__))
    proc, doc = run_bench(tmp_path, "--sides", "seqcore,reference", "--cells", "gru",
                          "--baseline", here, "--no-memory")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert doc["meta"]["sides"] == ["seqcore", "baseline", "reference"]
    for r in doc["results"]:
        assert r["status"]["baseline"] == "ok"
        assert max(r["agreement"]["baseline"].values()) < 2e-3
        assert r["ratio_baseline"] > 0
    assert "sc/base" in proc.stdout


def test_baseline_must_hold_a_seqcore(tmp_path):
    proc, doc = run_bench(tmp_path, "--sides", "seqcore", "--baseline", str(tmp_path))
    assert proc.returncode != 0 and doc is None
    assert "--baseline" in proc.stderr and "holds no seqcore package" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc, _ = run_bench(tmp_path, "--train", "--baseline", str(tmp_path))
    assert proc.returncode != 0 and "--train does not take it" in proc.stderr
