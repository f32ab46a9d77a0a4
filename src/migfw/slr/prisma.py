"""PRISMA 2020 counts (field names of the PRISMA2020 R package's template CSV), checks, diagram.

The count table can be fed to PRISMA2020::PRISMA_data() after adding the template's
box-text columns; here it has `data`, `n` and a plain-language `description`.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from migfw.io import atomic_write  # noqa: E402

# Order and wording follow the PRISMA 2020 flow diagram (Page et al. 2021).
FIELDS = {
    "previous_studies": "Studies included in previous version of review",
    "previous_reports": "Reports of studies included in previous version of review",
    "database_results": "Records identified from databases",
    "database_specific_results": "Records identified per database (name, n; ...)",
    "register_results": "Records identified from registers",
    "website_results": "Records identified from websites",
    "organisation_results": "Records identified from organisations",
    "citations_results": "Records identified from citation searching",
    "duplicates": "Duplicate records removed before screening",
    "duplicate_pairs_person": "Record pairs whose duplicate status a person decided "
    "(slr.dedupe_decisions; not part of the PRISMA 2020 flow arithmetic)",
    "duplicate_pairs_review": "Uncertain record pairs awaiting a person's duplicate decision "
    "(dedupe_review.csv)",
    "excluded_automatic": "Records marked as ineligible by automation tools (key-term query)",
    "excluded_other": "Records removed for other reasons",
    "records_screened": "Records screened",
    "records_excluded": "Records excluded",
    "dbr_sought_reports": "Reports sought for retrieval (databases and registers)",
    "dbr_notretrieved_reports": "Reports not retrieved (databases and registers)",
    "other_sought_reports": "Reports sought for retrieval (other methods)",
    "other_notretrieved_reports": "Reports not retrieved (other methods)",
    "dbr_assessed": "Reports assessed for eligibility (databases and registers)",
    "dbr_excluded": "Reports excluded (databases and registers): reason, n; ...",
    "other_assessed": "Reports assessed for eligibility (other methods)",
    "other_excluded": "Reports excluded (other methods): reason, n; ...",
    "new_studies": "New studies included in review",
    "new_reports": "Reports of new included studies",
    "total_studies": "Total studies included in review",
    "total_reports": "Reports of total included studies",
}
REASON_FIELDS = ("database_specific_results", "dbr_excluded", "other_excluded")


def reason_text(counts: dict[str, int]) -> str:
    """PRISMA2020's "Reason1, n; Reason2, n" cell."""
    return "; ".join(f"{k}, {v}" for k, v in counts.items())


def reason_total(cell: object) -> int:
    """Sum of the n's in a "Reason, n; Reason, n" cell (a bare number is its own total)."""
    text = str(cell).strip()
    if not text:
        return 0
    if ";" not in text and "," not in text:
        return int(float(text))
    return sum(int(part.rsplit(",", 1)[1]) for part in text.split(";") if part.strip())


def counts_table(counts: dict[str, object]) -> pd.DataFrame:
    unknown = set(counts) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown PRISMA field(s): {sorted(unknown)}")
    rows = [{"data": k, "n": counts.get(k, 0), "description": d} for k, d in FIELDS.items()]
    return pd.DataFrame(rows)


def _n(table: pd.DataFrame, key: str) -> int:
    row = table.loc[table["data"] == key, "n"]
    if row.empty:
        return 0
    value = row.iloc[0]
    if key in REASON_FIELDS:
        return reason_total(value)
    if pd.isna(value) or str(value).strip() == "":
        return 0
    return int(float(value))


