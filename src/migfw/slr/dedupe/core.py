"""`deduplicate`: features -> candidate pairs -> pair decisions -> person's decisions ->
clusters -> merged records."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from migfw.errors import MigfwError
from migfw.slr.dedupe import linkage
from migfw.slr.dedupe.blocking import CHUNK, _candidate_pairs, _prefilter
from migfw.slr.dedupe.clustering import _Clusters, _merged_records
from migfw.slr.dedupe.features import _exact_copy_of, _Features, _features, _take
from migfw.slr.dedupe.result import (
    BLOCKED,
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
    SIM_COLUMNS,
    Params,
    _distinct_rows,
    _score_pair,
)
from migfw.slr.dedupe.siblings import _notice_of, _republished


def deduplicate(
    records: pd.DataFrame,
    progress: bool = False,
    decisions: list[tuple[str, str, str]] | None = None,
    params: Params = DEFAULT,
    model: dict | None = None,
    db_api: Any = None,
    apart_by: str | None = None,
) -> DedupeResult:
    """Cluster duplicate records; see the module docstring for the rules.

    `decisions`: a person's (record_a, record_b, "same"/"different") verdicts (see
    `load_dedupe_decisions`); they override the machine and are recorded with
    `decided_by = person`. `params`: method and thresholds (scoring.Params); `model`: a
    trained linkage model (default: trained on `records`, see linkage.py); `db_api`: the
    Splink backend that trains and scores it (default: DuckDB in this process; a
    `splink.SparkAPI` runs the same model on Spark, see docs/slr_dedupe.md).
    `apart_by`: a column naming already-deduplicated sets (CoLRev's `search_set`, or
    `source_file` when each export was deduplicated on its own): records with the same
    non-empty value are never merged by the machine, not even identical ones (`rule`
    `same-set`); a person's 'same' still joins them."""
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
    index = {rid: k for k, rid in enumerate(feat.ids)}
    named = {index[r] for a, b, _ in decisions or [] for r in (a, b) if r in index}
    if sets is not None:
        # Identical records of one set are two works by the set's own account: no folding.
        named |= {k for k, v in enumerate(sets) if v}
    copy_of = _exact_copy_of(feat, named)
    reps = np.flatnonzero(copy_of == np.arange(n))
    # Blocking and scoring see one record per set of exact copies (numbered 0..len(reps)).
    sub = _take(feat, reps)
    pairs = _candidate_pairs(sub)
    n_candidates = len(pairs)
    if len(pairs):
        # Chunked, so the temporary string lists stay small at 50,000+ records.
        pairs = np.concatenate(
            [_prefilter(sub, pairs[k : k + CHUNK]) for k in range(0, len(pairs), CHUNK)]
        )
    weights: list[float | None] = [None] * len(pairs)
    if params.method == "splink":
        scored, _, model = linkage.score_pairs(sub, pairs, model, db_api)
        weights = scored.tolist()
    pairs = reps[pairs] if len(pairs) else pairs

    # Pairs the model puts below the review band (no shared DOI, no set rule, no person's
    # decision): distinct, never joined; their link rows are built as columns.
    low = np.zeros(len(pairs), dtype=bool)
    if params.method == "splink" and len(pairs):
        w = np.asarray(weights, dtype=float)
        code = feat.doi_code
        low = (w < params.review) & ~(
            (code[pairs[:, 0]] >= 0) & (code[pairs[:, 0]] == code[pairs[:, 1]])
        )
        # A notice titled after the other record goes to a person whatever its weight.
        notice = np.asarray(feat.notice, dtype=bool)
        one_notice = low & (notice[pairs[:, 0]] != notice[pairs[:, 1]])
        for k in np.flatnonzero(one_notice).tolist():
            low[k] = not _notice_of(feat, int(pairs[k, 0]), int(pairs[k, 1]))
        # So does a republication (same title, authors, venue and length).
        titles = np.asarray(feat.title, dtype=object)
        same_title = low & (titles[pairs[:, 0]] == titles[pairs[:, 1]])
        for k in np.flatnonzero(same_title).tolist():
            low[k] = not _republished(feat, int(pairs[k, 0]), int(pairs[k, 1]))
        if sets is not None:
            set_of = np.asarray(sets, dtype=object)
            a, b = set_of[pairs[:, 0]], set_of[pairs[:, 1]]
            low &= ~((a != "") & (a == b))
        decided = {
            tuple(sorted((index[a], index[b])))
            for a, b, _ in decisions or []
            if a in index and b in index
        }
        if decided:
            low &= ~np.array([(i, j) in decided for i, j in pairs.tolist()], dtype=bool)
    low_rows = _distinct_rows(feat, pairs[low], w[low]) if low.any() else None
    rest = np.flatnonzero(~low)
    rows = []
    row_of: dict[tuple[int, int], dict] = {}
    for (i, j), weight in zip(pairs[rest].tolist(), [weights[k] for k in rest], strict=True):
        row = _score_pair(feat, i, j, weight, params)
        if sets is not None and sets[i] and sets[i] == sets[j]:
            row["decision"], row["rule"] = DISTINCT, f"same-set; machine: {row['rule']}"
            row["decided_by"] = "rule"
        row["_i"], row["_j"] = i, j
        rows.append(row)
        row_of[(i, j)] = row
    groups = _Clusters(n, sets)
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
    # Ties in input order, so the first of equal candidates wins (deterministic).
    rows.sort(key=lambda r: (not r["rule"].startswith("doi"), -r["score"], r["_i"], r["_j"]))
    for row in rows:
        if row["decision"] != DUPLICATE or row["decided_by"] == "person":
            continue
        refused = groups.try_union(feat, row["_i"], row["_j"], params.guard == "evidence")
        if refused:
            row["decision"], row["rule"] = BLOCKED, f"{row['rule']}; {refused}"

    # Exact copies join their first copy's cluster (no check needed: nothing differs).
    copies = np.flatnonzero(copy_of != np.arange(n))
    for i in copies.tolist():
        groups.force_union(int(copy_of[i]), i)
        rows.append(_copy_row(feat, int(copy_of[i]), i))

    # Cluster ids in order of first appearance of a member.
    root_to_cluster: dict[int, str] = {}
    cluster_of = []
    for i in range(n):
        root = groups.find(i)
        if root not in root_to_cluster:
            root_to_cluster[root] = f"C{len(root_to_cluster) + 1:06d}"
        cluster_of.append(root_to_cluster[root])
    clusters = pd.DataFrame({"record_id": ids, "cluster_id": cluster_of})

    # Columns straight from the rows (no second list of dicts: the rows are the largest
    # object here at 100,000 records), then the rows are dropped before merging.
    links = _compact(pd.DataFrame(rows, columns=[*LINK_COLUMNS[2:], "_i", "_j"]))
    del rows, row_of
    if low_rows is not None:
        links = _concat_compact(links, low_rows[links.columns])
        del low_rows
    # Sorted by (record_a, record_b) through each record id's rank: ids are unique, so
    # this is the order of the id strings without sorting a string column.
    ids_array = np.asarray(feat.ids, dtype=object)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(ids_array, kind="stable")] = np.arange(n)
    i_col, j_col = links.pop("_i").to_numpy(np.int64), links.pop("_j").to_numpy(np.int64)
    order = np.lexsort((rank[j_col], rank[i_col]))
    links = links.iloc[order].reset_index(drop=True)
    links.insert(0, "record_b", ids_array[j_col[order]])
    links.insert(0, "record_a", ids_array[i_col[order]])

    merged = _merged_records(records, cluster_of, feat.year)
    stats = {
        "records": n,
        "candidate_pairs": int(n_candidates),
        "exact_copies": len(copies),
        "scored_pairs": len(links),
        "links": int((links["decision"] == DUPLICATE).sum()),
        "review_pairs": int((links["decision"] == MAYBE).sum()),
        "person_decisions": int((links["decided_by"] == "person").sum()),
        "clusters": len(root_to_cluster),
        "method": params.method,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return DedupeResult(clusters=clusters, links=links, merged=merged, stats=stats)


def _copy_row(feat: _Features, i: int, j: int) -> dict:
    """The link row of an exact copy: the pair's evidence, decided by the copy rule."""
    row = _score_pair(feat, i, j)
    row.update(_i=i, _j=j, decision=DUPLICATE, rule="exact-copy", decided_by="rule")
    row["score"] = max(row["score"], MATCH + 5)
    return row


_TEXT_COLUMNS = [c for c in LINK_COLUMNS[2:] if c != "score" and c not in SIM_COLUMNS]


def _compact(links: pd.DataFrame) -> pd.DataFrame:
    """Link rows with categorical text columns and float similarities (NaN = not
    compared): one row per scored pair, so strings per cell grew with the pairs."""
    for column in _TEXT_COLUMNS:
        links[column] = pd.Categorical(links[column])
    for column in SIM_COLUMNS:
        links[column] = pd.to_numeric(links[column].replace("", np.nan)).astype(float)
    return links


def _concat_compact(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """`a` then `b` (same columns), categorical columns kept categorical (pd.concat
    turns categoricals with different categories into objects)."""
    columns = {}
    for column in a.columns:
        if isinstance(a[column].dtype, pd.CategoricalDtype):
            columns[column] = union_categoricals([_str_categories(a[column].array),
                                                  _str_categories(b[column].array)])  # fmt: skip
        else:
            columns[column] = np.concatenate([a[column].to_numpy(), b[column].to_numpy()])
    return pd.DataFrame(columns)


def _str_categories(values: pd.Categorical) -> pd.Categorical:
    """The same values with str categories (an empty or inferred-object side would stop
    union_categoricals: 'dtype of categories must be the same')."""
    names = pd.Index([str(c) for c in values.categories], dtype="str")
    return pd.Categorical.from_codes(values.codes, categories=names)
