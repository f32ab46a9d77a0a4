"""Figures that say one thing each (issue 22): the uptime figure per experiment with only the
trials whose firewall is in the guest, labels that never overlap and a legend clear of every
axis label; the attack-window figure with a panel per attacker side."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg

from migfw.measure.figures import attack_window_figure, uptime_figure


def _trials() -> pd.DataFrame:
    rng = np.random.default_rng(4)
    rows = []
    plan = (("thesis", [0.5, 0.01, 0.001], ["vm"], 8),
            ("placement", [0.001], ["vm", "vmm", "vmm-agent", "none"], 5))  # fmt: skip
    for experiment, intervals, placements, reps in plan:
        for interval in intervals:
            for placement in placements:
                for rep in range(1, reps + 1):
                    tmt = rng.uniform(2, 4)
                    dt = rng.uniform(0.1, 0.5) if rep != 3 else tmt - 0.05  # one short UT bar
                    tid = (f"{experiment}/i{interval:g}-r{rep:02d}" if experiment == "thesis"
                           else f"{experiment}/{placement}-r{rep:02d}")  # fmt: skip
                    rows.append({"trial_id": tid, "experiment": experiment,
                                 "placement": placement, "interval_s": interval, "status": "ok",
                                 "tmt_s": tmt, "dt_s": dt, "ut_s": tmt - dt,
                                 "ut_pct": 100 * (tmt - dt) / tmt})  # fmt: skip
    return pd.DataFrame(rows)


def _extents(fig):
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    return renderer


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 - 0.5 and b.x0 < a.x1 - 0.5 and a.y0 < b.y1 - 0.5 and b.y0 < a.y1 - 0.5


def test_uptime_figure_per_experiment_guest_firewalls_only_no_overlaps(tmp_path: Path) -> None:
    fig = uptime_figure(_trials(), tmp_path / "uptime.png", "Firewall uptime")
    svg = (tmp_path / "uptime.svg").read_text()
    for title in ("thesis: I = 0.5 s (n = 8)", "thesis: I = 0.001 s (n = 8)",
                  "placement: I = 0.001 s (n = 5)"):  # fmt: skip
        assert title in svg
    assert "vm-r01" in svg and "none-r01" not in svg and "vmm-agent-r01" not in svg
    renderer = _extents(fig)
    axes = [ax for ax in fig.get_axes() if ax.axison]
    assert len(axes) == 4  # three thesis intervals, one placement panel
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert names == ["TMT = PS·I", "UT = TMT − DT", "mean UT", "95% CI as in thesis (z)",
                     "95% CI, Student t"]  # fmt: skip
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in axes:
        ticks = [t for t in ax.get_xticklabels() if t.get_text()]
        values = [t for t in ax.texts if t.get_text().endswith("%")]
        boxes = [t.get_window_extent(renderer) for t in ticks + values]
        for a, b in combinations(boxes, 2):
            assert not _overlap(a, b), (ax.get_title(), a, b)
        frame = ax.get_window_extent(renderer)
        for t in values:  # every UT % label inside its panel, the short bar's above it
            box = t.get_window_extent(renderer)
            assert frame.y0 - 0.5 <= box.y0 and box.y1 <= frame.y1 + 0.5, t.get_text()
        labels = [ax.xaxis.label, ax.yaxis.label, *ax.get_yticklabels(), *ticks]
        for t in labels:
            if t.get_text():
                assert not _overlap(legend, t.get_window_extent(renderer)), t.get_text()
        assert not _overlap(legend, frame)


def test_uptime_legend_keeps_the_cis_when_the_last_panel_has_one_trial(tmp_path: Path) -> None:
    # config/test.yaml's shape: thesis with CIs, then one placement trial (no CI drawn there)
    trials = _trials()
    one = (trials["experiment"] == "placement") & (trials["trial_id"] == "placement/vm-r01")
    trials = trials[(trials["experiment"] == "thesis") | one]
    fig = uptime_figure(trials, tmp_path / "uptime.png", "Firewall uptime")
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "95% CI as in thesis (z)" in names and "95% CI, Student t" in names
    assert len(names) == len(set(names)) == 5


def test_attack_window_figure_has_a_panel_per_attacker_side(tmp_path: Path) -> None:
    trials, cells = [], []
    for side in ("switch", "dst_cotenant", "egress"):
        for placement, window, answered in (("vm", 0.0, 0), ("vmm-agent", 205.0, 206)):
            for rep in (1, 2):
                row = {"trial_id": f"placement/{placement}-r0{rep}", "status": "ok",
                       "experiment": "placement", "placement": placement,
                       "agent_delay_ms": 200 if placement == "vmm-agent" else None,
                       "blocked_sent": 1000, "breach_window_ms": 0.0}  # fmt: skip
                trials.append(
                    row
                    | {
                        f"breach_{side}_{k}": v
                        for k, v in {
                            "sent": 1000,
                            "answered": answered,
                            "window_ms": window + rep,
                            "window_hi_ms": window + rep + 2,
                            "bound_ms": window + rep + 2.0 or 1.0,
                            "gap_max_ms": 1.0,
                            "max_run_probes": answered,
                            "total_ms": window,
                        }.items()
                    }
                )
    frame = pd.DataFrame(trials).groupby("trial_id", as_index=False).first()
    from migfw.measure.attackstats import attack_window_table

    cells = attack_window_table(frame, resamples=99, seed=1)
    fig = attack_window_figure(frame, cells, tmp_path / "aw.png")
    titles = [ax.get_title() for ax in fig.get_axes()]
    assert titles == ["attacker on the switch between the hosts",
                      "co-tenant on the destination host's bridge",
                      "the guest's own SYNs to a destination its ruleset blocks"]  # fmt: skip
    svg = (tmp_path / "aw.svg").read_text()
    assert "0/2" in svg and "no probe answered: every exposure &lt; this" in svg
    renderer = _extents(fig)
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in fig.get_axes():
        ticks = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
        assert len(ticks) == 2
        assert not any(_overlap(a, b) for a, b in combinations(ticks, 2))
        assert not any(_overlap(legend, t) for t in ticks)


def _grid_trials(cells: int) -> pd.DataFrame:
    """`cells` vmm-agent cells (one per delay) over three experiments, two trials each, on the
    switch side; the full grid (config/attack.yaml) has 22 cells per side."""
    rows = []
    for c in range(cells):
        experiment = ("attack", "attack_delay", "attack_loose")[c * 3 // cells]
        for rep in (1, 2):
            window = 10.0 * c + rep
            rows.append({"trial_id": f"{experiment}/vmm-agent-trincoming-d{c}-pdclosed-r0{rep}",
                         "status": "ok", "experiment": experiment, "placement": "vmm-agent",
                         "blocked_sent": 1000, "breach_window_ms": window,
                         "trigger": "incoming", "agent_delay_ms": c, "port_default": "closed",
                         "breach_switch_sent": 1000, "breach_switch_answered": rep,
                         "breach_switch_window_ms": window,
                         "breach_switch_window_hi_ms": window + 2,
                         "breach_switch_bound_ms": window + 2, "breach_switch_gap_max_ms": 1.0,
                         "breach_switch_max_run_probes": rep,
                         "breach_switch_total_ms": window})  # fmt: skip
    return pd.DataFrame(rows)


def test_attack_window_labels_never_overlap_in_a_full_grid(tmp_path: Path) -> None:
    from migfw.measure.attackstats import attack_window_table

    for cells in (8, 13, 22, 40):
        frame = _grid_trials(cells)
        table = attack_window_table(frame, resamples=99, seed=1)
        assert len(table) == cells
        fig = attack_window_figure(frame, table, tmp_path / f"aw{cells}.png")
        renderer = _extents(fig)
        legend = fig.legends[0].get_window_extent(renderer)
        (ax,) = fig.get_axes()
        labels = [t for t in ax.get_xticklabels() if t.get_text()]
        assert len(labels) == cells
        # several experiments: each label names its own (attack_delay's cells are not attack's)
        assert all(t.get_text().startswith(("attack:", "attack ·", "attack_delay", "attack_loose"))
                   for t in labels)  # fmt: skip
        assert sum("attack_loose" in t.get_text() for t in labels) >= 2
        boxes = [t.get_window_extent(renderer) for t in labels]
        for a, b in combinations(boxes, 2):
            assert not _overlap(a, b), (cells, a, b)
        for box in boxes:
            assert not _overlap(legend, box)
        assert not _overlap(legend, ax.xaxis.label.get_window_extent(renderer))
