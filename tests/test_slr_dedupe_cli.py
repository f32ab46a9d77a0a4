"""`migfw slr dedupe` around deduplicate: the library (CSV, RIS) written a slice of
clusters at a time, the review table over its pairs' records only, and the reader's
freed heap handed back before deduplicating. Each mechanism keeps the bytes a single
whole-library write gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rispy
from risrecords import BASE, ris_file, uncertain_pair_file

from migfw.cli import main
from migfw.io import write_csv
from migfw.slr.dedupe import cli, deduplicate, export, library_records, review_table, write_ris
from migfw.slr.imports import read_exports

DEDUP = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "dedup"


def _exports(tmp_path: Path) -> list[Path]:
    """Two exports: duplicates across them, records with and without pages, keywords,
    DOI, abstract, and a conference paper (other RIS type)."""
    a = ris_file(tmp_path / "a.ris", [
        {**BASE, "ID": "a1", "DO": "10.1/x1", "KW": ["migration", "firewall"]},
        {**BASE, "ID": "a2", "TI": "Packet filters for tenant networks", "DO": "10.1/x2",
         "SP": "201", "EP": "210", "AB": "We filter packets."},
        {**BASE, "ID": "a3", "TY": "CPAPER", "TI": "Connection tracking under load",
         "AU": ["Okafor, Chidi"], "PY": "2015"},
        {**BASE, "ID": "a4", "TI": "A survey of stateful middleboxes", "SP": "", "EP": ""},
    ])  # fmt: skip
    b = ris_file(tmp_path / "b.ris", [
        {**BASE, "ID": "b1"},
        {**BASE, "ID": "b2", "TI": "Packet filters for tenant networks", "DO": "10.1/x2",
         "SP": "201", "EP": "210"},
        {**BASE, "ID": "b3", "TI": "Measuring downtime of live migration", "PY": "2016"},
    ])  # fmt: skip
    return [a, b]


@pytest.fixture
def deduplicated(tmp_path: Path) -> tuple:
    records = read_exports(_exports(tmp_path), databases=["Scopus", "Web of Science"])
    return records, deduplicate(records)


def test_member_databases_by_hand() -> None:
    """Database, else the export file's name; ids not imported add nothing; a repeated
    id is its last row (as the dict the rows once built)."""
    records = pd.DataFrame({
        "record_id": ["r1", "r2", "r3", "r3", "r4"],
        "database": ["Scopus", "", None, "IEEE Xplore", ""],
        "source_file": ["/x/s.ris", "/x/y/wos.txt", "/x/a.bib", "/x/b.bib", "/x/y/wos.txt"],
    })  # fmt: skip
    members = pd.Series(["r1; r2", "r3", "r2; r4", "zz; r1", "zz"])
    got = export._MemberDatabases(records).of(members)
    assert got == ["Scopus; wos.txt", "IEEE Xplore", "wos.txt", "Scopus", ""]


def test_ris_in_slices_is_one_dump(deduplicated: tuple, monkeypatch: pytest.MonkeyPatch,
                                   tmp_path: Path) -> None:  # fmt: skip
    records, result = deduplicated
    library = library_records(result, records)
    assert len(library) >= 5
    # What rispy writes for the whole library in one dump (the file before slices).
    entries = [export._ris_entry(row) for row in library.to_dict("records")]
    whole = rispy.dumps(entries, implementation=export._ris_writer())
    assert whole.count("ER  - ") == len(library) and whole.endswith("ER  - \n")
    for size in (1, 2, len(library) - 1, len(library), 10_000):
        monkeypatch.setattr(export, "LIBRARY_SLICE", size)
        write_ris(tmp_path / f"s{size}.ris", library)
        assert (tmp_path / f"s{size}.ris").read_text() == whole, size
    write_ris(tmp_path / "empty.ris", library.iloc[:0])
    assert (tmp_path / "empty.ris").read_text() == ""


def test_library_written_in_slices_is_the_whole_library(
    deduplicated: tuple, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    records, result = deduplicated
    library = library_records(result, records)
    write_csv(tmp_path / "whole.csv", library)
    write_ris(tmp_path / "whole.ris", library)
    assert sorted(library["databases"]) == sorted(
        ["Scopus; Web of Science"] * 2 + ["Scopus"] * 2 + ["Web of Science"]
    )
    for size in (1, 3):
        monkeypatch.setattr(export, "LIBRARY_SLICE", size)
        export.write_library(tmp_path / "l.csv", tmp_path / "l.ris", result, records)
        assert (tmp_path / "l.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
        assert (tmp_path / "l.ris").read_bytes() == (tmp_path / "whole.ris").read_bytes()
    empty = type(result)(result.clusters.iloc[:0], result.links, result.merged.iloc[:0])
    export.write_library(tmp_path / "e.csv", tmp_path / "e.ris", empty, records)
    header = (tmp_path / "e.csv").read_text()
    assert header.strip().split(",")[-1] == "databases" and header.count("\n") == 1
    assert (tmp_path / "e.ris").read_text() == ""


def test_library_records_shares_the_merged_columns(deduplicated: tuple) -> None:
    """Not a deep copy of the merged table: its columns are the merged ones."""
    records, result = deduplicated
    library = library_records(result, records)
    column = "n_records"
    assert np.shares_memory(library[column].to_numpy(), result.merged[column].to_numpy())
    assert list(library.columns) == [*result.merged.columns, "databases"]


def test_review_table_reads_only_its_pairs_records(tmp_path: Path) -> None:
    """Only the records of the `maybe` pairs are looked up: rows of other records (here a
    repeated id, which a lookup table of every record refuses) are never indexed."""
    path = uncertain_pair_file(tmp_path / "x.ris")
    records = read_exports([path])
    result = deduplicate(records)
    table = review_table(result, records)
    assert table[["record_a", "record_b"]].values.tolist() == [["ua", "ub"]]
    assert table[["a_year", "b_year"]].values.tolist() == [["2013", "2015"]]
    extra = pd.concat([records, records[records.record_id == "other"]], ignore_index=True)
    assert review_table(result, extra).equals(table)


def test_cli_hands_the_readers_heap_back_before_deduplicating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader's freed heap goes back before deduplicate runs, and the fields only
    merging needs are dropped before the review table and library are built."""
    steps: list[str] = []
    real_dedupe, real_review = cli.deduplicate, cli.review_table

    def dedupe(records: pd.DataFrame, **kwargs: object) -> object:
        steps.append("deduplicate")
        return real_dedupe(records, **kwargs)

    def review(result: object, records: pd.DataFrame) -> pd.DataFrame:
        steps.append("review:" + ("abstract" if "abstract" in records else "trimmed"))
        return real_review(result, records)

    monkeypatch.setattr(cli, "return_heap", lambda: steps.append("heap"))
    monkeypatch.setattr(cli, "deduplicate", dedupe)
    monkeypatch.setattr(cli, "review_table", review)
    monkeypatch.setattr(export, "LIBRARY_SLICE", 2)
    out = tmp_path / "out"
    files = _exports(tmp_path)
    assert main(["slr", "dedupe", *map(str, files), "--out", str(out)]) == 0
    assert steps == ["heap", "deduplicate", "heap", "review:trimmed", "heap"]
    records = read_exports(files)
    library = library_records(deduplicate(records), records)
    write_csv(tmp_path / "whole.csv", library)
    write_ris(tmp_path / "whole.ris", library)
    assert (out / "library.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    assert (out / "library.ris").read_bytes() == (tmp_path / "whole.ris").read_bytes()
    assert len(read_exports([out / "library.ris"])) == len(library)


def test_bench_exports_read_back_as_the_records(tmp_path: Path) -> None:
    """The bench's CLI row reads the scale corpus back from CSV exports: the same records
    (ids, fields) as the frame the bench's deduplicate child gets, and a command that runs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_dedupe", Path(__file__).resolve().parents[1] / "scripts" / "bench_dedupe.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    records = read_exports(_exports(tmp_path))
    argv = bench.write_exports(records, tmp_path, parts=3)
    files = [a for a in argv if a.endswith(".csv")]
    assert len(files) == 3 and argv.count("--database") == 3
    again = read_exports(files)
    fields = list(bench._EXPORT_HEADER)
    got, want = again[fields].astype(str), records[fields].astype(str)
    assert got.equals(want)
    assert main(argv) == 0
    assert len(pd.read_csv(tmp_path / "cli_out" / "clusters.csv")) == len(records)


def test_review_run_keeps_the_links_on_disk_until_written(tmp_path: Path) -> None:
    """The Snakemake branch (run_review, write_outputs) counts the link rows bucket by bucket
    and streams links.csv: the frame of every scored pair is never built unless asked."""
    from migfw.slr.review import ReviewConfig, run_review, write_outputs

    repo = Path(__file__).resolve().parents[1]
    cfg = ReviewConfig(
        sources=repo / "resources" / "slr" / "sources.csv",
        keyterms=repo / "config" / "slr" / "keyterms.yaml",
    )
    lines: list[str] = []
    res = run_review(cfg, log=lines.append)
    assert not isinstance(res.dedupe._links, pd.DataFrame)  # still the link files
    write_outputs(res, tmp_path, log=lines.append)
    assert not isinstance(res.dedupe._links, pd.DataFrame)
    links = res.links  # asked for: read from the files now
    write_csv(tmp_path / "whole.csv", links)
    assert (tmp_path / "links.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    n_dup = int((links["decision"] == "duplicate").sum())
    assert n_dup > 0 and any(f" {n_dup} duplicate links;" in line for line in lines)


def test_review_run_hands_the_readers_heap_back_before_screening(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from migfw.slr import review
    from migfw.slr.dedupe import heap

    steps: list[str] = []
    real_screen = review.screening.screen

    def screen(*args: object, **kwargs: object) -> pd.DataFrame:
        steps.append("screen")
        return real_screen(*args, **kwargs)

    monkeypatch.setattr(heap, "return_heap", lambda: steps.append("heap"))
    monkeypatch.setattr(review.screening, "screen", screen)
    repo = Path(__file__).resolve().parents[1]
    cfg = review.ReviewConfig(
        sources=repo / "resources" / "slr" / "sources.csv",
        keyterms=repo / "config" / "slr" / "keyterms.yaml",
    )
    review.run_review(cfg, log=lambda line: None)
    assert steps[:2] == ["heap", "screen"]
