"""The thesis's SLR tables recomputed from records: Table 3, Table 6, Table 10, sensitivity.

Inputs are two frames built by review.py:
- `screened`: one row per imported record (record_id, database, year, origin
  "database"/"other", relevant, cluster_id, included);
- `studies`: one row per cluster (cluster_id, year, origin, decision, included, ...).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from migfw.errors import MigfwError
from migfw.slr.normalise import normalise_doi, title_key
from migfw.slr.screening import read_csv_text

QA_COLUMNS = ["QA1", "QA2", "QA3", "QA4", "QA5"]
QA_VALUES = {0.0, 0.5, 1.0}  # thesis 3.4.1: no (0), somewhat (0.5), yes (1)
UNKNOWN_YEAR = "n.d."


def _year_label(year: object) -> str:
    return UNKNOWN_YEAR if pd.isna(year) else str(int(year))


def table_years(screened: pd.DataFrame, studies: pd.DataFrame) -> list[str]:
    """Year columns: every year with a relevant database record or a study (thesis style)."""
    years = set(screened.loc[screened["relevant"], "year"].map(_year_label))
    years |= set(studies.loc[studies["included"], "year"].map(_year_label))
    numeric = sorted(y for y in years if y != UNKNOWN_YEAR)
    return numeric + ([UNKNOWN_YEAR] if UNKNOWN_YEAR in years else [])


def _count_by_year(years: pd.Series, columns: list[str]) -> list[int]:
    counts = years.map(_year_label).value_counts()
    return [int(counts.get(y, 0)) for y in columns]


def table6(screened: pd.DataFrame, studies: pd.DataFrame, databases: list[str]) -> pd.DataFrame:
    """Relevant and selected records per database per year, then the thesis's total rows.

    "Selected (with duplicates)" counts records (a study found in 3 databases counts 3
    times); "without duplicates" counts studies (clusters) found in any database.
    """
    years = table_years(screened, studies)
    rel = screened[screened["relevant"]]
    rows = []

    def add(database: str, measure: str, counts: list[int]) -> None:
        rows.append([database, measure, *counts, sum(counts)])

    for db in databases:
        mine = rel[rel["database"] == db]
        add(db, "relevant", _count_by_year(mine["year"], years))
        add(db, "selected", _count_by_year(mine.loc[mine["included"], "year"], years))
    add("Total", "relevant", _count_by_year(rel["year"], years))
    add(
        "Total", "selected_with_duplicates", _count_by_year(rel.loc[rel["included"], "year"], years)
    )
    inc = studies[studies["included"]]
    from_db = inc[inc["origin"] == "database"]
    other = inc[inc["origin"] == "other"]
    add("Total", "selected_without_duplicates", _count_by_year(from_db["year"], years))
    add("Total", "other_sources", _count_by_year(other["year"], years))
    add("Total", "final_selected", _count_by_year(inc["year"], years))
    return pd.DataFrame(rows, columns=["database", "measure", *years, "Total"])


def table3(screened: pd.DataFrame, studies: pd.DataFrame) -> pd.DataFrame:
    """Table 3: papers at start, added, total and selected per selection stage."""
    from_db = screened[screened["origin"] == "database"]
    n_all = len(from_db)
    n_relevant = int(from_db["relevant"].sum())
    inc = studies[studies["included"]]
    n_db_selected = int((inc["origin"] == "database").sum())
    n_other = int((inc["origin"] == "other").sum())
    rows = [
        ["Stage 1", n_all, 0, n_all, n_relevant],
        ["Stage 2", n_relevant, 0, n_relevant, n_db_selected],
        ["Final: selected studies", n_db_selected, n_other, n_db_selected + n_other, len(inc)],
    ]
    return pd.DataFrame(
        rows, columns=["stage", "papers_at_start", "added_papers", "total_papers", "selected"]
    )


# ------------------------------------------------------------------ quality (Table 10)


def load_quality(path: str | Path) -> pd.DataFrame:
    """quality.csv: id, ref, QA1..QA5 with answers 0, 0.5 or 1; totals are recomputed."""
    path = Path(path)
    frame = read_csv_text(path, "quality file")
    missing = [c for c in ["id", "ref", *QA_COLUMNS] if c not in frame.columns]
    if missing:
        raise MigfwError(f"{path}: missing column(s) {', '.join(missing)}")
    if frame["id"].duplicated().any():
        dup = frame.loc[frame["id"].duplicated(), "id"].iloc[0]
        raise MigfwError(f"{path}: id {dup!r} appears twice")
    for col in QA_COLUMNS:
        values = pd.to_numeric(frame[col].str.strip(), errors="coerce")
        bad = values.isna() | ~values.isin(QA_VALUES)
        if bad.any():
            n = int(bad.idxmax()) + 2
            raise MigfwError(
                f"{path}: line {n}: {col}={frame.loc[bad.idxmax(), col]!r} is not 0, 0.5 or 1"
            )
        frame[col] = values.astype(float)
    frame["total"] = frame[QA_COLUMNS].sum(axis=1)
    return frame


def quality_summary(quality: pd.DataFrame) -> pd.DataFrame:
    n = len(quality)
    total = float(quality["total"].sum())
    mean = total / n if n else float("nan")
    row = {
        "studies": n,
        "sum_of_scores": total,
        "mean_score": mean,
        "max_score": float(len(QA_COLUMNS)),
        "mean_percent": 100.0 * mean / len(QA_COLUMNS),
        "min_study_score": float(quality["total"].min()) if n else float("nan"),
        "max_study_score": float(quality["total"].max()) if n else float("nan"),
    }
    for col in QA_COLUMNS:
        row[f"mean_{col}"] = float(quality[col].mean()) if n else float("nan")
    return pd.DataFrame([row])


# ------------------------------------------------------------------ sensitivity (QGS)


def load_quasi_gold(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    frame = read_csv_text(path, "quasi-gold file")
    if "title" not in frame.columns:
        raise MigfwError(f"{path}: missing column title")
    for col in ("id", "doi", "year"):
        if col not in frame.columns:
            frame[col] = ""
    if (frame["title"].str.strip() == "").any():
        n = int((frame["title"].str.strip() == "").idxmax()) + 2
        raise MigfwError(f"{path}: line {n}: empty title")
    return frame


def sensitivity(
    quasi_gold: pd.DataFrame, records: pd.DataFrame, screened: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Quasi-gold-standard sensitivity (Zhang et al. 2011): share of the QGS the search found.

    A QGS study counts as retrieved when a database record that passed the search
    has its DOI or, failing that, the same normalised title.
    """
    relevant_ids = set(screened.loc[screened["relevant"], "record_id"])
    rel = records[records["record_id"].isin(relevant_ids)]
    by_doi = {d: r for d, r in zip(rel["doi"], rel["record_id"], strict=True) if d}
    by_title = {title_key(t): r for t, r in zip(rel["title"], rel["record_id"], strict=True)}
    rows = []
    for q in quasi_gold.itertuples(index=False):
        doi = normalise_doi(q.doi)
        hit = by_doi.get(doi, "") if doi else ""
        hit = hit or by_title.get(title_key(q.title), "")
        rows.append(
            {"id": q.id, "title": q.title, "year": q.year, "retrieved": bool(hit), "record": hit}
        )
    detail = pd.DataFrame(rows, columns=["id", "title", "year", "retrieved", "record"])
    n = len(detail)
    found = int(detail["retrieved"].sum())
    summary = pd.DataFrame(
        [
            {
                "quasi_gold_studies": n,
                "retrieved": found,
                "sensitivity_percent": 100.0 * found / n if n else float("nan"),
            }
        ]
    )
    return summary, detail
