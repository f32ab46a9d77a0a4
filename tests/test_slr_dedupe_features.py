"""The compact per-record features of dedupe (features.py, columns.py): codes in the
smallest integer type, string tables as numpy StringDType arrays (title keys, DOIs and
their bases in one table), one-key title variants stored as the title's entry, interned
name tokens as sorted tuples, equal author lists one entry, record ids as one string
array, combinations of codes and exact copies found on integer keys. Each gives the
values the old representation gave (lists of Python objects per record), checked on
records whose values are known by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.dtypes import StringDType

from migfw.slr.dedupe.columns import _code_array, _Column, _per_combination, _Variants
from migfw.slr.dedupe.features import _features, _take

CATS = "deep learning for cats"
BILINGUAL = "Katzen und Hunde [Cats and dogs in the house]"


def _records() -> pd.DataFrame:
    """Four records: r4 repeats r1 with a DOI written as a URL; r2 has missing cells
    (NA) where r3 has empty strings (both are '' to dedupe)."""
    return pd.DataFrame(
        {
            "record_id": ["r1", "r2", "r3", "r4"],
            "title": ["Deep Learning for Cats", None, BILINGUAL, "Deep learning for CATS."],
            "authors": ["Smith, John; Doe, Jane", None, "", "Smith, John; Doe, Jane"],
            "doi": ["10.1000/ABC", None, "", "https://doi.org/10.1000/abc"],
            "year": [2020, None, 2019, 2020],
            "venue": ["Journal of Cats", None, "Proc. Conf X", "Journal of Cats"],
            "volume": ["3", None, "", "3"],
            "issue": ["1", None, "", "1"],
            "pages": ["12-19", None, "e0815", "12-19"],
        }
    ).astype({c: "str" for c in ("record_id", "title", "authors", "doi", "venue", "volume",
                                 "issue", "pages")})  # fmt: skip


def test_features_of_arrow_strings_are_the_values_known_by_hand() -> None:
    records = _records()
    feat = _features(records)
    assert list(feat.ids) == ["r1", "r2", "r3", "r4"]
    assert list(feat.title) == [CATS, "", "katzen und hunde cats and dogs in the house", CATS]
    assert list(feat.doi) == ["10.1000/abc", "", "", "10.1000/abc"]
    assert list(feat.authors) == [["smith", "doe"], [], [], ["smith", "doe"]]
    names = ("doe", "jane", "john", "smith")  # (a set, as a sorted tuple)
    assert list(feat.tokens) == [names, (), (), names]
    assert list(feat.year) == [2020, 0, 2019, 2020]
    assert list(feat.venue) == ["journal of cats", "", "proc conf x", "journal of cats"]
    assert list(feat.volume) == ["3", "", "", "3"]
    assert list(feat.issue) == ["1", "", "", "1"]
    assert list(feat.page) == ["12", "", "815", "12"]
    # A missing cell and an empty string are one value: one code, in order of first
    # appearance (as the old per-record strings gave).
    assert feat.authors.numpy_codes().tolist() == [0, 1, 1, 0]
    assert feat.volume.numpy_codes().tolist() == [0, 1, 1, 0]
    assert feat.doi_code.tolist() == [0, -1, -1, 0]
    assert feat.page_code.tolist() == [0, -1, 1, 0]


def test_object_cells_give_the_same_features_as_arrow_strings() -> None:
    arrow, plain = _records(), _records().astype(object)
    a, b = _features(arrow), _features(plain)
    for name in ("title", "variants", "authors", "tokens", "doi", "venue", "volume", "issue",
                 "page", "pages", "vtype", "generic"):  # fmt: skip
        column_a, column_b = getattr(a, name), getattr(b, name)
        assert list(column_a) == list(column_b), name
        assert column_a.numpy_codes().tolist() == column_b.numpy_codes().tolist(), name


def test_code_array_uses_the_smallest_type_that_holds_the_table() -> None:
    codes = np.array([0, 5, 126, -1])
    assert _code_array(codes, 127).typecode == "b"
    assert _code_array(codes, 128).typecode == "h"
    assert _code_array(codes, 32_767).typecode == "h"
    assert _code_array(codes, 32_768).typecode == "i"
    for n_values in (127, 128, 40_000):
        assert list(_code_array(codes, n_values)) == [0, 5, 126, -1]
    wide = np.array([0, 32_767, 40_000])
    assert list(_code_array(wide, 40_001)) == [0, 32_767, 40_000]
    feat = _features(_records())
    assert feat.title.codes.typecode == "b"  # three titles
    assert feat.title.numpy_codes().dtype == np.int8


def test_title_variants_are_lists_though_one_key_titles_store_the_key() -> None:
    feat = _features(_records())
    variants = feat.variants
    assert isinstance(variants, _Variants)
    expected = [[CATS], [""], ["katzen und hunde cats and dogs in the house",
                "katzen und hunde", "cats and dogs in the house"], [CATS]]  # fmt: skip
    assert list(variants) == expected
    assert [variants[i] for i in range(4)] == expected
    assert variants.table()[variants.numpy_codes()].tolist() == expected
    assert list(variants.map(len)) == [1, 1, 3, 1]
    assert feat.multi_title.tolist() == [False, False, True, False]
    # A one-key entry is the title table's entry (no list, no second string); the
    # bracketed title's keys are a slice of one string array.
    assert variants.key_of[variants.codes[0]] == feat.title.codes[0]
    assert variants.keys is feat.title.values
    assert feat.title.values.dtype == StringDType()
    assert variants.key_of[variants.codes[2]] == -1
    assert variants.flat.tolist() == expected[2]
    assert variants.sizes().tolist() == [1, 1, 3, 1]  # per raw title (r4 spelled otherwise)
    part = _take(feat, np.array([3, 2]))
    assert isinstance(part.variants, _Variants)
    assert list(part.variants) == [expected[3], expected[2]]
    assert list(part.title) == [CATS, "katzen und hunde cats and dogs in the house"]


def test_name_tokens_are_one_string_object_across_records() -> None:
    records = _records()
    records.loc[1, "authors"] = "Doe, Jane"  # another author string with the same name
    feat = _features(records)
    assert feat.authors[0][1] == feat.authors[1][0] == "doe"
    assert feat.authors[0][1] is feat.authors[1][0]
    (doe,) = [t for t in feat.tokens[1] if t == "doe"]
    assert doe is feat.authors[0][1]


def test_record_ids_are_one_string_array_shared_with_the_link_store() -> None:
    from migfw.slr.dedupe.linkstore import LinkStore

    records = _records()
    records["record_id"] = ["r10", "r9", "é-1", "a long record id of many bytes"]
    feat = _features(records)
    assert feat.ids.dtype == StringDType()
    assert feat.ids.tolist() == ["r10", "r9", "é-1", "a long record id of many bytes"]
    assert _take(feat, np.array([2, 0])).ids.tolist() == ["é-1", "r10"]
    store = LinkStore(feat.ids, np.zeros(4, dtype=np.int64), 1)
    try:
        assert store.ids is feat.ids  # not an object copy of every id
        # Links are sorted by the ids as Python orders strings (code points).
        assert store.rank.tolist() == [1, 2, 3, 0]
    finally:
        store.close()


def test_exact_copies_are_found_by_value_not_by_spelling() -> None:
    from migfw.slr.dedupe.features import _exact_copy_of

    base = {"title": "Deep Learning for Cats", "authors": "Smith, John; Doe, Jane",
            "doi": "10.1000/abc", "year": 2020, "venue": "Journal of Cats", "volume": "3",
            "issue": "1", "pages": "12-19"}  # fmt: skip
    rows = [
        base,  # r0
        dict(base),  # r1: copy of r0
        {**base, "doi": "10.1000/xyz"},  # r2: another DOI: not a copy
        {**base, "title": "Editorial"},  # r3: a title naming no work: never folded
        {**base, "title": "Editorial"},  # r4: ... not even onto r3
        dict(base),  # r5: copy of r0, but kept apart below
        # r6: other spellings of the same values (case, a stop, DOI as a URL): equal after
        # normalisation, so a copy of r0 (its raw cells, and their codes, differ from r0's).
        {
            **base,
            "title": "Deep learning for CATS.",
            "doi": "https://doi.org/10.1000/ABC",
            "authors": "SMITH, John; DOE, Jane",
        },  # fmt: skip
        {**base, "title": ""},  # r7: no title: never folded
        {**base, "doi": "10.1000/xyz"},  # r8: copy of r2
        {**base, "authors": "Doe, Jane; Smith, John"},  # r9: authors in another order
    ]
    records = pd.DataFrame(rows)
    records.insert(0, "record_id", [f"r{k}" for k in range(len(rows))])
    records = records.astype({c: "str" for c in records.columns if c != "year"})
    feat = _features(records)
    assert feat.variants.codes[6] != feat.variants.codes[0]  # other raw title, same key
    assert _exact_copy_of(feat, {5}).tolist() == [0, 0, 2, 3, 4, 5, 0, 7, 2, 9]
    assert _exact_copy_of(feat, set()).tolist() == [0, 0, 2, 3, 4, 0, 0, 7, 2, 9]
    assert _exact_copy_of(feat, {0}).tolist() == [0, 1, 2, 3, 4, 1, 1, 7, 2, 9]


def test_string_tables_are_string_arrays_and_doi_bases_share_the_dois_table() -> None:
    records = _records()
    records.loc[1, "doi"] = "10.1002/14651858.CD002273.pub2"  # Cochrane: base not a DOI here
    records.loc[2, "doi"] = "10.1002/14651858.CD002273.pub3"
    feat = _features(records)
    for name in ("title", "tail", "doi", "doi_base", "issue"):
        assert getattr(feat, name).values.dtype == StringDType(), name
    assert feat.doi.values is feat.doi_base.values  # one table of strings
    cochrane = "10.1002/14651858.cd002273"
    assert list(feat.doi) == ["10.1000/abc", cochrane + ".pub2", cochrane + ".pub3", "10.1000/abc"]
    assert list(feat.doi_base) == ["10.1000/abc", cochrane, cochrane, "10.1000/abc"]
    assert feat.doi.values.tolist() == ["10.1000/abc", cochrane + ".pub2", cochrane + ".pub3",
                                        cochrane]  # fmt: skip
    assert feat.doi_code.tolist() == [0, 1, 1, 0]
    assert isinstance(feat.title[0], str) and feat.title[0] == CATS


def test_equal_author_lists_and_number_sets_are_one_entry() -> None:
    records = _records()
    records.loc[1, "authors"] = "SMITH, John; DOE, Jane"  # r1's names, other spelling
    records.loc[1, "title"] = "Cats, part 2"
    records.loc[2, "title"] = "Dogs, part 2"
    feat = _features(records)
    assert feat.authors[1] == feat.authors[0] == ["smith", "doe"]
    assert feat.authors.codes[1] == feat.authors.codes[0]  # one list for both spellings
    assert len(feat.authors.values) == 2  # ["smith", "doe"] and []
    assert feat.numbers[1] == feat.numbers[2] == frozenset({"2"})
    assert feat.numbers.codes[1] == feat.numbers.codes[2]
    assert feat.numbers[0] == frozenset()


def test_per_combination_is_one_call_per_combination_in_order_of_first_appearance() -> None:
    rng = np.random.default_rng(3)
    a = _Column(_code_array(rng.integers(0, 300, 2000), 300), [f"a{k}" for k in range(300)])
    b = _Column(_code_array(rng.integers(0, 5, 2000), 5), list(range(5)))
    calls = []

    def joined(x: str, y: int) -> str:
        calls.append((x, y))
        return f"{x}|{y % 2}"  # equal results from two combinations: one entry

    column = _per_combination((a, b), joined)
    expected = [f"{a[i]}|{b[i] % 2}" for i in range(2000)]
    assert list(column) == expected
    assert len(calls) == len(set(calls)) == len({(a[i], b[i]) for i in range(2000)})
    assert column.values == list(dict.fromkeys(expected))  # first appearance, no repeats
    assert column.codes.typecode == "h"
