"""Figures (seaborn/matplotlib, PNG + SVG): uptime per trial, probe timelines, DT by estimator.

Figures are built as `matplotlib.figure.Figure` objects, not through pyplot's global state:
the workflow draws them in threads of one process (migfw.jobs.run_job).

Size: every figure shares the helpers (_figure, _save, _ticks, the seaborn theme) and one CLI
registration; each figure is one function of 50-100 lines, and a new figure needs no other
module.
"""

from __future__ import annotations

import argparse
import os
from functools import cache
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from migfw.errors import MigfwError
from migfw.measure.stats import describe
from migfw.testbed.placements import names as placement_names

DEFAULT_UPTIME_TITLE = "Firewall uptime during live migration"


@cache
def _sns():
    """seaborn, imported on first use (1 s+) with the figures' theme set once."""
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return sns


def _figure(**kwargs) -> Figure:
    _sns()  # the theme (rcParams) applies to figures made after it is set
    return Figure(**kwargs)


def _save(fig: Figure, out_png: str | Path) -> None:
    """Save PNG and an SVG twin (same stem) via temporary names, then rename."""
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    # One tight bounding box for both files, measured as savefig(bbox_inches="tight") measures
    # it for the PNG (a draw at 150 dpi without output); passing it spares each savefig that
    # extra draw (a 1 kHz timeline: 0.44 -> ~0.3 CPU-s).
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas, dpi = fig.canvas, fig.dpi
    try:
        fig.set_dpi(150)
        FigureCanvasAgg(fig)
        fig.draw_without_rendering()
        bbox = fig.get_tightbbox(fig.canvas.get_renderer())
        bbox = bbox.padded(matplotlib.rcParams["savefig.pad_inches"])
    finally:
        fig.set_dpi(dpi)
        fig.set_canvas(canvas)
    for path in (out_png, out_png.with_suffix(".svg")):
        tmp = path.with_name(f".{path.name}.part{path.suffix}")
        # No date and fixed element ids in the SVG: the same figure is the same bytes on a
        # cluster node and here (tests/test_slurm.py compares them).
        with matplotlib.rc_context({"svg.hashsalt": "migfw"}):
            fig.savefig(tmp, dpi=150, bbox_inches=bbox, metadata={"Date": None})
        os.replace(tmp, path)


TICK_BINS = 6000  # a timeline is ~1,500 pixels wide at 150 dpi


def _ticks(ax: Axes, t: np.ndarray, color: str, lw: float, label: str) -> None:
    """A vertical tick per time in t, as one path (NaN-separated) drawn as a bitmap in SVGs.

    ax.vlines makes a Path object per tick (~0.5 s for 18,000 probes, a 1 kHz trial) and an
    SVG path per tick (writing the SVG took 4 of a timeline's 6.6 s).
    """
    t = np.asarray(t, dtype=float)
    if len(t) > TICK_BINS:  # ticks closer than ~1/4 pixel are one tick on the page
        step = (t.max() - t.min()) / TICK_BINS or 1.0
        t = np.unique(np.round(t / step)) * step
    xs = np.repeat(t, 3)
    ys = np.tile([0.0, 1.0, np.nan], len(t))
    ax.plot(xs, ys, color=color, lw=lw, label=label, rasterized=True)


# Above this many trials in a panel, per-trial labels would overlap (and take seconds to lay
# out): panels then show the distribution instead of one labelled bar per trial.
MAX_LABELLED_TRIALS = 40


# Placements where the firewall is in the guest: the only ones where "firewall uptime" (the
# guest's ruleset running) means anything.
GUEST_PLACEMENTS = tuple(placement_names(guest_rules=True))  # vm, both
SLOT_IN = 0.24  # inches per bar: a 7-pt label turned upright is ~0.1 in wide, so none overlap


def _short_label(trial_id: str, interval: float) -> str:
    """A trial's tick label inside its panel: the id without the experiment and the interval
    (both in the panel's title), e.g. thesis/i0.5-r03 -> r03."""
    tail = str(trial_id).rsplit("/", 1)[-1]
    parts = [p for p in tail.split("-") if p != f"i{interval:g}"]
    return "-".join(parts) or tail


