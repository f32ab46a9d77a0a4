"""Deduplicate bibliographic records into linked clusters (`migfw slr dedupe`).

Nothing is deleted: every imported record keeps its provenance and is assigned to a
cluster; each cluster gets one merged record; every compared pair is written out with
the rule that decided it and the per-field evidence, so a reviewer can audit each merge.

Fields are evidence with a reliability, not vetoes (a false merge silently loses a
study, a missed duplicate inflates the counts):
  * true conflicts block: different DOIs, journal vs conference version, an erratum /
    retraction / comment vs the item it is about, different part numbers, years more
    than two apart;
  * equal DOIs merge when the titles agree (a proceedings-volume DOI or a book DOI
    shared by chapters with different titles never merges them);
  * otherwise each field adds a weight (W_* below): title and authors strongly, year,
    venue (ISO 4/NLM abbreviations and acronyms count as the same venue), volume and
    start page as locators, issue only when it looks like an issue number (some exports
    put an accession number there); >= MATCH merges, REVIEW..MATCH goes to a person;
  * clusters are grown link by link and every new member is checked against every
    member already in the cluster, so a chain A~B~C cannot join contradicting A and C;
  * a person's same/different decisions override all of this (decided_by = person).

Candidate pairs come from blocking, never from all pairs: shared DOI, and sorted
neighbourhoods on the title key (every title variant), the reversed title key, first
author + year, and the locators (volume + start page + year, first author + start page).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rapidfuzz import fuzz
from rapidfuzz.process import cpdist

from migfw.errors import MigfwError
from migfw.io import atomic_write, write_csv
from migfw.slr.normalise import (
    VENUE_STOP,
    author_keys,
    normalise_doi,
    normalise_pages,
    strip_accents,
    title_key,
    title_variants,
    venue_abbreviation_match,
)

__all__ = [
    "CANONICAL_COLUMNS",
    "DedupeResult",
    "deduplicate",
    "library_records",
    "load_dedupe_decisions",
    "register_cli",
    "review_table",
    "write_ris",
]

CANONICAL_COLUMNS = [
    "record_id", "source_file", "source_index", "database", "format", "entry_type", "title",
    "authors", "year", "doi", "venue", "volume", "issue", "pages", "abstract", "keywords",
    "publisher", "issn", "isbn", "url", "language",
]  # fmt: skip

LINK_COLUMNS = [
    "record_a", "record_b", "decision", "score", "evidence", "rule", "decided_by", "title_sim",
    "author_sim",
    "venue_sim", "doi", "year", "pages", "volume", "issue", "venue_type",
]  # fmt: skip

# Decisions written to links.csv.
DUPLICATE = "duplicate"  # link accepted: both records are in one cluster
DISTINCT = "distinct"  # evidence says these are different works
MAYBE = "maybe"  # similar, not merged: too little evidence either way (manual check)
BLOCKED = "blocked"  # pair looked like a duplicate, but joining would put contradicting
#                      records in one cluster

WINDOW = 10  # sorted-neighbourhood window (records compared with the next WINDOW-1)
DOI_GROUP_ALL_PAIRS = 60  # larger DOI groups are linked along their title order only
CHUNK = 200_000  # candidate pairs pre-filtered at a time (bounds temporary memory)
PREFILTER_TITLE = 80.0  # candidate pairs below this title ratio are not scored further
TITLE_SAME = 95.0  # fuzzy-title threshold for a duplicate without a shared DOI
TITLE_EXACTISH = 98.0  # stricter threshold used when a field is missing on one side
TITLE_DOI_AGREE = 80.0  # title agreement needed to accept an equal DOI
AUTHOR_SAME = 0.8  # share of the shorter author list matched in the longer one

# Evidence model (no DOI shared): each field adds or subtracts weight according to how
# reliably real exports fill it. Title and authors are strong; year, venue, volume and
# start page are locators that databases usually agree on; issue/number is nearly
# worthless (some exports put the database's accession number there), so it can add a
# little but never subtracts. Calibrated on bib-dedupe's digital_work set, its pair and
# special cases, CiteSource's set and synthetic copies of real records corrupted the ways
# exports differ (scripts/bench_dedupe.py). A pair scoring >= MATCH is merged, one
# between REVIEW and MATCH goes to a person (dedupe_review.csv), below REVIEW is distinct.
MATCH = 5.0
REVIEW = 3.0
GUARD = 0.0  # a cluster may not hold two members whose pair evidence is below this
_LOCATORS = ("year", "volume", "issue", "pages")
W_TITLE = {"exact": 4.0, "same": 3.0, "truncated": 2.0, "close": 1.0, "similar": -1.0,
           "differs": -1.5, "missing": 0.0}  # fmt: skip
W_AUTHORS = {"same": 2.0, "most": 1.0, "few": -2.0, "differ": -4.0, "missing": -1.0}
W_YEAR = {"equal": 1.0, "off1_journal": -0.5, "off1_conference": -2.0, "off1": -1.0,
          "off2": -3.0, "missing": -0.5}  # fmt: skip
W_VENUE = {"same": 1.0, "differ": -1.0}
W_VOLUME = {"equal": 1.0, "differ": -2.0}
# Start pages first; two full ranges with the same start but different ends are two
# items (a recurring "Editorial introduction" on page 1 of every issue).
W_PAGES = {"equal": 1.5, "differ": -2.5, "end_differs": -3.0}
# A differing issue/number only counts when both look like issue numbers (<= 3 digits;
# accession numbers are longer): then it is another issue of the journal (a recurring
# column, "Editor's comments" in every issue; journals that restart pages every issue).
W_ISSUE = {"equal": 0.25, "differ": -5.0}

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
_CONF_TYPES = frozenset({"inproceedings", "conference", "proceedings", "conf", "cpaper"})
_JOUR_TYPES = frozenset({"article", "jour", "journal", "journal article", "ejour"})
_COCHRANE_RE = re.compile(r"^(10\.1002/14651858\.[a-z]{2}\d+)(?:\.pub\d+)?$")


@dataclass
class DedupeResult:
    """Output of `deduplicate`: nothing is dropped, everything is traceable."""

    clusters: pd.DataFrame  # record_id, cluster_id (one row per input record)
    links: pd.DataFrame  # one row per scored candidate pair (LINK_COLUMNS)
    merged: pd.DataFrame  # one row per cluster
    stats: dict = field(default_factory=dict)


# ---------------------------------------------------------------- per-record features


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
    vtokens: list[list[str]]  # venue words for abbreviation matching
    notice: list[bool]  # erratum / retraction / comment / reply
    pages: list[str]  # whole normalised range
    page_code: np.ndarray  # start page as integer codes, -1 = none
    volume_code: np.ndarray  # volume as integer codes, -1 = none
    multi_title: np.ndarray  # record has more than one title variant


def _text(frame: pd.DataFrame, column: str) -> list[str]:
    if column not in frame.columns:
        return [""] * len(frame)
    return ["" if pd.isna(v) else str(v) for v in frame[column].tolist()]


def _features(records: pd.DataFrame) -> _Features:
    raw_titles = _text(records, "title")
    titles = [title_key(t) for t in raw_titles]
    venues = [_fold(v) for v in _text(records, "venue")]
    etypes = _text(records, "entry_type")
    dois = []
    for raw in _text(records, "doi"):
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
    authors, tokens = [], []
    for raw in _text(records, "authors"):
        names = raw.split("; ")
        if raw and all("," in name for name in names):  # canonical "Last, F.; ..." (fast path)
            keys = [re.sub(r"[^a-z]", "", _fold(name.split(",", 1)[0])) for name in names]
        else:
            keys = author_keys(raw) if raw else []
        keys = [k for k in keys if k and k not in _NO_AUTHOR]
        authors.append(keys)
        toks = {t for t in _fold(raw).split() if len(t) > 1 and t not in _NO_AUTHOR}
        tokens.append(frozenset(toks - {"and", "et", "al"}))
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
        ids=_text(records, "record_id"),
        title=titles,
        numbers=[_title_numbers(t) for t in titles],
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
                (_first_number(v) for v in _text(records, "volume")), years, strict=True
            )
        ],
        issue=[_first_number(v) for v in _text(records, "issue")],
        page=[_start_page(p) for p in _text(records, "pages")],
        variants=[
            title_variants(t) if "[" in t else [k] for t, k in zip(raw_titles, titles, strict=True)
        ],
        # From the folded venue (already accent- and punctuation-free): cheap.
        vtokens=[[w for w in v.split() if w not in VENUE_STOP] for v in venues],
        notice=[bool(_NOTICE_RE.match(t)) for t in titles],
        pages=[normalise_pages(p).lower() if p else "" for p in _text(records, "pages")],
        page_code=np.empty(0, dtype=np.int64),
        volume_code=np.empty(0, dtype=np.int64),
        multi_title=np.empty(0, dtype=bool),
    )
    feat.page_code = _codes(feat.page)
    feat.volume_code = _codes(feat.volume)
    feat.multi_title = np.array([len(v) > 1 for v in feat.variants], dtype=bool)
    return feat


def _codes(values: list[str]) -> np.ndarray:
    """Integer codes of equal values; -1 for empty."""
    return pd.factorize(pd.Series(values, dtype=object).replace("", None))[0]


# ---------------------------------------------------------------- blocking


def _neighbour_pairs(order: np.ndarray, window: int) -> np.ndarray:
    """Pairs (order[k], order[k+d]) for d < window, as a (n, 2) array."""
    chunks = []
    for d in range(1, min(window, len(order))):
        chunks.append(np.stack([order[:-d], order[d:]], axis=1))
    return np.concatenate(chunks) if chunks else np.empty((0, 2), dtype=np.int64)


def _candidate_pairs(feat: _Features) -> np.ndarray:
    def strip_stop(t: str) -> str:
        return " ".join(w for w in t.split() if w not in _STOP)

    sort_title = [strip_stop(t) for t in feat.title]
    # (key, record) entries; a record with a bracketed translated title sorts under each
    # of its titles, so its copies in either language become neighbours.
    title_entries = [(t, i) for i, t in enumerate(sort_title)]
    for i, variants in enumerate(feat.variants):
        title_entries.extend((strip_stop(v), i) for v in variants[1:])
    keys: list[list[tuple[str, int]]] = [
        title_entries,
        [(t[::-1], i) for t, i in title_entries],  # catches typos at the start of a title
        [
            (f"{a[0] if a else '~'} {y:04d} {t}", i)
            for i, (a, y, t) in enumerate(zip(feat.authors, feat.year, sort_title, strict=True))
        ],
        # Locators: records without a usable title (empty, "Editorial", or in another
        # language) still meet their copies through volume + start page + year.
        [
            (f"{v} {p} {y:04d}", i)
            for i, (v, p, y) in enumerate(zip(feat.volume, feat.page, feat.year, strict=True))
            if v and p
        ],
        [
            (f"{a[0]} {y:04d} {p}", i)
            for i, (a, y, p) in enumerate(zip(feat.authors, feat.year, feat.page, strict=True))
            if a and p
        ],
    ]
    blocks = []
    for k, entries in enumerate(keys):
        if len(entries) < 2:
            continue
        entries.sort()
        order = np.array([i for _, i in entries], dtype=np.int64)
        pairs = _neighbour_pairs(order, WINDOW)
        if k >= 3:  # locator passes: only pairs on the same start page are worth scoring
            code = feat.page_code
            pairs = pairs[code[pairs[:, 0]] == code[pairs[:, 1]]]
        blocks.append(pairs)
    by_doi: dict[str, list[int]] = {}
    for i, doi in enumerate(feat.doi_base):
        if doi:
            by_doi.setdefault(doi, []).append(i)
    doi_pairs = []
    for members in by_doi.values():
        if len(members) < 2:
            continue
        if len(members) <= DOI_GROUP_ALL_PAIRS:
            doi_pairs.extend((a, b) for k, a in enumerate(members) for b in members[k + 1 :])
        else:  # a DOI shared by a whole volume: neighbours in title order suffice
            ordered = sorted(members, key=sort_title.__getitem__)
            doi_pairs.extend(zip(ordered, ordered[1:], strict=False))
    if doi_pairs:
        blocks.append(np.array(doi_pairs, dtype=np.int64))
    if not blocks:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.concatenate(blocks)
    pairs = np.sort(pairs, axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0)


# ---------------------------------------------------------------- pair scoring


def _containment(a: Iterable[str], b: Iterable[str]) -> float:
    """Share of the smaller name set found (exactly or fuzzily) in the larger one."""
    a, b = set(a), set(b)
    small, big = (a, b) if len(a) <= len(b) else (b, a)
    hits = sum(1 for t in small if t in big or any(fuzz.ratio(t, u) >= 85 for u in big))
    return hits / len(small)


def _author_sim(feat: _Features, i: int, j: int) -> float:
    """-1 when a side has no authors. Surnames first (robust to author lists cut to 3 by
    a database), then all name tokens (robust to names split the wrong way round)."""
    if not feat.tokens[i] or not feat.tokens[j]:
        return -1.0
    by_surname = (
        _containment(feat.authors[i], feat.authors[j])
        if feat.authors[i] and feat.authors[j]
        else 0.0
    )
    if by_surname == 1.0:
        return 1.0
    return max(by_surname, _containment(feat.tokens[i], feat.tokens[j]))


def _first_author_agrees(feat: _Features, i: int, j: int) -> bool:
    a, b = feat.authors[i], feat.authors[j]
    if not a or not b:
        return True
    if fuzz.ratio(a[0], b[0]) >= 85:
        return True
    # Name order mixed up by one database ("Reynoso, Gómez" vs "Gómez Reynoso").
    return a[0] in feat.tokens[j] or b[0] in feat.tokens[i]


def _title_sim(feat: _Features, i: int, j: int) -> tuple[float, bool]:
    """(ratio 0-100, is_prefix): is_prefix when one title is the other truncated."""
    a, b = feat.title[i], feat.title[j]
    if not a or not b:
        return 0.0, False
    ratio = fuzz.ratio(a, b)
    if ratio < TITLE_EXACTISH and (len(feat.variants[i]) > 1 or len(feat.variants[j]) > 1):
        # 'English title [Original title]' against either language's copy.
        ratio = max(fuzz.ratio(u, v) for u in feat.variants[i] for v in feat.variants[j])
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    # A dropped subtitle or a cut-off title: the shorter (>= 4 words) must match the
    # longer up to a word boundary.
    prefix = (
        ratio < TITLE_SAME
        and len(short) >= 20
        and len(short.split()) >= 4
        and fuzz.ratio(short, long_[: len(short)]) >= TITLE_SAME
        # (+-1 character: a typo may have added or dropped a letter near the cut)
        and " " in long_[len(short) - 1 : len(short) + 2]
    )
    return ratio, prefix


def _conflicts(feat: _Features, i: int, j: int) -> list[str]:
    """True contradictions: two different works whatever the other fields say (used for
    pairs and for cluster checks). Fields that exports fill inconsistently (pages,
    volume, issue, a year or two) are weighed in `_evidence` instead."""
    out = []
    same_doi = bool(feat.doi_base[i]) and feat.doi_base[i] == feat.doi_base[j]
    if feat.doi_base[i] and feat.doi_base[j] and not same_doi:
        out.append("doi")
    if same_doi:
        return out  # the DOI identifies the work; field disagreements are export noise
    yi, yj = feat.year[i], feat.year[j]
    vi, vj = feat.vtype[i], feat.vtype[j]
    # "Part I"/"Part II", "... 2019"/"... 2020": one differing number, two works.
    # (A number present on one side only may just be a truncated subtitle.)
    if feat.numbers[i] - feat.numbers[j] and feat.numbers[j] - feat.numbers[i]:
        out.append("title_numbers")
    if vi and vj and vi != vj:
        out.append("venue_type")  # conference paper vs its journal version
    if feat.notice[i] != feat.notice[j]:
        out.append("notice")  # erratum/retraction/comment vs the item it is about
    if yi and yj and abs(yi - yj) > 2:
        out.append("year")
    return out


def _end_page(pages: str) -> str:
    """End page of a normalised range ('221-228' -> '228'); '' when there is none."""
    parts = re.split(r"\s*[-–—]+\s*", pages, maxsplit=1)
    return parts[1].strip() if len(parts) == 2 else ""


def _state(a: str, b: str) -> str:
    if not a and not b:
        return "missing"
    if not a or not b:
        return "one-missing"
    return "equal" if a == b else "differ"


def _venue_sim(feat: _Features, i: int, j: int) -> float:
    """0-1, or -1 when a side has no venue; 1 when one is an ISO 4/NLM abbreviation or
    an acronym of the other ('J Clin Epidemiol' ~ 'Journal of Clinical Epidemiology')."""
    if not feat.venue[i] or not feat.venue[j]:
        return -1.0
    sim = fuzz.token_set_ratio(feat.venue[i], feat.venue[j]) / 100
    if sim < 0.8 and venue_abbreviation_match(feat.vtokens[i], feat.vtokens[j]):
        return 1.0
    return sim


@dataclass
class _Evidence:
    t_sim: float
    t_prefix: bool
    a_sim: float
    v_sim: float
    weights: dict[str, float]  # field -> weight it contributed
    score: float
    conflicts: list[str]
    locator: bool  # same start page and volume (or one volume missing)


def _evidence(feat: _Features, i: int, j: int) -> _Evidence:
    """Weigh every field of a pair (see the W_* tables at the top)."""
    t_sim, t_prefix = _title_sim(feat, i, j)
    a_sim = _author_sim(feat, i, j)
    v_sim = _venue_sim(feat, i, j)
    generic = feat.generic[i] or feat.generic[j]
    w: dict[str, float] = {}
    if generic:
        w["title"] = W_TITLE["missing"]
    elif t_sim >= TITLE_EXACTISH:
        w["title"] = W_TITLE["exact"]
    elif t_sim >= TITLE_SAME:
        w["title"] = W_TITLE["same"]
    elif t_prefix:
        w["title"] = W_TITLE["truncated"]
    elif t_sim >= 90:
        w["title"] = W_TITLE["close"]
    elif t_sim >= PREFILTER_TITLE:
        w["title"] = W_TITLE["similar"]
    else:
        w["title"] = W_TITLE["differs"]
    if a_sim < 0:
        w["authors"] = W_AUTHORS["missing"]
    elif not _first_author_agrees(feat, i, j):
        w["authors"] = W_AUTHORS["few"] if a_sim >= AUTHOR_SAME else W_AUTHORS["differ"]
    elif a_sim >= 0.9:
        w["authors"] = W_AUTHORS["same"]
    elif a_sim >= AUTHOR_SAME:
        w["authors"] = W_AUTHORS["most"]
    elif a_sim >= 0.5:
        w["authors"] = W_AUTHORS["few"]
    else:
        w["authors"] = W_AUTHORS["differ"]
    yi, yj = feat.year[i], feat.year[j]
    if not (yi and yj):
        w["year"] = W_YEAR["missing"]
    elif yi == yj:
        w["year"] = W_YEAR["equal"]
    elif abs(yi - yj) == 1:
        # Online-first vs issue year (journals); conference year vs proceedings year.
        types = {feat.vtype[i], feat.vtype[j]} - {""}
        kind = "off1_" + types.pop() if len(types) == 1 else "off1"
        w["year"] = W_YEAR[kind]
    else:
        w["year"] = W_YEAR["off2"]
    if v_sim >= 0:
        w["venue"] = W_VENUE["same"] if v_sim >= 0.8 else W_VENUE["differ"]
    vol = _state(feat.volume[i], feat.volume[j])
    if vol in ("equal", "differ"):
        w["volume"] = W_VOLUME[vol]
    # Online-first versions have no volume and pages "1-n": no evidence either way.
    online_first = (feat.page[i] == "1" and not feat.volume[i]) or (
        feat.page[j] == "1" and not feat.volume[j]
    )
    page = _state(feat.page[i], feat.page[j])
    if page in ("equal", "differ") and not (page == "differ" and online_first):
        w["pages"] = W_PAGES[page]
        if page == "equal":
            ends = [_end_page(feat.pages[k]) for k in (i, j)]
            if all(ends) and ends[0] != ends[1]:
                w["pages"] = W_PAGES["end_differs"]
    issue = _state(feat.issue[i], feat.issue[j])
    if issue == "equal":
        w["issue"] = W_ISSUE["equal"]
    elif issue == "differ" and max(map(len, (feat.issue[i], feat.issue[j]))) <= 3:
        w["issue"] = W_ISSUE["differ"]
    locator = page == "equal" and vol != "differ" and (vol == "equal" or v_sim >= 0.8)
    return _Evidence(
        t_sim, t_prefix, a_sim, v_sim, w, sum(w.values()), _conflicts(feat, i, j), locator
    )


def _score_pair(feat: _Features, i: int, j: int) -> dict:
    """Decide one candidate pair; return the link row (without record ids)."""
    ev = _evidence(feat, i, j)
    t_sim, t_prefix, a_sim, conflicts = ev.t_sim, ev.t_prefix, ev.a_sim, ev.conflicts
    yi, yj = feat.year[i], feat.year[j]
    doi_state = _state(feat.doi[i], feat.doi[j])
    same_doi = bool(feat.doi_base[i]) and feat.doi_base[i] == feat.doi_base[j]
    if doi_state == "differ" and same_doi:
        doi_state = "same-base"  # Cochrane review versions
    generic = feat.generic[i] or feat.generic[j]
    decided_by = "rule"
    score = ev.score
    if same_doi:
        if feat.title[i] == feat.title[j] and feat.title[i]:
            decision, rule = DUPLICATE, "doi+title-equal"
        elif not feat.title[i] or not feat.title[j]:
            # A DOI with no title on one side: the authors and year must not object.
            ok = ev.weights["authors"] >= W_AUTHORS["missing"] and ev.weights["year"] > -1
            decision, rule = (DUPLICATE, "doi+(no title)") if ok else (MAYBE, "doi-title-missing")
        elif generic:
            # "Editorial" with one DOI: the other fields must carry it.
            decision, rule = (
                (DUPLICATE, "doi+fields(title uninformative)")
                if ev.score >= MATCH
                else (MAYBE, "doi-equal-title-uninformative")
            )
        elif t_sim >= TITLE_DOI_AGREE or t_prefix:
            decision, rule = DUPLICATE, "doi+title"
        else:
            decision, rule = DISTINCT, "doi-shared-titles-differ"
        if decision == DUPLICATE:
            score = max(score, MATCH + 5)
    elif conflicts:
        decision, rule = DISTINCT, "conflict:" + "+".join(conflicts)
    else:
        decided_by = "model"
        rule = "evidence:" + "".join(
            f"{'+' if v > 0 else '-'}{k}" for k, v in ev.weights.items() if v
        ).lstrip("+")
        if score >= MATCH:
            decision = DUPLICATE
        elif score >= REVIEW:
            decision = MAYBE
        else:
            decision = DISTINCT
        if decision == DUPLICATE and ev.weights["title"] <= 0 and not ev.locator:
            # No usable title: only the locator (volume + start page) can identify it.
            decision, rule = MAYBE, rule + "; no title and no locator"
    row = {
        "decision": decision,
        "score": round(score, 2),
        "rule": rule,
        "decided_by": decided_by,
        "title_sim": round(t_sim / 100, 4),
        "author_sim": round(a_sim, 4) if a_sim >= 0 else "",
        "venue_sim": round(ev.v_sim, 4) if ev.v_sim >= 0 else "",
        "doi": doi_state,
        "year": f"{yi or ''}|{yj or ''}",
        "pages": _state(feat.page[i], feat.page[j]),
        "volume": _state(feat.volume[i], feat.volume[j]),
        "issue": _state(feat.issue[i], feat.issue[j]),
        "venue_type": f"{feat.vtype[i]}|{feat.vtype[j]}",
    }
    row["evidence"] = (
        "; ".join(f"{k}={v:+g}" for k, v in ev.weights.items())
        + f"; total={ev.score:+g}; title_sim={row['title_sim']}; doi={doi_state}"
        + (f"; conflicts={'+'.join(conflicts)}" if conflicts else "")
    )
    return row


# ---------------------------------------------------------------- clustering


class _Clusters:
    """Union-find whose unions are vetoed when any cross-pair contradicts."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.members: dict[int, list[int]] = {i: [i] for i in range(n)}
        self.apart: set[frozenset] = set()  # pairs a person called different

    def force_union(self, i: int, j: int) -> None:
        """A person's 'same': joined without the machine's checks."""
        ri, rj = self.find(i), self.find(j)
        if ri == rj:
            return
        if len(self.members[ri]) < len(self.members[rj]):
            ri, rj = rj, ri
        self.parent[rj] = ri
        self.members[ri].extend(self.members.pop(rj))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def try_union(self, feat: _Features, i: int, j: int) -> str:
        """Join the clusters of i and j; return '' or the reason it was refused."""
        ri, rj = self.find(i), self.find(j)
        if ri == rj:
            return ""
        for a in self.members[ri]:
            for b in self.members[rj]:
                if frozenset((a, b)) in self.apart:
                    return f"cluster-conflict:{feat.ids[a]}~{feat.ids[b]}:person-different"
                conflicts = _conflicts(feat, a, b)
                same_doi = bool(feat.doi_base[a]) and feat.doi_base[a] == feat.doi_base[b]
                if not conflicts and not same_doi:
                    ev = _evidence(feat, a, b)
                    # Below the merge threshold, a member that contradicts another on a
                    # locator (year, volume, issue, pages) is a sibling item, not a copy.
                    against = [k for k in _LOCATORS if ev.weights.get(k, 0) < W_YEAR["missing"]]
                    if ev.score < GUARD or (ev.score < MATCH and against):
                        conflicts = [f"evidence{ev.score:+g}", *against]
                if conflicts:
                    return f"cluster-conflict:{feat.ids[a]}~{feat.ids[b]}:" + "+".join(conflicts)
        if len(self.members[ri]) < len(self.members[rj]):
            ri, rj = rj, ri
        self.parent[rj] = ri
        self.members[ri].extend(self.members.pop(rj))
        return ""


