"""The analysis through Snakemake's Slurm executor on a real one-node Slurm.

scripts/slurm-local.sh starts munged, MariaDB, slurmdbd, slurmctld and slurmd; docs/testbed.md's
cluster command (profiles/slurm) then analyses cached trial folders as Slurm jobs, and every
table, figure and SLR output must be byte-identical to a local run on the same folders. The
controller's job records (sacct) must hold every submitted job as COMPLETED, and no daemon
may outlive `slurm-local.sh stop`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from slurmlocal import local_slurm, skip_reason
from test_workflow import IGNORE

pytestmark = pytest.mark.slow

# Everything the analysis writes except logs, per-rule timings and run_info (they record
# the run itself: times, hosts, the executor).
COMPARED = ("results/analysis", "results/figures", "results/paper", "results/slr",
            "results/paper_vs_reproduction.md")  # fmt: skip


def _files(root: Path) -> dict[str, bytes]:
    out = {}
    for name in COMPARED:
        path = root / name
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file():
                out[str(f.relative_to(root))] = _without_folder(f)
    return out


def _without_folder(f: Path) -> bytes:
    """The file's bytes; a cell's metrics JSON without each row's `_folder`, the path the
    trial was read from (the cluster run reads the local run's folders by another path)."""
    if f.parent.parent.name != "metrics" or f.suffix != ".json":
        return f.read_bytes()
    from migfw.measure.metrics import FOLDER

    rows = json.loads(f.read_text())
    assert all(FOLDER in row for row in rows), f  # what is dropped is there to drop
    return json.dumps([{k: v for k, v in row.items() if k != FOLDER} for row in rows]).encode()


def _snakemake(workdir: Path, *args: str, env: dict | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", *args], cwd=workdir, env=env,
        capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def test_analysis_on_slurm_equals_the_local_run(tmp_path: Path) -> None:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    for work in (local, cluster):
        shutil.copytree(REPO, work, ignore=IGNORE)
    # The local run makes the crafted trial folders and analyses them.
    _snakemake(local, "--cores", "2", "--configfile", "config/test.yaml")
    trials = local / "results" / "crafted_trials"
    with local_slurm(tmp_path / "slurm") as env:
        env["PYTHONPATH"] = str(cluster / "src")  # the copy's package
        # docs/testbed.md's cluster command, on the folders as found.
        out = _snakemake(
            cluster, "--profile", "profiles/slurm", "--cores", "2",
            "--configfile", "config/test.yaml",
            "--config", "trials_source=directory", f"trials_dir={trials}", env=env,
        )  # fmt: skip
        ids = re.findall(r"submitted with SLURM jobid (\d+)", out)
        records = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-j", ",".join(ids),
             "--format=JobID,Comment,State,Account,Partition"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
    # One job per group batch: metrics and timelines in batches of up to 8 (profiles/slurm
    # group-components), the rest in one analysis job. The counts come from the local run's
    # outputs, so a preset that grows a cell or a trial changes the expectation with it.
    cells = len(list((local / "results" / "analysis" / "metrics").rglob("*.json")))
    timelines = len(list((local / "results" / "figures" / "timelines").rglob("*.png")))
    assert cells and timelines, (cells, timelines)
    expected = -(-cells // 8) + -(-timelines // 8) + 1
    assert len(ids) == expected, (cells, timelines, out[-3000:])
    rows = [r.split("|") for r in records]
    assert len(rows) == expected and all(r[2] == "COMPLETED" for r in rows), rows
    # The executor's comment names the rule or group of each job.
    assert {re.sub(r"^rule_", "", r[1]).split("_")[0] for r in rows} == {
        "metrics", "timelines", "analysis"}, rows  # fmt: skip
    assert {(r[3], r[4]) for r in rows} == {("migfw", "local")}, rows
    # Every analysis, figure, paper and SLR rule ran inside those jobs.
    ran = set(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", out))
    assert ran >= {"trial_metrics", "trials_table", "summary_table", "attack_window_table",
                   "sweeps", "uptime_figure", "estimators_figure", "timeline_figure",
                   "attack_window_figure", "paper_table11", "paper_uptime_figure",
                   "slr_review", "paper_vs_reproduction", "run_info"}, ran  # fmt: skip
    want, got = _files(local), _files(cluster)
    assert "results/analysis/summary.csv" in want and "results/slr/table6.csv" in want
    assert sorted(got) == sorted(want)
    assert [name for name in want if got[name] != want[name]] == []