def uptime_figure(
    trials: pd.DataFrame, out_png: str | Path, title: str, label: str = "trial_id"
) -> Figure:
    """The thesis's Figure 7, with more: TMT and UT per trial, mean UT with 95 % CIs.

    One row of panels per experiment, one panel per probe interval, only trials whose firewall
    is in the guest (GUEST_PLACEMENTS: elsewhere "firewall uptime" means nothing). Bars are
    TMT (light) with UT (dark) inside, so the thin light cap is the downtime, each labelled
    upright with its UT %; right of the trials the mean UT with the thesis's normal CI (dashed)
    and the Student-t CI (solid). Each bar gets a fixed width on the page, so no two labels
    overlap; the legend sits below every panel, clear of the axis labels.
    """
    ok = trials[trials["status"] == "ok"] if "status" in trials else trials
    ok = ok.dropna(subset=["tmt_s", "ut_s"])
    if "placement" in ok:
        ok = ok[ok["placement"].fillna("vm").isin(GUEST_PLACEMENTS)]
    if ok.empty:
        raise MigfwError(
            "no successful trial with TMT and UT whose firewall is in the guest "
            f"(placements {', '.join(GUEST_PLACEMENTS)}) to plot"
        )
    experiments = [""]
    if "experiment" in ok:  # the thesis's own experiments first
        names = ok["experiment"].fillna("").unique()
        experiments = sorted(names, key=lambda e: (not str(e).startswith("thesis"), str(e)))
    rows = []
    for experiment in experiments:
        part = ok[ok["experiment"].fillna("") == experiment] if experiment else ok
        intervals = sorted(part["interval_s"].unique(), reverse=True)
        rows.append([(experiment, i, part[part["interval_s"] == i]) for i in intervals])
    slots = [sum(min(len(g), MAX_LABELLED_TRIALS) + 3 for _, _, g in row) for row in rows]
    width = max(6.0, SLOT_IN * max(slots) + 1.2)
    fig = _figure(figsize=(width, 3.4 * len(rows) + 0.9), layout="constrained")
    subfigs = fig.subfigures(len(rows), 1, squeeze=False)[:, 0]
    legend: dict[str, object] = {}  # every panel's entries: a panel of one trial has no CIs
    for subfig, row, used in zip(subfigs, rows, slots, strict=True):
        ratios = [min(len(g), MAX_LABELLED_TRIALS) + 3 for _, _, g in row]
        spare = max(slots) - used  # an empty slot keeps every bar the same width on the page
        axes = subfig.subplots(1, len(row) + bool(spare), squeeze=False,
                               width_ratios=ratios + [spare] * bool(spare))[0]  # fmt: skip
        if spare:
            axes[-1].set_axis_off()
        for ax, (experiment, interval, group) in zip(axes, row, strict=False):
            _uptime_panel(ax, group.sort_values(label), label, interval)
            where = f"{experiment}: " if experiment else ""
            ax.set_title(f"{where}I = {interval:g} s (n = {len(group)})", fontsize=9)
            for handle, name in zip(*ax.get_legend_handles_labels(), strict=True):
                legend.setdefault(name, handle)
    fig.legend(legend.values(), legend.keys(), fontsize=7, loc="outside lower center", ncols=5)
    fig.suptitle(title)
    _save(fig, out_png)
    return fig


def _uptime_panel(ax: Axes, group: pd.DataFrame, label: str, interval: float) -> None:
    x = np.arange(len(group))
    labelled = len(group) <= MAX_LABELLED_TRIALS
    top = float(np.nanmax(group["tmt_s"])) or 1.0
    if labelled:
        ax.bar(x, group["tmt_s"], color="#c6dbef", label="TMT = PS·I")
        ax.bar(x, group["ut_s"], color="#2171b5", width=0.6, label="UT = TMT − DT")
        for xi, (ut, pct) in enumerate(zip(group["ut_s"], group["ut_pct"], strict=True)):
            inside = ut >= 0.35 * top  # room for the upright label inside the bar
            ax.text(xi, ut - 0.02 * top if inside else ut + 0.02 * top, f"{pct:.1f}%",
                    ha="center", va="top" if inside else "bottom", fontsize=6, rotation=90,
                    color="white" if inside else "#08306b")  # fmt: skip
    else:  # one filled outline per series: thousands of bars draw in seconds each
        edges = np.arange(len(group) + 1) - 0.5
        ax.stairs(group["tmt_s"], edges, fill=True, color="#c6dbef", label="TMT = PS·I")
        ax.stairs(group["ut_s"], edges, fill=True, color="#2171b5", label="UT = TMT − DT")
    s = describe(group["ut_s"], seed=0, resamples=2000)
    m = len(group) + 0.5  # the mean stands apart, right of the trials
    ax.bar(m, s["mean"], color="#fd8d3c", width=1.2, label="mean UT")
    if s["n"] >= 2:
        for dx, low, high, style, name in (
            (-0.25, s["ci_z_low"], s["ci_z_high"], "--", "95% CI as in thesis (z)"),
            (0.25, s["ci_t_low"], s["ci_t_high"], "-", "95% CI, Student t"),
        ):
            bars = ax.errorbar(m + dx, s["mean"], yerr=[[s["mean"] - low], [high - s["mean"]]],
                               fmt="none", ecolor="k", capsize=3, lw=1, label=name)  # fmt: skip
            bars[-1][0].set_linestyle(style)
    if labelled:
        ticks = [_short_label(t, interval) for t in group[label]]
        ax.set_xticks([*x, m], [*ticks, "mean"], rotation=90, fontsize=7)
    else:  # trials in id order, unlabelled; the mean keeps its tick
        ax.set_xticks([m], ["mean"], rotation=90, fontsize=7)
        ax.set_xlabel("trials in id order", fontsize=7)
    ax.set_xlim(-0.7, m + 0.9)
    ax.set_ylim(0, max(top * 1.3, ax.get_ylim()[1]))  # room for labels above short bars
    ax.set_ylabel("seconds")


