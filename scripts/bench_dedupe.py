#!/usr/bin/env python3
"""Accuracy and speed of `migfw.slr.dedupe` against bib-dedupe, on the same data, in one run.

For every labelled set it prints pairwise TP/FP/FN/TN, sensitivity, specificity and the
seconds each tool spent deduplicating, plus each child process's peak memory (ru_maxrss).
Both tools run in child processes; bib-dedupe lives in its own virtualenv (created here
when missing) so its pins never touch the project's packages.

    python scripts/bench_dedupe.py                   # labelled sets + 50,000 synthetic
    python scripts/bench_dedupe.py --synthetic 5000  # smaller synthetic set
    python scripts/bench_dedupe.py --no-bibdedupe    # migfw only
    python scripts/bench_dedupe.py --scale-only      # 25k/50k/100k corpora: time, peak MiB
    python scripts/bench_dedupe.py --data DIR --data-only   # your own sets (bib-dedupe format)
    python scripts/bench_dedupe.py --spark           # labelled sets on Splink's Spark backend
                                                     # beside DuckDB (install.sh --spark first)

Labelled sets come from ../shared/testdata/dedup (skipped when absent). The synthetic set
is generated here with known truth (see make_synthetic).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import random
import string
import subprocess
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

import pandas as pd

from migfw.scratch import scratch  # a killed bench's folder is swept by the next run

REPO = Path(__file__).resolve().parents[1]
DEDUP_DATA = REPO.parent / "shared" / "testdata" / "dedup"
VENV = Path.home() / ".cache" / "migfw-bench" / "bibdedupe-venv"

# ---------------------------------------------------------------- child runners

# Peak memory: VmHWM of this process (ru_maxrss would include the pages the parent had at
# fork time) and the largest worker process it started (bib-dedupe uses a process pool).
PEAK = r"""
import resource
def peak_kib():
    with open("/proc/self/status") as status:
        hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""

MIGFW_RUNNER = (
    PEAK
    + r"""
import json, sys, time
from pathlib import Path
import pandas as pd
from migfw.slr.dedupe import deduplicate
from migfw.slr.dedupe.scoring import Params
jobs = json.loads(sys.argv[1])
config = json.loads(Path("config.json").read_text()) if Path("config.json").exists() else {}
keys = ("method", "match", "review", "guard")
params = Params(**{k: config[k] for k in keys}) if config else Params()
fallback = json.loads(Path(config["fallback"]).read_text()) if config.get("fallback") else None
total, review = 0.0, 0
for src, dst in jobs:
    records = pd.read_pickle(src)
    t0 = time.perf_counter()
    # Trained inside, as `migfw slr dedupe` does (features computed once).
    result = deduplicate(records, params=params, fallback=fallback,
                         apart_by=config.get("apart_by"))
    total += time.perf_counter() - t0
    review += result.stats["review_pairs"]
    result.clusters.to_csv(dst, index=False)
    if config.get("write_all"):  # what `migfw slr dedupe` writes besides clusters.csv
        result.write_links(dst + ".links.csv")
        result.merged.to_csv(dst + ".records.csv", index=False)
print(json.dumps({"seconds": total, "peak_kib": peak_kib(), "review": review}))
"""
)

# The user's path: `migfw slr dedupe FILE... --out DIR` in process (read the exports,
# deduplicate, write all six files), argv given as the child's argument.
CLI_RUNNER = (
    PEAK
    + r"""
import json, sys, time
from migfw.cli import main
t0 = time.perf_counter()
code = main(json.loads(sys.argv[1]))
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_kib": peak_kib(), "code": code}))
"""
)

# Peak of the same imports + the records table read (+ the per-record features): what a
# scale run's peak is measured against (input data, not per-pair working memory).
BASELINE_RUNNER = (
    PEAK
    + r"""
import json, sys
import pandas as pd
import duckdb, splink
from migfw.slr.dedupe import deduplicate, linkage
from migfw.slr.dedupe.features import _features
records = pd.read_pickle(json.loads(sys.argv[1])[0][0])
read = peak_kib()
feat = _features(records)
print(json.dumps({"records_kib": read, "features_kib": peak_kib(), "peak_kib": peak_kib()}))
"""
)

# Each set deduplicated three times in one child: in process (DuckDB); on a local Spark
# session as documented (`deduplicate(records, db_api=SparkAPI(...))`: the model trained
# on Spark); and on Spark with the model DuckDB trained ("spark_model": what scoring alone
# changes). Shipped defaults (the shipped model when the input is too small to train on).
# The JVM's peak is read before the session stops (local mode: driver and executors).
SPARK_RUNNER = (
    PEAK
    + r"""
import json, sys, time
from pathlib import Path
import pandas as pd
from migfw.slr.dedupe import deduplicate, linkage
from migfw.slr.dedupe.spark import jvm_pid, local_session, spark_api
jobs = json.loads(sys.argv[1])
config = json.loads(Path("config.json").read_text())
t0 = time.perf_counter()
spark = local_session(Path("spark").resolve())
out = {"start_s": time.perf_counter() - t0, "jvm_peak_kib": 0}
try:
    api = spark_api(spark)
    for src, dst in jobs:
        records = pd.read_pickle(src)
        model = None
        for backend, db_api in (("duckdb", None), ("spark", api), ("spark_model", api)):
            if backend == "duckdb":  # what deduplicate trains in process (None: too small)
                t = time.perf_counter()  # timed apart: deduplicate trains again below
                model = linkage.model_for(records)
                out["train_duckdb"] = out.get("train_duckdb", 0.0) + time.perf_counter() - t
            t = time.perf_counter()
            given = model if backend == "spark_model" else None
            result = deduplicate(records, model=given, db_api=db_api,
                                 apart_by=config.get("apart_by"))
            out[backend] = out.get(backend, 0.0) + time.perf_counter() - t
            result.clusters.to_csv(f"{dst}.{backend}.csv", index=False)
            links = result.links[["record_a", "record_b", "decision", "score"]]
            links.to_csv(f"{dst}.{backend}.links.csv", index=False)
    pid = jvm_pid(spark)
    if pid:
        with open(f"/proc/{pid}/status") as status:
            out["jvm_peak_kib"] = next(int(line.split()[1]) for line in status
                                       if line.startswith("VmHWM:"))
finally:
    spark.stop()
out["python_peak_kib"] = out["peak_kib"] = peak_kib()
print(json.dumps(out))
"""
)

