"""Trial folders -> metrics, checked against crafted trials whose losses are known."""

import json
import shutil

import pandas as pd
import pytest

from migfw.errors import MigfwError
from migfw.measure.metrics import collect, trial_metrics
from migfw.trials.contract import discover_trials, load_trial
from migfw.trials.crafted import CraftedTrial, craft_trial


@pytest.fixture
def crafted(tmp_path):
    specs = [
        CraftedTrial("i0.01-r01", 0.01, downtime_s=0.42, migration_s=9, seed=3, queued=3),
        CraftedTrial("i0.001-r01", 0.001, downtime_s=0.21, migration_s=4, seed=4, queued=0),
        CraftedTrial("i0.5-r01", 0.5, downtime_s=1.3, migration_s=20, seed=5, queued=1),
    ]
    truths = {s.trial_id: craft_trial(s, tmp_path / s.trial_id) for s in specs}
    return tmp_path, truths


def test_metrics_match_crafted_truth(crafted):
    root, truths = crafted
    for trial_dir in discover_trials(root):
        row = trial_metrics(trial_dir)
        truth = truths[trial_dir.name]
        assert row["ps"] == truth["ps_window"], trial_dir.name
        assert row["pl"] == truth["pl_window"]
        assert row["max_run"] == truth["max_run"]
        assert row["late_replies"] >= truth["late_replies"]
        assert row["ps_total"] == truth["ps_total"] and row["pl_total"] == truth["pl_total"]
        interval = row["interval_s"]
        assert row["tmt_s"] == pytest.approx(truth["ps_window"] * interval)
        assert row["dt_s"] == pytest.approx(truth["pl_window"] * interval)
        # The gap estimate brackets the true pause (bounds are ±1 interval wide).
        pause = truth["pause_end"] - truth["pause_start"]
        assert row["dt_gap_lo_s"] - interval <= pause <= row["dt_gap_hi_s"] + interval
        assert row["hv_downtime_ms"] == pytest.approx(pause * 1000, rel=1e-6)


def test_collect_orders_columns_and_keeps_failed_trials(crafted, tmp_path):
    root, _ = crafted
    failed = root / "i0.01-r02"
    failed.mkdir()
    meta = json.loads((root / "i0.01-r01" / "trial.json").read_text())
    meta.update(trial_id="i0.01-r02", status="failed", failure="migration aborted: timeout")
    (failed / "trial.json").write_text(json.dumps(meta))
    rows = [trial_metrics(d) for d in discover_trials(root)]
    table = collect(rows)
    assert list(table.columns[:7]) == [
        "trial_id", "experiment", "placement", "agent_delay_ms", "interval_s", "status", "failure"
    ]  # fmt: skip
    assert set(table["experiment"]) == {"default"} and set(table["placement"]) == {"vm"}
    bad = table.set_index("trial_id").loc["i0.01-r02"]
    assert bad["status"] == "failed" and "timeout" in bad["failure"]
    assert pd.isna(bad["ps"])


def test_trial_json_errors_name_file_and_key(tmp_path):
    shutil.rmtree(tmp_path, ignore_errors=True)
    folder = tmp_path / "t1"
    folder.mkdir(parents=True)
    (folder / "trial.json").write_text(json.dumps({"trial_id": "t1", "interval_s": -1}))
    with pytest.raises(MigfwError, match=r"trial.json: .*"):
        load_trial(folder)
    (folder / "trial.json").write_text("{not json")
    with pytest.raises(MigfwError, match="not valid JSON"):
        load_trial(folder)