def estimators_figure(trials: pd.DataFrame, out_png: str | Path) -> None:
    """Downtime per trial by estimator: count-based, gap-based (with bounds), hypervisor."""
    ok = trials[trials["status"] == "ok"].copy()
    if ok.empty:
        raise MigfwError("no successful trial to plot")
    ok["hv_downtime_s"] = pd.to_numeric(ok["hv_downtime_ms"], errors="coerce") / 1000
    columns = {
        "dt_s": "PL·I (thesis)",
        "dt_gap_s": "longest lost run (send times)",
        "dt_rxgap_s": "longest reply silence",
        "hv_downtime_s": "hypervisor reported",
    }
    present = {k: v for k, v in columns.items() if k in ok and ok[k].notna().any()}
    long = ok.melt(
        id_vars=["trial_id", "interval_s"],
        value_vars=list(present),
        var_name="estimator",
        value_name="downtime_s",
    )
    long["estimator"] = long["estimator"].map(present)
    long["downtime_ms"] = long["downtime_s"] * 1000
    intervals = sorted(ok["interval_s"].unique(), reverse=True)
    fig = _figure(figsize=(8, 2.8 * len(intervals)))
    axes = fig.subplots(len(intervals), 1, squeeze=False)
    handles, labels = [], []
    for ax, interval in zip(axes[:, 0], intervals, strict=True):
        part = long[long["interval_s"] == interval]
        n_trials = part["trial_id"].nunique()
        if n_trials > MAX_LABELLED_TRIALS:
            # Too many trials for a bar each: each estimator's distribution over the trials.
            _sns().boxplot(data=part, x="estimator", y="downtime_ms", hue="estimator", ax=ax,
                           palette="Set2", showfliers=False, legend=False)  # fmt: skip
            # seaborn jitters with numpy's global generator: seeded here (and put back), the
            # same trials draw the same bytes on every rerun.
            state = np.random.get_state()
            np.random.seed(0)
            try:
                _sns().stripplot(data=part, x="estimator", y="downtime_ms", ax=ax, color="k",
                                 size=1.5, alpha=0.4, jitter=0.3)  # fmt: skip
            finally:
                np.random.set_state(state)
            ax.set_title(f"I = {interval:g} s (n = {n_trials} trials)")
            ax.set_xlabel("")
            ax.set_ylabel("downtime (ms)")
            ax.tick_params(axis="x", labelsize=7)
            continue
        _sns().barplot(
            data=part,
            x="trial_id",
            y="downtime_ms",
            hue="estimator",
            ax=ax,
            palette="Set2",
            errorbar=None,
        )
        sub = ok[ok["interval_s"] == interval].sort_values("trial_id")
        if {"dt_gap_lo_s", "dt_gap_hi_s"} <= set(sub.columns):
            order = [t.get_text() for t in ax.get_xticklabels()]
            sub = sub.set_index("trial_id").loc[order]
            n_est = len(present)
            width = 0.8 / n_est
            idx = list(present).index("dt_gap_s") if "dt_gap_s" in present else None
            if idx is not None:
                xs = np.arange(len(order)) - 0.4 + width * (idx + 0.5)
                mid = sub["dt_gap_s"].to_numpy(float) * 1000
                lo = mid - sub["dt_gap_lo_s"].to_numpy(float) * 1000
                hi = sub["dt_gap_hi_s"].to_numpy(float) * 1000 - mid
                ax.errorbar(xs, mid, yerr=[lo, hi], fmt="none", ecolor="k", lw=0.8, capsize=2)
        ax.set_title(f"I = {interval:g} s")
        ax.set_xlabel("")
        ax.set_ylabel("downtime (ms)")
        ax.tick_params(axis="x", rotation=45, labelsize=7)
        handles, labels = ax.get_legend_handles_labels()
        ax.legend_.remove()
    fig.tight_layout()
    if handles:
        fig.legend(
            handles, labels, fontsize=7, ncols=4, loc="lower center", bbox_to_anchor=(0.5, -0.03)
        )
    _save(fig, out_png)