BIBDEDUPE_RUNNER = (
    PEAK
    + r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
from bib_dedupe.bib_dedupe import block, cluster, match, prep
jobs = json.loads(sys.argv[1])
total = 0.0
for src, dst in jobs:
    records = pd.read_csv(src, dtype=str, keep_default_na=False)
    t0 = time.perf_counter()
    prepped = prep(records, verbosity_level=0, cpu=2)
    pairs = block(prepped, verbosity_level=0, cpu=2)
    matched = match(pairs, verbosity_level=0, cpu=2)
    groups = cluster(matched, verbosity_level=0)
    total += time.perf_counter() - t0
    cluster_of = {rid: rid for rid in records["ID"]}
    for members in groups:
        for rid in members:
            cluster_of[rid] = members[0]
    pd.DataFrame({"record_id": list(cluster_of), "cluster_id": list(cluster_of.values())}).to_csv(
        dst, index=False
    )
print(json.dumps({"seconds": total, "peak_kib": peak_kib()}))
"""
)


def ensure_bibdedupe_venv() -> Path:
    """Create the private bib-dedupe virtualenv on first use; return its python."""
    python = VENV / "bin" / "python"
    probe = [str(python), "-c", "import bib_dedupe"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    print(f"creating {VENV} and installing bib-dedupe (once)...", file=sys.stderr)
    VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "bib-dedupe"], check=True)
    return python


def run_measured(python: str, runner: str, jobs: list[tuple[str, str]], workdir: Path) -> dict:
    """Run `runner` in a child process; return its seconds, wall time and peak RSS (MiB)."""
    script = workdir / f"runner_{abs(hash(runner))}.py"
    script.write_text(runner)
    out_path = workdir / "child_stdout.txt"
    err_path = workdir / "child_stderr.txt"
    t0 = time.perf_counter()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(
            [python, str(script), json.dumps(jobs)],
            stdout=out,
            stderr=err,
            env=dict(os.environ, PYTHONWARNINGS="ignore"),
            cwd=workdir,
        )
        proc.wait()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{python} runner failed:\n{err_path.read_text()[-3000:]}")
    info = json.loads(out_path.read_text().strip().splitlines()[-1])
    info["wall"] = wall
    info["peak_mib"] = info["peak_kib"] / 1024
    return info


# ---------------------------------------------------------------- data conversion


def to_bibdedupe(records: pd.DataFrame) -> pd.DataFrame:
    """Canonical record table -> the BibTeX-like columns bib-dedupe reads."""
    conference = records["entry_type"].isin(["inproceedings", "conference", "proceedings"])
    venue = records["venue"].fillna("")
    return pd.DataFrame(
        {
            "ID": records["record_id"],
            "ENTRYTYPE": records["entry_type"].replace("", "article"),
            "author": records["authors"].fillna("").str.replace("; ", " and "),
            "title": records["title"],
            "year": records["year"].astype("string").fillna(""),
            "journal": venue.where(~conference, ""),
            "booktitle": venue.where(conference, ""),
            "volume": records["volume"],
            "number": records["issue"],
            "pages": records["pages"],
            "doi": records["doi"],
            "abstract": records["abstract"],
        }
    ).fillna("")


# ---------------------------------------------------------------- scoring


def pair_counts(truth: dict[str, str], pred: dict[str, str]) -> dict:
    """Pairwise confusion counts over all record pairs (from the cluster contingency table)."""
    ids = list(truth)
    frame = pd.DataFrame({"t": [truth[i] for i in ids], "p": [pred.get(i, i) for i in ids]})

    def pairs(sizes: pd.Series) -> int:
        return int((sizes * (sizes - 1) // 2).sum())

    tp = pairs(frame.groupby(["t", "p"]).size())
    true_pairs = pairs(frame.groupby("t").size())
    pred_pairs = pairs(frame.groupby("p").size())
    n = len(ids)
    total = n * (n - 1) // 2
    fp, fn = pred_pairs - tp, true_pairs - tp
    tn = total - tp - fp - fn
    return {
        "TP": tp,
        "FP": fp,
        "FN": fn,
        "TN": tn,
        "sensitivity": tp / true_pairs if true_pairs else float("nan"),
        "precision": tp / pred_pairs if pred_pairs else float("nan"),
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
        "fp_rate": fp / (fp + tn) if fp + tn else float("nan"),
    }


def labelled_pair_counts(labels: list[tuple[str, str, bool]], preds: list[dict[str, str]]) -> dict:
    """Confusion counts over explicitly labelled pairs (one prediction map per pair)."""
    tp = fp = fn = tn = 0
    for (a, b, expected), pred in zip(labels, preds, strict=True):
        same = pred.get(a, a) == pred.get(b, b)
        tp += same and expected
        fp += same and not expected
        fn += (not same) and expected
        tn += (not same) and not expected
    return {
        "TP": tp,
        "FP": fp,
        "FN": fn,
        "TN": tn,
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
        "fp_rate": fp / (fp + tn) if fp + tn else float("nan"),
    }


def read_clusters(path: Path) -> dict[str, str]:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return dict(zip(frame["record_id"], frame["cluster_id"], strict=True))


def truth_from_merged_ids(ids: list[str], merged_csv: Path) -> dict[str, str]:
    truth = {rid: rid for rid in ids}
    for line in pd.read_csv(merged_csv, dtype=str)["merged_ids"]:
        members = line.split(";")
        for rid in members:
            truth[rid] = members[0]
    return truth


def asysd_truth(records: pd.DataFrame, raw: pd.DataFrame) -> tuple[dict[str, str], int]:
    """Clusters of ASySD's labelled set from its `source` column (one `unique` row per
    work, the others `duplicate`); the file gives no group id, so each duplicate joins the
    unique row it matches best: highest title ratio (within 1 point), then most agreeing
    fields (DOI, year, journal, volume, start page), then the nearest row (groups are
    mostly stored in contiguous blocks). Returns the truth and how many duplicates needed
    the tie-break. Field agreement only separates same-titled works that the labels
    already call different (two `unique` rows); it never makes a duplicate."""
    from rapidfuzz import fuzz
    from rapidfuzz.process import cdist

    from migfw.slr.normalise import normalise_doi, title_key

    ids = list(records["record_id"])
    titles = [title_key(t) for t in raw["title"]]
    uniques = [i for i, s in enumerate(raw["source"]) if s == "unique"]
    ratio = cdist(titles, [titles[u] for u in uniques], scorer=fuzz.ratio, workers=-1)

    def fields(i: int) -> tuple:
        start = str(raw.at[i, "pages"]).split("-")[0]
        volume = str(raw.at[i, "volume"]).split(" ")[0]
        journal = str(raw.at[i, "journal"]).lower()
        return (normalise_doi(raw.at[i, "doi"]), raw.at[i, "year"], journal, volume, start)

    truth, tie_broken = {}, 0
    for i, source in enumerate(raw["source"]):
        if source == "unique":
            truth[ids[i]] = ids[i]
            continue
        best = ratio[i].max()
        near = [k for k in range(len(uniques)) if ratio[i, k] >= best - 1]
        if len(near) > 1:
            tie_broken += 1
            mine = fields(i)

            def agreement(k: int, i: int = i, mine: tuple = mine) -> tuple:
                theirs = fields(uniques[k])
                same = sum(bool(a) and a == b for a, b in zip(mine, theirs, strict=True))
                return (-same, -ratio[i, k], abs(uniques[k] - i))

            near.sort(key=agreement)
        truth[ids[i]] = ids[uniques[near[0]]]
    return truth, tie_broken


# ---------------------------------------------------------------- synthetic data

_WORDS = """adaptive agent analysis anomaly architecture assessment attack authentication
autonomous bandwidth bayesian benchmark blockchain cache classification cloud clustering
cognitive collaborative compiler compression concurrency consensus container control
convolutional cryptographic cyber data decentralized deep delay demand dependable
deployment detection diagnosis digital distributed dynamic edge efficient elastic embedded
emergency encryption energy ensemble estimation evaluation evolutionary experimental
federated firewall forecasting framework fuzzy gateway genetic graph health heterogeneous
hierarchical hybrid hypervisor identity incremental inference infrastructure integrity
intrusion isolation kernel latency learning lightweight live load malware management
measurement memory migration mobile model monitoring multimedia network neural online
optimization orchestration packet parallel performance planning platform policy prediction
privacy probabilistic protocol provenance quality quantum queue reinforcement reliability
replication resilient resource retrieval robust routing runtime scalable scheduling secure
semantic sensor serverless service simulation smart software spectrum storage stream
supply survey sustainable synthesis system testing throughput topology traffic transfer
trust uncertainty verification video virtual virtualization visual vulnerability wireless
workflow workload""".split()
_PHRASES = [
    "a systematic review", "a survey", "an empirical study", "a case study",
    "design and implementation", "lessons learned", "a comparative evaluation",
    "challenges and opportunities", "an experimental analysis", "theory and practice",
]  # fmt: skip
_SURNAMES = """smith johnson williams brown jones garcia miller davis rodriguez martinez
hernandez lopez gonzalez wilson anderson thomas taylor moore jackson martin lee perez
thompson white harris sanchez clark ramirez lewis robinson walker young allen king wright
scott torres nguyen hill flores green adams nelson baker hall rivera campbell mitchell
carter roberts wang li zhang liu chen yang huang zhao wu zhou xu sun ma zhu hu guo he lin
luo gao kumar singh sharma patel gupta das mueller schmidt schneider fischer weber meyer
wagner becker schulz hoffmann rossi russo ferrari esposito bianchi romano colombo ricci
dubois durand leroy moreau laurent simon michel lefebvre suzuki takahashi tanaka watanabe
ito yamamoto nakamura kobayashi kim park choi jung kang cho yoon jang silva santos oliveira
souza costa pereira ferreira almeida nowak kowalski wisniewski ivanov petrov sidorov
andersson johansson karlsson nilsson eriksson larsen hansen jensen nielsen virtanen
korhonen murphy kelly byrne ryan oconnor walsh""".split()
_GIVEN = """james mary john patricia robert jennifer michael linda david elizabeth william
barbara richard susan joseph jessica thomas sarah wei fang jun ling hao yan raj priya amit
anna maria hans petra luca giulia pierre claire kenji yuki minjun seoyeon joao ana piotr
olga ivan erik ingrid lars mette mikko aino sean aoife""".split()
_JOURNALS = [
    "Journal of {}", "IEEE Transactions on {}", "ACM Transactions on {}",
    "International Journal of {}", "{} Letters", "Computer {} Review",
]  # fmt: skip
_CONFERENCES = [
    "Proceedings of the International Conference on {}", "IEEE Symposium on {}",
    "Workshop on {}", "Proceedings of the ACM Conference on {}",
]  # fmt: skip
_FIELDS = [
    "Network Security", "Cloud Computing", "Distributed Systems", "Software Engineering",
    "Machine Learning", "Information Systems", "Computer Networks", "Parallel Computing",
    "Dependable Computing", "Data Engineering", "Virtualization", "Mobile Computing",
]  # fmt: skip


def _title(rng: random.Random) -> str:
    words = rng.sample(_WORDS, rng.randint(4, 9))
    main = " ".join(words).capitalize()
    if rng.random() < 0.4:
        return f"{main}: {rng.choice(_PHRASES)}"
    return main


def _typo(rng: random.Random, text: str) -> str:
    if len(text) < 10:
        return text
    k = rng.randrange(1, len(text) - 1)
    kind = rng.random()
    if kind < 0.33:
        return text[:k] + text[k + 1 :]  # deletion
    if kind < 0.66:
        return text[:k] + text[k + 1] + text[k] + text[k + 2 :]  # transposition
    return text[:k] + rng.choice(string.ascii_lowercase) + text[k + 1 :]  # substitution


def _abbreviate(venue: str) -> str:
    """'Journal of Cloud Computing' -> 'J Cloud Comput' style ISO-ish abbreviation."""
    short = {"Journal": "J", "International": "Int", "Transactions": "Trans", "Proceedings": "Proc",
             "Conference": "Conf", "Computing": "Comput", "Computer": "Comput", "Systems": "Syst",
             "Engineering": "Eng", "Networks": "Netw", "Security": "Secur",
             "Letters": "Lett"}  # fmt: skip
    words = [short.get(w, w) for w in venue.split() if w not in ("of", "on", "the", "ACM")]
    return " ".join(words)


def _format_authors(rng: random.Random, people: list[tuple[str, str]], style: int) -> str:
    if style == 0:  # "Last, First"
        names = [f"{last.title()}, {first.title()}" for first, last in people]
    elif style == 1:  # "Last, F."
        names = [f"{last.title()}, {first[0].upper()}." for first, last in people]
    else:  # "F. Last" (IEEE style); S1's reader would canonicalise it, we keep it raw
        names = [f"{last.title()}, {first[0].upper()}" for first, last in people]
    return "; ".join(names)


def make_synthetic(n_records: int, seed: int = 7) -> tuple[pd.DataFrame, dict[str, str]]:
    """Canonical records with known truth: ~70 % unique works, the rest database copies.

    Copies differ the way database exports do: DOI dropped or in upper case/URL form,
    title case changed, one typo, subtitle truncated, author-name formats, authors cut
    to three, pages/venue missing, venue abbreviated, online-first year-1 versions.
    Distinct works include traps: same title as conference vs journal version
    (different year, authors, pages) and "Part I"/"Part II" siblings.
    """
    rng = random.Random(seed)
    rows: list[dict] = []
    truth: dict[str, str] = {}
    work_no = 0

    def new_work(base: dict | None = None) -> dict:
        nonlocal work_no
        work_no += 1
        people = [(rng.choice(_GIVEN), rng.choice(_SURNAMES)) for _ in range(rng.randint(1, 6))]
        journal = rng.random() < 0.6
        field = rng.choice(_FIELDS)
        venue = rng.choice(_JOURNALS if journal else _CONFERENCES).format(field)
        start = rng.randint(1, 2000)
        work = {
            "work": f"W{work_no}",
            "title": _title(rng),
            "people": people,
            "year": rng.randint(1995, 2024),
            "journal": journal,
            "venue": venue,
            "volume": str(rng.randint(1, 60)) if journal else "",
            "issue": str(rng.randint(1, 12)) if journal else "",
            "pages": f"{start}-{start + rng.randint(5, 25)}",
            "doi": f"10.{rng.randint(1000, 9999)}/{rng.choice(['j', 'tnet', 'conf'])}."
            f"{rng.randint(10**6, 10**7)}",
            "abstract": " ".join(rng.choices(_WORDS, k=rng.randint(30, 80))).capitalize() + ".",
        }
        if base is not None:
            work.update(base)
        return work

    def emit(work: dict, copy: bool) -> None:
        title, people, year = work["title"], list(work["people"]), work["year"]
        doi, venue, pages = work["doi"], work["venue"], work["pages"]
        volume, issue, style = work["volume"], work["issue"], rng.randint(0, 2)
        if copy:
            if rng.random() < 0.35:
                doi = ""
            elif rng.random() < 0.3:
                doi = rng.choice(["https://doi.org/", "doi:", ""]) + doi.upper()
            if rng.random() < 0.25:
                title = title.upper()
            elif rng.random() < 0.15:
                title = title.lower()
            if rng.random() < 0.15:
                title = _typo(rng, title)
            if rng.random() < 0.08 and ": " in title:
                title = title.split(": ")[0]  # subtitle dropped by one database
            if rng.random() < 0.1 and len(people) > 3:
                people = people[:3]
            if rng.random() < 0.2:
                pages = ""
            if rng.random() < 0.3:
                venue = _abbreviate(venue)
            elif rng.random() < 0.1:
                venue = ""
            if work["journal"] and rng.random() < 0.04:  # online-first version
                year, volume, issue = year - 1, "", ""
                pages = f"1-{rng.randint(10, 30)}"
                doi = work["doi"] if rng.random() < 0.5 else ""
            if rng.random() < 0.02:
                year = None
        rid = f"R{len(rows) + 1:06d}"
        rows.append(
            {
                "record_id": rid,
                "source_file": f"synthetic_db{rng.randint(1, 9)}.ris",
                "source_index": len(rows) + 1,
                "database": f"db{rng.randint(1, 9)}",
                "format": "ris",
                "entry_type": "article" if work["journal"] else "inproceedings",
                "title": title,
                "authors": _format_authors(rng, people, style),
                "year": year,
                "doi": doi.lower().removeprefix("https://doi.org/").removeprefix("doi:"),
                "venue": venue,
                "volume": volume,
                "issue": issue,
                "pages": pages,
                "abstract": work["abstract"] if rng.random() < 0.8 else "",
            }
        )
        truth[rid] = work["work"]

    while len(rows) < n_records:
        work = new_work()
        emit(work, copy=False)
        r = rng.random()
        if r < 0.25:  # database copies
            for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 5])):
                emit(work, copy=True)
        elif r < 0.28:  # trap: conference version + later extended journal version
            ext = new_work(
                {
                    "title": work["title"],
                    "people": work["people"][::-1] + [(rng.choice(_GIVEN), rng.choice(_SURNAMES))],
                }
            )
            ext.update(year=work["year"] + rng.randint(1, 3), journal=not work["journal"])
            ext["venue"] = rng.choice(_JOURNALS if ext["journal"] else _CONFERENCES).format(
                rng.choice(_FIELDS)
            )
            emit(ext, copy=False)
        elif r < 0.30:  # trap: "Part I" / "Part II" siblings by the same authors
            work_title = work["title"].split(": ")[0]
            sib = new_work({"people": work["people"], "year": work["year"],
                            "venue": work["venue"], "journal": work["journal"]})  # fmt: skip
            rows[-1]["title"] = f"{work_title}, Part I"
            sib["title"] = f"{work_title}, Part II"
            emit(sib, copy=False)
    records = pd.DataFrame(rows[:n_records])
    for column in ("keywords", "publisher", "issn", "isbn", "url", "language"):
        records[column] = ""
    records["year"] = records["year"].astype("Int64")
    truth = {rid: truth[rid] for rid in records["record_id"]}
    return records, truth


# ---------------------------------------------------------------- corrupted real records

# ISO 4 / NLM-style word abbreviations (the LTWA's most common words).
_LTWA = {
    "journal": "J", "international": "Int", "american": "Am", "british": "Br",
    "european": "Eur", "medicine": "Med", "medical": "Med", "research": "Res",
    "science": "Sci", "sciences": "Sci", "management": "Manag", "information": "Inf",
    "systems": "Syst", "technology": "Technol", "economics": "Econ", "economic": "Econ",
    "review": "Rev", "social": "Soc", "society": "Soc", "studies": "Stud",
    "quarterly": "Q", "proceedings": "Proc", "conference": "Conf", "computer": "Comput",
    "computing": "Comput", "human": "Hum", "behavior": "Behav", "behaviour": "Behav",
    "organization": "Organ", "organizational": "Organ", "psychology": "Psychol",
    "business": "Bus", "labour": "Labour", "industrial": "Ind", "relations": "Relat",
    "annals": "Ann", "clinical": "Clin", "national": "Natl", "academy": "Acad",
}  # fmt: skip
_VENUE_DROP = {"of", "the", "and", "&", "for", "in", "on"}


def iso4(venue: str) -> str:
    """'Journal of Management Information Systems' -> 'J Manag Inf Syst' (NLM style)."""
    words = [w.strip(".,:") for w in venue.split()]
    out = []
    for word in words:
        if not word or word.lower() in _VENUE_DROP:
            continue
        short = _LTWA.get(word.lower())
        if short is None and len(word) > 7:
            short = word[:5].rstrip("aeiou")  # LTWA-like truncation after a consonant
        out.append(short or word)
    return " ".join(out)


def _author_format(authors: str, rng: random.Random) -> str:
    names = [n for n in authors.split("; ") if n]
    style = rng.randrange(4)
    out = []
    for name in names:
        last, _, first = name.partition(", ")
        initials = "".join(p[0] for p in first.replace("-", " ").split() if p[:1].isalpha())
        if style == 0:  # MEDLINE: "Last FM"
            out.append(f"{last} {initials}".strip())
        elif style == 1:  # IEEE/ACM: "F. M. Last"
            out.append(" ".join([*(f"{c}." for c in initials), last]))
        elif style == 2:  # upper case surname (Embase)
            out.append(f"{last.upper()}, {first}".strip(", "))
        else:
            out.append(name)
    if style == 3 and len(out) > 3:
        out = out[:3]  # list cut by the database
    return "; ".join(out)


def _short_range(pages: str, rng: random.Random) -> str:
    """'221-228' -> '221-8' or '221-28' (MEDLINE-style abbreviated ranges)."""
    first, _, last = pages.partition("-")
    if not (first.isdigit() and last.isdigit() and len(first) == len(last) > 1):
        return pages
    k = 0
    while k < len(first) - 1 and first[k] == last[k]:
        k += 1
    keep = last[k:] if rng.random() < 0.5 else last[max(k - 1, 0) :]
    return f"{first}-{keep}"


def _corrupt(rec: dict, rng: random.Random) -> dict:
    """One database copy of a record, corrupted the ways exports differ (see
    corrupt_copies)."""
    rec = dict(rec)
    rec["database"], rec["source_file"] = "corrupted", "corrupted.ris"
    rec["issue"] = str(rng.randint(10**7, 10**9))  # accession number, never an issue
    if rng.random() < 0.8:
        rec["doi"] = ""
    if rec.get("venue") and rng.random() < 0.6:
        rec["venue"] = iso4(rec["venue"])
    rec["authors"] = _author_format(rec["authors"], rng)
    if rec.get("pages"):
        rec["pages"] = _short_range(rec["pages"], rng)
    r = rng.random()
    has_locator = bool(rec.get("volume")) and bool(rec.get("pages"))
    if r < 0.15:
        rec["title"] = f"[{rec['title']}]."  # MEDLINE: translated title
    elif r < 0.25:
        words = rec["title"].split()
        rec["title"] = f"{rec['title']} [{' '.join(reversed(words))}]"  # + original title
    elif r < 0.32 and has_locator:
        rec["title"] = ""  # empty title: only the locator can find it
    if rng.random() < 0.05 and not rec.get("volume") and pd.notna(rec.get("year")):
        rec["year"] = int(rec["year"]) - 1  # online-first
    return rec


def corrupt_copies(
    records: pd.DataFrame, truth: dict[str, str], n_copies: int, seed: int = 3
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Real records plus database copies of `n_copies` of them, corrupted the ways real
    biomedical/reference-manager exports differ: journal abbreviated (ISO 4/NLM), title in
    brackets (MEDLINE's translated titles) or with a bracketed original, title empty,
    page range abbreviated (221-8), author format changed or list cut, the database's
    accession number in the issue field, DOI dropped, online-first year - 1.
    Truth: a copy belongs to its original's cluster."""
    rng = random.Random(seed)
    records = records.reset_index(drop=True)
    size = Counter(truth.values())
    singles = [i for i, rid in enumerate(records["record_id"]) if size[truth[rid]] == 1]
    # Only records a person could recognise as the same work: title or locator present.
    usable = [
        i for i in singles
        if records.at[i, "title"] and records.at[i, "authors"] and pd.notna(records.at[i, "year"])
    ]  # fmt: skip
    picks = rng.sample(usable, min(n_copies, len(usable)))
    copies = []
    for n, i in enumerate(picks):
        rec = _corrupt(records.iloc[i].to_dict(), rng)
        rec["record_id"] = f"copy_{n:05d}"
        copies.append(rec)
    out = pd.concat([records, pd.DataFrame(copies)], ignore_index=True)
    out["year"] = pd.to_numeric(out["year"], errors="coerce").astype("Int64")
    new_truth = dict(truth)
    for n, i in enumerate(picks):
        new_truth[f"copy_{n:05d}"] = truth[records.at[i, "record_id"]]
    return out, new_truth


