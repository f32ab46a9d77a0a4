"""Per-trial metrics files -> one frame, a row at a time (`migfw collect`, trials.csv).

`pd.DataFrame(rows)` needs every row as a dict at once plus an object array of all their
values: at 10,000 trials that was ~50 MiB more than at 1,000, inside Snakemake's process
where the job runs. Here each file is decoded one object at a time and its values go straight
into one list per column; each column is then typed by the very function the DataFrame
constructor uses on a list of dicts (pandas' convert_object_array), so the frame, and the
CSV written from it, are the same (tests/test_collect.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from migfw.errors import MigfwError

BLOCK = 1 << 20  # characters read at a time


FOLDER = "_folder"  # per-trial metrics: the folder they came from (not a trials.csv column)


def refuse_duplicate_ids(rows: list[dict[str, Any]]) -> None:
    """One line naming the folders when two trials carry one trial_id (a copied folder):
    both would be counted, every statistic weighted twice."""
    seen: dict[str, Any] = {}
    for row in rows:
        tid = row.get("trial_id")
        if tid in seen:
            first, second = seen[tid], row.get(FOLDER)
            where = f" in {first} and {second}" if first and second else " twice"
            raise MigfwError(
                f"trial id {tid} appears{where} (trial.json trial_id); keep one folder per "
                "trial: a copy would count twice in every statistic"
            )
        seen[tid] = row.get(FOLDER)


def metrics_objects(path: str | Path) -> Iterator[dict[str, Any]]:
    """The objects of a per-trial metrics file one by one: a JSON list of objects (one per
    trial of a cell) or, from older runs, a single object."""
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8") as handle:
        text, at, ended = "", 0, False

        def fill() -> None:
            nonlocal text, at, ended
            block = handle.read(BLOCK)
            ended = not block
            text, at = text[at:] + block, 0

        def next_char() -> str:
            nonlocal at
            while True:
                while at < len(text) and text[at].isspace():
                    at += 1
                if at < len(text) or ended:
                    return text[at] if at < len(text) else ""
                fill()

        def value() -> Any:
            nonlocal at
            while True:
                try:
                    found, at = decoder.raw_decode(text, at)
                    return found
                except json.JSONDecodeError:
                    if ended:
                        raise
                    fill()

        fill()
        first = next_char()
        if first != "[":
            found = value()
            if next_char():
                raise json.JSONDecodeError("Extra data", text, at)
            yield _object(found, path)
            return
        at += 1
        if next_char() == "]":
            at += 1
        else:
            while True:
                yield _object(value(), path)
                sep = next_char()
                at += 1
                if sep == "]":
                    break
                if sep != ",":
                    raise json.JSONDecodeError("Expecting ',' delimiter", text, at - 1)
                next_char()
        if next_char():
            raise json.JSONDecodeError("Extra data", text, at)


def _object(found: Any, path: str | Path) -> dict[str, Any]:
    if not isinstance(found, dict):
        raise MigfwError(f"{path}: expected per-trial metrics objects")
    return found


def collect_files(
    paths: Iterable[str | Path], more: Iterable[dict[str, Any]] = (), skip: str = "_folder"
) -> pd.DataFrame | None:
    """Every object of the metrics files at `paths`, then the rows `more`, as one frame
    (columns in order of first appearance, a missing value NaN, each column typed as
    pd.DataFrame(list of dicts) types it), without the `skip` column; None without rows.
    A trial id seen twice is one MigfwError naming both folders (`skip` holds them)."""
    from pandas.core.internals.construction import convert_object_array

    columns: dict[str, list[Any]] = {}
    seen: dict[Any, Any] = {}
    n = 0
    for row in _rows(paths, more):
        tid = row.get("trial_id")
        if tid in seen:
            refuse_duplicate_ids([{"trial_id": tid, skip: seen[tid]}, row])
        seen[tid] = row.get(skip)
        for name, found in row.items():
            column = columns.get(name)
            if column is None:  # a column first seen now: NaN in every earlier row
                column = columns[name] = [np.nan] * n
            column.append(found)
        n += 1
        for column in columns.values():
            if len(column) < n:
                column.append(np.nan)
    if not n:
        return None
    columns.pop(skip, None)
    typed = {}
    for name in list(columns):
        values = np.empty(n, dtype=object)
        for i, found in enumerate(columns.pop(name)):
            values[i] = found
        typed[name] = convert_object_array([values], dtype=None)[0]
    return pd.DataFrame(typed, copy=False)


def _rows(paths: Iterable[str | Path], more: Iterable[dict[str, Any]]):
    for path in paths:
        try:
            yield from metrics_objects(path)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MigfwError(f"{path}: cannot read per-trial metrics ({exc})") from None
    yield from more
