"""Which export format a file holds, judged from its content, never its name."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from migfw.errors import MigfwError
from migfw.slr.imports.records import _read_text

_BIB_ENTRY = re.compile(r"^[ \t]*@[A-Za-z]+[ \t]*[{(]", re.M)


# MEDLINE (PubMed nbib, ERIC, ...) lines put the tag in a 4-column field before "- ":
# "PMID- ", "OWN - ", "FAU - ", "TI  - ". RIS lines look like the 2-letter ones, so only
# 3-4 letter tags are MEDLINE evidence; RIS never has them.
_MEDLINE_LONG_TAG = re.compile(r"^[A-Z][A-Z0-9]{2}[A-Z0-9 ]- ", re.M)
_MEDLINE_LINE = re.compile(r"^[A-Z][A-Z0-9 ]{3}- ")
_RIS_START = re.compile(r"^TY\s{1,2}-", re.M)
_WOS_START = re.compile(r"^PT [A-Z]\b", re.M)
_WOS_END = re.compile(r"^ER\s*$", re.M)
# A first line that is a tag line of one of the tagged families (RIS, MEDLINE, WoS).
_TAGGED_FIRST = re.compile(r"^[A-Z][A-Z0-9]{1,3}(?: |\s*-)")
# Structure is judged on the start of the file: a few records are plenty.
_SNIFF_WINDOW = 200_000


def _sniff_tagged(text: str) -> str | None:
    """nbib, wos or ris from the file's tag structure (wherever the first record starts).

    Not from the first tag: MEDLINE exports begin with PMID (PubMed) or OWN (ERIC), often
    after a blank line, and their 2-letter lines ("TI  - ") are RIS-shaped. A MEDLINE
    file starts with a tag line (no preamble) and has 3-4 letter tags; RIS has a TY.
    """
    window = text[:_SNIFF_WINDOW]
    first = window.lstrip().split("\n", 1)[0]
    has_ris = _RIS_START.search(window) is not None
    if not has_ris and (
        first.startswith("PMID-")
        or (_MEDLINE_LINE.match(first) and len(_MEDLINE_LONG_TAG.findall(window, 0, 20_000)) >= 2)
    ):
        return "nbib"
    wos = _WOS_START.search(window) is not None and _WOS_END.search(window) is not None
    if re.match(r"^(FN|VR) ", first) or (wos and _WOS_START.match(first)):
        return "wos"
    if has_ris:
        return "ris"
    if wos:
        return "wos"
    return None


def _sniff(text: str) -> str | None:
    head = text.lstrip()
    first = head.split("\n", 1)[0].strip()
    if head.startswith("<"):
        return _sniff_xml(head[:4000])
    if re.match(r"%[0-9A-Z@] ", first) and len(re.findall(r"^%[0-9A-Z@] ", text, re.M)) >= 2:
        return "enw"  # EndNote/Refer tagged text ("%0 Journal Article", "%A ...")
    if head.startswith(("{", "[")):
        return "json"
    tagged = _sniff_tagged(text)
    if tagged and _TAGGED_FIRST.match(first):
        return tagged
    if first.startswith(("@", "%")):
        return "bibtex"
    delim = _csv_delimiter(first) or _csv_delimiter(_after_preamble(head))
    if delim:
        return "tsv" if delim == "\t" else "csv"
    if tagged:  # text before the first record (Ovid "1.", "Record #1 of 2")
        return tagged
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


def _after_preamble(text: str) -> str:
    """The second line when the first is a note above a bibliographic CSV header (Dimensions
    writes "About the data: Exported on Sep 30, 2026. Criteria: ..." there): the first line
    is no known header, the second is. '' otherwise."""
    lines = text.lstrip().split("\n", 2)
    if len(lines) < 2 or _csv_delimiter(lines[0]) or not _csv_delimiter(lines[1]):
        return ""
    return lines[1]


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
