"""`migfw slr review`: the whole SLR branch, from database exports to audited tables.

import -> dedupe -> key-term screening -> human decisions -> Tables 3, 6, 10 ->
sensitivity -> audit against the printed thesis -> PRISMA 2020 counts, checks and
diagram -> database-overlap figure. Everything is computed before anything is written,
and every file is written atomically, so a bad input never leaves a partial result.

Size: one module of ~660 lines because it is the branch's orchestration (config, the run in
order, the output set the Snakemake rule declares, the CLI); each step's logic lives in its
own module (imports, dedupe, screening, tables, prisma, audit).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from migfw.errors import MigfwError
from migfw.io import atomic_write, read_yaml, write_csv
from migfw.slr import audit as auditmod
from migfw.slr import screening, tables
from migfw.slr.screening import read_csv_text

if TYPE_CHECKING:  # the dedupe package imports DuckDB and Splink: only when deduplicating
    from migfw.slr.dedupe.result import DedupeResult

OTHER_SOURCES = "Other sources"
CONFIG_KEYS = (
    "sources",
    "keyterms",
    "decisions",
    "other_sources",
    "quality",
    "quasi_gold",
    "printed",
    "dedupe_decisions",
)
OPTIONAL_KEYS = (
    "decisions",
    "other_sources",
    "quality",
    "quasi_gold",
    "printed",
    "dedupe_decisions",
)
# May be named before it exists (a reviewer creates it from dedupe_review.csv).
MAY_BE_MISSING = ("decisions", "dedupe_decisions")

Log = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class ReviewConfig:
    sources: Path
    keyterms: Path
    decisions: Path | None = None
    other_sources: Path | None = None
    quality: Path | None = None
    quasi_gold: Path | None = None
    printed: Path | None = None
    dedupe_decisions: Path | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> ReviewConfig:
        """The `slr` section of config.yaml; paths are relative to the working directory."""
        path = Path(path)
        data = read_yaml(path, "config file")
        slr = (data or {}).get("slr") if isinstance(data, dict) else None
        if not isinstance(slr, dict):
            raise MigfwError(f"{path}: missing 'slr' section")
        values: dict[str, Path | None] = {}
        for key in CONFIG_KEYS:
            value = slr.get(key)
            if value in (None, ""):
                if key not in OPTIONAL_KEYS:
                    raise MigfwError(f"{path}: slr.{key} is required")
                values[key] = None
                continue
            if not isinstance(value, str):
                raise MigfwError(f"{path}: slr.{key} must be a file path")
            values[key] = Path(value)
            if key not in MAY_BE_MISSING and not values[key].exists():
                raise MigfwError(f"{path}: slr.{key}: file {value} not found")
        return cls(**values)


# ------------------------------------------------------------------ sources


def load_sources(path: Path) -> pd.DataFrame:
    """sources.csv: database, file (relative to sources.csv; empty = searched, no hits)."""
    frame = read_csv_text(path, "sources")
    for col in ("database", "file"):
        if col not in frame.columns:
            raise MigfwError(f"{path}: missing column {col}")
    frame = frame.apply(lambda s: s.str.strip())
    for n, row in enumerate(frame.itertuples(index=False), 2):
        if not row.database:
            raise MigfwError(f"{path}: line {n}: empty database")
        if row.database == OTHER_SOURCES:
            raise MigfwError(
                f"{path}: line {n}: {OTHER_SOURCES!r} is reserved for slr.other_sources"
            )
        if row.file and not (path.parent / row.file).exists():
            raise MigfwError(f"{path}: line {n}: export {row.file} not found")
    frame["path"] = [str(path.parent / f) if f else "" for f in frame["file"]]
    return frame


def _databases(sources: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(sources["database"]))


# ------------------------------------------------------------------ the pipeline


@dataclass
class ReviewResult:
    query: screening.Query
    databases: list[str]
    records: pd.DataFrame
    clusters: pd.DataFrame
    dedupe: DedupeResult  # its links stay in deduplicate's link files until written
    merged: pd.DataFrame
    dedupe_review: pd.DataFrame
    library: pd.DataFrame
    screened: pd.DataFrame
    studies: pd.DataFrame
    table3: pd.DataFrame
    table6: pd.DataFrame
    table10: pd.DataFrame | None
    quality_summary: pd.DataFrame | None
    sensitivity: pd.DataFrame | None
    sensitivity_detail: pd.DataFrame | None
    audit: pd.DataFrame | None
    prisma: pd.DataFrame
    prisma_checks: pd.DataFrame

    @property
    def links(self) -> pd.DataFrame:
        """links.csv's rows, read from the link files on first use (every scored pair:
        100,000 records, 640,000 rows, +167 MiB as one frame)."""
        return self.dedupe.links


def import_records(cfg: ReviewConfig, sources: pd.DataFrame, log: Log) -> pd.DataFrame:
    from migfw.slr.imports import read_exports

    files = sources[sources["path"] != ""]
    paths = list(files["path"])
    dbs = list(files["database"])
    if cfg.other_sources is not None:
        paths.append(str(cfg.other_sources))
        dbs.append(OTHER_SOURCES)
    if not paths:
        raise MigfwError(f"{cfg.sources}: lists no export file")
    records = read_exports(paths, databases=dbs)
    # Trust the file -> database mapping of sources.csv over content inference.
    db_of = dict(zip(paths, dbs, strict=True))
    records["database"] = records["source_file"].map(db_of).fillna(records["database"])
    for path, db in zip(paths, dbs, strict=True):
        mine = records[records["source_file"] == path]
        fmt = mine["format"].iloc[0] if len(mine) else "?"
        log(f"import: {path}: {len(mine)} records ({fmt}, {db})")
    for db in sources.loc[sources["path"] == "", "database"]:
        log(f"import: {db}: searched, no export (0 records)")
    log(f"import: {len(records)} records from {len(paths)} files")
    return records


def build_studies(
    records: pd.DataFrame, screened: pd.DataFrame, decided: pd.DataFrame
) -> pd.DataFrame:
    """One row per cluster: origin (database/other/none), year, title, decision, included.

    A study's year and title come from its relevant database records, else from its
    other-source records, else from all its records; the year is the most common one
    (earliest on ties), the title the longest. Vectorised: reviews can have 50k records.
    """
    frame = screened[["record_id", "cluster_id", "database", "origin", "relevant", "year"]].merge(
        records[["record_id", "title"]], on="record_id", how="left"
    )
    frame["is_other"] = frame["origin"] == "other"
    grouped = frame.groupby("cluster_id", sort=False)
    has_rel = grouped["relevant"].transform("any")
    has_other = grouped["is_other"].transform("any")
    frame["origin_of_study"] = "none"
    frame.loc[has_other, "origin_of_study"] = "other"
    frame.loc[has_rel, "origin_of_study"] = "database"
    basis = frame[
        (has_rel & frame["relevant"])
        | (~has_rel & has_other & frame["is_other"])
        | (~has_rel & ~has_other)
    ]
    studies = grouped.agg(records=("record_id", "size"), relevant_records=("relevant", "sum"))
    studies["origin"] = frame.groupby("cluster_id", sort=False)["origin_of_study"].first()
    years = basis.dropna(subset=["year"]).groupby(["cluster_id", "year"]).size()
    years = years.rename("n").reset_index().sort_values(["n", "year"], ascending=[False, True])
    studies["year"] = years.drop_duplicates("cluster_id").set_index("cluster_id")["year"]
    titles = basis.assign(_len=basis["title"].str.len()).sort_values(
        "_len", ascending=False, kind="stable"
    )
    studies["title"] = titles.drop_duplicates("cluster_id").set_index("cluster_id")["title"]
    rel = frame[frame["relevant"]]
    studies["databases"] = rel.groupby("cluster_id")["database"].agg(
        lambda s: "; ".join(sorted(set(s)))
    )
    studies = studies.reset_index()
    studies["databases"] = studies["databases"].fillna("")
    studies["year"] = studies["year"].astype("Int64")
    studies = studies[
        ["cluster_id", "origin", "year", "title", "databases", "relevant_records", "records"]
    ]
    studies = studies.merge(decided, on="cluster_id", how="left")
    for col in ("decision", "reason", "stage"):
        studies[col] = studies[col].fillna("")
    studies["included"] = (studies["decision"] == "include") & (studies["origin"] != "none")
    return studies


def prisma_counts(
    sources: pd.DataFrame, screened: pd.DataFrame, studies: pd.DataFrame
) -> dict[str, object]:
    """PRISMA 2020 numbers. Key-term screening is PRISMA's 'automation tool' exclusion;
    duplicates are counted among the records that passed it (the thesis's order)."""
    from migfw.slr import prisma  # matplotlib (+29 MiB): not for every `migfw slr` command

    db = screened[screened["origin"] == "database"]
    rel = db[db["relevant"]]
    per_db = Counter(db["database"])
    dbs = studies[studies["origin"] == "database"]
    oth = studies[studies["origin"] == "other"]

    def excluded(frame: pd.DataFrame, stage: str) -> pd.DataFrame:
        return frame[(frame["decision"] == "exclude") & (frame["stage"] == stage)]

    def reasons(frame: pd.DataFrame) -> str | int:
        return prisma.reason_text(dict(Counter(frame["reason"]))) or 0

    screened_n = len(dbs)
    rec_excl = len(excluded(dbs, "screening"))
    notret = len(excluded(dbs, "retrieval"))
    oth_screen = excluded(oth, "screening")
    oth_notret = len(excluded(oth, "retrieval"))
    oth_elig = pd.concat([oth_screen, excluded(oth, "eligibility")])
    new = int(studies["included"].sum())
    return {
        "previous_studies": 0,
        "previous_reports": 0,
        "database_results": len(db),
        "database_specific_results": prisma.reason_text(
            {d: per_db.get(d, 0) for d in _databases(sources)}
        ),
        "register_results": 0,
        "website_results": 0,
        "organisation_results": 0,
        "citations_results": int((screened["origin"] == "other").sum()),
        "duplicates": len(rel) - rel["cluster_id"].nunique(),
        "excluded_automatic": int((~db["relevant"]).sum()),
        "excluded_other": 0,
        "records_screened": screened_n,
        "records_excluded": rec_excl,
        "dbr_sought_reports": screened_n - rec_excl,
        "dbr_notretrieved_reports": notret,
        "other_sought_reports": len(oth),
        "other_notretrieved_reports": oth_notret,
        "dbr_assessed": screened_n - rec_excl - notret,
        "dbr_excluded": reasons(excluded(dbs, "eligibility")),
        "other_assessed": len(oth) - oth_notret,
        "other_excluded": reasons(oth_elig),
        "new_studies": new,
        "new_reports": new,
        "total_studies": new,
        "total_reports": new,
    }


def _resolve_quality(
    quality: pd.DataFrame,
    records: pd.DataFrame,
    clusters: pd.DataFrame,
    studies: pd.DataFrame,
    source: Path,
) -> pd.DataFrame:
    cluster_of = dict(zip(clusters["record_id"], clusters["cluster_id"], strict=True))
    title_of = dict(zip(studies["cluster_id"], studies["title"], strict=True))
    out = quality.copy()
    found = []
    for n, ref in enumerate(out["ref"], 2):
        ids = screening.resolve_ref(ref, records)
        cids = {cluster_of[i] for i in ids}
        if len(cids) != 1:
            what = "matches no imported record" if not cids else "matches several studies"
            raise MigfwError(f"{source}: line {n}: ref {ref!r} {what}")
        found.append(cids.pop())
    out.insert(2, "cluster_id", found)
    out.insert(3, "title", [title_of.get(c, "") for c in found])
    return out


def _count_links(result: DedupeResult, column: str, value: str) -> int:
    """Link rows with `column` == `value`, counted bucket by bucket (not one frame)."""
    return len(
        result.select_links(
            lambda f: f[column] == value if column in f else pd.Series(False, index=f.index)
        )
    )


def run_review(cfg: ReviewConfig, log: Log = _stderr) -> ReviewResult:
    from migfw.slr import prisma
    from migfw.slr.dedupe import deduplicate, library_records, load_dedupe_decisions, review_table
    from migfw.slr.dedupe.heap import return_heap

    sources = load_sources(cfg.sources)
    databases = _databases(sources)
    query = screening.load_keyterms(cfg.keyterms)
    decisions = screening.load_decisions(cfg.decisions)
    records = import_records(cfg, sources, log)
    return_heap()  # the reader's freed text and rows, under screening's and dedupe's peaks

    # Stage 1: key-term query on database records; other sources were found by hand.
    hits = screening.screen(records, query)
    screened = records[["record_id", "source_file", "database", "year"]].merge(hits, on="record_id")
    screened.insert(
        3, "origin", ["other" if d == OTHER_SOURCES else "database" for d in screened["database"]]
    )
    screened["relevant"] = screened["passes_query"] & (screened["origin"] == "database")
    n_db = int((screened["origin"] == "database").sum())
    log(f"screen: {int(screened['relevant'].sum())} of {n_db} database records match the query")

    person = (
        load_dedupe_decisions(cfg.dedupe_decisions, records["record_id"])
        if cfg.dedupe_decisions is not None
        else []
    )
    result = deduplicate(records, decisions=person)
    dedupe_review = review_table(result, records)
    clusters = result.clusters[["record_id", "cluster_id"]]
    missing = set(records["record_id"]) - set(clusters["record_id"])
    if missing:
        raise MigfwError(f"dedupe: {len(missing)} records have no cluster (e.g. {min(missing)})")
    screened = screened.merge(clusters, on="record_id", how="left")
    rel = screened[screened["relevant"]]
    n_links = _count_links(result, "decision", "duplicate")
    log(
        f"dedupe: {len(records)} records -> {clusters['cluster_id'].nunique()} studies, "
        f"{n_links} duplicate links; relevant: {len(rel)} records -> "
        f"{rel['cluster_id'].nunique()} studies"
    )
    log(
        f"dedupe: {result.stats['person_decisions']} pairs decided by a person, "
        f"{len(dedupe_review)} uncertain pairs left for review (dedupe_review.csv)"
    )

    decided = screening.apply_decisions(decisions, records, clusters, str(cfg.decisions))
    studies = build_studies(records, screened, decided)
    screened = screened.merge(
        studies[["cluster_id", "decision", "reason", "stage", "included"]],
        on="cluster_id",
        how="left",
    )
    in_review = studies[studies["origin"] != "none"]
    undecided = int((in_review["decision"] == "").sum())
    log(
        f"decisions: {int(in_review['included'].sum())} included, "
        f"{int((in_review['decision'] == 'exclude').sum())} excluded, {undecided} undecided "
        f"(of {len(in_review)} studies in the review)"
    )
    outside = studies[(studies["origin"] == "none") & (studies["decision"] != "")]
    if len(outside):
        log(
            f"decisions: warning: {len(outside)} decisions concern studies outside the review "
            f"(no relevant database record; e.g. {outside['title'].iloc[0][:60]!r})"
        )
    if undecided:
        log(
            f"decisions: warning: {undecided} studies have no decision yet "
            f"(listed in screened.csv with an empty decision)"
        )

    t3 = tables.table3(screened, studies)
    t6 = tables.table6(screened, studies, databases)
    t10 = qsum = sens = sens_detail = None
    if cfg.quality is not None:
        t10 = _resolve_quality(
            tables.load_quality(cfg.quality), records, clusters, studies, cfg.quality
        )
        qsum = tables.quality_summary(t10)
        not_final = set(t10["cluster_id"]) - set(studies.loc[studies["included"], "cluster_id"])
        if not_final:
            log(f"quality: warning: {len(not_final)} assessed studies are not in the final set")
    if cfg.quasi_gold is not None:
        sens, sens_detail = tables.sensitivity(
            tables.load_quasi_gold(cfg.quasi_gold), records, screened
        )

    counts = prisma_counts(sources, screened, studies)
    counts["duplicate_pairs_person"] = _count_links(result, "decided_by", "person")
    counts["duplicate_pairs_review"] = len(dedupe_review)
    ptable = prisma.counts_table(counts)
    pchecks = prisma.checks(ptable)
    # Not PRISMA arithmetic, but the usual reason it fails: studies nobody has decided on.
    pending = {
        "check": "studies awaiting a decision",
        "expected": 0,
        "actual": undecided,
        "ok": undecided == 0,
    }
    pchecks = pd.concat([pchecks, pd.DataFrame([pending])], ignore_index=True)
    log(f"prisma: {int(pchecks['ok'].sum())} of {len(pchecks)} consistency checks pass")

    audit = None
    if cfg.printed is not None:
        audit = build_audit(cfg.printed, query, t3, t6, t10, qsum, sens, screened, studies)
        bad = audit[audit["ok"] == False]  # noqa: E712 (None = not comparable)
        log(f"audit: {int(audit['ok'].notna().sum())} printed values checked, {len(bad)} disagree")

    return ReviewResult(
        query,
        databases,
        records,
        clusters,
        result,
        result.merged,
        dedupe_review,
        library_records(result, records),
        screened,
        studies,
        t3,
        t6,
        t10,
        qsum,
        sens,
        sens_detail,
        audit,
        ptable,
        pchecks,
    )


def build_audit(
    printed_path: Path,
    query: screening.Query,
    t3: pd.DataFrame,
    t6: pd.DataFrame,
    t10: pd.DataFrame | None,
    qsum: pd.DataFrame | None,
    sens: pd.DataFrame | None,
    screened: pd.DataFrame,
    studies: pd.DataFrame,
) -> pd.DataFrame:
    printed = auditmod.load_printed(printed_path)
    audit = auditmod.Audit()
    if "table3" in printed:
        auditmod.audit_table3(audit, printed["table3"], t3)
    if "table6" in printed:
        auditmod.audit_table6(audit, printed["table6"], t6)
    if "table10" in printed and t10 is not None:
        auditmod.audit_table10(audit, printed["table10"], t10)
        audit.add("Table 10", "studies assessed", "recomputed", len(printed["table10"]), len(t10))
    inc = studies[studies["included"]]
    dbs = studies[studies["origin"] == "database"]
    rel = screened[screened["relevant"]]
    nan = float("nan")
    q = qsum.iloc[0] if qsum is not None else {}
    s = sens.iloc[0] if sens is not None else {}
    n_excl = int((dbs["decision"] == "exclude").sum())
    values: dict[str, Any] = {
        "search_strings": query.n_search_strings(),
        "sensitivity_retrieved": s.get("retrieved", nan),
        "sensitivity_qgs_size": s.get("quasi_gold_studies", nan),
        "sensitivity_percent": s.get("sensitivity_percent", nan),
        "relevant_records": len(rel),
        "selected_from_databases": int(dbs["included"].sum()),
        "added_other_sources": int((inc["origin"] == "other").sum()),
        "final_selected": len(inc),
        "final_share_percent": lambda row: (
            100.0
            * int(inc["year"].isin([int(y) for y in row.get("years", [])]).sum())
            / max(len(inc), 1)
        ),
        "selected_records": lambda row: int(
            (rel["included"] & rel["database"].isin(row.get("databases", []))).sum()
        ),
        "not_selected": n_excl,
        "not_selected_percent": 100.0 * n_excl / len(dbs) if len(dbs) else nan,
        "quality_min": q.get("min_study_score", nan),
        "quality_max": q.get("max_study_score", nan),
        "mean_quality": q.get("mean_score", nan),
        "mean_quality_percent": q.get("mean_percent", nan),
    }
    auditmod.audit_headline(audit, printed.get("headline", []), values)
    return audit.frame()


# Every file the review writes, by output name. The workflow names each file (`--output
# NAME=PATH`); `--out DIR` gives these default names. A figure's SVG twin sits beside its PNG.
OUTPUT_FILES: dict[str, str] = {
    **{
        name: f"{name}.csv"
        for name in (
            "records",
            "clusters",
            "links",
            "merged",
            "dedupe_review",
            "library",
            "screened",
            "studies",
            "table3",
            "table6",
            "table10",
            "quality_summary",
            "sensitivity",
            "sensitivity_detail",
            "audit",
            "prisma",
            "prisma_checks",
        )
    },  # fmt: skip
    "library_ris": "library.ris",
    "query": "query.txt",
    "prisma_flow": "prisma_flow.png",
    "db_overlap": "db_overlap.png",
}


def output_paths(out_dir: str | Path | None, named: list[str]) -> dict[str, Path]:
    """Output name -> path: `NAME=PATH` pairs (every name, no other) or defaults in `out_dir`."""
    if not named:
        folder = Path(out_dir or "results/slr")
        return {name: folder / file for name, file in OUTPUT_FILES.items()}
    paths: dict[str, Path] = {}
    for pair in named:
        name, sep, path = pair.partition("=")
        if not sep or not path:
            raise MigfwError(f"--output {pair!r}: expected NAME=PATH")
        if name not in OUTPUT_FILES:
            raise MigfwError(f"--output {name}: unknown output (known: {', '.join(OUTPUT_FILES)})")
        paths[name] = Path(path)
    missing = [name for name in OUTPUT_FILES if name not in paths]
    if missing:
        raise MigfwError(f"--output: no path given for {', '.join(missing)}")
    return paths


def write_outputs(res: ReviewResult, out: Path | dict[str, Path], log: Log = _stderr) -> list[Path]:
    """Write every output; `out` is a folder (default names) or name -> path."""
    from migfw.slr import prisma
    from migfw.slr.dedupe import write_ris
    from migfw.slr.slrfigures import overlap_figure

    paths = out if isinstance(out, dict) else output_paths(out, [])
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    screened = res.screened.merge(res.records[["record_id", "title"]], on="record_id", how="left")
    frames = {
        "records": res.records, "clusters": res.clusters, "links": None,
        "merged": res.merged, "dedupe_review": res.dedupe_review, "library": res.library,
        "screened": screened, "studies": res.studies, "table3": res.table3,
        "table6": res.table6, "table10": res.table10, "quality_summary": res.quality_summary,
        "sensitivity": res.sensitivity, "sensitivity_detail": res.sensitivity_detail,
        "audit": res.audit, "prisma": res.prisma, "prisma_checks": res.prisma_checks,
    }  # fmt: skip
    written: list[Path] = []
    for name, frame in frames.items():
        if name == "links":  # streamed from the link files, a bucket at a time
            res.dedupe.write_links(paths[name])
        else:
            # An optional input left out (e.g. no quality scores) still leaves a declared file.
            write_csv(paths[name], frame if frame is not None else pd.DataFrame())
        written.append(paths[name])
    write_ris(paths["library_ris"], res.library)
    with atomic_write(paths["query"]) as handle:
        handle.write(res.query.render() + "\n")
        handle.write(
            f"# {len(res.query.columns)} columns, {res.query.n_search_strings()} "
            f"single-term search strings; from {res.query.source}\n"
        )
    flow, overlap = paths["prisma_flow"], paths["db_overlap"]
    prisma.flow_figure(res.prisma, flow, flow.with_suffix(".svg"))
    overlap_figure(res.screened, res.databases, overlap, overlap.with_suffix(".svg"))
    written += [paths["library_ris"], paths["query"], flow, flow.with_suffix(".svg")]
    written += [overlap, overlap.with_suffix(".svg")]
    log(f"review: wrote {len(written)} files")
    return written


# ------------------------------------------------------------------ CLI


def write_review(config: str | Path, outputs: Mapping[str, str | Path]) -> None:
    """Rule slr_review: the review of `config`'s slr section (import, dedupe, screening,
    tables, PRISMA, library) written to `outputs` (every OUTPUT_FILES name -> its path)."""
    cfg = ReviewConfig.from_file(config)
    # Bad or missing names are refused before the work.
    paths = output_paths(None, [f"{name}={path}" for name, path in outputs.items()])
    write_outputs(run_review(cfg), paths)


def _cmd_review(args: argparse.Namespace) -> int:
    cfg = ReviewConfig.from_file(args.config)
    paths = output_paths(args.out, args.output)  # bad names refused before the work
    write_outputs(run_review(cfg), paths)
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    query = screening.load_keyterms(args.keyterms)
    print(query.render())
    print(f"# {query.n_search_strings()} single-term search strings")
    return 0


def _cmd_screen(args: argparse.Namespace) -> int:
    from migfw.slr.imports import read_exports

    query = screening.load_keyterms(args.keyterms)
    records = read_exports(args.files, databases=None)
    hits = screening.screen(records, query)
    frame = records[["record_id", "source_file", "database", "year", "title"]].merge(
        hits, on="record_id"
    )
    write_csv(args.out, frame)
    print(
        f"screen: {int(frame['passes_query'].sum())} of {len(frame)} records match", file=sys.stderr
    )
    return 0


def _cmd_prisma_check(args: argparse.Namespace) -> int:
    from migfw.slr import prisma

    path = Path(args.table)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise MigfwError(f"{path}: cannot read ({str(exc).splitlines()[0]})") from None
    if not {"data", "n"} <= set(table.columns):
        raise MigfwError(f"{path}: expected PRISMA2020 columns 'data' and 'n'")
    try:
        result = prisma.checks(table)
    except (ValueError, IndexError) as exc:
        raise MigfwError(f"{path}: a count is not a number ({exc})") from None
    if args.out:
        write_csv(args.out, result)
    for row in result.itertuples(index=False):
        mark = "ok  " if row.ok else "FAIL"
        print(f"{mark} {row.check}: expected {row.expected}, actual {row.actual}")
    return 0 if result["ok"].all() else 1


def register_cli(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("review", help="run the whole SLR branch and write tables, audit, figures")
    p.add_argument("--config", default="config/config.yaml", help="config with an slr section")
    p.add_argument("--out", default="results/slr", help="output folder (default file names)")
    p.add_argument(
        "--output",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="write output NAME to PATH (give every name; overrides --out): "
        + ", ".join(OUTPUT_FILES),
    )
    p.set_defaults(func=_cmd_review)

    p = sub.add_parser("query", help="print the key-term query as a Boolean string")
    p.add_argument("--keyterms", default="config/slr/keyterms.yaml")
    p.set_defaults(func=_cmd_query)

    p = sub.add_parser("screen", help="apply the key-term query to export files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--keyterms", default="config/slr/keyterms.yaml")
    p.add_argument("--out", required=True, help="CSV: one row per record with the matches")
    p.set_defaults(func=_cmd_screen)

    p = sub.add_parser("prisma-check", help="check a PRISMA2020 count table's arithmetic")
    p.add_argument("table", help="CSV with PRISMA2020 'data' and 'n' columns")
    p.add_argument("--out", help="write the checks as CSV")
    p.set_defaults(func=_cmd_prisma_check)


__all__ = [
    "OUTPUT_FILES",
    "ReviewConfig",
    "ReviewResult",
    "output_paths",
    "register_cli",
    "run_review",
    "write_outputs",
]