def timeline_figure(trial_dir: str | Path, out_png: str | Path) -> None:
    """One trial: every probe as answered/lost against time, RTT, migration window shaded.

    With attack data (migfw.measure.attack), the blocked-port probes (breaches marked) and
    the two flows' answered requests are drawn under the ICMP raster, and the guest's pause
    (trial.json `phases`, else the ICMP outage) is shaded darker.
    """
    from migfw.measure.capture import read_echoes
    from migfw.measure.probes import match_probes
    from migfw.trials.contract import load_trial

    trial_dir = Path(trial_dir)
    meta = load_trial(trial_dir)
    has_attack = (trial_dir / "attack.pcap").exists() and meta["status"] == "ok"
    has_flows = (trial_dir / "flows.csv").exists() and meta["status"] == "ok"
    has_service = (trial_dir / "service.csv").exists() and meta["status"] == "ok"
    # Placement ovn: the Geneve underlay between the hosts (decapsulated by the capture
    # reader) and the Port_Binding's transitions.
    has_underlay = (trial_dir / "underlay.pcap").exists() and meta["status"] == "ok"
    # The hypervisor's phases (testbed trials, migfw.measure.phases) above the probe raster,
    # on the same clock.
    hv_phases = meta.get("phases") if meta["status"] == "ok" else None
    has_phases = isinstance(hv_phases, dict) and "suspended" in hv_phases
    ratios = [1] * has_phases + [1] + [1] * has_attack + [1] * has_flows + [1] * has_service
    ratios += [1] * has_underlay + [3]
    fig = _figure(figsize=(9, 4 + 0.8 * (len(ratios) - 2)))
    axes = fig.subplots(len(ratios), 1, sharex=True, gridspec_kw={"height_ratios": ratios})
    ax_raster, ax_rtt = axes[int(has_phases)], axes[-1]
    migration = meta.get("migration") or {}
    if meta["status"] != "ok":
        ax_rtt.text(
            0.5,
            0.5,
            f"failed trial: {meta.get('failure')}",
            ha="center",
            transform=ax_rtt.transAxes,
        )
        _save(fig, out_png)
        return
    table = match_probes(read_echoes(trial_dir / "probe.pcap", meta["target"]))
    send_s = table.send_ns / 1e9
    start = migration.get("start") or float(send_s.min())
    t = send_s - start
    answered = table.answered
    _ticks(ax_raster, t[answered], color="#2171b5", lw=0.3, label="answered")
    _ticks(ax_raster, t[~answered], color="#cb181d", lw=0.8, label="lost")
    ax_raster.set_yticks([])
    ax_raster.set_ylabel("ICMP", fontsize=7)
    if has_phases:
        from migfw.measure.announce import read_announcements
        from migfw.measure.phases import draw_phases, read_jobstats

        announced = read_announcements(trial_dir / "probe.pcap", meta["target"])
        draw_phases(axes[0], hv_phases, read_jobstats(trial_dir), start, announced)
    ax_raster.legend(fontsize=7, loc="upper left", ncols=2)
    row = 1 + int(has_phases)
    title_extra = ""
    if has_attack:
        title_extra = _breach_raster(axes[row], trial_dir, meta, start)
        row += 1
    if has_flows:
        _flow_raster(axes[row], trial_dir, start)
        row += 1
    if has_service:
        title_extra += _service_raster(axes[row], trial_dir, start)
        row += 1
    if has_underlay:
        title_extra += _underlay_raster(axes[row], trial_dir, meta, start)
    rtt_ms = table.rtt_ns / 1e6
    ax_rtt.scatter(t[answered], rtt_ms[answered], s=2, color="#2171b5", rasterized=True)
    ax_rtt.set_yscale("log")
    # Plain numbers (0.1, 1, 10 ms), not mathtext powers of ten: laying out mathtext labels
    # took ~0.3 s of every timeline.
    ax_rtt.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax_rtt.set_ylabel("RTT (ms)")
    ax_rtt.set_xlabel("seconds since migration start")
    phases = None
    if has_attack or has_flows or has_service:
        from migfw.measure.attack import migration_phases

        phases = migration_phases(meta)
        if phases["source"] != "phases":
            phases = None
    for ax in axes:
        if migration.get("end") is not None:
            ax.axvspan(0, migration["end"] - start, color="#fdae6b", alpha=0.3, lw=0)
        if phases:
            ax.axvspan(
                phases["pause"] - start, phases["resume"] - start, color="#7f2704", alpha=0.25, lw=0
            )
    hv = (meta.get("hypervisor") or {}).get("downtime_ms")
    title = f"{meta['trial_id']}: I = {meta['interval_s']:g} s, {int((~answered).sum())} lost"
    if hv is not None:
        title += f", hypervisor downtime {hv:.0f} ms"
    shaded = "migration" + ("; dark: guest paused" if phases else "")
    fig.suptitle(title + title_extra + f" (shaded: {shaded})")
    _save(fig, out_png)


