"""Cross-trial statistics: the thesis's estimators and better ones, side by side.

The thesis reported mean, variance, SD and a "95 % confidence interval" per probe
interval over 4 migrations: mean ± z·SD/√n with z = 1.96 and the sample SD. With n = 4
that interval is too narrow, so Student's t and a bootstrap interval are given beside it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

SUMMARY_COLUMNS = [
    "n",
    "mean",
    "var",
    "sd",
    "ci_z_low",
    "ci_z_high",
    "ci_t_low",
    "ci_t_high",
    "ci_boot_low",
    "ci_boot_high",
]


BOOTSTRAP_BATCH_VALUES = 1_000_000


def describe(
    values: Iterable[float],
    confidence: float = 0.95,
    resamples: int = 9999,
    seed: int = 0,
) -> dict[str, float]:
    """n, mean, sample variance/SD and three confidence intervals for the mean.

    ci_z: the thesis's normal interval (mean ± z·s/√n); ci_t: Student's t with n − 1
    degrees of freedom; ci_boot: percentile bootstrap of the mean (fixed seed, so reruns
    give the same numbers). NaN where n is too small for the quantity.
    """
    from scipy import stats as sps  # slow to import; only needed here

    x = np.asarray([v for v in values if v is not None and not _isnan(v)], dtype=float)
    n = int(x.size)
    out = dict.fromkeys(SUMMARY_COLUMNS, math.nan)
    out["n"] = n
    if n == 0:
        return out
    mean = float(x.mean())
    out["mean"] = mean
    if n < 2:
        return out
    var = float(x.var(ddof=1))
    sd = math.sqrt(var)
    se = sd / math.sqrt(n)
    z = float(sps.norm.ppf(0.5 + confidence / 2))
    t = float(sps.t.ppf(0.5 + confidence / 2, n - 1))
    out.update(
        var=var,
        sd=sd,
        ci_z_low=mean - z * se,
        ci_z_high=mean + z * se,
        ci_t_low=mean - t * se,
        ci_t_high=mean + t * se,
    )
    if np.ptp(x) == 0:  # every resample has the same mean
        out.update(ci_boot_low=mean, ci_boot_high=mean)
    else:
        boot = sps.bootstrap(
            (x,),
            resample_means,
            confidence_level=confidence,
            n_resamples=resamples,
            method="percentile",
            random_state=np.random.default_rng(seed),
            # Resamples in batches of <= ~1e6 values: memory stays flat in the number of
            # trials (1,000 trials x 9,999 resamples at once took ~150 MiB); same numbers.
            batch=max(1, BOOTSTRAP_BATCH_VALUES // len(x)),
        )
        out.update(
            ci_boot_low=float(boot.confidence_interval.low),
            ci_boot_high=float(boot.confidence_interval.high),
        )
    return out


def resample_means(sample: np.ndarray, axis: int = -1) -> np.ndarray:
    """The mean of each bootstrap resample, summed in one fixed order (value by value).

    np.mean's vectorised pairwise sum gave a bootstrap bound 1 ulp apart in a Slurm job and in
    a local run of the same code on the same data; element-wise additions in a fixed order
    give the same bits wherever they run, so a cluster's summary.csv equals a local one.
    """
    values = np.moveaxis(sample, axis, 0)
    total = np.zeros(values.shape[1:])
    for row in values:
        total += row
    return total / values.shape[0]


def summarize(
    trials: pd.DataFrame,
    metrics: Sequence[str],
    factors: Sequence[str] = ("interval_s",),
    confidence: float = 0.95,
    resamples: int = 9999,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per factor level × metric with the columns of `describe`."""
    missing = [f for f in factors if f not in trials.columns]
    if missing:
        from migfw.errors import MigfwError

        raise MigfwError(
            f"analysis.factors names {missing}, which no trial has; "
            f"available: {', '.join(sorted(trials.columns))}"
        )
    rows = []
    groups = trials.groupby(list(factors), dropna=False, sort=True) if factors else [((), trials)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        for metric in metrics:
            if metric not in group.columns:
                continue
            values = pd.to_numeric(group[metric], errors="coerce").dropna().tolist()
            if not values:
                continue
            row = dict(zip(factors, key, strict=True))
            row["metric"] = metric
            row.update(describe(values, confidence, resamples, seed))
            rows.append(row)
    return pd.DataFrame(rows, columns=[*factors, "metric", *SUMMARY_COLUMNS])


def _isnan(value: object) -> bool:
    try:
        return math.isnan(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True


# ------------------------------------------------------------------ flagged trials
# A flag (trials.csv `flags`, ";"-separated) says a trial's numbers include something that was
# not the migration: a slow migration, a stepped clock, a guest that went silent, someone
# else's probes. The statistics tables say how many flagged trials each row includes
# (`flagged_trials`, `flags`: name:count) and how many `analysis.exclude_flags` left out of it
# (`excluded_flagged`).
FLAG_COLUMNS = ["flagged_trials", "flags", "excluded_flagged"]


def split_flags(value: object) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [f for f in str(value).split(";") if f]


def exclude_flagged(
    trials: pd.DataFrame, exclude: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials kept, trials left out): a trial carrying any flag in `exclude` is left out."""
    if not exclude or "flags" not in trials:
        return trials, trials.iloc[0:0]
    wanted = set(exclude)
    hit = trials["flags"].map(lambda v: bool(wanted & set(split_flags(v))))
    return trials[~hit], trials[hit]


def flag_counts(flags: pd.Series) -> tuple[int, str]:
    """How many of these trials carry a flag, and "name:count;…" of the flags."""
    lists = [split_flags(v) for v in flags]
    counts: dict[str, int] = {}
    for names in lists:
        for name in dict.fromkeys(names):
            counts[name] = counts.get(name, 0) + 1
    return sum(1 for names in lists if names), ";".join(
        f"{k}:{v}" for k, v in sorted(counts.items())
    )


def with_flag_columns(
    table: pd.DataFrame, kept: pd.DataFrame, excluded: pd.DataFrame, keys: Sequence[str]
) -> pd.DataFrame:
    """`table` (one row per `keys` cell) with FLAG_COLUMNS counted over the trials of each
    cell: `kept` (what the row's statistics were computed from) and `excluded`."""
    keys = [k for k in keys if k in table.columns]
    out = table.copy()

    def cells(frame: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
        if frame.empty or any(k not in frame.columns for k in keys):
            return {}
        if not keys:
            return {(): frame}
        grouped = frame.groupby(keys, dropna=False, sort=False)
        return {(k if isinstance(k, tuple) else (k,)): g for k, g in grouped}

    def norm(key: tuple) -> tuple:
        return tuple("" if pd.isna(v) else str(v) for v in key)

    kept_cells = {norm(k): g for k, g in cells(kept).items()}
    excluded_cells = {norm(k): g for k, g in cells(excluded).items()}
    flagged, names, left_out = [], [], []
    for _, row in out.iterrows():
        key = norm(tuple(row[k] for k in keys))
        group = kept_cells.get(key)
        n, text = flag_counts(group["flags"]) if group is not None and "flags" in group else (0, "")
        flagged.append(n)
        names.append(text)
        left_out.append(len(excluded_cells.get(key, ())))
    out["flagged_trials"], out["flags"], out["excluded_flagged"] = flagged, names, left_out
    return out


def add_exclude_flags_argument(parser) -> None:  # noqa: ANN001 - an argparse parser
    """`--exclude-flags FLAG…` (analysis.exclude_flags) for a statistics command."""
    parser.add_argument("--exclude-flags", nargs="*", default=[], metavar="FLAG",
                        help="leave out trials carrying any of these flags")  # fmt: skip