def checks(table: pd.DataFrame) -> pd.DataFrame:
    """Arithmetic identities of the PRISMA 2020 flow: check, expected, actual, ok."""
    n = {k: _n(table, k) for k in FIELDS}
    spec = [
        (
            "database_specific_results sum to database_results",
            n["database_results"],
            n["database_specific_results"] if _has(table, "database_specific_results") else None,
        ),
        (
            "identified - removed before screening = records_screened",
            n["database_results"]
            + n["register_results"]
            - n["duplicates"]
            - n["excluded_automatic"]
            - n["excluded_other"],
            n["records_screened"],
        ),
        (
            "records_screened - records_excluded = dbr_sought_reports",
            n["records_screened"] - n["records_excluded"],
            n["dbr_sought_reports"],
        ),
        (
            "dbr_sought_reports - dbr_notretrieved_reports = dbr_assessed",
            n["dbr_sought_reports"] - n["dbr_notretrieved_reports"],
            n["dbr_assessed"],
        ),
        (
            "other_sought_reports - other_notretrieved_reports = other_assessed",
            n["other_sought_reports"] - n["other_notretrieved_reports"],
            n["other_assessed"],
        ),
        (
            "other methods identified >= other_sought_reports",
            n["website_results"] + n["organisation_results"] + n["citations_results"],
            n["other_sought_reports"],
        ),
        (
            "(dbr_assessed - dbr_excluded) + (other_assessed - other_excluded) = new_studies",
            n["dbr_assessed"] - n["dbr_excluded"] + n["other_assessed"] - n["other_excluded"],
            n["new_studies"],
        ),
        (
            "new_studies + previous_studies = total_studies",
            n["new_studies"] + n["previous_studies"],
            n["total_studies"],
        ),
        (
            "new_reports + previous_reports = total_reports",
            n["new_reports"] + n["previous_reports"],
            n["total_reports"],
        ),
    ]
    rows = []
    for name, expected, actual in spec:
        if actual is None:
            continue
        ok = actual <= expected if ">=" in name else actual == expected
        rows.append({"check": name, "expected": expected, "actual": actual, "ok": bool(ok)})
    negative = [k for k, v in n.items() if v < 0]
    rows.append(
        {
            "check": "no negative count",
            "expected": 0,
            "actual": len(negative),
            "ok": not negative,
        }
    )
    return pd.DataFrame(rows, columns=["check", "expected", "actual", "ok"])


def _has(table: pd.DataFrame, key: str) -> bool:
    row = table.loc[table["data"] == key, "n"]
    return not row.empty and str(row.iloc[0]).strip() not in ("", "0", "nan")


# ------------------------------------------------------------------ flow diagram


def _box(ax, x: float, y: float, w: float, h: float, text: str, colour: str) -> None:
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.004,rounding_size=0.01",
            facecolor=colour,
            edgecolor="#333333",
            linewidth=0.8,
        )
    )
    # Non-breaking spaces keep "(n = 11)" on one line when the text wraps.
    text = text.replace("n = ", "n\u00a0=\u00a0")
    wrapped = "\n".join(
        textwrap.fill(line, width=int(w * 150)) if line else "" for line in text.split("\n")
    )
    ax.text(x + w / 2, y + h / 2, wrapped, ha="center", va="center", fontsize=7.2, wrap=True)


def _arrow(ax, x0: float, y0: float, x1: float, y1: float) -> None:
    ax.annotate(
        "",
        xy=(x1, y1),
        xytext=(x0, y0),
        arrowprops={"arrowstyle": "-|>", "color": "#333333", "lw": 0.8},
    )


