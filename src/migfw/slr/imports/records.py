"""The canonical record table and the helpers every format reader shares.

A reader turns its format's raw values into canonical fields with `_record`; `_frame`
turns a file's records into the table (file order, unique ids, canonical dtypes).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from migfw.errors import MigfwError
from migfw.slr.normalise import (
    clean_text,
    normalise_doi,
    normalise_language,
    normalise_pages,
    parse_authors,
    parse_year,
)

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


class SlrImportWarning(UserWarning):
    """A recoverable problem in an export (skipped entry, empty file)."""


# What publisher links put after a DOI in their path: not part of the DOI (Wiley's
# ".../doi/10.1002/ajim.22183/abstract", ".../10.1002/x.1/asset/x1.pdf").
_LINK_TAIL = re.compile(
    r"/(?:abstract|full|pdf|epdf|pdfdirect|summary|references|citedby|suppinfo|asset/.*)$"
)


def _doi_in(value: str) -> str:
    """The DOI in a free-text field or a link, '' if none: markup is a word break (a note
    "...ch10<br/>isbn: ..." must not give "ch10isbn"), and in a link (has "://") the query,
    the fragment and a publisher's path tail after the DOI are not part of it."""
    text = re.sub(r"<[^>]*>", " ", value)
    doi = normalise_doi(text)
    if doi and "://" in text:
        doi = _LINK_TAIL.sub("", re.split(r"[?&#]", doi, maxsplit=1)[0])
    return doi


def _warn(message: str) -> None:
    warnings.warn(message, SlrImportWarning, stacklevel=3)


# ------------------------------------------------------------------ reading text


def _utf16_without_bom(head: bytes) -> str:
    """'utf-16-le' / 'utf-16-be' for text written as UTF-16 without a BOM (JabRef's and
    some Windows tools' exports: every other byte is 0 for Latin text), else ''."""
    if len(head) < 8 or b"\x00" not in head:
        return ""
    even, odd = head[0::2], head[1::2]
    zeros_even, zeros_odd = even.count(0) / len(even), odd.count(0) / len(odd)
    if zeros_odd > 0.7 and zeros_even < 0.05:
        return "utf-16-le"
    if zeros_even > 0.7 and zeros_odd < 0.05:
        return "utf-16-be"
    return ""


def _read_text(path: Path) -> str:
    """Decode an export: UTF-8 (BOM or not), UTF-16 (BOM or not), else cp1252/latin-1."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MigfwError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise MigfwError(f"{path}: is a directory, not an export file") from None
    except OSError as exc:
        raise MigfwError(f"{path}: cannot read ({exc.strerror})") from None
    utf16 = _utf16_without_bom(data[:4096])
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or utf16:
        try:
            text = data.decode(utf16 or "utf-16")
        except UnicodeDecodeError as exc:
            raise MigfwError(f"{path}: not valid UTF-16 text ({exc.reason})") from None
        if "\x00" in text[:4096]:
            raise MigfwError(f"{path}: binary file, not a bibliographic export")
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


# Substrings of a database/provider name (RIS DB/DP, EndNote %~, EndNote XML
# remote-database-name); publisher sites (sciencedirect, springer) count only when
# named here, because a record URL pointing at a publisher says nothing about the
# database that was searched.
_DB_NAMES = [
    ("scopus", "Scopus"), ("ebsco", "EBSCO"), ("ovid", "Ovid"),
    ("web of science", "Web of Science"), ("clarivate", "Web of Science"),
    ("ieee", "IEEE Xplore"), ("acm digital library", "ACM"), ("dl.acm.org", "ACM"),
    ("sciencedirect", "ScienceDirect"), ("elsevier", "ScienceDirect"),
    # Embase exports name MEDLINE too (DB - Embase, DB - Medline): Embase first.
    ("embase", "Embase"), ("jstor", "JSTOR"), ("proquest", "ProQuest"),
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
    ("app.dimensions.ai", "Dimensions"), ("embase.com", "Embase"), ("jstor.org", "JSTOR"),
    ("proquest.com", "ProQuest"),
]  # fmt: skip


def _split_semicolons(values: list[str]) -> list[str]:
    return [w.strip() for v in values for w in v.split(";") if w.strip()]