# ---------------------------------------------------------------- datasets


def labelled_sets() -> list[dict]:
    """Every labelled set in ../shared/testdata/dedup (absent ones skipped). Each: name,
    kind ("real": human labels, scored in the leave-one-dataset-out table; "silver":
    another tool's output, agreement only), canonical records (via S1's reader) as a list
    of frames deduplicated separately, truth (record -> cluster) or pair labels, and
    `native`: what bib-dedupe reads (its own files as they are, else converted)."""
    from migfw.slr.imports import read_exports

    sets = []
    for name in ("bibdedupe_digital_work", "bibdedupe_special_cases", "bibdedupe_small_testset"):
        folder = DEDUP_DATA / name
        if folder.is_dir():
            sets.append(bibdedupe_folder_set(folder, name))
    asysd = DEDUP_DATA / "asysd_labelled" / "labelled_test_set.csv"
    if asysd.exists():
        records = read_exports([asysd])
        raw = pd.read_csv(asysd, encoding="cp1252", dtype=str, keep_default_na=False)
        truth, tie_broken = asysd_truth(records, raw)
        print(f"asysd_labelled: {tie_broken} duplicates placed by the tie-break", file=sys.stderr)
        sets.append({"name": "asysd_labelled", "kind": "real", "records": [records],
                     "truth": truth})  # fmt: skip
    cases_file = DEDUP_DATA / "bibdedupe_pair_cases" / "test_cases.json"
    if cases_file.exists():
        frames, labels, native = [], [], []
        with scratch("bench") as tmp:  # read, then removed
            for case in json.loads(cases_file.read_text())["cases"]:
                path = Path(tmp) / f"{case['id']}.csv"
                write_pair_case_csv(case, path)
                frame = read_exports([path])
                frames.append(frame)
                labels.append(
                    (frame["record_id"][0], frame["record_id"][1], case["expected_duplicate"])
                )
                pair = [case["record_a"], case["record_b"]]
                native.append(pd.DataFrame(pair).replace({None: "", "None": ""}).fillna(""))
        sets.append({"name": "bibdedupe_pair_cases", "kind": "real", "records": frames,
                     "pairs": labels, "native": native})  # fmt: skip
    silver = DEDUP_DATA / "citesource_benchmark_silver"
    if silver.is_dir():
        names = ["benchmark_15", "search1_166", "search2_278", "search3_302", "search4_460",
                 "search5_495"]  # fmt: skip
        records = read_exports([silver / f"{n}.ris" for n in names])
        export = pd.read_csv(silver / "citesource_benchmark_export.csv", dtype=str)
        # CiteSource numbered the records 1001.. in this file order.
        by_number = dict(zip(range(1001, 1001 + len(records)), records["record_id"], strict=True))
        truth = {}
        for cid, members in zip(export["duplicate_id"], export["record_ids"], strict=True):
            for number in members.split(","):
                truth[by_number[int(number)]] = cid
        sets.append({"name": "citesource_benchmark", "kind": "silver", "records": [records],
                     "truth": truth})  # fmt: skip
    return sets


