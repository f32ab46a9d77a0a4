"""Sweeps: how downtime and total migration time respond to each factor an experiment varies,
and how many repetitions a given precision needs.

- `sweep_table`: per experiment, per varied factor and level, n / mean / Student-t 95 % CI of
  DT (gap-based, `dt_gap_s` in ms), TMT as the hypervisor saw it (`hv_total_ms`) and as the
  migrate call took (`tmt_meta_s` in ms), the hypervisor's pause, resume → first reply, and
  the attack-window metric `breach_window_ms` where trials have it, and the dirty rate QEMU
  measured (`hv_dirty_rate_mibps`, MiB/s: the one value not in ms).
- `power_table`: per experiment, cell (its levels of the factors it varies) and metric, the
  sample SD over the cell's successful trials and the repetitions needed for a 95 % CI
  half-width of 10, 20 and 50 ms: the smallest n with t(0.975, n − 1) · s / √n <= h (s taken
  as known: a planning figure, not a guarantee).
- `difference_power_table`: per experiment, metric and pair of cells that differ in one
  factor's level (e.g. placement vm vs vmm-agent): the pooled SD of the two cells and the
  repetitions per cell a two-sided two-sample t-test needs to detect the observed difference
  and differences of 10, 20, 50 and 100 ms at alpha 0.05 with power 0.8 (exact power from
  the noncentral t distribution, as G*Power computes it).
- `sweep_figure`: one panel per varied factor × metric, mean with its CI per level; where an
  experiment varies two factors, one line per level of the other (e.g. DT against dirty rate,
  one line per algorithm).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Collection, Sequence
from pathlib import Path

import pandas as pd

from migfw.errors import MigfwError
from migfw.io import write_csv
from migfw.measure.stats import add_exclude_flags_argument

# metric column → (label, scale to ms)
SWEEP_METRICS = {
    "dt_gap_s": ("DT, gap-based (ms)", 1000.0),
    "hv_total_ms": ("TMT, hypervisor (ms)", 1.0),
    "tmt_meta_s": ("TMT, migrate call (ms)", 1000.0),
    "hv_pause_ms": ("pause, hypervisor events (ms)", 1.0),
    "resume_to_first_reply_ms": ("resume → first reply (ms)", 1.0),
    "breach_window_ms": ("breach window (ms)", 1.0),
    # Not a time: the dirty rate QEMU measured, to set beside the rate the guest was asked for.
    "hv_dirty_rate_mibps": ("dirty rate QEMU saw (MiB/s)", 1.0),
}
POWER_METRICS = {"dt_gap_s": 1000.0, "breach_window_ms": 1.0}
HALF_WIDTHS_MS = (10, 20, 50)
NOT_FACTORS = {"experiment", "trial_id", "repetition", "status", "failure", "direction"}
DIFFERENCES_MS = (10, 20, 50, 100)
ALPHA, POWER = 0.05, 0.8
# `by`/`by_level`: the other factor held at one level (empty: pooled over the other factors).
SWEEP_COLUMNS = ["experiment", "factor", "level", "by", "by_level", "metric", "n", "mean",
                 "ci_low", "ci_high", "flagged_trials", "flags", "excluded_flagged"]  # fmt: skip


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


def sweep_table(
    trials: pd.DataFrame, factors: list[str], excluded: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per experiment × varied factor × level × metric (values in ms), pooled over
    the experiment's other factors (`by` empty); where it varies exactly two factors, also one
    row per level of the other (`by`, `by_level`): how a metric responds to one factor under
    each level of the other. Each row counts the flagged trials in its cell and those
    `excluded` (left out by analysis.exclude_flags) from it."""
    from migfw.measure.stats import flag_counts

    ok = _ok(trials)
    left_out = _ok(excluded) if excluded is not None else ok.iloc[0:0]
    rows = []

    def add(experiment: str, factor: str, part: pd.DataFrame, by: str, by_level) -> None:
        for level, cell in part.groupby(factor, sort=True):
            flagged, names = flag_counts(cell["flags"]) if "flags" in cell else (0, "")
            out = left_out[left_out["experiment"].astype(str) == experiment]
            out = out[out[factor] == level] if factor in out else out.iloc[0:0]
            if by and by in out:
                out = out[out[by] == by_level]
            for metric, (_label, scale) in SWEEP_METRICS.items():
                if metric not in cell or cell[metric].isna().all():
                    continue
                n, mean, lo, hi = _mean_ci(pd.to_numeric(cell[metric], errors="coerce") * scale)
                rows.append([experiment, factor, level, by, by_level, metric, n, mean, lo, hi,
                             flagged, names, len(out)])  # fmt: skip

    for experiment, names in varied_factors(trials, factors).items():
        group = ok[ok["experiment"].astype(str) == experiment]
        for factor in names:
            add(experiment, factor, group, "", "")
        if len(names) == 2:
            for factor, other in (names, names[::-1]):
                for by_level, part in group.groupby(other, sort=True):
                    add(experiment, factor, part, other, by_level)
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


