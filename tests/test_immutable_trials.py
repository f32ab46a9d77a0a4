"""Finished trials are immutable: growing an experiment or changing its intervals never makes
Snakemake plan a finished trial again (real Snakemake dry runs over crafted trial folders)."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _planned_trials(tmp_path: Path, repetitions: int, intervals: list[float]) -> int:
    cfg = {
        "trials_source": "testbed",
        "trials_dir": str(tmp_path / "trials"),
        "testbed": {
            "local": {
                "prefix": "mft",
                "subnet": "10.233.0.0/24",
                "migration_subnet": "10.233.1.0/30",
            }
        },  # fmt: skip
        "experiments": {
            "thesis": {"enabled": False},
            "placement": {"enabled": False},
            "smoke": {
                "factors": {"interval_s": intervals, "placement": ["vm"]},
                "repetitions": repetitions,
            },  # fmt: skip
        },
        "slr": {"enabled": False},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run(
        ["snakemake", "-n", "--cores", "1", "--configfile", str(path), "-d", str(REPO),
         "--quiet", "rules"],  # fmt: skip
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    job = re.search(r"^trial\s+(\d+)$", out.stdout, re.M)
    return int(job[1]) if job else 0


def _sha(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.mark.slow
def test_finished_trials_never_planned_again(tmp_path: Path) -> None:
    from migfw.trials.crafted import craft_trial, crafted_spec

    for rep in (1, 2):
        tid = f"smoke/i0.01-r{rep:02d}"
        craft_trial(crafted_spec(tid, factors={"interval_s": 0.01}), tmp_path / "trials" / tid)
    before = {d.name: _sha(d) for d in (tmp_path / "trials" / "smoke").iterdir()}
    # Two finished of two: nothing to run. Grow to three: exactly one new trial.
    assert _planned_trials(tmp_path, 2, [0.01]) == 0
    assert _planned_trials(tmp_path, 3, [0.01]) == 1
    # Change the intervals: only the new level's trials; the finished ones stay as they are.
    assert _planned_trials(tmp_path, 2, [0.01, 0.5]) == 2
    after = {d.name: _sha(d) for d in (tmp_path / "trials" / "smoke").iterdir()}
    assert before == after


def test_trial_command_refuses_finished_folder(tmp_path: Path) -> None:
    from migfw.trials.crafted import craft_trial, crafted_spec

    out = tmp_path / "smoke" / "i0.01-r01"
    craft_trial(crafted_spec("smoke/i0.01-r01", factors={"interval_s": 0.01}), out)
    sha = _sha(out)
    res = subprocess.run(
        ["migfw", "testbed", "trial", "--config", str(REPO / "config" / "smoke.yaml"),
         "--trial-id", "smoke/i0.01-r01", "--out", str(out)],  # fmt: skip
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "finished trial" in lines[0], res.stderr
    assert _sha(out) == sha
