"""CSV/TSV exports: Scopus, IEEE Xplore, Web of Science, SpringerLink, Lens.org,
OpenAlex, Consensus, Engineering Village and generic tables (the csv module reads them;
this module maps each database's column names onto the canonical fields)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from migfw.errors import MigfwError
from migfw.slr.imports.detect import _after_preamble, _csv_delimiter
from migfw.slr.imports.records import (
    _doi_in,
    _join_keywords,
    _record,
    _split_issn_isbn,
    _warn,
)

# Canonical field -> header names (lower-case), most specific first.
_CSV_FIELDS: dict[str, tuple[str, ...]] = {
    "record_id": ("id", "ut (unique wos id)", "ut", "eid", "lens id", "accession number", "pmid",
                  "covidence #", "publication id"),
    "entry_type": ("entrytype", "document type", "publication type", "content type",
                   "type", "ty", "document identifier", "pt"),
    "title": ("title", "document title", "item title", "article title", "display_name",
              "ti", "t1", "primary title"),
    # bib-dedupe's "author_full" holds BibTeX names beside a lower-cased "author".
    "authors": ("author_full", "author", "authors", "author/s", "author full names",
                "authorships.author.display_name", "au", "a1", "author(s)"),
    "year": ("year", "publication year", "publication_year", "py", "published year", "pubyear",
             "date published",
             "publication_date", "publication date", "date", "da"),
    "doi": ("doi", "item doi", "do", "di", "doi link", "doi_url", "external url"),
    "venue": ("journal", "booktitle", "source title", "source_title", "publication title",
              "venue", "primary_location.source.display_name", "jo", "jf", "t2", "so",
              "journal title", "conference title", "book series title", "container_title",
              "journal/book", "publication"),
    "volume": ("volume", "journal volume", "biblio.volume", "vl"),
    "issue": ("number", "issue", "journal issue", "issue number", "biblio.issue", "is"),
    "pages": ("pages", "page", "pagination"),
    # RIS-named (SP/EP) and WoS-tagged (BP/EP, tab-delimited export) columns: start + end.
    "start_page": ("start page", "page start", "start_page", "startpage", "biblio.first_page",
                   "sp", "bp", "art. no.", "article number", "ar"),
    "end_page": ("end page", "page end", "end_page", "endpage", "biblio.last_page", "ep"),
    "abstract": ("abstract", "ab", "n2"),
    "keywords": ("keywords", "author keywords", "kw", "de", "keywords.display_name"),
    "keywords2": ("index keywords", "ieee terms", "keywords plus", "mesh terms"),
    "publisher": ("publisher", "pb"),
    "issn": ("issn", "issns", "sn", "eissn", "primary_location.source.issn_l"),
    "isbn": ("isbn", "isbns", "bn"),
    "url": ("url", "link", "pdf link", "ur", "source urls", "consensus link", "dimensions url"),
    "language": ("language", "language of original document", "la"),
    "citation": ("citation",),
}  # fmt: skip


def _csv_database(header: list[str], rows: list[dict[str, str]]) -> str:
    cols = {h.lower() for h in header}
    sample = rows[:20]
    if "consensus link" in cols:
        return "Consensus"
    if any(c.startswith("emtree ") for c in cols):
        return "Embase"
    if {"pmid", "citation", "journal/book"} <= cols:
        return "PubMed"
    if any(re.search(r"compendex|inspec|geobase", r.get("Database", ""), re.I) for r in sample):
        return "Engineering Village"
    if "lens id" in cols:
        return "Lens.org"
    if "dimensions url" in cols or any(
        r.get("Publication ID", "").startswith("pub.") for r in sample
    ):
        return "Dimensions"
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
    if (
        "ut (unique wos id)" in cols
        or {"pt", "ut", "so"} <= cols
        or ({"article title", "source title"} <= cols and "publication type" in cols)
    ):
        return "Web of Science"
    return ""


# OpenURL (Z39.88 / SFX) key -> canonical field: Embase's CSV has no DOI, year, journal or
# pages column; they are only in its "Open URL Link" (...&id=doi:10.1002%2Fcncr.20369&
# title=Cancer&volume=102&issue=4&spage=253&epage=258&date=2004).
_OPENURL_KEYS = {"title": "venue", "jtitle": "venue", "volume": "volume", "issue": "issue",
                 "spage": "start_page", "epage": "end_page", "date": "year",
                 "issn": "issn"}  # fmt: skip


def _openurl(link: str) -> dict[str, str]:
    """Canonical fields named in an OpenURL link's query ({} when it is not one)."""
    pairs = parse_qsl(urlsplit(link.strip()).query)
    keys = {k for k, _ in pairs}
    if not {"atitle", "spage", "date", "aulast"} & keys:
        return {}
    out: dict[str, str] = {}
    for key, value in pairs:
        value = value.strip()
        if key in ("id", "rft_id") and value.lower().startswith(("doi:", "info:doi/")):
            out.setdefault("doi", value.split(":", 1)[1].removeprefix("doi/"))
        elif key.removeprefix("rft.") in _OPENURL_KEYS and value:
            out.setdefault(_OPENURL_KEYS[key.removeprefix("rft.")], value)
    return out


