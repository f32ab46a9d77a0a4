"""Link rows: how links.csv states a pair's fields (equal, differ, one-missing, missing)
and the rows of the pairs the model scores below the review band - most candidate pairs,
built as columns, not one dict each."""

from __future__ import annotations

import numpy as np
import pandas as pd

from migfw.slr.dedupe.features import _Column, _Features
from migfw.slr.dedupe.result import DISTINCT


def _state(a: str, b: str) -> str:
    if not a and not b:
        return "missing"
    if not a or not b:
        return "one-missing"
    return "equal" if a == b else "differ"


def _distinct_row(feat: _Features, i: int, j: int, weight: float) -> dict:
    """The link row of a pair the model scores below the review band."""
    yi, yj = feat.year[i], feat.year[j]
    return {
        "decision": DISTINCT, "score": round(weight, 2), "rule": f"splink:{weight:+.1f}",
        "decided_by": "model", "title_sim": "", "author_sim": "", "venue_sim": "",
        "doi": _state(feat.doi[i], feat.doi[j]), "year": f"{yi or ''}|{yj or ''}",
        "pages": _state(feat.page[i], feat.page[j]),
        "volume": _state(feat.volume[i], feat.volume[j]),
        "issue": _state(feat.issue[i], feat.issue[j]),
        "venue_type": f"{feat.vtype[i]}|{feat.vtype[j]}",
        "evidence": f"match weight {weight:+.2f} below the review band",
    }  # fmt: skip


BELOW = "below the review band"
_STATE_LABELS = np.array(["equal", "differ", "one-missing", "missing"], dtype=object)


def _states(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`_state` of many value pairs at once (object arrays of strings); the cells share
    four string objects instead of one new string each."""
    empty_a, empty_b = a == "", b == ""
    code = np.where(a == b, 0, 1)
    code[empty_a != empty_b] = 2
    code[empty_a & empty_b] = 3
    return _STATE_LABELS[code]


def _shared_text(values: np.ndarray, text) -> np.ndarray:
    """`text(v)` for each of `values`, formatted once per distinct value: cells of equal
    values share one string object."""
    distinct, inverse = np.unique(values, return_inverse=True)
    return np.array([text(v) for v in distinct.tolist()], dtype=object)[inverse.reshape(-1)]


SIM_COLUMNS = ("title_sim", "author_sim", "venue_sim")


def _distinct_rows(feat: _Features, pairs: np.ndarray, weights: np.ndarray) -> pd.DataFrame:
    """`_distinct_row` of many pairs at once, as columns (most candidate pairs at 100,000
    records are these: one dict each was the largest object of a run). Match weights are
    sums of a few level weights, so few distinct values: each text is formatted once."""
    i, j = pairs[:, 0], pairs[:, 1]

    # From each column's table of distinct values and the pairs' codes only: an array of
    # every record's value (and its factorisation) per column and call grew with the
    # records, not with the pairs.
    def states(values: _Column) -> np.ndarray:
        table, codes = values.table(), values.numpy_codes()
        return _states(table[codes[i]], table[codes[j]])

    def joined(values: _Column) -> np.ndarray:
        """'a|b' of each pair's two values, one string per distinct pair of values."""
        of_entry, names = pd.factorize(pd.Series(values.values, dtype=object))
        codes = values.numpy_codes()
        both = of_entry[codes[i]].astype(np.int64) * len(names) + of_entry[codes[j]]
        return _shared_text(both, lambda k: f"{names[k // len(names)]}|{names[k % len(names)]}")

    texts = {
        "decision": np.full(len(i), DISTINCT, dtype=object),
        "evidence": _shared_text(weights, lambda w: f"match weight {w:+.2f} {BELOW}"),
        "rule": _shared_text(weights, lambda w: f"splink:{w:+.1f}"),
        "decided_by": np.full(len(i), "model", dtype=object),
        "doi": states(feat.doi),
        "year": joined(feat.year.map(lambda y: str(y) if y else "")),
        "pages": states(feat.page), "volume": states(feat.volume),
        "issue": states(feat.issue), "venue_type": joined(feat.vtype),
    }  # fmt: skip
    # Categorical text (few distinct values) and float similarities (NaN = not compared):
    # at 100,000 records these rows were 250 MiB as strings and Python objects.
    frame = pd.DataFrame({k: pd.Categorical(v) for k, v in texts.items()})
    frame["score"] = np.round(weights, 2)
    for column in SIM_COLUMNS:
        frame[column] = np.nan
    frame["_i"], frame["_j"] = i, j
    return frame
