"""Link rows on disk: written per chunk of pairs as they are decided, read back in
(record_a, record_b) order one bucket at a time, so no stage holds every scored pair
(650,000 rows at 100,000 records) in memory."""

from __future__ import annotations

import shutil
import weakref
from collections.abc import Iterator, Sequence
from typing import IO

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.dtypes import StringDType
from pandas.api.types import union_categoricals

from migfw.scratch import scratch_dir
from migfw.slr.dedupe.heap import return_heap
from migfw.slr.dedupe.linkrows import SIM_COLUMNS
from migfw.slr.dedupe.result import BLOCKED, LINK_COLUMNS

TEXT_COLUMNS = [c for c in LINK_COLUMNS[2:] if c != "score" and c not in SIM_COLUMNS]
MAX_BUCKETS = 256  # files open at once while writing
_SCHEMA = pa.schema(
    [(c, pa.float64() if c == "score" or c in SIM_COLUMNS else pa.string())
     for c in LINK_COLUMNS[2:]] + [("_i", pa.int64()), ("_j", pa.int64())]
)  # fmt: skip


def compact(links: pd.DataFrame) -> pd.DataFrame:
    """Link rows with categorical text columns and float similarities (NaN = not
    compared): one row per scored pair, so strings per cell grew with the pairs."""
    for column in TEXT_COLUMNS:
        links[column] = pd.Categorical(links[column])
    for column in SIM_COLUMNS:
        links[column] = pd.to_numeric(links[column].replace("", np.nan)).astype(float)
    return links