def _breach_raster(ax: Axes, trial_dir: Path, meta: dict, start: float) -> str:
    """Blocked-port probes: answered ones (breaches) in red, the rest grey."""
    from migfw.measure.attack import answered_indices, read_sendlog
    from migfw.measure.capture import read_tcp

    attack = meta.get("attack") or {}
    port = int(attack.get("blocked_port", 0))
    log = read_sendlog(trial_dir / "attack_sendlog.csv")
    index, send = log.get(port, (np.empty(0, np.int64), np.empty(0, np.int64)))
    hit = np.isin(
        index, answered_indices(read_tcp(trial_dir / "attack.pcap", attack["address"]), port)[0]
    )
    t = send / 1e9 - start
    _ticks(ax, t[~hit], color="#bdbdbd", lw=0.2, label="blocked probe, dropped")
    _ticks(ax, t[hit], color="#cb181d", lw=0.8, label="breach (answered)")
    ax.set_yticks([])
    ax.set_ylabel(f"port {port}", fontsize=7)
    ax.legend(fontsize=7, loc="upper left", ncols=2)
    placement = (meta.get("firewall") or {}).get("placement")
    return f"\n{placement or '?'}: {int(hit.sum())} of {len(hit)} blocked probes answered"


def _underlay_raster(ax: Axes, trial_dir: Path, meta: dict, start: float) -> str:
    """The prober's echoes that crossed the Geneve underlay between the hosts (OVN tunnels a
    port bound to two chassis), and the Port_Binding's moves as labelled lines."""
    from migfw.measure.capture import read_echoes

    echoes = read_echoes(trial_dir / "underlay.pcap", meta["target"])
    t = echoes.ts_ns / 1e9 - start
    for kind, colour, name in ((0, "#6a51a3", "request"), (1, "#2171b5", "reply")):
        mine = echoes.kind == kind
        if mine.any():
            _ticks(ax, t[mine], color=colour, lw=0.3, label=f"echo {name} in Geneve")
    ovn = meta.get("ovn") or {}
    names = {v: k for k, v in (ovn.get("chassis") or {}).items()}
    previous: dict = {}
    for step in ovn.get("port_binding") or []:
        if previous:
            text = []
            if step["additional_chassis"] != previous["additional_chassis"]:
                extra = ",".join(names.get(c, c) for c in step["additional_chassis"]) or "-"
                text.append(f"extra {extra}")
            if step["additional_chassis_activated"] != previous["additional_chassis_activated"]:
                if step["additional_chassis_activated"]:
                    text.append("activated")
            if step["chassis"] != previous["chassis"]:
                text.append(f"bound {names.get(step['chassis'], step['chassis'] or '-')}")
            if text:
                x = step["t"] - start
                ax.axvline(x, color="#252525", lw=0.6, ls=":")
                ax.annotate("; ".join(text), (x, 0.9), xytext=(2, 0), textcoords="offset points",
                            fontsize=5, rotation=90, va="top")  # fmt: skip
        previous = step
    ax.set_yticks([])
    ax.set_ylabel("Geneve", fontsize=7)
    if len(echoes):
        ax.legend(fontsize=7, loc="upper left", ncols=2)
    binding = ovn.get("binding") or "?"
    return f"; ovn {binding}: {len(echoes)} echoes tunnelled between the hosts"


