"""The review pipeline on real third-party exports (../shared/testdata; skipped when absent).

revtools ships one topic ("restoration") exported from three databases; its README gives
the record count of each file (WoS 247, PubMed 104, Scopus 286). The relevant set is
cross-checked with a plain pandas regex written independently of screening.py.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from migfw.slr.review import ReviewConfig, run_review
from migfw.slr.slrfigures import overlap_matrix

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
REVTOOLS = TESTDATA / "biblio" / "revtools"

pytestmark = pytest.mark.skipif(
    not REVTOOLS.is_dir(), reason="../shared/testdata not available (third-party test data)"
)


@pytest.fixture(scope="module")
def review(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("revtools")
    (tmp / "sources.csv").write_text(
        "database,file\n"
        f"Web of Science,{REVTOOLS / 'restoration_WoS.ciw'}\n"
        f"PubMed,{REVTOOLS / 'restoration_pubmed.nbib'}\n"
        f"Scopus,{REVTOOLS / 'restoration_scopus.ris'}\n"
    )
    (tmp / "kt.yaml").write_text(
        "columns:\n"
        "  - {name: restoration, fields: [title, abstract], terms: ['restor*']}\n"
        "  - {name: habitat, fields: [any], terms: ['ecosystem*', 'forest*', 'wetland*']}\n"
    )
    cfg = ReviewConfig(sources=tmp / "sources.csv", keyterms=tmp / "kt.yaml")
    lines: list[str] = []
    return run_review(cfg, log=lines.append), lines


def test_counts_per_database_match_readme(review) -> None:
    res, lines = review
    n = dict(zip(res.prisma["data"], res.prisma["n"], strict=True))
    assert n["database_specific_results"] == "Web of Science, 247; PubMed, 104; Scopus, 286"
    assert n["database_results"] == 637
    assert any(line.endswith("247 records (wos, Web of Science)") for line in lines)


def test_relevant_set_matches_independent_regex(review) -> None:
    res, _ = review
    recs = res.records.drop(columns=["year", "source_index"]).fillna("")
    col1 = (recs["title"] + " " + recs["abstract"]).str.contains(r"(?i)(?<!\w)restor")
    anyf = recs[["title", "abstract", "keywords", "venue", "publisher"]].agg(" ".join, axis=1)
    col2 = anyf.str.contains(r"(?i)(?<!\w)(?:ecosystem|forest|wetland)")
    expected = recs.loc[col1 & col2].groupby("database").size()
    got = res.table6[res.table6["measure"] == "relevant"].set_index("database")["Total"]
    for db in ("Web of Science", "PubMed", "Scopus"):
        assert got[db] == expected.get(db, 0), db
    assert got["Total"] == int((col1 & col2).sum())


def test_undecided_review_is_flagged_not_hidden(review) -> None:
    res, lines = review
    checks = res.prisma_checks.set_index("check")
    pending = checks.loc["studies awaiting a decision"]
    n = dict(zip(res.prisma["data"], res.prisma["n"], strict=True))
    assert pending["actual"] == n["records_screened"] > 0 and not pending["ok"]
    assert any("have no decision yet" in line for line in lines)


def test_overlap_matrix_is_consistent(review) -> None:
    res, _ = review
    dbs = ["Web of Science", "PubMed", "Scopus"]
    m = overlap_matrix(res.screened, dbs)
    assert (m.to_numpy() == m.to_numpy().T).all()
    rel = res.screened[res.screened["relevant"]]
    for db in dbs:
        assert m.loc[db, db] == rel.loc[rel["database"] == db, "cluster_id"].nunique()
    # Shared studies can never exceed either database's own count.
    assert all(m.loc[a, b] <= min(m.loc[a, a], m.loc[b, b]) for a in dbs for b in dbs)
    # Duplicates removed = relevant records - relevant studies (PRISMA 'duplicates').
    n = dict(zip(res.prisma["data"], res.prisma["n"], strict=True))
    assert n["duplicates"] == len(rel) - rel["cluster_id"].nunique()
    assert isinstance(res.studies, pd.DataFrame)
