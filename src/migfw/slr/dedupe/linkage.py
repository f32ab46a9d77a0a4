"""Probabilistic record linkage (Fellegi-Sunter) with Splink on DuckDB.

Each candidate pair gets a match weight: the log2 Bayes factor that the two records are
one work, summed over independent field comparisons plus the prior. The m probabilities
(how often a level occurs among true duplicates) are estimated on each input by
expectation maximisation and the u probabilities (among different works) by random
sampling, both without labels, so the weights follow the export at hand (a database that
abbreviates every journal makes venue agreement worth less). An input too small to
estimate anything from (< MIN_RECORDS_TO_TRAIN records) uses the fallback model in
`migfw/data/dedupe_model.json`, trained the same way (no labels) on the real labelled
sets' records (scripts/bench_dedupe.py --write-model).

The comparison levels are built from this project's normalisation (features.py): folded
titles with their bracketed translations, surname keys from author lists in any format,
venue initials (an ISO 4 / NLM abbreviation or an acronym has the initials of the full
name), start pages, DOIs. Splink never sees the hard conflicts; scoring.py applies them
as vetoes after the weights.

The same settings run on Spark: pass `SparkAPI(spark_session=...)` as `db_api` (a local
session and the checks: spark.py; see docs/slr_dedupe.md, "Scale and Spark").
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from migfw.slr.dedupe import recordtable
from migfw.slr.dedupe.features import _Features
from migfw.slr.dedupe.heap import return_heap
from migfw.slr.dedupe.recordtable import (
    _feature_slices,
    _record_database,
    _spark_frame,
)

MIN_RECORDS_TO_TRAIN = 400  # fewer records: EM has too few duplicates to learn from
U_SAMPLE_PAIRS = 100_000  # random pairs for the u probabilities (a rare level: floored)
TRAIN_RECORDS = 50_000  # larger inputs are trained on a random sample of this many records
MODEL_FILE = Path(__file__).resolve().parents[2] / "data" / "dedupe_model.json"
# Prior for the share of duplicates among all pairs, from the deterministic rules below:
# how many of the true duplicates these rules are assumed to find.
DETERMINISTIC_RECALL = 0.7

TITLE_LEVELS = [
    "exact or translation",
    "jaro-winkler >= 0.97",
    "one truncated",
    "jaro-winkler >= 0.90",
]
AUTHOR_LEVELS = ["same list", "first same, most shared", "all name words shared", "some shared"]


# SQL that differs between Splink's backends: DuckDB (local) and Spark (a cluster; Splink
# registers its jaro_winkler UDF there). Everything else in the levels is plain SQL.
_SQL = {
    "duckdb": {
        "jw": "jaro_winkler_similarity({a}, {b})", "shared": "len(list_intersect({a}, {b}))",
        "size": "len({a})", "first": "{a}[1]", "starts": "starts_with({a}, {b})",
    },
    "spark": {
        "jw": "jaro_winkler({a}, {b})", "shared": "size(array_intersect({a}, {b}))",
        "size": "size({a})", "first": "element_at({a}, 1)", "starts": "startswith({a}, {b})",
    },
}  # fmt: skip


def _sql(dialect: str, name: str, a: str, b: str = "") -> str:
    return _SQL[dialect][name].format(a=a, b=b)


def _comparison(name: str, null_sql: str, levels: list[tuple[str, str, float]]) -> Any:
    """A Splink comparison: a null level, `levels` as (SQL condition, label, starting m
    probability) in order, and an else level taking the remaining m."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    built = [cll.CustomLevel(null_sql, "missing").configure(is_null_level=True)]
    built += [cll.CustomLevel(sql, label).configure(m_probability=m) for sql, label, m in levels]
    rest = max(1.0 - sum(m for _, _, m in levels), 0.01)
    built.append(cll.ElseLevel().configure(m_probability=rest))
    return cl.CustomComparison(output_column_name=name, comparison_levels=built)


def _null(col: str) -> str:
    return f"{col}_l IS NULL OR {col}_r IS NULL"


def _exact(col: str, m: float) -> tuple[str, str, float]:
    return (f"{col}_l = {col}_r", "equal", m)


