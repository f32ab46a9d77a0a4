"""Per-record features for matching: folded title and its variants, surname keys, DOI
(with Cochrane versions sharing a base), year, venue and its type, volume, issue, pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from migfw.slr.dedupe.result import text_column
from migfw.slr.normalise import (
    VENUE_STOP,
    author_keys,
    normalise_doi,
    normalise_pages,
    strip_accents,
    title_key,
    title_variants,
)

_STOP = frozenset(
    "a an and the of for in on at to with by from as or its is are be via into using use "
    "der die das und le la les des et".split()
)
# Titles that name a kind of item rather than a work: never enough to merge on.
_GENERIC_TITLES = frozenset(
    {
        "unknown", "untitled", "no title", "book review", "book reviews", "review",
        "editorial", "editorials", "introduction", "preface", "foreword", "index", "erratum",
        "errata", "corrigendum", "corrigenda", "retraction", "letter", "letters",
        "letter to the editor", "reply", "response", "commentary", "comment", "contents",
        "table of contents", "front matter", "back matter", "frontmatter", "in this issue",
        "editor s note", "editors note", "guest editorial", "announcement", "announcements",
        "obituary", "news", "abstracts", "acknowledgments", "acknowledgements",
        "list of reviewers", "title page", "cover", "masthead", "editor s comments",
        "editors comments", "from the editor", "from the editors", "message from the editor",
        "letter from the editor", "president s message", "in memoriam", "issue information",
        "editorial introduction", "editor s introduction", "introduction to the special issue",
        "editorial notes", "research notes",
    }
)  # fmt: skip
_NO_AUTHOR = frozenset({"unknown", "anonymous", "anon", "na", "none", "etal"})

_CONF_RE = re.compile(
    r"\b(conf|conference|proceedings|proc|symposium|workshop|congress|colloquium|meeting|"
    r"amcis|icis|ecis|pacis|hicss|summit|forum)\b"
)
_JOUR_RE = re.compile(
    r"\b(journal|jnl|j|transactions|trans|letters|lett|magazine|mag|quarterly|annals|ann|"
    r"bulletin|bull|review|reviews|rev|acta|archives|arch|communications|comm|research)\b"
)
# Series that publish both proceedings and journals/books: type unknowable from the name.
_MIXED_RE = re.compile(
    r"\b(lecture notes|procedia|conference series|ceur|advances in|"
    r"communications in computer and information science)\b"
)
# Notices about another item: never the same work as the item they are about.
_NOTICE_RE = re.compile(
    r"^(?:erratum|errata|corrigendum|corrigenda|correction|retraction|retracted|"
    r"notice of retraction|expression of concern|comment on|comments on|commentary on|"
    r"reply to|response to|in reply|authors reply|author s reply|reply)\b"
)
# Function words that name a title's language (folded; words common to two of these
# languages, such as "de", "des", "en", "a", "die", "an", are left out).
_LANGUAGE_WORDS = {
    "en": "the of and for with from on by to how what why does is are",
    "de": "der das und fur mit von zum zur im auf uber eine einer als bei aus ist zwischen",
    "fr": "le les et pour dans du une sur au aux est",
    "es": "el los las y para por como",
    "pt": "os dos das com em uma na ao",
    "it": "il gli della delle dello nella sulla degli tra",
    "nl": "het een van voor naar bij tussen",
}
_WORD_LANGUAGE = {w: lang for lang, words in _LANGUAGE_WORDS.items() for w in words.split()}


def _language(title: str) -> str:
    """The language whose function words the folded title uses most; '' when none or
    a tie (too little to tell)."""
    counts: dict[str, int] = {}
    for word in title.split():
        lang = _WORD_LANGUAGE.get(word)
        if lang:
            counts[lang] = counts.get(lang, 0) + 1
    if not counts:
        return ""
    ranked = sorted(counts.values(), reverse=True)
    if len(ranked) > 1 and ranked[0] == ranked[1]:
        return ""
    return max(counts, key=counts.__getitem__)


_CONF_TYPES = frozenset({"inproceedings", "conference", "proceedings", "conf", "cpaper"})
_JOUR_TYPES = frozenset({"article", "jour", "journal", "journal article", "ejour"})
_COCHRANE_RE = re.compile(r"^(10\.1002/14651858\.[a-z]{2}\d+)(?:\.pub\d+)?$")


def _fold(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[^a-z0-9]+", " ", strip_accents(text).lower())).strip()


def _first_number(text: str) -> str:
    match = re.match(r"\s*0*(\d+)", text)
    return match.group(1) if match else ""


def _start_page(pages: str) -> str:
    first = re.split(r"\s*[-–—]+\s*", pages.strip(), maxsplit=1)[0].strip().lower()
    # "e0815" (electronic article number) vs "815"; "s12" (supplement) vs "12".
    first = re.sub(r"^[a-z]{1,2}(?=\d)", "", first)
    return first.lstrip("0") or first


_PART_RE = re.compile(
    r"\b(?:part|vol|volume|no|chapter|phase|study) ([ivx]+|\d+|one|two|three|four)\b"
)


def _title_numbers(title: str) -> frozenset:
    """Numbers that tell sibling works apart ('part ii', 'covid 19', '2nd edition')."""
    return frozenset(re.findall(r"\b\d+\w*\b", title)) | frozenset(_PART_RE.findall(title))


def _doi_base(doi: str) -> str:
    """Cochrane review versions (…CD002273.pub2/.pub3) are one review: share a base."""
    match = _COCHRANE_RE.match(doi)
    return match.group(1) if match else doi


def _venue_type(venue: str, entry_type: str) -> str:
    """'journal', 'conference' or '' (unknown): from the venue name, then the entry type."""
    if venue:
        if _MIXED_RE.search(venue):
            return ""
        conf, jour = bool(_CONF_RE.search(venue)), bool(_JOUR_RE.search(venue))
        if conf != jour:
            return "conference" if conf else "journal"
        if conf and jour:
            return ""
    etype = entry_type.lower()
    if etype in _CONF_TYPES:
        return "conference"
    if etype in _JOUR_TYPES and venue:
        return "journal"
    return ""


@dataclass
class _Features:
    ids: list[str]
    title: list[str]  # folded title (matching)
    numbers: list[frozenset]  # numbers in the title
    generic: list[bool]  # title names a kind of item or the venue: no merge on it
    doi: list[str]
    doi_base: list[str]
    doi_code: np.ndarray  # doi_base as integer codes, -1 = no DOI
    authors: list[list[str]]  # surname keys in order
    tokens: list[frozenset]  # all name tokens (surnames and given names)
    year: list[int]  # 0 = unknown
    venue: list[str]
    vtype: list[str]
    volume: list[str]
    issue: list[str]
    page: list[str]  # start page
    variants: list[list[str]]  # title keys incl. bracketed translated titles
    tail: list[str]  # title key after a heading ("Column: <title>"), '' = no heading
    vtokens: list[list[str]]  # venue words for abbreviation matching
    notice: list[bool]  # erratum / retraction / comment / reply
    language: list[str]  # of the title, from its function words ('' = cannot tell)
    pages: list[str]  # whole normalised range
    page_code: np.ndarray  # start page as integer codes, -1 = none
    volume_code: np.ndarray  # volume as integer codes, -1 = none
    multi_title: np.ndarray  # record has more than one title variant


def _features(records: pd.DataFrame) -> _Features:
    raw_titles = text_column(records, "title")
    # Per distinct value (copies of one work repeat their fields): one key object shared
    # by every record that has it, computed once.
    titles = _per_distinct(raw_titles, title_key)
    venues = _per_distinct(text_column(records, "venue"), _fold)
    etypes = text_column(records, "entry_type")
    dois = []
    for raw in text_column(records, "doi"):
        # A stub DOI ("10.17705/1cais", a journal's prefix) simply differs from the article
        # DOI and so blocks the merge: the safe outcome.
        dois.append(normalise_doi(raw) if raw else "")
    years = []
    for value in records["year"].tolist() if "year" in records.columns else [None] * len(titles):
        try:
            years.append(0 if pd.isna(value) else int(value))
        except (TypeError, ValueError):
            match = re.search(r"\d{4}", str(value))
            years.append(int(match.group(0)) if match else 0)
    names_of = _per_distinct(text_column(records, "authors"), _author_names)
    authors = [keys for keys, _ in names_of]
    tokens = [toks for _, toks in names_of]
    del names_of
    bases = [_doi_base(d) for d in dois]
    generic = []
    for title, venue in zip(titles, venues, strict=True):
        words = title.split()
        generic.append(
            title in _GENERIC_TITLES
            or len(words) < 2
            or bool(venue and (title == venue or (title.startswith(venue) and len(venue) > 15)))
        )
    feat = _Features(
        ids=text_column(records, "record_id"),
        title=titles,
        numbers=_per_distinct(titles, lambda t: _title_numbers(t) or _NO_NUMBERS),
        generic=generic,
        doi=dois,
        doi_base=bases,
        doi_code=pd.factorize(pd.Series(bases, dtype=object).replace("", None))[0],
        authors=authors,
        tokens=tokens,
        year=years,
        venue=venues,
        vtype=[_venue_type(v, e) for v, e in zip(venues, etypes, strict=True)],
        volume=[
            # A volume that is just the year ("2016") is a locator nobody else uses.
            "" if v and v == str(y) else v
            for v, y in zip(
                (_first_number(v) for v in text_column(records, "volume")), years, strict=True
            )
        ],
        issue=_per_distinct(text_column(records, "issue"), _first_number),
        page=_per_distinct(text_column(records, "pages"), _start_page),
        variants=_per_distinct(
            raw_titles, lambda t: title_variants(t) if "[" in t else [title_key(t)]
        ),
        tail=_per_distinct(raw_titles, _after_heading),
        # From the folded venue (already accent- and punctuation-free): cheap.
        vtokens=_per_distinct(venues, lambda v: [w for w in v.split() if w not in VENUE_STOP]),
        notice=[bool(_NOTICE_RE.match(t)) for t in titles],
        language=_per_distinct(titles, _language),
        pages=_per_distinct(
            text_column(records, "pages"), lambda p: normalise_pages(p).lower() if p else ""
        ),
        page_code=np.empty(0, dtype=np.int64),
        volume_code=np.empty(0, dtype=np.int64),
        multi_title=np.empty(0, dtype=bool),
    )
    feat.page_code = _codes(feat.page)
    feat.volume_code = _codes(feat.volume)
    feat.multi_title = np.array([len(v) > 1 for v in feat.variants], dtype=bool)
    return feat


_NO_NUMBERS: frozenset = frozenset()

# A heading before the title proper: up to HEADING_WORDS words, then ':', '...', or a
# dash or bar between spaces ("How did it ... <title>", "Research note: <title>").
HEADING_WORDS = 6
_HEADING_RE = re.compile(r"^(?P<head>[^:…|]+?)\s*(?::|\.\.\.|…|\s[-–—|]\s)\s*(?P<rest>.+)$")


def _after_heading(raw: str) -> str:
    """The title key after a short heading, or '' (no heading, or too short a rest
    to name a work: >= 4 words and 20 characters)."""
    match = _HEADING_RE.match(raw)
    if not match or len(match.group("head").split()) > HEADING_WORDS:
        return ""
    rest = title_key(match.group("rest"))
    return rest if len(rest) >= 20 and len(rest.split()) >= 4 else ""


def _author_names(raw: str) -> tuple[list[str], frozenset]:
    """Surname keys in order and all name tokens of one author field."""
    names = raw.split("; ")
    if raw and all("," in name for name in names):  # canonical "Last, F.; ..." (fast path)
        keys = [re.sub(r"[^a-z]", "", _fold(name.split(",", 1)[0])) for name in names]
    else:
        keys = author_keys(raw) if raw else []
    keys = [k for k in keys if k and k not in _NO_AUTHOR]
    toks = {t for t in _fold(raw).split() if len(t) > 1 and t not in _NO_AUTHOR}
    return keys, frozenset(toks - {"and", "et", "al"})


def _per_distinct(values: list[str], function: Callable[[str], Any]) -> list:
    """`function` of each value, computed once per distinct value: records of one venue
    (or page range) share one key object instead of a new list or string each (and
    each is computed once: venues repeat thousands of times in a large search)."""
    cache: dict[str, Any] = {}
    out = []
    for value in values:
        if value not in cache:
            cache[value] = function(value)
        out.append(cache[value])
    return out


def _codes(values: list[str]) -> np.ndarray:
    """Integer codes of equal values; -1 for empty."""
    return pd.factorize(pd.Series(values, dtype=object).replace("", None))[0]


def _take(feat: _Features, idx: np.ndarray) -> _Features:
    """The features of records `idx` only (same order), e.g. one copy of each exact copy."""
    out = {}
    for f in fields(feat):
        values = getattr(feat, f.name)
        if isinstance(values, np.ndarray):
            out[f.name] = values[idx]
        else:
            out[f.name] = [values[i] for i in idx.tolist()]
    return _Features(**out)


def _exact_copy_of(feat: _Features, keep_apart: set[int]) -> np.ndarray:
    """For each record, the first record it is an exact copy of (itself when none): every
    compared field equal after normalisation and a title that names a work. Copies are
    merged without being compared pair by pair, so 100,000 copies of one record cost no
    more than one (records in `keep_apart`, named in a person's decisions, never fold)."""
    first: dict[tuple, int] = {}
    out = np.arange(len(feat.ids), dtype=np.int64)
    for i in range(len(feat.ids)):
        if feat.generic[i] or not feat.title[i] or i in keep_apart:
            continue
        key = (
            feat.title[i], feat.doi[i], tuple(feat.authors[i]), feat.tokens[i], feat.year[i],
            feat.venue[i], feat.volume[i], feat.issue[i], feat.pages[i], feat.vtype[i],
        )  # fmt: skip
        out[i] = first.setdefault(key, i)
    return out
