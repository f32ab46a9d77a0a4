"""Splink's Spark backend (`deduplicate(records, db_api=SparkAPI(...))`) on a local Spark
session: the same clusters as in process on a hand-built set whose duplicates are known.
Skipped where pyspark or Java is absent (CI does not install them: install.sh --spark)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from risrecords import BASE, ris_file

from migfw.errors import MigfwError
from migfw.slr.dedupe import deduplicate
from migfw.slr.dedupe.spark import check_session, missing
from migfw.slr.imports import read_exports

REPO = Path(__file__).resolve().parents[1]
WHY_NOT = missing()
needs_spark = pytest.mark.skipif(
    WHY_NOT is not None, reason=f"Spark backend not installed here: {WHY_NOT}"
)


SUPPLEMENT = {"PY": "2019", "T2": "Journal of Network Security", "VL": "12", "IS": "S1"}

# Hand-known truth: a1~a2~a3 (one article: DOI, no DOI with a typo, initials and an
# abbreviated journal, upper case with a trailing period), b1~b2 (same conference paper,
# authors' given names first), and five different works, two of them abstracts of one
# supplement (same journal, volume, issue, year) with different titles and authors.
RECORDS = [
    {**BASE, "ID": "a1", "DO": "10.1186/jcc.2013.77"},
    {**BASE, "ID": "a2", "AU": ["Nguyen, T. M.", "Okafor, C.", "Lindqvist, E."],
     "TI": "Keeping firewall state consistant during live migration of virtual machines.",
     "T2": "J Cloud Comput"},
    {**BASE, "ID": "a3", "DO": "10.1186/JCC.2013.77",
     "TI": "KEEPING FIREWALL STATE CONSISTENT DURING LIVE MIGRATION OF VIRTUAL MACHINES."},
    {"TY": "CONF", "ID": "b1", "AU": ["Haddad, Samir", "Kowalski, Anna"],
     "TI": "Pre-copy migration of stateful packet filters between hypervisors",
     "PY": "2019", "T2": "Proceedings of the International Conference on Cloud Networking",
     "SP": "45", "EP": "52"},
    {"TY": "CONF", "ID": "b2", "AU": ["Samir Haddad", "Anna Kowalski"],
     "TI": "Pre-copy migration of stateful packet filters between hypervisors",
     "PY": "2019", "T2": "Proceedings of the International Conference on Cloud Networking",
     "SP": "45-52"},
    {**SUPPLEMENT, "ID": "c1", "AU": ["Moreau, Claire"], "SP": "S10",
     "TI": "Intrusion detection on encrypted traffic with flow statistics"},
    {**SUPPLEMENT, "ID": "c2", "AU": ["Tanaka, Hiro"], "SP": "S10",
     "TI": "Rate limiting of connection tracking tables under flood attacks"},
    {"ID": "d1", "AU": ["Okafor, Chidi"], "PY": "2015", "T2": "Computer Networks",
     "TI": "Measuring packet loss during virtual machine live migration", "VL": "88",
     "SP": "12", "EP": "25"},
    {"ID": "d2", "AU": ["Lindqvist, Erik", "Nguyen, Thi Mai"], "PY": "2016",
     "T2": "Journal of Cloud Computing", "VL": "5", "SP": "3", "EP": "19",
     "TI": "A survey of firewall placement in software defined data centres"},
    {"ID": "d3", "AU": ["Brown, Keith"], "PY": "2013", "T2": "Journal of Cloud Computing",
     "VL": "2", "IS": "4", "SP": "119", "EP": "130",
     "TI": "Energy cost of virtual machine consolidation in cloud data centres"},
]  # fmt: skip
TRUTH = {frozenset({"a1", "a2", "a3"}), frozenset({"b1", "b2"})}


def _groups(result: Any) -> set[frozenset]:
    by = result.clusters.groupby("cluster_id")["record_id"].apply(frozenset)
    return {g for g in by if len(g) > 1}


@pytest.fixture(scope="module")
def spark_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from migfw.slr.dedupe.spark import local_session, spark_api

    session = local_session(tmp_path_factory.mktemp("spark"))
    try:
        yield spark_api(session)
    finally:
        session.stop()


@needs_spark
def test_spark_backend_finds_the_known_duplicates_as_duckdb_does(
    tmp_path: Path, spark_api: Any
) -> None:
    records = read_exports([ris_file(tmp_path / "crafted.ris", [dict(r) for r in RECORDS])])
    in_process = deduplicate(records)
    on_spark = deduplicate(records, db_api=spark_api)
    assert _groups(in_process) == TRUTH
    assert _groups(on_spark) == TRUTH
    # Same candidate pairs, same decisions; the weights differ at most in float rounding
    # (Splink's Jaro-Winkler UDF on Spark against DuckDB's jaro_winkler_similarity).
    cols = ["record_a", "record_b", "decision", "rule"]
    duck, spark = in_process.links, on_spark.links
    assert duck[cols].reset_index(drop=True).equals(spark[cols].reset_index(drop=True))
    assert (duck["score"] - spark["score"]).abs().max() < 1e-6
    # An export where a compared field is empty in every record (no DOI, no volume):
    # Spark cannot infer a column type from NULLs alone; the record table declares them.
    b_only = [dict(r) for r in RECORDS if r["ID"] in ("b1", "b2", "d1")]
    for r in b_only:
        r.pop("VL", None)
    records = read_exports([ris_file(tmp_path / "no_doi.ris", b_only)])
    assert _groups(deduplicate(records, db_api=spark_api)) == {frozenset({"b1", "b2"})}


def test_spark_session_without_splink_udfs_or_checkpoints_is_one_line() -> None:
    def session(has_udf: bool, checkpoints: str | None) -> Any:
        return SimpleNamespace(
            catalog=SimpleNamespace(functionExists=lambda name: has_udf),
            sparkContext=SimpleNamespace(getCheckpointDir=lambda: checkpoints),
        )

    with pytest.raises(MigfwError, match="jaro_winkler UDF is not registered"):
        check_session(session(False, "/tmp/x"))
    with pytest.raises(MigfwError, match="setCheckpointDir"):
        check_session(session(True, None))
    check_session(session(True, "/tmp/x"))


def test_bench_spark_without_java_is_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = "/nonexistent"  # no java on it (pyspark, when installed, is in the venv)
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench_dedupe.py"), "--spark"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench_dedupe.py --spark: ")
    assert "pyspark is not installed" in lines[0] or "no Java runtime" in lines[0]