def _comparisons(dialect: str = "duckdb") -> list:
    """Field comparisons (levels best first; starting m probabilities, which EM updates
    where the input shows the level among likely duplicates). Jaro-Winkler, not
    Levenshtein: DuckDB's Levenshtein is ~10x slower (14 s per million title pairs against
    1.6 s, measured under load)."""

    def jw(col: str) -> str:
        return _sql(dialect, "jw", f"{col}_l", f"{col}_r")

    def shared(col: str) -> str:
        return f"CAST({_sql(dialect, 'shared', f'{col}_l', f'{col}_r')} AS DOUBLE)"

    def shorter(col: str) -> str:
        return f"least({_sql(dialect, 'size', f'{col}_l')}, {_sql(dialect, 'size', f'{col}_r')})"

    first_l, first_r = _sql(dialect, "first", "authors_l"), _sql(dialect, "first", "authors_r")
    # First author equal, or one letter apart ("Hiess" / "Hiessl").
    first = f"{_sql(dialect, 'jw', first_l, first_r)} >= 0.92"
    title_l_word, title_r_word = "title_l || ' '", "title_r || ' '"
    # One title is the other cut at a word (a dropped subtitle: the start kept), or the
    # other without its heading ("Column: <title>").
    truncated = (
        f"(length(title_l) >= 20 AND {_sql(dialect, 'starts', 'title_r', title_l_word)}) OR "
        f"(length(title_r) >= 20 AND {_sql(dialect, 'starts', 'title_l', title_r_word)}) OR "
        "title_l = tail_r OR tail_l = title_r"
    )
    variant = f"title_l = title_r OR {shared('variants')} > 0"
    return [
        _comparison("title", _null("title"), [
            (variant, TITLE_LEVELS[0], 0.85),
            (f"{jw('title')} >= 0.97", TITLE_LEVELS[1], 0.05),
            (truncated, TITLE_LEVELS[2], 0.04),
            (f"{jw('title')} >= 0.90", TITLE_LEVELS[3], 0.03),
        ]),
        _comparison("authors", _null("authors"), [
            (f"{first_l} = {first_r} AND {shared('authors')} >= {shorter('authors')}",
             AUTHOR_LEVELS[0], 0.8),
            (f"{first} AND {shared('authors')} >= 0.5 * {shorter('authors')}",
             AUTHOR_LEVELS[1], 0.1),
            # Names split the wrong way round ("Andrea, C." for "Carignani, Andrea").
            (f"{shared('names')} >= {shorter('names')}", AUTHOR_LEVELS[2], 0.04),
            (f"{shared('authors')} > 0", AUTHOR_LEVELS[3], 0.03),
        ]),
        _comparison("year", _null("year"), [
            _exact("year", 0.9),
            # A conference's year against its proceedings' year; online-first journals.
            ("abs(year_l - year_r) = 1 AND 'conference' IN (vtype_l, vtype_r)",
             "one apart, conference", 0.04),
            ("abs(year_l - year_r) = 1", "one apart", 0.04),
        ]),
        _comparison("venue", _null("venue"), [
            _exact("venue", 0.6),
            (f"{shared('vkeys')} > 0", "abbreviation or acronym", 0.25),
            (f"{shared('vwords')} >= 0.6 * {shorter('vwords')}", "most words shared", 0.1),
        ]),
        _comparison("volume", _null("volume"), [_exact("volume", 0.95)]),
        _comparison("page", _null("page"), [_exact("page", 0.95)]),
        _comparison("doi", _null("doi"), [_exact("doi", 0.97)]),
    ]  # fmt: skip


def _settings(dialect: str = "duckdb") -> Any:
    from splink import SettingsCreator

    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=_comparisons(dialect),
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
        additional_columns_to_retain=[],
    )


def _linker(table: pd.DataFrame | str, settings: Any, db_api: Any = None) -> Any:
    from splink import DuckDBAPI, Linker

    if db_api is not None and _dialect(db_api) == "spark":
        from migfw.slr.dedupe.spark import check_session

        check_session(db_api.spark)  # one line, not a Java trace at the first comparison
        if isinstance(table, pd.DataFrame):
            table = _spark_frame(table, db_api.spark)
    db_api = db_api or DuckDBAPI()
    frame = db_api.register(table)
    return Linker(frame, settings, log_level=None)


def _release(linker: Any, db_api: Any) -> None:
    """Close the in-process DuckDB database `_linker` opened (db_api None) and hand the
    freed heap back to the system: its tables otherwise stay resident for the rest of the
    run (25,000 records: peak 501 -> 408 MiB). A caller's own backend is left open."""
    if db_api is not None:
        return
    linker._db_api.duckdb_con.close()
    return_heap()


