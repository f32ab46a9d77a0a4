"""Ragged and badly quoted CSV: the export importer and the hand-kept CSV reader
(decisions, sources, quality) warn in one line naming the rows they padded, and refuse
in one line naming the line of a row that cannot be aligned to its header."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from migfw.cli import main
from migfw.errors import MigfwError
from migfw.slr import screening
from migfw.slr.imports import SlrImportWarning, read_export

HEADER = "ID,title,author,year\n"
GOOD = 'r1,First,"Doe, J.",2001\n'
THIRD = 'r3,Third,"Poe, E.",2003\n'

# file text -> line the refusal names
UNALIGNABLE = {
    # the quote opened in line 3 never closes: it swallows every row after it
    "unclosed_to_eof": HEADER + GOOD + 'r2,"Unclosed title,2002\n' + THIRD,
    # ... or closes at the next row's quote, moving a piece of row 4 into row 3's title
    "unclosed_closed_later": HEADER + GOOD + 'r2,"Unclosed title,2002\nr3,Third,"Poe, E.",2003\n'
    'r4,Fourth,"Loe, L.",2004\n',
    # a stray quote that moves fields (3 fields where the header has 4)
    "stray_quote_moves_fields": HEADER + GOOD + 'r2,"Unclosed title,"Roe, R.",2002\n' + THIRD,
    # text beyond the last column: which field is extra cannot be known
    "text_beyond_last_column": HEADER + GOOD + 'r2,Second,"Roe, R.",2002,surplus\n' + THIRD,
}


@pytest.mark.parametrize("name", sorted(UNALIGNABLE))
def test_unalignable_row_refused_in_one_line(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.csv"
    path.write_text(UNALIGNABLE[name], encoding="utf-8")
    for read in (read_export, lambda p: screening.read_csv_text(p, "decisions")):
        with pytest.raises(MigfwError) as info:
            read(path)
        message = str(info.value)
        assert message.startswith(f"{path}: ") and "\n" not in message
        assert "line 3" in message and "cannot be aligned" in message


def test_short_rows_padded_with_one_warning_naming_them(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text(HEADER + GOOD + "r2,Second\n" + THIRD + "r4,Fourth,,\n" + "r5\n")
    with pytest.warns(SlrImportWarning) as record:
        frame = read_export(path)
    assert frame["record_id"].tolist() == ["r1", "r2", "r3", "r4", "r5"]
    assert frame["title"].tolist() == ["First", "Second", "Third", "Fourth", ""]
    assert frame["authors"].tolist()[:3] == ["Doe, J.", "", "Poe, E."]
    ragged = [str(w.message) for w in record if "fewer than" in str(w.message)]
    assert ragged == [
        f"{path}: 2 rows have fewer than 4 fields (lines 3, 6); their missing last fields are empty"
    ]
    with pytest.warns(SlrImportWarning, match=r"lines 3, 6\)"):
        table = screening.read_csv_text(path, "decisions")
    assert table.loc[1].tolist() == ["r2", "Second", "", ""]


def test_empty_extra_fields_dropped_with_warning(tmp_path: Path) -> None:
    path = tmp_path / "trailing.csv"
    path.write_text(HEADER + 'r1,First,"Doe, J.",2001,,\n' + THIRD)
    with pytest.warns(SlrImportWarning, match=r"1 rows have empty fields beyond .*\(lines 2\)"):
        frame = read_export(path)
    assert frame["year"].tolist() == [2001, 2003]


def test_unescaped_inner_quotes_read_as_written(tmp_path: Path) -> None:
    """IEEE Xplore's `"... on "Computer as a Tool""` (seen in litstudy/ieee_1.csv line 25)."""
    path = tmp_path / "ieee.csv"
    path.write_text(
        "Document Title,Authors,Publication Title,Publication Year\n"
        '"A, b","So, P.","EUROCON 2007 - on "Computer as a Tool"",2007\n'
        '"C","Li, W.","J. Net",2008\n'
    )
    with pytest.warns(SlrImportWarning, match=r"unescaped quotes .*\(lines 2\)"):
        frame = read_export(path)
    assert frame["venue"].tolist() == ['EUROCON 2007 - on "Computer as a Tool"', "J. Net"]
    assert frame["title"].tolist() == ["A, b", "C"]


def test_multiline_quoted_fields_still_fine(tmp_path: Path) -> None:
    path = tmp_path / "ok.csv"
    path.write_text(HEADER + 'r1,"A title\nover two lines","Doe, J.",2001\n' + THIRD)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlrImportWarning)  # no warning at all
        frame = read_export(path)
    assert frame["title"].tolist() == ["A title over two lines", "Third"]


def test_hand_kept_csv_line_numbers_count_comment_lines(tmp_path: Path) -> None:
    path = tmp_path / "decisions.csv"
    path.write_text('# comment\nref,decision,reason\n"Unclosed,exclude,why\nx,include,\n')
    with pytest.raises(MigfwError, match=r"cannot read decisions \(line 3: a quoted field"):
        screening.load_decisions(path)


def test_cli_prints_one_warning_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A command that does not collect warnings itself (`slr screen`) still prints a
    migfw warning as one `warning: ...` line, not Python's file:line + source excerpt."""
    path = tmp_path / "short.csv"
    path.write_text(HEADER + GOOD + "r2,Second\n")
    keyterms = tmp_path / "k.yaml"
    keyterms.write_text("columns:\n  - name: c\n    terms: [First]\n")
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # as a plain `migfw` run (pytest would capture)
        code = main(["slr", "screen", str(path), "--keyterms", str(keyterms), "--out",
                     str(tmp_path / "o.csv")])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        f"warning: {path}: 1 rows have fewer than 4 fields (lines 3); their missing last "
        "fields are empty"
    )
    assert not any("SlrImportWarning" in line or "warnings.warn" in line for line in err)
