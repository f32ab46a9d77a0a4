"""results/analysis/attack_window.csv: the attack window per experiment x placement x factor
cell (agent delay, trigger, port default, tcp_loose, OVN binding, ...) x attacker side; and
results/analysis/flow_survival.csv, the flows per cell.

One row per group of successful trials that carry attack data (blocked_sent not empty):
n, mean / SD / 95 % CI (Student t and percentile bootstrap) of breach_window_ms, the same
mean for breaches_total_ms, the survival rate of each flow with a Wilson score interval,
and the difference in mean breach window against the `vm` placement of the same
experiment with a two-sample percentile-bootstrap CI.

Size: the attack-window and flow-survival tables group the trials into the same cells
(other_factors) and share this module's interval estimators (Wilson, Clopper-Pearson,
bootstrap difference); one CLI writes both.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from migfw.errors import MigfwError
from migfw.io import write_csv
from migfw.measure.attack import side_column
from migfw.measure.flowstate import CT_METRICS, flow_column
from migfw.measure.stats import add_exclude_flags_argument, describe
from migfw.testbed.placements import names as placement_names
from migfw.trials.attack_contract import ATTACK_FACTORS, ATTACKER_SIDES, KNOWN_FLOWS, SIDE_TEXT

GROUP = ["experiment", "placement", *ATTACK_FACTORS, "ovn_binding", "side"]
# The outage beside the breach window: a placement that fails closed (OVN's unbound port, a
# closed port default) shows no breach but a longer outage (mean and t CI of these columns).
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
    # Issue 22: numbers that never hide a breach (docs/attack_window.md).
    "rate_hz",
    "breached_trials",
    "breached_ci_low",
    "breached_ci_high",
    "breached_upper",
    "blocked_sent_total",
    "blocked_answered_total",
    "answered_upper",
    "answered_rule_of_three",
    "max_run_probes",
    "breach_window_hi_ms_mean",
    "breach_window_hi_ms_max",
    "gap_max_ms",
    "bound_ms",
    "excess_over_vm_ms",
    "excess_over_vm_boot_low",
    "excess_over_vm_boot_high",
    "vm_excess_ms",
    "vm_excess_boot_low",
    "vm_excess_boot_high",
    *(f"{flow}_opened" for flow in FLOWS),
    # The allowed port's longest unanswered run per side (what a closed port default costs).
    "allowed_outage_ms_mean",
    "allowed_outage_ms_ci_t_low",
    "allowed_outage_ms_ci_t_high",
    "allowed_outage_ms_max",
    "allowed_outage_hi_ms_max",
    "statement",
]
# Rows in this order: the guest's own firewall first, the control last.
# (The registry's table order, read when the table is made: migfw.testbed.placements.)
# A side's per-trial values in trials.csv: the switch's older columns where they exist.
SIDE_VALUES = {
    "allowed_sent": "allowed_sent",
    "allowed_answered": "allowed_answered",
    "sent": "blocked_sent",
    "answered": "blocked_answered",
    "window_ms": "breach_window_ms",
    "window_hi_ms": "breach_window_hi_ms",
    "total_ms": "breaches_total_ms",
}


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

    from migfw.measure.stats import BOOTSTRAP_BATCH_VALUES, resample_means

    boot = sps.bootstrap(
        (x, ref),
        lambda a, b, axis=-1: resample_means(a, axis) - resample_means(b, axis),
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


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval of a binomial proportion (NaN for n = 0)."""
    if n == 0:
        return math.nan, math.nan
    from scipy import stats as sps

    alpha = 1 - confidence
    low = float(sps.beta.ppf(alpha / 2, k, n - k + 1)) if k > 0 else 0.0
    high = float(sps.beta.ppf(1 - alpha / 2, k + 1, n - k)) if k < n else 1.0
    return low, high


