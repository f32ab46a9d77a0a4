"""From trial folders to per-trial metrics, trials.csv and summary.csv.

A trial folder (`<trials_dir>/<trial_id>/`) holds `probe.pcap` and `trial.json`
(the contract: migfw.trials.contract). Nothing here touches libvirt, QEMU or the network, so
an analysis-only rerun needs none of those installed.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from migfw.errors import MigfwError
from migfw.io import atomic_write, write_csv
from migfw.measure.attack import AGENT_COLUMNS, ATTACK_COLUMNS, SIDE_COLUMNS
from migfw.measure.collect import FOLDER, refuse_duplicate_ids
from migfw.measure.flowstate import flow_columns
from migfw.measure.service import SERVICE_COLUMNS, service_metrics
from migfw.measure.stats import add_exclude_flags_argument, summarize
from migfw.trials.contract import discover_trials, load_trial
from migfw.trials.design import TrialSpec

if TYPE_CHECKING:  # probes loads the compiled kernels: only when a capture is analysed
    from migfw.measure.probes import ProbeTable


def trial_overhead_s(meta: dict[str, Any]) -> float | None:
    """A trial's wall time minus its lead-in, migrate call and settle (s): what placement
    checks, starting and stopping the probes, copying and verification cost."""
    migration = meta.get("migration") or {}
    parts = (meta.get("wall_s"), meta.get("lead_in_s"), meta.get("settle_s"),
             migration.get("start"), migration.get("end"))  # fmt: skip
    if any(p is None for p in parts):
        return None
    wall, lead, settle, start, end = (float(p) for p in parts)
    return round(wall - lead - settle - (end - start), 3)


# Stable column order of results/analysis/trials.csv (each name once: the flows' columns repeat
# some of ATTACK_COLUMNS, which keep their place).
TRIAL_COLUMNS = [
    "trial_id",
    "experiment",
    "placement",
    "agent_delay_ms",
    "interval_s",
    "status",
    "failure",
    "repetition",
    "direction",
    "accelerator",
    "qemu",
    "wall_s",
    "overhead_s",
    "ps",
    "pr",
    "pl",
    "tmt_s",
    "dt_s",
    "ut_s",
    "ut_pct",
    "dt_gap_s",
    "dt_gap_lo_s",
    "dt_gap_hi_s",
    "dt_rxgap_s",
    "max_run",
    "outages",
    "rtt_median_ms",
    "rtt_p99_ms",
    "rtt_max_ms",
    "late_replies",
    "dup_requests",
    "dup_replies",
    "ps_total",
    "pl_total",
    "pl_outside",
    "tmt_meta_s",
    "ut_meta_s",
    "ut_meta_pct",
    "hv_downtime_ms",
    "hv_total_ms",
    "hv_setup_ms",
    "algorithm",
    "hv_pause_ms",
    "probe_outage_ms",
    "resume_to_first_reply_ms",
    "capture_dropped",
    "breaches",
    "ruleset_intact",
    # The attack window (migfw.measure.attack): empty for trials without attack data.
    *ATTACK_COLUMNS,
    # Issue 22: attackers on every side, the flows' fate and state, the agent's timing.
    *SIDE_COLUMNS,
    *flow_columns(),
    *AGENT_COLUMNS,
    # The `service` workload's requests (migfw.measure.service): empty without service.csv.
    *SERVICE_COLUMNS,
    "flags",
    "stray_requests",
]
TRIAL_COLUMNS = list(dict.fromkeys(TRIAL_COLUMNS))

# Metrics summarised across trials (summary.csv).
SUMMARY_METRICS = [
    "ps",
    "pl",
    "tmt_s",
    "dt_s",
    "ut_s",
    "ut_pct",
    "dt_gap_s",
    "dt_rxgap_s",
    "max_run",
    "outages",
    "rtt_median_ms",
    "rtt_max_ms",
    "tmt_meta_s",
    "ut_meta_s",
    "ut_meta_pct",
    "hv_downtime_ms",
    "hv_total_ms",
    "hv_pause_ms",
    "probe_outage_ms",
    "resume_to_first_reply_ms",
]


def probe_metrics_for(
    pcap: Path, target: str, interval_s: float, window: tuple[float, float] | None
) -> tuple[dict[str, Any], ProbeTable]:
    """The probe metrics of one capture (see migfw.measure.probes) and its matched probes."""
    from migfw.measure.probes import analyse_capture_table

    metrics, table = analyse_capture_table(pcap, target, interval_s, window)
    metrics["_request_ids"] = metrics.get("request_ids", {})
    for key in ("file", "target", "interval_s", "request_ids"):  # in the row, or used apart
        metrics.pop(key, None)
    return metrics, table


def phase_metrics_for(trial_dir: Path, meta: dict[str, Any], table: ProbeTable) -> dict[str, Any]:
    """The hypervisor's phases joined to the trial's matched probes (migfw.measure.phases)."""
    from migfw.measure.phases import join_phases, read_jobstats

    return join_phases(
        meta["phases"], table.send_ns, table.answered, table.reply_ns, read_jobstats(trial_dir)
    )


def trial_metrics(trial_dir: str | Path) -> dict[str, Any]:
    """One row of trials.csv for a trial folder."""
    trial_dir = Path(trial_dir)
    meta = load_trial(trial_dir)
    migration = meta.get("migration") or {}
    hypervisor = meta.get("hypervisor") or {}
    capture = meta.get("capture") or {}
    ruleset = meta.get("ruleset") or {}
    spec = TrialSpec.from_trial_json(meta)  # the spec type the design sheet holds
    factors = spec.analysis_columns()  # placement, agent_delay_ms, one per other factor
    row: dict[str, Any] = {
        "trial_id": spec.trial_id,
        "experiment": spec.experiment,
        **factors,  # one column per factor (issue 10's sweeps)
        "interval_s": meta["interval_s"],
        "status": meta["status"],
        "failure": meta.get("failure"),
        "repetition": meta.get("repetition"),
        "direction": meta.get("direction"),
        "accelerator": meta.get("accelerator"),
        # The emulator's version line (testbed.guest.emulator) and the trial's own cost:
        # wall time minus lead-in, the migrate call and settle (issue 22 item 7).
        "qemu": (meta.get("software") or {}).get("qemu"),
        "wall_s": meta.get("wall_s"),
        "overhead_s": trial_overhead_s(meta),
        "hv_downtime_ms": hypervisor.get("downtime_ms"),
        "hv_total_ms": hypervisor.get("total_ms"),
        "hv_setup_ms": hypervisor.get("setup_ms"),
        # The algorithm in force is a column even where the experiment does not vary it.
        "algorithm": factors.get("algorithm", migration.get("algorithm")),
        "capture_dropped": capture.get("dropped"),
        "breaches": len(meta.get("breaches") or []),
        "ruleset_intact": ruleset.get("identical_before_after"),
    }
    start, end = migration.get("start"), migration.get("end")
    window = (float(start), float(end)) if start is not None and end is not None else None
    if window is not None and window[1] < window[0]:
        raise MigfwError(
            f"{trial_dir / 'trial.json'}: trial {meta['trial_id']}: migration.end {window[1]} "
            f"is {window[0] - window[1]:.3f} s before migration.start {window[0]}"
        )
    if window:
        row["tmt_meta_s"] = window[1] - window[0]
    flags = list(meta.get("flags") or [])
    loose = ((meta.get("conntrack") or {}).get("tcp_loose") or {}).values()
    if row.get("nf_conntrack_tcp_loose") is not None and any(
        v is not None and int(v) != int(row["nf_conntrack_tcp_loose"]) for v in loose
    ):
        flags.append("tcp_loose_mismatch")  # a layer ran with another level than asked
    row["flags"] = ";".join(flags)
    if meta["status"] != "ok":
        return row
    pcap = trial_dir / "probe.pcap"
    if not pcap.exists():
        raise MigfwError(f"{pcap}: missing although {trial_dir / 'trial.json'} says status ok")
    probes, table = probe_metrics_for(pcap, meta["target"], float(meta["interval_s"]), window)
    row.update(probes)
    # Echo requests with an ICMP id other than this trial's prober are someone else's
    # (e.g. an orphan prober of a killed run): every loss count is then suspect.
    own = (meta.get("prober") or {}).get("icmp_id")
    request_ids = row.pop("_request_ids", {})
    if own is not None:
        stray = sum(c for i, c in request_ids.items() if int(i) != int(own))
        row["stray_requests"] = stray
        if stray:
            flags.append("stray_icmp_id")
    row["flags"] = ";".join(dict.fromkeys(flags))
    if meta.get("phases"):
        row.update(phase_metrics_for(trial_dir, meta, table))
    if window and row.get("dt_gap_s") is not None:
        row["ut_meta_s"] = row["tmt_meta_s"] - row["dt_gap_s"]
        row["ut_meta_pct"] = 100 * row["ut_meta_s"] / row["tmt_meta_s"]
    row.update(attack_row(trial_dir, meta, row))
    row.update(service_metrics(trial_dir, meta))
    return row


def attack_row(trial_dir: Path, meta: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """The attack-window columns (migfw.measure.attack); empty cells without attack data."""
    from migfw.measure.attack import attack_metrics

    outage = None
    if row.get("dt_gap_start") is not None and row.get("dt_gap_end") is not None:
        outage = (row["dt_gap_start"], row["dt_gap_end"])
    return attack_metrics(trial_dir, meta, outage)


def collect(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """trials.csv: known columns first in a stable order, extra metrics after them."""
    refuse_duplicate_ids(rows)
    # The folder column dropped from the frame, not from copies of the rows: a copy of
    # 10,000 rows held ~25 MiB more at the step's peak (dtypes are inferred per column).
    return _ordered(pd.DataFrame(rows).drop(columns=[FOLDER], errors="ignore"))


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    extra = sorted(c for c in frame.columns if c not in TRIAL_COLUMNS)
    frame = frame.reindex(columns=TRIAL_COLUMNS + extra, fill_value=pd.NA)
    frame["flags"] = frame["flags"].fillna("")
    return frame.sort_values(
        ["experiment", "interval_s", "trial_id"], ascending=[True, False, True]
    )


def summary_table(
    trials: pd.DataFrame,
    factors: list[str],
    confidence: float,
    resamples: int,
    seed: int,
    exclude_flags: Sequence[str] = (),
) -> pd.DataFrame:
    """summary.csv: statistics over the successful trials only, without those carrying a
    flag in `exclude_flags`; each row says how many flagged trials its cell includes and how
    many it left out (migfw.measure.stats.with_flag_columns)."""
    from migfw.measure.stats import exclude_flagged, with_flag_columns

    ok = trials[trials["status"] == "ok"]
    # Statistics never mix experiments: group by experiment first, then the given factors.
    if "experiment" in ok.columns and "experiment" not in factors:
        factors = ["experiment", *factors]
    kept, excluded = exclude_flagged(ok, exclude_flags)
    table = summarize(kept, SUMMARY_METRICS, factors, confidence, resamples, seed)
    return with_flag_columns(table, kept, excluded, factors)


def _json_safe(row: dict[str, Any]) -> dict[str, Any]:
    def fix(v: Any) -> Any:
        if isinstance(v, float) and math.isnan(v):
            return None
        if hasattr(v, "item"):
            return v.item()
        return v

    return {k: fix(v) for k, v in row.items()}


def write_trial_metrics(folders: Sequence[str | Path], out: str | Path) -> None:
    """Rule trial_metrics: the metrics of trial `folders` (one cell) as a JSON list at `out`."""
    # One call for a whole cell of trials: the workflow pays its per-job cost per cell. Rows
    # are written as they are made (the same bytes as json.dump of the list, indent 2), so a
    # cell of 10,000 trials does not hold 10,000 rows in the Snakemake process.
    seen: dict[str, str] = {}
    with atomic_write(out) as handle:
        handle.write("[")
        for n, folder in enumerate(folders):
            row = {**_json_safe(trial_metrics(folder)), FOLDER: str(folder)}
            tid = row.get("trial_id")
            if tid in seen:
                refuse_duplicate_ids([{"trial_id": tid, FOLDER: seen[tid]}, row])
            seen[tid] = row[FOLDER]
            text = json.dumps(row, indent=2, sort_keys=False, default=str)
            handle.write(("," if n else "") + "\n  " + text.replace("\n", "\n  "))
        handle.write("\n]\n" if seen else "]\n")


def _cli_trial(args: argparse.Namespace) -> int:
    write_trial_metrics(args.trial_dirs, args.out)
    return 0


def write_trials_table(
    metrics: Sequence[str | Path], out: str | Path, trials_dir: str | Path | None = None
) -> None:
    """Rule trials_table: per-trial metrics files (and every trial folder in `trials_dir`)
    -> trials.csv at `out`."""
    from migfw.measure.collect import collect_files

    found = [{**trial_metrics(d), FOLDER: str(d)} for d in discover_trials(trials_dir)
             ] if trials_dir else []  # fmt: skip
    frame = collect_files(metrics, found)
    if frame is None:
        raise MigfwError("no trials to collect")
    trials = _ordered(frame)
    del frame
    write_csv(out, trials)
    failed = int((trials["status"] != "ok").sum())
    print(f"{len(trials)} trials ({failed} failed) -> {out}")


def _cli_collect(args: argparse.Namespace) -> int:
    write_trials_table(args.metrics, args.out, args.trials_dir)
    return 0


def _read_summary_columns(path: str, factors: Sequence[str]) -> pd.DataFrame:
    """The trials.csv columns summary_table uses: a 10,000-trial table has ~190 columns
    (~50 MiB as a whole frame, in the Snakemake process the analysis runs in). The whole
    table where a factor is missing, so the error lists every column there is."""
    header = set(pd.read_csv(path, nrows=0).columns)
    if not set(factors) <= header:
        return pd.read_csv(path)
    used = {*SUMMARY_METRICS, *factors, "experiment", "status", "flags"}
    return pd.read_csv(path, usecols=lambda column: column in used)


def write_summary(
    trials: str | Path,
    out: str | Path,
    factors: Sequence[str] = ("interval_s",),
    confidence: float = 0.95,
    resamples: int = 9999,
    seed: int = 0,
    exclude_flags: Sequence[str] = (),
) -> None:
    """Rule summary_table: trials.csv -> summary.csv (per experiment and factor level)."""
    try:
        table = _read_summary_columns(str(trials), factors)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise MigfwError(f"{trials}: cannot read trials table ({exc})") from None
    if "status" not in table.columns:  # not a trials.csv: one line, not a KeyError
        raise MigfwError(f"{trials}: not a trials table (no 'status' column)")
    summary = summary_table(table, list(factors), confidence, resamples, seed, list(exclude_flags))
    write_csv(out, summary)
    print(f"{len(summary)} summary rows -> {out}")


def _cli_summary(args: argparse.Namespace) -> int:
    write_summary(args.trials, args.out, args.factors, args.confidence, args.resamples,
                  args.seed, args.exclude_flags)  # fmt: skip
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "trial-metrics", help="metrics of trial folders (JSON: one object per trial, in order)"
    )
    p.add_argument("trial_dirs", nargs="+", metavar="TRIAL_DIR")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cli_trial)

    p = subparsers.add_parser("collect", help="per-trial metrics -> trials.csv")
    p.add_argument("metrics", nargs="*", help="per-trial metrics JSON files")
    p.add_argument("--trials-dir", help="also analyse every trial folder in this directory")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cli_collect)

    p = subparsers.add_parser("summarize", help="trials.csv -> summary.csv (per factor level)")
    p.add_argument("trials")
    p.add_argument("--out", required=True)
    p.add_argument("--factors", nargs="*", default=["interval_s"])
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--resamples", type=int, default=9999)
    p.add_argument("--seed", type=int, default=0)
    add_exclude_flags_argument(p)
    p.set_defaults(func=_cli_summary)
