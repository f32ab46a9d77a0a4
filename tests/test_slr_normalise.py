"""Tests for migfw.slr.normalise; every expected value is worked out by hand."""

from __future__ import annotations

import pytest

from migfw.slr.normalise import (
    author_keys,
    clean_text,
    format_author,
    normalise_doi,
    normalise_language,
    normalise_pages,
    parse_authors,
    parse_year,
    strip_accents,
    title_key,
    title_variants,
    venue_abbreviation_match,
    venue_tokens,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10.1109/MCSE.2013.95", "10.1109/mcse.2013.95"),
        ("https://doi.org/10.1016/j.joi.2017.08.007", "10.1016/j.joi.2017.08.007"),
        ("http://dx.doi.org/10.1016/j.paid.2016.04.101", "10.1016/j.paid.2016.04.101"),
        ("doi:10.1000/XYZ.", "10.1000/xyz"),  # prefix and sentence full stop
        ("DOI 10.1000/abc;", "10.1000/abc"),
        ("https://doi.org/10.1000%2Fabc", "10.1000/abc"),  # URL-encoded slash
        ("S0048-9697(17)30912-9 [pii]", ""),  # a PII, not a DOI
        (
            "10.1002/(SICI)1097-4571(199806)49:8<693::AID-ASI4>3.0.CO;2-0",
            "10.1002/(sici)1097-4571(199806)49:8<693::aid-asi4>3.0.co;2-0",
        ),
        ("(see 10.1000/abc)", "10.1000/abc"),
        ("", ""),
        (None, ""),
        ("nan", ""),
    ],
)
def test_normalise_doi(raw: object, expected: str) -> None:
    assert normalise_doi(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (r"Caf\'{e}", "Café"),
        (r"Caf{\'e}", "Café"),
        (r"na\"{\i}ve", "naïve"),
        (r"{\"U}ber \c{c}a", "Über ça"),
        (r"Jean Laid{\'e}", "Jean Laidé"),
        (r"{\O}stergaard \ss{} \aa", "Østergaard ß å"),
        (r"\v{S}koda \'{\i}", "Škoda í"),
        (r"{An} amazing {title}", "An amazing title"),
        (r"pages 12--23 --- done", "pages 12–23 — done"),
        (r"AT\&T 50\% \textit{in vivo}", "AT&T 50% in vivo"),
        ("n.s.~2", "n.s. 2"),
        ("  many   spaces\n\tand lines ", "many spaces and lines"),
        ("Fish &amp; Chips", "Fish & Chips"),
        ("CO<sub>2</sub> and <i>E. coli</i>", "CO2 and E. coli"),
        ("non\u00a0breaking", "non breaking"),
        (None, ""),
    ],
)
def test_clean_text(raw: object, expected: str) -> None:
    assert clean_text(raw) == expected


def test_title_key_matches_variants() -> None:
    a = title_key("How Consumers Perceive Trustworthiness - Effects of Photos at Airbnb")
    b = title_key("How consumers perceive trustworthiness: effects of photos at Airbnb.")
    assert a == b == "how consumers perceive trustworthiness effects of photos at airbnb"
    assert title_key(r"R{\'e}sum{\'e} of Ærø") == title_key("Résumé of Aero") == "resume of aero"
    assert title_key("Café") != title_key("Cafe lattes")


