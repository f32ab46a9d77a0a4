"""Candidate pairs: shared DOI and sorted neighbourhoods (never all pairs), then a
cheap vectorised title filter before any pair is scored."""

from __future__ import annotations

import numpy as np
from rapidfuzz import fuzz
from rapidfuzz.process import cpdist

from migfw.slr.dedupe.features import _STOP, _Features
from migfw.slr.dedupe.scoring import PREFILTER_TITLE, TITLE_SAME, _title_sim

WINDOW = 10  # sorted-neighbourhood window (records compared with the next WINDOW-1)
DOI_GROUP_ALL_PAIRS = 60  # larger DOI groups are linked along their title order only
CHUNK = 200_000  # candidate pairs pre-filtered at a time (bounds temporary memory)


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

    def key_passes():
        """Each sorted-neighbourhood key list in turn (built one at a time: at 100,000
        records five lists of (string, record) tuples at once were the peak)."""
        yield title_entries
        yield [(t[::-1], i) for t, i in title_entries]  # catches typos at a title's start
        yield [
            (f"{a[0] if a else '~'} {y:04d} {t}", i)
            for i, (a, y, t) in enumerate(zip(feat.authors, feat.year, sort_title, strict=True))
        ]
        # Locators: records without a usable title (empty, "Editorial", or in another
        # language) still meet their copies through volume + start page + year.
        yield [
            (f"{v} {p} {y:04d}", i)
            for i, (v, p, y) in enumerate(zip(feat.volume, feat.page, feat.year, strict=True))
            if v and p
        ]
        yield [
            (f"{a[0]} {y:04d} {p}", i)
            for i, (a, y, p) in enumerate(zip(feat.authors, feat.year, feat.page, strict=True))
            if a and p
        ]

    blocks = []
    for k, entries in enumerate(key_passes()):
        if len(entries) < 2:
            continue
        entries.sort()
        order = np.array([i for _, i in entries], dtype=np.int64)
        del entries
        pairs = _neighbour_pairs(order, WINDOW)
        if k >= 3:  # locator passes: only pairs on the same start page are worth scoring
            code = feat.page_code
            pairs = pairs[code[pairs[:, 0]] == code[pairs[:, 1]]]
        blocks.append(_pair_keys(pairs, len(feat.ids)))
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
        blocks.append(_pair_keys(np.array(doi_pairs, dtype=np.int64), len(feat.ids)))
    if not blocks:
        return np.empty((0, 2), dtype=np.int64)
    # One int64 per pair (i * n + j, i < j): unique on a flat array, in (i, j) order.
    keys = np.unique(np.concatenate(blocks))
    del blocks
    n = len(feat.ids)
    return np.stack([keys // n, keys % n], axis=1)


def _pair_keys(pairs: np.ndarray, n: int) -> np.ndarray:
    """Pairs (any order) as flat keys i * n + j with i < j; self-pairs dropped."""
    low, high = np.minimum(pairs[:, 0], pairs[:, 1]), np.maximum(pairs[:, 0], pairs[:, 1])
    keep = low != high
    return low[keep] * n + high[keep]


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
