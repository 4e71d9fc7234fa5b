"""Data-parallel training on two MPI ranks: `fit(..., distributed=True)` and `seqcore train
--distributed` against one process trained on the union of the ranks' batches."""
import os
import subprocess
import sys

import numpy as np
import pytest

import mpi_fit_worker as W
import seqcore
from test_distributed import SITE, TIMEOUT, _env, _launch_options, _mpiexec, _run, read_json

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi_fit_worker.py")


def launch(mode, outdir, ranks=2, check=True):
    options, variables = _launch_options()
    rc, out, err, seconds = _run([_mpiexec(), "-n", str(ranks), *options, sys.executable,
                                  WORKER, mode, str(outdir)], _env(**variables))
    if check:
        assert rc == 0, f"{mode}: exit {rc}\n{out}\n{err}"
    return rc, out, err, seconds


def ranks_params(outdir, ranks=2):
    params = [dict(np.load(outdir / f"rank{r}.npz")) for r in range(ranks)]
    for other in params[1:]:                      # every rank holds the same model, bitwise
        assert other.keys() == params[0].keys()
        for name in params[0]:
            assert np.array_equal(other[name], params[0][name]), name
    return params[0]


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-9), (np.float32, 2e-4)])
def test_two_ranks_of_b_streams_train_as_one_process_of_2b(dtype, rtol, tmp_path):
    launch("lm_stream64" if dtype == np.float64 else "lm_stream32", tmp_path)
    two = ranks_params(tmp_path)
    model, history = W.lm_stream(4, False, dtype)
    for name, p, _ in model.parameters():
        scale = np.abs(p).max()
        np.testing.assert_allclose(two[name], p, rtol=rtol, atol=rtol * scale, err_msg=name)
    got = read_json(tmp_path)[0]
    np.testing.assert_allclose(got["loss"], history["loss"], rtol=rtol)
    np.testing.assert_allclose(got["valid_loss"], history["valid_loss"], rtol=rtol)
    n_params = sum(p.size for _, p, _ in model.parameters())
    assert got["allreduce_bytes"] >= 20 * n_params * np.dtype(dtype).itemsize


def test_four_oversubscribed_ranks_of_one_stream_train_as_one_process_of_four(tmp_path):
    launch("lm_stream64_by4", tmp_path, ranks=4)
    four = ranks_params(tmp_path, ranks=4)
    model, _ = W.lm_stream(4, False)
    for name, p, _ in model.parameters():
        np.testing.assert_allclose(four[name], p, rtol=1e-9, atol=1e-9 * np.abs(p).max(),
                                   err_msg=name)


def test_two_ranks_of_a_classifier_train_as_one_process_on_the_union(tmp_path):
    launch("classifier", tmp_path)
    two = ranks_params(tmp_path)
    model, _ = W.classifier(12, False)
    for name, p, _ in model.parameters():
        np.testing.assert_allclose(two[name], p, rtol=1e-9, atol=1e-12, err_msg=name)


def test_every_model_trains_data_parallel_with_the_ranks_in_step(tmp_path):
    launch("others", tmp_path)
    two = ranks_params(tmp_path)
    one = W.other_models(False)
    assert two.keys() == one.keys()
    assert any(not np.allclose(two[k], one[k]) for k in one)   # half the data per rank: moved


def test_a_data_parallel_run_with_dropout_resumes_exactly(tmp_path):
    launch("dropout_whole", tmp_path / "whole" if (tmp_path / "whole").mkdir() is None else None)
    launch("dropout_resumed", tmp_path / "split" if (tmp_path / "split").mkdir() is None else None)
    whole, resumed = ranks_params(tmp_path / "whole"), ranks_params(tmp_path / "split")
    for name, p in whole.items():
        assert np.array_equal(resumed[name], p), name
    run = seqcore.load(tmp_path / "split" / "run.npz").run
    assert len(run["ranks"]) == 2 and run["batches"] == 8
    assert run["ranks"][0]["generator"] != run["ranks"][1]["generator"]   # masks of its own


def test_an_error_on_one_rank_ends_every_rank(tmp_path):
    rc, out, err, seconds = launch("failing", tmp_path, check=False)
    assert rc != 0 and seconds < TIMEOUT / 2, (rc, seconds, out, err)
    assert "ZeroDivisionError" in err and "[rank 1]" in err, (rc, out, err)


@pytest.mark.parametrize("mode, where", [("fails_before_fit", "before fit"),
                                         ("failing", "inside fit"),
                                         ("fails_after_fit", "after fit")])
def test_an_uncaught_error_on_one_rank_ends_the_job(mode, where, tmp_path):
    # Rank 0 waits in a collective (fit's first one, an Allreduce, the collective save)
    # that rank 1 never reaches: the job ends only if rank 1's failure ends rank 0.
    rc, out, err, seconds = launch(mode, tmp_path, check=False)
    assert rc != 0, err
    assert seconds < TIMEOUT / 2, f"{where}: took {seconds:.1f} s to end"
    assert "seqcore.distributed: rank 1 of 2 failed, stopping every rank: " in err, (rc, out, err)
    assert "[rank 1] Traceback (most recent call last):" in err
    if where != "inside fit":
        assert f"ValueError: made to fail {where} on rank 1" in err
    assert not (tmp_path / "never.npz").exists()


def _train_cmd(corpus, out, batch_size, *extra):
    return ["-m", "seqcore", "train", str(corpus), "--stream", "--layers", "2", "--hidden", "16",
            "--embedding", "16", "--steps", "12", "--seq-len", "8", "--seed", "4",
            "--eval-every", "6", "--samples", "0", "--no-progress", "--batch-size",
            str(batch_size), "--out", str(out), *extra]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(W.TEXT * 2, encoding="utf-8")
    return path


def test_the_command_line_on_two_ranks_matches_one_process(corpus, tmp_path):
    options, variables = _launch_options()
    rc, out, err, _ = _run([_mpiexec(), "-n", "2", *options, sys.executable,
                            *_train_cmd(corpus, tmp_path / "two.npz", 3, "--distributed")],
                           _env(**variables))
    assert rc == 0, err
    assert out.count("model saved to") == 1 and "2 ranks:" in out     # rank 0 alone prints
    rc, out, err, _ = _run([sys.executable, *_train_cmd(corpus, tmp_path / "one.npz", 6)], _env())
    assert rc == 0, err
    two, one = seqcore.load(tmp_path / "two.npz"), seqcore.load(tmp_path / "one.npz")
    for (name, a, _), (_, b, _) in zip(two.parameters(), one.parameters()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=name)


def test_one_rank_is_a_plain_run_bit_for_bit(corpus, tmp_path):
    options, variables = _launch_options()
    rc, out, err, _ = _run([_mpiexec(), "-n", "1", *options, sys.executable,
                            *_train_cmd(corpus, tmp_path / "mpi.npz", 3, "--distributed")],
                           _env(**variables))
    assert rc == 0, err
    rc, out, err, _ = _run([sys.executable, *_train_cmd(corpus, tmp_path / "plain.npz", 3)],
                           _env())
    assert rc == 0, err
    for (name, a, _), (_, b, _) in zip(seqcore.load(tmp_path / "mpi.npz").parameters(),
                                       seqcore.load(tmp_path / "plain.npz").parameters()):
        assert np.array_equal(a, b), name


def test_distributed_without_mpi4py_is_one_line_naming_the_extra(corpus, tmp_path):
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "from seqcore.cli import main\n"
            f"sys.exit(main({['train', str(corpus), '--distributed', '--steps', '1']!r}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(), cwd=SITE, timeout=TIMEOUT)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'seqcore[mpi]'" in lines[0]