def _training_rows(n: int, seed: int) -> np.ndarray | None:
    """Rows `train` samples from a table of `n` records (None: all), in sample order:
    the rows `table.sample(TRAIN_RECORDS, random_state=seed)` picks (pandas draws them
    from the length alone)."""
    if n <= TRAIN_RECORDS:  # the probabilities, not the pairs, are wanted here
        return None
    return pd.Series(np.arange(n)).sample(TRAIN_RECORDS, random_state=seed).to_numpy()


def train_features(feat: _Features, db_api: Any = None, seed: int = 1) -> dict:
    """`train(record_table(feat))`, building the record table of the sampled records only
    (same rows, same order, same unique ids: the same model, in memory bounded by
    TRAIN_RECORDS); in-process, a slice at a time into a DuckDB database file."""
    from migfw.slr.dedupe.features import _take

    rows = _training_rows(len(feat.ids), seed)
    if db_api is None:
        rows = np.arange(len(feat.ids)) if rows is None else rows
        return _train_in_file(_feature_slices(feat, rows), len(rows), seed)
    if rows is None:
        return train(recordtable.record_table(feat), db_api, seed)
    table = recordtable.record_table(_take(feat, rows))
    table["unique_id"] = rows.astype(np.int64)
    return train(table, db_api, seed, sampled=True)


def train(table: pd.DataFrame, db_api: Any = None, seed: int = 1, sampled: bool = False) -> dict:
    """Estimate the model on `table` without labels; return Splink's model dict.
    `sampled`: `table` is already the training sample (train_features)."""
    rows = None if sampled else _training_rows(len(table), seed)
    if rows is not None:
        table = table.iloc[rows].reset_index(drop=True)
    if db_api is None:
        size = recordtable.TABLE_SLICE
        pieces = (table.iloc[k : k + size] for k in range(0, len(table), size))
        return _train_in_file(pieces, len(table), seed)

    def has_pairs(columns: list[str]) -> bool:
        return bool(table.dropna(subset=columns).duplicated(subset=columns).any())

    linker = _linker(table, _settings(_dialect(db_api)), db_api)
    model = _estimate(linker, len(table), has_pairs, seed)
    _release(linker, db_api)
    return model


def _train_in_file(slices: Iterable[pd.DataFrame], n: int, seed: int) -> dict:
    """`train` in process on the record table in a temporary DuckDB database file (see
    `_record_database`): Splink's training tables spill there beyond the memory limit,
    so training on TRAIN_RECORDS records does not hold them all in RAM."""
    from splink import DuckDBAPI

    con, folder = _record_database(slices)
    try:

        def has_pairs(columns: list[str]) -> bool:
            present = " AND ".join(f"{c} IS NOT NULL" for c in columns)
            keys = ", ".join(columns)
            return bool(con.execute(
                f"SELECT 1 FROM migfw_records WHERE {present} GROUP BY {keys} "
                "HAVING count(*) > 1 LIMIT 1"
            ).fetchall())  # fmt: skip

        api = DuckDBAPI(con)
        linker = _linker("migfw_records", _settings("duckdb"), api)
        return _estimate(linker, n, has_pairs, seed)
    finally:
        con.close()
        return_heap()
        shutil.rmtree(folder, ignore_errors=True)


