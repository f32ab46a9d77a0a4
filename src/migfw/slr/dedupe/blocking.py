"""Candidate pairs: shared DOI and sorted neighbourhoods (never all pairs), then a
cheap vectorised title filter before any pair is scored."""

from __future__ import annotations

import shutil
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import fuzz
from rapidfuzz.process import cpdist

from migfw.scratch import scratch_dir
from migfw.slr.dedupe.features import _STOP, _Features
from migfw.slr.dedupe.scoring import PREFILTER_TITLE, TITLE_SAME, _title_sim

WINDOW = 10  # sorted-neighbourhood window (records compared with the next WINDOW-1)
DOI_GROUP_ALL_PAIRS = 60  # larger DOI groups are linked along their title order only
CHUNK = 200_000  # candidate pairs scored and decided at a time (deduplicate's `chunk`)
PREFILTER_PIECE = 25_000  # pairs pre-filtered at a time (cpdist's string copies)
PART_RECORDS = 10_000  # first records (i of i * n + j) per scratch file of candidate keys


class CandidateKeys:
    """Candidate pairs as keys i * n + j (i < j) in scratch files, one per range of
    PART_RECORDS first records (`part_records`): each sorted-neighbourhood pass's keys go
    to disk as they are made, not held until every pass is done (5 passes x 9 offsets x
    n keys, then their sorted copy, grew with the records). Partition p holds every key
    with i // part_records == p, so the partitions' sorted distinct keys, one after the
    other, are the sorted distinct keys of all: `chunks` gives the same chunks as one
    sorted array would."""

    def __init__(self, n: int, part_records: int | None = None) -> None:
        self.n = n
        per_part = max(1, part_records or PART_RECORDS)
        self.span = per_part * max(n, 1)  # keys per partition
        self.parts = max(1, -(-n // per_part))
        self._dir = scratch_dir("keys")
        # Removed on close, or when collected unclosed (as TemporaryDirectory).
        self._remove_dir = weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
        self._sizes: list[int] | None = None  # distinct keys per partition, once finished

    def _path(self, p: int) -> Path:
        return Path(self._dir) / f"{p:05d}.i8"

    def add(self, keys: np.ndarray) -> None:
        """Append keys (any order, repeats allowed) to their partitions' files."""
        if self._sizes is not None:
            raise RuntimeError("CandidateKeys: keys added after reading began")
        keys = np.sort(keys.astype(np.int64, copy=False))
        cuts = np.searchsorted(keys, np.arange(1, self.parts) * self.span).tolist()
        for p, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(keys)], strict=True)):
            if b > a:
                with open(self._path(p), "ab") as handle:
                    keys[a:b].tofile(handle)

    def _finish(self) -> list[int]:
        """Each partition's file rewritten as its sorted distinct keys."""
        if self._sizes is None:
            self._sizes = []
            for p in range(self.parts):
                path = self._path(p)
                keys = np.unique(np.fromfile(path, dtype=np.int64)) if path.exists() else None
                if keys is not None:
                    keys.tofile(path)
                self._sizes.append(0 if keys is None else len(keys))
        return self._sizes

    def __len__(self) -> int:
        return sum(self._finish())

    def partitions(self) -> Iterator[np.ndarray]:
        """The sorted distinct keys, one partition at a time, in order."""
        for p, size in enumerate(self._finish()):
            if size:
                yield np.fromfile(self._path(p), dtype=np.int64)

    def chunks(self, size: int) -> Iterator[np.ndarray]:
        """The sorted distinct keys in pieces of `size` (the last may be shorter): the
        pieces keys[0:size], keys[size:2 * size], ... of the whole sorted array."""
        held: list[np.ndarray] = []
        count = 0
        for part in self.partitions():
            held.append(part)
            count += len(part)
            if count < size:
                continue
            joined = np.concatenate(held)
            full = len(joined) - len(joined) % size
            for k in range(0, full, size):
                yield joined[k : k + size]
            held, count = [joined[full:]], len(joined) - full
            del joined
        if count:
            yield np.concatenate(held)

    def close(self) -> None:
        self._remove_dir()


def _neighbour_keys(
    order: np.ndarray, window: int, n: int, page: np.ndarray | None
) -> Iterator[np.ndarray]:
    """Keys (see `_pair_keys`) of the pairs (order[k], order[k+d]) for d < window, one
    array per d; with `page`, only pairs on the same start page."""
    for d in range(1, min(window, len(order))):
        a, b = order[:-d], order[d:]
        if page is not None:
            same = page[a] == page[b]
            a, b = a[same], b[same]
        yield _pair_keys(a, b, n)


def _sorted_records(keys: pa.Array, records: np.ndarray) -> np.ndarray:
    """`records` in order of (key, record): the keys are one Arrow string array (UTF-8
    bytes sort in code point order, as Python's strings do), not a list of (str, int)
    tuples (five such lists were the peak at 100,000 records)."""
    table = pa.table({"key": keys, "record": records})
    index = pc.sort_indices(table, sort_keys=[("key", "ascending"), ("record", "ascending")])
    return records[index.to_numpy()]


def _candidate_keys(feat: _Features) -> CandidateKeys:
    """Candidate pairs as keys i * n + j (i < j) on disk (see CandidateKeys; the caller
    closes it): a quarter of the memory of the (i, j) rows, which `deduplicate` makes
    one chunk at a time."""
    found = CandidateKeys(len(feat.ids))
    try:
        _find_candidates(feat, found)
    except BaseException:
        found.close()
        raise
    return found


def _find_candidates(feat: _Features, found: CandidateKeys) -> None:

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

    for k, (keys, records) in enumerate(key_passes()):
        if len(records) < 2:
            continue
        order = _sorted_records(keys, records)
        del keys
        # Locator passes: only pairs on the same start page are worth scoring.
        for block in _neighbour_keys(order, WINDOW, n, feat.page_code if k >= 3 else None):
            found.add(block)
        del order
        # Each pass's Arrow keys and sort buffers: Arrow's pool keeps freed pages until
        # asked, so the passes' buffers piled up (100,000 records: blocking's peak +78 ->
        # +61 MiB over its start; glibc's heap is handed back after blocking, by the caller).
        pa.default_memory_pool().release_unused()
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
        found.add(_pair_keys(doi[:, 0], doi[:, 1], n))


def _pair_keys(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Pairs (a[k], b[k]) in any order as flat keys i * n + j with i < j; self-pairs
    dropped."""
    low, high = np.minimum(a, b), np.maximum(a, b)
    keep = low != high
    return low[keep] * n + high[keep]


def _prefilter_mask(feat: _Features, pairs: np.ndarray) -> np.ndarray:
    """Cheap vectorised title filter before the per-pair rules, as a mask over `pairs`: keep
    pairs with similar titles, a shared DOI, or one title that is the other truncated. In
    pieces of PREFILTER_PIECE pairs: the string lists and their copies stay small."""
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
    return keep
