"""Import native bibliographic exports into the canonical SLR record table.

Formats are detected from the file CONTENT (database exports often carry a misleading
extension): RIS (incl. Ovid/EBSCO variants), BibTeX, CSV/TSV (Scopus, IEEE Xplore,
Web of Science, SpringerLink, Lens.org, OpenAlex, Consensus, generic), Web of Science
tagged text, PubMed/MEDLINE nbib, EndNote XML and PubMed XML.

`migfw slr import FILE... [--database NAME] --out records.csv`
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd

from migfw.errors import MigfwError
from migfw.io import write_csv
from migfw.slr.normalise import (
    clean_text,
    normalise_doi,
    normalise_language,
    normalise_pages,
    parse_authors,
    parse_year,
)

__all__ = [
    "COLUMNS",
    "SlrImportWarning",
    "detect_format",
    "read_export",
    "read_exports",
    "read_records",
    "register_cli",
]

COLUMNS = [
    "record_id",
    "source_file",
    "source_index",
    "database",
    "format",
    "entry_type",
    "title",
    "authors",
    "year",
    "doi",
    "venue",
    "volume",
    "issue",
    "pages",
    "abstract",
    "keywords",
    "publisher",
    "issn",
    "isbn",
    "url",
    "language",
]
_TEXT_FIELDS = [c for c in COLUMNS if c not in ("source_index", "year")]


# Readers for formats beyond RIS/CSV, registered by their sections below.
_EXTRA_READERS: dict[str, Callable[[str, Path], tuple[list[dict], str]]] = {}


class SlrImportWarning(UserWarning):
    """A recoverable problem in an export (skipped entry, empty file)."""


def _warn(message: str) -> None:
    warnings.warn(message, SlrImportWarning, stacklevel=3)


# ------------------------------------------------------------------ reading text


def _read_text(path: Path) -> str:
    """Decode an export: UTF-8 (BOM or not), UTF-16 with BOM, else cp1252/latin-1."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MigfwError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise MigfwError(f"{path}: is a directory, not an export file") from None
    except OSError as exc:
        raise MigfwError(f"{path}: cannot read ({exc.strerror})") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16")
    elif b"\x00" in data[:4096]:
        raise MigfwError(f"{path}: binary file, not a bibliographic export")
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            try:
                text = data.decode("cp1252")
            except UnicodeDecodeError:
                text = data.decode("latin-1")
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise MigfwError(f"{path}: empty file")
    return text


# ------------------------------------------------------------------ detection

_RIS_TAG = re.compile(r"^([A-Z][A-Z0-9])\s{1,2}-(?:[ \t](.*))?$")
_BIB_ENTRY = re.compile(r"^[ \t]*@[A-Za-z]+[ \t]*[{(]", re.M)


def _sniff(text: str) -> str | None:
    head = text.lstrip()
    first = head.split("\n", 1)[0].strip()
    if head.startswith("<"):
        return _sniff_xml(head[:4000])
    if re.match(r"%[0-9A-Z@] ", first) and len(re.findall(r"^%[0-9A-Z@] ", text, re.M)) >= 2:
        return "enw"  # EndNote/Refer tagged text ("%0 Journal Article", "%A ...")
    if head.startswith(("{", "[")):
        return "json"
    if first.startswith("PMID-"):
        return "nbib"
    if re.match(r"^(FN|VR) ", first) or (re.match(r"^PT [A-Z]\b", first) and "\nER" in text):
        return "wos"
    if _RIS_TAG.match(first):
        return "ris"
    if first.startswith(("@", "%")):
        return "bibtex"
    delim = _csv_delimiter(first)
    if delim:
        return "tsv" if delim == "\t" else "csv"
    # Preamble before the first record (Ovid "1.", "Record #1 of 2", blank lines).
    if re.search(r"^TY\s{1,2}-", text, re.M):
        return "ris"
    if re.search(r"^PMID- ", text, re.M):
        return "nbib"
    if re.search(r"^PT [A-Z]\b", text, re.M) and re.search(r"^ER\s*$", text, re.M):
        return "wos"
    if _BIB_ENTRY.search(text):
        return "bibtex"
    return None


def _sniff_xml(head: str) -> str:
    if re.match(r"<!doctype html|<html", head, re.I):
        return "html"
    if re.search(r"<PubmedArticleSet|<PubmedArticle\b|<PubmedBookArticle", head):
        return "pubmed_xml"
    if re.search(r"<records>\s*<record>|<xml>\s*<records>", head) or re.search(
        r"<record>\s*<database", head
    ):
        return "endnote_xml"
    if "rdf:RDF" in head or "<rdf:" in head:
        return "zotero_rdf"
    if "<mods" in head or "<modsCollection" in head:
        return "mods"
    return "xml"


# Header names (case-insensitive) that make a delimited first line a bibliographic CSV.
_CSV_MARKERS = {
    "title", "document title", "item title", "article title", "ti", "display_name",
    "authors", "author", "au", "doi", "year", "publication year", "id", "abstract",
}  # fmt: skip


def _csv_delimiter(line: str) -> str | None:
    best = None
    for delim in ("\t", ",", ";", "|"):
        if delim not in line:
            continue
        fields = next(csv.reader([line], delimiter=delim))
        names = {f.strip().strip('"').lower() for f in fields}
        if len(fields) >= 2 and names & _CSV_MARKERS:
            if best is None or len(fields) > best[1]:
                best = (delim, len(fields))
    return best[0] if best else None


