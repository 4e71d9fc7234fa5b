"""The package's shape (docs/architecture.md): no import cycles between seqcore's
modules, and no module importing a private name of another subpackage.

Read from the source with ``ast``: every import statement counts, at the top of a
module or inside a function (an import placed in a function to dodge a cycle is
still a cycle).
"""
import ast
import os
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import seqcore

ROOT = Path(seqcore.__file__).parent


def _modules():
    """{dotted name: path} of every module of the package (compiled ones too)."""
    out = {}
    for path in ROOT.rglob("*"):
        suffix = next((s for s in (".py", *EXTENSION_SUFFIXES) if path.name.endswith(s)), None)
        if suffix is None:
            continue
        parts = list(path.relative_to(ROOT.parent).parts)
        parts[-1] = parts[-1][:-len(suffix)]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name):
    return MODULES.get(name, Path()).name == "__init__.py"


def _source(path):
    return path.read_text() if path.suffix == ".py" else ""


def _imports(name, path):
    """[(imported module, imported name or None)] of every import in the module."""
    package = name if _is_package(name) else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(_source(path), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                if f"{source}.{alias.name}" in MODULES:          # a submodule
                    out.append((f"{source}.{alias.name}", None))
                else:
                    out.append((source, alias.name))
    return [(m, n) for m, n in out if m == "seqcore" or m.startswith("seqcore.")]


def _owner(name):
    """The subpackage a module belongs to (seqcore.nn.dense: nn), or the top-level
    module itself (seqcore.interop: interop)."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_modules_are_found():
    assert {"seqcore.nn.recurrent", "seqcore.models.base", "seqcore.train.optim",
            "seqcore.data.text", "seqcore.reference.cells", "seqcore.cli.lm",
            "seqcore.bench.layers"} <= set(MODULES)


def test_no_module_imports_a_private_name_of_another_subpackage():
    bad = []
    for name, path in MODULES.items():
        for source, imported in _imports(name, path):
            if (imported and imported.startswith("_") and not imported.startswith("__")
                    and _owner(source) != _owner(name)):
                bad.append(f"{name} imports {source}.{imported}")
    assert not bad, "\n".join(bad)


def _graph():
    graph = {}
    for name, path in MODULES.items():
        graph[name] = sorted({source for source, _ in _imports(name, path)
                              if source in MODULES and source != name})
    return graph


def _cycle(graph):
    """One import cycle as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_there_are_no_import_cycles():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert _cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None


@pytest.mark.parametrize("layer", ["nn", "models", "train", "data", "reference", "cli", "bench"])
def test_each_layer_is_a_package_with_a_docstring(layer):
    init = ROOT / layer / "__init__.py"
    assert init.is_file()
    assert ast.get_docstring(ast.parse(init.read_text())), f"seqcore/{layer}/__init__.py"


def test_lower_layers_do_not_import_higher_ones():
    """nn and data know nothing of models, training, the command line or the benchmarks;
    models know nothing of the command line or the benchmarks."""
    above = {"nn": {"models", "train", "cli", "bench", "experiments"},
             "data": {"nn", "models", "train", "cli", "bench", "experiments"},
             "reference": {"nn", "models", "train", "data", "cli", "bench"},
             "models": {"cli", "bench", "experiments"},
             "train": {"cli", "bench", "experiments"}}
    bad = [f"{name} imports {source}" for name, path in MODULES.items()
           for source, _ in _imports(name, path)
           if _owner(source) in above.get(_owner(name), ())]
    assert not bad, "\n".join(bad)
    assert os.path.isdir(ROOT / "_kernels")
