"""Clusters grown link by link (every new member checked against the cluster); the
merged record per cluster is in merging.py."""

from __future__ import annotations

from array import array

import numpy as np

from migfw.slr.dedupe.features import _Features
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
    """Union-find whose unions are vetoed when any cross-pair contradicts. Per record
    only an 8-byte parent (array, not a list of Python ints); member lists and set names
    exist for clusters of several records or a set only (a list, a dict entry and a set
    per record were ~20 MiB at 100,000 records, most of them single-record clusters)."""

    def __init__(self, n: int, sets: list[str] | None = None) -> None:
        self.parent = array("q", range(n))
        self._members: dict[int, list[int]] = {}  # roots of clusters of several records
        self.apart: set[frozenset] = set()  # pairs a person called different
        # Already-deduplicated sets (deduplicate's `apart_by`): the sets each cluster
        # holds; two clusters holding one set never join (a person may still join them).
        self._set_names = sets
        self.sets: dict[int, set[str]] | None = {} if sets is not None else None

    def members(self, root: int) -> list[int]:
        """The records of the cluster `root` heads, in join order."""
        return self._members.get(root) or [root]

    def _sets_of(self, root: int) -> set[str]:
        held = self.sets.get(root) if self.sets is not None else None
        if held is not None:
            return held
        name = self._set_names[root] if self._set_names is not None else ""
        return {name} if name else set()

    def force_union(self, i: int, j: int) -> None:
        """A person's 'same': joined without the machine's checks."""
        ri, rj = self.find(i), self.find(j)
        if ri == rj:
            return
        self._join(ri, rj)

    def _join(self, ri: int, rj: int) -> None:
        if len(self.members(ri)) < len(self.members(rj)):
            ri, rj = rj, ri
        self.parent[rj] = ri
        joined = self._members.pop(ri, None) or [ri]
        joined.extend(self._members.pop(rj, None) or [rj])
        self._members[ri] = joined
        if self.sets is not None:
            self.sets[ri] = self._sets_of(ri) | self._sets_of(rj)
            self.sets.pop(rj, None)

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def roots(self) -> np.ndarray:
        """Every record's cluster root (int64; path halving on the way, as `find`)."""
        return np.fromiter((self.find(i) for i in range(len(self.parent))), np.int64,
                           len(self.parent))  # fmt: skip

    def try_union(self, feat: _Features, i: int, j: int, weigh: bool = True) -> str:
        """Join the clusters of i and j; return '' or the reason it was refused. Every
        cross pair is checked for true conflicts and, with `weigh`, for evidence against
        (a sibling item on another page or issue)."""
        ri, rj = self.find(i), self.find(j)
        if ri == rj:
            return ""
        if self.sets is not None and (shared := self._sets_of(ri) & self._sets_of(rj)):
            return f"cluster-conflict:same-set:{min(shared)}"
        for a in _sample(self.members(ri)):
            for b in _sample(self.members(rj)):
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