_UNSUPPORTED = {
    "zotero_rdf": "Zotero RDF is not supported; export RIS or BibTeX from Zotero instead",
    "mods": "MODS XML is not supported; export RIS or BibTeX instead",
    "xml": "XML that is neither PubMed XML nor EndNote XML",
    "html": "an HTML page, not an export (did the download fail or need a login?)",
    "json": "JSON (CSL-JSON) is not supported; export RIS or BibTeX instead",
}


def detect_format(path: str | Path) -> str:
    """Name of the export format of `path`, judged from its content.

    One of: ris, bibtex, csv, tsv, wos, nbib, enw, endnote_xml, pubmed_xml.
    Raises MigfwError for unreadable or unsupported files.
    """
    path = Path(path)
    return _detect(path, _read_text(path))


def _detect(path: Path, text: str) -> str:
    fmt = _sniff(text)
    if fmt is None:
        raise MigfwError(
            f"{path}: unknown format (not RIS, BibTeX, CSV/TSV, WoS, nbib, EndNote or PubMed XML)"
        )
    if fmt in _UNSUPPORTED:
        raise MigfwError(f"{path}: {_UNSUPPORTED[fmt]}")
    return fmt


# ------------------------------------------------------------------ record building

_ENTRY_TYPES = {
    # RIS
    "jour": "article", "jfull": "article", "ejour": "article", "mgzn": "article",
    "news": "article", "abst": "article", "inpr": "article",
    "conf": "inproceedings", "cpaper": "inproceedings", "cplete": "proceedings",
    "book": "book", "ebook": "book", "edbook": "book", "chap": "incollection",
    "echap": "incollection", "thes": "phdthesis", "rprt": "techreport", "gen": "misc",
    "elec": "online", "web": "online", "unpb": "unpublished", "pat": "patent",
    "ser": "book", "stand": "standard",
    # CSV document types
    "journal article": "article", "review": "article", "letter": "article",
    "editorial": "article", "note": "article", "erratum": "article",
    "short survey": "article", "data paper": "article", "early access": "article",
    "article in press": "article",
    "conference paper": "inproceedings", "proceedings paper": "inproceedings",
    "conference": "inproceedings", "conference review": "proceedings",
    "ieee conferences": "inproceedings", "ieee journals": "article",
    "ieee magazines": "article", "ieee early access articles": "article",
    "book chapter": "incollection", "chapter": "incollection", "book-chapter": "incollection",
    "reference work entry": "incollection", "protocol": "incollection",
    "preprint": "unpublished", "posted-content": "unpublished",
    "dissertation": "phdthesis", "dataset": "misc",
    "proceedings-article": "inproceedings", "journal-article": "article",
    # WoS PT codes
    "j": "article", "c": "inproceedings", "b": "book", "s": "incollection", "p": "patent",
}  # fmt: skip


def _entry_type(value: str) -> str:
    key = clean_text(value).lower()
    if not key:
        return ""
    # "Article; Proceedings Paper" (WoS DT): the first type wins.
    key = key.split(";")[0].strip()
    return _ENTRY_TYPES.get(key, key)


_ISBN_RE = re.compile(r"^(?:97[89][-\s]?)?(?:\d[-\s]?){9}[\dXx]$")


def _split_issn_isbn(values: Iterable[str]) -> tuple[str, str]:
    """RIS SN and similar hold either ISSN(s) or ISBN(s): sort them by shape."""
    issns: list[str] = []
    isbns: list[str] = []
    for value in values:
        for part in re.split(r"[;,]|\s{2,}|\s(?=\d{4}-?\d{3}[\dXx])", clean_text(value)):
            token = re.sub(r"\(.*?\)", "", part).strip()
            if not token:
                continue
            digits = re.sub(r"[-\s]", "", token)
            if re.fullmatch(r"\d{7}[\dXx]", digits):
                issns.append(f"{digits[:4]}-{digits[4:]}".upper())
            elif _ISBN_RE.match(token) or re.fullmatch(r"\d{12}[\dXx]|\d{9}[\dXx]", digits):
                isbns.append(token)
    return "; ".join(dict.fromkeys(issns)), "; ".join(dict.fromkeys(isbns))


def _first(*values: object) -> str:
    for value in values:
        if isinstance(value, list):
            value = value[0] if value else ""
        text = clean_text(value)
        if text:
            return text
    return ""


def _int_text(value: str) -> str:
    text = clean_text(value)
    return text[:-2] if re.fullmatch(r"\d+\.0", text) else text


def _join_keywords(*values: object) -> str:
    words: list[str] = []
    seen: set[str] = set()
    for value in values:
        items = value if isinstance(value, list) else [value]
        for item in items:
            for word in re.split(r"\s*;\s*", clean_text(item)):
                if word and word.lower() not in seen:  # case-insensitive de-duplication
                    seen.add(word.lower())
                    words.append(word)
    return "; ".join(words)