def concat_compact(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """`frames` one after the other (same columns), categorical columns kept categorical
    (pd.concat turns categoricals with different categories into objects)."""
    columns = {}
    for column in frames[0].columns:
        if isinstance(frames[0][column].dtype, pd.CategoricalDtype):
            columns[column] = union_categoricals([_str_categories(f[column].array) for f in frames])
        else:
            columns[column] = np.concatenate([f[column].to_numpy() for f in frames])
    return pd.DataFrame(columns)


def _str_categories(values: pd.Categorical) -> pd.Categorical:
    """The same values with str categories (an empty or inferred-object side would stop
    union_categoricals: 'dtype of categories must be the same')."""
    names = pd.Index([str(c) for c in values.categories], dtype="str")
    return pd.Categorical.from_codes(values.codes, categories=names)


def _empty() -> pd.DataFrame:
    frame = compact(pd.DataFrame({c: [] for c in LINK_COLUMNS[2:]}))
    frame.insert(0, "record_b", np.empty(0, dtype=object))
    frame.insert(0, "record_a", np.empty(0, dtype=object))
    return frame


class LinkStore:
    """Link rows (LINK_COLUMNS without the ids, plus record indices `_i` < `_j`) in
    Arrow IPC files, one per range of record_a's rank, so each file is sorted alone.
    `first_counts`: how many of the rows to come (candidate pairs) have each record as
    `_i` (one count per record), which sets the ranges; `buckets`: how many. A pair
    refused by the cluster check is recorded with `block` and rewritten on reading
    (decision `blocked`, reason after the rule)."""

    def __init__(
        self, ids: Sequence[str] | np.ndarray, first_counts: np.ndarray, buckets: int
    ) -> None:
        # The features' own StringDType array (no copy of every id as an object; asarray
        # with a new StringDType instance would copy it too).
        is_text = isinstance(ids, np.ndarray) and ids.dtype.kind == "T"
        self.ids = ids if is_text else np.asarray(ids, dtype=StringDType())
        n = len(self.ids)
        self.rank = np.empty(n, dtype=np.int64)
        self.rank[np.argsort(self.ids, kind="stable")] = np.arange(n)
        # Quantiles of the rows' first ranks from one count per rank (not a sorted copy
        # of every row's rank): the sorted ranks' element c is the first rank whose
        # running count exceeds c.
        per_rank = np.zeros(n, dtype=np.int64)
        per_rank[self.rank] = first_counts
        running = np.cumsum(per_rank)
        total = int(running[-1]) if n else 0
        buckets = max(1, min(buckets, MAX_BUCKETS))
        cut = (np.arange(1, buckets) * total) // buckets
        self.bounds = (
            np.unique(np.searchsorted(running, cut, side="right"))
            if total
            else np.empty(0, dtype=np.int64)
        )
        self._dir = scratch_dir("links")
        # Removed on close, or when the store is collected unclosed (as TemporaryDirectory).
        self._remove_dir = weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
        self._writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        self.blocked: dict[int, str] = {}  # i * n + j -> why the cluster check refused it
        self.rows = 0
        self._closed = False

    def add(self, frame: pd.DataFrame) -> None:
        """Append link rows (compact or plain columns, `_i`/`_j` record indices)."""
        if not len(frame):
            return
        if self._closed:
            raise RuntimeError("LinkStore: rows added after reading began")
        columns = []
        for field in _SCHEMA:
            values = frame[field.name]
            if isinstance(values.dtype, pd.CategoricalDtype):
                array = pa.array(values.array).dictionary_decode()
            elif field.type == pa.string():
                array = pa.array(values.astype(str).to_numpy(dtype=object), type=pa.string())
            else:
                array = pa.array(values.to_numpy(dtype=np.int64 if field.name[0] == "_" else float))
            columns.append(array.cast(field.type))
        table = pa.Table.from_arrays(columns, schema=_SCHEMA)
        bucket = np.searchsorted(self.bounds, self.rank[frame["_i"].to_numpy()], side="right")
        for b in np.unique(bucket).tolist():
            if b not in self._writers:
                path = f"{self._dir}/{b:04d}.arrow"
                self._writers[b] = pa.ipc.new_stream(path, _SCHEMA)
            self._writers[b].write_table(table.take(np.flatnonzero(bucket == b)))
        self.rows += len(frame)

    def block(self, i: int, j: int, reason: str) -> None:
        self.blocked[i * len(self.ids) + j] = reason

    def _close_writers(self) -> None:
        if not self._closed:
            for writer in self._writers.values():
                writer.close()
            self._closed = True

    def frames(self) -> Iterator[pd.DataFrame]:
        """The link rows in (record_a, record_b) order, one compact frame per bucket."""
        self._close_writers()
        n = len(self.ids)
        for b in sorted(self._writers):
            with pa.ipc.open_stream(f"{self._dir}/{b:04d}.arrow") as reader:
                # One converting thread: each of Arrow's threads keeps the pages it
                # freed in its own pool, which return_heap (this thread) cannot hand back
                # (25,000 records: links.csv's peak +41 -> +24 MiB over its start).
                frame = reader.read_all().to_pandas(use_threads=False)
            i, j = frame.pop("_i").to_numpy(np.int64), frame.pop("_j").to_numpy(np.int64)
            if self.blocked:
                reasons = pd.Series(self.blocked, dtype=object).reindex(i * n + j).to_numpy()
                hit = np.flatnonzero(pd.notna(reasons))
                if len(hit):
                    frame["decision"] = frame["decision"].astype(object)
                    frame["rule"] = frame["rule"].astype(object)
                    frame.loc[hit, "decision"] = BLOCKED
                    frame.loc[hit, "rule"] = frame["rule"].iloc[hit] + "; " + reasons[hit]
            order = np.lexsort((self.rank[j], self.rank[i]))
            frame = compact(frame.iloc[order].reset_index(drop=True))
            frame.insert(0, "record_b", self.ids[j[order]])
            frame.insert(0, "record_a", self.ids[i[order]])
            yield frame
            del frame
            return_heap()  # Arrow's pool keeps each freed bucket otherwise

    def frame(self) -> pd.DataFrame:
        """Every link row in one compact frame (what `DedupeResult.links` returns)."""
        frames = list(self.frames())
        return concat_compact(frames) if frames else _empty()

    def write_csv(self, handle: IO[str]) -> None:
        """links.csv, one bucket at a time (the same bytes as frame().to_csv)."""
        header = True
        for frame in self.frames():
            frame.to_csv(handle, index=False, header=header)
            header = False
        if header:
            _empty().to_csv(handle, index=False)

    def close(self) -> None:
        self._close_writers()
        self._remove_dir()