# PubMed's CSV keeps volume, issue and pages only in its NLM-style "Citation":
# "Behav Ther. 2022 Mar;53(2):334-347. doi: 10.1016/...".
_NLM_CITATION = re.compile(r";\s*([^();:\s]+)(?:\(([^)]*)\))?:\s*([A-Za-z]?\d[\w-]*)")


def _nlm_citation(citation: str) -> dict[str, str]:
    match = _NLM_CITATION.search(citation)
    if not match:
        return {}
    return {"volume": match.group(1), "issue": match.group(2) or "", "pages": match.group(3)}


def _line_list(lines: list[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:10])
    return shown + (f" and {len(lines) - 10} more" if len(lines) > 10 else "")


def _csv_rows(text: str, delimiter: str, strict: bool) -> Iterator[tuple[int, int, list[str]]]:
    """(first line, last line, fields) per row."""
    # StringIO keeps newlines inside quoted fields (str.splitlines would cut at \x1c etc.).
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=strict)
    line = 1
    for fields in reader:
        yield line, reader.line_num, fields
        line = reader.line_num + 1


def _quoting_ok(text: str, delimiter: str) -> bool:
    try:
        for _ in _csv_rows(text, delimiter, strict=True):
            pass
    except csv.Error:
        return False
    return True


def _split_loose(line: str, delimiter: str) -> list[str] | None:
    """One physical line split where a quote closes only before a delimiter or the line
    end (so `"on "X" here"` keeps its inner quotes); None when a quote never closes."""
    closing = re.compile(r'"[ \t]*(?:' + re.escape(delimiter) + "|$)")
    fields: list[str] = []
    i = 0
    while True:
        if line.startswith('"', i):
            match = closing.search(line, i + 1)
            if not match:
                return None
            fields.append(line[i + 1 : match.start()].replace('""', '"'))
            if not match.group().endswith(delimiter):
                return fields
            i = match.end()
        else:
            j = line.find(delimiter, i)
            if j < 0:
                fields.append(line[i:])
                return fields
            fields.append(line[i:j])
            i = j + 1