# ---------------------------------------------------------------- merged records


def _best(values: list[str], prefer_longest: bool = False) -> str:
    present = [v for v in values if v]
    if not present:
        return ""
    if prefer_longest:
        return max(present, key=len)
    counts = Counter(present)
    # Most common value; ties go to the longest (most complete) spelling.
    return max(counts, key=lambda v: (counts[v], len(v)))


def _merge_cluster(columns: dict[str, list], members: list[int]) -> dict:
    out: dict = {}
    for column, values in columns.items():
        picked = [values[m] for m in members]
        if column in ("title", "abstract", "authors", "keywords"):
            out[column] = _best(picked, prefer_longest=True)
        elif column in ("database", "source_file", "format"):
            out[column] = "; ".join(sorted({v for v in picked if v}))
        elif column == "year":
            years = [v for v in picked if v is not None]
            out[column] = Counter(years).most_common(1)[0][0] if years else None
        else:
            out[column] = _best(picked)
    return out


# ---------------------------------------------------------------- entry point


def _prefilter(feat: _Features, pairs: np.ndarray) -> np.ndarray:
    """Cheap vectorised title filter before the per-pair rules: keep pairs with similar
    titles, a shared DOI, or one title that is the other truncated."""
    left = [feat.title[i] for i in pairs[:, 0]]
    right = [feat.title[j] for j in pairs[:, 1]]
    keep = cpdist(left, right, scorer=fuzz.ratio, workers=-1) >= PREFILTER_TITLE
    codes = feat.doi_code
    keep |= (codes[pairs[:, 0]] >= 0) & (codes[pairs[:, 0]] == codes[pairs[:, 1]])
    # Same start page in the same (or an unrecorded) volume: the title may be missing,
    # uninformative or translated; the evidence model decides.
    page, vol = feat.page_code, feat.volume_code
    pa, pb, va, vb = page[pairs[:, 0]], page[pairs[:, 1]], vol[pairs[:, 0]], vol[pairs[:, 1]]
    keep |= (pa >= 0) & (pa == pb) & ((va == vb) | (va < 0) | (vb < 0))
    # Bracketed translated titles: compare every title variant.
    multi = feat.multi_title
    for k in np.flatnonzero(~keep & (multi[pairs[:, 0]] | multi[pairs[:, 1]])).tolist():
        i, j = pairs[k]
        keep[k] = _title_sim(feat, int(i), int(j))[0] >= PREFILTER_TITLE
    # Truncation: compare the shorter title with the same-length head of the longer one,
    # then confirm the few hits with the exact rule.
    rest = np.flatnonzero(~keep)
    heads_a, heads_b = [], []
    for k in rest.tolist():
        a, b = left[k], right[k]
        if len(a) > len(b):
            a, b = b, a
        heads_a.append(a)
        heads_b.append(b[: len(a)])
    if rest.size:
        head_ratio = cpdist(heads_a, heads_b, scorer=fuzz.ratio, workers=-1)
        for k in rest[head_ratio >= TITLE_SAME].tolist():
            i, j = pairs[k]
            keep[k] = _title_sim(feat, int(i), int(j))[1]
    return pairs[keep]


