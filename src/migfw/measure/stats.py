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
