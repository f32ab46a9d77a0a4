"""Tagged plain-text exports: Web of Science (.ciw/.txt), MEDLINE (PubMed nbib, ERIC)
and EndNote/Refer (.enw). Hand-written: one small tokenizer serves both WoS and MEDLINE
(rispy reads RIS and WoS but not MEDLINE or EndNote tagged text)."""

from __future__ import annotations

import re
from pathlib import Path

from migfw.slr.imports.records import (
    _DB_NAMES,
    _DB_URLS,
    _doi_in,
    _first,
    _record,
    _split_issn_isbn,
    _split_semicolons,
)

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
        # The start tag opens a new record only where the open one already has it
        # (records whose first line is another tag, e.g. OWN before PMID).
        if start_tag is not None and tag == start_tag and current and start_tag in current:
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


# ------------------------------------------------------------------ MEDLINE (PubMed nbib, ERIC)


def _read_nbib(text: str, path: Path) -> tuple[list[dict], str]:
    """MEDLINE tagged text: PubMed .nbib/.txt, and ERIC's export (records start with
    OWN, not PMID; a blank line ends every record in both)."""
    raw = _parse_tagged(text, re.compile(r"^([A-Z][A-Z0-9 ]{1,3})- ?(.*)$"), 6, set(), "PMID", None)
    out = []
    for rec in raw:
        get = rec.get
        doi = ""
        for value in get("LID", []) + get("AID", []):
            if "[doi]" in value:
                doi = value.replace("[doi]", "")
                break
        if not doi:  # ERIC writes the DOI as a bare link: "AID - http://dx.doi.org/10..."
            links = (v for v in get("AID", []) if re.search(r"doi\.org/10\.", v, re.I))
            doi = _doi_in(next(links, ""))
        issn, isbn = _split_issn_isbn(get("IS", []) + get("ISBN", []))
        pmid = _first(get("PMID"))
        out.append(
            _record(
                record_id=pmid or _first(get("AN")),
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
    owners = {_first(rec.get("OWN")).upper() for rec in raw}
    return out, "ERIC" if owners == {"ERIC"} else "PubMed"


# ------------------------------------------------------------------ EndNote/Refer tagged

_ENW_TYPES = {"journal article": "article", "conference proceedings": "inproceedings",
              "conference paper": "inproceedings", "book section": "incollection",
              "thesis": "phdthesis", "report": "techreport", "generic": "misc"}  # fmt: skip


def _read_enw(text: str, path: Path) -> tuple[list[dict], str]:
    """EndNote tagged export (.enw, ACM/IEEE 'EndNote'): '%X value', blank line between.

    Refer fields come in any order: AIS eLibrary writes %T before %0, and some of its
    records have no %0. So a blank line ends a record, and %0 starts a new one only when
    the current record already has its %0 (exports without blank lines between records).
    """
    raw: list[dict[str, list[str]]] = []
    current: dict[str, list[str]] = {}
    last = ""
    for line in text.split("\n"):
        match = re.match(r"^%([0-9A-Z@!#$&()*+^~>])\s?(.*)$", line)
        if match:
            if match.group(1) == "0" and "0" in current:
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
                doi=_first(get("R")) or next((d for u in get("U", []) if (d := _doi_in(u))), ""),
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
