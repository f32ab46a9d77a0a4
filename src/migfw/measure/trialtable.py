"""trials.csv read for one reader: only the columns that reader looks at.

A 10,000-trial table has ~190 columns (most of them attack and flow columns). Every analysis
job runs inside Snakemake's process (migfw.cli.run_in_process), so a figure that read the whole
table added ~50-75 MiB at 10,000 trials (~10 at 1,000) to the run's peak (docs/scale.md).
pandas infers each column's dtype from that column alone, so a reader given a subset sees the
same values and dtypes as in the whole table; a column a reader asks for but the table lacks
stays absent, as before (its `"x" in trials` checks and KeyErrors are unchanged).

Each reader names what its code reads (UPTIME and ESTIMATORS here for the figures,
migfw.measure.sweeps.sweep_columns, migfw.measure.attackstats.attack_columns); a set that
missed a column would change that reader's output, which tests/test_trialtable.py compares
against the whole-table output.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import pandas as pd

from migfw.trials.contract import KNOWN_FACTORS

# Every reader below keys trials by these.
KEYS = frozenset({"trial_id", "experiment", "status", "flags", "placement", *KNOWN_FACTORS})

# migfw.measure.figures.uptime_figure
UPTIME = KEYS | {"tmt_s", "ut_s", "ut_pct"}
# migfw.measure.figures.estimators_figure
ESTIMATORS = KEYS | {
    "dt_s", "dt_gap_s", "dt_gap_lo_s", "dt_gap_hi_s", "dt_rxgap_s", "hv_downtime_ms",
}  # fmt: skip


# A set of column names, or a function of the header (and the file) giving them.
Wanted = Collection[str] | Callable[[Sequence[str], str | Path], Collection[str]]


def read_trials(path: str | Path, wanted: Wanted | None = None) -> pd.DataFrame:
    """trials.csv at `path` with only the columns `wanted` names; every column when `wanted`
    is None, or when the header repeats a name or names none of them (the reader's own error
    then reads as it did)."""
    if wanted is None:
        return pd.read_csv(path)
    header = list(pd.read_csv(path, nrows=0).columns)
    if len(set(header)) != len(header):
        return pd.read_csv(path)
    names = set(wanted(header, path) if callable(wanted) else wanted)
    used = [c for c in header if c in names]
    if not used:
        return pd.read_csv(path)
    return pd.read_csv(path, usecols=used)
