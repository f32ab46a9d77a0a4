"""`deduplicate`: features -> candidate pairs -> pair decisions -> person's decisions ->
clusters -> merged records."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from migfw.errors import MigfwError
from migfw.slr.dedupe import linkage
from migfw.slr.dedupe.blocking import CHUNK, _candidate_keys, _prefilter_mask
from migfw.slr.dedupe.clustering import _Clusters
from migfw.slr.dedupe.features import _exact_copy_of, _Features, _features, _take
from migfw.slr.dedupe.heap import return_heap
from migfw.slr.dedupe.linkrows import _distinct_rows
from migfw.slr.dedupe.linkstore import LinkStore, compact
from migfw.slr.dedupe.merging import _merged_records
from migfw.slr.dedupe.result import (
    DISTINCT,
    DUPLICATE,
    LINK_COLUMNS,
    MAYBE,
    DedupeResult,
    text_column,
)
from migfw.slr.dedupe.scoring import (
    DEFAULT,
    MATCH,
    Params,
    _score_pair,
)
from migfw.slr.dedupe.siblings import _notice_of, _republished

# Pre-filtered pairs decided (rules, link rows) at a time: each piece's rows are dicts
# until written (100,000 records: 20,000 pairs +20-27 MiB, 5,000 +8-12, same speed).
RULES_PIECE = 5_000
# At most this many pre-filtered pairs per Splink call (a chunk's pairs in equal
# pieces): the share of candidates that pass the pre-filter grows with the records (9 %
# at 25,000, 21 % at 100,000: ~18,000 and ~42,000 pairs per chunk), and each call's
# working memory (DuckDB's join, the predictions, the rules' heap) grows with its pairs.
SCORE_PIECE = 25_000
# Candidate pairs per link file (at most one chunk's): links.csv is written a file at a
# time, and a file's rows grow with the share of candidates kept (see SCORE_PIECE).
LINK_BUCKET = 50_000


def deduplicate(
    records: pd.DataFrame,
    progress: bool = False,
    decisions: list[tuple[str, str, str]] | None = None,
    params: Params = DEFAULT,
    model: dict | None = None,
    db_api: Any = None,
    apart_by: str | None = None,
    chunk: int = CHUNK,
    fallback: dict | None = None,
) -> DedupeResult:
    """Cluster duplicate records; see the module docstring for the rules.

    `decisions`: a person's (record_a, record_b, "same"/"different") verdicts (see
    `load_dedupe_decisions`); they override the machine and are recorded with
    `decided_by = person`. `params`: method and thresholds (scoring.Params); `model`: a
    trained linkage model (default: trained on `records`, see linkage.py; `fallback`, or
    the shipped model, when they are too few to train on); `db_api`: the
    Splink backend that trains and scores it (default: DuckDB in this process; a
    `splink.SparkAPI` runs the same model on Spark, see docs/slr_dedupe.md).
    `apart_by`: a column naming already-deduplicated sets (CoLRev's `search_set`, or
    `source_file` when each export was deduplicated on its own): records with the same
    non-empty value are never merged by the machine, not even identical ones (`rule`
    `same-set`); a person's 'same' still joins them. `chunk`: candidate pairs
    pre-filtered, scored and decided at a time (bounds the memory of every per-pair
    stage; the result does not depend on it)."""
    if chunk < 1:
        raise MigfwError(f"chunk: {chunk} candidate pairs; give at least 1")
    if "record_id" not in records.columns:
        raise MigfwError("records: no record_id column (expected the canonical record table)")
    records = records.reset_index(drop=True)
    ids = records["record_id"].astype(str)
    if ids.duplicated().any():
        dup = ids[ids.duplicated()].iloc[0]
        raise MigfwError(f"records: record_id {dup!r} occurs twice; record ids must be unique")
    sets = None
    if apart_by is not None:
        if apart_by not in records.columns:
            raise MigfwError(f"records: no column {apart_by!r} to keep deduplicated sets apart")
        sets = text_column(records, apart_by)
    t0 = time.perf_counter()
    feat = _features(records)
    n = len(records)
    # Record numbers by id, for a person's decisions only (a dict per record otherwise).
    index = {rid: k for k, rid in enumerate(feat.ids)} if decisions else {}
    named = {index[r] for a, b, _ in decisions or [] for r in (a, b) if r in index}
    if sets is not None:
        # Identical records of one set are two works by the set's own account: no folding.
        named |= {k for k, v in enumerate(sets) if v}
    copy_of = _exact_copy_of(feat, named)
    reps = np.flatnonzero(copy_of == np.arange(n))
    # Blocking and scoring see one record per set of exact copies (numbered 0..len(reps)).
    sub = _take(feat, reps)
    return_heap()  # the exact-copy keys' freed heap, before training
    # The model first (trained here when none is given): its peak then does not sit on
    # top of the candidate keys.
    scorer = linkage.PairScorer(sub, model, db_api, fallback) if params.method == "splink" else None
    decided = {
        tuple(sorted((index[a], index[b]))) for a, b, _ in decisions or []
        if a in index and b in index
    }  # fmt: skip
    m = max(len(reps), 1)
    keys = None
    try:
        keys = _candidate_keys(sub)  # on disk, a partition of first records at a time
        # The features of the representatives are a copy of `feat`'s codes: the scorer
        # drops it once its record table is built (the first chunk); the pre-filter
        # reads the same values in `feat` at the records' own indices.
        del sub
        return_heap()  # blocking's freed sort keys and pair arrays
        first_counts = np.zeros(n, dtype=np.int64)  # candidate pairs per first record
        for part in keys.partitions():
            first_counts += np.bincount(reps[part // m], minlength=n)
        n_candidates = len(keys)
        store = LinkStore(feat.ids, first_counts, -(-n_candidates // min(chunk, LINK_BUCKET)))
        del first_counts
        pairs_of = _ChunkPairs(feat, sets, decided, params, store)
        # Chunks of candidate pairs: pre-filter, model, rules, link rows to disk; only
        # the pairs that may join clusters (and those a person decided) stay in memory.
        # (One Splink call per chunk: each has a fixed cost, ~0.6 s at 100,000 records;
        # scoring 200,000 pre-filtered pairs at once cost 130 MiB more there.)
        for block in keys.chunks(chunk):
            pairs = np.stack([block // m, block % m], axis=1)
            del block
            pairs = pairs[_prefilter_mask(feat, reps[pairs])]
            for scored in _pieces(pairs, SCORE_PIECE):
                weights = scorer.score(scored)[0] if scorer is not None else None
                # Decided RULES_PIECE pairs at a time: each decided pair's row is a dict
                # until its piece's frame is written.
                for k in range(0, max(len(scored), 1), RULES_PIECE):
                    piece = scored[k : k + RULES_PIECE]
                    pairs_of.add(
                        reps[piece] if len(piece) else piece,
                        weights[k : k + RULES_PIECE] if weights is not None else None,
                    )
                    del piece
                del scored, weights
            del pairs
            return_heap()  # each chunk's Arrow/DuckDB buffers, not kept for the next
    finally:
        if scorer is not None:
            scorer.close()
        if keys is not None:
            keys.close()
    del keys
    return_heap()  # the scorer's database and the chunks' freed heap
    held = pairs_of.held
    groups = _Clusters(n, sets)
    for a, b, verdict in decisions or []:
        if a not in index or b not in index:
            continue  # a decision about records not in this run (checked by the loader)
        i, j = sorted((index[a], index[b]))
        row = held.get((i, j))
        if row is None:  # a pair the blocking never proposed: score it now
            row = _score_pair(feat, i, j)
            row["_i"], row["_j"] = i, j
            held[(i, j)] = row
        row["rule"] = f"person:{verdict} (machine: {row['decision']}, {row['rule']})"
        row["decision"] = DUPLICATE if verdict == "same" else DISTINCT
        row["decided_by"] = "person"
        if verdict == "same":
            groups.force_union(i, j)
        else:
            groups.apart.add(frozenset((i, j)))
    # Strongest links first, so a weak link cannot pre-empt a DOI-backed one.
    # Ties in input order, so the first of equal candidates wins (deterministic).
    dup_i, dup_j, dup_score, dup_doi = pairs_of.duplicates()
    blocked = 0
    for k in np.lexsort((dup_j, dup_i, -dup_score, ~dup_doi)).tolist():
        i, j = int(dup_i[k]), int(dup_j[k])
        refused = groups.try_union(feat, i, j, params.guard == "evidence")
        if refused:
            store.block(i, j, refused)
            blocked += 1
    store.add(_rows_frame(list(held.values())))

    # Exact copies join their first copy's cluster (no check needed: nothing differs).
    copies = np.flatnonzero(copy_of != np.arange(n))
    for k in range(0, len(copies), chunk):
        rows = []
        for i in copies[k : k + chunk].tolist():
            groups.force_union(int(copy_of[i]), i)
            rows.append(_copy_row(feat, int(copy_of[i]), i))
        store.add(_rows_frame(rows))

    # Cluster ids in order of first appearance of a member: a cluster number per record
    # and one Arrow string per cluster (not a Python string per record).
    cluster_of, _ = pd.factorize(groups.roots())
    names = cluster_names(int(cluster_of.max()) + 1 if n else 0)
    clusters = pd.DataFrame({"record_id": ids, "cluster_id": _str_array(names.take(cluster_of))})

    counts = pairs_of.counts
    person = [row["decision"] for row in held.values()]
    stats = {
        "records": n,
        "candidate_pairs": int(n_candidates),
        "exact_copies": len(copies),
        "scored_pairs": store.rows,
        "links": counts[DUPLICATE] - blocked + person.count(DUPLICATE) + len(copies),
        "review_pairs": counts[MAYBE],
        "person_decisions": len(held),
        "clusters": len(names),
        "method": params.method,
    }
    # The merged records need the years only: the other features (and everything that
    # refers to them) are freed and their heap handed back first, so the merged records
    # are not built on top of the per-record features.
    years = feat.year
    del feat, scorer, pairs_of, groups, held, index, copy_of, reps
    return_heap()
    merged = _merged_records(records, cluster_of, _str_array(names), years)
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    return DedupeResult(clusters=clusters, links=store, merged=merged, stats=stats)


def cluster_names(count: int) -> pa.Array:
    """C000001, C000002, ... (`count` of them, as f"C{k:06d}") as one Arrow array."""
    numbers = pa.array(np.arange(1, count + 1, dtype=np.int64)).cast(pa.string())
    return pc.binary_join_element_wise("C", pc.utf8_lpad(numbers, width=6, padding="0"), "")


def _str_array(values: pa.Array) -> pd.api.extensions.ExtensionArray:
    """Arrow strings as pandas' default string column, without a Python object each."""
    return pd.array(values, dtype=pd.StringDtype("pyarrow", na_value=np.nan))


