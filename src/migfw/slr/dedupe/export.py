"""The deduplicated library: one record per cluster, as CSV rows and as RIS."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from migfw.io import atomic_write
from migfw.slr.dedupe.result import DedupeResult, text_column

_RIS_TYPES = {"article": "JOUR", "inproceedings": "CPAPER", "conference": "CPAPER",
              "book": "BOOK", "incollection": "CHAP", "inbook": "CHAP", "phdthesis": "THES",
              "mastersthesis": "THES", "techreport": "RPRT", "report": "RPRT"}  # fmt: skip


def library_records(result: DedupeResult, records: pd.DataFrame) -> pd.DataFrame:
    """The deduplicated library: one row per cluster (the merged record) with the
    cluster's source databases and member record ids."""
    merged = result.merged.copy()
    # The database a record came from; its export file's name when none is known.
    dbs = text_column(records, "database")
    files = [Path(f).name for f in text_column(records, "source_file")]
    member_db = {
        rid: db or f
        for rid, db, f in zip(text_column(records, "record_id"), dbs, files, strict=True)
    }
    merged["databases"] = [
        "; ".join(sorted({member_db.get(m, "") for m in members.split("; ")} - {""}))
        for members in merged["members"]
    ]
    return merged


def _ristext_column(row: dict) -> Callable[[str], str]:
    def text(key: str) -> str:
        value = row.get(key)
        return "" if value is None or pd.isna(value) else str(value)

    return text


def write_ris(path: Path, library: pd.DataFrame) -> None:
    """RIS for Zotero/EndNote/ASReview: one record per cluster; N1 names the cluster,
    its databases and record ids; ID is the cluster id, C1/C2 the same as custom fields."""
    import rispy

    entries = []
    for row in library.to_dict("records"):
        text = _ristext_column(row)

        entry: dict = {"type_of_reference": _RIS_TYPES.get(text("entry_type").lower(), "JOUR")}
        entry["id"] = text("cluster_id")
        if text("title"):
            entry["title"] = text("title")
        authors = [a for a in text("authors").split("; ") if a]
        if authors:
            entry["authors"] = authors
        for key, tag in (("year", "year"), ("doi", "doi"), ("venue", "secondary_title"),
                         ("volume", "volume"), ("issue", "number"), ("abstract", "abstract"),
                         ("publisher", "publisher"), ("issn", "issn"), ("url", "urls"),
                         ("language", "language")):  # fmt: skip
            value = text(key)
            if value:
                entry[tag] = [value] if tag == "urls" else value
        pages = text("pages")
        if pages:
            start, _, end = pages.partition("-")
            entry["start_page"] = start
            if end:
                entry["end_page"] = end
        keywords = [k for k in re.split(r"\s*;\s*", text("keywords")) if k]
        if keywords:
            entry["keywords"] = keywords
        entry["notes"] = [
            f"migfw cluster {text('cluster_id')}: {text('n_records')} records; "
            f"databases: {text('databases')}; record ids: {text('members')}"
        ]
        if text("databases"):
            entry["custom1"] = text("databases")
        entry["custom2"] = text("members")
        entries.append(entry)

    class _PlainRis(rispy.RisWriter):
        def set_header(self, count: int) -> str:
            return ""  # no "1." counter lines: EndNote/Zotero exports have none

    with atomic_write(path) as handle:
        handle.write(rispy.dumps(entries, implementation=_PlainRis))