@plt.style.context("default")  # independent of a global (seaborn) theme set elsewhere
def flow_figure(table: pd.DataFrame, png: str | os.PathLike, svg: str | os.PathLike) -> None:
    """PRISMA 2020 flow diagram (databases on the left, other methods on the right)."""
    n = {k: _n(table, k) for k in FIELDS}
    raw = dict(zip(table["data"], table["n"], strict=True))

    def reasons(key: str) -> str:
        text = str(raw.get(key, "")).strip()
        if not text or text == "0":
            return ""
        return "\n" + "\n".join(f"  {p.strip()}" for p in text.split(";") if p.strip())

    fig, ax = plt.subplots(figsize=(11, 9.5))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    main, side, other = "#ffffff", "#f4f4f4", "#e9eef6"
    # Column geometry: databases (left pair) and other methods (right).
    lx, lw, rx, rw, ox, ow = 0.09, 0.30, 0.43, 0.25, 0.72, 0.26
    rows = {"id": 0.80, "screen": 0.61, "sought": 0.46, "assess": 0.31, "incl": 0.08}
    h = 0.12
    stage_labels = [
        ("Identification", 0.79, 0.15),
        ("Screening", 0.29, 0.46),
        ("Included", 0.06, 0.16),
    ]
    for label, y0, hh in stage_labels:
        ax.add_patch(
            FancyBboxPatch(
                (0.005, y0),
                0.055,
                hh,
                boxstyle="round,pad=0.003",
                facecolor="#9fc5e8",
                edgecolor="none",
            )
        )
        ax.text(
            0.0325,
            y0 + hh / 2,
            label,
            rotation=90,
            ha="center",
            va="center",
            fontsize=9,
            fontweight="bold",
        )
    ax.text(
        lx + (rx + rw - lx) / 2,
        0.975,
        "Identification of studies via databases and registers",
        ha="center",
        va="center",
        fontsize=9.5,
        fontweight="bold",
    )
    ax.text(
        ox + ow / 2,
        0.975,
        "Identification of studies via other methods",
        ha="center",
        va="center",
        fontsize=9.5,
        fontweight="bold",
    )

    _box(
        ax,
        lx,
        rows["id"],
        lw,
        h + 0.04,
        f"Records identified from:\nDatabases (n = {n['database_results']})"
        f"\nRegisters (n = {n['register_results']}){reasons('database_specific_results')}",
        main,
    )
    _box(
        ax,
        rx,
        rows["id"],
        rw,
        h + 0.04,
        "Records removed before screening:\n"
        f"Duplicate records (n = {n['duplicates']})\n"
        f"Marked ineligible by key-term query (n = {n['excluded_automatic']})\n"
        f"Removed for other reasons (n = {n['excluded_other']})",
        side,
    )
    _box(ax, lx, rows["screen"], lw, 0.08, f"Records screened\n(n = {n['records_screened']})", main)
    _box(ax, rx, rows["screen"], rw, 0.08, f"Records excluded\n(n = {n['records_excluded']})", side)
    _box(
        ax,
        lx,
        rows["sought"],
        lw,
        0.08,
        f"Reports sought for retrieval\n(n = {n['dbr_sought_reports']})",
        main,
    )
    _box(
        ax,
        rx,
        rows["sought"],
        rw,
        0.08,
        f"Reports not retrieved\n(n = {n['dbr_notretrieved_reports']})",
        side,
    )
    _box(
        ax,
        lx,
        rows["assess"],
        lw,
        0.08,
        f"Reports assessed for eligibility\n(n = {n['dbr_assessed']})",
        main,
    )
    _box(
        ax,
        rx,
        rows["assess"],
        rw,
        0.11,
        f"Reports excluded (n = {n['dbr_excluded']}){reasons('dbr_excluded')}",
        side,
    )
    _box(
        ax,
        lx,
        rows["incl"],
        lw,
        0.12,
        f"Studies included in review\n(n = {n['total_studies']})\n"
        f"Reports of included studies\n(n = {n['total_reports']})",
        main,
    )
    # Other methods column.
    _box(
        ax,
        ox,
        rows["id"],
        ow,
        h + 0.04,
        f"Records identified from:\nWebsites (n = {n['website_results']})\n"
        f"Organisations (n = {n['organisation_results']})\n"
        f"Citation searching (n = {n['citations_results']})",
        other,
    )
    _box(
        ax,
        ox,
        rows["sought"],
        ow,
        0.08,
        f"Reports sought for retrieval\n(n = {n['other_sought_reports']})",
        other,
    )
    _box(
        ax,
        ox,
        rows["assess"] + 0.005,
        ow,
        0.07,
        f"Reports not retrieved (n = {n['other_notretrieved_reports']})",
        other,
    )
    _box(
        ax,
        ox,
        rows["assess"] - 0.13,
        ow,
        0.10,
        f"Reports assessed for eligibility (n = {n['other_assessed']})\n"
        f"Reports excluded (n = {n['other_excluded']}){reasons('other_excluded')}",
        other,
    )

    cx = lx + lw / 2
    _arrow(ax, cx, rows["id"], cx, rows["screen"] + 0.08)
    _arrow(ax, cx, rows["screen"], cx, rows["sought"] + 0.08)
    _arrow(ax, cx, rows["sought"], cx, rows["assess"] + 0.08)
    _arrow(ax, cx, rows["assess"], cx, rows["incl"] + 0.12)
    for key, hh in (("id", h + 0.04), ("screen", 0.08), ("sought", 0.08), ("assess", 0.08)):
        _arrow(ax, lx + lw, rows[key] + hh / 2, rx, rows[key] + hh / 2)
    ocx = ox + ow / 2
    _arrow(ax, ocx, rows["id"], ocx, rows["sought"] + 0.08)
    _arrow(ax, ocx, rows["sought"], ocx, rows["assess"] + 0.075)
    _arrow(ax, ocx, rows["assess"] + 0.005, ocx, rows["assess"] - 0.03)
    _arrow(ax, ox, rows["assess"] - 0.08, lx + lw, rows["incl"] + 0.06)
    fig.tight_layout()
    _save(fig, png, svg)


def _save(fig, png: str | os.PathLike, svg: str | os.PathLike) -> None:
    """Each file goes through a temporary file, so neither is ever left half-written."""
    try:
        for path, fmt in ((png, "png"), (svg, "svg")):
            mode = "wb" if fmt == "png" else "w"
            with atomic_write(Path(path), mode) as handle:
                # No date and fixed element ids in the SVG: reruns give the same bytes.
                with plt.rc_context({"svg.hashsalt": "migfw"}):
                    fig.savefig(
                        handle,
                        format=fmt,
                        dpi=200 if fmt == "png" else None,
                        metadata={"Date": None},
                    )
    finally:
        plt.close(fig)
