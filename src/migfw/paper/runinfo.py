"""The run's parameters for the report: config, software versions, host, accelerator, timings."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import shutil
import socket
import subprocess
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


def write_run_info(
    config_path: str | Path,
    trials_csv: str | Path | None,
    bench_dir: str | Path,
    out_md: str | Path,
    out_bench: str | Path,
) -> None:
    config = yaml.safe_load(Path(config_path).read_text())
    accelerators = "no trials table"
    if trials_csv and Path(trials_csv).exists():
        trials = pd.read_csv(trials_csv)
        counts = trials["accelerator"].fillna("unknown").value_counts()
        accelerators = ", ".join(f"{k}: {v} trials" for k, v in counts.items()) or "none"
    bench = benchmarks_table(bench_dir)
    write_csv(out_bench, bench)
    lines = ["# Run parameters", "", f"Accelerator used by the trials: {accelerators}.", ""]
    lines += ["## Host", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in host_identity().items()]
    lines += ["", "## Software", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in software_versions().items()]
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


def _cli(args: argparse.Namespace) -> int:
    write_run_info(args.config, args.trials, args.benchmarks, args.out, args.out_benchmarks)
    print(f"run parameters -> {args.out}, {args.out_benchmarks}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("run-info", help="the run's parameters, versions and timings")
    p.add_argument("--config", required=True, help="the configuration in force (YAML)")
    p.add_argument("--trials", help="trials.csv (for the accelerator used)")
    p.add_argument("--benchmarks", default="results/benchmarks")
    p.add_argument("--out", required=True)
    p.add_argument("--out-benchmarks", required=True)
    p.set_defaults(func=_cli)
