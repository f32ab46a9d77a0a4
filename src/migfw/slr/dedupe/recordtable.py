"""Splink's record table: the per-record columns the comparisons read (record_table), and
where the table lives while Splink runs - a Parquet file behind a DuckDB view in a scratch
folder (in-process), or a Spark DataFrame with declared types (a Spark backend).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow

from migfw.scratch import scratch_dir
from migfw.slr.dedupe.features import _Column, _Features
from migfw.slr.dedupe.heap import return_heap

# The in-process scorer's DuckDB database is a file in a temporary folder: beyond this
# much memory DuckDB writes Splink's tables to the file, not RAM (the record table is a
# Parquet file beside it).
DUCKDB_MEMORY_LIMIT = "64MB"
# Records per slice of the record table written to that database: each slice is a
# pandas frame, then Arrow, then a Parquet row group (10,000: +50 MiB at the build).
TABLE_SLICE = 2_000


_GENERIC_VENUE_WORDS = frozenset(
    "journal international proceedings conference annual ieee acm american european "
    "symposium workshop review transactions research".split()
)


def _venue_keys(tokens: list[str]) -> list[str]:
    """Keys an abbreviated or acronym form shares with the full venue name: the initials
    of all words ('journal clinical epidemiology' and 'j clin epidemiol' -> 'jce') and any
    word that is itself an acronym of 3-6 letters ('icis', 'amcis', 'jama')."""
    if not tokens:
        return []
    keys = {"".join(t[0] for t in tokens)} if len(tokens) > 1 else set()
    keys |= {t for t in tokens if 3 <= len(t) <= 6 and t.isalpha() and t not in
             _GENERIC_VENUE_WORDS and not any(c in "aeiou" for c in t[1:-1])}  # fmt: skip
    if len(tokens) == 1:
        keys.add(tokens[0])
    return sorted(keys)


# record_table's columns as DuckDB types (what DuckDB infers from the whole table).
RECORD_TYPES = {
    "unique_id": "BIGINT", "title": "VARCHAR", "variants": "VARCHAR[]", "tail": "VARCHAR",
    "authors": "VARCHAR[]", "year": "BIGINT", "venue": "VARCHAR", "vtype": "VARCHAR",
    "vkeys": "VARCHAR[]", "vwords": "VARCHAR[]", "names": "VARCHAR[]", "volume": "VARCHAR",
    "page": "VARCHAR", "doi": "VARCHAR",
}  # fmt: skip
# The same as an Arrow schema (the Parquet file `_record_database` writes).
_ARROW_TYPES = {"BIGINT": pyarrow.int64(), "VARCHAR": pyarrow.string(),
                "VARCHAR[]": pyarrow.list_(pyarrow.string())}  # fmt: skip
RECORD_SCHEMA = pyarrow.schema([(name, _ARROW_TYPES[kind]) for name, kind in RECORD_TYPES.items()])


# The same columns as Spark types: Spark infers a column's type from its values and fails
# on a column that is NULL in every row (a small export without DOIs or volumes).
_SPARK_TYPES = {"BIGINT": "bigint", "VARCHAR": "string", "VARCHAR[]": "array<string>"}


def _spark_frame(table: pd.DataFrame, spark: Any) -> Any:
    """`record_table` as a Spark DataFrame with RECORD_TYPES' types (NA -> NULL)."""
    schema = ", ".join(f"{c} {_SPARK_TYPES[RECORD_TYPES[c]]}" for c in table.columns)
    rows = table.astype(object).where(table.notna(), None)
    return spark.createDataFrame(list(rows.itertuples(index=False, name=None)), schema)