def _record(
    *,
    record_id: object = "",
    entry_type: object = "",
    title: object = "",
    authors: object = "",
    year: object = "",
    doi: object = "",
    venue: object = "",
    volume: object = "",
    issue: object = "",
    pages: object = "",
    end_page: object = "",
    abstract: object = "",
    keywords: object = "",
    publisher: object = "",
    issn: object = "",
    isbn: object = "",
    url: object = "",
    language: object = "",
) -> dict:
    """Normalise the raw values of one record into the canonical fields."""
    names = parse_authors(authors) if authors else []
    return {
        "record_id": clean_text(record_id),
        "entry_type": _entry_type(str(entry_type or "")),
        "title": clean_text(title).rstrip(" ."),
        "authors": "; ".join(names),
        "year": parse_year(year),
        "doi": normalise_doi(doi),
        "venue": clean_text(venue),
        "volume": _int_text(volume),
        "issue": _int_text(issue),
        "pages": normalise_pages(pages, end_page),
        "abstract": clean_text(abstract),
        "keywords": keywords
        if isinstance(keywords, str) and "; " in keywords
        else _join_keywords(keywords),
        "publisher": clean_text(publisher),
        "issn": clean_text(issn),
        "isbn": clean_text(isbn),
        "url": clean_text(url).split(" ")[0],
        "language": normalise_language(language),
    }


def _frame(records: list[dict], path: Path, fmt: str, database: str) -> pd.DataFrame:
    """Canonical DataFrame: file order, fallback/unique record ids, Int64 year."""
    rows = []
    seen: dict[str, int] = {}
    for n, rec in enumerate(records, start=1):
        row = {c: "" for c in COLUMNS}
        row.update(rec)
        rid = row["record_id"] or f"{path.name}:{n}"
        if rid in seen:  # same ID twice in one file: keep both, suffix the later ones
            seen[rid] += 1
            rid = f"{rid}#{seen[rid]}"
        else:
            seen[rid] = 1
        row.update(
            record_id=rid,
            source_file=str(path),
            source_index=n,
            database=database,
            format=fmt,
        )
        rows.append(row)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for col in _TEXT_FIELDS:
        frame[col] = frame[col].fillna("").astype(str)
    frame["source_index"] = frame["source_index"].astype("int64")
    frame["year"] = pd.array([r.get("year") for r in rows], dtype="Int64")
    return frame


# ------------------------------------------------------------------ RIS

# EBSCO appends a second AB: "Copyright of <journal> is the property of <publisher>..."
_EBSCO_NOTICE = re.compile(r"Copyright of .+ is the property of ", re.S)
_RIS_VENUE_TAGS = ("T2", "JF", "JO", "BT", "J2", "JA", "J1", "T3")


def _parse_ris(text: str, path: Path) -> list[dict[str, list[str]]]:
    """Tolerant RIS tokenizer: records are TY..ER; untagged lines continue the last tag.

    Lines outside a record (Ovid "1.", EBSCO/Endnote headers) are ignored; a TY
    inside an open record starts a new one (missing ER).
    """
    records: list[dict[str, list[str]]] = []
    current: dict[str, list[str]] | None = None
    last_tag = ""
    for line in text.split("\n"):
        match = _RIS_TAG.match(line.rstrip())
        if match:
            tag, value = match.group(1), (match.group(2) or "").strip()
            if tag == "TY":
                if current is not None:
                    records.append(current)
                current = {"TY": [value]}
                last_tag = "TY"
            elif current is None:
                continue
            elif tag == "ER":
                records.append(current)
                current = None
            else:
                current.setdefault(tag, []).append(value)
                last_tag = tag
        elif current is not None and line.strip() and last_tag:
            values = current[last_tag]
            values[-1] = f"{values[-1]} {line.strip()}".strip()
    if current is not None:
        records.append(current)
    return records


def _ris_database(records: list[dict[str, list[str]]]) -> str:
    """Database named by DB/DP tags or by a database (not publisher) record URL."""
    for rec in records[:20]:
        names = " ".join(rec.get("DB", []) + rec.get("DP", [])).lower()
        urls = " ".join(rec.get("UR", []) + rec.get("L2", [])).lower()
        for needle, name in _DB_NAMES:
            if needle in names:
                return name
        for needle, name in _DB_URLS:
            if needle in urls:
                return name
    return ""


# Substrings of RIS DB/DP values; publisher sites (sciencedirect, springer) count only
# when named here, because a record URL pointing at a publisher says nothing about
# the database that was searched.
_DB_NAMES = [
    ("scopus", "Scopus"), ("ebsco", "EBSCO"), ("ovid", "Ovid"),
    ("web of science", "Web of Science"), ("clarivate", "Web of Science"),
    ("ieee", "IEEE Xplore"), ("acm digital library", "ACM"), ("dl.acm.org", "ACM"),
    ("sciencedirect", "ScienceDirect"), ("elsevier", "ScienceDirect"),
    ("springer", "SpringerLink"), ("pubmed", "PubMed"), ("medline", "PubMed"),
    ("wiley", "Wiley"), ("engineering village", "Engineering Village"),
    ("compendex", "Engineering Village"), ("inspec", "Engineering Village"),
    ("citeseer", "CiteSeer"), ("dimensions", "Dimensions"),
]  # fmt: skip
_DB_URLS = [
    ("scopus.com", "Scopus"), ("ebscohost.com", "EBSCO"), ("ovid.com", "Ovid"),
    ("webofknowledge.com", "Web of Science"), ("webofscience.com", "Web of Science"),
    ("ieeexplore.ieee.org", "IEEE Xplore"), ("dl.acm.org", "ACM"),
    ("pubmed.ncbi.nlm.nih.gov", "PubMed"), ("ncbi.nlm.nih.gov/pubmed", "PubMed"),
    ("engineeringvillage.com", "Engineering Village"), ("citeseerx", "CiteSeer"),
    ("app.dimensions.ai", "Dimensions"),
]  # fmt: skip


