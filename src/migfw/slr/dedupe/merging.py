"""One merged record per cluster: field-wise best value, union of provenance, members."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pandas.arrays import ArrowStringArray

from migfw.slr.dedupe.heap import return_heap
from migfw.slr.dedupe.result import CANONICAL_COLUMNS


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


# Clusters of several records merged at a time: their members' strings of one column are
# Python strings only for the block, the merged values an Arrow array after it.
MERGE_BLOCK = 5_000


def _merged_records(
    records: pd.DataFrame, cluster_of: np.ndarray, cluster_ids: Any, years: Sequence[int]
) -> pd.DataFrame:
    """One row per cluster, in order of the clusters' first members (`cluster_of`: each
    record's cluster number, numbered in that order; `cluster_ids`: the clusters' ids, a
    string column). Each column is built once, in that order: the first member's value
    (a single-record cluster's), replaced for the clusters with several members by their
    merged value, in one Arrow take from the records' column and the merged values (no
    Python string per record; setting the merged values into a taken column copied the
    column twice); a block of clusters' strings at a time (see MERGE_BLOCK)."""
    names = [c for c in CANONICAL_COLUMNS if c in records.columns and c != "source_index"]
    codes = np.asarray(cluster_of)
    size = np.bincount(codes, minlength=len(cluster_ids))
    by_cluster = np.argsort(codes, kind="stable")  # members in record order per cluster
    starts = np.cumsum(size) - size
    first = by_cluster[starts]
    multi = np.flatnonzero(size > 1)
    members = by_cluster[size[codes[by_cluster]] > 1]  # members of multi-record clusters
    bounds = np.concatenate([[0], np.cumsum(size[multi])]).astype(np.int64).tolist()
    own = list(zip(bounds[:-1], bounds[1:], strict=True))  # spans within `members`

    def merged_blocks(column: pd.Series, merge: Callable[[list], Any]) -> Iterator[list]:
        """Each block's merged values (`merge` of one cluster's member values)."""
        for k in range(0, len(own), MERGE_BLOCK):
            part = own[k : k + MERGE_BLOCK]
            low, high = part[0][0], part[-1][1]
            values = _text_at(column.iloc[members[low:high]].to_numpy(), slice(None))
            yield [merge(values[a - low : b - low]) for a, b in part]

    out: dict[str, Any] = {"cluster_id": cluster_ids}
    for c in names:
        if c == "year":
            year = np.fromiter(years, np.int64, len(codes))  # 0 = unknown
            merged = [
                _merge_column(c, [int(v) or None for v in year[members[a:b]]]) for a, b in own
            ]
            column = year[first]
            column[multi] = [v or 0 for v in merged]
            out[c] = pd.arrays.IntegerArray(column, column == 0)  # 0: unknown (missing)
        elif c == "record_id":
            out[c] = _texts(records[c], first)  # a cluster is named after its first member
        else:
            blocks = merged_blocks(records[c], lambda v, c=c: _merge_column(c, v))
            out[c] = _with_merged(records[c], first, multi, blocks)
            return_heap()  # the column's freed Arrow buffers (Arrow's pool keeps them)
    out["n_records"] = size.astype(np.int64)
    ids = records["record_id"]
    out["members"] = _with_merged(ids, first, multi, merged_blocks(ids, "; ".join))
    return pd.DataFrame(out, copy=False)


def _with_merged(column: pd.Series, first: np.ndarray, multi: np.ndarray,
                 blocks: Iterable[list]) -> Any:  # fmt: skip
    """The `first` rows' texts ('' for missing), the rows `multi` replaced by the merged
    values (`blocks`, in order): one Arrow take when the column is an Arrow string
    column, else _texts with the values set in."""
    array = column.array
    data = array.__arrow_array__() if isinstance(array, ArrowStringArray) else None
    if data is None or not (pa.types.is_string(data.type) or pa.types.is_large_string(data.type)):
        base = _texts(column, first)  # (an all-missing Arrow column is of type null)
        merged = [v for block in blocks for v in block]
        if not len(multi):
            return base
        values = pd.Series(base, copy=False)
        values.iloc[multi] = merged
        return values.array
    n = len(data)
    extra = [pa.array([""], type=data.type)]
    extra += [pa.array(block, type=data.type) for block in blocks]
    at = first.astype(np.int64)
    at[column.isna().to_numpy()[first]] = n  # the '' after the column's own values
    at[multi] = n + 1 + np.arange(len(multi))
    taken = pa.chunked_array([*data.chunks, *extra], type=data.type).take(pa.array(at))
    return pd.array(taken, dtype=column.dtype)


def _text_at(values: np.ndarray, at: np.ndarray | list[int]) -> list[str]:
    """text_column's strings ('' for missing) of the rows `at` only."""
    return ["" if pd.isna(v) else str(v) for v in values[at].tolist()]


def _texts(column: pd.Series, at: np.ndarray) -> Any:
    """`_text_at` of a column, kept a string column (no Python string per record) when
    it is one already."""
    if pd.api.types.is_string_dtype(column.dtype) and not column.dtype == object:
        return column.iloc[at].fillna("").array
    return _text_at(column.to_numpy(), at)
