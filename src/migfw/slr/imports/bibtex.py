"""BibTeX, split by bibtexparser 2 (blocks, fields, @comment/@preamble, brace and
quote matching, recovery after a broken entry, line numbers).

Adapters for what bibtexparser 2 leaves to the caller or does not do:

- values are evaluated here (`_bib_value`): `{...}`, `"..."`, numbers, @string macros
  and `#` concatenation. bibtexparser's middlewares resolve only a value that is a
  macro as a whole, keep `a # b` as raw text, and skip entries that it reports as
  failed blocks (below), so they are not used;
- an entry with a repeated field name (ScienceDirect writes `keywords = ` once per
  keyword) or a citation key used twice (biber-examples' `tmn4`) comes back as a
  failed block; its entry is read like any other, keeping every repeated value;
- fields not separated by a comma (`title = {A} year = {2001}`) arrive as one value
  and are split again at the next `name =`;
- a failed block (unbalanced braces, text that is not a field) is skipped with a
  one-line warning naming its line; bibtexparser's own multi-line log output is muted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import bibtexparser
from bibtexparser import model

from migfw.slr.imports.records import _doi_in, _record, _split_issn_isbn, _warn
from migfw.slr.normalise import clean_text

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


_BIB_BRACES = re.compile(r"\\.|[{}]", re.S)
_BIB_QUOTED = re.compile(r'\\.|[{}"]', re.S)
_BIB_WORD = re.compile(r"[\w.:+/-]+")


@contextmanager
def _quiet_bibtexparser() -> Iterator[None]:
    """bibtexparser logs each broken block as a multi-line warning; we warn in one line."""
    logger = logging.getLogger("bibtexparser")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _bib_pairs(value: str, strings: dict[str, str]) -> tuple[str, list[tuple[str, str]]]:
    """A raw field value -> (evaluated value, fields that followed it without a comma)."""
    text, i = _bib_value(value, 0, strings)
    rest = value[i:].strip()
    extra: list[tuple[str, str]] = []
    while rest:
        match = _FIELD_NAME.match(rest)
        if not match:
            raise _BibSyntaxError(f"unexpected text {rest[:20]!r}")
        more, j = _bib_value(rest, match.end(), strings)
        extra.append((match.group(1).strip().lower(), more))
        rest = rest[j:].lstrip(" \t\n,")
    return text, extra


def _bib_entries(text: str, path: Path) -> Iterator[tuple[str, str, list[tuple[str, str]]]]:
    """(key, entry type, [(field, value)...]) per entry in file order; @string macros
    apply to the entries after them; broken blocks are skipped with a warning."""
    with _quiet_bibtexparser():
        library = bibtexparser.parse_string(text, parse_stack=[])
    strings: dict[str, str] = {}
    for block in library.blocks:
        line = (block.start_line or 0) + 1  # bibtexparser counts lines from 0
        if isinstance(block, (model.DuplicateFieldKeyBlock, model.DuplicateBlockKeyBlock)):
            block = block.ignore_error_block
        if isinstance(block, model.String):
            try:
                strings[block.key.strip().lower()] = _bib_pairs(block.value, strings)[0]
            except _BibSyntaxError as exc:
                _warn(f"{path}:{line}: skipped broken @string ({exc})")
        elif isinstance(block, model.Entry):
            kind = block.entry_type.strip().lower()
            key = block.key.strip()
            try:
                # An empty key ("@article{," as JabRef writes for an entry without one)
                # loses nothing: the record gets a file:position id. A key holding "=" is
                # a first field that bibtexparser took for the key: refused.
                if "=" in key:
                    raise _BibSyntaxError("missing citation key")
                pairs: list[tuple[str, str]] = []
                for field in block.fields:
                    value, extra = _bib_pairs(field.value, strings)
                    pairs.append((field.key.strip().lower(), value))
                    pairs.extend(extra)
            except _BibSyntaxError as exc:
                _warn(f"{path}:{line}: skipped broken BibTeX @{kind} entry ({exc})")
                continue
            yield key, kind, pairs
        elif isinstance(block, model.ParsingFailedBlock):
            head = re.match(r"@\s*([\w-]+)", block.raw or "")
            kind = head.group(1).lower() if head else "?"
            reason = getattr(block.error, "abort_reason", str(block.error)).strip()
            if "still looking for" in reason or "end of file" in reason:
                reason = "unbalanced braces"
            _warn(f"{path}:{line}: skipped broken BibTeX @{kind} entry ({reason})")


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
            match = _BIB_WORD.match(body, i)
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


def _bib_keywords(values: list[str]) -> list[str]:
    words: list[str] = []
    for value in values:
        sep = ";" if ";" in value else ","
        words.extend(w.strip() for w in value.split(sep))
    return [w for w in words if w]


def _read_bibtex(text: str, path: Path) -> tuple[list[dict], str]:
    out: list[dict] = []
    raw: list[tuple[str, dict[str, list[str]]]] = []
    for key, kind, pairs in _bib_entries(text, path):
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
                or next(
                    (d for u in get("url", []) if "doi" in u.lower() and (d := _doi_in(u))), ""
                ),
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