def bibdedupe_folder_set(folder: Path, name: str | None = None, kind: str = "real") -> dict:
    """One set in bib-dedupe's format (`records_pre_merged.csv` + `merged_record_ids.csv`,
    as CoLRev publishes its benchmark sets), read through S1's reader; bib-dedupe reads
    its own file as it is."""
    from migfw.slr.imports import read_exports

    records = read_exports([folder / "records_pre_merged.csv"])
    truth = truth_from_merged_ids(list(records["record_id"]), folder / "merged_record_ids.csv")
    # bib-dedupe reads its own files as they are (its home ground).
    native = pd.read_csv(folder / "records_pre_merged.csv", dtype=str, keep_default_na=False)
    native = native[native["ID"] != ""]
    entry = {"name": name or folder.name, "kind": kind, "records": [records], "truth": truth,
             "native": [native]}  # fmt: skip
    if "search_set" in native.columns and (native["search_set"] != "").any():
        # CoLRev's convention, which the labels follow: a search set was deduplicated
        # before, its records are never merged with each other (deduplicate's apart_by).
        sets_of = dict(zip(native["ID"], native["search_set"], strict=True))
        records["search_set"] = records["record_id"].map(sets_of).fillna("")
        entry["apart_by"] = "search_set"
    return entry


def extra_sets(dirs: list[str]) -> list[dict]:
    """The user's own labelled sets (`--data DIR`): DIR is one set in bib-dedupe's format
    or a folder of such sets (each subfolder holding both files). Kind "extra": scored
    with the shipped default, never used to choose it (they stay unseen)."""
    sets = []
    for d in dirs:
        root = Path(d)
        if not root.is_dir():
            raise SystemExit(f"{root}: not a folder (a labelled set's folder, or a folder of them)")
        folders = [root] if (root / "records_pre_merged.csv").exists() else sorted(
            p for p in root.iterdir() if (p / "records_pre_merged.csv").exists()
        )  # fmt: skip
        if not folders:
            raise SystemExit(f"{root}: no records_pre_merged.csv here or in a subfolder")
        for folder in folders:
            if not (folder / "merged_record_ids.csv").exists():
                raise SystemExit(f"{folder}: merged_record_ids.csv missing (the labels)")
            sets.append(bibdedupe_folder_set(folder, kind="extra"))
    return sets


