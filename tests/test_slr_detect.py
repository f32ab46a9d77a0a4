"""Format detection (migfw.slr.imports.detect) against every export in
../shared/testdata/biblio, with the format its README states, and crafted variants.

The README's table is parsed here, so a file added to the test data is checked too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from migfw.errors import MigfwError
from migfw.slr.imports import detect_format, read_export

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
BIBLIO = TESTDATA / "biblio"
README = TESTDATA / "README.md"

needs_testdata = pytest.mark.skipif(not README.is_file(), reason="../shared/testdata absent")

# README "format" column -> what detect_format says (or the words of the one-line refusal)
README_FORMATS = {
    "RIS": "ris",
    "BibTeX": "bibtex",
    "CSV": "csv",
    "TSV": "tsv",
    "WoS/ISI tagged plain text": "wos",
    "MEDLINE/PubMed nbib": "nbib",
    "PubMed XML": "pubmed_xml",
}
README_REFUSALS = {
    "Zotero RDF": "Zotero RDF is not supported",
    "XML": "MODS XML is not supported",  # mods.xml, the only plain "XML" row
    "JSON": "(CSL-JSON) is not supported",
    "text (readme)": "unknown format",
}


def _readme_biblio_formats() -> dict[str, str]:
    """{"folder/file": README format} from the '## biblio/<folder>' tables."""
    table: dict[str, str] = {}
    folder = None
    for line in README.read_text(encoding="utf-8").splitlines():
        head = re.match(r"^## (\S+)", line)
        if head:
            folder = (
                head.group(1)[len("biblio/") :] if head.group(1).startswith("biblio/") else None
            )
            continue
        row = re.match(r"^\| `([^`]+)` \| ([^|]+?) \|", line)
        if folder and row:
            table[f"{folder}/{row.group(1)}"] = row.group(2).strip()
    return table


README_TABLE = _readme_biblio_formats() if README.is_file() else {}


@needs_testdata
def test_readme_lists_every_biblio_file() -> None:
    found = {str(p.relative_to(BIBLIO)) for p in BIBLIO.glob("*/*") if p.is_file()}
    assert found == set(README_TABLE)
    assert set(README_TABLE.values()) <= set(README_FORMATS) | set(README_REFUSALS)


@needs_testdata
@pytest.mark.parametrize("name", sorted(README_TABLE))
def test_detected_format_matches_readme(name: str) -> None:
    stated = README_TABLE[name]
    path = BIBLIO / name
    if stated in README_FORMATS:
        assert detect_format(path) == README_FORMATS[stated]
    else:
        with pytest.raises(MigfwError) as info:
            detect_format(path)
        assert README_REFUSALS[stated] in str(info.value)
        assert "\n" not in str(info.value)


# --------------------------------------------------------------- crafted variants

NBIB = (
    "PMID- 28441597\nOWN - NLM\nSTAT- MEDLINE\nTI  - A first title\n      that wraps.\n"
    "FAU - Neilen, Amanda D\nAU  - Neilen AD\nDP  - 2017 Sep 1\n"
    "LID - 10.1016/j.scitotenv.2017.04.075 [doi]\n\n"
    "PMID- 28441598\nOWN - NLM\nSTAT- MEDLINE\nTI  - A second title.\nDP  - 2018\n"
)
# ERIC's MEDLINE-style export: blank line first, records start with OWN, no PMID.
ERIC = (
    "\nOWN - ERIC\nTI  - Teaching Statistics with Games\nAU  - Doe, Jane\n"
    "OT  - Statistics\nOT  - Games\nDP  - 2019\nAN  - EJ1234567\nPT  - Journal Articles\n\n"
    "OWN - ERIC\nTI  - Peer Review in Classrooms\nAU  - Roe, Richard\nDP  - 2020\n"
    "AN  - ED7654321\n"
)
RIS = (
    "TY  - JOUR\nTI  - A title\nAU  - Doe, J.\nPY  - 2019\nER  - \n\nTY  - CONF\nTI  - B\nER  - \n"
)
WOS = (
    "PT J\nAU Li, W\nTI A title\n   continued\nPY 2020\nUT WOS:000514379300001\nER\n\n"
    "PT J\nAU Wu, X\nTI B\nPY 2021\nUT WOS:000514379300002\nER\n\nEF\n"
)


def _variants(text: str) -> dict[str, bytes]:
    return {
        "plain": text.encode(),
        "leading_blank_lines": ("\n\n  \n" + text).encode(),
        "bom": b"\xef\xbb\xbf" + text.encode(),
        "crlf": text.replace("\n", "\r\n").encode(),
        "bom_crlf_blank": b"\xef\xbb\xbf" + ("\r\n" + text).replace("\n", "\r\n").encode(),
    }


CASES = [
    (fmt, label, data)
    for fmt, text in (("nbib", NBIB), ("nbib", ERIC), ("ris", RIS), ("wos", WOS))
    for label, data in _variants(text).items()
]


@pytest.mark.parametrize(
    ("fmt", "label", "data"), CASES, ids=[f"{i}-{c[0]}-{c[1]}" for i, c in enumerate(CASES)]
)
def test_crafted_variants_detected(tmp_path: Path, fmt: str, label: str, data: bytes) -> None:
    path = tmp_path / "export.txt"  # the extension says nothing
    path.write_bytes(data)
    assert detect_format(path) == fmt
    assert len(read_export(path)) == 2


@pytest.mark.parametrize(
    "first",
    ["OWN - NLM", "STAT- MEDLINE", "TI  - A title first", "DCOM- 20170919", "IS  - 1879-1026"],
)
def test_medline_any_first_tag(tmp_path: Path, first: str) -> None:
    """MEDLINE is recognised by its structure (4-column tags, 3-4 letter ones among
    them, no TY), whatever tag comes first; a 2-letter first tag is not taken for RIS."""
    path = tmp_path / "x.nbib"
    record = "PMID- {n}\nOWN - NLM\nSTAT- MEDLINE\nTI  - T{n}\nDP  - 2001\n"
    text = "\n".join(f"{first}\n" + record.format(n=n) for n in (1, 2))
    path.write_text(text, encoding="utf-8")
    assert detect_format(path) == "nbib"
    frame = read_export(path)
    assert frame["record_id"].tolist() == ["1", "2"]  # PMID not first: still one record each
    if not first.startswith("TI "):
        assert frame["title"].tolist() == ["T1", "T2"]


def test_eric_export_reads_as_eric(tmp_path: Path) -> None:
    path = tmp_path / "eric.txt"
    path.write_text(ERIC, encoding="utf-8")
    frame = read_export(path)
    assert frame["title"].tolist() == [
        "Teaching Statistics with Games",
        "Peer Review in Classrooms",
    ]
    assert frame["record_id"].tolist() == ["EJ1234567", "ED7654321"]
    assert frame["keywords"].tolist() == ["Statistics; Games", ""]
    assert frame["year"].tolist() == [2019, 2020]
    assert set(frame["database"]) == {"ERIC"}
    assert set(frame["format"]) == {"nbib"}


def test_medline_doi_from_tagged_id_or_doi_link(tmp_path: Path) -> None:
    """PubMed tags the DOI ("... [doi]"); ERIC writes it as a doi.org link in AID. A [pii]
    or a non-DOI link is not a DOI."""
    path = tmp_path / "mixed.txt"
    path.write_text(
        "OWN - ERIC\nTI  - A\nAID - http://dx.doi.org/10.1000/123456789\nAN  - EJ1\n\n"
        "OWN - ERIC\nTI  - B\nAID - http://eric.ed.gov/?id=EJ2\nAN  - EJ2\n\n"
        "OWN - ERIC\nTI  - C\nAID - https://doi.org/10.1000/XYZ.9\nAN  - EJ3\n",
        encoding="utf-8",
    )
    frame = read_export(path)
    assert frame["doi"].tolist() == ["10.1000/123456789", "", "10.1000/xyz.9"]
    path.write_text(
        "PMID- 1\nOWN - NLM\nTI  - D\nAID - S0140-6736(20)30000-1 [pii]\n"
        "AID - 10.1016/S0140-6736(20)30000-1 [doi]\n\n"
        "PMID- 2\nOWN - NLM\nTI  - E\nAID - S0140-6736(20)30001-3 [pii]\n",
        encoding="utf-8",
    )
    frame = read_export(path)
    assert frame["doi"].tolist() == ["10.1016/s0140-6736(20)30000-1", ""]


def test_ris_with_a_medline_like_abstract_line_stays_ris(tmp_path: Path) -> None:
    """A RIS record (TY present) is RIS even if some of its lines look like MEDLINE tags."""
    path = tmp_path / "r.ris"
    path.write_text(
        "TY  - JOUR\nTI  - T\nAB  - An abstract\nPMID- 123 in a wrapped line\nOWN - x\nER  - \n",
        encoding="utf-8",
    )
    assert detect_format(path) == "ris"