def _read_ris(text: str, path: Path) -> tuple[list[dict], str]:
    raw = _parse_ris(text, path)
    out = []
    for rec in raw:
        get = rec.get
        sn_issn, sn_isbn = _split_issn_isbn(get("SN", []))
        doi_source = _first(get("DO"), get("DI"))
        if not doi_source:
            # EBSCO puts the DOI in L3, others in M3/N1/UR.
            for tag in ("L3", "M3", "UR", "L2", "N1"):
                for value in get(tag, []):
                    if normalise_doi(value):
                        doi_source = value
                        break
                if doi_source:
                    break
        urls = [u for v in get("UR", []) + get("L2", []) for u in re.split(r"[;\s]+", v) if u]
        out.append(
            _record(
                record_id=_first(get("ID")),
                # Scopus files chapters and papers as TY SER; M3 says what they are.
                entry_type=_first(get("M3"))
                if _first(get("M3")).lower() in _ENTRY_TYPES
                else _first(get("TY")),
                title=_first(get("TI"), get("T1"), get("CT"), get("ST"), get("BT")),
                authors=get("AU", []) + get("A1", []),
                year=_first(get("PY"), get("Y1"), get("DA"), get("Y2")),
                doi=doi_source,
                venue=_first(
                    *(
                        get(t)
                        for t in _RIS_VENUE_TAGS
                        if not (t == "BT" and not (get("TI") or get("T1")))
                    )
                ),
                volume=_first(get("VL"), get("VO")),
                issue=_first(get("IS"), get("CP")),
                pages=_first(get("SP"), get("C7")),  # C7: Scopus article number
                end_page=_first(get("EP")),
                abstract=" ".join(
                    v for v in get("AB", []) or get("N2", []) if not _EBSCO_NOTICE.match(v)
                ),
                keywords=get("KW", []),
                publisher=_first(get("PB")),
                issn=sn_issn,
                isbn=sn_isbn,
                url=urls[0] if urls else "",
                language=_first(get("LA")),
            )
        )
    return out, _ris_database(raw)


# ------------------------------------------------------------------ CSV / TSV

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


def _read_csv(text: str, path: Path, delimiter: str) -> tuple[list[dict], str]:
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


# ------------------------------------------------------------------ BibTeX