def upper_bound(k: int, n: int, confidence: float = 0.95) -> float:
    """Exact one-sided upper confidence bound of a binomial proportion: the p with
    P(X <= k | n, p) = 1 - confidence; for k = 0 it is 1 - (1 - confidence)^(1/n), which
    the rule of three (3/n) approximates for large n at 95 %. NaN for n = 0."""
    if n == 0:
        return math.nan
    if k >= n:
        return 1.0
    if k == 0:
        return 1.0 - (1.0 - confidence) ** (1.0 / n)
    from scipy import stats as sps

    return float(sps.beta.ppf(confidence, k + 1, n - k))


def _numbers(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(math.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce")


def other_factors(trials: pd.DataFrame) -> list[str]:
    """Factors besides placement and ATTACK_FACTORS that some experiment of `trials` varies
    (e.g. `ovn_binding`, `interval_s`): cells are told apart by them too."""
    from migfw.trials.contract import KNOWN_FACTORS

    fixed = {"placement", *ATTACK_FACTORS, "ovn_binding"}
    found = []
    for factor in KNOWN_FACTORS:
        if factor in fixed or factor not in trials.columns:
            continue
        by = trials.groupby(trials["experiment"].fillna("") if "experiment" in trials else 0)
        if (by[factor].nunique(dropna=True) > 1).any():
            found.append(factor)
    return found


def side_frame(trials: pd.DataFrame, side: str, extra: list[str] | None = None) -> pd.DataFrame:
    """One row per successful trial with this side's data: the group keys (and the `extra`
    factors), and the side's values under common names (SIDE_VALUES: the switch's older
    columns where present)."""
    frame = trials[trials["status"] == "ok"].copy()
    keys = [*GROUP[:-1], *(extra if extra is not None else other_factors(trials))]
    for col in keys:
        if col not in frame.columns:
            frame[col] = pd.NA
    out = frame[["trial_id", *keys]].copy() if "trial_id" in frame else frame[keys]
    out["side"] = side
    metrics = ("sent", "answered", "window_ms", "window_hi_ms", "total_ms", "bound_ms",
               "gap_max_ms", "max_run_probes", "rate_hz", "allowed_sent",
               "allowed_answered", "allowed_outage_ms", "allowed_outage_hi_ms")  # fmt: skip
    for metric in metrics:
        older = SIDE_VALUES.get(metric) if side == "switch" else None
        values = _numbers(frame, side_column(side, metric))
        if older is not None and older in frame.columns:
            values = _numbers(frame, older).where(_numbers(frame, older).notna(), values)
        out[metric] = values
    for column in (*FLOWS.values(), *(f"{flow}_opened" for flow in FLOWS), *OUTAGES):
        out[column] = frame[column] if column in frame.columns else pd.NA
    out = out[out["sent"].notna()]
    out["experiment"] = out["experiment"].fillna("").astype(str)
    out["placement"] = out["placement"].fillna("").astype(str)
    out["ovn_binding"] = out["ovn_binding"].fillna("").astype(str)  # "" where not placement ovn
    for factor in ATTACK_FACTORS:
        levels = out[factor]
        numeric = pd.to_numeric(levels, errors="coerce")
        out[factor] = numeric if numeric.notna().sum() == levels.notna().sum() else levels
    return out


def _fmt_count(value: float) -> str:
    return f"{int(value):,}"


def _fmt_p(value: float) -> str:
    return "—" if pd.isna(value) else f"{value:.3g}"


def cell_statement(row: dict[str, Any], confidence: float) -> str:
    """What one cell of attack_window.csv shows, in words a verdict can quote: breached
    trials and windows with their bounds, or for a breach-free cell the bound its probes set."""
    side = SIDE_TEXT.get(str(row["side"]), str(row["side"]))
    pct = f"{100 * confidence:g} %"
    n, k = int(row["n"]), int(row["breached_trials"])
    sent, answered = int(row["blocked_sent_total"]), int(row["blocked_answered_total"])
    rate = row.get("rate_hz")
    at = f" at {rate:g} Hz" if pd.notna(rate) else ""
    head = f"{side}, {_fmt_count(sent)} SYNs to a blocked port{at} in {n} trials: "
    answered_text = (
        f"{_fmt_count(answered)} of {_fmt_count(sent)} answered (one-sided {pct} upper bound "
        f"{_fmt_p(row['answered_upper'])} on the answered fraction, exact binomial"
    )
    if answered == 0:
        answered_text += f"; rule of three 3/N = {_fmt_p(row['answered_rule_of_three'])}"
    answered_text += ")"
    trials_text = (
        f"breached in {k} of {n} trials (exact {pct} CI {100 * row['breached_ci_low']:.0f}–"
        f"{100 * row['breached_ci_high']:.0f} %)"
        if k
        else f"0 of {n} trials breached (one-sided {pct} upper bound "
        f"{100 * row['breached_upper']:.0f} % per trial)"
    )
    bound = row.get("bound_ms")
    gap = row.get("gap_max_ms")
    if k == 0:
        exposure = (
            f"no probe answered, so any exposure was shorter than {bound:.1f} ms, the longest "
            "gap between consecutive probes"
            if pd.notna(bound)
            else "no probe answered"
        )
        return head + "; ".join([answered_text, trials_text, exposure]) + _outage_text(row)
    longest = int(row["max_run_probes"]) if pd.notna(row.get("max_run_probes")) else None
    window = (
        f"longest window {row['breach_window_ms_min']:.1f}–{row['breach_window_ms_max']:.1f} ms "
        f"observed (mean {row['breach_window_ms_mean']:.1f}), under "
        f"{row['breach_window_hi_ms_max']:.1f} ms between the unanswered neighbours"
    )
    parts = [trials_text, answered_text, window]
    if longest is not None and longest < 2:
        parts.append(
            f"no run of ≥ 2 consecutive probes answered; every exposure < {bound:.1f} ms"
            if pd.notna(bound)
            else "no run of ≥ 2 consecutive probes answered"
        )
    elif pd.notna(bound):
        parts.append(f"every exposure < {bound:.1f} ms (longest probe gap {gap:.1f} ms)")
    return head + "; ".join(parts) + _outage_text(row)


def _outage_text(row: dict[str, Any]) -> str:
    """The allowed port's outage (a closed port default turns exposure into this)."""
    mean = row.get("allowed_outage_ms_mean")
    if mean is None or pd.isna(mean):
        return ""
    low, high = row.get("allowed_outage_ms_ci_t_low"), row.get("allowed_outage_ms_ci_t_high")
    ci = f", t-CI {low:.1f}–{high:.1f}" if pd.notna(low) and pd.notna(high) else ""
    return (f"; the allowed port went unanswered for up to {row['allowed_outage_ms_max']:.1f} "
            f"ms (longest run per trial, mean {mean:.1f}{ci}; "
            f"< {row['allowed_outage_hi_ms_max']:.1f} ms between answered neighbours)")  # fmt: skip


def attack_window_table(
    trials: pd.DataFrame,
    confidence: float = 0.95,
    resamples: int = 9999,
    seed: int = 0,
    exclude_flags: Sequence[str] = (),
) -> pd.DataFrame:
    """The attack_window.csv rows: one per experiment x placement x factor cell x attacker
    side with data (empty table, same columns, without placement trials). Trials carrying a
    flag in `exclude_flags` are left out; each row counts the flagged trials it includes and
    those left out (migfw.measure.stats.with_flag_columns)."""
    from migfw.measure.stats import exclude_flagged

    trials, excluded = exclude_flagged(trials, exclude_flags)
    need = {"blocked_sent", "breach_window_ms", "status"}
    if not need <= set(trials.columns):
        missing = ", ".join(sorted(need - set(trials.columns)))
        raise MigfwError(f"trials table lacks column(s) {missing}; rerun `migfw collect`")
    sides = [side_column(side, "sent") for side in ATTACKER_SIDES] + ["blocked_sent"]
    with_data = trials[trials[[c for c in sides if c in trials]].notna().any(axis=1)]
    extra = other_factors(with_data)  # factors the attack experiments vary, not the thesis's
    frame = pd.concat([side_frame(trials, side, extra) for side in ATTACKER_SIDES],
                      ignore_index=True)  # fmt: skip
    keys = [*GROUP[:-1], *extra, "side"]
    rows: list[dict[str, Any]] = []
    for key, group in frame.groupby(keys, dropna=False, sort=False):
        rows.append(_cell(dict(zip(keys, key, strict=True)), group, frame, confidence,
                          resamples, seed))  # fmt: skip
    columns = [*GROUP[:-1], *extra, *COLUMNS[len(GROUP) - 1 :]]
    out = pd.DataFrame(rows, columns=columns)
    sides = {s: i for i, s in enumerate(ATTACKER_SIDES)}
    if not out.empty:
        order = {p: i for i, p in enumerate(placement_names())}
        out["_o"] = out["placement"].map(lambda p: order.get(p, len(order)))
        out["_s"] = out["side"].map(lambda s: sides.get(s, len(sides)))
        order = ["experiment", "_s", "_o", *ATTACK_FACTORS, "ovn_binding", *extra]
        out = out.sort_values(order, kind="stable", na_position="first")
        out = out.drop(columns=["_o", "_s"])
    return _with_flags(out.reset_index(drop=True), trials, excluded, extra, keys)


def _with_flags(
    table: pd.DataFrame, kept: pd.DataFrame, excluded: pd.DataFrame, extra: list[str],
    keys: list[str],
) -> pd.DataFrame:  # fmt: skip
    """FLAG_COLUMNS per row, over the trials in its cell and side as side_frame keys them."""
    from migfw.measure.stats import with_flag_columns

    def per_side(frame: pd.DataFrame) -> pd.DataFrame:
        ok = frame[frame["status"] == "ok"] if "status" in frame else frame
        if ok.empty or "trial_id" not in ok:
            return ok.iloc[0:0]
        flags = dict(zip(ok["trial_id"], ok.get("flags", pd.Series("", index=ok.index)),
                         strict=True))  # fmt: skip
        sides = pd.concat([side_frame(ok, side, extra) for side in ATTACKER_SIDES],
                          ignore_index=True)  # fmt: skip
        sides["flags"] = sides["trial_id"].map(flags)
        return sides

    return with_flag_columns(table, per_side(kept), per_side(excluded), keys)


def _reference(frame: pd.DataFrame, key: dict[str, Any]) -> pd.DataFrame:
    """The `vm` trials a cell is compared with: same experiment and side, and the same level
    of every factor that applies to `vm` (those its trials have a level of)."""
    ref = frame[(frame["experiment"] == key["experiment"]) & (frame["placement"] == "vm")
                & (frame["side"] == key["side"])]  # fmt: skip
    for factor in (f for f in key if f not in ("experiment", "placement", "side")):
        levels = ref[factor]
        has = levels.notna() & (levels.astype(str) != "")  # "": the factor is not vm's
        if has.any() and pd.notna(key[factor]) and key[factor] != "":
            ref = ref[levels == key[factor]]
    return ref


def _cell(key: dict[str, Any], group: pd.DataFrame, frame: pd.DataFrame, confidence: float,
          resamples: int, seed: int) -> dict[str, Any]:  # fmt: skip
    window = group["window_ms"].dropna()
    d = describe(window.tolist(), confidence, resamples, seed)
    row: dict[str, Any] = dict(key)
    sent, answered = int(group["sent"].sum()), int(group["answered"].fillna(0).sum())
    breached = group["answered"].fillna(0) > 0
    k, n = int(breached.sum()), int(len(group))
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
        breaches_total_ms_mean=group["total_ms"].mean(),
        blocked_answered_pct=100.0 * answered / sent if sent else math.nan,
        rate_hz=group["rate_hz"].median(),
        breached_trials=k,
        breached_ci_low=clopper_pearson(k, n, confidence)[0],
        breached_ci_high=clopper_pearson(k, n, confidence)[1],
        breached_upper=upper_bound(k, n, confidence),
        blocked_sent_total=sent,
        blocked_answered_total=answered,
        answered_upper=upper_bound(answered, sent, confidence),
        answered_rule_of_three=3.0 / sent if sent and answered == 0 else math.nan,
        max_run_probes=group["max_run_probes"].max(),
        breach_window_hi_ms_mean=group["window_hi_ms"].mean(),
        breach_window_hi_ms_max=group["window_hi_ms"].max(),
        gap_max_ms=group["gap_max_ms"].max(),
        bound_ms=group["bound_ms"].max(),
    )
    for flow, column in FLOWS.items():
        opened = _bools(group[f"{flow}_opened"]) if group[f"{flow}_opened"].notna().any() else []
        values = _bools(group[column])  # empty cells (a flow that did not open) are skipped
        ks, ns = sum(values), len(values)
        low, high = wilson(ks, ns, confidence)
        row.update({f"{flow}_n": ns, f"{flow}_survived": ks,
                    f"{flow}_survival": ks / ns if ns else math.nan,
                    f"{flow}_wilson_low": low, f"{flow}_wilson_high": high,
                    f"{flow}_opened": sum(opened) if opened else math.nan})  # fmt: skip
    ref = _reference(frame, key)
    ref_lo = ref["window_ms"].dropna().to_numpy(float)
    ref_bound = ref["bound_ms"].dropna().to_numpy(float)
    lo = window.to_numpy(float)
    bound = group["bound_ms"].dropna().to_numpy(float)
    diff = diff_of_means(lo, ref_lo, confidence, resamples, seed)
    row.update(diff_vs_vm_ms=diff[0], diff_vs_vm_boot_low=diff[1], diff_vs_vm_boot_high=diff[2])
    if key["placement"] != "vm":
        over = diff_of_means(lo, ref_bound, confidence, resamples, seed)
        under = diff_of_means(ref_lo, bound, confidence, resamples, seed)
        row.update(excess_over_vm_ms=over[0], excess_over_vm_boot_low=over[1],
                   excess_over_vm_boot_high=over[2], vm_excess_ms=under[0],
                   vm_excess_boot_low=under[1], vm_excess_boot_high=under[2])  # fmt: skip
    for metric in OUTAGES:
        o = describe(pd.to_numeric(group[metric], errors="coerce").tolist(), confidence,
                     resamples, seed)  # fmt: skip
        row.update({f"{metric}_mean": o["mean"], f"{metric}_ci_t_low": o["ci_t_low"],
                    f"{metric}_ci_t_high": o["ci_t_high"]})  # fmt: skip
    a_sent, a_answered = group["allowed_sent"].sum(), group["allowed_answered"].sum()
    row["allowed_answered_pct"] = 100.0 * a_answered / a_sent if a_sent else math.nan
    o = describe(group["allowed_outage_ms"].dropna().tolist(), confidence, resamples, seed)
    row.update(allowed_outage_ms_mean=o["mean"], allowed_outage_ms_ci_t_low=o["ci_t_low"],
               allowed_outage_ms_ci_t_high=o["ci_t_high"],
               allowed_outage_ms_max=group["allowed_outage_ms"].max(),
               allowed_outage_hi_ms_max=group["allowed_outage_hi_ms"].max())  # fmt: skip
    row["statement"] = cell_statement(row, confidence)
    return row


FLOW_GROUP = ["experiment", "placement", *ATTACK_FACTORS, "ovn_binding", "flow"]
FLOW_TABLE_COLUMNS = [
    *FLOW_GROUP,
    "initiative",
    "state_only",
    "trials",
    "opened",
    "survived",
    "survival",
    "wilson_low",
    "wilson_high",
    "reset",
    "stall_ms_median",
    "stall_ms_max",
    "recovery_ms_median",
    "recovery_ms_max",
    "first_prober",
    "first_guest",
    "restored_prober",
    "restored_guest",
    "restored_none",
    *(f"{ct}_{part}" for ct in CT_METRICS for part in ("entries", "dumps")),
    "ct_dst_end_by_guest",
    "statement",
]


def _flows_in(trials: pd.DataFrame) -> list[str]:
    """Flows with an `<flow>_opened` column, the contract's known ones first."""
    found = [c[: -len("_opened")] for c in trials.columns if c.endswith("_opened")]
    return [f for f in KNOWN_FLOWS if f in found] + sorted(set(found) - set(KNOWN_FLOWS))


def flow_table(trials: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """results/analysis/flow_survival.csv: per experiment x placement x factor cell x flow,
    how many trials opened the flow and, of those only, how many it survived (Wilson
    interval), its stalls and recovery after the resume, whose packet restored it, and in
    how many trials each conntrack dump held its entry."""
    ok = trials[trials["status"] == "ok"].copy() if "status" in trials else trials.copy()
    for col in FLOW_GROUP[:-1]:
        if col not in ok.columns:
            ok[col] = pd.NA
    ok["experiment"] = ok["experiment"].fillna("").astype(str)
    ok["placement"] = ok["placement"].fillna("").astype(str)
    ok["ovn_binding"] = ok["ovn_binding"].fillna("").astype(str)  # as in attack_window.csv
    flows = _flows_in(ok)
    extra = other_factors(ok[ok[[f"{f}_opened" for f in flows]].notna().any(axis=1)]
                          if flows else ok)  # fmt: skip
    keys = [*FLOW_GROUP[:-1], *extra]
    rows = []
    for flow in flows:
        part = ok[ok[f"{flow}_opened"].notna()]
        for key, group in part.groupby(keys, dropna=False, sort=False):
            rows.append(_flow_row(dict(zip(keys, key, strict=True)), flow, group, confidence))
    columns = [*FLOW_GROUP[:-1], *extra, *FLOW_TABLE_COLUMNS[len(FLOW_GROUP) - 1 :]]
    out = pd.DataFrame(rows, columns=columns)
    if not out.empty:
        order = {p: i for i, p in enumerate(placement_names())}
        out["_o"] = out["placement"].map(lambda p: order.get(p, len(order)))
        out = out.sort_values(["experiment", "_o", *ATTACK_FACTORS, "ovn_binding", *extra],
                              kind="stable",
                              na_position="first").drop(columns="_o")  # fmt: skip
    return out.reset_index(drop=True)


def _flow_row(key: dict[str, Any], flow: str, group: pd.DataFrame, confidence: float) -> dict:
    def col(metric: str) -> pd.Series:
        name = flow_column(flow, metric)
        return group[name] if name in group.columns else pd.Series(pd.NA, index=group.index)

    opened = _bools(col("opened"))
    survived = _bools(col("survived"))  # empty for a flow that did not open
    k, n = sum(survived), len(survived)
    low, high = wilson(k, n, confidence)
    stall = pd.to_numeric(col("stall_ms"), errors="coerce")
    recovery = pd.to_numeric(col("recovery_ms"), errors="coerce")
    first, restored = col("first_after_resume").astype(str), col("restored_by").astype(str)
    known = KNOWN_FLOWS.get(flow, {})
    row: dict[str, Any] = {
        **key,
        "flow": flow,
        "initiative": known.get("initiative"),
        "state_only": known.get("state_only"),
        "trials": len(group),
        "opened": sum(opened),
        "survived": k,
        "survival": k / n if n else math.nan,
        "wilson_low": low,
        "wilson_high": high,
        "reset": sum(_bools(col("reset"))),
        "stall_ms_median": stall.median(),
        "stall_ms_max": stall.max(),
        "recovery_ms_median": recovery.median(),
        "recovery_ms_max": recovery.max(),
        "first_prober": int((first == "prober").sum()),
        "first_guest": int((first == "guest").sum()),
        "restored_prober": int((restored == "prober").sum()),
        "restored_guest": int((restored == "guest").sum()),
        "restored_none": int((restored == "none").sum()),
    }
    for ct in CT_METRICS:
        cells = col(ct).dropna().astype(str)
        row[f"{ct}_entries"] = int((cells != "absent").sum())
        row[f"{ct}_dumps"] = int(len(cells))
    row["ct_dst_end_by_guest"] = int(col("ct_dst_end").astype(str).str.endswith(":guest").sum())
    row["statement"] = flow_statement(row)
    return row


def flow_statement(row: dict[str, Any]) -> str:
    """One flow in one cell, in words: opened k of n; survival only over the opened ones."""
    who = {"prober": "the prober speaks first", "guest": "the guest speaks first"}
    name = row["flow"] + (f" ({who[row['initiative']]})" if row["initiative"] in who else "")
    n, opened = int(row["trials"]), int(row["opened"])
    if opened == 0:
        return f"{name}: did not open in any of {n} trials (not counted as survived or not)"
    text = f"{name}: opened in {opened} of {n} trials; survived {int(row['survived'])} of "
    text += f"{opened}"
    if pd.notna(row["stall_ms_median"]):
        text += f", longest stall median {row['stall_ms_median']:.0f} ms"
    restored = [f"{row[f'restored_{s}']} by the {s}" for s in ("prober", "guest")
                if row[f"restored_{s}"]]  # fmt: skip
    if restored:
        text += "; restored " + ", ".join(restored)
    dumps = row["ct_dst_resume_dumps"]
    if dumps:
        text += (f"; destination conntrack held its entry just after the resume in "
                 f"{row['ct_dst_resume_entries']} of {dumps}")  # fmt: skip
    return text


def attack_columns(header: Sequence[str], path: str | Path | None = None) -> list[str]:
    """migfw.measure.attackstats (attack_window.csv, flow_survival.csv, and side_frame for the
    attack-window figure): the per-side `breach_*` columns, every flow's `<flow>_*` columns
    (a flow is what has an `<flow>_opened` column), the switch's older names, the outages, and
    the group keys. With `path`, a side no trial sent to (its `sent` columns empty) and a flow
    no trial opened keep only those columns: attackstats keeps a side's rows with a `sent`
    and a flow's with an `opened` value, so their other columns are never read (a table
    without attack data reads ~40 of its ~190 columns, not ~130)."""
    from migfw.measure.trialtable import KEYS

    fixed = KEYS | {*GROUP, *ATTACK_FACTORS, *SIDE_VALUES.values(), *FLOWS.values(), *OUTAGES}
    opened = [c for c in header if c.endswith("_opened")]
    sent = {side: [side_column(side, "sent"), *(["blocked_sent"] if side == "switch" else [])]
            for side in ATTACKER_SIDES}  # fmt: skip
    keys = [*opened, *(c for names in sent.values() for c in names if c in header)]
    used = set(pd.read_csv(path, usecols=keys).dropna(axis=1, how="all").columns) if (
        path is not None and keys) else set(keys)  # fmt: skip
    prefixes = [f"{c[: -len('_opened')]}_" for c in opened if c in used]
    prefixes += [f"breach_{side}_" for side, names in sent.items() if used & set(names)]
    return [c for c in header if c in fixed or c in keys or c.startswith(tuple(prefixes))]


def write_attack_window(
    trials: str | Path,
    out: str | Path,
    flows: str | Path | None = None,
    confidence: float = 0.95,
    resamples: int = 9999,
    seed: int = 0,
    exclude_flags: Sequence[str] = (),
) -> None:
    """Rule attack_window_table: trials.csv -> attack_window.csv at `out` (and the flow
    table, flow_survival.csv, at `flows`)."""
    from migfw.measure.trialtable import read_trials

    try:
        table_in = read_trials(trials, attack_columns)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise MigfwError(f"{trials}: cannot read trials table ({exc})") from None
    table = attack_window_table(table_in, confidence, resamples, seed, list(exclude_flags))
    write_csv(out, table)
    print(f"{len(table)} attack-window rows -> {out}")
    if flows:
        from migfw.measure.stats import exclude_flagged

        survival = flow_table(exclude_flagged(table_in, list(exclude_flags))[0], confidence)
        write_csv(flows, survival)
        print(f"{len(survival)} flow rows -> {flows}")


def _cli(args: argparse.Namespace) -> int:
    write_attack_window(args.trials, args.out, args.flows, args.confidence, args.resamples,
                        args.seed, args.exclude_flags)  # fmt: skip
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "attack-window",
        help="trials.csv -> attack_window.csv (per experiment x placement x factors x side)",
    )
    p.add_argument("trials")
    p.add_argument("--out", required=True)
    p.add_argument("--flows", help="also write the flow table (flow_survival.csv) here")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--resamples", type=int, default=9999)
    p.add_argument("--seed", type=int, default=0)
    add_exclude_flags_argument(p)
    p.set_defaults(func=_cli)
