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


# A new factor: one line in migfw.trials.design.FACTORS (its id code and level type), nothing
# else. Run in a copy of the package with that one line added, as a new engineer would.
NEW_FACTOR_PROBE = """
import sys
from pathlib import Path

import pandas as pd
import yaml

from migfw.config import config_problems
from migfw.measure.metrics import write_summary, write_trial_metrics, write_trials_table
from migfw.measure.sweeps import sweep_table
from migfw.trials.contract import KNOWN_FACTORS, experiment_problems, load_trial
from migfw.trials.craftcli import craft_design_trial
from migfw.trials.design import expand_design, lookup, write_design

out, schema = Path(sys.argv[1]), sys.argv[2]
config = yaml.safe_load(open("config/test.yaml"))
config["experiments"] = {"jumbo": {"repetitions": 2, "factors": {
    "interval_s": [0.01], "mtu": [1500, 9000]}}}
assert config_problems(config, schema) == [], config_problems(config, schema)
assert experiment_problems(config["experiments"]) == []
assert "mtu" in KNOWN_FACTORS  # the workflow's sweep factors (common.smk SWEEP_FACTORS)
specs = expand_design(config["experiments"], 1)
print("ids", " ".join(s.trial_id for s in specs))
write_design(specs, out / "design.tsv")
folders = []
for spec in specs:
    row = lookup(out / "design.tsv", spec.trial_id)
    assert row.factors["mtu"] == spec.factors["mtu"] and isinstance(row.factors["mtu"], int)
    folders.append(out / "trials" / spec.trial_id)
    craft_design_trial(out / "design.tsv", spec.trial_id, folders[-1])
    print("trial.json", spec.trial_id, load_trial(folders[-1])["factors"]["mtu"])
write_trial_metrics(folders, out / "cell.json")
write_trials_table([out / "cell.json"], out / "trials.csv")
trials = pd.read_csv(out / "trials.csv")
print("trials.csv", dict(zip(trials["trial_id"], trials["mtu"])))
write_summary(out / "trials.csv", out / "summary.csv", ["interval_s", "mtu"], 0.95, 200, 0)
summary = pd.read_csv(out / "summary.csv")
print("summary", sorted(set(zip(summary["mtu"], summary["n"]))))
sweep = sweep_table(trials, list(KNOWN_FACTORS))
print("sweep", sorted(set(sweep.loc[sweep["factor"] == "mtu", "level"].astype(int))))
"""


def test_a_new_factor_is_one_line_of_the_design_schema(tmp_path) -> None:
    """`"mtu": ("mtu", "number")` added to FACTORS, nothing else: the config accepts it, the
    design sheet expands and types it, its ids carry it, a crafted trial records it, and
    trials.csv, summary.csv and the sweep table have it as a factor column."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "src" / "migfw", tmp_path / "src" / "migfw",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copytree(root / "workflow" / "schemas", tmp_path / "workflow" / "schemas")
    design = tmp_path / "src" / "migfw" / "trials" / "design.py"
    text = design.read_text()
    anchor = "FACTORS: dict[str, tuple[str, str]] = {\n"
    assert text.count(anchor) == 1
    design.write_text(text.replace(anchor, anchor + '    "mtu": ("mtu", "number"),\n'))
    (tmp_path / "out").mkdir()
    import migfw.measure.capture.jit  # noqa: F401 - sets NUMBA_CACHE_DIR: the copy's kernels

    done = subprocess.run(
        [sys.executable, "-c", NEW_FACTOR_PROBE, str(tmp_path / "out"),
         str(tmp_path / "workflow" / "schemas" / "config.schema.yaml")],
        cwd=root, env={**__import__("os").environ, "PYTHONPATH": str(tmp_path / "src")},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    keys = {"ids", "trials.csv", "summary", "sweep"}
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines()
                 if line.split(" ", 1)[0] in keys)  # fmt: skip
    assert lines["ids"] == "jumbo/mtu1500-r01 jumbo/mtu1500-r02 jumbo/mtu9000-r01 jumbo/mtu9000-r02"
    assert lines["trials.csv"] == str(
        {
            "jumbo/mtu1500-r01": 1500,
            "jumbo/mtu1500-r02": 1500,
            "jumbo/mtu9000-r01": 9000,
            "jumbo/mtu9000-r02": 9000,
        }
    )
    assert lines["summary"] == "[(1500, 2), (9000, 2)]"
    assert lines["sweep"] == "[1500, 9000]"
    assert done.stdout.count("trial.json ") == 4
    assert "mtu" not in (root / "src" / "migfw" / "trials" / "design.py").read_text()
