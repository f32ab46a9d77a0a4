"""migfw.measure.sweeps: sweep and power tables against hand-worked numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from migfw.measure.sweeps import power_table, repetitions_needed, sweep_figure, sweep_table


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
