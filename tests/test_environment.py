"""The pinned environment (requirements/*.txt from scripts/lock.sh, recorded by run_info) and
the light command-line start-up the workflow depends on."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO

from migfw.cli import COMMANDS, run_in_process
from migfw.paper.runinfo import locked_environment, read_lock

MODES = {"analysis": [], "full": ["testbed"], "test": ["testbed", "dev"]}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


@pytest.mark.parametrize("mode", MODES)
def test_each_lock_pins_every_declared_dependency_with_hashes(mode: str) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in MODES[mode]:
        wanted |= {_name(r) for r in project["optional-dependencies"][extra]}
    path = REPO / "requirements" / f"{mode}.txt"
    pins = {k.lower(): v for k, v in read_lock(path).items()}
    assert wanted <= set(pins), f"{path.name} lacks {wanted - set(pins)}"
    assert "pygments" in pins  # snakemake --report needs it (snakemake[reports])
    # Every pin is followed by at least one sha256 hash (pip --require-hashes needs them all).
    text = path.read_text()
    for name, version in pins.items():
        block = re.search(
            rf"^{re.escape(name)}=={re.escape(version)} \\\n(\s+--hash=.*\n)+", text, re.I | re.M
        )
        assert block and "sha256:" in block[0], f"{name} has no hash in {path.name}"


def test_the_declared_dependencies_are_imported_somewhere() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    imports = {"pyyaml": "yaml", "libvirt-python": "libvirt", "snakemake": None}
    code = "\n".join(p.read_text() for p in (REPO / "src").rglob("*.py"))
    for name in declared:
        module = imports.get(name, name.replace("-", "_"))
        if module is None:  # the workflow engine: run, not imported by the package
            continue
        assert re.search(rf"^\s*(import|from) {module}\b", code, re.M), f"{name} is unused"


def test_run_info_says_whether_the_venv_matches_its_lock(tmp_path: Path) -> None:
    numpy = importlib.metadata.version("numpy")
    (tmp_path / "requirements").mkdir()
    lock = tmp_path / "requirements" / "analysis.txt"
    lock.write_text(f"numpy=={numpy} \\\n    --hash=sha256:00\n")
    prefix = tmp_path / "venv"
    prefix.mkdir()
    record = {"mode": "analysis", "lock": "requirements/analysis.txt", "lock_sha256": "x"}
    (prefix / "migfw-install.json").write_text(json.dumps(record))
    info = locked_environment(tmp_path, prefix)
    assert info["install"] == "analysis mode from requirements/analysis.txt"
    assert info["venv matches lock"] == "yes, all 1 packages"
    assert "changed since the install" in info["lock sha256"]
    lock.write_text(
        f"numpy=={numpy} \\\n    --hash=sha256:00\npandas==0.0.1 \\\n    --hash=sha256:00\n"
    )
    info = locked_environment(tmp_path, prefix)
    assert info["venv matches lock"].startswith("no, 1 of 2 differ: pandas ")
    assert "(locked 0.0.1)" in info["venv matches lock"]


def test_help_imports_no_heavy_module() -> None:
    probe = (
        "import sys\n"
        "from migfw.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'numpy', 'numba', 'pandas', 'scipy', 'matplotlib', 'seaborn', 'jsonschema'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stderr.strip() == "[]"
    for name in COMMANDS:
        assert f"    {name}" in done.stdout


def test_run_in_process_writes_the_log_and_returns_the_exit_code(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "craft.log"
    assert run_in_process(["craft", "--trial", "i0.5-r01", "--out", tmp_path / "t"], log) == 0
    assert log.read_text() == f"crafted i0.5-r01 in {tmp_path / 't'}\n"
    assert json.loads((tmp_path / "t" / "trial.json").read_text())["trial_id"] == "i0.5-r01"
    # Bad input: one line naming the file in the log, exit 2, no traceback.
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "trial.json").write_text("{")
    status = run_in_process(["trial-metrics", tmp_path / "bad", "--out", tmp_path / "m.json"], log)
    assert status == 2
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and "trial.json: not valid JSON" in lines[0]
    assert not (tmp_path / "m.json").exists()
    # Usage errors too.
    assert run_in_process(["trial-metrics"], log) == 2


def test_a_rule_job_runs_its_named_function_in_process_or_in_a_process_of_its_own(
    tmp_path: Path,
) -> None:
    """migfw.jobs: what the rules call (job / testbed_job in workflow/rules/common.smk)."""
    from migfw.jobs import Stage, process_argv, run_job

    craft = Stage("migfw.trials.craftcli").craft_design_trial
    metrics = Stage("migfw.measure.metrics").write_trial_metrics
    design = tmp_path / "design.tsv"
    from migfw.trials.design import expand_design, write_design

    write_design(expand_design({"t": {"repetitions": 1, "factors": {"interval_s": [0.5]}}}, 1),
                 design)  # fmt: skip
    log = tmp_path / "logs" / "craft.log"
    assert run_job(log, craft, design=design, trial="t/i0.5-r01", out=tmp_path / "t") is None
    assert log.read_text() == f"crafted t/i0.5-r01 in {tmp_path / 't'}\n"
    # Bad input: the one line the rule raises, also the log's only line; nothing written.
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "trial.json").write_text("{")
    problem = run_job(log, metrics, folders=[tmp_path / "bad"], out=tmp_path / "m.json")
    assert problem.startswith("write_trial_metrics: ") and "trial.json: not valid JSON" in problem
    assert log.read_text().splitlines() == [problem]
    assert not (tmp_path / "m.json").exists()
    # The same function in a process of its own (the testbed rules): exit code and output.
    argv = process_argv(metrics, {"folders": [tmp_path / "t"], "out": tmp_path / "m.json"})
    assert subprocess.run(argv, capture_output=True, text=True).returncode == 0
    assert json.loads((tmp_path / "m.json").read_text())[0]["trial_id"] == "t/i0.5-r01"
    argv = process_argv(metrics, {"folders": [tmp_path / "bad"], "out": tmp_path / "m2.json"})
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("write_trial_metrics: ")
