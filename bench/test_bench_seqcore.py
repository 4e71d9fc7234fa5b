"""pytest-benchmark: seqcore's compiled core, and its NumPy reference on the small cases."""
import pytest

from conftest import ALL, cases, run_case


@pytest.mark.parametrize("case", cases())
def test_seqcore(benchmark, case):
    run_case(benchmark, "seqcore", case)


@pytest.mark.parametrize("case", cases(None if ALL else ("small", "stream", "step")))
def test_reference(benchmark, case):
    run_case(benchmark, "reference", case)
