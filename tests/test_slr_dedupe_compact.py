"""The per-record structures of deduplicate's per-pair stages in compact form (integer
arrays, Arrow strings) give what the plain Python versions gave."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from migfw.slr.dedupe import blocking, merging
from migfw.slr.dedupe.blocking import DOI_GROUP_ALL_PAIRS, _doi_pairs, _joined
from migfw.slr.dedupe.clustering import _Clusters
from migfw.slr.dedupe.columns import _per_distinct
from migfw.slr.dedupe.core import _str_array, cluster_names


def test_cluster_names_are_the_formatted_numbers() -> None:
    names = cluster_names(1_000_002).to_pylist()
    for k in (1, 2, 999_999, 1_000_000, 1_000_002):
        assert names[k - 1] == f"C{k:06d}"
    assert cluster_names(0).to_pylist() == []


def test_clusters_keep_member_lists_of_joined_records_only() -> None:
    groups = _Clusters(1000, sets=["s1" if i < 2 else "" for i in range(1000)])
    groups.force_union(5, 7)
    groups.force_union(9, 5)
    # Members in join order (the larger cluster first), as the list per record gave.
    assert groups.members(groups.find(9)) == [5, 7, 9]
    assert groups.members(3) == [3]
    assert len(groups._members) == 1  # not one list per record
    assert groups.try_union(None, 0, 1).startswith("cluster-conflict:same-set:s1")
    roots = groups.roots()
    assert roots.dtype == np.int64 and len(set(roots[[5, 7, 9]].tolist())) == 1
    assert len(np.unique(roots)) == 998


def test_doi_pairs_equal_the_pairs_of_each_doi_group() -> None:
    rng = np.random.default_rng(3)
    n = 3000
    code = rng.integers(-1, 400, n).astype(np.int32)
    code[rng.choice(n, 150, replace=False)] = 999  # one group above DOI_GROUP_ALL_PAIRS
    titles = np.array([f"t{rng.integers(0, 50):02d}" for _ in range(n)], dtype=object)

    left, right = _doi_pairs(code, lambda members: pa.array(titles[members].tolist()))
    got = set(zip(left.tolist(), right.tolist(), strict=True))
    expected = set()
    for c in set(code.tolist()) - {-1}:
        members = np.flatnonzero(code == c).tolist()
        if len(members) <= DOI_GROUP_ALL_PAIRS:
            expected |= {(a, b) for k, a in enumerate(members) for b in members[k + 1 :]}
        else:
            ordered = sorted(members, key=lambda i: titles[i])
            expected |= set(zip(ordered, ordered[1:], strict=False))
    assert got == expected and len(got) == len(left)


def test_joined_keys_equal_the_formatted_strings() -> None:
    authors = _per_distinct(["smith", "", "de la cruz", "smith"], lambda a: a or "~")
    years = _per_distinct([1999, 0, 2020, 1999], lambda y: f"{y:04d}")
    at = np.array([3, 1, 2])
    got = _joined([blocking._arrow(authors), blocking._arrow(years)], at).to_pylist()
    assert got == [f"{authors[i]} {years[i]}" for i in at.tolist()]


@pytest.mark.parametrize("block", [1, 2, 10_000])
def test_merged_records_from_arrow_columns_equal_object_columns(
    block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(merging, "MERGE_BLOCK", block)
    records = pd.DataFrame({
        "record_id": [f"r{i}" for i in range(7)],
        "title": ["A", None, "A longer", "B", None, "C", "D"],
        "database": ["x", "y", None, "x", "z", "y", None],
        "year": pd.array([2001, None, 2001, 1999, None, 2005, 2005], dtype="Int64"),
    })  # fmt: skip
    records["title"] = records["title"].astype("str")
    cluster_of = np.array([0, 1, 0, 2, 1, 3, 0])
    years = [2001, 0, 2001, 1999, 0, 2005, 2005]
    ids = _str_array(cluster_names(4))
    arrow = merging._merged_records(records, cluster_of, ids, years)
    plain = merging._merged_records(records.astype({"title": object}), cluster_of, ids, years)
    assert arrow.to_csv() == plain.to_csv()
    assert arrow["title"].tolist() == ["A longer", "", "B", "C"]
    assert arrow["members"].tolist() == ["r0; r2; r6", "r1; r4", "r3", "r5"]
    assert arrow["year"].tolist()[:2] == [2001, pd.NA]


@pytest.mark.parametrize("alphabet", ["ab", "a b"])
def test_rank_keys_sort_as_the_joined_strings(alphabet: str) -> None:
    rng = np.random.default_rng(7)
    n = 2000

    def words(k: int) -> list[str]:
        return ["".join(rng.choice(list(alphabet), rng.integers(0, 4))) for _ in range(k)]

    authors = _per_distinct(words(n), lambda a: a or "~")
    years = _per_distinct(rng.integers(0, 12000, n).tolist(), lambda y: f"{y:04d}")
    titles = _per_distinct([f"{w} x" for w in words(n)], lambda t: t)
    columns = [blocking._arrow(c) for c in (authors, years, titles)]
    at = np.sort(rng.choice(n, 1500, replace=False))
    ranks = blocking._joined_ranks(columns, at)
    assert (ranks is None) == (" " in alphabet)  # spaces: the strings themselves
    expected = blocking._sorted_records(blocking._joined(columns, at), at)
    assert blocking._sorted_records(blocking._keys(columns, at), at).tolist() == expected.tolist()
