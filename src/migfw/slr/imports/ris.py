"""RIS (incl. Ovid, EBSCO, Scopus, WoS-as-RIS variants), read with rispy."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import rispy

from migfw.slr.imports.records import (
    _DB_NAMES,
    _DB_URLS,
    _ENTRY_TYPES,
    _doi_in,
    _first,
    _record,
    _split_issn_isbn,
)

_RIS_TAG = re.compile(r"^([A-Z][A-Z0-9])\s{1,2}-(?:[ \t](.*))?$")
# EBSCO appends a second AB: "Copyright of <journal> is the property of <publisher>..."
_EBSCO_NOTICE = re.compile(r"Copyright of .+ is the property of ", re.S)
_RIS_VENUE_TAGS = ("T2", "JF", "JO", "BT", "J2", "JA", "J1", "T3")


class _AllTags(dict):
    """rispy mapping that keeps every tag as its own name (our field table maps them)."""

    def __missing__(self, tag: str) -> str:
        return tag


class _EveryTag:
    """rispy list_tags that holds every tag: repeated tags keep all their values."""

    def __contains__(self, tag: object) -> bool:
        return True


class _RisReader(rispy.RisParser):
    """rispy's RIS reader (records from TY to ER, lines between records skipped), with
    adapters for what real exports do and rispy does not handle:

    - tag lines with one space or a tab before the dash ("TY - JOUR"): `parse_line`;
    - an untagged line continues the last value of the last tag (rispy starts a new
      list item, so a wrapped N1/KW/AU became several): `_add_tag`;
    - a record without ER (the next TY or the end of the file closes it; rispy merges
      it into the next record or drops it): `_close_records`.
    """

    def __init__(self) -> None:
        super().__init__(
            mapping=_AllTags(),
            list_tags=_EveryTag(),
            delimiter_tags_mapping={},  # type: ignore[arg-type]
        )

    def parse_line(self, line: str) -> tuple[str, str] | tuple[None, str]:
        match = _RIS_TAG.match(line.rstrip())
        if match:
            return match.group(1), (match.group(2) or "").strip()
        return None, line.strip()

    def _iter_till_start(self, lines: Iterator[str]) -> dict:
        while True:
            tag, value = self.parse_line(next(lines))
            if tag == self.START_TAG:
                return {"TY": [value]}

    def _add_tag(
        self, record: dict, tag: str, content: str, extend_multiline: bool = False
    ) -> None:
        if not extend_multiline:
            super()._add_tag(record, tag, content)
        elif content and record.get(tag):
            record[tag][-1] = f"{record[tag][-1]} {content}".strip()

    def _close_records(self, text: str) -> list[str]:
        lines: list[str] = []
        open_record = False
        for line in text.split("\n"):
            tag = self.parse_line(line)[0]
            if tag == self.START_TAG:
                if open_record:
                    lines.append("ER  - ")
                open_record = True
            elif tag == self.END_TAG:
                open_record = False
            lines.append(line)
        if open_record:
            lines.append("ER  - ")
        return lines

    def read(self, text: str) -> list[dict[str, list[str]]]:
        return self.parse_lines(iter(self._close_records(text)))


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
def _read_ris(text: str, path: Path) -> tuple[list[dict], str]:
    raw = _RisReader().read(text)
    out = []
    for rec in raw:
        get = rec.get
        sn_issn, sn_isbn = _split_issn_isbn(get("SN", []))
        doi_source = _first(get("DO"), get("DI"))
        if not doi_source:
            # EBSCO puts the DOI in L3, others in M3/N1/UR.
            for tag in ("L3", "M3", "UR", "L2", "N1"):
                for value in get(tag, []):
                    doi_source = _doi_in(value)
                    if doi_source:
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
