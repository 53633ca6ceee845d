"""The package's layout rules, read from its source with :mod:`ast` (nothing is imported).

- No package imports another package's private names, or through another
  package's private modules. A "package" is a direct child of ``skicr``
  (``skicr.extraction``, ``skicr.cli``, ``skicr.decomposition``...). Inside a
  package anything goes; ``skicr._utils`` is the one private package meant for
  all of skicr (:data:`SHARED_PRIVATE`).
- No import cycle between modules, counting every import (those inside
  functions too: a deferred import only hides a cycle until the function
  runs). The one exception is a package ``__init__``'s PEP 562
  ``__getattr__``, which re-exports names from their new home lazily (e.g.
  ``skicr.extraction.fit_from_loader`` from :mod:`skicr.streaming`), so that
  neither package needs the other at import time.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "skicr"

#: private packages every skicr package may use (helpers with one home each)
SHARED_PRIVATE = {"skicr._utils"}


def _modules():
    """module name -> (path, is_package) for every .py file of skicr."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


MODULES = _modules()


def _absolute(module, is_package, node):
    """The absolute module name of an ``ImportFrom`` node."""
    if node.level == 0:
        return node.module
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _lazy_reexport_nodes(tree):
    """Nodes inside a module-level ``def __getattr__`` (PEP 562 lazy re-exports)."""
    skipped = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            skipped.update(id(child) for child in ast.walk(node))
    return skipped


def _imports(module):
    """(target module, imported name or None, line) for every skicr import of ``module``."""
    path, is_package = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lazy = _lazy_reexport_nodes(tree) if is_package else set()
    for node in ast.walk(tree):
        if id(node) in lazy:
            continue
        if isinstance(node, ast.ImportFrom):
            target = _absolute(module, is_package, node)
            if target and target.split(".")[0] == "skicr":
                for alias in node.names:
                    yield target, alias.name, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "skicr":
                    yield alias.name, None, node.lineno


def _package(module):
    return ".".join(module.split(".")[:2])


def _private_crossing(importer, target, name):
    """Why ``importer`` may not import ``name`` from ``target``, or None."""
    if _package(target) == _package(importer) or _package(target) in SHARED_PRIVATE:
        return None
    private_parts = [part for part in target.split(".")[1:] if part.startswith("_")]
    if private_parts:
        return f"through the private module {target}"
    if name and name.startswith("_") and not name.startswith("__"):
        return f"the private name {target}.{name}"
    return None


def test_the_rules_see_the_package():
    assert {"skicr", "skicr.views", "skicr.extraction", "skicr.cli", "skicr.streaming",
            "skicr.model_selection", "skicr._utils.images"} <= set(MODULES)
    assert sum(1 for module in MODULES for _ in _imports(module)) > 100


def test_no_private_names_across_packages():
    crossings = [
        f"{importer} (line {line}) imports {why}"
        for importer in MODULES
        for target, name, line in _imports(importer)
        if (why := _private_crossing(importer, target, name))
    ]
    assert not crossings, "\n".join(crossings)


@pytest.mark.parametrize("importer, target, name, allowed", [
    ("skicr.decomposition", "skicr.metrics._icr", "decompose", False),
    ("skicr.cli._track", "skicr.cli._common", "CLIError", True),
    ("skicr.monitoring._cli", "skicr.cli", "_check_device", False),
    ("skicr.streaming._loader", "skicr._utils.images", "check_images", True),
    ("skicr.streaming._loader", "skicr.extraction", "iter_view_chunks", True),
])
def test_the_private_rule_itself(importer, target, name, allowed):
    assert (_private_crossing(importer, target, name) is None) == allowed


def _graph():
    graph = {module: set() for module in MODULES}
    for module in MODULES:
        for target, name, _ in _imports(module):
            submodule = f"{target}.{name}" if name else None
            dependency = submodule if submodule in MODULES else target
            if dependency in MODULES and dependency != module:
                graph[module].add(dependency)
    return graph


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in graph[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return components


def test_no_import_cycle():
    assert not _cycles(_graph())


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("old, new", [
    ("skicr._views:ViewArray", "skicr.views:ViewArray"),
    ("skicr.extraction._backbones:DiTBackbone", "skicr.extraction:DiTBackbone"),
    ("skicr.extraction._backbones:UNet2DBackbone", "skicr.extraction:UNet2DBackbone"),
    ("skicr.extraction._backbones:EDMBackbone", "skicr.extraction:EDMBackbone"),
    ("skicr.extraction._backbones:FlowBackbone", "skicr.extraction:FlowBackbone"),
    ("skicr.extraction._backbones:CallableBackbone", "skicr.extraction:CallableBackbone"),
    ("skicr.extraction._archive:ModuleArchive", "skicr._utils.serialization:ModuleArchive"),
    ("skicr.extraction._images:check_images", "skicr._utils.images:check_images"),
    ("skicr.metrics._validation:check_grouped_views", "skicr.views:check_grouped_views"),
])
def test_moved_names_keep_their_old_paths(old, new):
    """Pickles written before the restructure name the old modules: they must still resolve."""
    import importlib

    def resolve(path):
        module, name = path.split(":")
        return getattr(importlib.import_module(module), name)

    assert resolve(old) is resolve(new)
