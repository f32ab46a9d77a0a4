"""Table 11 recomputation and audit against values worked out by hand from the thesis."""

import pandas as pd
import pytest
from conftest import REPO

from migfw.errors import MigfwError
from migfw.paper.table11 import reproduce_table11

TABLE = REPO / "resources/paper/table11.csv"
SUMMARY = REPO / "resources/paper/table11_summary.csv"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")
    audit = reproduce_table11(TABLE, SUMMARY, out, resamples=500, seed=1)
    rows = pd.read_csv(out / "table11.csv").set_index("vm")
    return audit, rows


def test_rows_recomputed_from_ps_and_pr(outputs):
    _, rows = outputs
    # By hand: VM8 PS 3070 at 0.01 s -> TMT 30.70 s; PL 30 -> DT 0.30 s; UT 30.40 s.
    assert rows.loc["VM8", "tmt_s"] == pytest.approx(30.70)
    assert rows.loc["VM8", "ut_s"] == pytest.approx(30.40)
    # VM1: 168 sent, 166 received at 0.5 s -> TMT 84, DT 1, UT 83 (98.81 %).
    assert rows.loc["VM1", ["tmt_s", "dt_s", "ut_s"]].tolist() == [84, 1, 83]
    assert rows.loc["VM1", "ut_pct"] == pytest.approx(100 * 83 / 84)
    # Mean TMT at 0.01 s from PS: (12.40 + 15.27 + 9.03 + 30.70) / 4 = 16.85 (printed 16.6).
    assert rows[rows["interval_s"] == 0.01]["tmt_s"].mean() == pytest.approx(16.85)


def _cell(audit, row, column, interval=None):
    sel = audit[(audit["row"] == row) & (audit["column"] == column)]
    if interval is not None:
        sel = sel[sel["interval_s"] == interval]
    assert len(sel) == 1
    return sel.iloc[0]


def test_audit_flags_hand_found_disagreements(outputs):
    audit, _ = outputs
    # Found by hand: VM8's TMT 30.4 is PR/100 (3040), not PS/100 (3070).
    vm8 = _cell(audit, "VM8", "tmt_s")
    assert not vm8["agrees"] and "PR·I" in vm8["explanation"]
    # VM6's TMT 15.2: 1527/100 = 15.27 rounds to 15.3, so 15.2 is truncated.
    vm6 = _cell(audit, "VM6", "tmt_s")
    assert not vm6["agrees"] and "truncated" in vm6["explanation"]
    # 0.5 s TMT CI printed 30.5-75.5 = 53 ± 22.5 = mean ± SD, not mean ± 1.96·SD/2 (± 22.05).
    ci = _cell(audit, "tmt_s", "ci_low", 0.5)
    assert not ci["agrees"] and "mean ± SD" in ci["explanation"]
    # 0.01 s UT variance printed 68.73: the printed UT cells' squared deviations sum to 274.96,
    # /3 = 91.65 (sample), /4 = 68.74 (population); from PS/PR it is 93.97.
    var = _cell(audit, "ut_s", "var", 0.01)
    assert not var["agrees"] and var["recomputed"] == pytest.approx(93.97, abs=0.01)
    # Mean TMT at 0.01 s printed 16.6, recomputed 16.85.
    assert not _cell(audit, "tmt_s", "mean", 0.01)["agrees"]


def test_audit_accepts_cells_that_agree(outputs):
    audit, _ = outputs
    # Checked by hand: these are right to their printed precision.
    for row, column, interval in [
        ("VM1", "tmt_s", None),
        ("VM5", "tmt_s", None),
        ("VM7", "tmt_s", None),  # 9.03 printed as 9.0
        ("dt_s", "mean", 0.5),
        ("tmt_s", "mean", 0.5),
        ("dt_s", "var", 0.5),  # 0.0833 -> 0.08
    ]:
        assert _cell(audit, row, column, interval)["agrees"], (row, column)
    assert len(audit) == 8 * 4 + 30  # every printed cell and summary value is checked


def test_bad_transcription_is_one_clear_error(tmp_path):
    bad = tmp_path / "t.csv"
    bad.write_text("interval_s,vm,ps,pr,pl,tmt_s,dt_s\n0.5,VM1,x,1,0,1,0\n")
    with pytest.raises(MigfwError, match="ut_s"):
        reproduce_table11(bad, SUMMARY, tmp_path / "out")
    assert not (tmp_path / "out" / "audit.csv").exists()


def test_thesis_preset_comparison_gives_libvirts_tmt_and_survivors() -> None:
    """paper_vs_reproduction's TMT cell: PS·I and libvirt's TMT (ms → s) with their t CIs,
    and how many of the compared experiment's trials kept a live guest (hand-built frames)."""
    from migfw.paper.compare import _measured_by_interval, _survival, _thesis_rows

    rows = [  # experiment, interval, placement, metric, n, mean, ci_t_low, ci_t_high
        ("thesis512", 0.5, "vm", "hv_total_ms", 4, 15350.0, 14600.0, 16100.0),
        ("thesis512", 0.01, "vm", "hv_total_ms", 3, 15360.0, 13320.0, 17390.0),
        ("thesis", 0.01, "vm", "hv_total_ms", 8, 700.0, 600.0, 800.0),  # another experiment
    ]
    cols = ["experiment", "interval_s", "placement", "metric", "n", "mean", "ci_t_low",
            "ci_t_high"]  # fmt: skip
    summary = _thesis_rows(pd.DataFrame(rows, columns=cols))
    cell = _measured_by_interval(summary, "hv_total_ms", " s", scale=1e-3)
    assert cell.split("; ") == [
        "15.35 s [14.60, 16.10] at I = 0.5 s (n = 4)",
        "15.36 s [13.32, 17.39] at I = 0.01 s (n = 3)",
    ]
    trials = pd.DataFrame(
        {
            "experiment": ["thesis512"] * 8 + ["thesis"] * 2,
            "placement": ["vm"] * 10,
            "status": ["ok"] * 7 + ["failed"] + ["failed"] * 2,
        }
    )
    assert _survival(trials, summary).startswith(" 7 of 8 trials kept a live guest;")
    assert _survival(None, summary) == ""
