"""Adding a placement is one module and one `@register`: a toy placement registered here is
accepted by the config check, planned by the experiment grid (with the placement-only factor
it declares), named in the rules' wildcard, parsed back from its trial ids, ordered in the
statistics and offered by `migfw testbed placement` — with nothing else edited.
(A real placement also gets its module's name in `MODULES`; tests/test_testbed_placements.py
runs the shipped ones for real.)"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import ClassVar

import pytest

from migfw.errors import MigfwError
from migfw.testbed import placements
from migfw.testbed.placements import Placement, register


@pytest.fixture
def toy() -> Iterator[type[Placement]]:
    @register
    class Ebpf(Placement):  # the whole of a new placement's declaration
        name: ClassVar[str] = "ebpf-tc"
        summary: ClassVar[str] = "an eBPF program on the host's tc hook"
        order: ClassVar[int] = 4  # between vmm-state and vmm-agent
        level: ClassVar[str] = "vmm"
        host_rules: ClassVar[bool] = True
        host_layer: ClassVar[str | None] = "tc"
        factors: ClassVar[tuple[str, ...]] = ("agent_delay_ms",)  # applies to it too
        crafted: ClassVar[bool] = False

    yield Ebpf
    placements.unregister("ebpf-tc")


def _experiment(levels: list[str]) -> dict:
    return {"placement": {"repetitions": 1, "factors": {
        "interval_s": [0.01], "placement": levels, "agent_delay_ms": [50]}}}  # fmt: skip


def test_unknown_placement_is_a_one_line_config_error() -> None:
    from migfw.trials.contract import experiment_problems

    (problem,) = experiment_problems(_experiment(["vm", "ebpf-tc"]))
    assert problem.startswith("experiments.placement.factors.placement: 'ebpf-tc' not registered")
    assert "vm, both, vmm" in problem


def test_a_registered_placement_is_accepted_everywhere(toy: type[Placement]) -> None:
    from migfw.trials.contract import experiment_problems
    from migfw.trials.design import adhoc_spec, experiment_specs

    experiments = _experiment(["vm", "vmm-agent", "ebpf-tc"])
    assert experiment_problems(experiments) == []
    trials = experiment_specs("placement", experiments["placement"])
    by_placement = {s.placement: (s.trial_id, s.factors) for s in trials}
    assert set(by_placement) == {"vm", "vmm-agent", "ebpf-tc"}
    # Its own factor is kept for it (and the agent), nulled for the others.
    assert by_placement["ebpf-tc"][1]["agent_delay_ms"] == 50
    assert by_placement["vmm-agent"][1]["agent_delay_ms"] == 50
    assert by_placement["vm"][1]["agent_delay_ms"] is None
    tid = by_placement["ebpf-tc"][0]
    assert tid == "placement/ebpf-tc-d50-r01"
    assert adhoc_spec(tid).placement == "ebpf-tc"
    # The rules' wildcard, the table order, the facts the stages read.
    assert re.fullmatch(placements.wildcard(), "ebpf-tc")
    assert not re.fullmatch(placements.wildcard(), "ebpf")
    assert placements.names()[4] == "ebpf-tc"
    assert "ebpf-tc" in placements.names(level="vmm")
    assert "ebpf-tc" not in placements.names(crafted=True)
    assert toy.expected_where("B") == {"A": False, "B": True, "guest": False}
    # A trial folder of it passes the contract's trial.json schema.
    from migfw.trials.contract import trial_schema

    assert "ebpf-tc" in trial_schema()["properties"]["factors"]["properties"]["placement"]["enum"]


def test_the_placement_command_offers_it(toy: type[Placement]) -> None:
    import argparse

    from migfw.testbed.placements.command import register_cli

    parser = argparse.ArgumentParser()
    register_cli(parser.add_subparsers())
    action = next(a for a in parser._actions if getattr(a, "choices", None))
    assert "ebpf-tc" in action.choices["placement"].format_help()


def test_a_second_placement_of_one_name_is_refused() -> None:
    class Vm2(Placement):
        name: ClassVar[str] = "vm"

    with pytest.raises(MigfwError, match="placement vm: registered twice"):
        register(Vm2)
    assert placements.get("vm").__name__ == "Vm"  # the first one stays


def test_no_module_lists_placements_of_its_own() -> None:
    """The registry is the one list: no tuple, list or set of two or more placement names
    (nor a comparison against one) is written anywhere else in the package or the rules."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    known = set(placements.names())
    found = []
    for path in sorted((root / "src" / "migfw").rglob("*.py")):
        if "placements" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Tuple | ast.List | ast.Set):
                named = [e.value for e in node.elts if isinstance(e, ast.Constant)
                         and e.value in known]  # fmt: skip
                if len(set(named)) >= 2:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {named}")
    for path in sorted((root / "workflow").rglob("*.smk")):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bvmm-agent\b|\bvmm-state\b", line):
                found.append(f"{path.relative_to(root)}:{lineno}")
    assert found == [], found
