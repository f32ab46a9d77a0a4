"""The thesis's Table 11, recomputed from its own packet counts, with an audit.

Every printed cell is compared with the value recomputed from PS and PR with the thesis's
formulas (TMT = PS·I, DT = PL·I, UT = TMT − DT) and its stated statistics (sample SD, 95 %
CI = mean ± 1.96·SD/√n). A cell disagrees when the difference exceeds half a unit of its
last printed digit. For each disagreement the audit names the alternative computations that
do reproduce the printed number (truncation, population variance, summary taken from the
printed cells, CI = mean ± SD, …), so a reader can see what probably happened.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from migfw.errors import MigfwError
from migfw.io import write_csv
from migfw.measure.stats import describe

ROW_METRICS = ["pl", "tmt_s", "dt_s", "ut_s"]
SUMMARY_METRICS = ["dt_s", "tmt_s", "ut_s"]
SUMMARY_STATS = ["mean", "var", "sd", "ci_low", "ci_high"]
Z95 = 1.96  # the thesis's z for a 95 % interval


def read_printed(path: str | Path, required: list[str]) -> pd.DataFrame:
    """Read a transcription CSV (lines starting with # are provenance notes), values as text."""
    try:
        frame = pd.read_csv(path, comment="#", dtype=str, skipinitialspace=True)
    except FileNotFoundError:
        raise MigfwError(f"{path}: file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise MigfwError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise MigfwError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def recompute_rows(printed: pd.DataFrame) -> pd.DataFrame:
    """Recompute every per-VM cell from PS, PR and the interval (the thesis's estimators)."""
    interval = printed["interval_s"].astype(float)
    ps = printed["ps"].astype(int)
    pr = printed["pr"].astype(int)
    out = pd.DataFrame({"interval_s": interval, "vm": printed["vm"], "ps": ps, "pr": pr})
    out["pl"] = ps - pr
    out["tmt_s"] = ps * interval
    out["dt_s"] = out["pl"] * interval
    out["ut_s"] = out["tmt_s"] - out["dt_s"]
    out["ut_pct"] = 100 * out["ut_s"] / out["tmt_s"]
    for metric in ROW_METRICS:
        out[f"{metric}_printed"] = printed[metric]
    return out


def thesis_summary(values: np.ndarray, ddof: int = 1, ci: str = "z") -> dict[str, float]:
    """Mean, variance, SD and CI as the thesis describes them (or a named variant)."""
    mean = float(np.mean(values))
    var = float(np.var(values, ddof=ddof))
    sd = math.sqrt(var)
    half = {"z": Z95 * sd / math.sqrt(len(values)), "sd": sd}[ci]
    return {"mean": mean, "var": var, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}


def _decimals(text: str) -> int:
    exponent = Decimal(text.strip()).as_tuple().exponent
    return max(0, -int(exponent))


def _truncate(value: float, decimals: int) -> float:
    scale = 10**decimals
    return math.trunc(value * scale + 1e-9 * math.copysign(1, value)) / scale


def _explain(printed: float, decimals: int, candidates: dict[str, float]) -> str:
    """Names of the candidate computations that reproduce the printed value."""
    tolerance = 0.5 * 10**-decimals + 1e-9
    hits = []
    for label, value in candidates.items():
        if math.isnan(value):
            continue
        if abs(round(value, decimals) - printed) <= 1e-9 or abs(value - printed) <= tolerance:
            hits.append(label)
        elif abs(_truncate(value, decimals) - printed) <= 1e-9:
            hits.append(f"{label}, truncated instead of rounded")
    if not hits:
        return "no simple computation reproduces the printed value"
    return "reproduced by: " + "; ".join(hits[:3])


def audit_table11(rows: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """Printed vs recomputed for every cell and summary value of Table 11."""
    records = []

    def add(table, interval, row, column, text, recomputed, candidates):
        printed = float(text)
        decimals = _decimals(text)
        tolerance = 0.5 * 10**-decimals
        difference = printed - recomputed
        agrees = abs(difference) <= tolerance + 1e-9
        records.append(
            {
                "table": table,
                "interval_s": interval,
                "row": row,
                "column": column,
                "printed": text,
                "recomputed": round(recomputed, 6),
                "difference": round(difference, 6),
                "tolerance": tolerance,
                "agrees": agrees,
                "explanation": "" if agrees else _explain(printed, decimals, candidates),
            }
        )

    for _, r in rows.iterrows():
        interval = r["interval_s"]
        printed_cells = {m: float(r[f"{m}_printed"]) for m in ROW_METRICS}
        for metric in ROW_METRICS:
            candidates = {"recomputed from PS and PR": float(r[metric])}
            if metric == "tmt_s":
                candidates["PR·I (packets received, not sent)"] = r["pr"] * interval
            if metric == "ut_s":
                candidates["printed TMT − printed DT"] = (
                    printed_cells["tmt_s"] - printed_cells["dt_s"]
                )
            add(
                "table11",
                interval,
                r["vm"],
                metric,
                r[f"{metric}_printed"],
                float(r[metric]),
                candidates,
            )

    variants: dict[str, Callable[[np.ndarray], dict[str, float]]] = {
        "the stated method": lambda v: thesis_summary(v),
        "population variance (divides by n)": lambda v: thesis_summary(v, ddof=0),
        "CI = mean ± SD": lambda v: thesis_summary(v, ci="sd"),
        "population variance and CI = mean ± SD": lambda v: thesis_summary(v, ddof=0, ci="sd"),
    }
    for _, s in summary.iterrows():
        interval = float(s["interval_s"])
        metric, stat = s["metric"], s["statistic"]
        group = rows[np.isclose(rows["interval_s"], interval)]
        if group.empty:
            raise MigfwError(f"summary names interval {interval} s, which has no rows in Table 11")
        from_counts = group[metric].to_numpy(float)
        from_printed = group[f"{metric}_printed"].astype(float).to_numpy()
        candidates = {}
        for base_label, values in (("PS/PR", from_counts), ("the printed cells", from_printed)):
            for variant_label, fn in variants.items():
                candidates[f"{variant_label} on {base_label}"] = fn(values)[stat]
        recomputed = thesis_summary(from_counts)[stat]
        add("table11_summary", interval, metric, stat, s["printed"], recomputed, candidates)
    return pd.DataFrame.from_records(records)


def reproduce_table11(
    table_path: str | Path,
    summary_path: str | Path,
    out_dir: str | Path,
    confidence: float = 0.95,
    resamples: int = 9999,
    seed: int = 0,
    outputs: tuple[str | Path, str | Path, str | Path] | None = None,
) -> pd.DataFrame:
    """Write the recomputed table, its summary and the audit (`outputs`, or the default
    names in `out_dir`); return the audit."""
    printed = read_printed(table_path, ["interval_s", "vm", "ps", "pr", *ROW_METRICS])
    summary = read_printed(summary_path, ["interval_s", "metric", "statistic", "printed"])
    try:
        rows = recompute_rows(printed)
    except ValueError as exc:
        raise MigfwError(
            f"{table_path}: a PS, PR or interval cell is not a number ({exc})"
        ) from None
    bad = summary[
        ~summary["metric"].isin(SUMMARY_METRICS) | ~summary["statistic"].isin(SUMMARY_STATS)
    ]
    if not bad.empty:
        first = bad.iloc[0]
        raise MigfwError(
            f"{summary_path}: unknown metric/statistic {first['metric']}/{first['statistic']}; "
            f"metrics: {', '.join(SUMMARY_METRICS)}; statistics: {', '.join(SUMMARY_STATS)}"
        )
    audit = audit_table11(rows, summary)

    stats_rows = []
    for interval, group in rows.groupby("interval_s", sort=False):
        for metric in [*SUMMARY_METRICS, "ut_pct"]:
            row = {"interval_s": interval, "metric": metric}
            row.update(describe(group[metric], confidence, resamples, seed))
            stats_rows.append(row)
    table_out, summary_out, audit_out = output_paths(out_dir, outputs)
    write_csv(table_out, rows.round(6))
    write_csv(summary_out, pd.DataFrame(stats_rows).round(6))
    write_csv(audit_out, audit)
    return audit


def output_paths(
    out_dir: str | Path, outputs: tuple[str | Path, str | Path, str | Path] | None = None
) -> tuple[Path, Path, Path]:
    """(table, summary, audit): the files named, or the default names inside `out_dir`."""
    if outputs:
        return tuple(Path(p) for p in outputs)  # type: ignore[return-value]
    out = Path(out_dir)
    return out / "table11.csv", out / "table11_summary.csv", out / "audit.csv"


def write_table11(
    table: str | Path,
    summary: str | Path,
    out_table: str | Path,
    out_summary: str | Path,
    out_audit: str | Path,
    confidence: float = 0.95,
    resamples: int = 9999,
    seed: int = 0,
) -> None:
    """Rule paper_table11: the thesis's printed Table 11 (`table`, `summary`) recomputed from
    PS/PR into `out_table` and `out_summary`, every printed value audited in `out_audit`."""
    outputs = (out_table, out_summary, out_audit)
    audit = reproduce_table11(table, summary, Path(out_table).parent, confidence, resamples,
                              seed, outputs=outputs)  # fmt: skip
    _print_audit(audit)


def _print_audit(audit: pd.DataFrame) -> None:
    flagged = audit[~audit["agrees"]]
    print(f"Table 11: {len(audit)} printed values checked, {len(flagged)} disagree")
    for _, r in flagged.iterrows():
        print(
            f"  {r['interval_s']:g} s {r['row']} {r['column']}: printed {r['printed']}, "
            f"recomputed {r['recomputed']:.4g} — {r['explanation']}"
        )


def _cli(args: argparse.Namespace) -> int:
    named = (args.out_table, args.out_summary, args.out_audit)
    if any(named) and not all(named):
        raise MigfwError("--out-table, --out-summary and --out-audit go together")
    audit = reproduce_table11(
        args.table,
        args.summary,
        args.out,
        args.confidence,
        args.resamples,
        args.seed,
        outputs=named if all(named) else None,
    )
    _print_audit(audit)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "paper", help="recompute the thesis's Table 11 from its PS/PR counts and audit it"
    )
    p.add_argument("--table", default="resources/paper/table11.csv")
    p.add_argument("--summary", default="resources/paper/table11_summary.csv")
    p.add_argument("--out", default="results/paper", help="folder for the three files")
    p.add_argument("--out-table", help="recomputed Table 11 (instead of OUT/table11.csv)")
    p.add_argument("--out-summary", help="its summary (instead of OUT/table11_summary.csv)")
    p.add_argument("--out-audit", help="the audit (instead of OUT/audit.csv)")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--resamples", type=int, default=9999)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cli)
