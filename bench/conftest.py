"""pytest-benchmark suite of seqcore (`pytest bench/ --benchmark-only`): shared cases.

Not collected by the default `pytest` run (testpaths = tests). These benchmarks run
in-process, for tracking one side over time (`--benchmark-autosave`,
`--benchmark-compare`); the cross-library comparison, with each side in its own
process and outputs checked first, is `seqcore bench`.

By default the suite covers small, stream and step (and medium for seqcore and
PyTorch); SEQCORE_BENCH_ALL=1 adds every configuration of `seqcore bench`.
"""
import os

import pytest

from seqcore.bench import layers as bench

ALL = os.environ.get("SEQCORE_BENCH_ALL") == "1"
DEFAULT_CONFIGS = ("small", "medium", "stream", "step")


def cases(configs=None):
    names = configs or (list(bench.CONFIGS) if ALL else DEFAULT_CONFIGS)
    return [pytest.param(c, id=bench.case_label(c).replace("/", "-"))
            for c in bench.make_cases(names, list(bench.CELLS))]


def run_case(benchmark, side, case):
    """Build `case` for `side` exactly as `seqcore bench`'s worker does, and benchmark one call."""
    w = bench.Worker(side)
    w.cmd_setup({"case": case})
    w.cmd_check({})                            # one call on the fixed input, one warm-up
    benchmark.extra_info.update(
        gflop_per_call=case["flops"] * (bench.STEP_TOKENS if case["op"] == "step" else 1) / 1e9,
        tokens_per_call=bench.STEP_TOKENS if case["op"] == "step" else None,
        torch_exact=w.exact)
    benchmark(w.run)
