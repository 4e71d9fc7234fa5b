"""seqcore.distributed on two MPI ranks (mpiexec subprocesses running tests/train/mpi_worker.py), one rank, and without mpi4py."""
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import seqcore
from seqcore import distributed as dist

import mpi_worker as W

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mpi_worker.py")
# Run where the tested seqcore is (the in-place build or the installed package), so the
# subprocesses import the same one.
SITE = os.path.dirname(os.path.dirname(os.path.abspath(seqcore.__file__)))
TIMEOUT = 60
# Variables by which a launcher tells a process it is one of several ranks: a test run
# itself started by a launcher must not hand them on to its subprocesses.
LAUNCHER_PREFIXES = ("OMPI_", "PMI_", "PMIX_", "MPI_LOCAL", "MV2_", "HYDRA_", "SLURM_")


def _mpiexec():
    """The mpiexec beside this Python (where the mpich wheel puts it), else the one on PATH."""
    path = shutil.which("mpiexec", path=os.pathsep.join(
        [os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    assert path, ("no mpiexec: `pip install '.[mpi]'` installs mpi4py and the MPICH runtime "
                  "(mpiexec beside python)")
    return path


@functools.lru_cache(maxsize=None)
def _launch_options():
    """Extra arguments and variables for Open MPI's mpiexec (MPICH's needs none): Open MPI
    refuses to run as root, and more ranks than cores, unless told."""
    version = subprocess.run([_mpiexec(), "--version"], capture_output=True, text=True,
                             timeout=TIMEOUT)
    if "Open MPI" in version.stdout + version.stderr or "OpenRTE" in version.stdout:
        return ["--oversubscribe"], {"OMPI_ALLOW_RUN_AS_ROOT": "1",
                                     "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    return [], {}


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER_PREFIXES)}
    env.update(PYTHONPATH=SITE, SEQCORE_NUM_THREADS="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1")
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


def _run(cmd, env, timeout=TIMEOUT):
    """Run ``cmd`` in its own process group; on timeout end the whole group (launcher and ranks)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=SITE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} still ran after {timeout} s (killed)\n{out}\n{err}")
    return proc.returncode, out, err, time.monotonic() - t0


def mpirun(mode, outdir, ranks=2, check=True, **env):
    options, variables = _launch_options()
    rc, out, err, seconds = _run([_mpiexec(), "-n", str(ranks), *options, sys.executable,
                                  WORKER, mode, str(outdir)], _env(**variables, **env))
    if check:
        assert rc == 0, f"mpiexec -n {ranks} {mode}: exit {rc}\n{out}\n{err}"
    return rc, out, err, seconds


def python(code, **env):
    """Run ``code`` in a plain interpreter (no launcher); returns (exit code, stdout, stderr)."""
    rc, out, err, _ = _run([sys.executable, "-c", code], _env(**env))
    return rc, out, err


def read_json(outdir, ranks=2):
    return [json.loads((outdir / f"rank{r}.json").read_text()) for r in range(ranks)]


def read_npz(outdir, ranks=2):
    return [dict(np.load(outdir / f"rank{r}.npz")) for r in range(ranks)]


# ---------------------------------------------------------------- no MPI needed

@pytest.mark.parametrize("n, size", [(11, 2), (10, 2), (7, 3), (5, 5), (100, 7)])
def test_shard_blocks_are_contiguous_disjoint_and_cover_everything(n, size):
    blocks = [dist.shard(n, rank=r, size=size) for r in range(size)]
    assert [i for b in blocks for i in b] == list(range(n))          # in order, each once
    lengths = [len(b) for b in blocks]
    assert max(lengths) - min(lengths) <= 1 and lengths == sorted(lengths, reverse=True)
    text = "".join(chr(65 + i % 26) for i in range(n))
    assert "".join(dist.shard(text, rank=r, size=size) for r in range(size)) == text
    items = list(range(100, 100 + n))
    assert dist.shard(items, rank=size - 1, size=size) == items[blocks[-1].start:]


def test_shard_refuses_what_it_cannot_split():
    with pytest.raises(ValueError, match="1 items for 2 ranks: every rank needs at least one"):
        dist.shard(1, rank=0, size=2)
    with pytest.raises(ValueError, match=r"rank: expected an integer in \[0, 2\), got 2"):
        dist.shard(5, rank=2, size=2)
    with pytest.raises(ValueError, match="size: expected an integer >= 1, got 0"):
        dist.shard(5, rank=0, size=0)
    with pytest.raises(TypeError, match="expected a sequence or an int, got list_iterator"):
        dist.shard(iter([1, 2]), rank=0, size=2)


def test_rank_seed_keeps_rank_0s_seed_and_gives_the_others_their_own():
    seeds = [dist.rank_seed(7, rank=r) for r in range(4)]
    assert seeds[0] == 7 and len(set(seeds)) == 4
    assert seeds == [dist.rank_seed(7, rank=r) for r in range(4)]   # deterministic
    assert all(0 <= s < 2**31 for s in seeds)
    assert dist.rank_seed(None, rank=1) is None


def test_without_mpi4py_import_works_and_a_call_names_the_extra():
    code = (
        "import json, sys\n"
        "sys.modules['mpi4py'] = None            # as if mpi4py were not installed\n"
        "import seqcore\n"
        "d = seqcore.distributed\n"
        "out = {'launched': d.launched(), 'shard': list(d.shard(4, rank=1, size=2))}\n"
        "for call in (d.init, d.rank, lambda: d.allreduce_gradients([], 1.0)):\n"
        "    try:\n"
        "        call()\n"
        "    except d.MPIUnavailable as exc:\n"
        "        out.setdefault('errors', []).append([type(exc).__mro__[1].__name__, str(exc)])\n"
        "print(json.dumps(out))\n")
    rc, out, err = python(code)
    assert rc == 0, err
    got = json.loads(out.splitlines()[-1])
    assert got["launched"] is False and got["shard"] == [2, 3]
    assert len(got["errors"]) == 3
    for base, message in got["errors"]:
        assert base == "ImportError"
        assert "pip install 'seqcore[mpi]'" in message and "mpi4py" in message


def test_importing_the_module_does_not_start_mpi():
    rc, out, err = python("import sys\nimport seqcore\nd = seqcore.distributed\n"
                          "print(d.is_initialized(), 'mpi4py' in sys.modules)")
    assert rc == 0, err
    assert out.split() == ["False", "False"]


def test_one_process_without_a_launcher_is_a_plain_run(tmp_path):
    rc, out, err, _ = _run([sys.executable, WORKER, "single", str(tmp_path)], _env())
    assert rc == 0, err
    (got,) = read_json(tmp_path, ranks=1)
    assert (got["rank"], got["size"], got["is_root"], got["launched"]) == (0, 1, True, False)
    assert got["initialized"] is True
    assert got["grads_unchanged"] is True           # bit for bit: the identity
    assert got["result"] == [4.0, 2.5, [7.0], 0.0, 0]
    assert got["params_unchanged"] is True
    assert got["sum"] == [1.5, 2.0] and got["shard"] == [0, 1, 2, 3, 4]
    assert got["caught"] == "KeyError('propagates')"     # no abort with one rank
    assert got["rank_seed"] == 7


@pytest.mark.parametrize("variables, installed", [
    ({}, False),                                    # no launcher
    ({"PMI_SIZE": "1", "PMI_RANK": "0"}, False),    # a launch of one rank
    ({"PMI_SIZE": "2", "PMI_RANK": "1"}, True),     # MPICH's Hydra, two ranks
    ({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "3"}, True),   # Open MPI
])
def test_import_installs_the_excepthook_only_in_a_launch_of_several_ranks(variables, installed):
    rc, out, err = python(
        "import json, sys\n"
        "before = sys.excepthook is sys.__excepthook__\n"
        "import seqcore\n"
        "from seqcore import _launch\n"
        "print(json.dumps({'before': before, 'hook': sys.excepthook is _launch.excepthook,\n"
        "                  'mpi': 'mpi4py.MPI' in sys.modules,\n"
        "                  'rank': _launch.launch_rank(), 'size': _launch.launch_size()}))\n",
        **variables)
    assert rc == 0, err
    got = json.loads(out.splitlines()[-1])
    assert got["before"] and got["hook"] is installed
    assert got["mpi"] is False                      # importing seqcore does not start MPI
    assert (got["rank"], got["size"]) == (int(variables.get("PMI_RANK", variables.get(
        "OMPI_COMM_WORLD_RANK", 0))), int(variables.get("PMI_SIZE", variables.get(
            "OMPI_COMM_WORLD_SIZE", 1))))


def test_the_excepthook_reports_the_rank_and_ends_the_process_by_sigterm():
    # Without MPI running (the rank failed before anything started it) the rank ends by
    # SIGTERM, which the launcher passes on to every rank.
    rc, out, err = python("import seqcore\nraise KeyError('boom')\n",
                          PMI_SIZE="3", PMI_RANK="2")
    assert rc == -signal.SIGTERM, (rc, err)
    assert err.startswith("seqcore.distributed: rank 2 of 3 failed, stopping every rank: "
                          "KeyError: 'boom'\n[rank 2] Traceback (most recent call last):"), err
    assert "[rank 2] KeyError: 'boom'" in err


def test_a_launch_that_mpi_does_not_see_is_refused():
    # The launcher's variables say 2 ranks, MPI sees 1: an mpiexec of another MPI library.
    code = ("from seqcore import distributed as d\n"
            "try:\n"
            "    d.init()\n"
            "except RuntimeError as exc:\n"
            "    print('refused:', exc)\n")
    rc, out, err = python(code, OMPI_COMM_WORLD_SIZE="2")
    assert rc == 0, err
    assert "refused: the launcher started 2 ranks but MPI sees 1" in out
    assert "mpiexec" in out


# ---------------------------------------------------------------- two ranks

def test_rank_size_shard_sums_and_objects_on_two_ranks(tmp_path):
    mpirun("collectives", tmp_path, SEQCORE_NUM_THREADS=None)
    r0, r1 = read_json(tmp_path)
    assert [(r["rank"], r["size"], r["is_root"], r["launched"]) for r in (r0, r1)] == [
        (0, 2, True, True), (1, 2, False, True)]
    assert r0["shard_n"] + r1["shard_n"] == list(range(11))
    assert (r0["shard_text"], r1["shard_text"]) == ("abcd", "efg")
    assert r0["sum_list"] == r1["sum_list"] == [3.0, 1.0]
    assert r0["sum_scalar"] == r1["sum_scalar"] == 1.5
    assert r0["object"] == r1["object"] == {"from": 0}
    assert r0["gathered"] == [0, 10] and r1["gathered"] is None
    assert r0["rank_seed"] == 7 and r1["rank_seed"] == dist.rank_seed(7, rank=1)
    # both ranks on this machine: each gets its share of the cores
    cores = max(1, min((os.cpu_count() or 1) // 2, len(os.sched_getaffinity(0))))
    for r in (r0, r1):
        assert r["local_size"] == 2
        assert r["default_threads"] == r["core_threads"] == cores


def test_broadcast_gives_every_rank_rank0s_parameters_and_optimizer_state(tmp_path):
    mpirun("broadcast", tmp_path)
    r0, r1 = read_npz(tmp_path)
    assert sorted(r0) == sorted(r1)
    for key in r0:
        np.testing.assert_array_equal(r1[key], r0[key], err_msg=key)
    # ...and they are rank 0's own: its model (seed 0) after its two Adam steps, then one more
    model = W.language_model(seed=0)
    optimizer = seqcore.optim.Adam(1e-2)
    W.adam_steps(model, optimizer, 2, salt=10)
    for name, p, _ in model.parameters():
        np.testing.assert_array_equal(r1[f"param/{name}"], p, err_msg=name)
    state = optimizer.state_dict()
    assert sorted(k[len("state/"):] for k in r1 if k.startswith("state/")) == sorted(state)
    assert int(r1["state/t"]) == 2
    W.adam_steps(model, optimizer, 1, salt=99)
    for name, p, _ in model.parameters():
        np.testing.assert_array_equal(r1[f"after/{name}"], p, err_msg=name)


def test_broadcast_refuses_models_that_differ_on_every_rank(tmp_path):
    mpirun("mismatch", tmp_path)                      # ends: no rank is left waiting
    r0, r1 = read_json(tmp_path)
    for r in (r0, r1):
        assert r["error"] is not None and "the ranks differ from rank 0" in r["error"]
    assert "rank 1 has ('rnn.W_l0', (36, 14)" in r1["error"]


@pytest.fixture(scope="module")
def allreduced(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("allreduce")
    mpirun("allreduce", outdir)
    return read_npz(outdir)


def _weighted_mean(shapes, salt):
    w = [W.weight(r) for r in range(2)]
    grads = [W.gradients(r, shapes, salt) for r in range(2)]
    return [(w[0] * a.astype(np.float64) + w[1] * b.astype(np.float64)) / sum(w)
            for a, b in zip(*grads)]


def test_allreduce_gradients_is_the_weighted_mean_over_the_ranks(allreduced):
    r0, r1 = allreduced
    for call, shapes, salt in (("first", W.GRAD_SHAPES, 0), ("second", W.GRAD_SHAPES_SMALL, 1)):
        expected = _weighted_mean(shapes, salt)
        for i, ((shape, dtype), want) in enumerate(zip(shapes, expected)):
            got0, got1 = r0[f"{call}/{i}"], r1[f"{call}/{i}"]
            assert got0.dtype == dtype and got0.shape == shape
            np.testing.assert_array_equal(got0, got1)        # the same bits on both ranks
            rtol = 1e-6 if dtype == np.float32 else 1e-14
            np.testing.assert_allclose(got0, want, rtol=rtol, atol=rtol,
                                       err_msg=f"{call} array {i} ({np.dtype(dtype)})")
    total = W.weight(0) + W.weight(1)
    mean_loss = (W.weight(0) * W.loss_of(0) + W.weight(1) * W.loss_of(1)) / total
    n32 = sum(int(np.prod(s)) for s, d in W.GRAD_SHAPES if d == np.float32)
    n64 = sum(int(np.prod(s)) for s, d in W.GRAD_SHAPES if d == np.float64)
    for r in (r0, r1):
        weight, loss, nbytes, *totals = r["first_result"]
        assert weight == total
        assert loss == pytest.approx(mean_loss, rel=1e-6)
        assert totals == [1 + 2, 0 + 10]                   # summed, not weighted
        # one buffer per dtype: the gradients, then weight, weight * loss and 2 totals
        assert nbytes == 4 * (n32 + 4) + 8 * (n64 + 4)
        assert list(r["second_result"]) == [total, 4 * (2 + 2) + 8 * (3 + 2), 0]
    _, lstm_grads = W.lstm_gradients(*W.union_batch_part(0))
    n_lstm = sum(g.size for d in lstm_grads for g in d.values())
    for r in (r0, r1):                                  # allreduce_stats adds up the 3 calls
        assert list(r["stats"]) == [3, r["first_result"][2] + r["second_result"][1]
                                    + 8 * (n_lstm + 2)]


def test_allreduce_gives_the_gradient_of_one_step_on_the_union_of_the_batches(allreduced):
    r0, r1 = allreduced
    parts = [W.union_batch_part(r) for r in range(2)]
    x = np.concatenate([p[0] for p in parts], axis=1)              # (T, B0 + B1, D)
    targets = np.concatenate([p[1] for p in parts], axis=1)
    loss, grads = W.lstm_gradients(x, targets)
    for i, d in enumerate(grads):
        for name, want in d.items():
            np.testing.assert_array_equal(r0[f"lstm/{i}/{name}"], r1[f"lstm/{i}/{name}"])
            np.testing.assert_allclose(r0[f"lstm/{i}/{name}"], want, rtol=1e-11, atol=1e-13,
                                       err_msg=f"layer {i} {name}")
    for r in (r0, r1):
        assert r["lstm_result"][0] == x.shape[1]
        assert r["lstm_result"][1] == pytest.approx(loss, rel=1e-12)


def test_an_error_on_one_rank_ends_every_rank_promptly(tmp_path):
    rc, out, err, seconds = mpirun("abort", tmp_path, check=False)
    assert rc != 0
    assert seconds < TIMEOUT / 3, f"took {seconds:.1f} s to end"
    assert not (tmp_path / "rank0.json").exists()       # rank 0 never got past the collective
    assert ("seqcore.distributed: rank 1 of 2 failed, stopping every rank: "
            "ValueError: made to fail on rank 1") in err
    assert "[rank 1] Traceback (most recent call last):" in err
    assert '[rank 1]     raise ValueError("made to fail on rank 1")' in err
