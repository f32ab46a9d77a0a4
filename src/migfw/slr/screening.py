"""Stage-1 screening with the key-term query, and the human decisions of later stages.

The query is the thesis's Table 1: OR within a column, AND across columns, each column
searched in its own fields (abstract for columns 1-2, any field for 3-4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from math import prod
from pathlib import Path

import pandas as pd

from migfw.errors import MigfwError
from migfw.io import read_yaml
from migfw.slr.normalise import normalise_doi, title_key

# Fields searched when a column says `any`.
ANY_FIELDS = ("title", "abstract", "keywords", "venue", "publisher")
TEXT_FIELDS = (
    "title",
    "abstract",
    "keywords",
    "venue",
    "publisher",
    "authors",
    "entry_type",
    "language",
)
DECISIONS = ("include", "exclude")
# PRISMA stages a decision may belong to (see prisma.py).
STAGES = ("screening", "retrieval", "eligibility")


def term_regex(term: str) -> str:
    """Regex for one key term: words in order, trailing * as a word-ending wildcard.

    Word boundaries on both sides, so `VM` does not match `VMware` but `VM*` does.
    """
    text = term.strip()
    if not text:
        raise ValueError("empty term")
    words = text.split()
    parts = []
    for i, word in enumerate(words):
        wild = word.endswith("*")
        core = word.rstrip("*")
        if not core or "*" in core:
            raise ValueError(f"term {term!r}: only a trailing * wildcard is supported")
        if wild and i != len(words) - 1:
            raise ValueError(f"term {term!r}: * is only allowed at the end of the term")
        parts.append(re.escape(core) + (r"\w*" if wild else ""))
    # Phrases: words separated by whitespace or hyphens ("virtual-machine").
    return r"(?<!\w)" + r"[\s\-]+".join(parts) + r"(?!\w)"


@dataclass(frozen=True)
class Column:
    name: str
    fields: tuple[str, ...]
    terms: tuple[str, ...]
    table1_terms: tuple[str, ...]
    pattern: re.Pattern

    def search(self, record: dict) -> str:
        """The first matched text in this column's fields, or "" when none matches."""
        for field in self.fields:
            names = ANY_FIELDS if field == "any" else (field,)
            for name in names:
                value = record.get(name, "")
                if not isinstance(value, str) or not value:
                    continue
                hit = self.pattern.search(value)
                if hit:
                    return hit.group(0)
        return ""

    def render(self) -> str:
        terms = " OR ".join(f'"{t}"' if " " in t else t for t in self.terms)
        where = ",".join(self.fields)
        return f"({terms})[{where}]"


@dataclass(frozen=True)
class Query:
    columns: tuple[Column, ...]
    source: str

    def render(self) -> str:
        """The query as one readable Boolean string."""
        return " AND ".join(c.render() for c in self.columns)

    def n_search_strings(self) -> int:
        """One search string per combination of one Table 1 term per column (thesis: 420)."""
        return prod(len(c.table1_terms or c.terms) for c in self.columns)

    def match(self, record: dict) -> list[str]:
        return [c.search(record) for c in self.columns]


def load_keyterms(path: str | Path) -> Query:
    """Read the key-term YAML; any problem becomes a one-line MigfwError."""
    path = Path(path)
    data = read_yaml(path, "key terms")
    if not isinstance(data, dict) or not isinstance(data.get("columns"), list):
        raise MigfwError(f"{path}: expected a mapping with a 'columns' list")
    if not data["columns"]:
        raise MigfwError(f"{path}: 'columns' is empty")
    columns = []
    for i, col in enumerate(data["columns"], 1):
        where = f"{path}: columns[{i}]"
        if not isinstance(col, dict):
            raise MigfwError(f"{where}: expected a mapping with name, fields, terms")
        terms = col.get("terms")
        if not isinstance(terms, list) or not terms or not all(isinstance(t, str) for t in terms):
            raise MigfwError(f"{where}.terms: expected a non-empty list of strings")
        fields = col.get("fields", ["any"])
        if not isinstance(fields, list) or not fields:
            raise MigfwError(f"{where}.fields: expected a non-empty list")
        for field in fields:
            if field != "any" and field not in TEXT_FIELDS:
                allowed = ", ".join(("any",) + TEXT_FIELDS)
                raise MigfwError(f"{where}.fields: unknown field {field!r} (use {allowed})")
        try:
            pattern = re.compile("|".join(term_regex(t) for t in terms), re.IGNORECASE)
        except ValueError as exc:
            raise MigfwError(f"{where}.terms: {exc}") from None
        table1 = col.get("table1_terms") or []
        if not isinstance(table1, list):
            raise MigfwError(f"{where}.table1_terms: expected a list")
        columns.append(
            Column(
                name=str(col.get("name") or f"column {i}"),
                fields=tuple(fields),
                terms=tuple(terms),
                table1_terms=tuple(str(t) for t in table1),
                pattern=pattern,
            )
        )
    return Query(tuple(columns), str(path))