def test_strip_accents() -> None:
    assert strip_accents("Łódź Ørsted Müller") == "Lodz Orsted Muller"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # BibTeX
        ("Haddaway, Neal R. and Feierman, Andrew", ["Haddaway, Neal R.", "Feierman, Andrew"]),
        ("Sang Kil Cha and Maverick Woo", ["Cha, Sang Kil", "Woo, Maverick"]),
        (
            r"M{\"u}ller, J{\'e}r{\^o}me and {\O}stergaard, Jan",
            ["Müller, Jérôme", "Østergaard, Jan"],
        ),
        ("Toto, A and Titi, B", ["Toto, A.", "Titi, B."]),
        # braces protect corporate names, and "and" inside them
        ("{World Health Organization}", ["World Health Organization"]),
        ("{Barnes and Noble} and Smith, J.", ["Barnes and Noble", "Smith, J."]),
        # one "Last, First" with a multi-word surname is one person
        ("Van Kleek, Max", ["Van Kleek, Max"]),
        ("De Roure, David J.", ["De Roure, David J."]),
        # RIS AU lines (list)
        (["Marx, Karl", "Lindgren, Astrid"], ["Marx, Karl", "Lindgren, Astrid"]),
        (["Shannon,Claude E."], ["Shannon, Claude E."]),
        # Scopus / IEEE "; " lists
        ("Liu F.; Li C.; Liu Y.", ["Liu, F.", "Li, C.", "Liu, Y."]),
        ("P. Kogge; J. Shalf", ["Kogge, P.", "Shalf, J."]),
        ("S. Raj Paul; V. Sarkar", ["Paul, S. Raj", "Sarkar, V."]),
        ("Mansi; G.Kumaravelan", ["Mansi", "Kumaravelan, G."]),  # mononym, glued initial
        # old Scopus: comma-separated "Last I."
        ("Phillips J.C., Braun R., Wang W.", ["Phillips, J.C.", "Braun, R.", "Wang, W."]),
        # WoS "Last, F" / "Last, FM"
        ("Zhang, GQ; Xu, F", ["Zhang, G. Q.", "Xu, F."]),
        (["Parkes-Loach, PS", "Majeed, AP"], ["Parkes-Loach, P. S.", "Majeed, A. P."]),
        # Lens / OpenAlex / hand-made CSV: given names first
        ("Petar Radanliev; David De Roure", ["Radanliev, Petar", "De Roure, David"]),
        ("Massimo Aria|Corrado Cuccurullo", ["Aria, Massimo", "Cuccurullo, Corrado"]),
        (
            "Thanh Tam Nguyen, Thanh Trung Huynh, Zhao Ren",
            ["Nguyen, Thanh Tam", "Huynh, Thanh Trung", "Ren, Zhao"],
        ),
        # Springer: names glued together
        (
            "Vivek K. PallipuramMohammad BhuiyanMelissa C. Smith",
            ["Pallipuram, Vivek K.", "Bhuiyan, Mohammad", "Smith, Melissa C."],
        ),
        ("Araz R. AlievNigar T. Ismayilova", ["Aliev, Araz R.", "Ismayilova, Nigar T."]),
        # glued "Last I." (bib-dedupe test set)
        (
            "Tan A.Schulze A.O'Donnell C. P.Davis P. G.",
            ["Tan, A.", "Schulze, A.", "O'Donnell, C. P.", "Davis, P. G."],
        ),
        # Mc/Mac prefixes and inner-capital surnames are not glue points
        ("John McDonald; Ann MacLeod", ["McDonald, John", "MacLeod, Ann"]),
        ("Ann VanderBilt", ["VanderBilt, Ann"]),
        ("Ella FitzGeraldJohn Smith", ["FitzGerald, Ella", "Smith, John"]),
        # parenthesised extras dropped (WoS e-mail, Scopus author ID)
        (
            "Liu, Fengyuan (60410297700); Li, Chunyun (58862216200)",
            ["Liu, Fengyuan", "Li, Chunyun"],
        ),
        (["Stillman, Andrew N. (a.s@uconn.edu) "], ["Stillman, Andrew N."]),
        ("Zhang, Guanqin", ["Zhang, Guanqin"]),
        ("", []),
        (None, []),
    ],
)
def test_parse_authors(raw: object, expected: list[str]) -> None:
    assert parse_authors(raw) == expected