def read_csv_rows(
    text: str, path: Path, delimiter: str = ",", what: str = "CSV"
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, fields) of each non-blank row.

    Quoting is checked strictly first (the common case: nothing more to do). A row with
    bad quoting on one line is split again where a quote closes only before a delimiter
    (IEEE Xplore writes `"... on "Computer as a Tool""` unescaped) and kept, with a
    warning naming its line, when that gives one field per column. Otherwise the row
    cannot be aligned to the header (an unclosed quote swallowing the rows after it, a
    stray quote that moves fields) and the file is refused in one line naming the line.
    """
    csv.field_size_limit(1 << 30)
    strict = _quoting_ok(text, delimiter)
    lines = text.split("\n") if not strict else []
    header: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    lenient: list[int] = []
    try:
        for first, last, fields in _csv_rows(text, delimiter, strict=strict):
            if not strict and not _quoting_ok("\n".join(lines[first - 1 : last]), delimiter):
                loose = _split_loose(lines[first - 1], delimiter) if last == first else None
                if loose is None or (header and len(loose) != len(header)):
                    raise MigfwError(
                        f"{path}: line {first}: a quoted field does not close where it should "
                        "(an unclosed or stray quote?); the row cannot be aligned to the header"
                    )
                fields = loose
                lenient.append(first)
            if not any(f.strip() for f in fields):
                continue  # blank line / only empty fields: not a row
            if header:
                rows.append((first, fields))
            else:  # blank lines above the header are skipped too
                header = [h.strip().lstrip("\ufeff") for h in fields]
    except csv.Error as exc:  # e.g. a NUL byte
        raise MigfwError(f"{path}: malformed CSV ({exc})") from None
    if not header:
        raise MigfwError(f"{path}: {what} without a header line")
    if lenient:
        _warn(
            f"{path}: {len(lenient)} rows have unescaped quotes inside a quoted field (lines "
            f"{_line_list(lenient)}); read as written"
        )
    return header, rows


def align_rows(header: list[str], rows: list[tuple[int, list[str]]], path: Path) -> list[list[str]]:
    """Rows with exactly one field per header column.

    A short row (spreadsheets drop trailing empty cells) is padded with empty fields and
    a long row whose extra fields are all empty is trimmed, each with one warning naming
    the lines; a long row with text beyond the last column is refused (which field is
    the extra one cannot be known).
    """
    width = len(header)
    short: list[int] = []
    trimmed: list[int] = []
    out = []
    for line, fields in rows:
        if len(fields) > width:
            if any(f.strip() for f in fields[width:]):
                raise MigfwError(
                    f"{path}: line {line}: {len(fields)} fields for {width} header columns, "
                    "with text beyond the last column; the row cannot be aligned"
                )
            trimmed.append(line)
            fields = fields[:width]
        elif len(fields) < width:
            short.append(line)
            fields = fields + [""] * (width - len(fields))
        out.append(fields)
    if short:
        _warn(
            f"{path}: {len(short)} rows have fewer than {width} fields (lines "
            f"{_line_list(short)}); their missing last fields are empty"
        )
    if trimmed:
        _warn(
            f"{path}: {len(trimmed)} rows have empty fields beyond the {width} header columns "
            f"(lines {_line_list(trimmed)}); dropped"
        )
    return out


def _read_csv(text: str, path: Path, delimiter: str | None = None) -> tuple[list[dict], str]:
    if _after_preamble(text):  # a note line above the header: blanked (line numbers kept)
        start = len(text) - len(text.lstrip())
        cut = text.find("\n", start)
        text = text[:start] + text[cut:]
    # The delimiter (",", ";", "|" or tab) is re-sniffed from the header line.
    delimiter = delimiter or _header_delimiter(text) or ","
    header, raw_rows = read_csv_rows(text, path, delimiter)
    lower = {}
    for i, name in enumerate(header):
        lower.setdefault(name.lower(), i)
    # Scopus writes one header "Funding Text 1" but one column per funding text in the
    # rows, so long rows carry their extra fields right after that column.
    funding = [i for i, h in enumerate(header) if re.fullmatch(r"funding text \d+", h.lower())]
    if funding:
        cut = funding[-1] + 1
        raw_rows = [
            (line, fields[:cut] + fields[cut + len(fields) - len(header) :])
            if len(fields) > len(header)
            else (line, fields)
            for line, fields in raw_rows
        ]
    rows = [dict(zip(header, fields, strict=True)) for fields in align_rows(header, raw_rows, path)]

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
    openurl_cols = [
        h for h in header if re.sub(r"[\s_-]", "", h.lower()) in ("openurllink", "openurl")
    ]
    out = []
    for row in rows:
        # The OpenURL link (Embase), the NLM citation (PubMed) or Publish or Perish's
        # "Source" (its venue; in Scopus's CSV "Source" says "Scopus"): a fallback for the
        # fields the table has no column for.
        link = _openurl(row[openurl_cols[0]]) if openurl_cols else {}
        if database == "PubMed":
            link = _nlm_citation(pick(row, "citation"))
        elif "gsrank" in lower and "source" in lower:
            link = {"venue": row[header[lower["source"]]].strip()}

        def get(field: str, row: dict[str, str] = row, link: dict[str, str] = link) -> str:
            return pick(row, field) or link.get(field, "")

        authors = pick(row, "authors")
        title = pick(row, "title")
        pages = get("pages")
        start = get("start_page") if not pages else ""
        end = get("end_page") if not pages else ""
        issn, isbn = _split_issn_isbn([get("issn"), pick(row, "isbn")])
        keywords = pick(row, "keywords") or pick(row, "keywords2")
        out.append(
            _record(
                record_id=pick(row, "record_id"),
                entry_type=pick(row, "entry_type"),
                title=title,
                authors=authors,
                year=get("year"),
                doi=_doi_in(get("doi")),  # ("DOI Link", "External URL" columns are links)
                venue=get("venue"),
                volume=get("volume"),
                issue=get("issue"),
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
