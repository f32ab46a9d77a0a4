"""Clusters grown link by link (every new member checked against the cluster); the
merged record per cluster is in merging.py."""

from __future__ import annotations

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
