"""Pair evidence: true conflicts (rules) and the weighted evidence of each field."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from difflib import SequenceMatcher

from rapidfuzz import fuzz

from migfw.slr.dedupe.features import _Features
from migfw.slr.dedupe.linkrows import _distinct_row, _state
from migfw.slr.dedupe.result import DISTINCT, DUPLICATE, MAYBE
from migfw.slr.dedupe.siblings import _notice_of, _one_work, _republication, _republished
from migfw.slr.normalise import split_pages, venue_abbreviation_match

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
    if a[0] in feat.tokens[j] or b[0] in feat.tokens[i]:
        return True
    # A surname with a particle split at the particle by one database (Ovid MEDLINE's
    # "Goicoechea de, Jorge E." and "Le, Quintrec M." for "de Jorge, E. G." and "Le
    # Quintrec, M."): the other's surname key is two of these name words joined.
    return _joined(a[0], feat.tokens[j]) or _joined(b[0], feat.tokens[i])


def _joined(key: str, tokens: Collection[str]) -> bool:
    """`key` is two name words of `tokens` written together ('dejorge': 'de' + 'jorge')."""
    names = set(tokens)  # (a tuple from the features: one look-up per token, not a scan)
    return any(key[len(t) :] in names for t in names if len(t) < len(key) and key.startswith(t))


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
    if ratio >= TITLE_SAME or len(short) < 20 or len(short.split()) < 4:
        return ratio, False
    # A dropped subtitle or a cut-off title: the shorter (>= 4 words) must match the
    # longer up to a word boundary (+-1 character: a typo may have added or dropped a
    # letter near the cut). Or a dropped heading ("How did it ... <title>").
    n = len(short)
    start_kept = fuzz.ratio(short, long_[:n]) >= TITLE_SAME and " " in long_[n - 1 : n + 2]
    end_kept = a == feat.tail[j] or b == feat.tail[i]
    return ratio, start_kept or end_kept


# Elsevier DOIs name the journal: 10.1016/j.<code>.<year>... ("j.appet" is Appetite).
_JOURNAL_CODE_RE = re.compile(r"^10\.1016/j\.([a-z]+)\.")


def _code_fits(code: str, words: list[str]) -> bool:
    """Can `code` be spelled from prefixes of `words` in order, skipping any word
    ("regpep" from "regulatory peptides")? Many real codes cannot ("jss" is the Journal
    of Surgical Research), so a misfit alone says nothing."""
    ends = {0}  # positions of `code` reachable after the words so far
    for word in words:
        nxt = set(ends)
        for k in ends:
            n = 0
            while n < len(word) and k + n < len(code) and word[n] == code[k + n]:
                n += 1
                nxt.add(k + n)
        ends = nxt
        if len(code) in ends:
            return True
    return len(code) in ends


def _doi_misfiled(feat: _Features, i: int, j: int) -> bool:
    """Two different DOIs on records of one venue, where one DOI's journal code spells
    that venue and the other's does not: the other is a DOI of another journal filed on
    this record by a database (it names another work's journal), not evidence of two
    works. Publishers whose DOIs carry no journal code never take this path."""
    codes = [_JOURNAL_CODE_RE.match(feat.doi[k]) for k in (i, j)]
    if not all(codes) or not feat.venue[i] or not feat.venue[j]:
        return False
    a, b = codes[0].group(1), codes[1].group(1)
    one_venue = feat.venue[i] == feat.venue[j] or venue_abbreviation_match(
        feat.vtokens[i], feat.vtokens[j]
    )
    if a == b or not one_venue:
        return False
    fits = [_code_fits(c, feat.venue[k].split()) for c, k in ((a, i), (b, j))]
    fits_other = [_code_fits(c, feat.venue[k].split()) for c, k in ((a, j), (b, i))]
    # Exactly one code spells the (shared) venue, as seen from both records.
    return (fits[0] and fits_other[0]) != (fits[1] and fits_other[1])


def _conflicts(feat: _Features, i: int, j: int) -> list[str]:
    """True contradictions: two different works whatever the other fields say (used for
    pairs and for cluster checks). Fields that exports fill inconsistently (pages,
    volume, issue, a year or two) are weighed in `_evidence` instead."""
    out = []
    same_doi = bool(feat.doi_base[i]) and feat.doi_base[i] == feat.doi_base[j]
    if feat.doi_base[i] and feat.doi_base[j] and not same_doi and not _doi_misfiled(feat, i, j):
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
    parts = split_pages(pages, maxsplit=1)
    # "c37-c42" (Nephron Clinical Practice's prefix) vs "37-42", as for the start page.
    return re.sub(r"^[a-z]{1,2}(?=\d)", "", parts[1].strip()) if len(parts) == 2 else ""


def _article_number_as_issue(feat: _Features, i: int, j: int) -> bool:
    """One copy's issue is the other's start page: an electronic article number filed
    as the issue by one database (Embase: issue 791, no pages; the publisher: issue 3,
    page 791). Not two issues of the journal."""
    return bool(
        (feat.issue[i] and feat.issue[i] == feat.page[j] and feat.issue[i] != feat.page[i])
        or (feat.issue[j] and feat.issue[j] == feat.page[i] and feat.issue[j] != feat.page[j])
    )


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
    elif (
        issue == "differ"
        and max(map(len, (feat.issue[i], feat.issue[j]))) <= 3
        and not _article_number_as_issue(feat, i, j)
    ):
        w["issue"] = W_ISSUE["differ"]
    locator = page == "equal" and vol != "differ" and (vol == "equal" or v_sim >= 0.8)
    return _Evidence(
        t_sim, t_prefix, a_sim, v_sim, w, sum(w.values()), _conflicts(feat, i, j), locator
    )


@dataclass(frozen=True)
class Params:
    """How the model's score becomes a decision. `method` "splink": the pair's match
    weight (linkage.py) against `match`/`review`; "evidence": the hand-set weights above
    against MATCH/REVIEW. Chosen by the leave-one-dataset-out evaluation
    (scripts/bench_dedupe.py), never by in-sample scores."""

    method: str = "splink"
    match: float = 0.0  # match weight 0: posterior odds 1:1, match probability 0.5
    review: float = -6.0  # down to match probability ~0.015: a person decides
    guard: str = "evidence"  # cluster check: "evidence" (conflicts and evidence) or "conflicts"


DEFAULT = Params()
TITLE_CLOSE = 90.0  # below this (and not truncated or a translation) two titles differ


def _same_doi(feat: _Features, i: int, j: int) -> bool:
    return bool(feat.doi_base[i]) and feat.doi_base[i] == feat.doi_base[j]


def _start_pages_differ(feat: _Features, i: int, j: int) -> bool:
    return bool(feat.page[i] and feat.page[j]) and feat.page[i] != feat.page[j]


_SWAP_STOP = frozenset(
    "a an and the of for in on at to with by from as or its is are be via into using use "
    "der die das und le la les des et".split()
)
SWAP_WORD_SIM = 60.0  # below this two swapped words are two words, not a typo or spelling


def _word_swapped(a: str, b: str) -> bool:
    """Two title keys that are one title with content words swapped for other words
    ("... in Pediatric Patients ..." / "... in Adult Patients ...", "men" / "women"):
    every difference is a one-for-one swap of dissimilar words (not a typo, spelling
    variant or abbreviation: those are alike or one is a prefix of the other), apart
    from words added at the end (a subtitle or acronym). One title, two populations:
    two works, however close the whole titles are."""
    if a == b:
        return False
    wa, wb = a.split(), b.split()
    if min(len(wa), len(wb)) < 4:
        return False
    swapped = False
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, wa, wb, autojunk=False).get_opcodes():
        if tag == "equal" or (tag in ("insert", "delete") and (i2 == len(wa) or j2 == len(wb))):
            continue
        if tag != "replace" or i2 - i1 != 1 or j2 - j1 != 1:
            return False
        x, y = wa[i1], wb[j1]
        if (
            x in _SWAP_STOP or y in _SWAP_STOP or min(len(x), len(y)) < 3
            or x.isdigit() or y.isdigit()  # numbers: `_title_numbers`
            or x.startswith(y) or y.startswith(x) or fuzz.ratio(x, y) >= SWAP_WORD_SIM
        ):  # fmt: skip
            return False
        swapped = True
    return swapped


def _titles_differ(feat: _Features, ev: _Evidence, i: int, j: int) -> bool:
    """Two informative titles that disagree beyond a variant (typo, punctuation,
    subtitle or truncation, bracketed translation), or that are one title with a word
    swapped for another: no venue evidence outweighs this."""
    informative = feat.title[i] and feat.title[j] and not (feat.generic[i] or feat.generic[j])
    if not informative:
        return False
    if ev.t_sim < TITLE_CLOSE and not ev.t_prefix:
        return True
    return _word_swapped(feat.title[i], feat.title[j])


def _title_shared(feat: _Features, i: int, j: int) -> bool:
    """The same title key, or one of them given beside the other in brackets."""
    return feat.title[i] == feat.title[j] or bool(set(feat.variants[i]) & set(feat.variants[j]))


def _translation(feat: _Features, ev: _Evidence, i: int, j: int) -> bool:
    """Titles in two languages (by their function words), or one in MEDLINE's brackets
    of a translated title and one not (the original, or another database's
    translation), on the same item: the same authors, year, venue, volume and whole page
    range (start and end), no other issue. Different works never share all of these, so
    the title is a variant here."""
    li, lj = feat.language[i], feat.language[j]
    ends = [_end_page(feat.pages[k]) for k in (i, j)]
    return bool(
        ((li and lj and li != lj) or feat.bracketed[i] != feat.bracketed[j])
        and ev.weights.get("authors") == W_AUTHORS["same"]
        and feat.year[i] and feat.year[i] == feat.year[j]
        and ev.v_sim >= 0.8
        and feat.volume[i] and feat.volume[i] == feat.volume[j]
        and feat.page[i] and feat.page[i] == feat.page[j]
        and all(ends) and ends[0] == ends[1]
        and ev.weights.get("issue", 0) >= 0
    )  # fmt: skip


def _score_pair(
    feat: _Features, i: int, j: int, weight: float | None = None, params: Params = DEFAULT
) -> dict:
    """Decide one candidate pair; return the link row (without record ids). `weight`:
    the linkage model's match weight for the pair (params.method "splink")."""
    if (
        weight is not None
        and weight < params.review
        and not (_same_doi(feat, i, j) or _notice_of(feat, i, j) or _republished(feat, i, j))
    ):
        return _distinct_row(feat, i, j, weight)  # most candidates: no evidence to weigh
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
        elif (t_sim >= TITLE_DOI_AGREE or t_prefix) and _start_pages_differ(feat, i, j):
            # Abstracts of one supplement can share its DOI: a person decides.
            decision, rule = MAYBE, "doi-shared-pages-differ"
        elif t_sim >= TITLE_DOI_AGREE or t_prefix:
            decision, rule = DUPLICATE, "doi+title"
        else:
            decision, rule = DISTINCT, "doi-shared-titles-differ"
        if decision == DUPLICATE:
            score = max(score, MATCH + 5)
    elif (
        "doi" in conflicts
        and set(conflicts) <= {"doi", "notice"}
        and (one_work := _one_work(feat, i, j))
    ):
        decision, rule = DUPLICATE, one_work
    elif conflicts == ["doi"] and _republication(feat, i, j):
        # Two DOIs on one informative title by one author list in one venue: a
        # republication (SLR practice: a duplicate for screening) or a sibling item
        # with a reused title of another length; a person decides.
        decision, rule = MAYBE, "conflict:doi; same title, authors and venue"
    elif set(conflicts) <= {"doi", "notice"} and _notice_of(feat, i, j):
        # An erratum/retraction titled after this item in another issue: one work for
        # screening or a separate notice; a person decides.
        decision, rule = MAYBE, "conflict:" + "+".join(conflicts) + "; notice of this title"
    elif conflicts:
        decision, rule = DISTINCT, "conflict:" + "+".join(conflicts)
    else:
        decided_by = "model"
        if weight is not None:
            score, match, review = weight, params.match, params.review
            rule = f"splink:{weight:+.1f}"
        else:
            match, review = MATCH, REVIEW
            rule = "evidence:" + "".join(
                f"{'+' if v > 0 else '-'}{k}" for k, v in ev.weights.items() if v
            ).lstrip("+")
        if score >= match:
            decision = DUPLICATE
        elif score >= review:
            decision = MAYBE
        else:
            decision = DISTINCT
        if _titles_differ(feat, ev, i, j) and _translation(feat, ev, i, j):
            rule += "; title translated"  # the model decides, as for any variant
        elif _titles_differ(feat, ev, i, j):
            # Different titles: the other fields can send the pair to a person at most.
            if decision == DUPLICATE:
                decision, rule = MAYBE, rule + "; titles differ"
            elif decision == MAYBE:
                decision, rule = DISTINCT, rule + "; titles differ"
        elif (
            decision == DUPLICATE
            and (generic or not feat.title[i] or not feat.title[j])
            and not (ev.weights["authors"] > 0 and ev.locator)
        ):
            # No usable title and no shared DOI: the venue and its locators alone never
            # merge (a person decides); the same authors on the same page may.
            decision, rule = MAYBE, rule + "; no usable title"
        elif decision == DUPLICATE and ev.a_sim < 0 and not _title_shared(feat, i, j):
            # Nothing names the same people (a side has no authors, or names in a script
            # the name keys cannot read) and the titles are close, not equal: a near
            # title plus venue and locators is the sibling-item case again; a person
            # decides. Equal titles, or one title bracketed beside the other (a copy
            # without its author list), still merge.
            decision, rule = MAYBE, rule + "; near title, no authors to compare"
        elif decision == DUPLICATE and yi and yj and abs(yi - yj) == 2:
            # Two years apart (more is a conflict): a reprint, a later version or a
            # misdated copy; the fields cannot tell, a person can.
            decision, rule = MAYBE, rule + "; years two apart"
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
