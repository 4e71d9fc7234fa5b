"""pytest-benchmark: PyTorch on the same cases (run this file in its own pytest process:
an OpenBLAS-based core and PyTorch in one process slow each other down)."""
import pytest

torch = pytest.importorskip("torch")

from threadpoolctl import threadpool_info  # noqa: E402

from conftest import cases, run_case  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def torch_threads():
    # As `seqcore bench`: as many PyTorch threads as seqcore's BLAS has.
    blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    if blas:
        torch.set_num_threads(blas[0])


@pytest.mark.parametrize("case", cases())
def test_torch(benchmark, case):
    run_case(benchmark, "torch", case)
