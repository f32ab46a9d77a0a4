"""The hypervisor's phase timeline joined to the probes, on one clock.

A trial from the testbed records in `trial.json` `phases` the epoch times (CLOCK_REALTIME,
seconds) at which libvirt delivered the domain's lifecycle events — `suspended` (source vCPUs
stopped for the final copy), `postcopy_switch`, `resumed` (destination guest runs),
`finished` — and in `jobstats.csv` the source's job statistics sampled every <= 50 ms. The
probe capture is stamped by the kernel with the same clock (tcpdump on the same machine), so
the two are compared directly; the error of an event time is its delivery delay, estimated
per trial in `phases.delivery` (half the median job-stats round trip; bounded by the longest
round trip) and reported as `event_delay_ms`.

Columns (trials.csv):
- `hv_pause_ms`: resumed − suspended, the pause as the hypervisor's events saw it.
- `probe_outage_ms`: the probes' outage that the pause caused: from the send time of the
  first lost probe of the unanswered run overlapping the pause (the longest, if none does)
  to the send time of the first answered probe after it.
- `outage_start_minus_suspend_ms`, `outage_end_minus_resume_ms`: the two edges compared.
- `resume_to_first_reply_ms`: resume event → the first probe reply captured after it.
- `postcopy_switch_s`: post-copy switch after the migrate call started (null if none).
- `hv_iterations`, `hv_dirty_rate_mibps`: memory passes and the median dirty rate QEMU
  measured (jobstats.csv, passes >= 2, samples where QEMU has a rate, i.e. > 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

PHASE_COLUMNS = [
    "hv_pause_ms",
    "probe_outage_ms",
    "outage_start_minus_suspend_ms",
    "outage_end_minus_resume_ms",
    "resume_to_first_reply_ms",
    "postcopy_switch_s",
    "hv_iterations",
    "hv_dirty_rate_mibps",
    "event_delay_ms",
]


def _ms(seconds: float) -> float:
    return round(1000.0 * seconds, 6)


def _runs(lost: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) indices of each run of True."""
    edges = np.diff(np.concatenate(([0], lost.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1, strict=True))


def join_phases(
    phases: dict[str, Any] | None,
    send_ns: np.ndarray,
    answered: np.ndarray,
    reply_ns: np.ndarray,
    jobstats: Any = None,
) -> dict[str, Any]:
    """Per-trial phase/probe columns (PHASE_COLUMNS); empty values where data is missing.

    `send_ns`, `answered`, `reply_ns` are the probe table's arrays in send order (epoch ns;
    reply_ns < 0 when unanswered); `jobstats` is jobstats.csv as a DataFrame or None.
    """
    row: dict[str, Any] = dict.fromkeys(PHASE_COLUMNS)
    phases = phases or {}
    suspended, resumed = phases.get("suspended"), phases.get("resumed")
    if suspended is not None and resumed is not None:
        row["hv_pause_ms"] = _ms(resumed - suspended)
    call = phases.get("migrate_call") or {}
    if phases.get("postcopy_switch") is not None and call.get("start") is not None:
        row["postcopy_switch_s"] = round(phases["postcopy_switch"] - call["start"], 6)
    row["event_delay_ms"] = (phases.get("delivery") or {}).get("typical_ms")
    send = np.asarray(send_ns, dtype=np.int64)
    ok = np.asarray(answered, dtype=bool)
    replies = np.asarray(reply_ns, dtype=np.int64)
    if resumed is not None and ok.any():
        after = replies[ok & (replies >= round(resumed * 1e9))]
        if after.size:
            row["resume_to_first_reply_ms"] = _ms(int(after.min()) / 1e9 - resumed)
    runs = [(a, b) for a, b in _runs(~ok) if b + 1 < len(send)]  # closed by an answer
    if runs:
        chosen = max(runs, key=lambda r: r[1] - r[0])
        if suspended is not None and resumed is not None:
            lo, hi = round(suspended * 1e9), round(resumed * 1e9)
            overlapping = [r for r in runs if send[r[0]] <= hi and send[r[1] + 1] >= lo]
            if overlapping:
                chosen = max(overlapping, key=lambda r: r[1] - r[0])
        start, end = int(send[chosen[0]]), int(send[chosen[1] + 1])
        row["probe_outage_ms"] = _ms((end - start) / 1e9)
        if suspended is not None:
            row["outage_start_minus_suspend_ms"] = _ms(start / 1e9 - suspended)
        if resumed is not None:
            row["outage_end_minus_resume_ms"] = _ms(end / 1e9 - resumed)
    if jobstats is not None and len(jobstats):
        iterations = jobstats.get("memory_iteration")
        if iterations is not None and iterations.notna().any():
            row["hv_iterations"] = int(iterations.max())
            rates = jobstats.loc[iterations >= 2, "dirty_rate_mibps"].dropna()
            # QEMU reports 0 until its first >= 1 s window has closed and again once the job
            # has completed (every sample after the switchover): "no rate", not a rate of 0.
            rates = rates[rates > 0]
            if len(rates):
                row["hv_dirty_rate_mibps"] = round(float(rates.median()), 3)
    return row


def read_jobstats(trial_dir: str | Path):  # -> pandas.DataFrame | None
    """jobstats.csv of a trial folder, or None where the trial has none."""
    import pandas as pd

    from migfw.errors import MigfwError

    path = Path(trial_dir) / "jobstats.csv"
    if not path.exists():
        return None
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise MigfwError(f"{path}: cannot read job statistics ({exc})") from None


def draw_phases(
    ax: Any,
    phases: dict[str, Any],
    jobstats: Any,
    t0: float,
    announcements: list[Any] | None = None,
) -> None:
    """The phase band above a probe raster: memory passes, pause, post-copy, resume, and the
    destination's announcements (`migfw.measure.announce`: QEMU's RARP frames and the guest's
    gratuitous ARPs, as the probe capture saw them on the same clock)."""
    call = phases.get("migrate_call") or {}
    end = phases.get("finished") or call.get("end")
    starts: list[tuple[float, int]] = []
    if jobstats is not None and len(jobstats) and "memory_iteration" in jobstats:
        frame = jobstats.dropna(subset=["memory_iteration"])
        first = frame.groupby("memory_iteration")["t"].min()
        starts = [(float(t), int(k)) for k, t in first.items()]
    elif phases.get("iterations"):
        starts = [(e["t"], int(e["iteration"])) for e in phases["iterations"]]
    stop = phases.get("suspended") or phases.get("postcopy_switch") or end
    colours = ["#c7e9c0", "#a1d99b"]
    for i, (t, k) in enumerate(starts):
        t_next = starts[i + 1][0] if i + 1 < len(starts) else stop
        if t_next is None or (stop is not None and t >= stop):
            continue
        ax.axvspan(t - t0, min(t_next, stop or t_next) - t0, color=colours[i % 2], lw=0)
        # libvirt's memory_iteration: 0 while setting up, k during the k-th pass over RAM.
        ax.text(t - t0, 0.5, f"pass {k}" if k else "setup", fontsize=6, va="center")
    if phases.get("postcopy_switch") is not None and end is not None:
        ax.axvspan(phases["postcopy_switch"] - t0, end - t0, color="#9ecae1", lw=0,
                   label="post-copy")  # fmt: skip
    if phases.get("suspended") is not None and phases.get("resumed") is not None:
        ax.axvspan(phases["suspended"] - t0, phases["resumed"] - t0, color="#fb6a4a", lw=0,
                   label="paused (stop-and-copy)")  # fmt: skip
    for key, style, name in (("resumed", "-", "resumed"), ("finished", ":", "finished")):
        if phases.get(key) is not None:
            ax.axvline(phases[key] - t0, color="k", ls=style, lw=0.8, label=name)
    for kind, colour, span, name in (
        ("rarp", "#6a3d9a", (0.0, 0.45), "RARP (QEMU)"),
        ("garp", "#e7298a", (0.55, 1.0), "gratuitous ARP (guest)"),
    ):
        times = [a.t_ns / 1e9 - t0 for a in announcements or () if a.kind == kind]
        if times:
            ax.vlines(times, *span, color=colour, lw=1.2, label=f"{name} ×{len(times)}",
                      gid=f"announce-{kind}")  # fmt: skip
    ax.set_yticks([])
    ax.set_ylabel("hypervisor", fontsize=7)
    ax.legend(fontsize=6, loc="upper left", ncols=4)