def _flow_raster(ax: Axes, trial_dir: Path, start: float) -> None:
    """Each flow's requests on its own line: answered green, unanswered pale red; events
    (reset...) as red crosses."""
    from migfw.measure.flowstate import read_flows
    from migfw.trials.attack_contract import KNOWN_FLOWS

    flows = read_flows(trial_dir / "flows.csv")
    names = [n for n in KNOWN_FLOWS if n in flows]
    names += sorted(set(flows) - set(names))  # a lab's own flows after the contract's
    for y, name in enumerate(names):
        flow = flows[name]
        ok = flow["reply"] >= 0
        t = flow["send"] / 1e9 - start
        ax.plot(t[ok], np.full(ok.sum(), y), "|", ms=6, color="#238b45")
        ax.plot(t[~ok], np.full((~ok).sum(), y), "|", ms=4, color="#fc9272")
        last = flow["send"][-1] / 1e9 - start
        for _seq, event in flow["events"]:
            ax.plot(last, y, "x", color="#cb181d")
            ax.annotate(event, (last, y), xytext=(3, 3), textcoords="offset points", fontsize=6)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_ylim(-0.6, len(names) - 0.4)


def _service_raster(ax: Axes, trial_dir: Path, start: float) -> str:
    """The `service` workload: each request at its send time on its service's line, green if
    it was answered, a red cross (labelled with its outcome) if it failed."""
    from migfw.trials.contract import read_service

    log = read_service(trial_dir / "service.csv")
    names = sorted(set(log["service"]))
    t = log["send"] / 1e9 - start
    ok = log["outcome"] == "ok"
    for y, name in enumerate(names):
        mine = log["service"] == name
        ax.plot(t[mine & ok], np.full(int((mine & ok).sum()), y), "|", ms=6, color="#238b45")
        ax.plot(t[mine & ~ok], np.full(int((mine & ~ok).sum()), y), "x", ms=5, color="#cb181d")
        for outcome in sorted(set(log["outcome"][mine & ~ok])):
            first = t[mine & (log["outcome"] == outcome)].min()
            ax.annotate(outcome, (first, y), xytext=(3, 3), textcoords="offset points", fontsize=6)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_ylabel("service", fontsize=7)
    return f"; service: {int((~ok).sum())} of {len(ok)} requests failed"


CELL_LEVELS = (("trigger", "{}"), ("agent_delay_ms", "{:g} ms"), ("port_default", "port {}"),
               ("nf_conntrack_tcp_loose", "loose {:g}"), ("ovn_binding", "{}"))  # fmt: skip


def cell_label(row: Any, sep: str = "\n") -> str:
    """A cell's tick label: its placement, then the levels of the factors it has."""
    from migfw.trials.contract import KNOWN_FACTORS

    parts = [str(row["placement"])]
    known = dict(CELL_LEVELS)
    others = [(f, f + " {}") for f in KNOWN_FACTORS if f != "placement" and f not in known]
    for factor, text in [*CELL_LEVELS, *others]:  # a grid's other factors too (ovn_binding)
        value = row.get(factor) if hasattr(row, "get") else None
        if value not in (None, "") and not (isinstance(value, float) and np.isnan(value)):
            parts.append(text.format(float(value) if isinstance(value, int | float) else value))
    return sep.join(parts)


# A panel labels its cells across (one level a line) up to this many cells, CELL_IN inches
# each; above it, labels stand upright on one line each (~0.1 in wide), so none overlap.
CELLS_ACROSS = 12
CELL_IN = 0.75


