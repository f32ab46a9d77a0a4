"""Tests for migfw.slr.imports: real third-party exports plus small crafted files.

Record counts come from /work/shared/testdata/README.md (independent parsers); field
values were read by hand from the raw files.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import pandas as pd
import pytest

from migfw.cli import main
from migfw.errors import MigfwError
from migfw.slr.imports import (
    COLUMNS,
    SlrImportWarning,
    detect_format,
    read_export,
    read_exports,
    read_records,
)
from migfw.slr.normalise import clean_text, normalise_doi

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata"
BIBLIO = TESTDATA / "biblio"
DEDUP = TESTDATA / "dedup"

needs_testdata = pytest.mark.skipif(not TESTDATA.is_dir(), reason="../shared/testdata absent")

# file -> (records per README, detected format, inferred database)
COUNTS: dict[str, tuple[int, str, str]] = {
    "synthesisr/ASP_ris_example.ris": (4, "ris", "EBSCO"),
    "synthesisr/Ovid_ris_example.ris": (4, "ris", ""),
    "synthesisr/PubMed_example.txt": (3, "nbib", "PubMed"),
    "synthesisr/Scopus_bib_example.bib": (3, "bibtex", "Scopus"),
    "synthesisr/Scopus_ris_example.ris": (3, "ris", "Scopus"),
    "synthesisr/WoS_ciw_example.ciw": (5, "wos", "Web of Science"),
    "synthesisr/WoS_txt_example.txt": (4, "wos", "Web of Science"),
    "synthesisr/citesource_issue_24.ris": (17, "ris", "Dimensions"),
    "synthesisr/eviatlas.csv": (1, "csv", ""),
    "synthesisr/eviatlas.tsv": (1, "tsv", ""),
    "synthesisr/eviatlas.txt": (1, "ris", ""),
    "synthesisr/litsearchr.txt": (1, "bibtex", ""),
    "synthesisr/res_synth_methods.txt": (2, "nbib", "PubMed"),
    "synthesisr/scopus.ris": (92, "ris", "Scopus"),
    "synthesisr/zoorec.txt": (134, "wos", "Web of Science"),
    "revtools/restoration_WoS.ciw": (247, "wos", "Web of Science"),
    "revtools/restoration_pubmed.nbib": (104, "nbib", "PubMed"),
    "revtools/restoration_scopus.ris": (286, "ris", "Scopus"),
    "revtools/avian_ecology_bibliography.ris": (20, "ris", ""),
    "bibliometrix/lens_sample.csv": (8, "csv", "Lens.org"),
    "bibliometrix/openalex_sample.csv": (8, "csv", "OpenAlex"),
    "bibliometrix/scopus_sample.csv": (8, "csv", "Scopus"),
    "bibliometrix/wos_sample.txt": (8, "wos", "Web of Science"),
    "rispy/example_basic.ris": (1, "ris", ""),
    "rispy/example_bom.ris": (1, "ris", ""),
    "rispy/example_custom_list_tags.ris": (1, "ris", ""),
    "rispy/example_empty_tag.ris": (1, "ris", ""),
    "rispy/example_extraneous_data.ris": (2, "ris", ""),
    "rispy/example_full.ris": (2, "ris", ""),
    "rispy/example_full_without_whitespace.ris": (2, "ris", ""),
    "rispy/example_multi_unknown_tags.ris": (1, "ris", ""),
    "rispy/example_multiline.ris": (3, "ris", ""),
    "rispy/example_single_unknown_tag.ris": (1, "ris", ""),
    "rispy/example_starting_newlines.ris": (1, "ris", ""),
    "rispy/example_urls.ris": (4, "ris", ""),
    "rispy/example_utf_chars.ris": (1, "ris", ""),
    "rispy/example_wos.ris": (2, "wos", "Web of Science"),
    "litstudy/ieee.csv": (10, "csv", "IEEE Xplore"),
    "litstudy/scopus.csv": (58, "csv", "Scopus"),
    "litstudy/springer.csv": (18, "csv", "SpringerLink"),
    "litstudy/example.ris": (25, "ris", "IEEE Xplore"),
    "litstudy/ieee_1.csv": (100, "csv", "IEEE Xplore"),
    "litstudy/ieee_2.csv": (100, "csv", "IEEE Xplore"),
    "litstudy/ieee_3.csv": (100, "csv", "IEEE Xplore"),
    "litstudy/ieee_4.csv": (100, "csv", "IEEE Xplore"),
    "litstudy/ieee_5.csv": (41, "csv", "IEEE Xplore"),
    "litstudy/springer_1000.csv": (1000, "csv", "SpringerLink"),
    "slr_churn_unlearning/ieee.csv": (390, "csv", "IEEE Xplore"),
    "slr_churn_unlearning/springer.csv": (250, "csv", "SpringerLink"),
    "slr_churn_unlearning/webofscience.csv": (50, "csv", "Web of Science"),
    "slr_churn_unlearning/scopus.csv": (83, "csv", "Consensus"),  # name lies
    "slr_churn_unlearning/acm.csv": (273, "csv", "ACM"),  # via 10.1145 DOIs
    "slr_elderly_2016/acm-cog.bib": (104, "bibtex", "ACM"),
    "slr_elderly_2016/ieee-cog.bib": (109, "bibtex", "IEEE Xplore"),
    "slr_elderly_2016/sd-cog.bib": (57, "bibtex", "ScienceDirect"),
    "slr_elderly_2016/pubmed-cog-in.xml": (45, "pubmed_xml", "PubMed"),
    "bibtexparser_edgecases/article_missing_coma.bib": (4, "bibtex", ""),
    "bibtexparser_edgecases/article_start_with_bom.bib": (1, "bibtex", ""),
    "bibtexparser_edgecases/article_with_special_characters.bib": (1, "bibtex", ""),
    "bibtexparser_edgecases/biber-examples.bib": (118, "bibtex", ""),
    "bibtexparser_edgecases/book_bom.bib": (1, "bibtex", ""),
    "bibtexparser_edgecases/crossref_missing_entries.bib": (1, "bibtex", ""),
    "bibtexparser_edgecases/encoding.bib": (1, "bibtex", ""),
    "bibtexparser_edgecases/features.bib": (1, "bibtex", ""),
    "bibtexparser_edgecases/fieldname.bib": (1, "bibtex", ""),
    "bibtexparser_edgecases/multiple_entries_and_comments.bib": (3, "bibtex", ""),
    "bibtexparser_edgecases/string.bib": (1, "bibtex", ""),
    "bibtexparser_edgecases/traps.bib": (1, "bibtex", ""),
    "bibtexparser_edgecases/website.bib": (1, "bibtex", ""),
    "bibtexparser_edgecases/wrong.bib": (2, "bibtex", ""),
    "zotero_rdf_csljson/book_and_child_note.ris": (1, "ris", ""),
}
DEDUP_COUNTS = {
    "bibdedupe_special_cases/records_pre_merged.csv": 12,
    # README says 10: row 3 is a row of 13 empty fields, which is not a record.
    "bibdedupe_small_testset/records_pre_merged.csv": 9,
    "citesource_benchmark_silver/benchmark_15.ris": 15,
    "citesource_benchmark_silver/search1_166.ris": 166,
    "citesource_benchmark_silver/search2_278.ris": 278,
    "citesource_benchmark_silver/search3_302.ris": 302,
    "citesource_benchmark_silver/search4_460.ris": 460,
    "citesource_benchmark_silver/search5_495.ris": 495,
    "citesource_benchmark_silver/citesource_benchmark_export.csv": 499,
    "bibdedupe_special_cases/maybe_pairs.csv": 2,
}
# Records with a DOI, per the README's independent count ("DOI present in ~N/M").
# bibdedupe maybe_pairs.csv is left out: its "DOIs" had their punctuation removed
# ("1024251/hicss2022544") and are rightly not recognised.
DOI_COUNTS = {
    "dedup/bibdedupe_special_cases/records_pre_merged.csv": 5,
    "dedup/bibdedupe_small_testset/records_pre_merged.csv": 8,
    "dedup/citesource_benchmark_silver/benchmark_15.ris": 0,
    "dedup/citesource_benchmark_silver/search5_495.ris": 479,
    "dedup/citesource_benchmark_silver/citesource_benchmark_export.csv": 479,
    "biblio/synthesisr/ASP_ris_example.ris": 2,
    "biblio/synthesisr/Ovid_ris_example.ris": 3,
    "biblio/synthesisr/PubMed_example.txt": 3,
    "biblio/synthesisr/Scopus_bib_example.bib": 3,
    "biblio/synthesisr/WoS_txt_example.txt": 4,
    "biblio/synthesisr/citesource_issue_24.ris": 17,
    "biblio/synthesisr/scopus.ris": 82,
    "biblio/synthesisr/zoorec.txt": 27,
    "biblio/revtools/restoration_WoS.ciw": 176,
    "biblio/revtools/restoration_pubmed.nbib": 104,
    "biblio/revtools/restoration_scopus.ris": 282,
    "biblio/bibliometrix/openalex_sample.csv": 8,
    "biblio/rispy/example_bom.ris": 1,
    "biblio/rispy/example_wos.ris": 2,
    "biblio/litstudy/scopus.csv": 44,
    "biblio/litstudy/example.ris": 24,
    "biblio/litstudy/ieee_5.csv": 39,
    "biblio/litstudy/springer_1000.csv": 1000,
    "biblio/slr_churn_unlearning/ieee.csv": 334,
    "biblio/slr_churn_unlearning/webofscience.csv": 43,
    "biblio/slr_churn_unlearning/acm.csv": 228,
    "biblio/slr_elderly_2016/acm-cog.bib": 95,
    "biblio/slr_elderly_2016/ieee-cog.bib": 103,
    "biblio/slr_elderly_2016/sd-cog.bib": 57,
    "biblio/slr_elderly_2016/pubmed-cog-in.xml": 32,
    "biblio/bibtexparser_edgecases/biber-examples.bib": 2,
    "biblio/bibtexparser_edgecases/multiple_entries_and_comments.bib": 1,
}
# Refused on purpose (see docs/slr_import.md): file -> words the one-line error must hold.
REFUSED = {
    "zotero_rdf_csljson/zotero_rdf.xml": "Zotero RDF is not supported",
    "zotero_rdf_csljson/book_and_snapshot.rdf": "Zotero RDF is not supported",
    "zotero_rdf_csljson/mods.xml": "MODS XML is not supported",
    "zotero_rdf_csljson/csl_json.json": "CSL-JSON) is not supported",
    "slr_elderly_2016/readme.txt": "unknown format",
}


@functools.cache
def _quiet_read(path: Path) -> pd.DataFrame:
    """Read once per test session (tests only look at the frame, never change it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SlrImportWarning)
        return read_export(path)