def test_author_keys() -> None:
    assert author_keys("Müller, J.; O'Donnell, C. P.; De Roure, David") == [
        "muller",
        "odonnell",
        "deroure",
    ]
    # same people written by different databases give the same keys
    assert author_keys("P. Kogge; J. Shalf") == author_keys("Kogge, Peter and Shalf, John")
    assert author_keys(["Łukasz Nowak"]) == ["nowak"]


@pytest.mark.parametrize(
    ("pages", "end", "expected"),
    [
        ("123--130", "", "123-130"),
        ("123 - 130", "", "123-130"),
        ("123–130", "", "123-130"),
        ("7 - 12", "", "7-12"),
        ("1781-802", "", "1781-1802"),  # abbreviated end page
        ("pp. 45-47", "", "45-47"),
        ("307.0", "326.0", "307-326"),  # floats from pandas-written CSVs
        ("16", "26", "16-26"),
        ("675", "675", "675"),
        ("e0815", "", "e0815"),
        ("Cd002273", "", "Cd002273"),
        ("1135", "", "1135"),
        ("", "", ""),
    ],
)
def test_normalise_pages(pages: str, end: str, expected: str) -> None:
    assert normalise_pages(pages, end) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2016/09//", 2016),
        ("2020//", 2020),
        ("2017 Nov 15", 2017),
        ("DEC 16 2020", 2020),
        ("2025.0", 2025),
        ("1948/07//", 1948),
        ("in press", None),
        ("12345", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_year(raw: object, expected: int | None) -> None:
    assert parse_year(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("eng", "English"),  # PubMed
        ("ENG", "English"),  # PubMed XML
        ("en", "English"),  # OpenAlex
        ("English", "English"),  # Scopus / WoS
        ("English; Spanish", "English; Spanish"),
        ("ger", "German"),
        ("Klingon", "Klingon"),
        ("", ""),
    ],
)
def test_normalise_language(raw: str, expected: str) -> None:
    assert normalise_language(raw) == expected


@pytest.mark.parametrize(
    ("short", "full", "same"),
    [
        ("J Clin Epidemiol", "Journal of Clinical Epidemiology", True),
        ("N Engl J Med", "The New England Journal of Medicine", True),
        (
            "Proc Natl Acad Sci U S A",
            "Proceedings of the National Academy of Sciences of the United States of America",
            True,
        ),  # fmt: skip
        ("JAMA", "Journal of the American Medical Association", True),
        (
            "ICIS : Transforming Society with Digital Innovation",
            "International Conference on Information Systems",
            True,
        ),  # fmt: skip
        ("Am J Med", "Annals of Medicine", False),
        ("Lancet", "Journal of Medicine", False),
        ("J Med", "Journal of Medical Ethics", False),
    ],
)
def test_venue_abbreviation_match(short: str, full: str, same: bool) -> None:
    assert venue_abbreviation_match(venue_tokens(short), venue_tokens(full)) is same


def test_title_variants_bracketed_translation() -> None:
    assert title_variants("Crowdwork: applying a theory [Arbeiten in der Crowd: eine Theorie]") == [
        "crowdwork applying a theory arbeiten in der crowd eine theorie",
        "crowdwork applying a theory",
        "arbeiten in der crowd eine theorie",
    ]
    # MEDLINE's translated title: the brackets go, one key.
    assert title_variants("[Aspirin after stroke in the elderly].") == [
        "aspirin after stroke in the elderly"
    ]
    # A short bracketed note is not a second title.
    assert title_variants("The all-seeing employer [careers]") == [
        "the all seeing employer careers",
        "the all seeing employer",
    ]


@pytest.mark.parametrize(
    ("raw", "surname"),
    [
        ("Huang Chua CE", "Huang Chua"),
        ("de Vaujany FX", "de Vaujany"),
        ("Smith JA", "Smith"),
        ("Vivek K. Pallipuram", "Pallipuram"),
    ],  # fmt: skip
)
def test_medline_multi_word_surnames(raw: str, surname: str) -> None:
    assert format_author(raw).split(",")[0] == surname