def attack_window_figure(trials: pd.DataFrame, table: pd.DataFrame, out_png: str | Path) -> Figure:
    """The breach window per placement × factor cell, one panel per attacker side.

    Each trial is a grey point at its observed window with a line up to its bound between the
    unanswered neighbours (a one-probe breach is a point at 0 with a line up to ~2 probe gaps,
    never a bare zero); a breached cell has its mean with the Student-t (red) and bootstrap
    (blue) CI; a cell no probe got through is a green downward triangle at its bound ("every
    exposure was shorter than this"), labelled 0/n. Symlog axis: zero and seconds share it.
    """
    from migfw.measure.attackstats import side_frame
    from migfw.trials.attack_contract import ATTACKER_SIDES, SIDE_TEXT

    if not table.empty and "side" not in table:
        table = table.assign(side="switch")
    sides = [s for s in ATTACKER_SIDES if not table.empty and (table["side"] == s).any()]
    if not sides:
        fig = _figure(figsize=(7, 3.5))
        ax = fig.subplots()
        ax.text(0.5, 0.5, "no trials with attack data (no placement experiment in this run)",
                ha="center", va="center", transform=ax.transAxes)  # fmt: skip
        ax.set_axis_off()
        _save(fig, out_png)
        return fig
    most = max(int((table["side"] == s).sum()) for s in sides)
    across = most <= CELLS_ACROSS
    named = table["experiment"].fillna("").nunique() > 1 if "experiment" in table else False
    width = CELL_IN * most + 2.0 if across else 0.3 * most + 2.0
    label_in = 0.0 if across else 0.075 * max(len(cell_label(r, " · ")) for _, r in
                                               table.iterrows()) + 0.9 * named  # fmt: skip
    fig = _figure(figsize=(max(7.0, width), (3.3 + label_in) * len(sides) + 0.8),
                  layout="constrained")  # fmt: skip
    axes = fig.subplots(len(sides), 1, squeeze=False)[:, 0]
    for ax, side in zip(axes, sides, strict=True):
        cells = table[table["side"] == side].reset_index(drop=True)
        _attack_panel(ax, side_frame(trials, side), cells, across, named)
        ax.set_title(SIDE_TEXT.get(side, side), fontsize=9)
    handles, names = [], []
    for ax in axes:  # every kind of mark once, from whichever panel has it
        for h, n in zip(*ax.get_legend_handles_labels(), strict=True):
            if n not in names:
                handles.append(h)
                names.append(n)
    fig.legend(handles, names, fontsize=7, loc="outside lower center", ncols=5)
    fig.suptitle("Attack window during live migration, by firewall placement and attacker side "
                 "(95 % CIs)")  # fmt: skip
    _save(fig, out_png)
    return fig


def _same(series: pd.Series, value: Any) -> pd.Series:
    """Which cells of a factor column hold `value` (empty and NaN alike; 1 == 1.0)."""
    if value is None or value == "" or (isinstance(value, float) and np.isnan(value)):
        return series.isna() | (series.astype(str) == "")
    try:
        return pd.to_numeric(series, errors="coerce") == float(value)
    except (TypeError, ValueError):
        return series.astype(str) == str(value)


def _attack_panel(
    ax: Axes, per_trial: pd.DataFrame, cells: pd.DataFrame, across: bool, named: bool
) -> None:
    """One side's cells; `across`: labels across, else upright; `named`: several
    experiments, so each label starts with its experiment and a dotted line parts them."""
    from migfw.trials.contract import KNOWN_FACTORS

    keys = [k for k in ("experiment", *KNOWN_FACTORS) if k in cells and k in per_trial]
    for i, cell in cells.iterrows():
        mine = per_trial
        for key in keys:  # the cell's trials: every factor level the same
            mine = mine[_same(mine[key], cell.get(key))]
        jitter = np.linspace(-0.15, 0.15, len(mine)) if len(mine) > 1 else np.zeros(len(mine))
        lo, hi = mine["window_ms"].to_numpy(float), mine["window_hi_ms"].to_numpy(float)
        ax.vlines(i + jitter, lo, np.maximum(lo, hi), color="#969696", lw=0.8,
                  label="trial: observed window → its bound" if i == 0 else None)  # fmt: skip
        ax.plot(i + jitter, lo, "o", color="#525252", ms=3)
        mean = cell["breach_window_ms_mean"]
        if pd.notna(cell.get("breached_trials")) and int(cell["breached_trials"]) == 0:
            bound = cell.get("bound_ms")
            if pd.notna(bound):
                ax.plot(i + 0.36, bound, "v", color="#238b45", ms=6,
                        label="no probe answered: every exposure < this")  # fmt: skip
            at = (i + 0.36, bound if pd.notna(bound) else 0)
            ax.annotate(f"0/{int(cell['n'])}", at, xytext=(4, 0), textcoords="offset points",
                        fontsize=6, va="center")  # fmt: skip
            continue
        for ci, marker, colour, dx, name in (("ci_t", "o", "#cb181d", 0.3, "mean, t CI"),
                                             ("ci_boot", "s", "#2171b5", 0.42,
                                              "mean, bootstrap CI")):  # fmt: skip
            low = cell.get(f"breach_window_ms_{ci}_low")
            high = cell.get(f"breach_window_ms_{ci}_high")
            err = [[0.0 if pd.isna(low) else mean - low], [0.0 if pd.isna(high) else high - mean]]
            ax.errorbar(i + dx, mean, yerr=err, fmt=marker, color=colour, capsize=3, ms=4,
                        label=name)  # fmt: skip
    labels = [cell_label(r, "\n" if across else " · ") for _, r in cells.iterrows()]
    if named:
        experiments = cells["experiment"].fillna("").astype(str).tolist()
        after = ":\n" if across else " · "  # the experiment on its own line when across
        labels = [f"{e}{after}{t}" if e else t for e, t in zip(experiments, labels, strict=True)]
        for i in range(1, len(cells)):
            if experiments[i] != experiments[i - 1]:
                ax.axvline(i - 0.5, color="#737373", lw=0.8, ls=":")
    ax.set_xticks(range(len(cells)), labels, fontsize=6, rotation=0 if across else 90)
    ax.set_xlim(-0.6, len(cells) - 0.3)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(-0.3, max(10.0, ax.get_ylim()[1] * 2))  # windows are never negative
    ax.set_ylabel("breach window (ms, symlog)")
    ax.set_xlabel("firewall placement (and factor levels)", fontsize=8)


