"""Candidate pairs: shared DOI and sorted neighbourhoods (never all pairs), then a
cheap vectorised title filter before any pair is scored."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import fuzz
from rapidfuzz.process import cpdist

from migfw.slr.dedupe.features import _STOP, _Features
from migfw.slr.dedupe.scoring import PREFILTER_TITLE, TITLE_SAME, _title_sim

WINDOW = 10  # sorted-neighbourhood window (records compared with the next WINDOW-1)
DOI_GROUP_ALL_PAIRS = 60  # larger DOI groups are linked along their title order only
CHUNK = 200_000  # candidate pairs scored and decided at a time (deduplicate's `chunk`)
PREFILTER_PIECE = 25_000  # pairs pre-filtered at a time (cpdist's string copies)


def _neighbour_keys(order: np.ndarray, window: int, n: int, page: np.ndarray | None) -> list:
    """Keys (see `_pair_keys`) of the pairs (order[k], order[k+d]) for d < window, one
    array per d; with `page`, only pairs on the same start page."""
    out = []
    for d in range(1, min(window, len(order))):
        a, b = order[:-d], order[d:]
        if page is not None:
            same = page[a] == page[b]
            a, b = a[same], b[same]
        out.append(_pair_keys(a, b, n))
    return out


def _sorted_records(keys: pa.Array, records: np.ndarray) -> np.ndarray:
    """`records` in order of (key, record): the keys are one Arrow string array (UTF-8
    bytes sort in code point order, as Python's strings do), not a list of (str, int)
    tuples (five such lists were the peak at 100,000 records)."""
    table = pa.table({"key": keys, "record": records})
    index = pc.sort_indices(table, sort_keys=[("key", "ascending"), ("record", "ascending")])
    return records[index.to_numpy()]


def _candidate_pairs(feat: _Features) -> np.ndarray:
    """Candidate pairs (i, j), i < j, in (i, j) order."""
    keys = _candidate_keys(feat)
    n = len(feat.ids)
    return np.stack([keys // n, keys % n], axis=1)


def _candidate_keys(feat: _Features) -> np.ndarray:
    """Candidate pairs as sorted unique keys i * n + j (i < j): a quarter of the memory
    of the (i, j) rows, which `deduplicate` makes one chunk at a time."""

    def strip_stop(t: str) -> str:
        return " ".join(w for w in t.split() if w not in _STOP)

    n = len(feat.ids)
    everyone = np.arange(n, dtype=np.int64)
    sort_title = [strip_stop(t) for t in feat.title]
    # A record with a bracketed translated title sorts under each of its titles, so its
    # copies in either language become neighbours.
    extra = [(i, strip_stop(v)) for i, variants in enumerate(feat.variants) for v in variants[1:]]
    title_records = np.concatenate([everyone, np.array([i for i, _ in extra], dtype=np.int64)])
    title_keys = pa.array(sort_title + [v for _, v in extra], type=pa.string())
    del extra

    def strings(texts, size: int) -> pa.Array:
        return pa.array(texts, type=pa.string(), size=size)

    def key_passes():
        """Each sorted-neighbourhood pass's (keys, records), built one at a time."""
        yield title_keys, title_records
        yield pc.utf8_reverse(title_keys), title_records  # typos at a title's start
        first = ((a[0] if a else "~", y, t) for a, y, t in zip(feat.authors, feat.year,
                 sort_title, strict=True))  # fmt: skip
        yield strings((f"{a} {y:04d} {t}" for a, y, t in first), n), everyone
        # Locators: records without a usable title (empty, "Editorial", or in another
        # language) still meet their copies through volume + start page + year.
        vol, page, year, authors = feat.volume, feat.page, feat.year, feat.authors
        has = np.array([i for i in range(n) if vol[i] and page[i]], dtype=np.int64)
        texts = (f"{vol[i]} {page[i]} {year[i]:04d}" for i in has.tolist())
        yield strings(texts, len(has)), has
        has = np.array([i for i in range(n) if authors[i] and page[i]], dtype=np.int64)
        texts = (f"{authors[i][0]} {year[i]:04d} {page[i]}" for i in has.tolist())
        yield strings(texts, len(has)), has

    blocks = []
    for k, (keys, records) in enumerate(key_passes()):
        if len(records) < 2:
            continue
        order = _sorted_records(keys, records)
        del keys
        # Locator passes: only pairs on the same start page are worth scoring.
        blocks += _neighbour_keys(order, WINDOW, n, feat.page_code if k >= 3 else None)
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
        doi = np.array(doi_pairs, dtype=np.int64)
        blocks.append(_pair_keys(doi[:, 0], doi[:, 1], n))
    return _unique(blocks)


def _unique(blocks: list[np.ndarray]) -> np.ndarray:
    """Sorted distinct values of the arrays in `blocks` (emptied): copied into one array
    block by block, sorted in place, so at most one extra block is held beside it."""
    keys = np.empty(sum(len(b) for b in blocks), dtype=np.int64)
    at = 0
    while blocks:
        block = blocks.pop()
        keys[at : at + len(block)] = block
        at += len(block)
        del block
    if not len(keys):
        return keys
    keys.sort()
    keep = np.empty(len(keys), dtype=bool)
    keep[0] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


def _pair_keys(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Pairs (a[k], b[k]) in any order as flat keys i * n + j with i < j; self-pairs
    dropped."""
    low, high = np.minimum(a, b), np.maximum(a, b)
    keep = low != high
    return low[keep] * n + high[keep]


def _prefilter(feat: _Features, pairs: np.ndarray) -> np.ndarray:
    """Cheap vectorised title filter before the per-pair rules: keep pairs with similar
    titles, a shared DOI, or one title that is the other truncated. In pieces of
    PREFILTER_PIECE pairs: the string lists and their copies stay small."""
    if len(pairs) <= PREFILTER_PIECE:
        return _prefilter_piece(feat, pairs)
    pieces = range(0, len(pairs), PREFILTER_PIECE)
    return np.concatenate([_prefilter_piece(feat, pairs[k : k + PREFILTER_PIECE]) for k in pieces])


def _prefilter_piece(feat: _Features, pairs: np.ndarray) -> np.ndarray:
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
