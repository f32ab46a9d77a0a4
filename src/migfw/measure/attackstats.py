"""results/analysis/attack_window.csv: the attack window per experiment x placement x delay
(x OVN binding for placement `ovn`).

One row per group of successful trials that carry attack data (blocked_sent not empty):
n, mean / SD / 95 % CI (Student t and percentile bootstrap) of breach_window_ms, the same
mean for breaches_total_ms, the survival rate of each flow with a Wilson score interval,
and the difference in mean breach window against the `vm` placement of the same
experiment with a two-sample percentile-bootstrap CI.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np
import pandas as pd

from migfw.errors import MigfwError
from migfw.io import write_csv
from migfw.measure.stats import describe

GROUP = ["experiment", "placement", "agent_delay_ms", "ovn_binding"]
# The outage beside the breach window: a placement that fails closed (OVN's unbound port)
# shows no breach but a longer outage (mean and t CI of these trials.csv columns).
OUTAGES = ("probe_outage_ms", "resume_to_first_reply_ms")
FLOWS = {"established": "established_survived", "stateful": "stateful_flow_survived"}
COLUMNS = [
    *GROUP,
    "n",
    "breach_window_ms_mean",
    "breach_window_ms_sd",
    "breach_window_ms_ci_t_low",
    "breach_window_ms_ci_t_high",
    "breach_window_ms_ci_boot_low",
    "breach_window_ms_ci_boot_high",
    "breach_window_ms_min",
    "breach_window_ms_max",
    "breaches_total_ms_mean",
    "blocked_answered_pct",
    *(
        f"{flow}_{part}"
        for flow in FLOWS
        for part in ("n", "survived", "survival", "wilson_low", "wilson_high")
    ),
    "diff_vs_vm_ms",
    "diff_vs_vm_boot_low",
    "diff_vs_vm_boot_high",
    *(f"{m}_{part}" for m in OUTAGES for part in ("mean", "ci_t_low", "ci_t_high")),
    "allowed_answered_pct",
]


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (NaN, NaN for n = 0)."""
    if n == 0:
        return math.nan, math.nan
    from scipy import stats as sps

    z = float(sps.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def diff_of_means(
    x: np.ndarray, ref: np.ndarray, confidence: float, resamples: int, seed: int
) -> tuple[float, float, float]:
    """mean(x) - mean(ref) and its percentile-bootstrap CI (each sample resampled on its own)."""
    if len(x) == 0 or len(ref) == 0:
        return math.nan, math.nan, math.nan
    diff = float(x.mean() - ref.mean())
    if len(x) < 2 or len(ref) < 2:
        return diff, math.nan, math.nan
    if np.ptp(x) == 0 and np.ptp(ref) == 0:  # every resample gives the same difference
        return diff, diff, diff
    from scipy import stats as sps

    from migfw.measure.stats import BOOTSTRAP_BATCH_VALUES

    boot = sps.bootstrap(
        (x, ref),
        lambda a, b, axis=-1: np.mean(a, axis=axis) - np.mean(b, axis=axis),
        confidence_level=confidence,
        n_resamples=resamples,
        method="percentile",
        vectorized=True,
        random_state=np.random.default_rng(seed),
        batch=max(1, BOOTSTRAP_BATCH_VALUES // (len(x) + len(ref))),  # memory flat in N
    )
    return diff, float(boot.confidence_interval.low), float(boot.confidence_interval.high)


def _bools(series: pd.Series) -> list[bool]:
    """True/False cells of a trials.csv column (as written: True/False, or read back as text)."""
    out = []
    for v in series:
        if isinstance(v, bool | np.bool_):
            out.append(bool(v))
        elif isinstance(v, str) and v.strip().lower() in ("true", "false"):
            out.append(v.strip().lower() == "true")
    return out


def attack_window_table(
    trials: pd.DataFrame, confidence: float = 0.95, resamples: int = 9999, seed: int = 0
) -> pd.DataFrame:
    """The attack_window.csv rows (empty table, same columns, without placement trials)."""
    need = {"blocked_sent", "breach_window_ms", "status"}
    if not need <= set(trials.columns):
        missing = ", ".join(sorted(need - set(trials.columns)))
        raise MigfwError(f"trials table lacks column(s) {missing}; rerun `migfw collect`")
    frame = trials[(trials["status"] == "ok") & trials["blocked_sent"].notna()].copy()
    for col in GROUP:
        if col not in frame.columns:
            frame[col] = pd.NA
    frame["experiment"] = frame["experiment"].fillna("").astype(str)
    frame["placement"] = frame["placement"].fillna("").astype(str)
    frame["agent_delay_ms"] = pd.to_numeric(frame["agent_delay_ms"], errors="coerce")
    frame["ovn_binding"] = frame["ovn_binding"].fillna("").astype(str)
    rows: list[dict[str, Any]] = []
    for key, group in frame.groupby(GROUP, dropna=False, sort=True):
        window = pd.to_numeric(group["breach_window_ms"], errors="coerce").dropna()
        d = describe(window.tolist(), confidence, resamples, seed)
        row: dict[str, Any] = dict(zip(GROUP, key, strict=True))
        sent = pd.to_numeric(group["blocked_sent"], errors="coerce").sum()
        answered = pd.to_numeric(group.get("blocked_answered"), errors="coerce").sum()
        row.update(
            n=d["n"],
            breach_window_ms_mean=d["mean"],
            breach_window_ms_sd=d["sd"],
            breach_window_ms_ci_t_low=d["ci_t_low"],
            breach_window_ms_ci_t_high=d["ci_t_high"],
            breach_window_ms_ci_boot_low=d["ci_boot_low"],
            breach_window_ms_ci_boot_high=d["ci_boot_high"],
            breach_window_ms_min=float(window.min()) if len(window) else math.nan,
            breach_window_ms_max=float(window.max()) if len(window) else math.nan,
            breaches_total_ms_mean=pd.to_numeric(
                group.get("breaches_total_ms"), errors="coerce"
            ).mean(),
            blocked_answered_pct=100.0 * answered / sent if sent else math.nan,
        )
        for flow, column in FLOWS.items():
            values = _bools(group[column]) if column in group.columns else []
            k, n = sum(values), len(values)
            low, high = wilson(k, n, confidence)
            row.update(
                {
                    f"{flow}_n": n,
                    f"{flow}_survived": k,
                    f"{flow}_survival": k / n if n else math.nan,
                    f"{flow}_wilson_low": low,
                    f"{flow}_wilson_high": high,
                }
            )
        ref = frame[(frame["experiment"] == key[0]) & (frame["placement"] == "vm")]
        ref_w = pd.to_numeric(ref["breach_window_ms"], errors="coerce").dropna().to_numpy()
        diff = diff_of_means(window.to_numpy(float), ref_w, confidence, resamples, seed)
        row.update(diff_vs_vm_ms=diff[0], diff_vs_vm_boot_low=diff[1], diff_vs_vm_boot_high=diff[2])
        for metric in OUTAGES:
            values = group[metric] if metric in group.columns else pd.Series([], dtype=float)
            o = describe(pd.to_numeric(values, errors="coerce").tolist(), confidence,
                         resamples, seed)  # fmt: skip
            row.update({f"{metric}_mean": o["mean"], f"{metric}_ci_t_low": o["ci_t_low"],
                        f"{metric}_ci_t_high": o["ci_t_high"]})  # fmt: skip
        a_sent = pd.to_numeric(group.get("allowed_sent"), errors="coerce").sum()
        a_answered = pd.to_numeric(group.get("allowed_answered"), errors="coerce").sum()
        row["allowed_answered_pct"] = 100.0 * a_answered / a_sent if a_sent else math.nan
        rows.append(row)
    out = pd.DataFrame(rows, columns=COLUMNS)
    order = {p: i for i, p in enumerate(["vm", "vmm", "vmm-agent", "ovn", "none", "both"])}
    if not out.empty:
        out["_o"] = out["placement"].map(lambda p: order.get(p, len(order)))
        out = out.sort_values(["experiment", "_o", "agent_delay_ms", "ovn_binding"])
        out = out.drop(columns="_o")
    return out.reset_index(drop=True)


def _cli(args: argparse.Namespace) -> int:
    try:
        trials = pd.read_csv(args.trials)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise MigfwError(f"{args.trials}: cannot read trials table ({exc})") from None
    table = attack_window_table(trials, args.confidence, args.resamples, args.seed)
    write_csv(args.out, table)
    print(f"{len(table)} attack-window rows -> {args.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "attack-window", help="trials.csv -> attack_window.csv (per experiment x placement)"
    )
    p.add_argument("trials")
    p.add_argument("--out", required=True)
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--resamples", type=int, default=9999)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cli)
