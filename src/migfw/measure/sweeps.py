"""Sweeps: how downtime and total migration time respond to each factor an experiment varies,
and how many repetitions a given precision needs.

- `sweep_table`: per experiment, per varied factor and level, n / mean / Student-t 95 % CI of
  DT (gap-based, `dt_gap_s` in ms), TMT as the hypervisor saw it (`hv_total_ms`) and as the
  migrate call took (`tmt_meta_s` in ms), the hypervisor's pause, resume → first reply, and
  the attack-window metric `breach_window_ms` where trials have it.
- `power_table`: per experiment, cell (its levels of the factors it varies) and metric, the
  sample SD over the cell's successful trials and the repetitions needed for a 95 % CI
  half-width of 10, 20 and 50 ms: the smallest n with t(0.975, n − 1) · s / √n <= h (s taken
  as known: a planning figure, not a guarantee).
- `sweep_figure`: one panel per varied factor × metric, mean with its CI per level.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from migfw.errors import MigfwError
from migfw.io import write_csv

# metric column → (label, scale to ms)
SWEEP_METRICS = {
    "dt_gap_s": ("DT, gap-based (ms)", 1000.0),
    "hv_total_ms": ("TMT, hypervisor (ms)", 1.0),
    "tmt_meta_s": ("TMT, migrate call (ms)", 1000.0),
    "hv_pause_ms": ("pause, hypervisor events (ms)", 1.0),
    "resume_to_first_reply_ms": ("resume → first reply (ms)", 1.0),
    "breach_window_ms": ("breach window (ms)", 1.0),
}
POWER_METRICS = {"dt_gap_s": 1000.0, "breach_window_ms": 1.0}
HALF_WIDTHS_MS = (10, 20, 50)
NOT_FACTORS = {"experiment", "trial_id", "repetition", "status", "failure", "direction"}
SWEEP_COLUMNS = ["experiment", "factor", "level", "metric", "n", "mean", "ci_low", "ci_high"]


def _ok(trials: pd.DataFrame) -> pd.DataFrame:
    ok = trials[trials["status"] == "ok"] if "status" in trials else trials
    if "experiment" not in ok:
        ok = ok.assign(experiment="")
    return ok


def varied_factors(trials: pd.DataFrame, factors: list[str]) -> dict[str, list[str]]:
    """experiment → the factors (among `factors`) with more than one level in its trials."""
    out: dict[str, list[str]] = {}
    for name, group in _ok(trials).groupby("experiment", sort=True):
        out[str(name)] = [
            f for f in factors if f in group and f not in NOT_FACTORS and group[f].nunique() > 1
        ]
    return out


def _mean_ci(values: pd.Series) -> tuple[int, float, float, float]:
    from scipy import stats as sps

    x = pd.to_numeric(values, errors="coerce").dropna()
    n = len(x)
    if n == 0:
        return 0, math.nan, math.nan, math.nan
    mean = float(x.mean())
    if n < 2:
        return n, mean, math.nan, math.nan
    half = float(sps.t.ppf(0.975, n - 1)) * float(x.std(ddof=1)) / math.sqrt(n)
    return n, mean, mean - half, mean + half


def sweep_table(trials: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """One row per experiment × varied factor × level × metric (values in ms)."""
    ok = _ok(trials)
    rows = []
    for experiment, names in varied_factors(trials, factors).items():
        group = ok[ok["experiment"].astype(str) == experiment]
        for factor in names:
            for level, part in group.groupby(factor, sort=True):
                for metric, (_label, scale) in SWEEP_METRICS.items():
                    if metric not in part or part[metric].isna().all():
                        continue
                    n, mean, lo, hi = _mean_ci(pd.to_numeric(part[metric], errors="coerce") * scale)
                    rows.append([experiment, factor, level, metric, n, mean, lo, hi])
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)


def repetitions_needed(sd: float, half_width: float, confidence: float = 0.95) -> int | None:
    """Smallest n >= 2 with t(1 − α/2, n − 1) · sd / √n <= half_width (None if sd unknown)."""
    from scipy import stats as sps

    if sd is None or math.isnan(sd):
        return None
    if sd == 0:
        return 2
    n = 2
    while float(sps.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n) > half_width:
        n += 1
        if n > 100_000:
            return None
    return n


def power_table(trials: pd.DataFrame, factors: list[str] | None = None) -> pd.DataFrame:
    """Per experiment, cell (its levels of the factors it varies) and metric (DT gap-based,
    breach window): n, SD and the repetitions a 10/20/50 ms 95 % CI half-width needs."""
    ok = _ok(trials)
    varied = varied_factors(trials, factors or [])
    rows = []
    for experiment, group in ok.groupby("experiment", sort=True):
        names = varied.get(str(experiment), [])
        cells = group.groupby(names, sort=True) if names else [((), group)]
        for key, cell in cells:
            key = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{n}={v}" for n, v in zip(names, key, strict=True)) or "all"
            for metric, scale in POWER_METRICS.items():
                if metric not in cell:
                    continue
                x = pd.to_numeric(cell[metric], errors="coerce").dropna() * scale
                if len(x) < 2:
                    continue
                sd = float(x.std(ddof=1))
                row = {"experiment": experiment, "cell": label, "metric": metric, "n": len(x),
                       "sd_ms": sd}  # fmt: skip
                for h in HALF_WIDTHS_MS:
                    row[f"reps_for_{h}ms"] = repetitions_needed(sd, h)
                rows.append(row)
    columns = ["experiment", "cell", "metric", "n", "sd_ms",
               *[f"reps_for_{h}ms" for h in HALF_WIDTHS_MS]]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def sweep_figure(table: pd.DataFrame, out_png: str | Path) -> None:
    """Mean ± 95 % CI per level, one row of panels per experiment × varied factor."""
    from migfw.measure.figures import _figure, _save

    metrics = [m for m in SWEEP_METRICS if m in set(table["metric"])]
    panels = table[["experiment", "factor"]].drop_duplicates().values.tolist()
    if not panels or not metrics:
        fig = _figure(figsize=(6, 1.5))
        ax = fig.subplots()
        ax.text(0.5, 0.5, "no experiment varies a factor", ha="center", va="center")
        ax.set_axis_off()
        _save(fig, out_png)
        return
    fig = _figure(figsize=(3.2 * len(metrics), 2.6 * len(panels)))
    axes = fig.subplots(len(panels), len(metrics), squeeze=False)
    for r, (experiment, factor) in enumerate(panels):
        part = table[(table["experiment"] == experiment) & (table["factor"] == factor)]
        for c, metric in enumerate(metrics):
            ax = axes[r][c]
            rows = part[part["metric"] == metric]
            x = list(range(len(rows)))
            ax.errorbar(
                x,
                rows["mean"],
                yerr=[rows["mean"] - rows["ci_low"], rows["ci_high"] - rows["mean"]],
                fmt="o-",
                capsize=3,
                lw=1,
            )
            ax.set_xticks(x, [str(v) for v in rows["level"]], fontsize=7)
            ax.set_xlabel(f"{experiment}: {factor}", fontsize=7)
            if r == 0:
                ax.set_title(SWEEP_METRICS[metric][0], fontsize=8)
    fig.tight_layout()
    _save(fig, out_png)


def _read(path: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise MigfwError(f"{path}: cannot read trials table ({exc})") from None


def _cli(args: argparse.Namespace) -> int:
    trials = _read(args.trials)
    table = sweep_table(trials, args.factors)
    write_csv(args.table, table)
    write_csv(args.power, power_table(trials, args.factors))
    sweep_figure(table, args.figure)
    print(f"{len(table)} sweep rows -> {args.table}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sweeps", help="sweep table, power table and sweep figure")
    p.add_argument("trials", help="trials.csv")
    p.add_argument("--factors", nargs="*", default=[], help="factor columns to sweep over")
    p.add_argument("--table", required=True, help="sweep table CSV")
    p.add_argument("--power", required=True, help="power table CSV")
    p.add_argument("--figure", required=True, help="PNG; an SVG is written beside it")
    p.set_defaults(func=_cli)