def screen(records: pd.DataFrame, query: Query) -> pd.DataFrame:
    """One row per record: the text matched per column and whether all columns matched."""
    rows = []
    for rec in records.to_dict("records"):
        hits = query.match(rec)
        row = {"record_id": rec["record_id"]}
        for i, hit in enumerate(hits, 1):
            row[f"match_c{i}"] = hit
        row["passes_query"] = all(hits)
        rows.append(row)
    columns = ["record_id"] + [f"match_c{i}" for i in range(1, len(query.columns) + 1)]
    return pd.DataFrame(rows, columns=columns + ["passes_query"])


# ------------------------------------------------------------------ human decisions


def read_csv_text(path: str | Path, what: str = "file") -> pd.DataFrame:
    """A small hand-kept CSV: all strings; lines starting with # are comments.

    Only whole-line comments: a '#' inside a title ("C# runtimes") is data. A missing or
    unreadable file is one MigfwError line naming the file and `what` it is; so is a row
    that cannot be aligned to the header (an unclosed quote, text beyond the last
    column), naming its line. Short rows are padded, with one warning naming the lines.
    """
    from migfw.slr.imports.csv_exports import align_rows, read_csv_rows

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise MigfwError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MigfwError(f"{path}: cannot read {what} ({str(exc).splitlines()[0]})") from None
    # Comment lines become blank (skipped) so that line numbers in messages stay true.
    kept = "\n".join("" if line.lstrip().startswith("#") else line for line in text.split("\n"))
    try:
        header, rows = read_csv_rows(kept, path)
        aligned = align_rows(header, rows, path)
    except MigfwError as exc:  # "PATH: problem" -> "PATH: cannot read WHAT (problem)"
        problem = str(exc).removeprefix(f"{path}: ")
        raise MigfwError(f"{path}: cannot read {what} ({problem})") from None
    return pd.DataFrame(aligned, columns=header, dtype=str)


def load_decisions(path: str | Path | None) -> pd.DataFrame:
    """decisions.csv: ref, decision (include/exclude), reason, stage. Missing file = none."""
    cols = ["ref", "decision", "reason", "stage"]
    if path is None or not Path(path).exists():
        return pd.DataFrame(columns=cols)
    path = Path(path)
    frame = read_csv_text(path, "decisions")
    missing = [c for c in ("ref", "decision") if c not in frame.columns]
    if missing:
        raise MigfwError(f"{path}: missing column(s) {', '.join(missing)}")
    for col in ("reason", "stage"):
        if col not in frame.columns:
            frame[col] = ""
    frame = frame[cols].apply(lambda s: s.str.strip())
    frame["decision"] = frame["decision"].str.lower()
    frame["stage"] = frame["stage"].str.lower().replace("", "eligibility")
    for n, row in enumerate(frame.itertuples(index=False), 2):
        if not row.ref:
            raise MigfwError(f"{path}: line {n}: empty ref")
        if row.decision not in DECISIONS:
            raise MigfwError(
                f"{path}: line {n}: decision {row.decision!r} is not include or exclude"
            )
        if row.stage not in STAGES:
            raise MigfwError(f"{path}: line {n}: stage {row.stage!r} is not one of {STAGES}")
        if row.decision == "exclude" and not row.reason:
            raise MigfwError(f"{path}: line {n}: an exclusion needs a reason")
    return frame


def resolve_ref(ref: str, records: pd.DataFrame) -> list[str]:
    """Record ids a decision reference names: a record_id, else a DOI, else a title."""
    if ref in set(records["record_id"]):
        return [ref]
    doi = normalise_doi(ref)
    if doi.startswith("10."):
        hits = records.loc[records["doi"] == doi, "record_id"]
        if len(hits):
            return list(hits)
    key = title_key(ref)
    if key:
        hits = records.loc[records["title"].map(title_key) == key, "record_id"]
        return list(hits)
    return []


def apply_decisions(
    decisions: pd.DataFrame, records: pd.DataFrame, clusters: pd.DataFrame, source: str
) -> pd.DataFrame:
    """Per cluster: the decision, reason and stage (a decision on any member covers it).

    Conflicting decisions on one cluster, or a reference that names nothing, is an error:
    a silent choice would change the review's result.
    """
    cluster_of = dict(zip(clusters["record_id"], clusters["cluster_id"], strict=True))
    out: dict[str, dict] = {}
    for n, row in enumerate(decisions.itertuples(index=False), 2):
        ids = resolve_ref(row.ref, records)
        if not ids:
            raise MigfwError(f"{source}: line {n}: ref {row.ref!r} matches no imported record")
        for cid in {cluster_of[i] for i in ids}:
            new = {"decision": row.decision, "reason": row.reason, "stage": row.stage}
            old = out.get(cid)
            if old and (old["decision"], old["stage"]) != (new["decision"], new["stage"]):
                raise MigfwError(
                    f"{source}: line {n}: ref {row.ref!r} contradicts an earlier decision "
                    f"on the same study ({old['decision']} at {old['stage']})"
                )
            out[cid] = new
    frame = pd.DataFrame.from_dict(out, orient="index")
    if frame.empty:
        return pd.DataFrame(columns=["cluster_id", "decision", "reason", "stage"])
    return frame.rename_axis("cluster_id").reset_index()
