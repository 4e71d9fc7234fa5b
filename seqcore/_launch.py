"""What an MPI launcher tells each process through its environment, read without MPI; and the hook that ends every rank when one fails.

Launchers (mpiexec, mpirun, srun) announce to each process how many ranks they started
and which one it is, in environment variables set before ``MPI_Init``. Reading them
needs neither mpi4py nor MPI, so ``import seqcore`` can tell an MPI launch of several
ranks from a plain run without starting MPI (``seqcore.distributed`` is imported only
when used).

In such a launch ``import seqcore`` installs ``excepthook`` (``install_excepthook``): an
uncaught exception on any rank prints its traceback, prefixed with the rank, and ends
every rank, as ``python -m mpi4py`` does. Without it, a rank that fails before its
first collective (for example before ``fit(..., distributed=True)``) exits alone and
leaves the others waiting in that collective until the job is killed.
"""

import os
import signal
import sys
import time
import traceback

__all__ = ["SIZE_VARS", "RANK_VARS", "REPORT_SECONDS", "env_int", "launch_size", "launch_rank",
           "launched", "failure_report", "write_report", "excepthook", "install_excepthook"]

# The number of ranks as the launchers announce it to each process, before MPI_Init:
# Open MPI; MPICH's Hydra and Intel MPI; MVAPICH; Slurm's srun (inside a job step).
SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE",
             "SLURM_STEP_NUM_TASKS")
# This process's rank, in the same order.
RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK", "SLURM_PROCID")
# Seconds a failing rank waits after writing its report, before it ends the job: the
# launcher forwards each rank's stderr through its own processes, and ending the job
# at once can lose the report on a busy machine.
REPORT_SECONDS = 0.5


def env_int(names):
    """The first of the environment variables ``names`` that holds an integer, else None."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return None


def launch_size():
    """The number of ranks the launcher started (1 without a launcher)."""
    return env_int(SIZE_VARS) or 1


def launch_rank():
    """This process's rank as the launcher announced it (0 without a launcher)."""
    return env_int(RANK_VARS) or 0


def launched():
    """True when an MPI launcher (mpiexec, mpirun, srun) started this process as one of several ranks."""
    return launch_size() > 1


def failure_report(rank, size, exc):
    """The report of a rank's failure: one line naming the rank and the error, then the
    traceback with every line prefixed ``[rank r]`` (the ranks' stderr are interleaved)."""
    summary = " ".join(f"{type(exc).__name__}: {exc}".split())
    lines = [f"seqcore.distributed: rank {rank} of {size} failed, stopping every rank: {summary}"]
    lines += [f"[rank {rank}] {line}" for chunk in traceback.format_exception(exc)
              for line in chunk.rstrip("\n").split("\n")]
    return "\n".join(lines) + "\n"


def write_report(rank, size, exc):
    """Write ``failure_report`` to stderr and give the launcher REPORT_SECONDS to pass it on."""
    try:
        sys.stdout.flush()
    finally:
        sys.stderr.write(failure_report(rank, size, exc))
        sys.stderr.flush()
        time.sleep(REPORT_SECONDS)


def _mpi_running():
    """mpi4py's MPI module when MPI is running in this process (initialized, not finalized)."""
    MPI = sys.modules.get("mpi4py.MPI")
    try:
        return MPI if MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized() else None
    except Exception:   # noqa: BLE001 - an MPI that cannot answer is not one to call
        return None


def excepthook(exc_type, exc, tb):
    """``sys.excepthook`` of a rank in a launch of several: report the uncaught exception
    (``failure_report``), then end every rank.

    With MPI running in this process: ``MPI_Abort`` on COMM_WORLD (exit status 1), as
    ``python -m mpi4py`` does. Without (the rank failed before anything started MPI),
    MPI is not started now: its start waits for every rank's and could wait forever.
    The rank ends by SIGTERM instead, and the launcher, seeing a rank killed by a
    signal, ends the others (MPICH's Hydra and Open MPI do; under Slurm, ``srun
    --kill-on-bad-exit=1`` makes it so).
    """
    if exc is None:
        exc = exc_type()
    if exc.__traceback__ is None and tb is not None:
        exc = exc.with_traceback(tb)
    MPI = _mpi_running()
    rank, size = ((MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()) if MPI is not None
                  else (launch_rank(), launch_size()))
    try:
        write_report(rank, size, exc)
    finally:
        if MPI is not None:
            MPI.COMM_WORLD.Abort(1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        os._exit(1)                      # not reached: either ends the process


def install_excepthook():
    """Make ``excepthook`` this process's ``sys.excepthook`` when it is one of several
    ranks of an MPI launch (``launched()``); do nothing otherwise. Returns whether it is
    installed. ``import seqcore`` calls it."""
    if launched() and sys.excepthook is not excepthook:
        sys.excepthook = excepthook
    return sys.excepthook is excepthook
