"""How dedupe stores a feature of every record: integer codes (1-4 bytes per record) into a
table of its distinct values, computed once per distinct value (features.py says what the
values are)."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

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

    def __init__(self, codes: array, values: list) -> None:
        self.codes = codes  # array('b'/'h'/'i'): indexing gives Python ints (fast per pair)
        self.values = values

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
        """The distinct values as a numpy object array (index it with the codes)."""
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
    """A title's keys (list: the title key, then bracketed translated titles' keys). A
    table entry that is a string stands for the list of that one key: nearly all titles
    have no brackets, and a one-key list per distinct title was ~5 MiB at 100,000
    records (the string is the title column's own object). Gives lists, as before."""

    __slots__ = ()

    def __getitem__(self, i: Any) -> Any:
        value = self.values[self.codes[i]]
        return [value] if isinstance(value, str) else value

    def __iter__(self) -> Iterator:
        values = self.values
        return ([v] if isinstance(v := values[c], str) else v for c in self.codes)

    def listed(self) -> list:
        return [[v] if isinstance(v, str) else v for v in self.values]

    def table(self) -> np.ndarray:
        table = np.empty(len(self.values), dtype=object)
        table[:] = self.listed()
        return table

    def map(self, function: Callable[[Any], Any], by_value: bool = False) -> _Column:
        return _Column(self.codes, self.listed()).map(function, by_value)


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


SLICE = 10_000  # records whose text cells are Python strings at a time


def _texts(records: pd.DataFrame, column: str) -> Iterator[str]:
    """text_column's strings, made SLICE records at a time (not a list of all)."""
    for start in range(0, len(records), SLICE):
        yield from text_column(records.iloc[start : start + SLICE], column)


def _cells(column: pd.Series) -> Iterator[Any]:
    """A column's cells, SLICE at a time (each slice's Python objects freed after it)."""
    for start in range(0, len(column), SLICE):
        yield from column.iloc[start : start + SLICE].tolist()
