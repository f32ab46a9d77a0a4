"""CSV/TSV exports: Scopus, IEEE Xplore, Web of Science, SpringerLink, Lens.org,
OpenAlex, Consensus, Engineering Village and generic tables (the csv module reads them;
this module maps each database's column names onto the canonical fields)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from migfw.errors import MigfwError
from migfw.slr.imports.detect import _csv_delimiter
from migfw.slr.imports.records import _join_keywords, _record, _split_issn_isbn, _warn

# Canonical field -> header names (lower-case), most specific first.
_CSV_FIELDS: dict[str, tuple[str, ...]] = {
    "record_id": ("id", "ut (unique wos id)", "eid", "lens id", "accession number", "pmid"),
    "entry_type": ("entrytype", "document type", "publication type", "content type",
                   "type", "ty", "document identifier", "pt"),
    "title": ("title", "document title", "item title", "article title", "display_name",
              "ti", "t1", "primary title"),
    # bib-dedupe's "author_full" holds BibTeX names beside a lower-cased "author".
    "authors": ("author_full", "author", "authors", "author/s", "author full names",
                "authorships.author.display_name", "au", "a1", "author(s)"),
    "year": ("year", "publication year", "publication_year", "py", "date published",
             "publication_date", "publication date", "date", "da"),
    "doi": ("doi", "item doi", "do", "di", "doi link", "doi_url", "external url"),
    "venue": ("journal", "booktitle", "source title", "source_title", "publication title",
              "venue", "primary_location.source.display_name", "jo", "jf", "t2", "so",
              "journal title", "conference title", "book series title", "container_title"),
    "volume": ("volume", "journal volume", "biblio.volume", "vl"),
    "issue": ("number", "issue", "journal issue", "issue number", "biblio.issue", "is"),
    "pages": ("pages", "page", "sp", "bp"),
    "start_page": ("start page", "page start", "start_page", "biblio.first_page",
                   "art. no.", "article number"),
    "end_page": ("end page", "page end", "end_page", "biblio.last_page", "ep"),
    "abstract": ("abstract", "ab", "n2"),
    "keywords": ("keywords", "author keywords", "kw", "de", "keywords.display_name"),
    "keywords2": ("index keywords", "ieee terms", "keywords plus", "mesh terms"),
    "publisher": ("publisher", "pb"),
    "issn": ("issn", "issns", "sn", "eissn", "primary_location.source.issn_l"),
    "isbn": ("isbn", "isbns", "bn"),
    "url": ("url", "link", "pdf link", "ur", "source urls", "consensus link"),
    "language": ("language", "language of original document", "la"),
}  # fmt: skip


def _csv_database(header: list[str], rows: list[dict[str, str]]) -> str:
    cols = {h.lower() for h in header}
    sample = rows[:20]
    if "consensus link" in cols:
        return "Consensus"
    if any(re.search(r"compendex|inspec|geobase", r.get("Database", ""), re.I) for r in sample):
        return "Engineering Village"
    if "lens id" in cols:
        return "Lens.org"
    if any(c.startswith("authorships.") for c in cols) or any(
        r.get("id", "").startswith("https://openalex.org/") for r in sample
    ):
        return "OpenAlex"
    if (
        "eid" in cols
        or any(r.get("Source", "") == "Scopus" for r in sample)
        or any("scopus.com" in r.get("Link", "") for r in sample)
    ):
        return "Scopus"
    if {"document title", "publication title"} <= cols and (
        "ieee terms" in cols or "date added to xplore" in cols or "pdf link" in cols
    ):
        return "IEEE Xplore"
    if {"item title", "content type"} <= cols or "item doi" in cols:
        return "SpringerLink"
    if "ut (unique wos id)" in cols or (
        {"article title", "source title"} <= cols and "publication type" in cols
    ):
        return "Web of Science"
    return ""


def _read_csv(text: str, path: Path, delimiter: str | None = None) -> tuple[list[dict], str]:
    # The delimiter (",", ";", "|" or tab) is re-sniffed from the header line.
    delimiter = delimiter or _header_delimiter(text) or ","
    csv.field_size_limit(1 << 30)
    # StringIO keeps newlines inside quoted fields (str.splitlines would cut at \x1c etc.).
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header: list[str] = []
        while not any(h.strip() for h in header):  # skip blank lines above the header
            header = [h.strip().lstrip("\ufeff") for h in next(reader)]
        raw_rows = list(reader)
    except StopIteration:
        raise MigfwError(f"{path}: CSV without a header line") from None
    except csv.Error as exc:
        raise MigfwError(f"{path}: malformed CSV ({exc})") from None
    lower = {}
    for i, name in enumerate(header):
        lower.setdefault(name.lower(), i)
    # Scopus writes one header "Funding Text 1" but one column per funding text in the
    # rows, so long rows carry their extra fields right after that column.
    funding = [i for i, h in enumerate(header) if re.fullmatch(r"funding text \d+", h.lower())]
    rows: list[dict[str, str]] = []
    ragged = 0
    for fields in raw_rows:
        if not any(f.strip() for f in fields):
            continue  # blank line / row of empty fields: not a record
        extra = len(fields) - len(header)
        if extra > 0 and funding:
            cut = funding[-1] + 1
            fields = fields[:cut] + fields[cut + extra :]
        elif extra:
            ragged += 1
        # Short rows: missing trailing fields are empty.
        fields = fields + [""] * (len(header) - len(fields))
        rows.append(dict(zip(header, fields, strict=False)))
    if ragged:
        _warn(f"{path}: {ragged} rows do not have {len(header)} fields; aligned from the left")

    def pick(row: dict[str, str], field: str) -> str:
        for name in _CSV_FIELDS[field]:
            idx = lower.get(name)
            if idx is None:
                continue
            value = row.get(header[idx], "").strip()
            if value and value.upper() not in ("NA", "N/A", "NAN", "NONE"):
                return value
        return ""

    database = _csv_database(header, rows)
    out = []
    for row in rows:
        authors = pick(row, "authors")
        title = pick(row, "title")
        pages = pick(row, "pages")
        start = pick(row, "start_page") if not pages else ""
        end = pick(row, "end_page") if not pages else ""
        issn, isbn = _split_issn_isbn([pick(row, "issn"), pick(row, "isbn")])
        keywords = pick(row, "keywords") or pick(row, "keywords2")
        out.append(
            _record(
                record_id=pick(row, "record_id"),
                entry_type=pick(row, "entry_type"),
                title=title,
                authors=authors,
                year=pick(row, "year"),
                doi=pick(row, "doi"),
                venue=pick(row, "venue"),
                volume=pick(row, "volume"),
                issue=pick(row, "issue"),
                pages=pages or start,
                end_page=end,
                abstract=pick(row, "abstract"),
                keywords=_join_keywords(*re.split(r"\s*;\s*|\|", keywords)),
                publisher=pick(row, "publisher"),
                issn=issn,
                isbn=isbn,
                url=pick(row, "url"),
                language=pick(row, "language"),
            )
        )
    return out, database


def _header_delimiter(text: str) -> str | None:
    return _csv_delimiter(text.lstrip().split("\n", 1)[0])


def _read_tsv(text: str, path: Path) -> tuple[list[dict], str]:
    return _read_csv(text, path, "\t")
