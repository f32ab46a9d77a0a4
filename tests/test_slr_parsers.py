"""The adapters around the maintained parsers (docs/slr_import.md, "Parsers"): each
quirk rispy or bibtexparser 2 leaves to us, on a crafted file."""

from __future__ import annotations

from pathlib import Path

import pytest

from migfw.slr.imports import SlrImportWarning, read_export


def _read(tmp_path: Path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return read_export(path)


# --------------------------------------------------------------- RIS (rispy underneath)


def test_ris_record_without_er(tmp_path: Path) -> None:
    """The next TY (or the end of the file) closes a record that has no ER."""
    frame = _read(
        tmp_path,
        "a.ris",
        "TY  - JOUR\nTI  - First\nPY  - 2001\nTY  - CONF\nTI  - Second\nER  - \n"
        "TY  - BOOK\nTI  - Third\n",
    )
    assert frame["title"].tolist() == ["First", "Second", "Third"]
    assert frame["entry_type"].tolist() == ["article", "inproceedings", "book"]
    assert frame["year"].tolist()[0] == 2001


def test_ris_one_space_before_dash_and_wrapped_list_values(tmp_path: Path) -> None:
    frame = _read(
        tmp_path,
        "b.ris",
        "TY - JOUR\nTI - A title\nAU  - Doe,\n Jane\nAU  - Roe, R.\nKW  - live\nmigration\n"
        "N1  - see 10.1000/\nXYZ\nER  - \n",
    )
    row = frame.iloc[0]
    assert row["title"] == "A title"
    assert row["authors"] == "Doe, Jane; Roe, R."  # a wrapped author stays one author
    assert row["keywords"] == "live migration"
    assert row["entry_type"] == "article"


def test_ris_repeated_tags_all_kept(tmp_path: Path) -> None:
    frame = _read(
        tmp_path,
        "c.ris",
        "TY  - JOUR\nTI  - T\nAB  - The abstract.\n"
        "AB  - Copyright of J is the property of P and its content may not be copied.\n"
        "KW  - a\nKW  - b\nER  - \n",
    )
    assert frame["abstract"].tolist() == ["The abstract."]  # EBSCO notice dropped
    assert frame["keywords"].tolist() == ["a; b"]


# --------------------------------------------------------------- BibTeX (bibtexparser 2)


def test_bibtex_concatenation_and_macros(tmp_path: Path) -> None:
    frame = _read(
        tmp_path,
        "a.bib",
        '@string{conf = "Proc. of "}\n@string{net = {Networking}}\n'
        '@inproceedings{k1, title = {Live} # { } # "Migration", booktitle = conf # net,\n'
        "  year = 2013, month = jan}\n",
    )
    row = frame.iloc[0]
    assert (row["title"], row["venue"], row["year"]) == (
        "Live Migration",
        "Proc. of Networking",
        2013,
    )


def test_bibtex_missing_comma_between_fields(tmp_path: Path) -> None:
    frame = _read(tmp_path, "b.bib", "@article{k, title = {A} year = {2001}\n journal = {J}}\n")
    row = frame.iloc[0]
    assert (row["title"], row["year"], row["venue"]) == ("A", 2001, "J")


def test_bibtex_repeated_field_and_key(tmp_path: Path) -> None:
    frame = _read(
        tmp_path,
        "c.bib",
        "@article{k, title = {One}, keywords = {a}, keywords = {b}}\n@article{k, title = {Two}}\n",
    )
    assert frame["record_id"].tolist() == ["k", "k#2"]
    assert frame["keywords"].tolist() == ["a; b", ""]


def test_bibtex_paren_entries_comments_and_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "d.bib"
    path.write_text(
        'Some text before.\n@comment{x = {not an entry}}\n@preamble{ "\\\\x" }\n'
        '@book(b1, title = "Paren (entry)", year = 1999)\n'
        "@article{broken, title = {never closed\n"
        "@misc{m1, title = {After}}\n",
        encoding="utf-8",
    )
    with pytest.warns(SlrImportWarning, match=r"d\.bib:5: skipped broken BibTeX @article"):
        frame = read_export(path)
    assert frame["record_id"].tolist() == ["b1", "m1"]
    assert frame["title"].tolist() == ["Paren (entry)", "After"]