@needs_testdata
@pytest.mark.parametrize("name", sorted(COUNTS))
def test_biblio_file_record_count(name: str) -> None:
    count, fmt, database = COUNTS[name]
    frame = _quiet_read(BIBLIO / name)
    assert len(frame) == count
    assert list(frame.columns) == COLUMNS
    if count:
        assert set(frame["format"]) == {fmt}
        assert set(frame["database"]) == {database}
        assert frame["source_index"].tolist() == list(range(1, count + 1))
        assert frame["record_id"].is_unique
        assert str(frame["year"].dtype) == "Int64"


@needs_testdata
@pytest.mark.parametrize("name", sorted(DEDUP_COUNTS))
def test_dedup_file_record_count(name: str) -> None:
    assert len(_quiet_read(DEDUP / name)) == DEDUP_COUNTS[name]


@needs_testdata
@pytest.mark.parametrize("name", sorted(DOI_COUNTS))
def test_doi_count_matches_independent_count(name: str) -> None:
    frame = _quiet_read(TESTDATA / name)
    assert int((frame["doi"] != "").sum()) == DOI_COUNTS[name]
    assert frame.loc[frame["doi"] != "", "doi"].str.match(r"^10\.\d{4,9}/\S+$").all()


@needs_testdata
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_unsupported_file_is_refused_in_one_line(name: str) -> None:
    with pytest.raises(MigfwError) as info:
        read_export(BIBLIO / name)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(BIBLIO / name))
    assert REFUSED[name] in message


@needs_testdata
def test_every_biblio_file_is_covered() -> None:
    """A file added to the test data must get a count (or a refusal) above."""
    found = {str(p.relative_to(BIBLIO)) for p in BIBLIO.glob("*/*") if p.is_file()}
    assert found == set(COUNTS) | set(REFUSED) | {"bibtexparser_edgecases/comments_only.bib"}


@needs_testdata
def test_comments_only_bibtex_is_empty_with_warning() -> None:
    with pytest.warns(SlrImportWarning, match="comments_only.bib: no records found"):
        frame = read_export(BIBLIO / "bibtexparser_edgecases" / "comments_only.bib")
    assert frame.empty and list(frame.columns) == COLUMNS


# --------------------------------------------------------------- hand-checked values

