"""The deduplicated library: one record per cluster, as CSV rows and as RIS."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from migfw.io import atomic_write
from migfw.slr.dedupe.result import DedupeResult, text_column

_RIS_TYPES = {"article": "JOUR", "inproceedings": "CPAPER", "conference": "CPAPER",
              "book": "BOOK", "incollection": "CHAP", "inbook": "CHAP", "phdthesis": "THES",
              "mastersthesis": "THES", "techreport": "RPRT", "report": "RPRT"}  # fmt: skip

# Clusters formatted at a time (library CSV rows, RIS entries): a dict per cluster for
# every cluster and one RIS string for all of them raised the CLI's peak above
# deduplicate's (100,000 records: +63 MiB at 25,000 records for the RIS alone).
LIBRARY_SLICE = 5_000


def _slices(n: int) -> Iterator[slice]:
    """Row slices of LIBRARY_SLICE; one (empty) slice when there are no rows, so a
    header is still written."""
    step = max(LIBRARY_SLICE, 1)
    for start in range(0, max(n, 1), step):
        yield slice(start, start + step)


def _as_text(frame: pd.DataFrame, column: str) -> pd.Series:
    """text_column as a Series on the frame's index."""
    return pd.Series(text_column(frame, column), index=frame.index, dtype=object)


class _MemberDatabases:
    """record id -> the database it came from (its export file's name when none is known),
    kept as one code per record over the few distinct names, not as a dict of strings."""

    def __init__(self, records: pd.DataFrame) -> None:
        dbs = _as_text(records, "database")
        files = _as_text(records, "source_file")
        names = {f: Path(f).name for f in files.unique()}  # one per export file
        labels = dbs.where(dbs != "", files.map(names))
        ids = _as_text(records, "record_id")
        # A repeated record id means its last row, as a dict built from the rows did.
        last = ~ids.duplicated(keep="last").to_numpy()
        self._ids = pd.Index(ids[last].to_numpy())
        codes, uniques = pd.factorize(labels[last].to_numpy())
        self._codes = np.append(codes, -1)  # position -1 (unknown id) -> code -1
        self._names = np.append(uniques.astype(object), "")  # code -1 (unknown id) -> ""

    def of(self, members: pd.Series) -> list[str]:
        """'; '-joined sorted databases of each cluster's `members` ('; '-joined ids)."""
        lists = [m.split("; ") for m in members.tolist()]
        flat = [rid for ids in lists for rid in ids]
        pos = self._ids.get_indexer(pd.Index(flat, dtype=object))  # -1: not a record
        names = self._names[self._codes[pos]].tolist()
        out, at = [], 0
        for ids in lists:
            out.append("; ".join(sorted(set(names[at : at + len(ids)]) - {""})))
            at += len(ids)
        return out


def library_records(result: DedupeResult, records: pd.DataFrame) -> pd.DataFrame:
    """The deduplicated library: one row per cluster (the merged record) with the
    cluster's source databases and member record ids."""
    member_db = _MemberDatabases(records)
    # assign, not a deep copy: the merged columns are shared (copy-on-write).
    return result.merged.assign(databases=member_db.of(result.merged["members"]))


def _ristext_column(row: dict) -> Callable[[str], str]:
    def text(key: str) -> str:
        value = row.get(key)
        return "" if value is None or pd.isna(value) else str(value)

    return text


def _ris_entry(row: dict) -> dict:
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
    return entry


def _ris_writer() -> type:
    import rispy

    class _PlainRis(rispy.RisWriter):
        def set_header(self, count: int) -> str:
            return ""  # no "1." counter lines: EndNote/Zotero exports have none

    return _PlainRis


def _write_ris_slice(handle, writer: type, library: pd.DataFrame, first: bool) -> None:
    import rispy

    entries = [_ris_entry(row) for row in library.to_dict("records")]
    if entries and not first:
        # rispy separates the references of one dump by SEPARATOR; between two dumps
        # the same separator makes the file what one dump of all of them gives.
        handle.write(f"{writer.SEPARATOR}{writer.NEWLINE}")
    rispy.dump(entries, handle, implementation=writer)


def write_ris(path: Path, library: pd.DataFrame) -> None:
    """RIS for Zotero/EndNote/ASReview: one record per cluster; N1 names the cluster,
    its databases and record ids; ID is the cluster id, C1/C2 the same as custom fields.
    Written LIBRARY_SLICE clusters at a time."""
    writer = _ris_writer()
    with atomic_write(path) as handle:
        for k, part in enumerate(_slices(len(library))):
            _write_ris_slice(handle, writer, library.iloc[part], first=k == 0)


def write_library(
    csv_path: Path, ris_path: Path, result: DedupeResult, records: pd.DataFrame
) -> None:
    """library.csv and library.ris, LIBRARY_SLICE clusters at a time: the same bytes as
    write_csv(library_records(...)) and write_ris(...), without the whole library's
    strings, dicts and RIS text at once."""
    member_db = _MemberDatabases(records)
    merged = result.merged
    writer = _ris_writer()
    with atomic_write(csv_path, newline="") as out_csv, atomic_write(ris_path) as out_ris:
        for k, part in enumerate(_slices(len(merged))):
            rows = merged.iloc[part]
            rows = rows.assign(databases=member_db.of(rows["members"]))
            rows.to_csv(out_csv, index=False, header=k == 0)
            _write_ris_slice(out_ris, writer, rows, first=k == 0)
