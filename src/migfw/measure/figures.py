"""Figures (seaborn/matplotlib, PNG + SVG): uptime per trial, probe timelines, DT by estimator.

Figures are built as `matplotlib.figure.Figure` objects, not through pyplot's global state:
the workflow draws them in threads of one process (migfw.cli.run_in_process).
"""

from __future__ import annotations

import argparse
import os
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from migfw.errors import MigfwError
from migfw.measure.stats import describe


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
    for path in (out_png, out_png.with_suffix(".svg")):
        tmp = path.with_name(f".{path.name}.part{path.suffix}")
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
        os.replace(tmp, path)


# Above this many trials in a panel, per-trial labels would overlap (and take seconds to lay
# out): panels then show the distribution instead of one labelled bar per trial.
MAX_LABELLED_TRIALS = 40


def uptime_figure(
    trials: pd.DataFrame, out_png: str | Path, title: str, label: str = "trial_id"
) -> None:
    """The thesis's Figure 7, with more: TMT and UT per trial, mean UT with 95 % CIs.

    One panel per probe interval; bars are TMT (light) with UT (dark) inside, so the thin
    light cap is the downtime; the band is the mean UT's Student-t CI, the dashed lines the
    thesis's normal CI.
    """
    ok = trials[trials.get("status", "ok") == "ok"] if "status" in trials else trials
    ok = ok.dropna(subset=["tmt_s", "ut_s"])
    if ok.empty:
        raise MigfwError("no successful trial with TMT and UT to plot")
    intervals = sorted(ok["interval_s"].unique(), reverse=True)
    fig = _figure(figsize=(4.2 * len(intervals), 3.6))
    axes = fig.subplots(1, len(intervals), squeeze=False, sharey=False)
    for ax, interval in zip(axes[0], intervals, strict=True):
        group = ok[ok["interval_s"] == interval].sort_values(label)
        x = np.arange(len(group))
        labelled = len(group) <= MAX_LABELLED_TRIALS
        if labelled:
            ax.bar(x, group["tmt_s"], color="#c6dbef", label="TMT = PS·I")
            ax.bar(x, group["ut_s"], color="#2171b5", width=0.6, label="UT = TMT − DT")
        else:  # one filled outline per series: thousands of bars draw in seconds each
            edges = np.arange(len(group) + 1) - 0.5
            ax.stairs(group["tmt_s"], edges, fill=True, color="#c6dbef", label="TMT = PS·I")
            ax.stairs(group["ut_s"], edges, fill=True, color="#2171b5", label="UT = TMT − DT")
        if labelled:
            for xi, (ut, pct) in enumerate(zip(group["ut_s"], group["ut_pct"], strict=True)):
                ax.text(xi, ut, f"{pct:.1f}%", ha="center", va="bottom", fontsize=7)
        s = describe(group["ut_s"], seed=0, resamples=2000)
        # The mean stands apart, right of the trials, as wide as 1/40 of the panel at least.
        wide = max(0.6, len(group) / MAX_LABELLED_TRIALS)
        m = len(group) - 0.5 + wide
        ax.bar(m, s["mean"], color="#fd8d3c", width=wide, label="mean UT")
        if s["n"] >= 2:
            for dx, low, high, style, name in (
                (-0.12, s["ci_z_low"], s["ci_z_high"], "--", "95% CI as in thesis (z)"),
                (0.12, s["ci_t_low"], s["ci_t_high"], "-", "95% CI, Student t"),
            ):
                bars = ax.errorbar(
                    m + dx * wide / 0.6,
                    s["mean"],
                    yerr=[[s["mean"] - low], [high - s["mean"]]],
                    fmt="none",
                    ecolor="k",
                    capsize=3,
                    lw=1,
                    label=name,
                )
                bars[-1][0].set_linestyle(style)
        if labelled:
            ax.set_xticks([*x, m], [*group[label], "mean"], rotation=45, ha="right", fontsize=7)
        else:  # trials in id order, unlabelled; the mean keeps its tick
            ax.set_xticks([m], ["mean"], rotation=45, ha="right", fontsize=7)
        order = "" if labelled else ", trials in id order"
        ax.set_title(f"I = {interval:g} s (n = {len(group)}{order})")
        ax.set_ylabel("seconds")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles, labels, fontsize=7, loc="lower center", ncols=5, bbox_to_anchor=(0.5, -0.08)
    )
    fig.suptitle(title)
    _save(fig, out_png)


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
            _sns().stripplot(data=part, x="estimator", y="downtime_ms", ax=ax, color="k",
                             size=1.5, alpha=0.4, jitter=0.3)  # fmt: skip
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
    ax_raster.vlines(t[answered], 0, 1, color="#2171b5", lw=0.3, label="answered")
    ax_raster.vlines(t[~answered], 0, 1, color="#cb181d", lw=0.8, label="lost")
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
    ax_rtt.scatter(t[answered], rtt_ms[answered], s=2, color="#2171b5")
    ax_rtt.set_yscale("log")
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
    ax.vlines(t[~hit], 0, 1, color="#bdbdbd", lw=0.2, label="blocked probe, dropped")
    ax.vlines(t[hit], 0, 1, color="#cb181d", lw=0.8, label="breach (answered)")
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
            ax.vlines(t[mine], 0, 1, color=colour, lw=0.3, label=f"echo {name} in Geneve")
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
    """Each flow's answered requests as ticks on its own line; events (reset...) in red."""
    from migfw.measure.attack import read_flows

    flows = read_flows(trial_dir / "flows.csv")
    for y, name in enumerate(("stateful", "established")):
        flow = flows.get(name)
        if flow is None:
            continue
        ok = flow["reply"] >= 0
        ax.plot(flow["send"][ok] / 1e9 - start, np.full(ok.sum(), y), "|", ms=6, color="#238b45")
        last = flow["send"][-1] / 1e9 - start
        for _seq, event in flow["events"]:
            ax.plot(last, y, "x", color="#cb181d")
            ax.annotate(event, (last, y), xytext=(3, 3), textcoords="offset points", fontsize=6)
    ax.set_yticks([0, 1], ["stateful", "established"], fontsize=7)
    ax.set_ylim(-0.6, 1.6)


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


