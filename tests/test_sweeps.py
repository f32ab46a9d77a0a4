"""migfw.measure.sweeps: sweep and power tables against hand-worked numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from migfw.measure.sweeps import (
    difference_power_table,
    power_table,
    repetitions_needed,
    reps_to_detect,
    sweep_figure,
    sweep_table,
    two_sample_power,
)


def _trials() -> pd.DataFrame:
    # Experiment "sweep" varies algorithm (2 levels x 3 trials); "thesis" varies nothing but
    # the interval, which is not asked for here. One failed trial must be ignored.
    rows = []
    for alg, dts in (("precopy", [0.10, 0.12, 0.14]), ("multifd", [0.20, 0.20, 0.20])):
        for i, dt in enumerate(dts):
            rows.append({"experiment": "sweep", "trial_id": f"sweep/alg{alg}-r0{i + 1}",
                         "status": "ok", "algorithm": alg, "dt_gap_s": dt,
                         "hv_total_ms": 1000.0 + 100 * i, "interval_s": 0.01})  # fmt: skip
    rows.append({"experiment": "sweep", "trial_id": "sweep/algxbzrle-r01", "status": "failed",
                 "algorithm": "xbzrle", "dt_gap_s": None, "interval_s": 0.01})  # fmt: skip
    for i, dt in enumerate([0.3, 0.5]):
        rows.append({"experiment": "thesis", "trial_id": f"thesis/i0.5-r0{i + 1}", "status": "ok",
                     "algorithm": "precopy", "dt_gap_s": dt, "interval_s": 0.5})  # fmt: skip
    return pd.DataFrame(rows)


def test_sweep_table_means_and_t_intervals_by_hand() -> None:
    table = sweep_table(_trials(), ["algorithm", "interval_s"])
    # Only "sweep" varies a factor (algorithm; the failed xbzrle trial does not count).
    assert set(table["experiment"]) == {"sweep"} and set(table["factor"]) == {"algorithm"}
    row = table[(table["level"] == "precopy") & (table["metric"] == "dt_gap_s")].iloc[0]
    # 100, 120, 140 ms: mean 120, s = 20, t(0.975, 2) = 4.302653 -> half-width 49.6826 ms.
    assert row["n"] == 3 and row["mean"] == pytest.approx(120.0)
    assert row["ci_high"] - row["mean"] == pytest.approx(4.302653 * 20 / math.sqrt(3), rel=1e-6)
    flat = table[(table["level"] == "multifd") & (table["metric"] == "dt_gap_s")].iloc[0]
    assert flat["ci_low"] == pytest.approx(200.0) and flat["ci_high"] == pytest.approx(200.0)
    hv = table[(table["level"] == "multifd") & (table["metric"] == "hv_total_ms")].iloc[0]
    assert hv["mean"] == pytest.approx(1100.0)


def test_repetitions_needed_by_hand() -> None:
    # s = 20 ms, h = 20 ms: n = 7 gives t(0.975,6) = 2.446912 * 20/sqrt(7) = 18.50 <= 20,
    # n = 6 gives 2.570582 * 20/sqrt(6) = 20.99 > 20.
    assert repetitions_needed(20.0, 20.0) == 7
    assert repetitions_needed(20.0, 50.0) == 3  # n=3: 4.302653*20/1.732 = 49.68 <= 50
    assert repetitions_needed(0.0, 10.0) == 2
    assert repetitions_needed(float("nan"), 10.0) is None


def test_power_table_per_experiment_and_cell() -> None:
    power = power_table(_trials(), ["algorithm", "interval_s"])
    thesis = power[(power["experiment"] == "thesis") & (power["metric"] == "dt_gap_s")].iloc[0]
    # Thesis varies nothing asked for: one cell, 300 and 500 ms: s = 141.42 ms.
    assert thesis["cell"] == "all" and thesis["n"] == 2
    assert thesis["sd_ms"] == pytest.approx(141.4214, rel=1e-5)
    assert thesis["reps_for_50ms"] == repetitions_needed(141.4213562, 50)
    sweep = power[power["experiment"] == "sweep"].set_index("cell")
    # One cell per algorithm; the failed xbzrle trial makes none.
    assert sorted(sweep.index) == ["algorithm=multifd", "algorithm=precopy"]
    assert sweep.loc["algorithm=precopy", "sd_ms"] == pytest.approx(20.0)
    assert sweep.loc["algorithm=precopy", "reps_for_20ms"] == 7
    assert sweep.loc["algorithm=multifd", "reps_for_10ms"] == 2  # no spread at all
    assert "breach_window_ms" not in set(power["metric"])  # no trial has it


def test_sweep_figure_writes_png_and_svg(tmp_path: Path) -> None:
    sweep_figure(sweep_table(_trials(), ["algorithm"]), tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 5_000 and (tmp_path / "s.svg").exists()
    sweep_figure(sweep_table(_trials(), []), tmp_path / "e.png")  # nothing varies: a note
    assert (tmp_path / "e.png").exists()


def test_reps_to_detect_matches_textbook_sample_sizes() -> None:
    # Two-sided two-sample t, alpha 0.05, power 0.8, n per group (Cohen 1988, Table 2.4.1;
    # G*Power's exact values): d = 0.5 -> 64, d = 0.8 -> 26, d = 1 -> 17 (actual power 0.807).
    assert reps_to_detect(5.0, 10.0) == 64
    assert reps_to_detect(8.0, 10.0) == 26
    assert reps_to_detect(20.0, 20.0) == 17
    assert reps_to_detect(-20.0, 20.0) == 17  # the sign of a difference does not matter
    assert two_sample_power(17, 1.0) == pytest.approx(0.807, abs=0.001)
    assert two_sample_power(16, 1.0) < 0.8
    assert reps_to_detect(0.0, 10.0) is None and reps_to_detect(5.0, float("nan")) is None
    assert reps_to_detect(5.0, 0.0) == 2  # no spread: any difference shows
    assert reps_to_detect(0.001, 1000.0) is None  # beyond 100,000 per group


def _placements() -> pd.DataFrame:
    rows = []
    cells = {"vm": [100.0, 120.0, 140.0], "vmm-agent": [200.0, 220.0, 240.0], "none": [5000.0]}
    for placement, windows in cells.items():
        for i, w in enumerate(windows):
            rows.append({"experiment": "placement", "status": "ok", "placement": placement,
                         "breach_window_ms": w, "dt_gap_s": 0.2 + 0.01 * i})  # fmt: skip
    return pd.DataFrame(rows)


def test_difference_power_table_pools_the_two_cells_by_hand() -> None:
    table = difference_power_table(_placements(), ["placement"])
    bw = table[table["metric"] == "breach_window_ms"]
    # "none" has one trial: no SD, no pair. vm vs vmm-agent: both s = 20 -> pooled 20 ms.
    assert len(bw) == 1
    row = bw.iloc[0]
    assert {row["level_a"], row["level_b"]} == {"vm", "vmm-agent"} and row["held"] == ""
    assert row["pooled_sd_ms"] == pytest.approx(20.0)
    assert abs(row["observed_diff_ms"]) == pytest.approx(100.0)
    assert row["reps_for_diff_10ms"] == 64  # d = 0.5
    assert row["reps_for_diff_20ms"] == 17  # d = 1
    assert row["reps_for_observed"] == reps_to_detect(100.0, 20.0)
    dt = table[table["metric"] == "dt_gap_s"].iloc[0]
    # 200, 210, 220 ms in both cells: s = 10, no difference observed -> empty.
    assert dt["pooled_sd_ms"] == pytest.approx(10.0)
    assert pd.isna(dt["reps_for_observed"]) and dt["reps_for_diff_10ms"] == 17


def test_difference_power_table_compares_one_factor_at_a_time() -> None:
    rows = []
    for rate in (0, 8):
        for alg in ("precopy", "multifd"):
            for i in range(2):
                dt = 0.1 * (1 + rate) + 0.01 * i
                rows.append({"experiment": "sweep", "status": "ok", "dirty_rate_mibps": rate,
                             "algorithm": alg, "dt_gap_s": dt})  # fmt: skip
    table = difference_power_table(pd.DataFrame(rows), ["dirty_rate_mibps", "algorithm"])
    # 4 cells; pairs differing in one factor: 2 per factor (no diagonal pairs).
    assert len(table) == 4
    assert sorted(table["factor"]) == ["algorithm", "algorithm", "dirty_rate_mibps",
                                       "dirty_rate_mibps"]  # fmt: skip
    held = set(table.loc[table["factor"] == "algorithm", "held"])
    assert held == {"dirty_rate_mibps=0", "dirty_rate_mibps=8"}


def test_sweep_table_splits_a_two_factor_experiment_by_the_other_factor(tmp_path: Path) -> None:
    rows = []
    for rate, base in ((0, 100.0), (8, 300.0)):
        for alg, extra in (("precopy", 0.0), ("postcopy", 50.0)):
            for i in range(3):
                dt = (base + extra + 10 * i) / 1000
                rows.append({"experiment": "sweep", "status": "ok", "dirty_rate_mibps": rate,
                             "algorithm": alg, "dt_gap_s": dt})  # fmt: skip
    trials = pd.DataFrame(rows)
    table = sweep_table(trials, ["dirty_rate_mibps", "algorithm"])
    dt = table[table["metric"] == "dt_gap_s"]
    pooled = dt[(dt["by"] == "") & (dt["factor"] == "dirty_rate_mibps")].set_index("level")
    assert pooled.loc[8, "n"] == 6 and pooled.loc[8, "mean"] == pytest.approx(335.0)
    split = dt[(dt["factor"] == "dirty_rate_mibps") & (dt["by"] == "algorithm")]
    cell = split[(split["level"] == 8) & (split["by_level"] == "postcopy")].iloc[0]
    assert cell["n"] == 3 and cell["mean"] == pytest.approx(360.0)
    assert cell["ci_high"] - cell["mean"] == pytest.approx(4.302653 * 10 / math.sqrt(3), rel=1e-6)
    assert len(dt[dt["by"] == "dirty_rate_mibps"]) == 4  # algorithm split by rate
    sweep_figure(table, tmp_path / "s.png", trials)
    assert (tmp_path / "s.png").stat().st_size > 10_000
