"""How dedupe stores a feature of every record: integer codes (1-4 bytes per record) into a
table of its distinct values, computed once per distinct value (features.py says what the
values are)."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.dtypes import StringDType

from migfw.slr.dedupe.result import text_column


def _code_array(codes: np.ndarray, n_values: int) -> array:
    """Codes in the smallest signed type a table of `n_values` needs: 1, 2 or 4 bytes per
    record (most tables hold a few or a few thousand values: int32 for all of them was
    ~4 MiB of the features of 100,000 records)."""
    typecode = "b" if n_values <= 127 else "h" if n_values <= 32767 else "i"
    return array(typecode, np.asarray(codes).astype(typecode).tobytes())


class _Column(Sequence):
    """One feature of every record, as integer codes into a table of its values (one
    Python object per distinct value, 1-4 bytes per record: _code_array): a list held a
    pointer and often a new object per record, ~120 MiB for the features of 100,000
    records. Indexing and iteration give the values, as a list would."""

    __slots__ = ("codes", "values")

    def __init__(self, codes: array, values: Any) -> None:
        self.codes = codes  # array('b'/'h'/'i'): indexing gives Python ints (fast per pair)
        self.values = values  # a list (a StringDType array in _Strings)

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, i: Any) -> Any:
        return self.values[self.codes[i]]

    def __iter__(self) -> Iterator:
        values = self.values
        return (values[c] for c in self.codes)

    def numpy_codes(self) -> np.ndarray:
        return np.frombuffer(self.codes, dtype=np.dtype(self.codes.typecode))

    def table(self) -> np.ndarray:
        """The distinct values as a numpy array (index it with the codes): object, or the
        StringDType table itself (_strings: not a Python string per entry)."""
        if isinstance(self.values, np.ndarray):
            return self.values
        table = np.empty(len(self.values), dtype=object)
        table[:] = self.values  # (not np.array: list and tuple values stay objects)
        return table

    def objects(self, dtype: Any = object) -> np.ndarray:
        """The values of all records as one numpy array (vectorised masks)."""
        return self.table()[self.numpy_codes()].astype(dtype, copy=False)

    def map(self, function: Callable[[Any], Any], by_value: bool = False) -> _Column:
        """`function` of each record's value, computed once per table entry; with
        `by_value`, equal results share one entry (hashable results)."""
        results = [function(v) for v in self.values]
        if not by_value:
            return _Column(self.codes, results)
        return _recoded(self.numpy_codes(), results)

    def take(self, idx: np.ndarray) -> _Column:
        return type(self)(array(self.codes.typecode, self.numpy_codes()[idx].tobytes()),
                          self.values)  # fmt: skip


class _Variants(_Column):
    """A title's keys (list: the title key, then bracketed translated titles' keys), per
    distinct raw title (the codes). Nearly all titles have no brackets: their entry is
    the list of the title key alone, `keys[key_of[entry]]` (the title column's table);
    the others' lists are slices of one StringDType array (`flat[bounds[entry]:
    bounds[entry + 1]]`, key_of -1). A list per distinct title, its strings Python
    objects, was ~5 MiB at 100,000 records and kept the title keys Python strings. Gives
    new lists, as before."""

    __slots__ = ("key_of", "keys", "bounds", "flat")

    def __init__(
        self, codes: array, key_of: array, keys: np.ndarray, bounds: array, flat: np.ndarray
    ) -> None:
        super().__init__(codes, [])  # (no list of values: see entry)
        self.key_of = key_of  # array('i'): indexing gives Python ints (fast per pair)
        self.keys = keys
        self.bounds = bounds
        self.flat = flat

    def entry(self, code: int) -> list:
        key = self.key_of[code]
        if key >= 0:
            return [self.keys.item(key)]
        return self.flat[self.bounds[code] : self.bounds[code + 1]].tolist()

    def __getitem__(self, i: Any) -> Any:
        return self.entry(self.codes[i])

    def __iter__(self) -> Iterator:
        return map(self.entry, self.codes)

    def listed(self) -> list:
        return [self.entry(code) for code in range(len(self.key_of))]

    def sizes(self) -> np.ndarray:
        """The number of keys of each table entry."""
        own = np.frombuffer(self.bounds, dtype=np.int32)
        return np.where(np.frombuffer(self.key_of, dtype=np.int32) >= 0, 1, np.diff(own))

    def table(self) -> np.ndarray:
        table = np.empty(len(self.key_of), dtype=object)
        table[:] = self.listed()
        return table

    def map(self, function: Callable[[Any], Any], by_value: bool = False) -> _Column:
        return _Column(self.codes, self.listed()).map(function, by_value)

    def take(self, idx: np.ndarray) -> _Column:
        codes = array(self.codes.typecode, self.numpy_codes()[idx].tobytes())
        return _Variants(codes, self.key_of, self.keys, self.bounds, self.flat)


class _Strings(_Column):
    """A column whose table of strings is one numpy StringDType array (see _strings)."""

    __slots__ = ()

    # ndarray.item: a Python str as fast as a list gives one (ndarray[k] took twice as
    # long: the per-pair rules read ~70 values a pair).
    def __getitem__(self, i: Any) -> Any:
        return self.values.item(self.codes[i])

    def __iter__(self) -> Iterator:
        return map(self.values.item, self.codes)


def _strings(column: _Column) -> _Strings:
    """`column` with its table of strings as one numpy StringDType array: a string of up
    to 15 bytes inside the array's 16 bytes per entry, a longer one in the array's own
    heap (a Python str was ~50 bytes more, plus the list's pointer: the title keys of
    100,000 records were 10 MiB). Indexing gives Python strings, as the list did, and
    the Python strings are freed for the next columns' use. The table's strings are
    distinct (tables built by value), which _exact_copy_of relies on."""
    return _Strings(column.codes, np.array(column.values, dtype=StringDType()))


def _recoded(codes: np.ndarray, results: list) -> _Column:
    """A column whose table entries are `results` (indexed by `codes`) with equal
    results merged into one entry."""
    first: dict[Any, int] = {}
    remap = np.array([first.setdefault(r, len(first)) for r in results], dtype=np.int32)
    values = list(first)
    return _Column(_code_array(remap[codes], len(values)), values)


def _per_distinct(
    values: Iterable[Hashable], function: Callable[[Any], Any], by_value: bool = False
) -> _Column:
    """`function` of each value, computed once per distinct value: records of one venue
    (or page range) share one key object instead of a new list or string each (and
    each is computed once: venues repeat thousands of times in a large search). With
    `by_value`, equal results (two spellings of one title key) share one entry."""
    cache: dict[Any, int] = {}
    table: list = []
    codes = array("i")
    for value in values:
        code = cache.get(value)
        if code is None:
            code = cache[value] = len(table)
            table.append(function(value))
        codes.append(code)
    if by_value:
        return _recoded(np.frombuffer(codes, dtype=np.int32), table)
    return _Column(_code_array(np.frombuffer(codes, dtype=np.int32), len(table)), table)


def _per_combination(columns: Sequence[_Column], function: Callable[..., Any]) -> _Column:
    """`function` of the values of `columns` (one argument per column), computed once per
    distinct combination of their codes; equal results share one entry, numbered in
    order of first appearance. The combinations are found on integer arrays: a tuple of
    codes per record in a dict (_per_distinct over zip) held ~14 MiB of tuples and ints
    for title x venue at 100,000 records, freed only after the features' peak."""
    key = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:  # numbered in order of first appearance (< records): no overflow
        key = pd.factorize(key * len(column.values) + column.numpy_codes())[0]
    rows = np.unique(key, return_index=True)[1]  # each combination's first record, in order
    codes = [column.numpy_codes()[rows].tolist() for column in columns]
    results = [
        function(*(column.values[c[k]] for column, c in zip(columns, codes, strict=True)))
        for k in range(len(rows))
    ]
    return _recoded(key, results)


SLICE = 10_000  # records whose text cells are Python strings at a time


def _texts(records: pd.DataFrame, column: str) -> Iterator[str]:
    """text_column's strings, made SLICE records at a time (not a list of all)."""
    for start in range(0, len(records), SLICE):
        yield from text_column(records.iloc[start : start + SLICE], column)


def _cells(column: pd.Series) -> Iterator[Any]:
    """A column's cells, SLICE at a time (each slice's Python objects freed after it)."""
    for start in range(0, len(column), SLICE):
        yield from column.iloc[start : start + SLICE].tolist()