def write_attack_window_figure(trials: str | Path, table: str | Path, out: str | Path) -> None:
    """Rule attack_window_figure: trials.csv + attack_window.csv -> the breach-window figure
    (PNG at `out`, an SVG beside it)."""
    from migfw.measure.attackstats import COLUMNS, attack_columns
    from migfw.measure.trialtable import read_trials

    cells = pd.read_csv(table) if Path(table).stat().st_size else pd.DataFrame(columns=COLUMNS)
    # Without a cell the figure says so and reads no trial.
    frame = read_trials(trials, attack_columns) if not cells.empty else pd.DataFrame()
    attack_window_figure(frame, cells, out)


def write_uptime_figure(
    trials: str | Path,
    out: str | Path,
    title: str = DEFAULT_UPTIME_TITLE,
    paper: bool = False,
) -> None:
    """Rules uptime_figure and (`paper`: rows are the thesis's VMs, results/paper/table11.csv)
    paper_uptime_figure: firewall uptime per trial with CIs (thesis Figure 7)."""
    from migfw.measure.trialtable import UPTIME, read_trials

    frame = read_trials(trials, None if paper else UPTIME)
    if paper:  # the thesis's Table 11 recomputed: rows are VMs
        frame = frame.rename(columns={"vm": "trial_id"})
    uptime_figure(frame, out, title)


def write_estimators_figure(trials: str | Path, out: str | Path) -> None:
    """Rule estimators_figure: trials.csv -> downtime per trial by estimator."""
    from migfw.measure.trialtable import ESTIMATORS, read_trials

    estimators_figure(read_trials(trials, ESTIMATORS), out)


def _cli_attack_window(args: argparse.Namespace) -> int:
    write_attack_window_figure(args.trials, args.table, args.out)
    return 0


def _cli_uptime(args: argparse.Namespace) -> int:
    write_uptime_figure(args.trials, args.out, args.title, args.paper)
    return 0


def _cli_estimators(args: argparse.Namespace) -> int:
    write_estimators_figure(args.trials, args.out)
    return 0


def _cli_timeline(args: argparse.Namespace) -> int:
    timeline_figure(args.trial_dir, args.out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("fig-uptime", help="uptime per trial with CIs (thesis Figure 7)")
    p.add_argument("trials", help="trials.csv, or results/paper/table11.csv with --paper")
    p.add_argument("--out", required=True, help="PNG path; an SVG is written beside it")
    p.add_argument("--title", default=DEFAULT_UPTIME_TITLE)
    p.add_argument("--paper", action="store_true")
    p.set_defaults(func=_cli_uptime)

    p = subparsers.add_parser("fig-estimators", help="downtime per trial by estimator")
    p.add_argument("trials")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cli_estimators)

    p = subparsers.add_parser("fig-attack-window", help="breach window by placement")
    p.add_argument("trials")
    p.add_argument("--table", required=True, help="attack_window.csv")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cli_attack_window)

    p = subparsers.add_parser("fig-timeline", help="probe timeline of one trial")
    p.add_argument("trial_dir")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cli_timeline)