def _estimate(linker: Any, n: int, has_pairs: Callable[[list[str]], bool], seed: int) -> dict:
    """Splink's estimation steps on `linker`'s `n` records: the prior, u by random
    sampling, m by EM sessions (those whose blocking columns `has_pairs`)."""
    from splink import block_on

    logging.getLogger("splink").setLevel(logging.ERROR)
    # A DOI shared by hundreds of records (a journal's stub DOI, a proceedings volume's)
    # makes more "deterministic" pairs than the recall allows, and Splink refuses: then
    # the titles alone, then Splink's default prior.
    for rules in ([block_on("doi"), block_on("title", "year")], [block_on("title", "year")]):
        try:
            linker.training.estimate_probability_two_random_records_match(
                rules, recall=DETERMINISTIC_RECALL
            )
            break
        except ValueError as exc:
            logging.getLogger(__name__).debug("prior from %s refused: %s", rules, exc)
    # An input without one deterministic duplicate (a clean export: every copy folded
    # before training) estimates 0, whose log-odds Splink cannot take: at most one pair.
    pairs = max(1, n * (n - 1) // 2)
    prior = linker._settings_obj._probability_two_random_records_match
    linker._settings_obj._probability_two_random_records_match = min(max(prior, 1 / pairs), 0.99)
    linker.training.estimate_u_using_random_sampling(
        max_pairs=min(U_SAMPLE_PAIRS, n * (n - 1) // 2),
        seed=seed,
        min_count_per_level=None,
        num_chunks=1,
    )
    # Each session fixes the fields it blocks on and learns the others' m probabilities.
    # A session whose rule finds no pair is skipped: Splink would fail it after taking
    # the blocked fields out of the model.
    for columns in (("title",), ("doi",), ("volume", "page", "year")):
        if not has_pairs(list(columns)):
            continue
        before = copy.deepcopy(linker._settings_obj)
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(
                block_on(*columns), fix_probability_two_random_records_match=True
            )
        except Exception as exc:  # EM found nothing to learn: keep the model as it was
            linker._settings_obj = before
            logging.getLogger(__name__).debug("EM session on %s skipped: %s", columns, exc)
    return smooth(linker.misc.save_model_to_json())


M_FLOOR = 0.02  # smallest m probability a level keeps after EM


def smooth(model: dict, floor: float = M_FLOOR) -> dict:
    """Floor each level's m probability at `floor` and renormalise. EM on one input
    drives the m of a level it never sees among the likely duplicates to ~0, which makes
    that level a veto worth -100 or less (one typo in a surname, a conference dated a
    year apart); another input will show it. Weights stay bounded, vetoes stay rules."""
    for comparison in model["comparisons"]:
        levels = [lv for lv in comparison["comparison_levels"] if not lv.get("is_null_level")]
        ms = [max(lv.get("m_probability") or 0.0, floor) for lv in levels]
        total = sum(ms)
        for lv, m in zip(levels, ms, strict=True):
            lv["m_probability"] = m / total
            if not lv.get("u_probability"):
                lv["u_probability"] = 1e-6  # never seen among random pairs
    return model


def _representatives(records: pd.DataFrame) -> _Features:
    """Features of one record per set of exact copies: what `deduplicate` links."""
    from migfw.slr.dedupe.features import _exact_copy_of, _features, _take

    feat = _features(records.reset_index(drop=True))
    copy_of = _exact_copy_of(feat, set())
    return _take(feat, np.flatnonzero(copy_of == np.arange(len(copy_of))))


def train_records(records: pd.DataFrame, db_api: Any = None) -> dict:
    """`train` on a canonical record table (e.g. several sets' records together)."""
    return train_features(_representatives(records), db_api)


def model_for(records: pd.DataFrame, fallback: dict | None = None) -> dict | None:
    """The model `deduplicate` would use on `records`: trained on them when there are
    enough, else `fallback` (None: the shipped one is used)."""
    feat = _representatives(records)
    if len(feat.ids) >= MIN_RECORDS_TO_TRAIN:
        return train_features(feat)
    return fallback


def _dialect(db_api: Any) -> str:
    return "duckdb" if db_api is None else db_api.sql_dialect.sql_dialect_str


def in_dialect(model: dict, dialect: str) -> dict:
    """`model` with its levels' SQL written for `dialect` (a model trained on DuckDB, like
    the shipped fallback, scored on Spark): same levels, same m and u."""
    fresh = _settings(dialect).create_settings_dict(dialect)
    out = json.loads(json.dumps(model))
    for comparison, new in zip(out["comparisons"], fresh["comparisons"], strict=True):
        for level, sql in zip(comparison["comparison_levels"], new["comparison_levels"],
                              strict=True):  # fmt: skip
            level["sql_condition"] = sql["sql_condition"]
    out["sql_dialect"] = dialect
    return out


def fallback_model() -> dict:
    """The shipped model for inputs too small to train on."""
    return json.loads(MODEL_FILE.read_text())


def score_pairs(
    feat: _Features, pairs: np.ndarray, model: dict | None = None, db_api: Any = None
) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """Match weight of each candidate pair (rows of `pairs`, indices into `feat`) and the
    comparison level of each field (gamma_<field>, -1 = missing). `model`: a trained
    model dict; default: trained on this input, or the fallback when it is too small."""
    scorer = PairScorer(feat, model, db_api)
    try:
        weights, gammas = scorer.score(pairs)
    finally:
        scorer.close()
    return weights, gammas, scorer.model


class PairScorer:
    """Scores chunks of candidate pairs with one Splink linker (the record table is
    registered once; each chunk's pairs and predictions are dropped after it), so the
    backend never holds more than one chunk of pairs. `model` as in `score_pairs`;
    `fallback`: the model for inputs too small to train on (default: the shipped one)."""

    def __init__(
        self, feat: _Features, model: dict | None = None, db_api: Any = None,
        fallback: dict | None = None,
    ) -> None:  # fmt: skip
        if model is None:
            model = (
                train_features(feat, db_api)
                if len(feat.ids) >= MIN_RECORDS_TO_TRAIN
                else fallback or fallback_model()
            )
        # The record table is built at the first chunk (not held through blocking).
        self.feat, self.n = feat, len(feat.ids)
        self.model, self.db_api, self.linker = model, db_api, None
        self.folder: str | None = None  # the in-process database's temporary folder

    def score(self, pairs: np.ndarray) -> tuple[np.ndarray, pd.DataFrame]:
        """Match weights and gamma columns of `pairs`, in their order."""
        if not len(pairs):
            return np.empty(0), pd.DataFrame()
        logging.getLogger("splink").setLevel(logging.ERROR)
        if self.linker is None:
            dialect = _dialect(self.db_api)
            if self.db_api is None:
                self.linker = self._file_linker(in_dialect(self.model, dialect))
            else:  # a caller's backend (Spark): the pandas record table, as registered
                table = recordtable.record_table(self.feat)
                self.linker = _linker(table, in_dialect(self.model, dialect), self.db_api)
            self.feat = None  # in the backend's table now: the caller may free the features
        api = self.linker._db_api
        blocked = api.register(pd.DataFrame(
            {"match_key": "0", "join_key_l": pairs[:, 0].astype(np.int64),
             "join_key_r": pairs[:, 1].astype(np.int64)}
        ))  # fmt: skip
        self.linker.table_management.register_blocked_pairs_for_predict(blocked)
        predicted = self.linker.inference.predict(warning_mode="never")
        scored = predicted.as_pandas_dataframe()
        predicted.drop_table_from_database_and_remove_from_cache()
        blocked.drop_table_from_database_and_remove_from_cache(force_non_splink_table=True)
        n = self.n
        key = scored["unique_id_l"].to_numpy() * n + scored["unique_id_r"].to_numpy()
        order = pd.Series(np.arange(len(scored)), index=key)
        rows = order.reindex(pairs[:, 0].astype(np.int64) * n + pairs[:, 1]).to_numpy()
        scored = scored.iloc[rows].reset_index(drop=True)
        gammas = scored[[c for c in scored.columns if c.startswith("gamma_")]]
        return scored["match_weight"].to_numpy(dtype=float), gammas

    def _file_linker(self, model: dict) -> Any:
        """A linker on the record table in a temporary DuckDB database (see
        `_record_database`): its copy of the records does not grow the process."""
        from splink import DuckDBAPI, Linker

        con, self.folder = _record_database(_feature_slices(self.feat))
        try:
            return Linker(DuckDBAPI(con).register("migfw_records"), model, log_level=None)
        except BaseException:
            con.close()  # close() removes the folder
            raise

    def close(self) -> None:
        """Close the backend's tables (the in-process database: closed, its folder
        removed, also after a failed run)."""
        try:
            if self.linker is not None:
                if self.folder is not None:
                    _release(self.linker, None)
                else:
                    _release(self.linker, self.db_api)
                self.linker = None
        finally:
            if self.folder is not None:
                shutil.rmtree(self.folder, ignore_errors=True)
                self.folder = None


def level_weights(model: dict) -> dict[str, list[tuple[str, float]]]:
    """Each comparison's levels with their match weight (log2 m/u), for the docs/links."""
    out = {}
    for comparison in model["comparisons"]:
        levels = []
        for level in comparison["comparison_levels"]:
            if level.get("is_null_level"):
                continue
            m, u = level.get("m_probability"), level.get("u_probability")
            weight = math.log2(m / u) if m and u else float("nan")
            levels.append((level.get("label_for_charts", level["sql_condition"]), weight))
        out[comparison["output_column_name"]] = levels
    return out