def _pieces(pairs: np.ndarray, most: int) -> list[np.ndarray]:
    """`pairs` in order, cut into the fewest equal pieces of at most `most` rows (one
    empty piece when there are none, as the rules expect a call per chunk)."""
    count = max(1, -(-len(pairs) // max(1, most)))
    return np.array_split(pairs, count)


def _copy_row(feat: _Features, i: int, j: int) -> dict:
    """The link row of an exact copy: the pair's evidence, decided by the copy rule."""
    row = _score_pair(feat, i, j)
    row.update(_i=i, _j=j, decision=DUPLICATE, rule="exact-copy", decided_by="rule")
    row["score"] = max(row["score"], MATCH + 5)
    return row


def _rows_frame(rows: list[dict]) -> pd.DataFrame:
    return compact(pd.DataFrame(rows, columns=[*LINK_COLUMNS[2:], "_i", "_j"]))


class _ChunkPairs:
    """Decides one chunk of pre-filtered candidate pairs (record indices) at a time:
    pairs the model puts below the review band (no shared DOI, no set rule, no person's
    decision) as columns, the rest by the rules. Rows go to the LinkStore except those
    a person decided (`held` until the decisions are applied); the machine's duplicates
    are kept as arrays for the cluster step; `counts` per decision."""

    def __init__(
        self, feat: _Features, sets: list[str] | None, decided: set, params: Params,
        store: LinkStore,
    ) -> None:  # fmt: skip
        self.feat, self.sets, self.decided, self.params = feat, sets, decided, params
        self.store = store
        # Per-record arrays the pair masks index, built once for all chunks.
        self.notice = feat.notice.objects(bool)
        self.titles = feat.title.numpy_codes()  # (one code per distinct title key)
        self.set_of = np.asarray(sets, dtype=object) if sets is not None else None
        self.held: dict[tuple[int, int], dict] = {}
        self.counts: Counter = Counter()
        self._dups: list[tuple[np.ndarray, ...]] = []

    def add(self, pairs: np.ndarray, weights: np.ndarray | None) -> None:
        feat, sets = self.feat, self.sets
        low = np.zeros(len(pairs), dtype=bool)
        if weights is not None and len(pairs):
            code = feat.doi_code
            low = (weights < self.params.review) & ~(
                (code[pairs[:, 0]] >= 0) & (code[pairs[:, 0]] == code[pairs[:, 1]])
            )
            # A notice titled after the other record goes to a person whatever its weight.
            one_notice = low & (self.notice[pairs[:, 0]] != self.notice[pairs[:, 1]])
            for k in np.flatnonzero(one_notice).tolist():
                low[k] = not _notice_of(feat, int(pairs[k, 0]), int(pairs[k, 1]))
            # So does a republication (same title, authors, venue and length).
            same_title = low & (self.titles[pairs[:, 0]] == self.titles[pairs[:, 1]])
            for k in np.flatnonzero(same_title).tolist():
                low[k] = not _republished(feat, int(pairs[k, 0]), int(pairs[k, 1]))
            if self.set_of is not None:
                a, b = self.set_of[pairs[:, 0]], self.set_of[pairs[:, 1]]
                low &= ~((a != "") & (a == b))
            if self.decided:
                low &= ~np.array([(i, j) in self.decided for i, j in pairs.tolist()], dtype=bool)
        if low.any():
            self.store.add(_distinct_rows(feat, pairs[low], weights[low]))
            self.counts[DISTINCT] += int(low.sum())
        rest = np.flatnonzero(~low)
        given = weights[rest].tolist() if weights is not None else [None] * len(rest)
        rows = []
        for (i, j), weight in zip(pairs[rest].tolist(), given, strict=True):
            row = _score_pair(feat, i, j, weight, self.params)
            if sets is not None and sets[i] and sets[i] == sets[j]:
                row["decision"], row["rule"] = DISTINCT, f"same-set; machine: {row['rule']}"
                row["decided_by"] = "rule"
            row["_i"], row["_j"] = i, j
            if (i, j) in self.decided:
                self.held[(i, j)] = row
                continue
            rows.append(row)
            self.counts[row["decision"]] += 1
        dups = [r for r in rows if r["decision"] == DUPLICATE]
        self._dups.append((  # arrays, not lists of Python numbers (one per duplicate pair)
            np.array([r["_i"] for r in dups], dtype=np.int64),
            np.array([r["_j"] for r in dups], dtype=np.int64),
            np.array([r["score"] for r in dups], dtype=float),
            np.array([r["rule"].startswith("doi") for r in dups], dtype=bool),
        ))  # fmt: skip
        self.store.add(_rows_frame(rows))

    def duplicates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The machine's duplicate pairs: i, j, score, DOI rule (for the cluster step)."""
        parts = list(zip(*self._dups, strict=True)) or [[], [], [], []]
        types = (np.int64, np.int64, float, bool)
        return tuple(
            np.concatenate([np.asarray(p, dtype=t) for p in part]) if part else np.empty(0, t)
            for part, t in zip(parts, types, strict=True)
        )
