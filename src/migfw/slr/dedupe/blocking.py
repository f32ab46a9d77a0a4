"""Candidate pairs: shared DOI and sorted neighbourhoods (never all pairs), then a
cheap vectorised title filter before any pair is scored."""

from __future__ import annotations

import shutil
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import fuzz
from rapidfuzz.process import cpdist

from migfw.scratch import scratch_dir
from migfw.slr.dedupe.columns import _Column
from migfw.slr.dedupe.features import _STOP, _Features
from migfw.slr.dedupe.heap import return_heap
from migfw.slr.dedupe.scoring import PREFILTER_TITLE, TITLE_SAME, _title_sim

WINDOW = 10  # sorted-neighbourhood window (records compared with the next WINDOW-1)
DOI_GROUP_ALL_PAIRS = 60  # larger DOI groups are linked along their title order only
CHUNK = 200_000  # candidate pairs scored and decided at a time (deduplicate's `chunk`)
PREFILTER_PIECE = 25_000  # pairs pre-filtered at a time (cpdist's string copies)
PART_RECORDS = 10_000  # first records (i of i * n + j) per scratch file of candidate keys
KEY_SLICE = 10_000  # records (or distinct titles) whose sort keys are made at a time


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


def _sorted_records(keys: pa.Array | np.ndarray, records: np.ndarray) -> np.ndarray:
    """`records` in order of (key, record): the keys are one Arrow string array (UTF-8
    bytes sort in code point order, as Python's strings do), not a list of (str, int)
    tuples (five such lists were the peak at 100,000 records), or integer ranks."""
    if isinstance(keys, np.ndarray):
        return records[np.lexsort((records, keys))]
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
    # Sort titles made once per distinct title, and integer sort keys (ranks) where they
    # give the strings' order: a list of n new strings, n-long key strings per pass and a
    # dict of DOI groups grew with the records (200,000: blocking +173 MiB over the
    # features, in process; now +72 at its peak, the candidate keys' finish).
    titles = feat.title.values
    # A record with a bracketed translated title sorts under each of its titles, so its
    # copies in either language become neighbours.
    extra = [
        (i, strip_stop(v)) for i in np.flatnonzero(feat.multi_title).tolist()
        for v in feat.variants[i][1:]
    ]  # fmt: skip
    # The sort titles of the distinct titles, then of the extra titles, in one Arrow
    # array (`table`); a record's is entry `codes[i]` (extra title k: len(titles) + k).
    table = pa.chunked_array([
        *(pa.array([strip_stop(t) for t in titles[k : k + KEY_SLICE]], type=pa.string())
          for k in range(0, len(titles), KEY_SLICE)),
        pa.array([v for _, v in extra], type=pa.string()),
    ], type=pa.string())  # fmt: skip
    codes = feat.title.numpy_codes().astype(np.int64)
    sort_title = (table, codes)
    title_records = np.concatenate([everyone, np.array([i for i, _ in extra], dtype=np.int64)])
    title_at = np.concatenate([codes, len(titles) + np.arange(len(extra), dtype=np.int64)])
    del extra
    pa.default_memory_pool().release_unused()  # the builders' buffers

    authors = _arrow(feat.authors.map(lambda a: a[0] if a else "~"))  # first author's key
    year = _arrow(feat.year.map(lambda y: f"{y:04d}"))

    def key_passes():
        """Each sorted-neighbourhood pass's (keys, records), built one at a time."""
        # The title passes sort the records by their title's rank among the distinct
        # sort titles: the same order as sorting their titles (n strings at 200,000
        # records: +73 MiB for the first pass's keys).
        yield _ranks(table)[title_at], title_records
        yield _ranks(pc.utf8_reverse(table))[title_at], title_records  # typos at the start
        yield _keys([authors, year, sort_title], everyone), everyone
        # Locators: records without a usable title (empty, "Editorial", or in another
        # language) still meet their copies through volume + start page + year.
        # (codes, not a list of record numbers: -1 = no volume / page)
        has = np.flatnonzero((feat.volume_code >= 0) & (feat.page_code >= 0))
        yield _keys([_arrow(feat.volume), _arrow(feat.page), year], has), has
        named = feat.authors.map(bool)
        has = np.flatnonzero(np.array(named.values, dtype=bool)[named.numpy_codes()]
                             & (feat.page_code >= 0))  # fmt: skip
        yield _keys([authors, year, _arrow(feat.page)], has), has

    for k, (keys, records) in enumerate(key_passes()):
        if len(records) < 2:
            continue
        order = _sorted_records(keys, records)
        del keys
        # Locator passes: only pairs on the same start page are worth scoring.
        for block in _neighbour_keys(order, WINDOW, n, feat.page_code if k >= 3 else None):
            found.add(block)
        del order
        # Each pass's Arrow keys and sort buffers, and the neighbours' numpy arrays:
        # Arrow's pool and glibc's heap keep freed pages until asked, so the passes'
        # buffers piled up (200,000 records: the third pass's keys on +93 MiB over
        # blocking's start when only Arrow's pool was asked).
        return_heap()
    doi = _doi_pairs(feat.doi_code, lambda members: table.take(pa.array(codes[members])))
    if len(doi[0]):
        found.add(_pair_keys(doi[0], doi[1], n))


