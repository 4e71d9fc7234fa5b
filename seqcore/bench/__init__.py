"""What `seqcore bench` runs: the layer benchmark (``layers``: the compiled core
against its NumPy reference and PyTorch) and the training benchmark (``training``:
whole training steps of a language model against the same model in PyTorch).

Each side runs in a worker process of its own. The command line is
``seqcore.cli.bench``; ``busy_processes`` (the load of ``--load``), ``cpu_name`` and
``ISA_LIMITS`` (what holds another library to a lower kernel path's instruction set)
and ``path_envs`` (each kernel path with its workers' environment) serve the
stand-alone studies in the repository's bench/ too.
"""

from .layers import ISA_LIMITS, busy_processes, cpu_name, path_envs  # noqa: F401

__all__ = ["ISA_LIMITS", "busy_processes", "cpu_name", "path_envs"]
