"""The package's shape: no import cycle, and no stage importing a later stage.

Imports are read from the source (top level and inside functions alike), so a lazy import
counts: it is a dependency all the same.
"""

from __future__ import annotations

import pkgutil

import migfw
from migfw.provenance import direct_imports

# Pipeline stages in order; a module may import its own stage, earlier ones and `base`.
STAGES = ["base", "trials", "testbed", "measure", "paper"]
# The SLR branch is independent of the measurement pipeline.
INDEPENDENT = {"slr"}


def all_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(migfw.__path__, "migfw."))


def stage_of(module: str) -> str:
    part = module.split(".")[1] if module.count(".") else "base"
    if part in STAGES or part in INDEPENDENT:
        return part
    return "base"  # top-level helpers: errors, io, config, provenance, cli, groups


def test_every_module_is_seen() -> None:
    modules = all_modules()
    for expected in ("migfw.measure.probes", "migfw.trials.contract", "migfw.testbed.base"):
        assert expected in modules


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every back edge of a depth-first walk, as the cycle it closes."""
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_no_import_cycle() -> None:
    graph = {m: set(direct_imports(m)) for m in all_modules()}
    # A submodule importing its own package's __init__ is not a cycle worth reporting.
    for module, deps in graph.items():
        deps -= {d for d in deps if module.startswith(d + ".")}
    assert find_cycles(graph) == [], "import cycles"


def test_no_stage_imports_a_later_stage() -> None:
    wrong = []
    for module in all_modules():
        stage = stage_of(module)
        for dep in direct_imports(module):
            dep_stage = stage_of(dep)
            if dep_stage == "base" or dep_stage == stage or module == "migfw.cli":
                continue
            if stage == "base" and module != "migfw.cli":
                wrong.append((module, dep))
            elif stage in INDEPENDENT or dep_stage in INDEPENDENT:
                wrong.append((module, dep))
            elif STAGES.index(dep_stage) > STAGES.index(stage):
                wrong.append((module, dep))
    assert wrong == [], f"imports against the pipeline's order: {wrong}"


def test_the_checkers_can_fail() -> None:
    # A planted cycle is found, and a lazy import inside a function counts as an edge.
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    assert "migfw.trials.contract" in direct_imports("migfw.measure.figures")  # lazy import