def deduplicate(
    records: pd.DataFrame,
    progress: bool = False,
    decisions: list[tuple[str, str, str]] | None = None,
) -> DedupeResult:
    """Cluster duplicate records; see the module docstring for the rules.

    `decisions`: a person's (record_a, record_b, "same"/"different") verdicts (see
    `load_dedupe_decisions`); they override the machine and are recorded with
    `decided_by = person`."""
    if "record_id" not in records.columns:
        raise MigfwError("records: no record_id column (expected the canonical record table)")
    records = records.reset_index(drop=True)
    ids = records["record_id"].astype(str)
    if ids.duplicated().any():
        dup = ids[ids.duplicated()].iloc[0]
        raise MigfwError(f"records: record_id {dup!r} occurs twice; record ids must be unique")
    t0 = time.perf_counter()
    feat = _features(records)
    n = len(records)
    pairs = _candidate_pairs(feat)
    n_candidates = len(pairs)
    if len(pairs):
        # Chunked, so the temporary string lists stay small at 50,000+ records.
        pairs = np.concatenate(
            [_prefilter(feat, pairs[k : k + CHUNK]) for k in range(0, len(pairs), CHUNK)]
        )

    rows = []
    row_of: dict[tuple[int, int], dict] = {}
    for i, j in pairs.tolist():
        row = _score_pair(feat, i, j)
        row["_i"], row["_j"] = i, j
        rows.append(row)
        row_of[(i, j)] = row
    groups = _Clusters(n)
    index = {rid: k for k, rid in enumerate(feat.ids)}
    for a, b, verdict in decisions or []:
        if a not in index or b not in index:
            continue  # a decision about records not in this run (checked by the loader)
        i, j = sorted((index[a], index[b]))
        row = row_of.get((i, j))
        if row is None:  # a pair the blocking never proposed: score it now
            row = _score_pair(feat, i, j)
            row["_i"], row["_j"] = i, j
            rows.append(row)
            row_of[(i, j)] = row
        row["rule"] = f"person:{verdict} (machine: {row['decision']}, {row['rule']})"
        row["decision"] = DUPLICATE if verdict == "same" else DISTINCT
        row["decided_by"] = "person"
        if verdict == "same":
            groups.force_union(i, j)
        else:
            groups.apart.add(frozenset((i, j)))
    # Strongest links first, so a weak link cannot pre-empt a DOI-backed one.
    rows.sort(key=lambda r: (not r["rule"].startswith("doi"), -r["score"]))
    for row in rows:
        if row["decision"] != DUPLICATE or row["decided_by"] == "person":
            continue
        refused = groups.try_union(feat, row["_i"], row["_j"])
        if refused:
            row["decision"], row["rule"] = BLOCKED, f"{row['rule']}; {refused}"

    # Cluster ids in order of first appearance of a member.
    root_to_cluster: dict[int, str] = {}
    cluster_of = []
    for i in range(n):
        root = groups.find(i)
        if root not in root_to_cluster:
            root_to_cluster[root] = f"C{len(root_to_cluster) + 1:06d}"
        cluster_of.append(root_to_cluster[root])
    clusters = pd.DataFrame({"record_id": ids, "cluster_id": cluster_of})

    link_rows = [
        {"record_a": feat.ids[r.pop("_i")], "record_b": feat.ids[r.pop("_j")], **r} for r in rows
    ]
    links = pd.DataFrame(link_rows, columns=LINK_COLUMNS)
    links = links.sort_values(["record_a", "record_b"], kind="stable").reset_index(drop=True)

    merged = _merged_records(records, cluster_of, feat.year)
    stats = {
        "records": n,
        "candidate_pairs": int(n_candidates),
        "scored_pairs": len(rows),
        "links": int((links["decision"] == DUPLICATE).sum()),
        "review_pairs": int((links["decision"] == MAYBE).sum()),
        "person_decisions": int((links["decided_by"] == "person").sum()),
        "clusters": len(root_to_cluster),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return DedupeResult(clusters=clusters, links=links, merged=merged, stats=stats)


def _merged_records(records: pd.DataFrame, cluster_of: list[str], years: list[int]) -> pd.DataFrame:
    """One row per cluster: field-wise best value, union of provenance, member list."""
    names = [c for c in CANONICAL_COLUMNS if c in records.columns and c != "source_index"]
    columns = {c: _text(records, c) for c in names if c != "year"}
    if "year" in records.columns:
        columns["year"] = [y or None for y in years]
    groups: dict[str, list[int]] = {}
    for index, cid in enumerate(cluster_of):
        groups.setdefault(cid, []).append(index)
    ids = columns.get("record_id") or _text(records, "record_id")
    rows = []
    for cid, members in groups.items():
        if len(members) == 1:  # most clusters: copy, don't merge
            row = {c: values[members[0]] for c, values in columns.items()}
        else:
            row = _merge_cluster(columns, members)
        # The cluster is named after its first member, so a record id stays citable.
        row["record_id"] = ids[members[0]]
        row["cluster_id"] = cid
        row["n_records"] = len(members)
        row["members"] = "; ".join(ids[m] for m in members)
        rows.append(row)
    order = ["cluster_id"] + [c for c in names if c in columns] + ["n_records", "members"]
    merged = pd.DataFrame(rows, columns=order)
    if "year" in merged.columns:
        merged["year"] = merged["year"].astype("Int64")
    return merged


# ---------------------------------------------------------------- person review

REVIEW_FIELDS = ["title", "authors", "year", "venue", "volume", "issue", "pages", "doi",
                 "database", "record_id"]  # fmt: skip
DECISION_VALUES = ("same", "different")


def review_table(result: DedupeResult, records: pd.DataFrame) -> pd.DataFrame:
    """The pairs the machine left to a person (`maybe`), both records side by side.

    Columns: record_a, record_b, leaning (the machine's guess: same/different), score
    (REVIEW <= score < MATCH unless a rule sent it), rule, evidence, then a_<field> and
    b_<field> for REVIEW_FIELDS, and an empty `decision` the reviewer fills with
    same/different. Save the edited file as the decisions file (slr.dedupe_decisions)."""
    links = result.links
    todo = links[(links["decision"] == MAYBE) & (links["decided_by"] != "person")]
    fields = [f for f in REVIEW_FIELDS if f in records.columns]
    by_id = records.set_index("record_id")[[f for f in fields if f != "record_id"]]
    out = pd.DataFrame(
        {
            "record_a": todo["record_a"].to_numpy(),
            "record_b": todo["record_b"].to_numpy(),
            "leaning": np.where(todo["score"] >= (MATCH + REVIEW) / 2, "same", "different"),
            "score": todo["score"].to_numpy(),
            "rule": todo["rule"].to_numpy(),
            "evidence": todo["evidence"].to_numpy(),
        }
    )
    for side in ("a", "b"):
        part = by_id.reindex(out[f"record_{side}"]).reset_index(drop=True)
        for f in fields:
            if f != "record_id":
                out[f"{side}_{f}"] = part[f].astype("string").fillna("").to_numpy()
    out["decision"] = ""
    return out.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def load_dedupe_decisions(
    path: str | Path, record_ids: Iterable[str]
) -> list[tuple[str, str, str]]:
    """A person's duplicate decisions: CSV with record_a, record_b, decision (same /
    different; empty rows are skipped, so the review file itself can be the input).
    A missing file means no decisions yet."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, comment=None)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise MigfwError(f"{path}: cannot read ({str(exc).splitlines()[0]})") from None
    except pd.errors.EmptyDataError:
        return []
    missing = {"record_a", "record_b", "decision"} - set(frame.columns)
    if missing:
        raise MigfwError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    known = set(record_ids)
    out = []
    for line, row in enumerate(frame.itertuples(index=False), 2):
        verdict = row.decision.strip().lower()
        if not verdict:
            continue
        if verdict not in DECISION_VALUES:
            raise MigfwError(
                f"{path}: line {line}: decision {row.decision!r} (expected same or different)"
            )
        for rid in (row.record_a.strip(), row.record_b.strip()):
            if rid not in known:
                raise MigfwError(f"{path}: line {line}: record {rid!r} is not an imported record")
        out.append((row.record_a.strip(), row.record_b.strip(), verdict))
    return out


# ---------------------------------------------------------------- library export

_RIS_TYPES = {"article": "JOUR", "inproceedings": "CPAPER", "conference": "CPAPER",
              "book": "BOOK", "incollection": "CHAP", "inbook": "CHAP", "phdthesis": "THES",
              "mastersthesis": "THES", "techreport": "RPRT", "report": "RPRT"}  # fmt: skip


def library_records(result: DedupeResult, records: pd.DataFrame) -> pd.DataFrame:
    """The deduplicated library: one row per cluster (the merged record) with the
    cluster's source databases and member record ids."""
    merged = result.merged.copy()
    # The database a record came from; its export file's name when none is known.
    dbs = _text(records, "database")
    files = [Path(f).name for f in _text(records, "source_file")]
    member_db = {
        rid: db or f for rid, db, f in zip(_text(records, "record_id"), dbs, files, strict=True)
    }
    merged["databases"] = [
        "; ".join(sorted({member_db.get(m, "") for m in members.split("; ")} - {""}))
        for members in merged["members"]
    ]
    return merged


def _ris_text(row: dict) -> Callable[[str], str]:
    def text(key: str) -> str:
        value = row.get(key)
        return "" if value is None or pd.isna(value) else str(value)

    return text


def write_ris(path: Path, library: pd.DataFrame) -> None:
    """RIS for Zotero/EndNote/ASReview: one record per cluster; N1 names the cluster,
    its databases and record ids; ID is the cluster id, C1/C2 the same as custom fields."""
    import rispy

    entries = []
    for row in library.to_dict("records"):
        text = _ris_text(row)

        entry: dict = {"type_of_reference": _RIS_TYPES.get(text("entry_type").lower(), "JOUR")}
        entry["id"] = text("cluster_id")
        if text("title"):
            entry["title"] = text("title")
        authors = [a for a in text("authors").split("; ") if a]
        if authors:
            entry["authors"] = authors
        for key, tag in (("year", "year"), ("doi", "doi"), ("venue", "secondary_title"),
                         ("volume", "volume"), ("issue", "number"), ("abstract", "abstract"),
                         ("publisher", "publisher"), ("issn", "issn"), ("url", "urls"),
                         ("language", "language")):  # fmt: skip
            value = text(key)
            if value:
                entry[tag] = [value] if tag == "urls" else value
        pages = text("pages")
        if pages:
            start, _, end = pages.partition("-")
            entry["start_page"] = start
            if end:
                entry["end_page"] = end
        keywords = [k for k in re.split(r"\s*;\s*", text("keywords")) if k]
        if keywords:
            entry["keywords"] = keywords
        entry["notes"] = [
            f"migfw cluster {text('cluster_id')}: {text('n_records')} records; "
            f"databases: {text('databases')}; record ids: {text('members')}"
        ]
        if text("databases"):
            entry["custom1"] = text("databases")
        entry["custom2"] = text("members")
        entries.append(entry)

    class _PlainRis(rispy.RisWriter):
        def set_header(self, count: int) -> str:
            return ""  # no "1." counter lines: EndNote/Zotero exports have none

    with atomic_write(path) as handle:
        handle.write(rispy.dumps(entries, implementation=_PlainRis))


# ---------------------------------------------------------------- CLI


def _run(args: argparse.Namespace) -> int:
    from migfw.slr.imports import read_exports  # S1's reader (raises MigfwError)

    records = read_exports([str(p) for p in args.files], databases=args.database)
    print(f"records imported: {len(records)}", file=sys.stderr)
    person = load_dedupe_decisions(args.decisions, records["record_id"]) if args.decisions else []
    result = deduplicate(records, decisions=person)
    out = Path(args.out)
    write_csv(out / "clusters.csv", result.clusters)
    write_csv(out / "records.csv", result.merged)
    write_csv(out / "links.csv", result.links)
    write_csv(out / "review.csv", review_table(result, records))
    library = library_records(result, records)
    write_csv(out / "library.csv", library)
    write_ris(out / "library.ris", library)
    s = result.stats
    print(
        f"candidate pairs: {s['candidate_pairs']} (scored {s['scored_pairs']}); "
        f"links: {s['links']}; clusters: {s['clusters']} "
        f"({s['records'] - s['clusters']} duplicates); {s['review_pairs']} pairs for review, "
        f"{s['person_decisions']} decided by a person; {s['seconds']} s",
        file=sys.stderr,
    )
    print(
        f"wrote {out / 'clusters.csv'}, {out / 'records.csv'}, {out / 'links.csv'}, "
        f"{out / 'review.csv'}, {out / 'library.csv'}, {out / 'library.ris'}"
    )
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "dedupe",
        help="link duplicate records into clusters (nothing is deleted)",
        description="Read exports, cluster duplicates, write clusters.csv, records.csv "
        "(one merged record per cluster) and links.csv (evidence for every compared pair).",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="export files")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--database",
        action="append",
        metavar="NAME",
        help="database of each FILE, in order (give it once per file); default: inferred",
    )
    parser.add_argument(
        "--decisions",
        type=Path,
        metavar="CSV",
        help="a person's decisions (record_a, record_b, decision = same/different), e.g. "
        "review.csv with its decision column filled; they override the machine",
    )
    parser.set_defaults(func=_run)