def record_table(feat: _Features) -> pd.DataFrame:
    """The columns Splink compares, one row per record (NULL where a field is missing or,
    for the title, names no work: 'Editorial')."""

    def none(value: Any) -> Any:
        return value or None

    def per_venue(function: Any) -> list:
        """`function` of each record's venue words, once per venue (shared lists)."""
        cache: dict[str, Any] = {}
        for venue, tokens in zip(feat.venue, feat.vtokens, strict=True):
            if venue not in cache:
                cache[venue] = function(tokens)
        return [cache[v] for v in feat.venue]

    generic = feat.generic
    return pd.DataFrame(
        {
            "unique_id": np.arange(len(feat.ids), dtype=np.int64),
            "title": [None if g else none(t) for t, g in zip(feat.title, generic, strict=True)],
            "variants": [None if g else v for v, g in zip(feat.variants, generic, strict=True)],
            "tail": [none(t) for t in feat.tail],
            "authors": [a or None for a in feat.authors],
            "year": pd.array([y or None for y in feat.year], dtype="Int64"),
            "venue": [none(v) for v in feat.venue],
            "vtype": [none(v) for v in feat.vtype],
            "vkeys": per_venue(lambda t: _venue_keys(t) or None),
            "vwords": per_venue(lambda t: sorted(set(t)) or None),
            # Per record, once per distinct value among these records: a slice's column
            # shares the whole input's table of values (map() would sort all of them).
            "names": _per_code(feat.tokens, lambda t: sorted(t) or None),
            "volume": [none(v) for v in feat.volume],
            "page": [none(p) for p in feat.page],
            "doi": [none(d) for d in feat.doi_base],
        }
    )


def _per_code(column: _Column, function: Callable[[Any], Any]) -> list:
    """`function` of each record's value in `column`, computed once per code (records
    with one value share the result)."""
    cache: dict[int, Any] = {}
    values = column.values
    out = []
    for code in column.codes:
        if code not in cache:
            cache[code] = function(values[code])
        out.append(cache[code])
    return out


def _feature_slices(feat: _Features, rows: np.ndarray | None = None) -> Iterator[pd.DataFrame]:
    """record_table of `rows` of `feat` (default: all; unique ids = the rows), TABLE_SLICE
    records at a time."""
    from migfw.slr.dedupe.features import _take

    rows = np.arange(len(feat.ids)) if rows is None else rows
    for start in range(0, len(rows), TABLE_SLICE):
        part = rows[start : start + TABLE_SLICE]
        table = record_table(_take(feat, part))
        table["unique_id"] = part.astype(np.int64)
        yield table


def _record_database(slices: Iterable[pd.DataFrame]) -> tuple[Any, str]:
    """A DuckDB database file in a new temporary folder whose view `migfw_records` reads
    the record table from a Parquet file beside it, written one slice at a time (one row
    group each; each slice's pandas rows freed after it), with DUCKDB_MEMORY_LIMIT: DuckDB
    spills beyond it to the folder. Returns the connection and the folder (the caller
    closes one and removes the other).

    Why a file, not a table: DuckDB keeps a table's unfinished row group (122,880 rows)
    in memory until it is checkpointed, so inserting 100,000 records raised the peak by
    their whole table (~60 MiB); a Parquet scan holds a row group at a time."""
    import duckdb
    import pyarrow.parquet as pq

    folder = scratch_dir("duckdb")
    con = None
    try:
        path = Path(folder) / "records.parquet"
        with pq.ParquetWriter(path, RECORD_SCHEMA) as writer:
            for table in slices:
                # Declared types: a slice may have no value in a column.
                # One thread: each converting thread keeps its own Arrow heap.
                writer.write_table(pyarrow.Table.from_pandas(
                    table, schema=RECORD_SCHEMA, preserve_index=False, nthreads=1
                ))  # fmt: skip
                del table
        return_heap()
        con = duckdb.connect(str(Path(folder) / "records.duckdb"))
        con.execute(f"SET memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
        con.execute(f"SET temp_directory = '{Path(folder) / 'spill'}'")
        quoted = str(path).replace("'", "''")
        con.execute(f"CREATE VIEW migfw_records AS SELECT * FROM read_parquet('{quoted}')")
    except BaseException:
        if con is not None:
            con.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return con, folder