def attack_window_figure(trials: pd.DataFrame, table: pd.DataFrame, out_png: str | Path) -> None:
    """Breach window by placement: each trial a point, the mean with its t and bootstrap CIs."""
    ok = trials[(trials["status"] == "ok") & trials["blocked_sent"].notna()].copy()
    fig = _figure(figsize=(7, 3.5))
    ax = fig.subplots()
    if ok.empty:
        ax.text(0.5, 0.5, "no trials with attack data (no placement experiment in this run)",
                ha="center", va="center", transform=ax.transAxes)  # fmt: skip
        ax.set_axis_off()
        _save(fig, out_png)
        return

    def label(placement, delay, experiment, binding=None) -> str:
        text = str(placement)
        if placement == "vmm-agent" and pd.notna(delay):
            text += f"\n{float(delay):g} ms"
        if placement == "ovn" and isinstance(binding, str) and binding:
            text += f"\n{binding}"
        return f"{text}\n({experiment})" if experiment else text

    bindings = ok["ovn_binding"] if "ovn_binding" in ok.columns else [None] * len(ok)
    ok["label"] = [
        label(p, d, e, b)
        for p, d, e, b in zip(
            ok["placement"],
            ok.get("agent_delay_ms"),
            ok["experiment"].fillna(""),
            bindings,
            strict=True,
        )
    ]
    labels = [
        label(
            r.placement,
            r.agent_delay_ms,
            r.experiment if isinstance(r.experiment, str) else "",
            getattr(r, "ovn_binding", None),
        )  # fmt: skip
        for r in table.itertuples()
    ]
    ok["breach_window_ms"] = pd.to_numeric(ok["breach_window_ms"], errors="coerce")
    _sns().stripplot(data=ok, x="label", y="breach_window_ms", order=labels, ax=ax, color="#525252",
                  size=4, jitter=0.15, alpha=0.8)  # fmt: skip
    styles = (("ci_t", "o", "#cb181d", 0.3, "mean, t CI"), ("ci_boot", "s", "#2171b5", 0.42,
              "mean, bootstrap CI"))  # fmt: skip
    for i, r in enumerate(table.itertuples()):
        mean = r.breach_window_ms_mean
        for ci, marker, colour, dx, name in styles:
            low = getattr(r, f"breach_window_ms_{ci}_low")
            high = getattr(r, f"breach_window_ms_{ci}_high")
            err = [[0.0 if pd.isna(low) else mean - low], [0.0 if pd.isna(high) else high - mean]]
            ax.errorbar(i + dx, mean, yerr=err, fmt=marker, color=colour, capsize=3, ms=4,
                        label=name if i == 0 else None)  # fmt: skip
    ax.set_xlabel("firewall placement")
    ax.set_yscale("symlog", linthresh=1.0)  # zero (vm) and seconds (none) on one axis
    ax.set_ylabel("breach window (ms, symlog)")
    ax.set_title("Attack window during live migration, by firewall placement (95 % CIs)")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    _save(fig, out_png)


def _cli_attack_window(args: argparse.Namespace) -> int:
    from migfw.measure.attackstats import COLUMNS

    trials = pd.read_csv(args.trials)
    table = (
        pd.read_csv(args.table)
        if Path(args.table).stat().st_size
        else pd.DataFrame(columns=COLUMNS)
    )
    attack_window_figure(trials, table, args.out)
    return 0


def _cli_uptime(args: argparse.Namespace) -> int:
    trials = pd.read_csv(args.trials)
    if args.paper:  # the thesis's Table 11 recomputed: rows are VMs
        trials = trials.rename(columns={"vm": "trial_id"})
    uptime_figure(trials, args.out, args.title)
    return 0


def _cli_estimators(args: argparse.Namespace) -> int:
    estimators_figure(pd.read_csv(args.trials), args.out)
    return 0


def _cli_timeline(args: argparse.Namespace) -> int:
    timeline_figure(args.trial_dir, args.out)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("fig-uptime", help="uptime per trial with CIs (thesis Figure 7)")
    p.add_argument("trials", help="trials.csv, or results/paper/table11.csv with --paper")
    p.add_argument("--out", required=True, help="PNG path; an SVG is written beside it")
    p.add_argument("--title", default="Firewall uptime during live migration")
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
