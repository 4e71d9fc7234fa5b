"""Training: optimizers, clipping and schedules (``optim``, public as
``seqcore.optim``), the loop every model's ``fit`` runs (``loop``), and data-parallel
training over MPI (``distributed``, public as ``seqcore.distributed``)."""

from . import optim

__all__ = ["optim"]