SPOT = [
    # (file, source_index, field, expected) read by hand from the raw export
    ("synthesisr/WoS_ciw_example.ciw", 1, "record_id", "WOS:000514379300001"),
    (
        "synthesisr/WoS_ciw_example.ciw",
        1,
        "title",
        "Soil fauna diversity at different stages of reed restoration in a lakeshore "
        "wetland at Lake Taihu, China",
    ),
    ("synthesisr/WoS_ciw_example.ciw", 1, "first_author", "Li, Wei"),
    ("synthesisr/WoS_ciw_example.ciw", 1, "doi", "10.1080/20964129.2020.1722034"),
    ("synthesisr/WoS_ciw_example.ciw", 2, "pages", "9-20"),
    ("synthesisr/zoorec.txt", 1, "first_author", "Stillman, Andrew N."),
    ("synthesisr/PubMed_example.txt", 1, "record_id", "28441597"),
    ("synthesisr/PubMed_example.txt", 1, "first_author", "Neilen, Amanda D"),
    ("synthesisr/PubMed_example.txt", 1, "year", 2017),
    ("synthesisr/PubMed_example.txt", 1, "doi", "10.1016/j.scitotenv.2017.04.075"),
    ("synthesisr/PubMed_example.txt", 1, "pages", "188-197"),
    ("synthesisr/PubMed_example.txt", 1, "issn", "1879-1026; 0048-9697"),
    ("synthesisr/PubMed_example.txt", 1, "language", "English"),  # "LA  - eng"
    ("synthesisr/ASP_ris_example.ris", 1, "first_author", "Rodríguez-Pastor, Ruth"),
    ("synthesisr/ASP_ris_example.ris", 1, "doi", "10.1016/j.agee.2016.06.041"),  # from L3
    ("synthesisr/ASP_ris_example.ris", 1, "pages", "206-217"),
    ("synthesisr/ASP_ris_example.ris", 1, "year", 2016),
    ("synthesisr/Ovid_ris_example.ris", 1, "doi", "10.4236/ojf.2020.101008"),  # DO as URL
    ("synthesisr/Ovid_ris_example.ris", 1, "record_id", "20203152553"),
    ("synthesisr/Ovid_ris_example.ris", 1, "venue", "Open Journal of Forestry"),
    ("synthesisr/Scopus_bib_example.bib", 1, "record_id", "Li2020"),
    ("synthesisr/Scopus_bib_example.bib", 1, "first_author", "Li, W."),
    ("synthesisr/Scopus_bib_example.bib", 1, "pages", "1722034"),  # art_number
    ("rispy/example_extraneous_data.ris", 1, "record_id", "12345"),
    ("rispy/example_extraneous_data.ris", 2, "record_id", "12345#2"),  # same ID twice
    ("rispy/example_extraneous_data.ris", 2, "title", "The title of the reference"),
    ("rispy/example_utf_chars.ris", 1, "volume", "8"),
    ("rispy/example_urls.ris", 1, "first_author", "Shannon, Claude E."),
    ("litstudy/scopus.csv", 1, "title", "Scalable molecular dynamics with NAMD"),
    ("litstudy/scopus.csv", 1, "first_author", "Phillips, J.C."),
    ("litstudy/scopus.csv", 1, "pages", "1781-1802"),
    ("litstudy/scopus.csv", 1, "issn", "0192-8651"),
    # rows 3/4 have an extra "Funding Text" field: the tail must still line up
    ("litstudy/scopus.csv", 3, "record_id", "2-s2.0-85123480963"),
    ("litstudy/scopus.csv", 3, "publisher", "Nature Research"),
    ("litstudy/scopus.csv", 3, "language", "English"),
    ("litstudy/scopus.csv", 4, "pages", "e1010383"),
    ("litstudy/ieee.csv", 1, "first_author", "Kogge, P."),
    ("litstudy/ieee.csv", 1, "doi", "10.1109/mcse.2013.95"),
    ("litstudy/ieee.csv", 1, "pages", "16-26"),
    ("litstudy/ieee.csv", 1, "year", 2013),
    ("slr_churn_unlearning/ieee.csv", 1, "year", 2024),  # "Year" header variant
    (
        "litstudy/springer_1000.csv",
        1,
        "authors",
        "Pallipuram, Vivek K.; Bhuiyan, Mohammad; Smith, Melissa C.",
    ),
    ("litstudy/springer_1000.csv", 1, "doi", "10.1007/s11227-011-0631-3"),
    ("litstudy/springer_1000.csv", 1, "entry_type", "article"),
    ("slr_churn_unlearning/webofscience.csv", 1, "record_id", "WOS:001582442600016"),
    ("slr_churn_unlearning/webofscience.csv", 1, "volume", "15660"),  # "15660.0"
    ("slr_churn_unlearning/webofscience.csv", 1, "pages", "307-326"),
    ("slr_churn_unlearning/webofscience.csv", 1, "entry_type", "inproceedings"),
    ("slr_churn_unlearning/scopus.csv", 1, "title", "Zero-Shot Machine Unlearning"),
    ("slr_churn_unlearning/scopus.csv", 1, "doi", "10.1109/tifs.2023.3265506"),
    ("bibliometrix/openalex_sample.csv", 1, "first_author", "Aria, Massimo"),
    ("bibliometrix/openalex_sample.csv", 1, "doi", "10.1016/j.joi.2017.08.007"),
    ("bibliometrix/lens_sample.csv", 1, "record_id", "000-360-106-493-122"),
    ("bibliometrix/lens_sample.csv", 1, "first_author", "Radanliev, Petar"),
    ("bibliometrix/lens_sample.csv", 1, "pages", "1-12"),
    ("slr_elderly_2016/acm-cog.bib", 1, "record_id", "Brown:2012:LPU:2282338.2282396"),
    ("slr_elderly_2016/acm-cog.bib", 1, "first_author", "Brown, Julie A."),
    ("slr_elderly_2016/acm-cog.bib", 1, "doi", "10.1145/2282338.2282396"),
    ("slr_elderly_2016/acm-cog.bib", 1, "pages", "273-275"),
    ("slr_elderly_2016/acm-cog.bib", 1, "isbn", "978-1-4503-1333-9"),
    ("slr_elderly_2016/ieee-cog.bib", 1, "first_author", "Nava-Munoz, S."),
    ("slr_elderly_2016/ieee-cog.bib", 1, "doi", "10.1109/ie.2010.32"),
    ("slr_elderly_2016/ieee-cog.bib", 1, "entry_type", "inproceedings"),
    ("slr_elderly_2016/sd-cog.bib", 1, "doi", "10.1016/j.paid.2016.04.101"),  # URL form
    (
        "slr_elderly_2016/sd-cog.bib",
        1,
        "keywords",  # four repeated keywords = fields merged
        "Cognitive training; Metacognitive beliefs; Personality; Training adherence",
    ),
    ("slr_elderly_2016/sd-cog.bib", 1, "pages", "7-12"),
    ("slr_elderly_2016/pubmed-cog-in.xml", 1, "record_id", "27636843"),
    ("slr_elderly_2016/pubmed-cog-in.xml", 1, "first_author", "Lazarou, Ioulietta"),
    ("slr_elderly_2016/pubmed-cog-in.xml", 1, "doi", "10.3233/jad-160348"),
    ("slr_elderly_2016/pubmed-cog-in.xml", 2, "pages", "94-106"),
    ("bibtexparser_edgecases/string.bib", 1, "venue", "Proceedings of the IEEE Symposium on "
     "Security and Privacy"),  # @string macro
    ("bibtexparser_edgecases/traps.bib", 1, "authors", "Laidé, Jean; Loaeb, Ben"),
    ("bibtexparser_edgecases/traps.bib", 1, "title", "An amazing title"),
    ("bibtexparser_edgecases/features.bib", 1, "venue", "My International Conference"),
    ("bibtexparser_edgecases/wrong.bib", 1, "entry_type", "wrong"),
]  # fmt: skip


@needs_testdata
@pytest.mark.parametrize(("name", "index", "field", "expected"), SPOT)
def test_hand_checked_values(name: str, index: int, field: str, expected: object) -> None:
    frame = _quiet_read(BIBLIO / name)
    row = frame.iloc[index - 1]
    value = row["authors"].split("; ")[0] if field == "first_author" else row[field]
    assert value == expected


