"""The person's side: the uncertain pairs side by side (review table) and the decisions
file a reviewer fills in."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from migfw.errors import MigfwError
from migfw.slr.dedupe.result import MAYBE, DedupeResult
from migfw.slr.dedupe.scoring import MATCH, REVIEW

REVIEW_FIELDS = ["title", "authors", "year", "venue", "volume", "issue", "pages", "doi",
                 "database", "record_id"]  # fmt: skip
DECISION_VALUES = ("same", "different")


def review_table(result: DedupeResult, records: pd.DataFrame) -> pd.DataFrame:
    """The pairs the machine left to a person (`maybe`), both records side by side.

    Columns: record_a, record_b, leaning (the machine's guess: same/different), score
    (REVIEW <= score < MATCH unless a rule sent it), rule, evidence, then a_<field> and
    b_<field> for REVIEW_FIELDS, and an empty `decision` the reviewer fills with
    same/different. Save the edited file as the decisions file (slr.dedupe_decisions)."""
    todo = result.select_links(lambda f: (f["decision"] == MAYBE) & (f["decided_by"] != "person"))
    fields = [f for f in REVIEW_FIELDS if f in records.columns]
    # Only the records of these pairs (a few hundred), not a copy of every record's fields.
    wanted = records["record_id"].isin(pd.unique(todo[["record_a", "record_b"]].to_numpy().ravel()))
    by_id = records.loc[wanted, fields].set_index("record_id")
    out = pd.DataFrame(
        {
            "record_a": todo["record_a"].to_numpy(),
            "record_b": todo["record_b"].to_numpy(),
            "leaning": np.where(todo["score"] >= (MATCH + REVIEW) / 2, "same", "different"),
            "score": todo["score"].to_numpy(),
            "rule": todo["rule"].to_numpy(),
            "evidence": todo["evidence"].to_numpy(),
        }
    )
    for side in ("a", "b"):
        part = by_id.reindex(out[f"record_{side}"]).reset_index(drop=True)
        for f in fields:
            if f != "record_id":
                out[f"{side}_{f}"] = part[f].astype("string").fillna("").to_numpy()
    out["decision"] = ""
    return out.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def load_dedupe_decisions(
    path: str | Path, record_ids: Iterable[str]
) -> list[tuple[str, str, str]]:
    """A person's duplicate decisions: CSV with record_a, record_b, decision (same /
    different; empty rows are skipped, so the review file itself can be the input).
    A missing file means no decisions yet."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, comment=None)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise MigfwError(f"{path}: cannot read ({str(exc).splitlines()[0]})") from None
    except pd.errors.EmptyDataError:
        return []
    missing = {"record_a", "record_b", "decision"} - set(frame.columns)
    if missing:
        raise MigfwError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    known = set(record_ids)
    out: list[tuple[str, str, str]] = []
    seen: dict[frozenset, tuple[int, str]] = {}  # pair -> (line, verdict) of its first row
    for line, row in enumerate(frame.itertuples(index=False), 2):
        verdict = row.decision.strip().lower()
        if not verdict:
            continue
        if verdict not in DECISION_VALUES:
            raise MigfwError(
                f"{path}: line {line}: decision {row.decision!r} (expected same or different)"
            )
        a, b = row.record_a.strip(), row.record_b.strip()
        for rid in (a, b):
            if rid not in known:
                raise MigfwError(f"{path}: line {line}: record {rid!r} is not an imported record")
        if a == b:
            raise MigfwError(f"{path}: line {line}: record {a!r} is paired with itself")
        first = seen.setdefault(frozenset((a, b)), (line, verdict))
        if first[1] != verdict:
            raise MigfwError(
                f"{path}: line {line}: {a} / {b} decided {verdict!r} here but "
                f"{first[1]!r} on line {first[0]}"
            )
        if first[0] == line:
            out.append((a, b, verdict))
    _check_transitive(path, out, {k: v[0] for k, v in seen.items()})
    return out


def _check_transitive(
    path: Path, decisions: list[tuple[str, str, str]], line_of: dict[frozenset, int]
) -> None:
    """A 'different' between two records that the person's own 'same' decisions chain
    together (a=b, b=c, a!=c) cannot all hold: refuse it instead of letting one win."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x] = parent.get(parent[x], parent[x])
        return x

    for a, b, verdict in decisions:
        if verdict == "same":
            parent[find(a)] = find(b)
    for a, b, verdict in decisions:
        if verdict == "different" and find(a) == find(b):
            raise MigfwError(
                f"{path}: line {line_of[frozenset((a, b))]}: {a} / {b} decided 'different', "
                "but other rows decided 'same' along a chain that joins them"
            )
