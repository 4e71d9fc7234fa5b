"""Public modules known by a short name: ``seqcore.optim`` is ``seqcore.train.optim``.

The package is laid out by layer (nn, models, train, data, ...), but a few modules
are public under the short names users import (docs/spec.md, "Modules"). Each is one
module with two names: ``import seqcore.optim``, ``from seqcore.text import EOS`` and
``seqcore.distributed`` all give the module where it lives. A module is imported
when its short name is first used (``seqcore.distributed`` loads no MPI before).
"""

import importlib
import importlib.abc
import importlib.machinery
import sys

ALIASES = {
    "seqcore.optim": "seqcore.train.optim",
    "seqcore.distributed": "seqcore.train.distributed",
    "seqcore.training": "seqcore.train.loop",
    "seqcore.text": "seqcore.data.text",
    "seqcore.attention": "seqcore.nn.attention",
    "seqcore.io": "seqcore.models.io",
}


class _AliasLoader(importlib.abc.Loader):
    """Gives the module the short name stands for: the import system then files it
    under the short name too (sys.modules), without running it a second time."""

    def create_module(self, spec):
        module = importlib.import_module(ALIASES[spec.name])
        self._own = (module.__spec__, module.__loader__)
        return module

    def exec_module(self, module):
        # imported already, where it lives; it keeps its own spec, which the import
        # system set to the short name's
        module.__spec__, module.__loader__ = self._own


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname not in ALIASES:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader())


if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.append(_AliasFinder())
