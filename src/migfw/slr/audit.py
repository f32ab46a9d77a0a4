"""Audit: every number the thesis printed against the value recomputed from the records.

Two kinds of rows: `recomputed` (printed vs what this pipeline computes from the inputs)
and `arithmetic` (a printed number vs the sum/ratio of other printed numbers, which needs
no reconstruction and therefore shows the thesis's own inconsistencies).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from migfw.errors import MigfwError
from migfw.io import read_yaml
from migfw.slr.tables import QA_COLUMNS

COLUMNS = ["table", "item", "kind", "printed", "recomputed", "precision", "ok", "note"]


def load_printed(path: str | Path) -> dict:
    path = Path(path)
    data = read_yaml(path, "printed-values file")
    if not isinstance(data, dict):
        raise MigfwError(f"{path}: expected a mapping with table3, table6, table10, headline")
    for key, kind in (("table3", list), ("table6", dict), ("table10", list), ("headline", list)):
        if key in data and not isinstance(data[key], kind):
            raise MigfwError(f"{path}: {key}: expected a {kind.__name__}")
    t6 = data.get("table6")
    if t6 is not None:
        years = t6.get("years")
        if not isinstance(years, list):
            raise MigfwError(f"{path}: table6.years: expected a list")
        for i, row in enumerate(t6.get("rows", []) + t6.get("totals", []), 1):
            if not isinstance(row, dict) or len(row.get("values", [])) != len(years):
                raise MigfwError(
                    f"{path}: table6 row {i}: needs {len(years)} values (one per year)"
                )
    return data


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip().rstrip("%"))
    except ValueError:
        return None


def _precision(value: Any) -> int | None:
    """Decimals a printed string shows ("3.6" -> 1, "68" -> 0); None = exact (YAML number)."""
    if isinstance(value, str):
        text = value.strip().rstrip("%")
        return len(text.split(".", 1)[1]) if "." in text else 0
    return None


def compare(printed: Any, recomputed: Any) -> tuple[bool | None, str]:
    """ok (or None when the printed value is not a number) and the tolerance applied."""
    p, r = _number(printed), _number(recomputed)
    if p is None:
        return None, "printed value is not a number"
    if r is None or math.isnan(r):
        return False, "nothing to recompute it from"
    digits = _precision(printed)
    if digits is None:
        return abs(p - r) < 1e-9, "exact"
    return abs(p - r) <= 0.5 * 10**-digits + 1e-9, f"rounded to {digits} decimal(s)"


def _tidy(value: Any) -> Any:
    """Integers without ".0" and long floats rounded, so audit.csv reads like the thesis."""
    if isinstance(value, bool) or value is None:
        return value
    number = _number(value)
    if number is None or math.isnan(number):
        return "" if number is not None else value
    return str(int(number)) if number.is_integer() else f"{number:.4g}"


class Audit:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, table: str, item: str, kind: str, printed: Any, recomputed: Any, note=""):
        ok, precision = compare(printed, recomputed)
        recomputed = _tidy(recomputed)
        self.rows.append(
            {
                "table": table,
                "item": item,
                "kind": kind,
                "printed": printed,
                "recomputed": recomputed,
                "precision": precision,
                "ok": ok,
                "note": note,
            }
        )

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=COLUMNS)


def audit_table3(audit: Audit, printed: list[dict], t3: pd.DataFrame) -> None:
    fields = ["papers_at_start", "added_papers", "total_papers", "selected"]
    recomputed = {row["stage"]: row for row in t3.to_dict("records")}
    for row in printed:
        rec = recomputed.get(row.get("stage"), {})
        for f in fields:
            if f in row:
                audit.add("Table 3", f"{row['stage']} / {f}", "recomputed", row[f], rec.get(f))
        nums = [_number(row.get(f)) for f in fields[:3]]
        if None not in nums:
            audit.add(
                "Table 3",
                f"{row['stage']} / total_papers = start + added",
                "arithmetic",
                row["total_papers"],
                nums[0] + nums[1],
            )
    for prev, nxt in zip(printed, printed[1:], strict=False):
        if _number(prev.get("selected")) is not None:
            audit.add(
                "Table 3",
                f"{nxt['stage']} / papers_at_start = previous stage selected",
                "arithmetic",
                nxt.get("papers_at_start"),
                _number(prev["selected"]),
            )


def audit_table6(audit: Audit, printed: dict, t6: pd.DataFrame) -> None:
    years = [str(y) for y in printed["years"]]
    extra = [c for c in t6.columns[2:-1] if c not in years]
    index = {(r["database"], r["measure"]): r for r in t6.to_dict("records")}

    def cells(database: str, measure: str, label: str, values: list, total: Any) -> None:
        rec = index.get((database, measure))
        name = f"{label} / {measure}"
        if rec is None:
            audit.add(
                "Table 6",
                name,
                "recomputed",
                total,
                None,
                "row not produced (database missing from sources.csv?)",
            )
            return
        for year, value in zip(years, values, strict=True):
            audit.add("Table 6", f"{name} / {year}", "recomputed", value, rec.get(year, 0))
        audit.add("Table 6", f"{name} / Total", "recomputed", total, rec["Total"])
        for year in extra:
            if rec.get(year, 0):
                audit.add(
                    "Table 6",
                    f"{name} / {year}",
                    "recomputed",
                    0,
                    rec[year],
                    "year not printed in Table 6",
                )
        audit.add("Table 6", f"{name} / Total = sum of years", "arithmetic", total, sum(values))

    for row in printed.get("rows", []):
        cells(
            row["database"],
            row["measure"],
            row.get("label", row["database"]),
            row["values"],
            row["total"],
        )
    totals = {row["measure"]: row for row in printed.get("totals", [])}
    for row in printed.get("totals", []):
        cells(
            "Total", row["measure"], row.get("label", row["measure"]), row["values"], row["total"]
        )
    # The thesis's own arithmetic: total rows against its per-database rows.
    db_rows = printed.get("rows", [])
    for measure, source in (("relevant", "relevant"), ("selected_with_duplicates", "selected")):
        if measure not in totals:
            continue
        row = totals[measure]
        sums = [
            sum(r["values"][i] for r in db_rows if r["measure"] == source)
            for i in range(len(years))
        ]
        for year, value, s in zip(years, row["values"], sums, strict=True):
            audit.add(
                "Table 6",
                f"{row.get('label', measure)} / {year} = sum of database rows",
                "arithmetic",
                value,
                s,
            )
        audit.add(
            "Table 6",
            f"{row.get('label', measure)} / Total = sum of database rows",
            "arithmetic",
            row["total"],
            sum(sums),
        )
    parts = ("selected_without_duplicates", "other_sources", "final_selected")
    if all(p in totals for p in parts):
        a, b, final = (totals[p] for p in parts)
        for i, year in enumerate(years):
            audit.add(
                "Table 6",
                f"{final.get('label')} / {year} = without duplicates + other",
                "arithmetic",
                final["values"][i],
                a["values"][i] + b["values"][i],
            )
        audit.add(
            "Table 6",
            f"{final.get('label')} / Total = without duplicates + other",
            "arithmetic",
            final["total"],
            a["total"] + b["total"],
        )


def audit_table10(audit: Audit, printed: list[dict], quality: pd.DataFrame) -> None:
    by_id = {str(r["id"]): r for r in quality.to_dict("records")}
    for row in printed:
        sid = str(row["id"])
        rec = by_id.get(sid)
        if rec is None:
            audit.add(
                "Table 10",
                f"study {sid} / total",
                "recomputed",
                row["total"],
                None,
                "study missing from quality.csv",
            )
            continue
        for col, value in zip(QA_COLUMNS, row["qa"], strict=True):
            if abs(float(value) - rec[col]) > 1e-9:  # a transcription slip in quality.csv
                audit.add(
                    "Table 10",
                    f"study {sid} / {col}",
                    "recomputed",
                    value,
                    rec[col],
                    "quality.csv differs from the printed answer",
                )
        audit.add(
            "Table 10",
            f"study {sid} / total = QA1+...+QA5",
            "arithmetic",
            row["total"],
            sum(float(v) for v in row["qa"]),
        )


def audit_headline(audit: Audit, printed: list[dict], values: dict[str, Any]) -> None:
    """`values` maps a `compute` name (or a callable taking the row) to its result."""
    for row in printed:
        how = row.get("compute", row.get("key"))
        fn = values.get(how)
        if fn is None:
            audit.add(
                "Text", row["key"], "recomputed", row["printed"], None, f"unknown compute {how!r}"
            )
            continue
        result = fn(row) if callable(fn) else fn
        audit.add("Text", row["key"], "recomputed", row["printed"], result, row.get("where", ""))