@needs_testdata
def test_generic_csv_of_dedup_sets() -> None:
    frame = _quiet_read(DEDUP / "bibdedupe_small_testset" / "records_pre_merged.csv")
    first = frame.iloc[0]
    assert first["record_id"] == "id_0022176"
    assert first["title"] == "AIR VERSUS OXYGEN FOR RESUSCITATION OF INFANTS AT BIRTH"
    # "Tan A.Schulze A.O'Donnell C. P.Davis P. G." has no separators at all.
    assert first["authors"] == "Tan, A.; Schulze, A.; O'Donnell, C. P.; Davis, P. G."
    assert first["year"] == 2004
    assert first["pages"] == "Cd002273"
    assert first["issn"] == "1361-6137"  # the "isbn" column holds an ISSN
    assert first["isbn"] == ""
    ids = set(frame["record_id"])
    # every ID of the labelled duplicate clusters is present
    assert {"id_0001432", "id_0025776", "id_0022176", "id_0021834"} <= ids


@needs_testdata
def test_scopus_ris_entry_types_follow_m3() -> None:
    """TY/M3 pairs counted with grep|paste|uniq: JOUR+INPR 255, SER+Book Chapter 17,
    CONF+Conference Paper 3 and SER+Conference Paper 11."""
    frame = _quiet_read(BIBLIO / "revtools" / "restoration_scopus.ris")
    assert frame["entry_type"].value_counts().to_dict() == {
        "article": 255,
        "incollection": 17,
        "inproceedings": 14,
    }


@needs_testdata
def test_ebsco_copyright_notice_is_not_abstract() -> None:
    frame = _quiet_read(BIBLIO / "synthesisr" / "ASP_ris_example.ris")
    first = frame["abstract"][0]
    assert first.startswith("Small rodents are common inhabitants of farmlands")
    assert "is the property of" not in " ".join(frame["abstract"])


@needs_testdata
def test_ris_multiline_values_are_joined() -> None:
    frame = _quiet_read(BIBLIO / "rispy" / "example_multiline.ris")
    # third record continues its N2 on lines without a tag, one starting with "ER"
    assert (
        frame["abstract"].tolist()
        == ["first line, ER then second line and at the end the last line"] * 3
    )


@needs_testdata
@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("rispy/example_wos.ris", "wos"),  # WoS text saved as .ris
        ("synthesisr/eviatlas.txt", "ris"),
        ("synthesisr/litsearchr.txt", "bibtex"),
        ("synthesisr/PubMed_example.txt", "nbib"),
        ("synthesisr/eviatlas.tsv", "tsv"),
        ("slr_elderly_2016/pubmed-cog-in.xml", "pubmed_xml"),
    ],
)
def test_detect_format_ignores_extension(name: str, fmt: str) -> None:
    assert detect_format(BIBLIO / name) == fmt


@needs_testdata
def test_read_exports_database_override_and_unique_ids() -> None:
    path = BIBLIO / "rispy" / "example_extraneous_data.ris"
    table = read_exports([path, path], databases=["Ovid", None])
    assert table["record_id"].tolist() == ["12345", "12345#2", "12345#3", "12345#4"]
    assert table["database"].tolist() == ["Ovid", "Ovid", "", ""]
    with pytest.raises(MigfwError, match="1 names given for 2 files"):
        read_exports([path, path], databases=["Ovid"])


# --------------------------------------------------------------- crafted files

RIS_TEXT = (
    "TY  - JOUR\nID  - r1\nTI  - Café société\nAU  - Müller, Jörg\nPY  - 2019\n"
    "DO  - https://doi.org/10.1000/ABC\nSP  - 10\nEP  - 12\nER  - \n"
)


def test_cp1252_ris_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "latin.ris"
    path.write_bytes(RIS_TEXT.encode("cp1252"))
    row = read_export(path).iloc[0]
    assert row["title"] == "Café société"
    assert row["authors"] == "Müller, Jörg"
    assert row["doi"] == "10.1000/abc"
    assert row["pages"] == "10-12"
    assert row["year"] == 2019