_MONTHS = {
    m: str(i)
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_BIB_TYPES = {"conference": "inproceedings", "inbook": "incollection", "electronic": "online",
              "www": "online", "webpage": "online", "mastersthesis": "mastersthesis"}  # fmt: skip


class _BibSyntaxError(ValueError):
    pass


_BIB_HEAD = re.compile(r"@[ \t]*([A-Za-z][\w-]*)[ \t]*([{(])")
_BIB_NEXT_ENTRY = re.compile(r"\n[ \t]*@[ \t]*[A-Za-z]+[ \t]*[{(]")
# Only these characters matter for brace matching; "\\." swallows escapes like "\{".
_BIB_SPECIAL = re.compile(r'\\.|[{}()"]', re.S)
_BIB_BRACES = re.compile(r"\\.|[{}]", re.S)
_BIB_QUOTED = re.compile(r'\\.|[{}"]', re.S)


def _bib_chunks(text: str) -> Iterable[tuple[int, str, str]]:
    """Split BibTeX into (line, type, body) by brace matching.

    An entry whose braces never close is cut at the next line starting with '@type{'
    and yielded with its body prefixed by NUL so the caller can report its line.
    """
    pos = 0
    line = 1  # counted incrementally: re-counting from the start is quadratic
    n = len(text)
    while True:
        match = _BIB_HEAD.search(text, pos)
        if not match:
            return
        line += text.count("\n", pos, match.start())
        kind = match.group(1).lower()
        closer = "}" if match.group(2) == "{" else ")"
        depth = 1
        in_quote = False
        stop = _BIB_NEXT_ENTRY.search(text, match.end())
        limit = stop.start() if stop else n
        i = limit  # stays at limit when the entry never closes
        for tok in _BIB_SPECIAL.finditer(text, match.end(), limit):
            ch = tok.group(0)
            if ch[0] == "\\":
                continue  # escaped brace/quote ("\{", '\"') is text
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0 and closer == "}":
                    i = tok.start()
                    break
            elif ch == ")" and closer == ")" and depth == 1 and not in_quote:
                i = tok.start()
                break
            elif ch == '"' and depth == 1:
                in_quote = not in_quote
        end = min(i, limit)
        body = text[match.end() : end]
        # Unbalanced: the entry runs into the next '@' line (or EOF).
        yield line, kind, ("\x00" + body) if i >= limit else body
        next_pos = limit if i >= limit else i + 1
        line += text.count("\n", match.start(), next_pos)
        pos = next_pos


# Field names are loose in real exports: Scopus writes "funding_text\xa01".
_FIELD_NAME = re.compile(r"\s*([A-Za-z_][^=,{}\"#\n]*?)\s*=\s*")


def _bib_value(body: str, i: int, strings: dict[str, str]) -> tuple[str, int]:
    """Parse `{...}`, `"..."`, number or macro, joined by `#`; return (value, next index)."""
    parts: list[str] = []
    n = len(body)
    while True:
        while i < n and body[i].isspace():
            i += 1
        if i >= n:
            raise _BibSyntaxError("value missing")
        ch = body[i]
        if ch == "{":
            depth, j = 1, -1
            for tok in _BIB_BRACES.finditer(body, i + 1):
                if tok.group(0) == "{":
                    depth += 1
                elif tok.group(0) == "}":
                    depth -= 1
                    if depth == 0:
                        j = tok.end()
                        break
            if j < 0:
                raise _BibSyntaxError("unbalanced braces")
            parts.append(body[i + 1 : j - 1])
            i = j
        elif ch == '"':
            depth, j = 0, -1
            for tok in _BIB_QUOTED.finditer(body, i + 1):
                if tok.group(0) == "{":
                    depth += 1
                elif tok.group(0) == "}":
                    depth -= 1
                elif tok.group(0) == '"' and depth == 0:
                    j = tok.start()
                    break
            if j < 0:
                raise _BibSyntaxError("unterminated quoted value")
            parts.append(body[i + 1 : j])
            i = j + 1
        else:
            match = re.compile(r"[\w.:+/-]+").match(body, i)
            if not match:
                raise _BibSyntaxError(f"unexpected {body[i]!r}")
            word = match.group(0)
            if word.isdigit():
                parts.append(word)
            else:
                key = word.lower()
                parts.append(
                    strings.get(key, _MONTHS.get(key[:3], word) if key[:3] in _MONTHS else word)
                )
            i = match.end()
        while i < n and body[i].isspace():
            i += 1
        if i < n and body[i] == "#":
            i += 1
            continue
        return "".join(parts), i


def _bib_fields(body: str, strings: dict[str, str]) -> tuple[str, list[tuple[str, str]]]:
    """'key, name = value, ...' -> (key, [(name, value)...]); repeated names all kept."""
    comma = body.find(",")
    if comma < 0:
        key = body.strip()
        if not key or "=" in key:
            raise _BibSyntaxError("missing citation key")
        return key, []
    key = body[:comma].strip()
    if "=" in key or not key:
        raise _BibSyntaxError("missing citation key")
    fields: list[tuple[str, str]] = []
    i = comma + 1
    n = len(body)
    while True:
        while i < n and (body[i].isspace() or body[i] == ","):
            i += 1
        if i >= n:
            break
        match = _FIELD_NAME.match(body, i)
        if not match:
            raise _BibSyntaxError(f"expected 'name = value' at {body[i : i + 20]!r}")
        value, i = _bib_value(body, match.end(), strings)
        fields.append((match.group(1).strip().lower(), value))
        while i < n and body[i].isspace():
            i += 1
        # A missing comma between fields is tolerated (the next 'name =' starts anew).
        if i < n and body[i] != "," and not _FIELD_NAME.match(body, i):
            raise _BibSyntaxError(f"unexpected text {body[i : i + 20]!r}")
    return key, fields


def _bib_keywords(values: list[str]) -> list[str]:
    words: list[str] = []
    for value in values:
        sep = ";" if ";" in value else ","
        words.extend(w.strip() for w in value.split(sep))
    return [w for w in words if w]


def _read_bibtex(text: str, path: Path) -> tuple[list[dict], str]:
    strings: dict[str, str] = {}
    out: list[dict] = []
    raw: list[tuple[str, dict[str, list[str]]]] = []
    for line, kind, body in _bib_chunks(text):
        if kind in ("comment", "preamble"):
            continue
        if body.startswith("\x00"):
            _warn(f"{path}:{line}: skipped broken BibTeX @{kind} entry (unbalanced braces)")
            continue
        if kind == "string":
            try:
                _, pairs = _bib_fields("x," + body, strings)
            except _BibSyntaxError as exc:
                _warn(f"{path}:{line}: skipped broken @string ({exc})")
                continue
            for name, value in pairs:
                strings[name] = value
            continue
        try:
            key, pairs = _bib_fields(body, strings)
        except _BibSyntaxError as exc:
            _warn(f"{path}:{line}: skipped broken BibTeX @{kind} entry ({exc})")
            continue
        fields: dict[str, list[str]] = {}
        for name, value in pairs:
            fields.setdefault(name, []).append(value)
        raw.append((key, fields))
        get = fields.get

        def one(*names: str, fields: dict[str, list[str]] = fields) -> str:
            for name in names:
                for value in fields.get(name, []):
                    if clean_text(value):
                        return value
            return ""

        issn, isbn = _split_issn_isbn(get("issn", []) + get("isbn", []))
        kw = _bib_keywords(get("author_keywords", [])) or _bib_keywords(
            get("keywords", []) + get("keyword", [])
        )
        entry_type = _BIB_TYPES.get(kind, kind)
        out.append(
            _record(
                record_id=key,
                entry_type=entry_type,
                title=one("title"),
                authors=one("author") or one("editor"),
                year=one("year", "date"),
                doi=one("doi")
                or next((u for u in get("url", []) if normalise_doi(u) and "doi" in u.lower()), ""),
                venue=one(
                    "journal",
                    "journaltitle",
                    "booktitle",
                    "series",
                    "howpublished",
                    "school",
                    "institution",
                ),
                volume=one("volume"),
                issue=one("number", "issue"),
                pages=one("pages") or one("art_number", "eid", "articleno"),
                abstract=one("abstract"),
                keywords=kw,
                publisher=one("publisher"),
                issn=issn,
                isbn=isbn,
                url=one("url", "link"),
                language=one("language", "langid"),
            )
        )
    return out, _bib_database(raw)


def _bib_database(raw: list[tuple[str, dict[str, list[str]]]]) -> str:
    if not raw:
        return ""
    votes: dict[str, int] = {}
    for key, fields in raw:
        text = " ".join(v for vs in fields.values() for v in vs).lower()
        db = ""
        if "source" in fields and "scopus" in " ".join(fields["source"]).lower():
            db = "Scopus"
        elif "scopus.com" in " ".join(fields.get("url", [])).lower():
            db = "Scopus"
        elif "acmid" in fields or re.search(r"dl\.acm\.org|doi\.acm\.org", text):
            db = "ACM"
        elif "sciencedirect.com" in " ".join(fields.get("url", [])).lower():
            db = "ScienceDirect"
        elif "ieeexplore" in text or (
            key.isdigit() and " ".join(fields.get("doi", [])).startswith("10.1109")
        ):
            db = "IEEE Xplore"
        elif "webofscience" in text or "web-of-science" in fields or "unique-id" in fields:
            db = "Web of Science"
        elif "link.springer.com" in " ".join(fields.get("url", [])).lower() and key.startswith(
            "10.1007"
        ):
            db = "SpringerLink"
        if db:
            votes[db] = votes.get(db, 0) + 1
    if not votes:
        return ""
    best = max(votes, key=votes.get)
    # Only name a database when most entries carry its signature.
    return best if votes[best] * 2 > len(raw) else ""


_EXTRA_READERS["bibtex"] = _read_bibtex


# ------------------------------------------------------------------ WoS tagged text

# WoS tags whose continuation lines are separate items rather than wrapped text.
_WOS_LIST_TAGS = {"AU", "AF", "BA", "BF", "CA", "GP", "ED", "CR", "C1", "C3", "RP", "EM"}


def _parse_tagged(
    text: str,
    tag_re: re.Pattern,
    cont_indent: int,
    list_tags: set[str],
    start_tag: str | None,
    end_tag: str | None,
) -> list[dict[str, list[str]]]:
    """Shared tokenizer for WoS (2-char tags, 3-space continuation, ER ends a record)
    and MEDLINE nbib (4-char tags + '- ', 6-space continuation, blank line ends it)."""
    records: list[dict[str, list[str]]] = []
    current: dict[str, list[str]] | None = None
    last = ""
    for line in text.split("\n"):
        if not line.strip():
            if end_tag is None and current:
                records.append(current)
                current = None
            continue
        if line.startswith(" " * cont_indent) or (line[:1] == " " and last):
            if current is None or not last:
                continue
            value = line.strip()
            if last in list_tags:
                current[last].append(value)
            else:
                current[last][-1] = f"{current[last][-1]} {value}".strip()
            continue
        match = tag_re.match(line)
        if not match:
            continue
        tag, value = match.group(1).strip(), (match.group(2) or "").strip()
        if end_tag is not None and tag == end_tag:
            if current:
                records.append(current)
            current, last = None, ""
            continue
        if tag in ("FN", "VR", "EF") and end_tag is not None:
            continue
        if start_tag is not None and tag == start_tag and current:
            records.append(current)
            current = None
        if current is None:
            current = {}
        current.setdefault(tag, []).append(value)
        last = tag
    if current:
        records.append(current)
    return records


def _read_wos(text: str, path: Path) -> tuple[list[dict], str]:
    raw = _parse_tagged(
        text, re.compile(r"^([A-Z][A-Z0-9])(?: (.*))?$"), 3, _WOS_LIST_TAGS, "PT", "ER"
    )
    out = []
    for rec in raw:
        get = rec.get
        issn, isbn = _split_issn_isbn(get("SN", []) + get("EI", []) + get("BN", []))
        out.append(
            _record(
                record_id=_first(get("UT")),
                entry_type=_first(get("DT"), get("PT")),
                title=_first(get("TI")),
                authors=get("AF") or get("AU") or get("CA") or [],
                year=_first(get("PY"), get("PD"), get("EA")),
                doi=_first(get("DI"), get("D2")),
                venue=_first(get("SO"), get("SE"), get("CT")),
                volume=_first(get("VL")),
                issue=_first(get("IS")),
                pages=_first(get("BP")) or re.sub(r"^UNSP\s+", "", _first(get("AR"))),
                end_page=_first(get("EP")),
                abstract=_first(get("AB")),
                keywords=_split_semicolons(get("DE") or get("ID") or []),
                publisher=_first(get("PU")),
                issn=issn,
                isbn=isbn,
                url="",
                language=_first(get("LA")),
            )
        )
    return out, "Web of Science"


def _split_semicolons(values: list[str]) -> list[str]:
    return [w.strip() for v in values for w in v.split(";") if w.strip()]


_EXTRA_READERS["wos"] = _read_wos


# ------------------------------------------------------------------ PubMed / MEDLINE nbib


def _read_nbib(text: str, path: Path) -> tuple[list[dict], str]:
    raw = _parse_tagged(text, re.compile(r"^([A-Z][A-Z0-9 ]{1,3})- ?(.*)$"), 6, set(), "PMID", None)
    out = []
    for rec in raw:
        get = rec.get
        doi = ""
        for value in get("LID", []) + get("AID", []):
            if "[doi]" in value:
                doi = value.replace("[doi]", "")
                break
        issn, isbn = _split_issn_isbn(get("IS", []) + get("ISBN", []))
        pmid = _first(get("PMID"))
        out.append(
            _record(
                record_id=pmid,
                entry_type=_first(get("PT")),
                title=_first(get("TI"), get("BTI")),
                authors=get("FAU") or get("AU") or [],
                year=_first(get("DP"), get("DEP")),
                doi=doi,
                venue=_first(get("JT"), get("TA")),
                volume=_first(get("VI")),
                issue=_first(get("IP")),
                pages=_first(get("PG")),
                abstract=_first(get("AB")),
                keywords=get("OT") or get("MH") or [],
                publisher=_first(get("PB")),
                issn=issn,
                isbn=isbn,
                url=f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/" if pmid else "",
                language=_first(get("LA")),
            )
        )
    return out, "PubMed"


_EXTRA_READERS["nbib"] = _read_nbib


# ------------------------------------------------------------------ EndNote/Refer tagged

_ENW_TYPES = {"journal article": "article", "conference proceedings": "inproceedings",
              "conference paper": "inproceedings", "book section": "incollection",
              "thesis": "phdthesis", "report": "techreport", "generic": "misc"}  # fmt: skip


def _read_enw(text: str, path: Path) -> tuple[list[dict], str]:
    """EndNote tagged export (.enw, ACM/IEEE 'EndNote'): '%X value', blank line between."""
    raw: list[dict[str, list[str]]] = []
    current: dict[str, list[str]] = {}
    last = ""
    for line in text.split("\n"):
        match = re.match(r"^%([0-9A-Z@!#$&()*+^~>])\s?(.*)$", line)
        if match:
            if match.group(1) == "0" and current:
                raw.append(current)
                current = {}
            last = match.group(1)
            current.setdefault(last, []).append(match.group(2).strip())
        elif not line.strip():
            if current:
                raw.append(current)
            current, last = {}, ""
        elif current and last:
            current[last][-1] = f"{current[last][-1]} {line.strip()}"
    if current:
        raw.append(current)
    out = []
    for rec in raw:
        get = rec.get
        issn, isbn = _split_issn_isbn(get("@", []))
        kind = _first(get("0")).lower()
        out.append(
            _record(
                record_id=_first(get("F"), get("M")),
                entry_type=_ENW_TYPES.get(kind, kind),
                title=_first(get("T")),
                authors=get("A", []),
                year=_first(get("D"), get("8")),
                doi=_first(get("R")) or next((u for u in get("U", []) if normalise_doi(u)), ""),
                venue=_first(get("J"), get("B"), get("S")),
                volume=_first(get("V")),
                issue=_first(get("N")),
                pages=_first(get("P")),
                abstract=_first(get("X")),
                keywords=[w for k in get("K", []) for w in re.split(r"[;,]\s*|\s{2,}", k)],
                publisher=_first(get("I")),
                issn=issn,
                isbn=isbn,
                url=_first(get("U")),
                language=_first(get("G")),
            )
        )
    names = " ".join(v for rec in raw for v in rec.get("~", []) + rec.get("W", [])).lower()
    urls = " ".join(v for rec in raw for v in rec.get("U", [])).lower()
    database = next((name for needle, name in _DB_NAMES if needle in names), "") or next(
        (name for needle, name in _DB_URLS if needle in urls), ""
    )
    return out, database


_EXTRA_READERS["enw"] = _read_enw


# ------------------------------------------------------------------ XML (PubMed, EndNote)


def _xml_root(text: str, path: Path) -> ET.Element:
    # The DOCTYPE names an external DTD we must not fetch; expat ignores it.
    try:
        return ET.fromstring(text.encode("utf-8"))
    except ET.ParseError as exc:
        raise MigfwError(f"{path}: malformed XML ({exc})") from None


def _itertext(elem: ET.Element | None) -> str:
    return clean_text("".join(elem.itertext())) if elem is not None else ""


def _read_pubmed_xml(text: str, path: Path) -> tuple[list[dict], str]:
    root = _xml_root(text, path)
    out = []
    for art in root.iter():
        if art.tag not in ("PubmedArticle", "PubmedBookArticle"):
            continue
        cit = art.find("MedlineCitation")
        book = art.find("BookDocument")
        base = cit if cit is not None else book
        if base is None:
            continue
        article = base.find("Article") if cit is not None else base
        article = article if article is not None else base
        journal = article.find("Journal")
        authors = []
        for author in article.iterfind(".//AuthorList/Author"):
            last = _itertext(author.find("LastName"))
            first = _itertext(author.find("ForeName")) or _itertext(author.find("Initials"))
            collective = _itertext(author.find("CollectiveName"))
            if last:
                authors.append(f"{last}, {first}" if first else last)
            elif collective:
                authors.append(collective)
        doi = ""
        for elem in list(article.iterfind("ELocationID")) + list(
            art.iterfind(".//ArticleIdList/ArticleId")
        ):
            if (elem.get("EIdType") or elem.get("IdType")) == "doi":
                doi = _itertext(elem)
                break
        pubdate = journal.find("JournalIssue/PubDate") if journal is not None else None
        year = ""
        if pubdate is not None:
            year = _itertext(pubdate.find("Year")) or _itertext(pubdate.find("MedlineDate"))
        if not year:
            year = _itertext(base.find(".//ArticleDate/Year")) or _itertext(
                base.find(".//PubDate/Year")
            )
        abstract = " ".join(
            (f"{p.get('Label')}: " if p.get("Label") else "") + _itertext(p)
            for p in article.iterfind("Abstract/AbstractText")
        )
        pmid = _itertext(base.find("PMID"))
        issns = [_itertext(e) for e in (journal.iterfind("ISSN") if journal is not None else [])]
        issn, isbn = _split_issn_isbn(issns + [_itertext(e) for e in base.iterfind(".//Isbn")])
        out.append(
            _record(
                record_id=pmid,
                entry_type=_itertext(article.find(".//PublicationTypeList/PublicationType"))
                or ("book" if book is not None else "article"),
                title=_itertext(article.find("ArticleTitle"))
                or _itertext(article.find("BookTitle")),
                authors=authors,
                year=year,
                doi=doi,
                venue=_itertext(journal.find("Title")) if journal is not None else "",
                volume=_itertext(journal.find("JournalIssue/Volume"))
                if journal is not None
                else "",
                issue=_itertext(journal.find("JournalIssue/Issue")) if journal is not None else "",
                pages=_itertext(article.find("Pagination/MedlinePgn")),
                abstract=abstract,
                keywords=[_itertext(k) for k in base.iterfind(".//KeywordList/Keyword")],
                publisher=_itertext(base.find(".//Publisher/PublisherName")),
                issn=issn,
                isbn=isbn,
                url=f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/" if pmid else "",
                language=_itertext(article.find("Language")),
            )
        )
    return out, "PubMed"


_EXTRA_READERS["pubmed_xml"] = _read_pubmed_xml


def _read_endnote_xml(text: str, path: Path) -> tuple[list[dict], str]:
    root = _xml_root(text, path)
    out = []
    databases = set()
    for rec in root.iter("record"):

        def t(xpath: str, rec: ET.Element = rec) -> str:
            return _itertext(rec.find(xpath))

        ref_type = rec.find("ref-type")
        kind = ref_type.get("name", "") if ref_type is not None else ""
        authors = [_itertext(a) for a in rec.iterfind("contributors/authors/author")]
        urls = [_itertext(u) for u in rec.iterfind("urls/related-urls/url")]
        issn, isbn = _split_issn_isbn([t("isbn")])
        databases.add(t("remote-database-name") or t("remote-database-provider"))
        out.append(
            _record(
                record_id=t("accession-num") or t("rec-number"),
                entry_type={
                    "journal article": "article",
                    "conference proceedings": "inproceedings",
                    "conference paper": "inproceedings",
                    "book section": "incollection",
                }.get(kind.lower(), kind),
                title=t("titles/title"),
                authors=authors,
                year=t("dates/year") or t("dates/pub-dates/date"),
                doi=t("electronic-resource-num"),
                venue=t("titles/secondary-title")
                or t("periodical/full-title")
                or t("titles/alt-title"),
                volume=t("volume"),
                issue=t("number") or t("issue"),
                pages=t("pages"),
                abstract=t("abstract"),
                keywords=[_itertext(k) for k in rec.iterfind("keywords/keyword")],
                publisher=t("publisher"),
                issn=issn,
                isbn=isbn,
                url=urls[0] if urls else "",
                language=t("language"),
            )
        )
    names = " ".join(sorted(d for d in databases if d)).lower()
    database = next((name for needle, name in _DB_NAMES if needle in names), "")
    return out, database


_EXTRA_READERS["endnote_xml"] = _read_endnote_xml


# ------------------------------------------------------------------ dispatch


def _header_delimiter(text: str) -> str | None:
    return _csv_delimiter(text.lstrip().split("\n", 1)[0])


def _reader_for(fmt: str) -> Callable[[str, Path], tuple[list[dict], str]]:
    readers: dict[str, Callable[[str, Path], tuple[list[dict], str]]] = {
        "ris": _read_ris,
        # The delimiter (",", ";", "|" or tab) is re-sniffed from the header line.
        "csv": lambda text, path: _read_csv(text, path, _header_delimiter(text) or ","),
        "tsv": lambda text, path: _read_csv(text, path, "\t"),
    }
    for name, func in _EXTRA_READERS.items():
        readers.setdefault(name, func)
    if fmt not in readers:
        raise KeyError(fmt)
    return readers[fmt]


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


# ------------------------------------------------------------------ CLI


def _cmd_import(args: argparse.Namespace) -> int:
    frames = []
    for path in args.files:
        # Each file's warnings go out right after its line, even if a later file fails.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SlrImportWarning)
            try:
                frame = read_export(path, args.database)
            finally:
                for warning in caught:
                    print(f"warning: {warning.message}", file=sys.stderr)
        fmt = frame["format"].iloc[0] if len(frame) else _detect(Path(path), _read_text(Path(path)))
        db = (frame["database"].iloc[0] if len(frame) else args.database) or "unknown database"
        print(f"{path}: {len(frame)} records ({fmt}, {db})")
        frames.append(frame)
    table = _unique_ids(pd.concat(frames, ignore_index=True))
    write_csv(args.out, table)
    print(f"total: {len(table)} records from {len(frames)} files -> {args.out}")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "import",
        help="read native bibliographic exports into one canonical records CSV",
        description="Read RIS, BibTeX, CSV/TSV, WoS, nbib, EndNote (tagged or XML) or PubMed "
        "XML exports (format detected from content) and write the canonical record table.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="export files")
    parser.add_argument(
        "--database", default=None, help="database name for every FILE (default: inferred)"
    )
    parser.add_argument("--out", required=True, help="output CSV (written atomically)")
    parser.set_defaults(func=_cmd_import)