PAIR_CASE_COLUMNS = ["ID", "ENTRYTYPE", "author", "title", "year", "journal", "booktitle",
                     "volume", "number", "pages", "doi", "url", "isbn"]  # fmt: skip


def write_pair_case_csv(case: dict, path: Path) -> None:
    """One labelled pair as a two-row BibTeX-style CSV (read back through S1's reader)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, PAIR_CASE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for key in ("record_a", "record_b"):
            row = {k: ("" if v in (None, "None") else v) for k, v in case[key].items()}
            row.setdefault("number", row.get("issue", ""))
            writer.writerow(row)


# ---------------------------------------------------------------- leave one dataset out

FP_COST = 10  # a false merge loses a study: it costs as much as ten missed duplicate pairs


FAMILIES = ("splink", "evidence")


def configurations(family: str) -> list:
    """The candidates the evaluation chooses among. "splink": the Splink model at a grid
    of match-weight thresholds (review band 6 below each) and two cluster checks (true
    conflicts only, or conflicts and the hand-set evidence); "evidence": the hand-set
    weights alone (nothing to choose: shown for comparison)."""
    from migfw.slr.dedupe.scoring import Params

    if family == "evidence":
        return [Params("evidence")]
    return [
        Params("splink", m, m - 6.0, guard)
        for guard in ("evidence", "conflicts")
        for m in (0, 2, 4, 6, 8, 10, 12)
    ]


def counts_for(dataset: dict, preds: list[dict[str, str]]) -> dict:
    if "pairs" in dataset:
        return labelled_pair_counts(dataset["pairs"], preds)
    pred = dict(itertools.chain.from_iterable(p.items() for p in preds))
    return pair_counts(dataset["truth"], pred)


def cost(counts: dict) -> float:
    """Errors of one set, per true duplicate pair, so each set weighs the same."""
    return (counts["FN"] + FP_COST * counts["FP"]) / max(counts["TP"] + counts["FN"], 1)


def fallback_from(sets: list[dict]) -> dict:
    """The small-input model trained (without labels) on the records of `sets`."""
    from migfw.slr.dedupe import linkage

    frames = [f for d in sets for f in d["records"]]
    return linkage.train_records(pd.concat(frames, ignore_index=True))


def evaluate(dataset: dict, params, fallback: dict, cache: dict) -> dict:
    """In-process run of one configuration on one set; the input's own model is trained
    once per frame (large frames), the fallback used for small ones."""
    from migfw.slr.dedupe import deduplicate, linkage

    preds = []
    for k, frame in enumerate(dataset["records"]):
        key = (dataset["name"], k)
        if key not in cache:
            cache[key] = linkage.model_for(frame)  # None: too small, use the fallback
        model = cache[key] if cache[key] is not None else fallback
        result = deduplicate(frame, params=params, model=model, apart_by=dataset.get("apart_by"))
        preds.append(dict(zip(result.clusters.record_id, result.clusters.cluster_id, strict=True)))
    return counts_for(dataset, preds)


def leave_one_dataset_out(sets: list[dict], family: str) -> tuple[dict, dict, dict]:
    """For each real set: choose the configuration of `family` with the lowest summed cost
    on the other real sets (and a fallback model trained on their records), then score it
    on the held-out set. Returns {held-out name: (params, fallback)}, the choice on all
    real sets (the default) and {held-out name: counts} (in-process; main reruns the
    held-out runs timed, in child processes)."""
    real = [d for d in sets if d["kind"] == "real"]
    configs = configurations(family)
    cache: dict = {}
    memo: dict = {}

    def set_cost(d: dict, c, fb_key: str, fb: dict) -> float:
        big = all(len(f) >= _min_records() for f in d["records"])
        key = (d["name"], c, "own" if big else fb_key)
        if key not in memo:
            memo[key] = cost(evaluate(d, c, fb, cache))
        return memo[key]

    def choose(train: list[dict], fb_key: str, fb: dict):
        totals = [(sum(set_cost(d, c, fb_key, fb) for d in train), k) for k, c in
                  enumerate(configs)]  # fmt: skip
        return configs[min(totals)[1]], min(totals)[0]

    folds, held_out = {}, {}
    for held in real:
        train = [d for d in real if d is not held]
        fb = fallback_from(train)
        chosen, train_cost = choose(train, f"without {held['name']}", fb)
        held_out[held["name"]] = evaluate(held, chosen, fb, cache)
        c = held_out[held["name"]]
        print(f"{family} fold {held['name']}: chose {chosen} (training cost {train_cost:.4f}); "
              f"held out TP={c['TP']} FP={c['FP']} FN={c['FN']}", flush=True)  # fmt: skip
        folds[held["name"]] = (chosen, fb)
    fb_all = fallback_from(real)
    default, all_cost = choose(real, "all", fb_all)
    print(f"{family} on all real sets: {default} (cost {all_cost:.4f})", flush=True)
    return folds, {"params": default, "fallback": fb_all}, held_out


def family_table(held: dict[str, dict[str, dict]]) -> str:
    """Held-out counts of each family side by side (the numbers the library choice rests
    on): TP/FP/FN per real set."""
    lines = ["| data set | " + " | ".join(f"{f} TP/FP/FN (sensitivity)" for f in held) + " |",
             "|---|" + "---|" * len(held)]  # fmt: skip
    for name in next(iter(held.values())):
        cells = []
        for family in held:
            c = held[family][name]
            cells.append(f"{c['TP']}/{c['FP']}/{c['FN']} ({_f(c['sensitivity'])})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _min_records() -> int:
    from migfw.slr.dedupe.linkage import MIN_RECORDS_TO_TRAIN

    return MIN_RECORDS_TO_TRAIN


# ---------------------------------------------------------------- scale corpus


def make_corpus(n_records: int, seed: int = 5) -> tuple[pd.DataFrame, dict[str, str]]:
    """A corpus of `n_records` built from the real labelled sets' records: every true
    work once (digital_work, ASySD), new works recombined from them (first half of one
    real title + second half of another, another record's authors, venue, volume and
    pages, a new DOI or none), and corrupted database copies (`_corrupt`) of 30 % of
    the works. Truth: a copy belongs to its work."""
    rng = random.Random(seed)
    works: list[dict] = []
    for d in labelled_sets():
        if d["kind"] != "real" or "truth" not in d or len(d["records"][0]) < 1000:
            continue
        frame = d["records"][0]
        seen = set()
        for rec in frame.to_dict("records"):
            cluster = d["truth"][rec["record_id"]]
            if cluster not in seen and rec.get("title") and rec.get("authors"):
                seen.add(cluster)
                works.append(rec)
    real_works = list(works)
    if not real_works:  # one line, not an IndexError from rng.choice
        raise SystemExit(
            f"bench_dedupe.py: the scale corpus is built from the labelled sets of "
            f"{DEDUP_DATA} (digital_work, asysd_labelled): none found there"
        )
    n_works = int(n_records / 1.45)
    k = 0
    while len(works) < n_works:
        a, b, c, v = (rng.choice(real_works) for _ in range(4))
        ta, tb = str(a["title"]).split(), str(b["title"]).split()
        title = " ".join(ta[: max(len(ta) // 2, 2)] + tb[len(tb) // 2 :])
        rec = dict(v)
        rec.update(title=title, authors=c["authors"], abstract="",
                   doi=f"10.9999/corpus.{k}" if rng.random() < 0.7 else "",
                   year=int(rng.choice([a, b, c, v])["year"] or 2015))  # fmt: skip
        works.append(rec)
        k += 1
    records, truth = [], {}
    for w, rec in enumerate(works):
        rid = f"w{w:07d}"
        records.append({**rec, "record_id": rid})
        truth[rid] = rid
    c = 0
    while len(records) < n_records:
        w = rng.randrange(len(works))
        rid = f"c{c:07d}"
        records.append({**_corrupt(works[w], rng), "record_id": rid})
        truth[rid] = f"w{w:07d}"
        c += 1
    out = pd.DataFrame(records)
    out["year"] = pd.to_numeric(out["year"], errors="coerce").astype("Int64")
    return out, truth


# ---------------------------------------------------------------- main


def run_tool(tool: str, python: str, dataset: dict, workdir: Path, config: dict | None = None):
    jobs = []
    frames = dataset["records"]
    if tool == "bib-dedupe":
        frames = dataset.get("native") or [to_bibdedupe(f) for f in frames]
    for k, frame in enumerate(frames):
        src, dst = workdir / f"{tool}_in_{k}.pkl", workdir / f"{tool}_out_{k}.csv"
        if tool == "bib-dedupe":
            src = src.with_suffix(".csv")
            frame.to_csv(src, index=False)
        else:
            frame.to_pickle(src)
        jobs.append((str(src), str(dst)))
    runner = BIBDEDUPE_RUNNER if tool == "bib-dedupe" else MIGFW_RUNNER
    if config is not None:
        (workdir / "config.json").write_text(json.dumps(config))
    info = run_measured(python, runner, jobs, workdir)
    preds = [read_clusters(Path(dst)) for _, dst in jobs]
    return info, preds


def report(name: str, tool: str, counts: dict, info: dict) -> str:
    return (
        f"{name:28s} {tool:10s} TP={counts['TP']:<7d} FP={counts['FP']:<5d} "
        f"FN={counts['FN']:<6d} sens={counts['sensitivity']:.4f} "
        f"FPrate={counts['fp_rate'] * 100:.4f}% dedupe_s={info['seconds']:.2f} "
        f"wall_s={info['wall']:.2f} peak={info['peak_mib']:.0f}MiB"
    )


DOC = REPO / "docs" / "slr_dedupe.md"
BEGIN, END = "<!-- bench_dedupe:begin -->", "<!-- bench_dedupe:end -->"
MODEL_OUT = REPO / "src" / "migfw" / "data" / "dedupe_model.json"


def _f(value: float, digits: int = 4) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"


def markdown_table(rows: list[dict], scale: list[dict], command: str, default) -> str:
    """The held-out table written into docs/slr_dedupe.md (targets checked per set)."""
    lines = [
        f"Generated by `{command}` on {date.today().isoformat()} ({os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at the end; timings are provisional when "
        "the machine is shared, so speed is the ratio to bib-dedupe in the same run). "
        "migfw rows are **held out**: the method and thresholds were chosen on the other "
        "real sets (and the small-input model trained on their records), never on the set "
        f"scored. Pairwise counts; FP rate = FP / (FP + TN); `x faster` = bib-dedupe's "
        f"dedupe seconds / migfw's. Chosen on all real sets (the default): `{default}`.",
        "",
        "| data set | tool | chosen on the others | TP | FP | FN | sensitivity | FP rate "
        "| pairs to a person | dedupe s | x faster | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_set: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_set.setdefault(row["set"], {})[row["tool"]] = row
    for name, tools in by_set.items():
        bib = tools.get("bib-dedupe")
        for k, (tool, row) in enumerate(tools.items()):
            c = row["counts"]
            speed = targets = ""
            if tool == "migfw" and bib:
                ratio = bib["seconds"] / max(row["seconds"], 1e-9)
                speed = f"{ratio:.1f}x"
                b = bib["counts"]
                miss = [
                    what
                    for what, ok in (
                        ("sensitivity", not c["sensitivity"] < b["sensitivity"]),
                        ("false pairs", c["FP"] <= b["FP"]),
                    )
                    if not ok
                ]
                if name == "bibdedupe_digital_work" and ratio < 5:
                    miss.append("speed")
                targets = "met" if not miss else "MISSED: " + ", ".join(miss)
                if row.get("kind") == "silver":
                    targets = "(silver labels: agreement only)"
            lines.append(
                f"| {name if k == 0 else ''} | {tool} | {row.get('config', '')} | {c['TP']} | "
                f"{c['FP']} | {c['FN']} | {_f(c['sensitivity'])} | "
                f"{_f(c['fp_rate'] * 100, 4)} % | {row.get('review', '')} | {row['seconds']:.2f} "
                f"| {speed} | {targets} |"
            )
    if scale:
        lines += [
            "",
            "| scale corpus (records) | dedupe s | peak MiB | CLI peak MiB | imports + "
            "records MiB | + features MiB | peak above that | MiB per 1,000 records "
            "| sensitivity | FP | pairs to a person | time target (100,000 in <= 120 s) "
            "| load |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in scale:
            c = row["counts"]
            target = ""
            if row["n"] == 100_000:
                target = "met" if row["seconds"] <= 120 else "MISSED"
            lines.append(
                f"| {row['n']:,} | {row['seconds']:.1f} | {row['peak_mib']:.0f} | "
                f"{row.get('cli_peak_mib', float('nan')):.0f} | {row['records_mib']:.0f} | "
                f"{row['features_mib']:.0f} | "
                f"{row['peak_mib'] - row['features_mib']:.0f} | "
                f"{row['peak_mib'] / row['n'] * 1000:.1f} | {_f(c['sensitivity'])} | {c['FP']} "
                f"| {row.get('review', '')} | {target} | {row['load']} |"
            )
        small, large = scale[0], scale[-1]
        if large["n"] > small["n"]:
            # Flat memory would keep both ratios near 1 as the records grow.
            above = [r["peak_mib"] - r["features_mib"] for r in (small, large)]
            lines += [
                "",
                f"Memory from {small['n']:,} to {large['n']:,} records "
                f"({large['n'] / small['n']:.0f}x): peak {small['peak_mib']:.0f} -> "
                f"{large['peak_mib']:.0f} MiB ({large['peak_mib'] / small['peak_mib']:.2f}x); "
                f"above imports, records and features {above[0]:.0f} -> {above[1]:.0f} MiB "
                f"({above[1] / above[0]:.2f}x).",
            ]
            if "cli_peak_mib" in small and "cli_peak_mib" in large:
                lines[-1] += (
                    f" `migfw slr dedupe` on the same records as four CSV exports (reads "
                    f"them, writes all six files): peak {small['cli_peak_mib']:.0f} -> "
                    f"{large['cli_peak_mib']:.0f} MiB "
                    f"({large['cli_peak_mib'] - large['peak_mib']:+.0f} MiB beside "
                    f"deduplicate's own at {large['n']:,})."
                )
    return "\n".join(lines)


def write_doc_table(table: str, doc: Path = DOC) -> None:
    """Replace the text between the marker comments in docs/slr_dedupe.md."""
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc}: marker comments {BEGIN} / {END} not found")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    tmp = doc.with_suffix(".md.part")
    tmp.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
    tmp.replace(doc)


def _config_json(params, fallback: dict, workdir: Path) -> dict:
    path = workdir / "fallback.json"
    path.write_text(json.dumps(fallback))
    return {"method": params.method, "match": params.match, "review": params.review,
            "guard": params.guard, "fallback": str(path)}  # fmt: skip


# Canonical field -> the generic CSV export header the reader maps onto it.
_EXPORT_HEADER = {"record_id": "id", "entry_type": "entrytype", "title": "title",
                  "authors": "author", "year": "year", "doi": "doi", "venue": "journal",
                  "volume": "volume", "issue": "number", "pages": "pages",
                  "abstract": "abstract", "keywords": "keywords", "publisher": "publisher",
                  "issn": "issn", "isbn": "isbn", "url": "url",
                  "language": "language"}  # fmt: skip


def write_exports(records: pd.DataFrame, folder: Path, parts: int = 4) -> list[str]:
    """The records as `parts` generic CSV exports (consecutive rows each, so the copies
    sit in other files than their works, as in several databases' exports): the CLI
    command the scale rows run, with one --database per file."""
    frame = records.astype({"year": "string"}).fillna("")[list(_EXPORT_HEADER)]
    frame = frame.rename(columns=_EXPORT_HEADER)
    step = -(-len(frame) // parts)
    files, databases = [], []
    for k in range(parts):
        path = folder / f"export{k}.csv"
        frame.iloc[k * step : (k + 1) * step].to_csv(path, index=False)
        files.append(str(path))
        databases += ["--database", f"db{k}"]
    return ["slr", "dedupe", *files, *databases, "--out", str(folder / "cli_out")]


def scale_rows(sizes: str, params, fallback: dict, tmp: Path) -> list[dict]:
    """The scale corpora (comma list of sizes): time, peak MiB of the child that
    deduplicates and writes clusters, links and records, the peak of a child that
    only imports, reads the records (and computes the per-record features), and the
    peak of `migfw slr dedupe` run on the same records written as CSV exports."""
    scale = []
    for n in [int(x) for x in sizes.split(",") if x.strip()]:
        t0 = time.perf_counter()
        records, truth = make_corpus(n)
        print(f"corpus: {len(records)} records, {len(set(truth.values()))} works "
              f"(built in {time.perf_counter() - t0:.1f} s)", flush=True)  # fmt: skip
        workdir = tmp / f"scale_{n}"
        workdir.mkdir()
        config = _config_json(params, fallback, workdir)
        config["write_all"] = True
        data = {"name": f"corpus_{n}", "records": [records], "truth": truth}
        load = os.getloadavg()[0]
        info, preds = run_tool("migfw", sys.executable, data, workdir, config)
        info["load"] = f"{load:.1f}-{os.getloadavg()[0]:.1f}"
        base = run_measured(sys.executable, BASELINE_RUNNER, [(str(workdir / "migfw_in_0.pkl"),
                            "")], workdir)  # fmt: skip
        info["records_mib"], info["features_mib"] = (base[k] / 1024 for k in
                                                     ("records_kib", "features_kib"))  # fmt: skip
        # The same corpus through `migfw slr dedupe` (shipped defaults), in its own child.
        cli = run_measured(sys.executable, CLI_RUNNER, write_exports(records, workdir), workdir)
        if cli["code"] != 0:  # a MigfwError is one line and exit status 2, not a traceback
            err = (workdir / "child_stderr.txt").read_text()[-2000:]
            raise RuntimeError(f"migfw slr dedupe exited {cli['code']}:\n{err}")
        info["cli_peak_mib"], info["cli_seconds"] = cli["peak_mib"], cli["seconds"]
        counts = counts_for(data, preds)
        print(report(data["name"], "migfw", counts, info) + f" imports+records="
              f"{info['records_mib']:.0f}MiB +features={info['features_mib']:.0f}MiB "
              f"cli={info['cli_peak_mib']:.0f}MiB ({info['cli_seconds']:.1f}s) "
              f"load {info['load']}", flush=True)  # fmt: skip
        scale.append({"n": n, "counts": counts, **info})
    return scale


def link_agreement(duck: pd.DataFrame, spark: pd.DataFrame) -> dict:
    """How the two backends' link rows differ: pairs scored by one only, decisions that
    differ, and the largest difference of a score both gave."""
    both = duck.merge(spark, on=["record_a", "record_b"], how="outer", suffixes=("_d", "_s"),
                      indicator=True)  # fmt: skip
    common = both[both["_merge"] == "both"]
    diff = (common["score_d"] - common["score_s"]).abs()
    return {
        "pairs": len(common),
        "one_only": int((both["_merge"] != "both").sum()),
        "decisions_differ": int((common["decision_d"] != common["decision_s"]).sum()),
        "scores_differ": int((diff > 1e-9).sum()),
        "max_score_diff": float(diff.max()) if len(diff) else 0.0,
    }


def spark_rows(sets: list[dict], tmp: Path) -> list[dict]:
    """Each set on DuckDB and on a local Spark session in one child process (SPARK_RUNNER):
    TP/FP/FN of each, seconds, peaks (Python and the JVM) and how far the two agree."""
    rows = []
    for dataset in sets:
        workdir = tmp / f"spark_{len(os.listdir(tmp))}"
        workdir.mkdir()
        jobs = []
        for k, frame in enumerate(dataset["records"]):
            src, dst = workdir / f"in_{k}.pkl", workdir / f"out_{k}"
            frame.to_pickle(src)
            jobs.append((str(src), str(dst)))
        (workdir / "config.json").write_text(json.dumps({"apart_by": dataset.get("apart_by")}))
        load = os.getloadavg()[0]
        info = run_measured(sys.executable, SPARK_RUNNER, jobs, workdir)
        info["load"] = f"{load:.1f}-{os.getloadavg()[0]:.1f}"
        row = {"set": dataset["name"], **info}
        preds: dict[str, list] = {"duckdb": [], "spark": [], "spark_model": []}
        links: dict[str, list] = {"duckdb": [], "spark": [], "spark_model": []}
        for _, dst in jobs:
            for backend in preds:
                preds[backend].append(read_clusters(Path(f"{dst}.{backend}.csv")))
                links[backend].append(pd.read_csv(f"{dst}.{backend}.links.csv", dtype={
                    "record_a": str, "record_b": str, "decision": str}))  # fmt: skip
        for backend in preds:
            row[backend + "_counts"] = counts_for(dataset, preds[backend])
        parts = [f"{row['set']:24s} session start {info['start_s']:.1f}s"]
        for backend in preds:
            c = row[backend + "_counts"]
            part = f"{backend} TP/FP/FN={c['TP']}/{c['FP']}/{c['FN']} {info[backend]:.1f}s"
            if backend == "duckdb":
                part += f" (+ {info['train_duckdb']:.1f}s training spark_model's model, apart)"
            if backend != "duckdb":
                # Agreement with DuckDB, frame by frame (record ids may repeat across the
                # frames of one set: the pair cases): pairs clustered by one and not the
                # other, and the link rows.
                differ, a = 0, {}
                for k in range(len(jobs)):
                    same = pair_counts(preds["duckdb"][k], preds[backend][k])
                    differ += same["FP"] + same["FN"]
                    for key, value in link_agreement(links["duckdb"][k],
                                                     links[backend][k]).items():  # fmt: skip
                        a[key] = max(a.get(key, 0), value) if key.startswith("max") else (
                            a.get(key, 0) + value)  # fmt: skip
                row[backend + "_agreement"] = {"cluster_pairs_differ": differ, **a}
                part += (f" (vs duckdb: cluster pairs differing {differ}; "
                         f"links in both {a['pairs']}, in one only {a['one_only']}, decisions "
                         f"differ {a['decisions_differ']}, scores differ {a['scores_differ']}, "
                         f"max {a['max_score_diff']:.2g})")  # fmt: skip
            parts.append(part)
        parts.append(f"peak python {info['python_peak_kib'] / 1024:.0f} MiB, JVM "
                     f"{info['jvm_peak_kib'] / 1024:.0f} MiB; load {info['load']}")  # fmt: skip
        rows.append(row)
        print(" | ".join(parts), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scale", default="25000,50000,100000",
        help="corpus sizes for the speed/memory benchmark (comma list; '' = skip)",
    )  # fmt: skip
    parser.add_argument("--no-bibdedupe", action="store_true", help="run migfw only")
    parser.add_argument("--only", default="", help="run only sets whose name contains this")
    parser.add_argument(
        "--no-docs",
        action="store_true",
        help="don't rewrite the table in docs/slr_dedupe.md (partial runs never do)",
    )
    parser.add_argument(
        "--write-model", action="store_true",
        help=f"write the small-input model trained on all real sets to {MODEL_OUT}",
    )  # fmt: skip
    parser.add_argument(
        "--scale-only", action="store_true",
        help="only the scale corpora, with the shipped default (no labelled sets, no docs)",
    )  # fmt: skip
    parser.add_argument(
        "--data", action="append", default=[], metavar="DIR",
        help="also score your own labelled set(s) in bib-dedupe's format: DIR holds "
        "records_pre_merged.csv + merged_record_ids.csv, or subfolders that do (repeatable; "
        "scored with the shipped default, never used to choose it; docs not written)",
    )  # fmt: skip
    parser.add_argument(
        "--data-only", action="store_true",
        help="with --data: only those sets (no built-in sets, no leave-one-out, no docs)",
    )  # fmt: skip
    parser.add_argument(
        "--spark", action="store_true",
        help="score the real labelled sets (and --data sets) on Splink's Spark backend (a "
        "local session) beside DuckDB: TP/FP/FN, seconds, agreement; needs pyspark and "
        "Java (bash scripts/install.sh --spark); no bib-dedupe, no docs",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.data_only and not args.data:
        parser.error("--data-only needs --data DIR")
    rows: list[dict] = []
    if args.spark:
        from migfw.slr.dedupe.spark import missing

        reason = missing()
        if reason:  # one line, no traceback
            raise SystemExit(f"bench_dedupe.py --spark: {reason}")
        sets = [] if args.data_only else [d for d in labelled_sets() if d["kind"] == "real"]
        sets = [d for d in sets + extra_sets(args.data) if args.only in d["name"]]
        with scratch("bench") as tmp:
            spark_rows(sets, Path(tmp))
        return 0
    if args.scale_only:
        from migfw.slr.dedupe.linkage import fallback_model
        from migfw.slr.dedupe.scoring import DEFAULT

        with scratch("bench") as tmp:
            scale = scale_rows(args.scale, DEFAULT, fallback_model(), Path(tmp))
        table = markdown_table([], scale, "", DEFAULT)
        print(table[table.index("| scale corpus") :])
        return 0

    tools = {"migfw": sys.executable}
    if not args.no_bibdedupe:
        tools["bib-dedupe"] = str(ensure_bibdedupe_venv())
    from migfw.slr.dedupe.linkage import fallback_model
    from migfw.slr.dedupe.scoring import DEFAULT

    sets = [] if args.data_only else labelled_sets()
    folds, default = {}, {"params": DEFAULT, "fallback": fallback_model()}
    families = ""
    if sets:
        held: dict[str, dict] = {}
        for family in FAMILIES:
            fam_folds, fam_default, held[family] = leave_one_dataset_out(sets, family)
            if family == "splink":
                folds, default = fam_folds, fam_default
        families = family_table(held)
        print(families)
    # The user's sets are scored as a user would run migfw: the shipped default.
    extra = extra_sets(args.data)
    for d in extra:
        folds[d["name"]] = (DEFAULT, fallback_model())
    sets += extra
    if default["params"] != DEFAULT:
        print(f"note: the shipped default {DEFAULT} differs from the choice on all real sets "
              f"{default['params']}: update scoring.Params", file=sys.stderr)  # fmt: skip
    if args.write_model:
        MODEL_OUT.write_text(json.dumps(default["fallback"], indent=1) + "\n")
        print(f"wrote {MODEL_OUT}", file=sys.stderr)
    sets = [d for d in sets if args.only in d["name"]]
    with scratch("bench") as tmp:
        for dataset in sets:
            params, fallback = folds.get(dataset["name"], (default["params"], default["fallback"]))
            for tool, python in tools.items():
                workdir = Path(tmp) / f"{len(os.listdir(tmp))}"
                workdir.mkdir()
                config = _config_json(params, fallback, workdir) if tool == "migfw" else None
                if config is not None:
                    config["apart_by"] = dataset.get("apart_by")
                info, preds = run_tool(tool, python, dataset, workdir, config)
                counts = counts_for(dataset, preds)
                print(report(dataset["name"], tool, counts, info), flush=True)
                rows.append({"set": dataset["name"], "tool": tool, "counts": counts,
                             "kind": dataset["kind"],
                             "config": f"{params.method} {params.match:g}/{params.review:g}"
                             if tool == "migfw" and params.method == "splink"
                             else (params.method if tool == "migfw" else ""), **info})  # fmt: skip
                if tool == "migfw" and dataset["kind"] == "extra":
                    rows[-1]["config"] += " (shipped default)"
                if tool == "migfw" and dataset.get("apart_by"):
                    rows[-1]["config"] += f", apart_by {dataset['apart_by']}"
        scale = [] if args.data_only else scale_rows(args.scale, default["params"],
                                                     default["fallback"], Path(tmp))  # fmt: skip
    command = "python scripts/bench_dedupe.py" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    table = markdown_table(rows, scale, command, default["params"])
    if families:
        table += "\n\nHeld out, per method family (in-process runs):\n\n" + families
    print(table)
    if not (args.no_docs or args.only or args.no_bibdedupe or args.data):
        write_doc_table(table)
        print(f"wrote the table into {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