def test_bom_crlf_csv(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    text = 'ID,title,author,year,doi\r\nx1,"Ünïcode, title",Smith J.; Doe A.,2020,10.1234/X\r\n'
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    frame = read_export(path)
    assert frame["record_id"].tolist() == ["x1"]  # BOM not glued to the "ID" header
    assert frame["title"].tolist() == ["Ünïcode, title"]
    assert frame["authors"].tolist() == ["Smith, J.; Doe, A."]
    assert frame["doi"].tolist() == ["10.1234/x"]


def test_crlf_bibtex_and_utf16(tmp_path: Path) -> None:
    bib = "@article{k1,\r\n  title = {T{\\'e}st},\r\n  year = 2001,\r\n}\r\n"
    path = tmp_path / "a.bib"
    path.write_bytes(bib.encode("utf-8"))
    assert read_export(path)["title"].tolist() == ["Tést"]
    path16 = tmp_path / "b.ris"
    path16.write_bytes(RIS_TEXT.encode("utf-16"))
    assert read_export(path16)["title"].tolist() == ["Café société"]


def test_semicolon_csv(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"  # European Excel writes ';' (blank lines above header)
    path.write_text("\n\nTitle;Authors;Year;DOI\nA, b;Smith, J.;2001;10.1234/A\n", encoding="utf-8")
    frame = read_export(path)
    assert (frame["title"][0], frame["authors"][0], frame["doi"][0]) == (
        "A, b",
        "Smith, J.",
        "10.1234/a",
    )


SAMPLES = {
    "s.ris": RIS_TEXT * 2,
    "s.bib": "@string{j = {J. Net}}\n@article{a, title = {T{\\'e}st}, journal = j, year = 2001}\n",
    "s.ciw": "FN Clarivate\nVR 1.0\nPT J\nAU Li, W\nTI A title\n   continued\nPY 2020\nER\nEF\n",
    "s.nbib": "PMID- 1\nTI  - A title\n      continued.\nFAU - Doe, Jane\nDP  - 2017 Nov\n",
    "s.csv": 'ID,title,author,year\nr1,"A ""quoted"" title","Doe, J.",2001\n',
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_truncated_files_never_crash(tmp_path: Path, name: str) -> None:
    """Every prefix of a valid export either parses or gives the one-line MigfwError."""
    data = SAMPLES[name].encode("utf-8")
    path = tmp_path / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SlrImportWarning)
        for cut in range(len(data) + 1):
            path.write_bytes(data[:cut])
            try:
                frame = read_export(path)
            except MigfwError as exc:
                assert "\n" not in str(exc)
            else:
                assert list(frame.columns) == COLUMNS
    assert len(frame) >= 1  # the full file (last cut) parsed


def test_broken_bibtex_entry_is_skipped_with_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.bib"
    path.write_text(
        "@article{good1, title = {First}, year = 2001}\n"
        "\n"
        "@article{bad, title = {Unclosed brace, year = 2002,\n"
        "\n"
        "@article{good2, title = {Second}, year = 2003}\n"
        "@article{bad2, title = {x} garbage here}\n"
        '@book{good3, title = "Third", year = 2004}\n',
        encoding="utf-8",
    )
    with pytest.warns(SlrImportWarning) as record:
        frame = read_export(path)
    assert frame["record_id"].tolist() == ["good1", "good2", "good3"]
    assert frame["year"].tolist() == [2001, 2003, 2004]
    messages = [str(w.message) for w in record]
    assert any(f"{path}:3: skipped broken BibTeX @article" in m for m in messages)
    assert any(f"{path}:6: skipped broken BibTeX @article" in m for m in messages)


def test_endnote_xml(tmp_path: Path) -> None:
    path = tmp_path / "lib.xml"
    path.write_text(
        """<?xml version="1.0" encoding="UTF-8"?>
<xml><records>
<record><database name="x.enl">x.enl</database><rec-number>7</rec-number>
<ref-type name="Journal Article">17</ref-type>
<contributors><authors><author><style>Doe, Jane</style></author>
<author><style>Roe, R.</style></author></authors></contributors>
<titles><title><style>Live migration &amp; firewalls</style></title>
<secondary-title><style>J. Net</style></secondary-title></titles>
<pages><style>5-9</style></pages><volume>3</volume><number>2</number>
<dates><year><style>2013</style></year></dates>
<isbn>1234-5679</isbn><electronic-resource-num>10.5555/XYZ</electronic-resource-num>
<remote-database-name>Scopus</remote-database-name>
<keywords><keyword>VM</keyword><keyword>firewall</keyword></keywords>
</record>
</records></xml>
""",
        encoding="utf-8",
    )
    frame = read_export(path)
    row = frame.iloc[0]
    assert (row["format"], row["database"], row["record_id"]) == ("endnote_xml", "Scopus", "7")
    assert row["title"] == "Live migration & firewalls"
    assert row["authors"] == "Doe, Jane; Roe, R."
    assert (row["year"], row["doi"], row["pages"]) == (2013, "10.5555/xyz", "5-9")
    assert (row["issn"], row["keywords"], row["entry_type"]) == (
        "1234-5679",
        "VM; firewall",
        "article",
    )


def _ris_with_urls(urls: list[str]) -> str:
    return "".join(f"TY  - JOUR\nTI  - T{i}\nUR  - {u}\nER  - \n\n" for i, u in enumerate(urls))


def test_database_from_library_host_majority(tmp_path: Path) -> None:
    sd = tmp_path / "sd.ris"
    sd.write_text(
        _ris_with_urls(
            [f"https://www.sciencedirect.com/science/article/pii/S{i}" for i in range(4)]
        )
        + _ris_with_urls(["https://doi.org/10.1000/x"]),  # 4 of 5 = 80%
        encoding="utf-8",
    )
    assert set(read_export(sd)["database"]) == {"ScienceDirect"}
    mixed = tmp_path / "mixed.ris"  # Ovid-like: links to several publishers
    mixed.write_text(
        _ris_with_urls(
            [
                "https://www.sciencedirect.com/science/article/pii/S1",
                "https://link.springer.com/article/10.1007/x",
                "https://onlinelibrary.wiley.com/doi/10.1002/y",
            ]
        ),
        encoding="utf-8",
    )
    assert set(read_export(mixed)["database"]) == {""}
    assert set(read_export(mixed, "Ovid")["database"]) == {"Ovid"}


def test_engineering_village_csv(tmp_path: Path) -> None:
    path = tmp_path / "ev.csv"
    path.write_text(
        "Title,Author,Publication year,DOI,Database\n"
        'A,"Smith, J.",2012,10.1234/a,Compendex\nB,"Doe, J.",2011,,Inspec\n',
        encoding="utf-8",
    )
    frame = read_export(path)
    assert set(frame["database"]) == {"Engineering Village"}
    assert frame["year"].tolist() == [2012, 2011]


def test_endnote_tagged(tmp_path: Path) -> None:
    path = tmp_path / "acm.txt"  # extension says nothing
    path.write_text(
        "%0 Conference Proceedings\n%T Live Migration of Virtual Machines\n"
        "%A Clark, Christopher\n%A Fraser, Keir\n%D 2005\n%P 273--286\n"
        "%R 10.5555/1251203.1251223\n%K virtualization, live migration\n"
        "%~ ACM Digital Library\n\n"
        "%0 Journal Article\n%T Second\n%A Doe, J.\n%J J. Net\n%D 2013\n"
        "%X An abstract\nthat continues.\n",
        encoding="utf-8",
    )
    frame = read_export(path)
    assert detect_format(path) == "enw"
    assert frame["title"].tolist() == ["Live Migration of Virtual Machines", "Second"]
    assert frame["authors"].tolist() == ["Clark, Christopher; Fraser, Keir", "Doe, J."]
    assert frame["entry_type"].tolist() == ["inproceedings", "article"]
    assert frame["pages"].tolist() == ["273-286", ""]
    assert frame["keywords"].tolist() == ["virtualization; live migration", ""]
    assert frame["abstract"].tolist() == ["", "An abstract that continues."]
    assert set(frame["database"]) == {"ACM"}


def test_doi_from_links_and_notes_stops_where_the_doi_does(tmp_path: Path) -> None:
    """A DOI found in a record's links or notes (no DO field): a link's query, fragment and
    publisher path tail are not part of it, and markup is a word break. A DOI field keeps
    characters a link would cut (a SICI DOI ends in '#')."""
    path = tmp_path / "links.ris"
    records = [
        "UR  - http://onlinelibrary.wiley.com/doi/10.1002/ajim.22183/abstract",
        "UR  - http://onlinelibrary.wiley.com/store/10.1002/ajim.22405/asset/ajim22405.pdf"
        "?v=1&t=itxh84ic&s=1ac7",
        "UR  - http://download.springer.com/static/pdf/564/art%253A10.1007%252Fs00267-014-"
        "0325-8.pdf?originUrl=http%3A%2F%2Flink.springer.com%2Farticle%2F10.1007%2Fs00267-"
        "014-0325-8&token2=exp=1475707606~acl=%2F",
        "N1  - no Zotero field:<br/>electronic-resource-num: 10.1002/9781119757030.ch10"
        "<br/>isbn: 23288779<br/>pages: 193-216",
        "UR  - https://doi.org/10.1000/ABC(12)3#section",
        "DO  - 10.1002/1097-0142(20000701)89:1<135::AID-CNCR18>3.0.CO;2-#",
    ]
    path.write_text(
        "".join(f"TY  - JOUR\nTI  - T{i}\n{r}\nER  - \n\n" for i, r in enumerate(records)),
        encoding="utf-8",
    )
    assert read_export(path)["doi"].tolist() == [
        "10.1002/ajim.22183",
        "10.1002/ajim.22405",
        "10.1007/s00267-014-0325-8",
        "10.1002/9781119757030.ch10",
        "10.1000/abc(12)3",
        "10.1002/1097-0142(20000701)89:1<135::aid-cncr18>3.0.co;2-#",
    ]


@pytest.mark.parametrize(
    ("lines", "database"),
    [
        ("DB  - Embase\nDB  - Medline\n", "Embase"),  # indexed in both: searched in Embase
        ("UR  - http://www.embase.com/search/results?subaction=viewrecord&id=L1\n", "Embase"),
        ("DB  - Medline\n", "PubMed"),
        ("DB  - JSTOR\n", "JSTOR"),
        ("DB  - ProQuest Dissertations & Theses Global\n", "ProQuest"),
        ("UR  - https://www.proquest.com/docview/123\n", "ProQuest"),
    ],
)
def test_ris_database_embase_jstor_proquest(tmp_path: Path, lines: str, database: str) -> None:
    path = tmp_path / "db.ris"
    path.write_text(f"TY  - JOUR\nTI  - T\n{lines}ER  - \n", encoding="utf-8")
    assert read_export(path)["database"].tolist() == [database]


DIMENSIONS_HEADER = (
    '"Rank","Publication ID","DOI","PMID","PMCID","Title","Abstract","Source title",'
    '"Publication Date","PubYear","Volume","Issue","Pagination","Publication Type",'
    '"Document Type","Authors","Times cited","Dimensions URL"'
)


@pytest.mark.parametrize(
    "note",
    [
        'About the data: Exported on Sep 30, 2026. Criteria: "influenza" in title and abstract.',
        '"About the data: This export was generated on 2026-09-30, search: influenza"',
        "",
    ],
)
def test_dimensions_csv_with_its_note_line(tmp_path: Path, note: str) -> None:
    """Dimensions writes a note line above its CSV header ("About the data: Exported on
    ..."): the header is found below it, line numbers in messages stay the file's own."""
    row = (
        '"1","pub.1000000001","10.1234/DIM1","","","Forecasting influenza","An abstract.",'
        '"Journal of Tests","2020-03-01","2020","12","3","101-110","Article",'
        '"Research Article","Meyer, Austin G; Smith, Jane","42",'
        '"https://app.dimensions.ai/details/publication/pub.1000000001"'
    )
    lines = ([note] if note else []) + [DIMENSIONS_HEADER, row]
    path = tmp_path / "Dimensions-Publication.csv"
    path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    assert detect_format(path) == "csv"
    frame = read_export(path)
    assert frame["record_id"].tolist() == ["pub.1000000001"]
    assert set(frame["database"]) == {"Dimensions"}
    assert frame["title"].tolist() == ["Forecasting influenza"]
    assert frame["year"].tolist() == [2020]
    assert frame["venue"].tolist() == ["Journal of Tests"]
    assert frame["pages"].tolist() == ["101-110"]
    assert frame["doi"].tolist() == ["10.1234/dim1"]
    # A row that cannot be aligned is named by its line in the file.
    path.write_text("\n".join(lines + ['"2","pub.2","x","","","T",' + ",".join(['"a"'] * 13)]))
    with pytest.raises(MigfwError, match=f"line {len(lines) + 1}:"):
        read_export(path)


def test_note_line_above_an_unknown_table_is_still_unknown(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("Exported today\nName,Colour\nA,red\n", encoding="utf-8")
    with pytest.raises(MigfwError, match="unknown format"):
        read_export(path)


def test_publish_or_perish_csv(tmp_path: Path) -> None:
    """Publish or Perish (Google Scholar harvesting): venue from "Source", pages from
    StartPage/EndPage; Scopus's "Source" column (= "Scopus") is still no venue."""
    path = tmp_path / "pop.csv"
    path.write_text(
        '"Cites","Authors","Title","Year","Source","Publisher","ArticleURL","CitesURL",'
        '"GSRank","QueryDate","Type","DOI","ISSN","CitationURL","Volume","Issue","StartPage",'
        '"EndPage","ECC","CitesPerYear","CitesPerAuthor","AuthorCount","Age","Abstract",'
        '"FullTextURL","RelatedURL"\n'
        '"120","C Clark, K Fraser","Live migration of virtual machines","2005",'
        '"Proceedings of NSDI","usenix.org","https://x","https://y","1","2024-01-01","",'
        '"10.5555/1251203.1251223","","","2","","273","286","120","6","60","2","19","",'
        '"",""\n',
        encoding="utf-8",
    )
    frame = read_export(path)
    assert frame["venue"].tolist() == ["Proceedings of NSDI"]
    assert frame["pages"].tolist() == ["273-286"]
    assert frame["year"].tolist() == [2005]
    path.write_text(
        "Authors,Title,Year,Source title,Volume,DOI,Source,EID\n"
        "Doe J.,A,2020,,3,10.1/x,Scopus,2-s2.0-1\n",
        encoding="utf-8",
    )
    frame = read_export(path)
    assert frame["venue"].tolist() == [""] and set(frame["database"]) == {"Scopus"}


def test_covidence_csv_export(tmp_path: Path) -> None:
    """Covidence's CSV (also the WHO COVID-19 database's layout): "Published Year"."""
    path = tmp_path / "covidence.csv"
    path.write_text(
        "Title,Authors,Abstract,Published Year,Published Month,Journal,Volume,Issue,Pages,"
        "Accession Number,DOI,Ref,Covidence #,Study,Notes,Tags\n"
        '"A trial","Doe, J.; Roe, R.",An abstract,2020,Mar,Lancet,395,10229,"1054-1062",'
        "32171076,10.1016/S0140-6736(20)30566-3,12,#1234,Doe 2020,,Included\n"
        '"B",Li W.,,2021,,BMJ,372,,n71,,,13,#1235,Li 2021,,\n',
        encoding="utf-8",
    )
    frame = read_export(path)
    assert frame["year"].tolist() == [2020, 2021]
    assert frame["venue"].tolist() == ["Lancet", "BMJ"]
    assert frame["pages"].tolist() == ["1054-1062", "n71"]
    assert frame["doi"].tolist() == ["10.1016/s0140-6736(20)30566-3", ""]
    assert frame["record_id"].tolist() == ["32171076", "#1235"]


def test_wos_tab_delimited_export(tmp_path: Path) -> None:
    """Web of Science's tab-delimited export (2-letter field tags as headers, a trailing
    tab on every line): UT is the id, BP-EP the pages, AR an article number."""
    header = (
        "PT AU BA BE GP AF BF CA TI SO SE BS LA DT CT CY CL SP HO DE ID AB C1 RP EM RI OI "
        "FU FX CR NR TC Z9 U1 U2 PU PI PA SN EI BN J9 JI PD PY VL IS PN SU SI MA BP EP AR "
        "DI D2 EA PG WC SC GA UT PM OA HC HP DA"
    ).split()
    rows = [
        {"PT": "J", "AU": "Li, W; Wu, X", "AF": "Li, Wei; Wu, Xiao", "TI": "Live migration",
         "SO": "IEEE TRANSACTIONS ON CLOUD COMPUTING", "PY": "2020", "VL": "8", "IS": "3",
         "BP": "701", "EP": "714", "DI": "10.1109/TCC.2018.1", "UT": "WOS:000514379300001"},
        {"PT": "J", "AU": "Doe, J", "TI": "Firewall state", "SO": "COMPUTER NETWORKS",
         "PY": "2021", "VL": "190", "AR": "107951", "UT": "WOS:000514379300002"},
    ]  # fmt: skip
    lines = ["\t".join(header) + "\t"] + [
        "\t".join(r.get(h, "") for h in header) + "\t" for r in rows
    ]
    path = tmp_path / "savedrecs.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    frame = read_export(path)
    assert set(frame["database"]) == {"Web of Science"}
    assert frame["record_id"].tolist() == ["WOS:000514379300001", "WOS:000514379300002"]
    assert frame["pages"].tolist() == ["701-714", "107951"]
    assert frame["doi"].tolist() == ["10.1109/tcc.2018.1", ""]
    assert frame["venue"].tolist() == ["IEEE TRANSACTIONS ON CLOUD COMPUTING", "COMPUTER NETWORKS"]
    assert frame["year"].tolist() == [2020, 2021]
    assert frame["authors"].iloc[0].startswith("Li, W")


def test_pubmed_csv_journal_and_citation(tmp_path: Path) -> None:
    """PubMed's CSV: venue from "Journal/Book", volume/issue/pages only in its NLM-style
    "Citation"; database PubMed. A "Citation" column of another CSV is not parsed."""
    path = tmp_path / "pubmed.csv"
    path.write_text(
        '"PMID","Title","Authors","Citation","First Author","Journal/Book",'
        '"Publication Year","Create Date","PMCID","NIHMS ID","DOI"\n'
        '"35227408","A","Lim SM, Lau Y.","Behav Ther. 2022 Mar;53(2):334-347. doi: '
        '10.1016/j.beth.2021.09.007. Epub 2021 Oct 12.","Lim SM","Behav Ther","2022",'
        '"2022/03/01",,,"10.1016/j.beth.2021.09.007"\n'
        '"33000001","B","Doe J.","Front Digit Health. 2021 Mar 3;3:617013. doi: 10.3389/x.",'
        '"Doe J","Front Digit Health","2021","2021/03/03",,,""\n'
        '"34000001","C","Roe R.","JMIR Cancer. 2021 Nov 26;7(4):e27850.","Roe R",'
        '"JMIR Cancer","2021","2021/11/26",,,""\n',
        encoding="utf-8",
    )
    frame = read_export(path)
    assert set(frame["database"]) == {"PubMed"}
    assert frame["record_id"].tolist() == ["35227408", "33000001", "34000001"]
    assert frame["venue"].tolist() == ["Behav Ther", "Front Digit Health", "JMIR Cancer"]
    assert frame["volume"].tolist() == ["53", "3", "7"]
    assert frame["issue"].tolist() == ["2", "", "4"]
    assert frame["pages"].tolist() == ["334-347", "617013", "e27850"]
    assert frame["year"].tolist() == [2022, 2021, 2021]
    path.write_text('Title,Year,Citation\nD,2020,"Some J. 2020;1(2):3-4."\n', encoding="utf-8")
    frame = read_export(path)
    assert frame["volume"].tolist() == [""] and frame["pages"].tolist() == [""]


def test_embase_csv_fields_from_its_openurl_link(tmp_path: Path) -> None:
    """Embase's CSV has no DOI/year/journal/pages columns: they are read from the OpenURL
    ("Open URL Link") query; a column of the table itself wins over the link."""
    link = (
        "http://sfx.example.org/x?sid=EMBASE&issn=0008543X&id=doi:10.1002%2Fcncr.20369"
        "&atitle=A+title&stitle=Cancer&title=Cancer&volume=102&issue=4&spage=253&epage=258"
        "&aulast=Eloubeidi&pages=253-258&date=2004"
    )
    path = tmp_path / "embase.csv"
    path.write_text(
        "Title,Author Names,Source,Emtree Medical Index Terms,Open URL Link\n"
        f'A title,"Eloubeidi M.A., Jhala D.","Cancer (2004) 102:4 (253-258)",article,{link}\n'
        "Second,Doe J.,Other (2001),article,\n"
        'Third,Roe R.,"J (2010)",article,http://sfx.example.org/x?sid=EMBASE&date=2010&spage=7\n',
        encoding="utf-8",
    )
    frame = read_export(path)
    assert set(frame["database"]) == {"Embase"}
    assert frame["doi"].tolist() == ["10.1002/cncr.20369", "", ""]
    assert frame["year"].tolist()[0] == 2004 and frame["year"].tolist()[2] == 2010
    assert pd.isna(frame["year"].iloc[1])
    assert frame["venue"].tolist() == ["Cancer", "", ""]
    assert frame["volume"].tolist() == ["102", "", ""]
    assert frame["issue"].tolist() == ["4", "", ""]
    assert frame["pages"].tolist() == ["253-258", "", "7"]
    assert frame["issn"].tolist() == ["0008-543X", "", ""]
    path.write_text(
        f"Title,DOI,Year,Open URL Link\nA title,10.9999/own,2005,{link}\n",
        encoding="utf-8",
    )
    frame = read_export(path)
    assert frame["doi"].tolist() == ["10.9999/own"] and frame["year"].tolist() == [2005]
    assert frame["venue"].tolist() == ["Cancer"]


def test_bibtex_entries_without_citation_key_are_read(tmp_path: Path) -> None:
    """JabRef writes "@article{," for an entry with no key: the fields are all there."""
    path = tmp_path / "nokey.bib"
    path.write_text(
        "@article{,\n  title = {First},\n  doi = {10.1000/ABC},\n  year = {2015}\n}\n\n"
        "@inproceedings{ ,\n  title = {Second},\n  year = {2016}\n}\n\n"
        "@book{key3,\n  title = {Third},\n  year = 2017\n}\n",
        encoding="utf-8",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", SlrImportWarning)
        frame = read_export(path)
    assert frame["title"].tolist() == ["First", "Second", "Third"]
    assert frame["doi"].tolist() == ["10.1000/abc", "", ""]
    assert frame["year"].tolist() == [2015, 2016, 2017]
    assert frame["record_id"].iloc[2] == "key3"
    assert frame["record_id"].is_unique and all(frame["record_id"])


def test_endnote_tagged_type_line_anywhere(tmp_path: Path) -> None:
    """Refer fields come in any order (AIS eLibrary writes %T before %0, and omits %0 for
    front matter): blank lines separate records; a second %0 without one starts a new one."""
    path = tmp_path / "ais.enl"
    path.write_text(
        "%T First\n%0 Journal Article\n%A Guo, W.\n%D 2021\n%P 1-9\n\n\n"
        "%T Table of Contents\n%B MIS Quarterly\n%D 2021\n\n"
        "%0 Journal Article\n%T Third\n%D 2009\n"
        "%0 Book\n%T Fourth\n%D 2010\n",
        encoding="utf-8",
    )
    frame = read_export(path)
    assert frame["title"].tolist() == ["First", "Table of Contents", "Third", "Fourth"]
    assert frame["entry_type"].tolist() == ["article", "", "article", "book"]
    assert frame["year"].tolist() == [2021, 2021, 2009, 2010]
    assert frame["authors"].tolist() == ["Guo, W.", "", "", ""]
    assert frame["pages"].tolist() == ["1-9", "", "", ""]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "empty file"),
        (b"   \n\n", "empty file"),
        (b"\x00\x01\x02PK\x03\x04binary", "binary file"),
        (b"just some prose\nwith no structure\n", "unknown format"),
        (b"<?xml version='1.0'?><broken><PubmedArticleSet>", "malformed XML"),
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", "an HTML page"),
        (b"\xff\xfe\x00\xd8TY  - JOUR", "not valid UTF-16 text"),  # a BOM, then no text
        (b"\xff\xfe\x00\x00\x00\x00\x01\x00", "binary file"),
        ("TY  - JOUR\nTI  - T\nER  - \n".encode("utf-16-le")[:-1], "not valid UTF-16 text"),
    ],
)
def test_bad_input_one_line_error(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(MigfwError) as info:
        read_export(path)
    assert str(info.value).startswith(f"{path}: ")
    assert words in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-16", "utf-8-sig"])
def test_utf16_with_or_without_bom(tmp_path: Path, encoding: str) -> None:
    """UTF-16 exports read with or without their BOM (JabRef's tiny-LE-noBOM.bib was refused
    as 'binary'), non-Latin text included."""
    text = (
        "TY  - JOUR\nTI  - Über Migration – 虚拟机\nAU  - Müller, J.\nPY  - 2020\n"
        "DO  - 10.1000/ÄBC\nER  - \n\nTY  - CONF\nTI  - Second\nPY  - 2021\nER  - \n"
    )
    path = tmp_path / "u16.ris"
    path.write_bytes(text.encode(encoding))
    frame = read_export(path)
    assert frame["title"].tolist() == ["Über Migration – 虚拟机", "Second"]
    assert frame["authors"].tolist() == ["Müller, J.", ""]
    assert frame["doi"].tolist() == ["10.1000/äbc", ""]
    assert frame["year"].tolist() == [2020, 2021]


def test_missing_file_error(tmp_path: Path) -> None:
    with pytest.raises(MigfwError, match="file not found"):
        read_export(tmp_path / "nope.ris")


# --------------------------------------------------------------- CLI


def test_cli_import_writes_records(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ris = tmp_path / "a.ris"
    ris.write_text(RIS_TEXT, encoding="utf-8")
    csv_path = tmp_path / "b.csv"
    csv_path.write_text("ID,title,year\nr1,Other,2018\n", encoding="utf-8")
    out = tmp_path / "out" / "records.csv"
    assert main(["slr", "import", str(ris), str(csv_path), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{ris}: 1 records (ris, unknown database)",
        f"{csv_path}: 1 records (csv, unknown database)",
        f"total: 2 records from 2 files -> {out}",
    ]
    table = read_records(out)
    assert list(table.columns) == COLUMNS
    assert table["record_id"].tolist() == ["r1", "r1#2"]  # unique across the run
    assert table["year"].tolist() == [2019, 2018]


def test_cli_database_option(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ris = tmp_path / "a.ris"
    ris.write_text(RIS_TEXT, encoding="utf-8")
    out = tmp_path / "r.csv"
    assert main(["slr", "import", str(ris), "--database", "Wiley", "--out", str(out)]) == 0
    assert "(ris, Wiley)" in capsys.readouterr().out
    assert read_records(out)["database"].tolist() == ["Wiley"]


def test_cli_bad_file_exit_2_no_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = tmp_path / "a.ris"
    good.write_text(RIS_TEXT, encoding="utf-8")
    bad = tmp_path / "b.json"
    bad.write_text('[{"title": "x"}]', encoding="utf-8")
    out = tmp_path / "records.csv"
    assert main(["slr", "import", str(good), str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "not supported" in err[0]
    assert not out.exists()
    assert sorted(tmp_path.iterdir()) == sorted([good, bad])  # no partial/temp file left


def test_cli_prints_warnings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "c.bib"
    empty.write_text("@comment{nothing here}\n", encoding="utf-8")
    out = tmp_path / "r.csv"
    assert main(["slr", "import", str(empty), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"{empty}: 0 records (bibtex, unknown database)" in captured.out
    assert captured.err.strip() == f"warning: {empty}: no records found (bibtex)"
    assert read_records(out).empty


def test_read_records_refuses_other_csv(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(
        MigfwError, match=r"other.csv: not a records CSV \(missing columns: record_id"
    ):
        read_records(path)
    bad = tmp_path / "bad_year.csv"
    bad.write_text(",".join(COLUMNS) + "\n" + ",".join(["x"] * len(COLUMNS)) + "\n")
    with pytest.raises(MigfwError, match="bad_year.csv: not a records CSV"):
        read_records(bad)


# --------------------------------------------------------------- peer tools

RIS_PEER_FILES = [n for n, (_, fmt, _) in COUNTS.items() if fmt == "ris"]
BIB_PEER_FILES = [
    "slr_elderly_2016/acm-cog.bib",
    "slr_elderly_2016/ieee-cog.bib",
    "slr_elderly_2016/sd-cog.bib",
    "synthesisr/Scopus_bib_example.bib",
    "bibtexparser_edgecases/biber-examples.bib",
    "bibtexparser_edgecases/multiple_entries_and_comments.bib",
    "bibtexparser_edgecases/string.bib",
    "bibtexparser_edgecases/traps.bib",
]


@needs_testdata
@pytest.mark.parametrize("name", RIS_PEER_FILES)
def test_ris_agrees_with_rispy(name: str) -> None:
    """rispy (independent RIS parser) finds the same records, IDs, titles and DOIs."""
    rispy = pytest.importorskip("rispy")
    path = BIBLIO / name
    with open(path, encoding="utf-8-sig") as handle:
        peer = rispy.load(handle)
    ours = _quiet_read(path)
    assert len(peer) == len(ours)
    for rec, (_, row) in zip(peer, ours.iterrows(), strict=True):
        title = rec.get("title") or rec.get("primary_title") or rec.get("short_title") or ""
        assert clean_text_ws(title) == row["title"]
        if rec.get("doi"):
            assert normalise_doi(rec["doi"]) == row["doi"]
        if rec.get("id"):
            assert row["record_id"].split("#")[0] == rec["id"]


def clean_text_ws(title: str) -> str:
    """Our title rule: cleaned text without a closing full stop."""
    return clean_text(title).rstrip(" .")


@needs_testdata
@pytest.mark.parametrize("name", BIB_PEER_FILES)
def test_bibtex_agrees_with_bibtexparser(name: str) -> None:
    """bibtexparser 2 with its default middlewares (whole-value @string resolution,
    enclosing removal, lower-case field names; the importer evaluates values itself)
    finds the same entries, titles and DOIs. It reports an entry with a repeated field
    or key as a failed block instead of an entry: those are counted, not compared."""
    bibtexparser = pytest.importorskip("bibtexparser")
    from bibtexparser import model

    path = BIBLIO / name
    library = bibtexparser.parse_string(
        path.read_text(encoding="utf-8-sig"),
        append_middleware=[bibtexparser.middlewares.NormalizeFieldKeys()],  # TITLE -> title
    )
    duplicates = (model.DuplicateFieldKeyBlock, model.DuplicateBlockKeyBlock)
    n_duplicates = sum(isinstance(b, duplicates) for b in library.failed_blocks)
    assert n_duplicates == len(library.failed_blocks)  # nothing else failed
    ours = _quiet_read(path)
    assert len(library.entries) + n_duplicates == len(ours)
    # a key used twice ("tmn4" in biber-examples) is "tmn4#2" on our side
    by_key = {k: row for k, (_, row) in zip(ours["record_id"], ours.iterrows(), strict=True)}
    for entry in library.entries:
        row = by_key[entry.key]
        assert clean_text_ws(entry["title"] if "title" in entry else "") == row["title"]
        assert normalise_doi(entry["doi"] if "doi" in entry else "") == row["doi"]
