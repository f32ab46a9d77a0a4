"""Clusters grown link by link (every new member checked against the cluster), and one
merged record per cluster."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from migfw.slr.dedupe.features import _Features
from migfw.slr.dedupe.result import CANONICAL_COLUMNS, text_column
from migfw.slr.dedupe.scoring import _LOCATORS, GUARD, MATCH, W_YEAR, _conflicts, _evidence

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


def _merge_cluster(columns: dict[str, list], members: list[int]) -> dict:
    out: dict = {}
    for column, values in columns.items():
        picked = [values[m] for m in members]
        if column in ("title", "abstract", "authors", "keywords"):
            out[column] = _best(picked, prefer_longest=True)
        elif column in ("database", "source_file", "format"):
            out[column] = "; ".join(sorted({v for v in picked if v}))
        elif column == "year":
            years = [v for v in picked if v is not None]
            out[column] = Counter(years).most_common(1)[0][0] if years else None
        else:
            out[column] = _best(picked)
    return out


def _merged_records(records: pd.DataFrame, cluster_of: list[str], years: list[int]) -> pd.DataFrame:
    """One row per cluster: field-wise best value, union of provenance, member list.
    Single-record clusters (most) are copied column-wise; only clusters with several
    members are merged field by field (so no per-record Python rows at 100,000 records)."""
    names = [c for c in CANONICAL_COLUMNS if c in records.columns and c != "source_index"]
    order = ["cluster_id"] + names + ["n_records", "members"]
    ids = text_column(records, "record_id")
    clusters = pd.Series(cluster_of)
    first = ~clusters.duplicated()
    size = clusters.map(clusters.value_counts())
    single = np.flatnonzero((size == 1).to_numpy())
    arrays = {c: records[c].to_numpy() for c in names if c != "year"}
    frame = pd.DataFrame({"cluster_id": clusters.to_numpy()[single]})
    for c in names:
        if c == "year":
            frame[c] = pd.array([years[i] or None for i in single.tolist()], dtype="Int64")
        else:
            frame[c] = _text_at(arrays[c], single)
    frame["n_records"] = 1
    frame["members"] = frame["record_id"] if "record_id" in frame else [ids[i] for i in single]
    groups: dict[str, list[int]] = {}
    for index in np.flatnonzero((size > 1).to_numpy()).tolist():
        groups.setdefault(cluster_of[index], []).append(index)
    rows = []
    for cid, members in groups.items():
        columns = {c: _text_at(values, members) for c, values in arrays.items()}
        if "year" in records.columns:
            columns["year"] = [years[m] or None for m in members]
        row = _merge_cluster(columns, list(range(len(members))))
        # The cluster is named after its first member, so a record id stays citable.
        row["record_id"] = ids[members[0]]
        row["cluster_id"] = cid
        row["n_records"] = len(members)
        row["members"] = "; ".join(ids[m] for m in members)
        rows.append(row)
    multi = pd.DataFrame(rows, columns=order)
    if "year" in multi.columns:
        multi["year"] = multi["year"].astype("Int64")
    # Clusters in order of their first member (cluster ids are numbered that way).
    rank = {cid: k for k, cid in enumerate(clusters[first].tolist())}
    merged = pd.concat([frame[order], multi], ignore_index=True) if rows else frame[order]
    merged = merged.iloc[np.argsort(merged["cluster_id"].map(rank).to_numpy(), kind="stable")]
    return merged.reset_index(drop=True)


def _text_at(values: np.ndarray, at: np.ndarray | list[int]) -> list[str]:
    """text_column's strings ('' for missing) of the rows `at` only."""
    return ["" if pd.isna(v) else str(v) for v in values[at].tolist()]
