"""Clusters grown link by link (every new member checked against the cluster), and one
merged record per cluster."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from migfw.slr.dedupe.features import _Features
from migfw.slr.dedupe.result import CANONICAL_COLUMNS, text_column
from migfw.slr.dedupe.scoring import (
    _LOCATORS,
    GUARD,
    MATCH,
    W_YEAR,
    _conflicts,
    _evidence,
)
from migfw.slr.dedupe.siblings import _one_work

GUARD_SAMPLE = 32  # members of a large cluster checked when it grows (bounds the time)


def _sample(members: list[int]) -> list[int]:
    """All members, or GUARD_SAMPLE of them spread evenly over the cluster's join order
    (a cluster of thousands of near-copies would otherwise cost a quadratic check)."""
    if len(members) <= GUARD_SAMPLE:
        return members
    step = len(members) / GUARD_SAMPLE
    return [members[int(k * step)] for k in range(GUARD_SAMPLE)]


class _Clusters:
    """Union-find whose unions are vetoed when any cross-pair contradicts."""

    def __init__(self, n: int, sets: list[str] | None = None) -> None:
        self.parent = list(range(n))
        self.members: dict[int, list[int]] = {i: [i] for i in range(n)}
        self.apart: set[frozenset] = set()  # pairs a person called different
        # Already-deduplicated sets (deduplicate's `apart_by`): the sets each cluster
        # holds; two clusters holding one set never join (a person may still join them).
        self.sets: dict[int, set[str]] | None = (
            {i: {v} if v else set() for i, v in enumerate(sets)} if sets is not None else None
        )

    def force_union(self, i: int, j: int) -> None:
        """A person's 'same': joined without the machine's checks."""
        ri, rj = self.find(i), self.find(j)
        if ri == rj:
            return
        self._join(ri, rj)

    def _join(self, ri: int, rj: int) -> None:
        if len(self.members[ri]) < len(self.members[rj]):
            ri, rj = rj, ri
        self.parent[rj] = ri
        self.members[ri].extend(self.members.pop(rj))
        if self.sets is not None:
            self.sets[ri] |= self.sets.pop(rj)

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def try_union(self, feat: _Features, i: int, j: int, weigh: bool = True) -> str:
        """Join the clusters of i and j; return '' or the reason it was refused. Every
        cross pair is checked for true conflicts and, with `weigh`, for evidence against
        (a sibling item on another page or issue)."""
        ri, rj = self.find(i), self.find(j)
        if ri == rj:
            return ""
        if self.sets is not None and (shared := self.sets[ri] & self.sets[rj]):
            return f"cluster-conflict:same-set:{min(shared)}"
        for a in _sample(self.members[ri]):
            for b in _sample(self.members[rj]):
                if frozenset((a, b)) in self.apart:
                    return f"cluster-conflict:{feat.ids[a]}~{feat.ids[b]}:person-different"
                if _one_work(feat, a, b):
                    continue  # two DOIs, one work (a republication, a notice with its item)
                conflicts = _conflicts(feat, a, b)
                same_doi = bool(feat.doi_base[a]) and feat.doi_base[a] == feat.doi_base[b]
                if weigh and not conflicts and not same_doi:
                    ev = _evidence(feat, a, b)
                    # Below the merge threshold, a member that contradicts another on a
                    # locator (year, volume, issue, pages) is a sibling item, not a copy.
                    against = [k for k in _LOCATORS if ev.weights.get(k, 0) < W_YEAR["missing"]]
                    if ev.score < GUARD or (ev.score < MATCH and against):
                        conflicts = [f"evidence{ev.score:+g}", *against]
                if conflicts:
                    return f"cluster-conflict:{feat.ids[a]}~{feat.ids[b]}:" + "+".join(conflicts)
        self._join(ri, rj)
        return ""


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


def _merge_cluster(columns: dict[str, list], members: list[int]) -> dict:
    return {c: _merge_column(c, [values[m] for m in members]) for c, values in columns.items()}


def _merged_records(records: pd.DataFrame, cluster_of: list[str], years: list[int]) -> pd.DataFrame:
    """One row per cluster: field-wise best value, union of provenance, member list.
    Single-record clusters (most) are copied column-wise; only clusters with several
    members are merged field by field (so no per-record Python rows at 100,000 records)."""
    names = [c for c in CANONICAL_COLUMNS if c in records.columns and c != "source_index"]
    order = ["cluster_id"] + names + ["n_records", "members"]
    ids = text_column(records, "record_id")
    # Integer codes in order of first appearance (cluster ids are numbered that way):
    # string Series of 100,000 cluster ids and their counts cost 50 MiB here.
    codes, _ = pd.factorize(np.asarray(cluster_of, dtype=object))
    size = np.bincount(codes)[codes]
    single = np.flatnonzero(size == 1)
    frame = pd.DataFrame({"cluster_id": np.asarray(cluster_of, dtype=object)[single]})
    for c in names:
        if c == "year":
            frame[c] = pd.array([years[i] or None for i in single.tolist()], dtype="Int64")
        else:
            frame[c] = _texts(records[c], single)
    frame["n_records"] = 1
    frame["members"] = frame["record_id"] if "record_id" in frame else [ids[i] for i in single]
    groups: dict[str, list[int]] = {}
    for index in np.flatnonzero(size > 1).tolist():
        groups.setdefault(cluster_of[index], []).append(index)
    # Multi-record clusters are merged one column at a time: Python strings for one
    # column's members only (all columns' strings at once were the peak of a
    # 100,000-record run).
    members_of = list(groups.values())
    at = np.array([m for members in members_of for m in members], dtype=np.int64)
    bounds = np.cumsum([0] + [len(members) for members in members_of]).tolist()
    spans = list(zip(bounds[:-1], bounds[1:], strict=True))
    merged_columns: dict[str, list] = {}
    for c in names:
        if c == "record_id":
            continue  # the cluster is named after its first member (below)
        if c == "year":
            values = [years[m] or None for m in at.tolist()]
        else:
            values = _text_at(records[c].iloc[at].to_numpy(), slice(None))
        merged_columns[c] = [_merge_column(c, values[a:b]) for a, b in spans]
        del values
    # The cluster is named after its first member, so a record id stays citable.
    merged_columns["record_id"] = [ids[members[0]] for members in members_of]
    merged_columns["cluster_id"] = list(groups)
    merged_columns["n_records"] = [len(members) for members in members_of]
    merged_columns["members"] = ["; ".join(ids[m] for m in members) for members in members_of]
    multi = pd.DataFrame({c: merged_columns[c] for c in order if c in merged_columns},
                         columns=order)  # fmt: skip
    if "year" in multi.columns:
        multi["year"] = multi["year"].astype("Int64")
    # Clusters in order of their first member.
    merged = pd.concat([frame[order], multi], ignore_index=True) if members_of else frame[order]
    cluster_code = np.concatenate(
        [codes[single], codes[[members[0] for members in members_of]]]
    ).astype(np.int64)
    merged = merged.iloc[np.argsort(cluster_code, kind="stable")]
    return merged.reset_index(drop=True)


def _text_at(values: np.ndarray, at: np.ndarray | list[int]) -> list[str]:
    """text_column's strings ('' for missing) of the rows `at` only."""
    return ["" if pd.isna(v) else str(v) for v in values[at].tolist()]


def _texts(column: pd.Series, at: np.ndarray) -> Any:
    """`_text_at` of a column, kept a string column (no Python string per record) when
    it is one already."""
    if pd.api.types.is_string_dtype(column.dtype) and not column.dtype == object:
        return column.iloc[at].fillna("").array
    return _text_at(column.to_numpy(), at)
