"""Flagged trials in the statistics (issue 19): every table row says how many flagged trials
it includes, and `--exclude-flags` (analysis.exclude_flags) leaves them out. Checked on
crafted trials with flags set by hand, against means worked out from trials.csv itself."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from migfw.cli import main as _main


def main(argv: list) -> int:
    return _main([str(a) for a in argv])


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """trials.csv of 4 thesis trials at 0.01 s (r02 flagged migration_slow, r03 clock_step
    and migration_slow), 2 at 0.5 s (r02 migration_slow) and 2 placement trials (vm, one
    flagged clock_step)."""
    root = tmp_path_factory.mktemp("flags")
    flags = {"thesis/i0.01-r02": ["migration_slow"],
             "thesis/i0.01-r03": ["clock_step", "migration_slow"],
             "placement/vm-i0.001-r02": ["clock_step"],
             "thesis/i0.5-r02": ["migration_slow"]}  # fmt: skip
    folders = []
    ids = [f"thesis/i0.01-r0{r}" for r in range(1, 5)] + ["thesis/i0.5-r01", "thesis/i0.5-r02"]
    ids += ["placement/vm-i0.001-r01", "placement/vm-i0.001-r02"]
    for trial in ids:
        folder = root / "trials" / trial
        extra = ["--placement", "vm", "--rate-hz", "200"] if trial.startswith("placement") else []
        assert main(["craft", "--out", folder, "--trial", trial, *extra]) == 0
        meta = json.loads((folder / "trial.json").read_text())
        meta["flags"] = flags.get(trial, [])
        (folder / "trial.json").write_text(json.dumps(meta))
        folders.append(folder)
    assert main(["trial-metrics", *folders, "--out", root / "m.json"]) == 0
    assert main(["collect", root / "m.json", "--out", root / "trials.csv"]) == 0
    return root


Q = "experiment == 'thesis' and interval_s == 0.01 and metric == 'dt_gap_s'"


def _summary(root: Path, *exclude: str) -> pd.DataFrame:
    out = root / f"summary-{'-'.join(exclude) or 'all'}.csv"
    args = ["summarize", root / "trials.csv", "--out", out, "--factors", "interval_s",
            "--resamples", "200"]  # fmt: skip
    assert main([*args, "--exclude-flags", *exclude]) == 0
    return pd.read_csv(out, keep_default_na=False, na_values=[""])


def test_summary_counts_flagged_trials_and_leaves_them_out_when_asked(table) -> None:
    trials = pd.read_csv(table / "trials.csv")
    thesis = trials[(trials["experiment"] == "thesis") & (trials["interval_s"] == 0.01)]
    thesis = thesis.set_index("trial_id")
    row = _summary(table).query(Q).iloc[0]
    assert row["n"] == 4 and row["mean"] == pytest.approx(thesis["dt_gap_s"].mean())
    assert row["flagged_trials"] == 2 and row["excluded_flagged"] == 0
    assert row["flags"] == "clock_step:1;migration_slow:2"

    row = _summary(table, "migration_slow").query(Q).iloc[0]
    kept = thesis.loc[["thesis/i0.01-r01", "thesis/i0.01-r04"], "dt_gap_s"]
    assert row["n"] == 2 and row["mean"] == pytest.approx(kept.mean())
    assert row["flagged_trials"] == 0 and pd.isna(row["flags"]) and row["excluded_flagged"] == 2

    row = _summary(table, "clock_step").query(Q).iloc[0]
    assert row["n"] == 3 and row["flagged_trials"] == 1 and row["flags"] == "migration_slow:1"
    assert row["excluded_flagged"] == 1


def test_attack_window_and_sweep_tables_count_them_too(table) -> None:
    aw = table / "aw.csv"
    assert main(["attack-window", table / "trials.csv", "--out", aw, "--resamples", "99"]) == 0
    rows = pd.read_csv(aw, keep_default_na=False, na_values=[""])
    assert set(rows["flagged_trials"]) == {1} and set(rows["flags"]) == {"clock_step:1"}
    assert main(["attack-window", table / "trials.csv", "--out", aw, "--resamples", "99",
                 "--exclude-flags", "clock_step"]) == 0  # fmt: skip
    rows = pd.read_csv(aw, keep_default_na=False, na_values=[""])
    assert set(rows["n"]) == {1} and set(rows["excluded_flagged"]) == {1}
    assert set(rows["flagged_trials"]) == {0}

    args = ["sweeps", table / "trials.csv", "--factors", "interval_s", "--table",
            table / "sw.csv", "--power", table / "pw.csv",
            "--figure", table / "sw.png"]  # fmt: skip
    assert main(args) == 0
    sweep = pd.read_csv(table / "sw.csv").query("metric == 'dt_gap_s' and by != by")
    by_level = dict(zip(sweep["level"], sweep["flagged_trials"], strict=True))
    assert by_level == {0.01: 2, 0.5: 1} and set(sweep["excluded_flagged"]) == {0}
    assert main([*args, "--exclude-flags", "migration_slow"]) == 0
    sweep = pd.read_csv(table / "sw.csv").query("metric == 'dt_gap_s' and by != by")
    assert dict(zip(sweep["level"], sweep["n"], strict=True)) == {0.01: 2, 0.5: 1}
    assert dict(zip(sweep["level"], sweep["excluded_flagged"], strict=True)) == {0.01: 2, 0.5: 1}
