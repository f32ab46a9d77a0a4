"""Reading exports into the canonical record table: dispatch by detected format,
database inference, unique record ids across files, and reading the table back."""

from __future__ import annotations

import csv
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from migfw.errors import MigfwError
from migfw.slr.imports.detect import _detect
from migfw.slr.imports.records import COLUMNS, _frame, _read_text, _warn


def _reader_for(fmt: str) -> Callable[[str, Path], tuple[list[dict], str]]:
    """The reader of a detected format. Each reader module is imported on first use, so
    importing this package (e.g. for `migfw --help`) does not load every parser; the
    imports are written out (not computed) so that `migfw.provenance` sees them."""
    if fmt == "ris":
        from migfw.slr.imports.ris import _read_ris

        return _read_ris
    if fmt == "bibtex":
        from migfw.slr.imports.bibtex import _read_bibtex

        return _read_bibtex
    if fmt in ("csv", "tsv"):
        from migfw.slr.imports.csv_exports import _read_csv, _read_tsv

        return _read_csv if fmt == "csv" else _read_tsv
    if fmt in ("wos", "nbib", "enw"):
        from migfw.slr.imports.tagged import _read_enw, _read_nbib, _read_wos

        return {"wos": _read_wos, "nbib": _read_nbib, "enw": _read_enw}[fmt]
    if fmt in ("pubmed_xml", "endnote_xml"):
        from migfw.slr.imports.xml_exports import _read_endnote_xml, _read_pubmed_xml

        return _read_pubmed_xml if fmt == "pubmed_xml" else _read_endnote_xml
    raise KeyError(fmt)


def read_export(path: str | Path, database: str | None = None) -> pd.DataFrame:
    """Read one export file into the canonical record table (file order).

    `database` overrides the database inferred from the content; None or "" means
    infer it (the column is "" when nothing in the file names a database).
    Raises MigfwError (one line naming the file) for unreadable/unsupported files;
    a valid file without records gives an empty table and a SlrImportWarning.
    """
    path = Path(path)
    text = _read_text(path)
    fmt = _detect(path, text)
    try:
        reader = _reader_for(fmt)
    except KeyError:
        raise MigfwError(f"{path}: {fmt} import is not implemented") from None
    try:
        records, inferred = reader(text, path)
    except MigfwError:
        raise
    except (ValueError, ET.ParseError, csv.Error) as exc:
        raise MigfwError(f"{path}: cannot parse as {fmt} ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - a reader bug must still give one line
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise MigfwError(
            f"{path}: cannot parse as {fmt} (unexpected {type(exc).__name__}: {first})"
        ) from None
    if not records:
        _warn(f"{path}: no records found ({fmt})")
    empty = sum(1 for r in records if not (r["title"] or r["doi"] or r["authors"]))
    if empty:
        _warn(f"{path}: {empty} records have no title, authors or DOI")
    if not database and not inferred:
        inferred = _fallback_database(records)
    # None or "" from the caller both mean "not given": fall back to the content.
    return _frame(records, path, fmt, database or inferred)


# Publishers whose DOI prefix names the digital library that holds all their papers.
_DOI_LIBRARIES = {"10.1145": "ACM", "10.1109": "IEEE Xplore"}
# Sites that are both publisher and searched database: when (nearly) every record of a
# file links there, the file came from that site. One link proves nothing (Scopus and
# Ovid records link to publishers too), hence the 80% rule.
_LIBRARY_HOSTS = {
    "sciencedirect.com": "ScienceDirect", "link.springer.com": "SpringerLink",
    "onlinelibrary.wiley.com": "Wiley", "ieeexplore.ieee.org": "IEEE Xplore",
    "dl.acm.org": "ACM", "citeseerx": "CiteSeer", "engineeringvillage.com":
    "Engineering Village",
}  # fmt: skip


def _fallback_database(records: list[dict]) -> str:
    """Last resort: 80%+ of a file's record URLs on one library's site, or 80%+ of its
    DOIs with ACM's/IEEE's prefix, name the database."""
    if len(records) >= 3:
        for host, name in _LIBRARY_HOSTS.items():
            if sum(host in r["url"].lower() for r in records) >= 0.8 * len(records):
                return name
    prefixes = [r["doi"].split("/", 1)[0] for r in records if r["doi"]]
    if len(prefixes) < 3:
        return ""
    for prefix, name in _DOI_LIBRARIES.items():
        if prefixes.count(prefix) >= 0.8 * len(prefixes):
            return name
    return ""


def read_exports(
    paths: Sequence[str | Path], databases: Sequence[str | None] | None = None
) -> pd.DataFrame:
    """Read several exports; `databases` (same length) overrides per file.

    record_id stays unique across the run: an ID already used by an earlier file
    gets the next free '#n' suffix.
    """
    if databases is not None and len(databases) != len(paths):
        raise MigfwError(
            f"databases: {len(databases)} names given for {len(paths)} files (need one each)"
        )
    frames = [
        read_export(p, databases[i] if databases is not None else None) for i, p in enumerate(paths)
    ]
    if not frames:
        return _frame([], Path("."), "", "")
    return _unique_ids(pd.concat(frames, ignore_index=True))


def _unique_ids(table: pd.DataFrame) -> pd.DataFrame:
    """Suffix a record_id already used by an earlier file with the next free '#n'."""
    used: set[str] = set()
    ids = []
    for rid in table["record_id"]:
        new, n = rid, 1
        # "12345#2" from one file collides as "12345#n", never "12345#2#2".
        base = re.sub(r"#\d+$", "", rid)
        while new in used:
            n += 1
            new = f"{base}#{n}"
        used.add(new)
        ids.append(new)
    table["record_id"] = ids
    table["year"] = table["year"].astype("Int64")
    return table


def read_records(path: str | Path) -> pd.DataFrame:
    """Load a records CSV written by `migfw slr import` back with canonical dtypes."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except FileNotFoundError:
        raise MigfwError(f"{path}: file not found") from None
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise MigfwError(f"{path}: not a records CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise MigfwError(f"{path}: not a records CSV (missing columns: {', '.join(missing)})")
    try:
        frame["source_index"] = pd.to_numeric(frame["source_index"]).astype("int64")
        frame["year"] = pd.to_numeric(frame["year"].replace("", None)).astype("Int64")
    except (ValueError, TypeError) as exc:
        raise MigfwError(f"{path}: not a records CSV (bad source_index/year: {exc})") from None
    return frame
