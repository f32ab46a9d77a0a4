"""How the analysis scales: analysis-only reruns of 24, 240 and 1,000 cached 1 kHz trials, and
the first `migfw probes` after a fresh install.

    python scripts/bench_analysis.py [--sizes 24 240 1000] [--work DIR] [--keep]

For the largest size it crafts that many 1 kHz trial folders (migfw.trials.crafted: real
pcaps, ~10-18 s of probes each, ~3 MB), and gives each smaller set the first N of them
(symlinks). The workflow runs in a copy of this repository's tracked files (so results/ here
is untouched) with config/config.yaml changed only in trials_source=directory, trials_dir=<set>
and slr.enabled=false (the SLR branch is no part of a measurement rerun). Per set it runs
  1. the first analysis (untimed target; every per-trial metric and the timeline figures),
  2. the README's rerun, timed: snakemake --cores 1 --forcerun trial_metrics,
and prints wall time and the peak resident memory of the largest process (ru_maxrss).
The first `migfw probes` is timed in a new process after an empty numba cache was filled by
`python -m migfw.measure.warm`, exactly as scripts/install.sh does (and, for comparison,
with the cache left empty). Timings depend on what else loads the machine: run it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TARGETS_S = {24: 15.0, 1000: 180.0}  # issue 13
FIRST_PROBES_TARGET_S = 3.0


def measured(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (user + system, all processes), peak RSS (MiB) of the largest
    process, and the output of `cmd`. CPU seconds say what the run costs when other work
    shares the machine; wall seconds are what a user waits on an idle one."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t0 = time.perf_counter()\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,"
        " text=True)\n"
        "wall = time.perf_counter() - t0\n"
        "use = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "cpu = use.ru_utime + use.ru_stime\n"
        "sys.stdout.write(done.stdout)\n"
        "print(f'@@ {wall} {cpu} {use.ru_maxrss / 1024} {done.returncode}')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper, *cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    last = out.rstrip().splitlines()[-1].split()
    wall, cpu, peak, code = float(last[1]), float(last[2]), float(last[3]), int(last[4])
    if code:
        sys.exit(f"bench_analysis: {' '.join(cmd)} failed (exit {code}):\n{out[-3000:]}")
    return wall, cpu, peak, out


def craft_trials(root: Path, n: int) -> list[str]:
    from migfw.trials.contract import trial_name
    from migfw.trials.crafted import craft_trial, crafted_spec

    factors = {"interval_s": 0.001}
    ids = [trial_name("bench", factors, r) for r in range(1, n + 1)]
    for trial in ids:
        if not (root / trial / "trial.json").exists():
            craft_trial(crafted_spec(trial, factors=factors), root / trial)
    return ids


def copy_repo(dest: Path) -> None:
    """This repository's tracked files as they are in the work tree (no results/, no .venv)."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = REPO / name.decode()
        if src.is_file():
            (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name.decode())


def first_probes(pcap: Path, scratch: Path) -> dict[str, float]:
    """Seconds of the first `migfw probes` in a new process: after install's warm step
    (the shipped path) and with an empty numba cache (what a first run cost before)."""
    migfw = str(Path(sys.executable).with_name("migfw"))
    probes = [migfw, "probes", str(pcap), "--target", "10.231.0.10", "--interval", "0.001"]
    result = {}
    for label, warm in (("warmed at install", True), ("cold numba cache", False)):
        cache = Path(tempfile.mkdtemp(prefix=f"numba-{label.split()[0]}-", dir=scratch))
        env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
        if warm:
            subprocess.run([sys.executable, "-m", "migfw.measure.warm"], env=env, check=True)
        wall, cpu, _, _ = measured([*probes, "--json"], REPO, env)
        result[label] = wall
        result[f"{label} (CPU)"] = cpu
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[24, 240, 1000])
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="migfw-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    rows = []
    try:
        t0 = time.perf_counter()
        ids = craft_trials(work / "trials", max(args.sizes))
        print(f"crafted {len(ids)} 1 kHz trials in {time.perf_counter() - t0:.0f} s", flush=True)
        repo = work / "repo"
        if not repo.exists():
            repo.mkdir()
            copy_repo(repo)
        for n in sorted(args.sizes):
            trial_set = work / f"set-{n}"
            trial_set.mkdir(exist_ok=True)
            for trial in ids[:n]:
                link = trial_set / trial  # <experiment>/<slug>: the slug is the link
                link.parent.mkdir(exist_ok=True)
                if not link.exists():
                    link.symlink_to(work / "trials" / trial, target_is_directory=True)
            config = yaml.safe_load((REPO / "config/config.yaml").read_text())
            config.update(trials_source="directory", trials_dir=str(trial_set))
            config["slr"]["enabled"] = False
            config["analysis"]["factors"] = ["interval_s"]  # the crafted trials' one factor
            cfg = work / f"config-{n}.yaml"
            cfg.write_text(yaml.safe_dump(config))
            base = [snakemake, "--cores", "1", "--configfile", str(cfg)]
            # The copy's own package, not the install's: edits here cannot mix into a run.
            env = {**os.environ, "PYTHONPATH": str(repo / "src")}
            first, first_cpu, _, _ = measured(base, repo, env)
            rerun, cpu, peak, out = measured([*base, "--forcerun", "trial_metrics"], repo, env)
            jobs = out.count("Finished jobid")
            rows.append((n, rerun, cpu, peak, jobs, first, first_cpu))
            print(
                f"{n:>5} trials: first analysis {first:6.1f} s (CPU {first_cpu:.1f} s); "
                f"rerun {rerun:6.1f} s (CPU {cpu:.1f} s), {jobs} jobs, peak {peak:.0f} MiB",
                flush=True,
            )
        pcap = work / "trials" / ids[0] / "probe.pcap"
        probes = first_probes(pcap, work)
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print("\nanalysis-only rerun (snakemake --cores 1 --forcerun trial_metrics), 1 kHz trials")
    print("| trials | rerun s | target s | rerun CPU s | peak MiB | jobs | first analysis s |")
    print("|---|---|---|---|---|---|---|")
    verdicts = []
    for n, rerun, cpu, peak, jobs, first, _ in rows:
        target = TARGETS_S.get(n)
        mark = "" if target is None else (" ok" if rerun <= target else " MISSED")
        verdicts.append(target is None or rerun <= target)
        shown = f"{target:g}{mark}" if target else "-"
        print(f"| {n} | {rerun:.1f} | {shown} | {cpu:.1f} | {peak:.0f} | {jobs} | {first:.1f} |")
    print(f"\nfirst `migfw probes` after install ({ids[0]}, target {FIRST_PROBES_TARGET_S:g} s):")
    for label in ("warmed at install", "cold numba cache"):
        print(f"  {label}: {probes[label]:.2f} s (CPU {probes[label + ' (CPU)']:.2f} s)")
    verdicts.append(probes["warmed at install"] <= FIRST_PROBES_TARGET_S)
    print(json.dumps({"rows": rows, "first_probes": probes, "all_targets_met": all(verdicts)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
