"""Trial folders -> metrics, checked against crafted trials whose losses are known."""

import json
import shutil
from pathlib import Path

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


def test_cells_group_the_repetitions_of_one_factor_combination() -> None:
    from migfw.trials.design import cell_of, planned_trials, trial_cells

    assert cell_of("placement/vmm-agent-d200-r03") == "placement/vmm-agent-d200"
    assert cell_of("thesis/i0.01-r12") == "thesis/i0.01"
    assert cell_of("sweep/r02") == "sweep/all"  # no factor in the slug
    assert cell_of("lab/by-hand") == "lab/by-hand"  # a folder named by hand: its own cell
    assert cell_of("bench/i0.001-r1000") == "bench/i0.001"
    experiments = {
        "thesis": {"factors": {"interval_s": [0.5, 0.01]}, "repetitions": 3},
        "placement": {
            "factors": {"interval_s": [0.001], "placement": ["vm", "vmm-agent"],
                        "agent_delay_ms": [200]},
            "repetitions": 2,
        },
    }  # fmt: skip
    cells = trial_cells(planned_trials(experiments))
    assert list(cells) == [
        "thesis/i0.5", "thesis/i0.01", "placement/vm", "placement/vmm-agent-d200"
    ]  # fmt: skip
    assert cells["thesis/i0.01"] == ["thesis/i0.01-r01", "thesis/i0.01-r02", "thesis/i0.01-r03"]
    assert sum(len(v) for v in cells.values()) == 10


def test_figures_show_distributions_when_trials_are_too_many_to_label(tmp_path: Path) -> None:
    """Above MAX_LABELLED_TRIALS a panel drops per-trial labels (they would overlap and take
    seconds to lay out); below it every trial keeps its labelled bar."""
    import numpy as np
    import pandas as pd

    from migfw.measure.figures import MAX_LABELLED_TRIALS, estimators_figure, uptime_figure

    rng = np.random.default_rng(1)

    def trials(n: int) -> pd.DataFrame:
        tmt = rng.uniform(5, 15, n)
        dt = rng.uniform(0.2, 0.6, n)
        return pd.DataFrame({
            "trial_id": [f"bench/i0.001-r{k:04d}" for k in range(1, n + 1)],
            "status": "ok", "interval_s": 0.001, "tmt_s": tmt, "dt_s": dt,
            "ut_s": tmt - dt, "ut_pct": 100 * (tmt - dt) / tmt, "dt_gap_s": dt,
            "dt_rxgap_s": dt, "hv_downtime_ms": dt * 1000,
        })  # fmt: skip

    few, many = trials(5), trials(MAX_LABELLED_TRIALS * 5)
    for name, frame in (("few", few), ("many", many)):
        uptime_figure(frame, tmp_path / f"up-{name}.png", "t")
        estimators_figure(frame, tmp_path / f"est-{name}.png")
    for kind in ("up", "est"):
        assert (tmp_path / f"{kind}-few.png").stat().st_size > 1000
        assert "r0003" in (tmp_path / f"{kind}-few.svg").read_text()  # labelled
        assert "r0003" not in (tmp_path / f"{kind}-many.svg").read_text()
    assert "trials in id order" in (tmp_path / "up-many.svg").read_text()
    assert "longest reply silence" in (tmp_path / "est-many.svg").read_text()
    # The distribution's jittered points: the same bytes when drawn again (seaborn jitters
    # with numpy's global generator; a 220-trial rerun drew a different dt_estimators.png).
    np.random.seed(None)
    estimators_figure(many, tmp_path / "est-again.png")
    assert (tmp_path / "est-again.png").read_bytes() == (tmp_path / "est-many.png").read_bytes()