def two_sample_power(n: int, effect: float, alpha: float = ALPHA) -> float:
    """Power of a two-sided two-sample t-test with n per group for a standardised difference
    `effect` (Cohen's d = difference / pooled SD): P(|T| > t(1 − α/2, 2n − 2)) with T
    noncentral t, df 2n − 2, noncentrality d·√(n/2)."""
    from scipy import stats as sps

    df = 2 * n - 2
    ncp = effect * math.sqrt(n / 2)
    crit = float(sps.t.ppf(1 - alpha / 2, df))
    return float(sps.nct.sf(crit, df, ncp) + sps.nct.cdf(-crit, df, ncp))


def reps_to_detect(
    difference: float, sd: float, alpha: float = ALPHA, power: float = POWER
) -> int | None:
    """Smallest n per group (>= 2) at which a two-sided two-sample t-test at `alpha` detects
    `difference` with at least `power`, given the pooled SD `sd` (same units). None when
    the SD is unknown, the difference is zero, or more than 100,000 would be needed."""
    if sd is None or difference is None or math.isnan(sd) or math.isnan(difference):
        return None
    difference = abs(difference)
    if difference == 0:
        return None
    if sd == 0:
        return 2  # no spread: any difference shows
    effect = difference / sd
    hi = 2
    while two_sample_power(hi, effect, alpha) < power:  # power grows with n: double, bisect
        hi *= 2
        if hi > 100_000:
            return None
    lo = max(2, hi // 2)
    while lo < hi:
        mid = (lo + hi) // 2
        if two_sample_power(mid, effect, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return lo


DIFFERENCE_COLUMNS = [
    "experiment", "metric", "factor", "level_a", "level_b", "held", "n_a", "n_b", "mean_a_ms",
    "mean_b_ms", "observed_diff_ms", "pooled_sd_ms", "reps_for_observed",
    *[f"reps_for_diff_{d}ms" for d in DIFFERENCES_MS],
]  # fmt: skip


def _cell_label(names: list[str], key: tuple) -> str:
    return ", ".join(f"{n}={v}" for n, v in zip(names, key, strict=True))


def difference_power_table(trials: pd.DataFrame, factors: list[str] | None = None) -> pd.DataFrame:
    """Per experiment, metric (DT gap-based, breach window) and pair of cells differing in one
    varied factor's level (the others `held`): the pooled SD of the two cells and the
    repetitions per cell to detect the observed and 10/20/50/100 ms differences (two-sided
    two-sample t, α 0.05, power 0.8). Cells with fewer than 2 successful trials are left out.
    """
    from itertools import combinations

    ok = _ok(trials)
    varied = varied_factors(trials, factors or [])
    rows = []
    for experiment, group in ok.groupby("experiment", sort=True):
        names = varied.get(str(experiment), [])
        if not names:
            continue
        for metric, scale in POWER_METRICS.items():
            if metric not in group:
                continue
            values = group.assign(_x=pd.to_numeric(group[metric], errors="coerce") * scale)
            cells = {
                (key if isinstance(key, tuple) else (key,)): cell["_x"].dropna()
                for key, cell in values.groupby(names, sort=True)
            }
            cells = {k: x for k, x in cells.items() if len(x) >= 2}
            for (ka, xa), (kb, xb) in combinations(cells.items(), 2):
                differ = [i for i in range(len(names)) if ka[i] != kb[i]]
                if len(differ) != 1:
                    continue  # compare one factor at a time
                i = differ[0]
                held = [j for j in range(len(names)) if j != i]
                na, nb = len(xa), len(xb)
                pooled = math.sqrt(
                    ((na - 1) * float(xa.var(ddof=1)) + (nb - 1) * float(xb.var(ddof=1)))
                    / (na + nb - 2)
                )
                diff = float(xb.mean() - xa.mean())
                row = {
                    "experiment": experiment, "metric": metric, "factor": names[i],
                    "level_a": ka[i], "level_b": kb[i],
                    "held": _cell_label([names[j] for j in held], tuple(ka[j] for j in held)),
                    "n_a": na, "n_b": nb, "mean_a_ms": float(xa.mean()),
                    "mean_b_ms": float(xb.mean()), "observed_diff_ms": diff,
                    "pooled_sd_ms": pooled, "reps_for_observed": reps_to_detect(diff, pooled),
                }  # fmt: skip
                for d in DIFFERENCES_MS:
                    row[f"reps_for_diff_{d}ms"] = reps_to_detect(d, pooled)
                rows.append(row)
    out = pd.DataFrame(rows, columns=DIFFERENCE_COLUMNS)
    for column in ("reps_for_observed", *[f"reps_for_diff_{d}ms" for d in DIFFERENCES_MS]):
        out[column] = out[column].astype("Int64")  # None stays empty, numbers stay whole
    return out


def sweep_figure(
    table: pd.DataFrame, out_png: str | Path, trials: pd.DataFrame | None = None
) -> None:
    """Mean ± 95 % CI per level: one column of panels per experiment × varied factor, one row
    per metric. Where the table splits a factor by the experiment's other factor (`by`), one
    line per level of it (dodged sideways so the intervals stay apart) instead of the pooled
    line. With `trials`, every successful trial is drawn as a faint dot behind its mean. Times
    are on a log axis when every value is positive (one stalled trial of seconds and the
    usual hundreds of ms on one axis); a CI reaching below the axis is drawn to its floor.
    Metrics that are zero or empty throughout (e.g. no breach in a `vm`-only sweep) are left
    out of the figure (not of the table)."""
    from migfw.measure.figures import _figure, _save

    metrics = [
        m for m in SWEEP_METRICS if (table.loc[table["metric"] == m, "mean"].fillna(0) != 0).any()
    ]
    split = table[table["by"].fillna("").astype(str) != ""] if "by" in table else table.iloc[:0]
    pooled = table[~table.index.isin(split.index)]
    panels = [
        (e, f, "")
        for e, f in pooled[["experiment", "factor"]].drop_duplicates().values.tolist()
        if split[(split["experiment"] == e) & (split["factor"] == f)].empty
    ] + [tuple(p) for p in split[["experiment", "factor", "by"]].drop_duplicates().values]
    if not panels or not metrics:
        fig = _figure(figsize=(6, 1.5))
        ax = fig.subplots()
        ax.text(0.5, 0.5, "no experiment varies a factor", ha="center", va="center")
        ax.set_axis_off()
        _save(fig, out_png)
        return
    ok = _ok(trials) if trials is not None else None
    fig = _figure(figsize=(5.0 * len(panels), 2.3 * len(metrics)))
    axes = fig.subplots(len(metrics), len(panels), squeeze=False)
    colours = [f"C{i}" for i in range(10)]
    for c, (experiment, factor, by) in enumerate(panels):
        source = split if by else pooled
        part = source[(source["experiment"] == experiment) & (source["factor"] == factor)]
        if by:
            part = part[part["by"] == by]
        levels = sorted(part["level"].unique(), key=_sort_key)
        position = {level: i for i, level in enumerate(levels)}
        lines = sorted(part["by_level"].unique(), key=_sort_key) if by else [""]
        runs = None
        if ok is not None:
            runs = ok[ok["experiment"].astype(str) == str(experiment)]
        for r, metric in enumerate(metrics):
            ax = axes[r][c]
            label, scale = SWEEP_METRICS[metric]
            rows_all = part[part["metric"] == metric]
            values = rows_all["mean"].dropna()
            dots = pd.Series(dtype=float)
            if runs is not None and metric in runs:
                dots = pd.to_numeric(runs[metric], errors="coerce").dropna() * scale
            log = bool(len(values)) and (values > 0).all() and (dots > 0).all()
            floor = min([*values, *dots]) / 2 if log else None
            for k, line in enumerate(lines):
                rows = rows_all[rows_all["by_level"] == line] if by else rows_all
                rows = rows.sort_values("level", key=lambda s: s.map(position))
                dodge = (k - (len(lines) - 1) / 2) * 0.1
                colour = colours[k % len(colours)]
                if runs is not None and metric in runs:
                    mine = runs[runs[by] == line] if by else runs
                    for level, cell in mine.groupby(factor):
                        if level not in position:
                            continue
                        y = pd.to_numeric(cell[metric], errors="coerce").dropna() * scale
                        ax.plot([position[level] + dodge] * len(y), y, ".", color=colour,
                                alpha=0.5, ms=4)  # fmt: skip
                x = [position[v] + dodge for v in rows["level"]]
                low = rows["ci_low"].fillna(rows["mean"])
                high = rows["ci_high"].fillna(rows["mean"])
                if log:
                    low = low.clip(lower=floor)
                ax.errorbar(
                    x,
                    rows["mean"],
                    yerr=[rows["mean"] - low, high - rows["mean"]],
                    fmt="o-",
                    color=colour,
                    capsize=3,
                    lw=1,
                    ms=4,
                    label=f"{by}={line}" if by else None,
                )
            if log:
                ax.set_yscale("log")
                ax.set_ylim(bottom=floor)
            ax.set_xticks(range(len(levels)), [str(v) for v in levels], fontsize=7)
            ax.set_xlabel(f"{experiment}: {factor}", fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_ylabel(label + (" (log)" if log else ""), fontsize=7)
        if by:
            axes[0][c].legend(fontsize=6, loc="upper left", ncols=2)
    fig.suptitle("Mean and Student-t 95 % CI per level (dots: single trials)", fontsize=9)
    fig.tight_layout()
    _save(fig, out_png)


def _sort_key(value):
    """Numbers by value, words alphabetically (levels of one factor are all one kind)."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def sweep_columns(factors: Collection[str]) -> frozenset[str]:
    """migfw.measure.sweeps: its metrics and the factors it sweeps."""
    from migfw.measure.trialtable import KEYS

    return KEYS | set(SWEEP_METRICS) | set(POWER_METRICS) | set(factors)


def _read(path: str | Path, factors: list[str]) -> pd.DataFrame:
    from migfw.measure.trialtable import read_trials

    try:
        return read_trials(path, sweep_columns(factors))
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise MigfwError(f"{path}: cannot read trials table ({exc})") from None


def write_sweeps(
    trials: str | Path,
    table: str | Path,
    power: str | Path,
    figure: str | Path,
    factors: Sequence[str] = (),
    power_difference: str | Path | None = None,
    exclude_flags: Sequence[str] = (),
) -> None:
    """Rule sweeps: trials.csv -> the sweep table, the power tables and the sweep figure
    (PNG at `figure`, an SVG beside it), over the `factors` an experiment varies."""
    from migfw.measure.stats import exclude_flagged

    factors = list(factors)
    kept, excluded = exclude_flagged(_read(trials, factors), list(exclude_flags))
    sweep = sweep_table(kept, factors, excluded)
    write_csv(table, sweep)
    write_csv(power, power_table(kept, factors))
    if power_difference:
        write_csv(power_difference, difference_power_table(kept, factors))
    sweep_figure(sweep, figure, kept)
    print(f"{len(sweep)} sweep rows -> {table}")


def _cli(args: argparse.Namespace) -> int:
    write_sweeps(args.trials, args.table, args.power, args.figure, args.factors,
                 args.power_difference, args.exclude_flags)  # fmt: skip
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sweeps", help="sweep table, power table and sweep figure")
    p.add_argument("trials", help="trials.csv")
    p.add_argument("--factors", nargs="*", default=[], help="factor columns to sweep over")
    p.add_argument("--table", required=True, help="sweep table CSV")
    p.add_argument("--power", required=True, help="power table CSV (CI half-widths)")
    p.add_argument(
        "--power-difference", help="power table CSV (differences between cells; optional)"
    )
    p.add_argument("--figure", required=True, help="PNG; an SVG is written beside it")
    add_exclude_flags_argument(p)
    p.set_defaults(func=_cli)
