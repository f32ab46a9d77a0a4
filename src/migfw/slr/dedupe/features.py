"""Per-record features for matching: folded title and its variants, surname keys, DOI
(with Cochrane versions sharing a base), year, venue and its type, volume, issue, pages."""

from __future__ import annotations

import re
import sys
from array import array
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
from numpy.dtypes import StringDType

from migfw.slr.dedupe.columns import (  # (re-exported: other modules import them here)
    SLICE,
    _cells,
    _code_array,
    _Column,
    _per_combination,
    _per_distinct,
    _recoded,
    _Strings,
    _strings,
    _texts,
    _Variants,
)
from migfw.slr.dedupe.result import text_column
from migfw.slr.normalise import (
    VENUE_STOP,
    author_keys,
    normalise_doi,
    normalise_pages,
    split_pages,
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
# Web of Science titles an author's reply after the letter it answers: "<letter's
# title> - Reply", "<title> AUTHORS REPLY" (the same title, page and issue as the letter).
_REPLY_RE = re.compile(r"\b(?:reply|in reply|authors reply|author s reply|authors replies)$")
# A correction titled after its item and citing where the item was printed: Web of
# Science "<title> (vol 142, pg 310, 2003)", Embase "<title> (Journal (2009) 360
# (542-544))". The citation marks a notice; it is not part of the title.
_YEAR = r"(?:1[89]|20)\d\d"
_CORRECTION_CITE_RE = re.compile(
    rf"(?:\(\s*vol\.?\s*[\w.-]+\s*,\s*(?:pg|pp?|art(?:icle)?\.?\s*no\.?)\s*[\w.-]+\s*,\s*{_YEAR}\s*\)"
    rf"|\([^()]{{3,}}\(\s*{_YEAR}\s*\)\s*[\w.-]+\s*(?:\([\w.\s-]*\)\s*)*\))\s*\.?\s*$",
    re.I,
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


# MEDLINE (and Embase after it) prints the English translation of a title in another
# language in brackets: "[Comparison of amoxicillin and cefamandole in ...]" (at least
# three words; Ovid may add short notes after it: "[Review] [16 refs] [Romanian]").
_TRANSLATED_RE = re.compile(
    r"^[^\w\[]*\[(?=[^\[\]]*?\w+[^\w\[\]]+\w+[^\w\[\]]+\w)[^\[\]]+\][^\w\[]*"
    r"(?:\[[^\[\]]{1,30}\][^\w\[]*)*$"
)


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


# Embase names the journal supplement that printed a meeting's abstracts
# "<journal>.Conference: <meeting>" ("Transplant International.Conference: 20th Annual
# Congress of ..."); other databases give the journal alone. The item is printed in the
# journal, so the journal is the venue, not the meeting; its type is unknown: the same
# abstract is filed under the meeting (a conference) by other databases.
_EMBASE_MEETING_RE = re.compile(r"(?<=\S)\.\s*Conference(?: Publication)?\s*:.*$", re.I | re.S)


def _venue_key(venue: str) -> str:
    """The folded venue, without Embase's ".Conference: <meeting>" after a journal."""
    return _fold(_EMBASE_MEETING_RE.sub("", venue))


def _first_number(text: str) -> str:
    match = re.match(r"\s*0*(\d+)", text)
    return match.group(1) if match else ""


def _start_page(pages: str) -> str:
    first = split_pages(pages.strip(), maxsplit=1)[0].strip().lower()
    # "e0815" (electronic article number) vs "815"; "s12" (supplement) vs "12".
    first = re.sub(r"^[a-z]{1,2}(?=\d)", "", first)
    if re.fullmatch(r"supp?l?(?:ement)?\.?", first):
        return ""  # "Suppl-87" (a converter's S376-S387): the start page is lost
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
    ids: np.ndarray  # numpy StringDType (see _ids)
    title: _Column  # folded title (matching)
    numbers: _Column  # frozenset of numbers in the title
    generic: _Column  # bool: title names a kind of item or the venue: no merge on it
    doi: _Column
    doi_base: _Column
    doi_code: np.ndarray  # doi_base as integer codes, -1 = no DOI
    authors: _Column  # list of surname keys in order
    tokens: _Column  # sorted tuple of all name tokens (surnames and given names)
    year: _Column  # int, 0 = unknown
    venue: _Column
    vtype: _Column
    volume: _Column
    issue: _Column
    page: _Column  # start page
    variants: _Column  # list of title keys incl. bracketed translated titles
    tail: _Column  # title key after a heading ("Column: <title>"), '' = no heading
    vtokens: _Column  # list of venue words for abbreviation matching
    notice: _Column  # bool: erratum / retraction / comment / reply
    language: _Column  # of the title, from its function words ('' = cannot tell)
    bracketed: _Column  # bool: the whole title in brackets (MEDLINE: a translated title)
    pages: _Column  # whole normalised range
    page_code: np.ndarray  # start page as integer codes, -1 = none
    volume_code: np.ndarray  # volume as integer codes, -1 = none
    multi_title: np.ndarray  # record has more than one title variant


def _year(value: Any) -> int:
    try:
        return 0 if pd.isna(value) else int(value)
    except (TypeError, ValueError):
        match = re.search(r"\d{4}", str(value))
        return int(match.group(0)) if match else 0


# The longest title in the real exports and labelled sets here: 482 characters; the
# longest author list 51 names, 714 characters. Beyond these bounds only the head is
# compared: a list of 500 names made training take 29 s for 450 records, and copies of
# a paper with thousands of authors list the same first hundred. A "title" longer than
# that is a mis-parsed field (an abstract in the title column): compared whole it cost
# 0.5 s per pair (15,000 characters).
MAX_TITLE_CHARS = 1000
MAX_AUTHORS = 100
MAX_AUTHOR_CHARS = 4000


def _title_fields(records: pd.DataFrame) -> dict[str, _Column]:
    """The fields computed from the raw titles (title, variants, tail, notice, bracketed).
    Two steps, so that their Python strings are not all alive at once (they were the
    features' peak): each distinct raw title's key into a StringDType array, the raw
    titles freed; then equal keys numbered (a dict of the keys' strings, ~15 MiB at
    100,000 records, reusing the raw titles' memory)."""
    raw_titles = _per_distinct(_texts(records, "title"), lambda t: t[:MAX_TITLE_CHARS])
    n_raw = len(raw_titles.values)
    raw_keys = np.empty(n_raw, dtype=StringDType())
    notices = []
    for start in range(0, n_raw, SLICE):
        part = []
        for t in raw_titles.values[start : start + SLICE]:
            cited = _CORRECTION_CITE_RE.search(t) if t.rstrip(". ").endswith(")") else None
            key = title_key(t[: cited.start()] if cited else t)
            part.append(key)
            notices.append(bool(cited or _NOTICE_RE.match(key) or _REPLY_RE.search(key)))
        raw_keys[start : start + SLICE] = part
        del part
    raw_codes = raw_titles.numpy_codes()
    fields = {
        "tail": _strings(raw_titles.map(_after_heading, by_value=True)),
        "notice": _recoded(raw_codes, notices),
        "bracketed": raw_titles.map(lambda t: bool(_TRANSLATED_RE.match(t)), by_value=True),
    }
    bounds = array("i", [0])  # an entry's variants: flat[bounds[entry]:bounds[entry + 1]]
    flat: list[str] = []
    for raw in raw_titles.values:
        if "[" in raw:
            flat.extend(title_variants(raw))
        bounds.append(len(flat))
    own = np.array(["[" in raw for raw in raw_titles.values], dtype=bool)
    variant_codes = raw_titles.codes
    del raw_titles, notices
    first: dict[str, int] = {}  # title key -> its entry (in order of first appearance)
    key_of = np.fromiter((first.setdefault(k, len(first)) for k in raw_keys), np.int32, n_raw)
    keys = np.array(list(first), dtype=StringDType())  # (see columns._strings)
    del first, raw_keys
    return {
        "title": _Strings(_code_array(key_of[raw_codes], len(keys)), keys),
        "variants": _Variants(
            variant_codes,
            array("i", np.where(own, -1, key_of).astype(np.int32).tobytes()),
            keys,
            bounds,
            np.array(flat, dtype=StringDType()),
        ),
        **fields,
    }


def _features(records: pd.DataFrame) -> _Features:
    # Per distinct value (copies of one work repeat their fields): one key object shared
    # by every record that has it, computed once; the raw cells are read a slice at a time.
    from_titles = _title_fields(records)
    titles = from_titles["title"]
    raw_venues = _per_distinct(_texts(records, "venue"), lambda v: v)  # the column read once
    venues = raw_venues.map(_venue_key, by_value=True)
    meetings = raw_venues.map(lambda v: bool(_EMBASE_MEETING_RE.search(v)), by_value=True)
    del raw_venues
    etypes = _per_distinct(_texts(records, "entry_type"), lambda e: e)
    # A stub DOI ("10.17705/1cais", a journal's prefix) simply differs from the article
    # DOI and so blocks the merge: the safe outcome.
    dois = _per_distinct(_texts(records, "doi"), lambda r: normalise_doi(r) if r else "", True)
    if "year" in records.columns:
        years = _per_distinct(_cells(records["year"]), _year, by_value=True)
    else:
        years = _Column(array("b", bytes(len(records))), [0])
    names_of = _per_distinct(_texts(records, "authors"), _author_names)
    authors = _equal_lists_shared(names_of.map(lambda kt: kt[0]))
    tokens = names_of.map(lambda kt: kt[1], by_value=True)
    del names_of
    dois, bases = _doi_columns(dois)

    def is_generic(title: str, venue: str) -> bool:
        return (
            title in _GENERIC_TITLES
            or len(title.split()) < 2
            or bool(venue and (title == venue or (title.startswith(venue) and len(venue) > 15)))
        )

    generic = _per_combination((titles, venues), is_generic)
    # A volume that is just the year ("2016") is a locator nobody else uses.
    raw_volumes = _per_distinct(_texts(records, "volume"), _first_number)
    volumes = _per_combination((raw_volumes, years), _volume)
    raw_pages = _per_distinct(_texts(records, "pages"), lambda p: p)
    feat = _Features(
        ids=_ids(records),
        **from_titles,
        numbers=titles.map(lambda t: _title_numbers(t) or _NO_NUMBERS, by_value=True),
        generic=generic,
        doi=dois,
        doi_base=bases,
        doi_code=_codes(bases),
        authors=authors,
        tokens=tokens,
        year=years,
        venue=venues,
        vtype=_per_combination(
            (venues, etypes, meetings),
            lambda venue, etype, meeting: "" if meeting else _venue_type(venue, etype),
        ),
        volume=volumes,
        issue=_strings(_issues(records)),
        page=raw_pages.map(_start_page, by_value=True),
        # From the folded venue (already accent- and punctuation-free): cheap.
        vtokens=venues.map(lambda v: [w for w in v.split() if w not in VENUE_STOP]),
        language=titles.map(_language, by_value=True),
        pages=raw_pages.map(lambda p: normalise_pages(p).lower() if p else "", by_value=True),
        page_code=np.empty(0, dtype=np.int64),
        volume_code=np.empty(0, dtype=np.int64),
        multi_title=np.empty(0, dtype=bool),
    )
    feat.page_code = _codes(feat.page)
    feat.volume_code = _codes(feat.volume)
    feat.multi_title = (feat.variants.sizes() > 1)[feat.variants.numpy_codes()]
    return feat


# An export whose issue field holds its own record numbers (an EndNote library's record
# number filed as the issue: 1,988 distinct values in 1,988 records) says nothing about
# issues. Real issue numbers repeat: a search's records share a few dozen values (1-12
# in most journals), so a source whose filled issues are nearly all distinct is not
# giving issues; its issue field is left empty (no evidence either way).
RECORD_NUMBERS_MIN = 50  # filled issues a source needs before the test is made
RECORD_NUMBERS_DISTINCT = 0.9  # share of distinct values above which they are record numbers


def _issues(records: pd.DataFrame) -> _Column:
    """The issue number of every record, '' where its source file fills the issue field
    with record numbers (see RECORD_NUMBERS_MIN)."""
    issues = _per_distinct(_texts(records, "issue"), _first_number, by_value=True)
    if "source_file" in records.columns:
        sources = _per_distinct(_texts(records, "source_file"), lambda s: s).numpy_codes()
    else:
        sources = np.zeros(len(records), dtype=np.int32)
    codes = issues.numpy_codes()
    empty = issues.values.index("") if "" in issues.values else -1
    frame = pd.DataFrame({"source": sources, "issue": codes})
    filled = frame[frame["issue"] != empty].groupby("source")["issue"]
    stats = pd.DataFrame({"n": filled.size(), "distinct": filled.nunique()})
    numbered = stats.index[
        (stats["n"] >= RECORD_NUMBERS_MIN)
        & (stats["distinct"] >= RECORD_NUMBERS_DISTINCT * stats["n"])
    ]
    if len(numbered) == 0:
        return issues
    if empty < 0:
        issues.values.append("")
        empty = len(issues.values) - 1
    codes = np.where(np.isin(sources, numbered.to_numpy()), empty, codes)
    return _Column(_code_array(codes, len(issues.values)), issues.values)


def _ids(records: pd.DataFrame) -> np.ndarray:
    """Every record's id as a numpy StringDType array: an id of up to 15 bytes is held in
    the array's 16 bytes (a list held a Python string of ~60 bytes per record, 6 MiB at
    100,000 records, for the whole run: the link store keeps the same array)."""
    ids = np.empty(len(records), dtype=StringDType())
    for start in range(0, len(records), SLICE):
        ids[start : start + SLICE] = text_column(records.iloc[start : start + SLICE], "record_id")
    return ids


def _doi_columns(dois: _Column) -> tuple[_Strings, _Strings]:
    """The DOI and its base (_doi_base) of every record as two columns sharing one
    StringDType table: the DOIs, then the bases that are no DOI of these records (a
    second table of nearly the same strings was 1.7 MiB at 100,000 records)."""
    table = list(dois.values)  # distinct (by_value)
    entry = {doi: k for k, doi in enumerate(table)}
    base_of = []
    for doi in dois.values:
        base = _doi_base(doi)
        if base not in entry:
            entry[base] = len(table)
            table.append(base)
        base_of.append(entry[base])
    del entry
    strings = np.array(table, dtype=StringDType())
    bases = np.array(base_of, dtype=np.int32)[dois.numpy_codes()]
    return _Strings(dois.codes, strings), _Strings(_code_array(bases, len(table)), strings)


def _equal_lists_shared(column: _Column) -> _Column:
    """`column` (of lists) with equal lists one table entry: author strings spelled
    differently give one list of surname keys (20,187 author strings, 7,535 lists at
    100,000 records)."""
    shared = _recoded(column.numpy_codes(), [tuple(v) for v in column.values])
    return _Column(shared.codes, [list(v) for v in shared.values])


def _volume(volume: str, year: int) -> str:
    return "" if volume and volume == str(year) else volume


_NO_NUMBERS: frozenset = frozenset()

# A heading before the title proper: up to HEADING_WORDS words, then ':', '...', or a
# dash or bar between spaces ("How did it ... <title>", "Research note: <title>").
HEADING_WORDS = 6
_HEADING_RE = re.compile(r"^(?P<head>[^:…|]+?)\s*(?::|\.\.\.|…|\s[-–—|]\s)\s*(?P<rest>.+)$")


# Web of Science prints a journal's section heading in capitals before the title, with no
# punctuation: "MEDICAL PROGRESS Atypical Hemolytic-Uremic Syndrome" (other databases give
# the title alone). Two to HEADING_WORDS words in capitals, then a word in lower or title
# case (a title wholly in capitals has no such heading).
_CAPS_HEADING_RE = re.compile(
    rf"^(?P<head>(?:[A-Z][A-Z&'-]*[A-Z]\s+){{2,{HEADING_WORDS}}})(?P<rest>[A-Z]?[a-z].*)$"
)


def _after_heading(raw: str) -> str:
    """The title key after a short heading, or '' (no heading, or too short a rest
    to name a work: >= 4 words and 20 characters)."""
    match = _HEADING_RE.match(raw) or _CAPS_HEADING_RE.match(raw)
    if not match or len(match.group("head").split()) > HEADING_WORDS:
        return ""
    rest = title_key(match.group("rest"))
    return rest if len(rest) >= 20 and len(rest.split()) >= 4 else ""


def _author_names(raw: str) -> tuple[list[str], tuple[str, ...]]:
    """Surname keys in order and all name tokens of one author field (a set, as a sorted
    tuple: a frozenset was ~370 bytes, 5 MiB for the 13,607 token sets of 100,000
    records; its readers make sets of both sides or test a few tokens)."""
    names = raw.split("; ")
    if raw and all("," in name for name in names):  # canonical "Last, F.; ..." (fast path)
        keys = [re.sub(r"[^a-z]", "", _fold(name.split(",", 1)[0])) for name in names]
    else:
        keys = author_keys(raw) if raw else []
    # Interned: a surname or token is one string object in every record's list or set
    # (names repeat across records and between the two).
    keys = [sys.intern(k) for k in keys if k and k not in _NO_AUTHOR][:MAX_AUTHORS]
    head = raw[:MAX_AUTHOR_CHARS]
    toks = {sys.intern(t) for t in _fold(head).split() if len(t) > 1 and t not in _NO_AUTHOR}
    return keys, tuple(sorted(toks - {"and", "et", "al"}))


def _codes(values: _Column) -> np.ndarray:
    """Integer codes of equal values (in order of first appearance over the records); -1
    for empty (int32: fewer distinct values than records). From the table's entries, not
    a value per record (a Python string per record of a StringDType table)."""
    first: dict[Any, int] = {}
    number = np.array(
        [-1 if v == "" else first.setdefault(v, len(first)) for v in values.values],
        dtype=np.int64,
    )[values.numpy_codes()]
    filled = number >= 0
    codes = np.full(len(number), -1, dtype=np.int32)
    codes[filled] = pd.factorize(number[filled])[0]  # renumbered in record order
    return codes


def _take(feat: _Features, idx: np.ndarray) -> _Features:
    """The features of records `idx` only (same order), e.g. one copy of each exact copy."""
    out = {}
    for f in fields(feat):
        values = getattr(feat, f.name)
        if isinstance(values, np.ndarray):
            out[f.name] = values[idx]
        elif isinstance(values, _Column):  # the codes only: tables are shared
            out[f.name] = values.take(idx)
        else:
            out[f.name] = [values[i] for i in idx.tolist()]
    return _Features(**out)


# The fields whose values must all be equal for an exact copy.
_COPY_FIELDS = (
    "title", "doi", "authors", "tokens", "year", "venue", "volume", "issue", "pages", "vtype",
)  # fmt: skip


def _exact_copy_of(feat: _Features, keep_apart: set[int]) -> np.ndarray:
    """For each record, the first record it is an exact copy of (itself when none): every
    compared field equal after normalisation and a title that names a work. Copies are
    merged without being compared pair by pair, so 100,000 copies of one record cost no
    more than one (records in `keep_apart`, named in a person's decisions, never fold).

    As integer columns: each field's table entries numbered by value (equal values, one
    number), the numbers of all fields combined into one key per record; a tuple of the
    ten values per record in a dict was ~20 MiB at 100,000 records, 15 of them kept."""
    n = len(feat.ids)
    out = np.arange(n, dtype=np.int64)
    titled = np.asarray(feat.title.values != "", dtype=bool)
    eligible = titled[feat.title.numpy_codes()] & ~feat.generic.objects(bool)
    if keep_apart:
        eligible[np.fromiter(keep_apart, dtype=np.int64, count=len(keep_apart))] = False
    rows = np.flatnonzero(eligible)
    if not len(rows):
        return out
    key = np.zeros(len(rows), dtype=np.int64)
    for name in _COPY_FIELDS:
        column = getattr(feat, name)
        if isinstance(column.values, np.ndarray):  # a StringDType table: distinct strings
            size, number = len(column.values), column.numpy_codes()[rows].astype(np.int64)
        else:
            first: dict[Any, int] = {}  # value -> its number (lists compared as tuples)
            number = np.array(
                [first.setdefault(tuple(v) if isinstance(v, list) else v, len(first))
                 for v in column.values],
                dtype=np.int64,
            )[column.numpy_codes()[rows]]  # fmt: skip
            size = len(first)
        key = pd.factorize(key * size + number)[0]  # < len(rows): never overflows
    first_row = np.unique(key, return_index=True)[1]  # keys are 0..k-1, first seen first
    out[rows] = rows[first_row[key]]
    return out
