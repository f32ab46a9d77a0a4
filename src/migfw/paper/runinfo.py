"""The run's parameters for the report: config, software versions, host, accelerator, timings."""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from migfw.io import atomic_write, write_csv

PACKAGES = [
    "migfw",
    "snakemake",
    "numpy",
    "numba",
    "pandas",
    "scipy",
    "matplotlib",
    "seaborn",
    "rispy",
    "bibtexparser",
    "rapidfuzz",
    "libvirt-python",
    "fabric",
    "scapy",
]
TOOLS = {
    "qemu-system-x86_64": ["--version"],
    "libvirtd": ["--version"],
    "nft": ["--version"],
    "tcpdump": ["--version"],
    "tshark": ["--version"],
}


def _first_line(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not available"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "not available"


def software_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    for tool, args in TOOLS.items():
        versions[tool] = _first_line([tool, *args]) if shutil.which(tool) else "not installed"
    return versions


# scripts/install.sh installs requirements/<mode>.txt and records what it did here.
INSTALL_RECORD = "migfw-install.json"
LOCKS = ["requirements/test.txt", "requirements/full.txt", "requirements/analysis.txt"]
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def read_lock(path: str | Path) -> dict[str, str]:
    """{package: version} of a hash-pinned requirements file (scripts/lock.sh)."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        match = _PIN.match(line)
        if match:
            pins[match.group(1)] = match.group(2)
    return pins


def lock_mismatches(pins: dict[str, str]) -> list[str]:
    """Locked packages this Python does not have at exactly the locked version."""
    wrong = []
    for name, version in sorted(pins.items()):
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = "missing"
        if installed != version:
            wrong.append(f"{name} {installed} (locked {version})")
    return wrong


def locked_environment(repo: str | Path = ".", prefix: str | Path | None = None) -> dict[str, str]:
    """Which lock file the environment was installed from, its sha256, and whether every
    package in it is installed at the locked version now."""
    repo = Path(repo)
    record_path = Path(prefix or sys.prefix) / INSTALL_RECORD
    try:
        record = json.loads(record_path.read_text())
    except (OSError, json.JSONDecodeError):
        record = {}
    info = {}
    if record.get("resolved"):
        info["install"] = f"{record.get('mode')} mode, resolved afresh (install.sh --resolve)"
    elif record.get("lock"):
        info["install"] = f"{record.get('mode')} mode from {record['lock']}"
    else:
        info["install"] = f"no install record ({record_path})"
    candidates = [f"requirements/{record['mode']}.txt"] if record.get("mode") else LOCKS
    candidates = [c for c in candidates if (repo / c).exists()]
    if not candidates:
        info["lock file"] = "not found"
        return info
    # Without a record, the largest lock that matches, else the first one.
    results = [(c, lock_mismatches(read_lock(repo / c))) for c in candidates]
    lock, wrong = next((r for r in results if not r[1]), results[0])
    text = (repo / lock).read_bytes()
    info["lock file"] = lock
    info["lock sha256"] = hashlib.sha256(text).hexdigest()
    if record.get("lock_sha256") and record["lock_sha256"] != info["lock sha256"]:
        info["lock sha256"] += " (the file changed since the install)"
    count = len(read_lock(repo / lock))
    info["venv matches lock"] = (
        f"yes, all {count} packages"
        if not wrong
        else f"no, {len(wrong)} of {count} differ: " + "; ".join(wrong[:8])
    )
    return info


def host_identity() -> dict[str, str]:
    info = {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cores": str(os.cpu_count()),
    }
    try:
        pretty = [
            line.split("=", 1)[1].strip('"')
            for line in Path("/etc/os-release").read_text().splitlines()
            if line.startswith("PRETTY_NAME=")
        ]
        info["os"] = pretty[0] if pretty else "unknown"
    except OSError:
        info["os"] = "unknown"
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        info["cpu"] = next(
            (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
            "unknown",
        )
        mem = next(
            line
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        info["memory"] = f"{int(mem.split()[1]) / 1024**2:.1f} GiB"
    except (OSError, StopIteration):
        pass
    info["kvm_device"] = "present" if Path("/dev/kvm").exists() else "absent"
    commit = _first_line(["git", "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "status", "--porcelain", "--untracked-files=no"])
    info["git_commit"] = commit + (
        " (with uncommitted changes)" if dirty not in ("", "not available") else ""
    )
    return info


def benchmarks_table(bench_dir: str | Path) -> pd.DataFrame:
    """Per-job run time and memory from every Snakemake `benchmark:` file."""
    rows = []
    root = Path(bench_dir)
    for path in sorted(root.rglob("*.tsv")):
        try:
            frame = pd.read_csv(path, sep="\t")
        except (pd.errors.ParserError, pd.errors.EmptyDataError):
            continue
        if frame.empty:
            continue
        rel = path.relative_to(root)
        rule = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        rows.append(
            {
                "rule": rule,
                "job": rel.stem,
                "seconds": float(frame["s"].iloc[0]),
                "max_rss_mb": float(frame["max_rss"].iloc[0]) if "max_rss" in frame else None,
                "cpu_seconds": float(frame["cpu_time"].iloc[0]) if "cpu_time" in frame else None,
            }
        )
    return pd.DataFrame(rows, columns=["rule", "job", "seconds", "max_rss_mb", "cpu_seconds"])


# The trials.csv columns run_info shows: reading only these keeps a 10,000-trial table (~190
# columns, ~50 MiB as a whole frame) out of the Snakemake process's peak memory.
TRIAL_COLUMNS_SHOWN = {"accelerator", "qemu", "trial_id", "experiment", "wall_s", "overhead_s"}


def _read_trials(trials_csv: str | Path) -> pd.DataFrame:
    return pd.read_csv(trials_csv, usecols=lambda column: column in TRIAL_COLUMNS_SHOWN)


def emulator_versions(config: dict, trials_csv: str | Path | None) -> dict[str, str]:
    """The configured emulator's version, and the QEMU versions the trials recorded."""
    from migfw.config import default

    chosen = ((config.get("testbed") or {}).get("guest") or {}).get("emulator")
    chosen = chosen or default("testbed.guest.emulator")
    binary = {"system": "/usr/bin/qemu-system-x86_64"}.get(chosen, str(chosen))
    out = {f"emulator ({binary})": _first_line([binary, "--version"])}
    if trials_csv and Path(trials_csv).exists():
        trials = _read_trials(trials_csv)
        if "qemu" in trials:
            counts = trials["qemu"].fillna("not recorded").value_counts()
            out["QEMU used by the trials"] = "; ".join(f"{k}: {v}" for k, v in counts.items())
    return out


def overhead_table(trials_csv: str | Path | None) -> pd.DataFrame:
    """Per-trial overhead (trials.csv `overhead_s`: wall minus lead-in, migration, settle)."""
    columns = ["trial_id", "experiment", "wall_s", "overhead_s"]
    if not trials_csv or not Path(trials_csv).exists():
        return pd.DataFrame(columns=columns)
    trials = _read_trials(trials_csv)
    if "overhead_s" not in trials:
        return pd.DataFrame(columns=columns)
    return trials.loc[trials["overhead_s"].notna(), columns].reset_index(drop=True)


def overhead_lines(overhead: pd.DataFrame) -> list[str]:
    """run_info's overhead section: the median per experiment, then every trial."""
    lines = ["", "## Per-trial overhead (wall minus lead-in, migration and settle)", "",
             "| experiment | trials | median s | max s |", "|---|---|---|---|"]  # fmt: skip
    for name, group in overhead.groupby("experiment", sort=False):
        lines.append(f"| {name} | {len(group)} | {group['overhead_s'].median():.2f} | "
                     f"{group['overhead_s'].max():.2f} |")  # fmt: skip
    lines += ["", "| trial | wall s | overhead s |", "|---|---|---|"]
    lines += [f"| {r.trial_id} | {r.wall_s:.2f} | {r.overhead_s:.2f} |"
              for r in overhead.itertuples()]  # fmt: skip
    return lines


def write_run_info(
    config_path: str | Path,
    trials_csv: str | Path | None,
    bench_dir: str | Path,
    out_md: str | Path,
    out_bench: str | Path,
) -> None:
    """Rule run_info: the run's parameters, versions, locked environment and per-rule times
    (from the benchmark files in `bench_dir`) -> run_info.md and benchmarks.csv."""
    config = yaml.safe_load(Path(config_path).read_text())
    accelerators = "no trials table"
    if trials_csv and Path(trials_csv).exists():
        trials = _read_trials(trials_csv)
        counts = trials["accelerator"].fillna("unknown").value_counts()
        accelerators = ", ".join(f"{k}: {v} trials" for k, v in counts.items()) or "none"
    bench = benchmarks_table(bench_dir)
    overhead = overhead_table(trials_csv)
    if not overhead.empty:  # one row per trial: rule trial_overhead, seconds = its overhead
        rows = overhead.rename(columns={"trial_id": "job", "overhead_s": "seconds"})
        rows = rows.assign(rule="trial_overhead", max_rss_mb=None, cpu_seconds=None)
        bench = pd.concat([bench, rows[list(bench.columns)]], ignore_index=True)
    write_csv(out_bench, bench)
    lines = ["# Run parameters", "", f"Accelerator used by the trials: {accelerators}.", ""]
    lines += ["## Host", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in host_identity().items()]
    lines += ["", "## Software", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in software_versions().items()]
    lines += [f"| {k} | {v} |" for k, v in emulator_versions(config, trials_csv).items()]
    lines += ["", "## Locked environment (scripts/install.sh, requirements/)", "", "| | |"]
    lines += ["|---|---|"] + [f"| {k} | {v} |" for k, v in locked_environment().items()]
    if not bench.empty:
        per_rule = bench.groupby("rule")["seconds"].agg(["count", "sum", "max"]).round(2)
        lines += [
            "",
            "## Run time per rule (from benchmark files)",
            "",
            "| rule | jobs | total s | longest s |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r} | {int(v['count'])} | {v['sum']} | {v['max']} |" for r, v in per_rule.iterrows()
        ]
    if not overhead.empty:
        lines += overhead_lines(overhead)
    lines += [
        "",
        "## Configuration in force",
        "",
        "```yaml",
        yaml.safe_dump(config, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    with atomic_write(out_md) as handle:
        handle.write("\n".join(lines))
    print(f"run parameters -> {out_md}, {out_bench}")


def _cli(args: argparse.Namespace) -> int:
    write_run_info(args.config, args.trials, args.benchmarks, args.out, args.out_benchmarks)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run-info", help="the run's parameters, versions and timings")
    p.add_argument("--config", required=True, help="the configuration in force (YAML)")
    p.add_argument("--trials", help="trials.csv (for the accelerator used)")
    p.add_argument("--benchmarks", default="results/benchmarks")
    p.add_argument("--out", required=True)
    p.add_argument("--out-benchmarks", required=True)
    p.set_defaults(func=_cli)