def _doi_pairs(code: np.ndarray, title_keys: Callable[[np.ndarray], pa.Array]) -> tuple:
    """Pairs (a, b) of records sharing a DOI (`code` >= 0): all pairs of a group of at
    most DOI_GROUP_ALL_PAIRS records, else neighbours in the order of their sort titles
    (`title_keys` of a group's records), ties in record order. Integer arrays, groups of
    one size at a time (a dict of Python lists per DOI grew with the records)."""
    with_doi = np.flatnonzero(code >= 0)
    order = with_doi[np.argsort(code[with_doi], kind="stable")]  # members ascending
    group = code[order]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if len(order) else order
    sizes = np.diff(np.r_[starts, len(order)])
    left, right = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for size in np.unique(sizes[(sizes >= 2) & (sizes <= DOI_GROUP_ALL_PAIRS)]).tolist():
        members = order[starts[sizes == size][:, None] + np.arange(size)]
        a, b = np.triu_indices(size, 1)
        left.append(members[:, a].ravel())
        right.append(members[:, b].ravel())
    for start, size in zip(starts.tolist(), sizes.tolist(), strict=True):
        if size > DOI_GROUP_ALL_PAIRS:  # a DOI shared by a whole volume
            ordered = _sorted_records(title_keys(order[start : start + size]),
                                      order[start : start + size])  # fmt: skip
            left.append(ordered[:-1])
            right.append(ordered[1:])
    return np.concatenate(left).astype(np.int64), np.concatenate(right).astype(np.int64)


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _ranks(table: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Each entry's rank among the distinct values of `table` (equal values, equal rank;
    Arrow's string order, as in _sorted_records)."""
    return pc.rank(table, sort_keys="ascending", tiebreaker="dense").to_numpy()


def _arrow(column: _Column) -> tuple[pa.Array, np.ndarray]:
    """A column as its table of values in Arrow (as str) and its codes."""
    values = column.values
    table = pa.array((str(v) for v in values), type=pa.string(), size=len(values))
    return table, column.numpy_codes()


def _keys(columns: list[tuple[Any, np.ndarray]], at: np.ndarray) -> Any:
    """Sort keys of the records `at` by their joined values: integer ranks where they
    give the joined strings' order, else the strings."""
    ranks = _joined_ranks(columns, at)
    return ranks if ranks is not None else _joined(columns, at)


def _joined_ranks(columns: list[tuple[Any, np.ndarray]], at: np.ndarray) -> np.ndarray | None:
    """Integer sort keys of the records `at` in the order of their `_joined` strings, or
    None when that order is not the columns' order: a column's value followed by a
    space sorts as the value alone when no value before the last column holds a space
    or a control character (one is then never the other plus a space), so the joined
    strings sort by the first column, then the next... (n joined strings at 200,000
    records: +23 MiB for the third pass's keys)."""
    for table, _ in columns[:-1]:
        if pc.any(pc.match_substring_regex(table, "[\\x00- ]")).as_py():
            return None
    ranks = [_ranks(table)[codes[at]] for table, codes in columns]
    # One key: the ranks' combined order (lexsort: last key first).
    order = np.lexsort(ranks[::-1])
    key = np.empty(len(at), dtype=np.int64)
    same = np.ones(len(at), dtype=bool)  # equal joined strings: one key
    if len(at):
        sorted_ranks = [r[order] for r in ranks]
        same[1:] = np.all([r[1:] == r[:-1] for r in sorted_ranks], axis=0)
        same[0] = False
        key[order] = np.cumsum(~same)
    return key


def _joined(columns: list[tuple[Any, np.ndarray]], at: np.ndarray) -> pa.ChunkedArray:
    """The records `at`'s values of `columns` (see _arrow), joined by spaces (as
    f"{a} {b}"), made in Arrow: strings made in Python one by one went through a growing
    builder (200,000 records: +53 MiB for the third pass's keys)."""
    chunks = []
    for k in range(0, len(at), KEY_SLICE):  # (no n-long copy of each column's strings)
        parts = [table.take(pa.array(codes[at[k : k + KEY_SLICE]])) for table, codes in columns]
        chunks.append(_array(pc.binary_join_element_wise(*parts, " ")))
    return pa.chunked_array(chunks, type=pa.string())


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
