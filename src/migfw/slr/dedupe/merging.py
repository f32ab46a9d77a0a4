"""One merged record per cluster: field-wise best value, union of provenance, members."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from migfw.slr.dedupe.recordtable import _return_heap
from migfw.slr.dedupe.result import CANONICAL_COLUMNS, text_column


def _best(values: list[str], prefer_longest: bool = False) -> str:
    present = [v for v in values if v]
    if not present:
        return ""
    if prefer_longest:
        return max(present, key=len)
    counts = Counter(present)
    # Most common value; ties go to the longest (most complete) spelling.
    return max(counts, key=lambda v: (counts[v], len(v)))


def _merge_column(column: str, picked: list) -> Any:
    """The merged value of one column from its members' values."""
    if column in ("title", "abstract", "authors", "keywords"):
        return _best(picked, prefer_longest=True)
    if column in ("database", "source_file", "format"):
        return "; ".join(sorted({v for v in picked if v}))
    if column == "year":
        years = [v for v in picked if v is not None]
        return Counter(years).most_common(1)[0][0] if years else None
    return _best(picked)


def _merged_records(records: pd.DataFrame, cluster_of: list[str], years: list[int]) -> pd.DataFrame:
    """One row per cluster, in order of the clusters' first members. Each column is
    built once, in that order: the first member's value (a single-record cluster's,
    taken as a string column without a Python string per record), replaced for the
    clusters with several members by their merged value; one column's strings at a
    time (a frame of singles + a frame of merged clusters, concatenated and reordered,
    held three copies of every text at 100,000 records)."""
    names = [c for c in CANONICAL_COLUMNS if c in records.columns and c != "source_index"]
    ids = text_column(records, "record_id")
    # Integer codes in order of first appearance (cluster ids are numbered that way).
    codes, clusters = pd.factorize(np.asarray(cluster_of, dtype=object))
    size = np.bincount(codes)
    by_cluster = np.argsort(codes, kind="stable")  # members in record order per cluster
    starts = np.cumsum(size) - size
    first = by_cluster[starts]
    multi = np.flatnonzero(size > 1)
    spans = [(int(starts[c]), int(starts[c] + size[c])) for c in multi.tolist()]
    members = by_cluster[size[codes[by_cluster]] > 1]  # members of multi-record clusters
    bounds = np.concatenate([[0], np.cumsum(size[multi])]).astype(np.int64).tolist()
    own = list(zip(bounds[:-1], bounds[1:], strict=True))  # spans within `members`

    def with_merged(base: Any, merged: list) -> Any:
        if not len(multi):
            return base
        column = pd.Series(base, copy=False)
        column.iloc[multi] = merged
        return column.array

    out: dict[str, Any] = {"cluster_id": np.asarray(clusters, dtype=object)}
    for c in names:
        if c == "year":
            values = [years[m] or None for m in members.tolist()]
            merged = [_merge_column(c, values[a:b]) for a, b in own]
            column = [years[i] or None for i in first.tolist()]
            for k, value in zip(multi.tolist(), merged, strict=True):
                column[k] = value
            out[c] = pd.array(column, dtype="Int64")
        elif c == "record_id":
            out[c] = _texts(records[c], first)  # a cluster is named after its first member
        else:
            values = _text_at(records[c].iloc[members].to_numpy(), slice(None))
            merged = [_merge_column(c, values[a:b]) for a, b in own]
            del values
            out[c] = with_merged(_texts(records[c], first), merged)
            _return_heap()  # the column's freed Arrow buffers (Arrow's pool keeps them)
    out["n_records"] = size.astype(np.int64)
    joined = ["; ".join(ids[m] for m in by_cluster[a:b].tolist()) for a, b in spans]
    first_ids = out["record_id"].copy() if "record_id" in out else [ids[i] for i in first.tolist()]
    out["members"] = with_merged(first_ids, joined)
    return pd.DataFrame(out, copy=False)


def _text_at(values: np.ndarray, at: np.ndarray | list[int]) -> list[str]:
    """text_column's strings ('' for missing) of the rows `at` only."""
    return ["" if pd.isna(v) else str(v) for v in values[at].tolist()]


def _texts(column: pd.Series, at: np.ndarray) -> Any:
    """`_text_at` of a column, kept a string column (no Python string per record) when
    it is one already."""
    if pd.api.types.is_string_dtype(column.dtype) and not column.dtype == object:
        return column.iloc[at].fillna("").array
    return _text_at(column.to_numpy(), at)
