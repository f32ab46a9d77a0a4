"""How the analysis scales: the first analysis of 24 cached 1 kHz trials, analysis-only reruns of
24 to 10,000, the same on a one-node Slurm, and the first `migfw probes` after a fresh install.

    python scripts/bench_analysis.py [--sizes 24 1000 10000] [--work DIR] [--keep] [--slurm]

It crafts 1,000 distinct 1 kHz trial folders (migfw.trials.crafted: real pcaps, ~10-18 s of
probes each, ~3 MB); above 1,000, trial k is a folder of its own whose trial.json names it
and whose capture is a hard link to the capture of trial (k-1) mod 1,000 + 1 (10,000 distinct
crafted captures would be 31 GB of disk; the analysis still opens, reads and parses 10,000
files, through the page cache). Each set gets the first N (symlinks). The workflow runs in a
copy of this repository's tracked files (results/ here is untouched) with config/config.yaml
changed only in trials_source=directory, trials_dir=<set> and analysis.factors=[interval_s].
Per set it runs, with the load average before each figure:
  1. the first analysis from an empty results/ (every metric, 16 timelines, the paper and
     SLR rules), timed: for 24 trials the target is 15 s;
  2. the README's rerun, timed: snakemake --cores 1 --forcerun trial_metrics, with wall and
     CPU time and the peak resident memory of the largest process (ru_maxrss); targets
     24: 15 s, 1,000: 3 min, 10,000: 5 min with peak memory within 10 % of 1,000's;
  3. with --slurm and a running cluster (SLURM_CONF, MIGFW_SLURM_ACCOUNT/PARTITION set, e.g.
     by scripts/slurm-local.sh env), the same rerun through profiles/slurm, timed.
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
TARGETS_S = {24: 15.0, 1000: 180.0, 10000: 300.0}  # issues 13 and 20
FIRST_TARGET_S = {24: 15.0}  # the first analysis of 24 trials (issue 20)
MEMORY_VS_1000 = 1.10  # 10,000 trials: peak memory within 10 % of 1,000's
DISTINCT = 1000  # crafted captures; trials above this share them by hard link
FIRST_PROBES_TARGET_S = 3.0


def measured(cmd: list[str], cwd: Path, env: dict | None = None) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (user + system, all processes), peak RSS (MiB) of the largest
    process, and the output of `cmd`. CPU seconds say what the run costs when other work
    shares the machine; wall seconds are what a user waits on an idle one."""
    # The child's resident memory is also sampled (0.1 s) to say when its peak formed: the
    # job Snakemake was running then (jobs run in its process) is where memory grows.
    wrapper = (
        "import resource, subprocess, sys, threading, time\n"
        "t0 = time.perf_counter()\n"
        "child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE,"
        " stderr=subprocess.STDOUT, text=True)\n"
        "top = [0, 0.0]\n"
        "def sample():\n"
        "    while child.poll() is None:\n"
        "        try:\n"
        "            status = open(f'/proc/{child.pid}/status').read()\n"
        "            rss = int(status.split('VmRSS:')[1].split()[0])\n"
        "        except (OSError, IndexError, ValueError):\n"
        "            return\n"
        "        if rss > top[0]:\n"
        "            top[:] = [rss, time.time()]\n"
        "        time.sleep(0.1)\n"
        "threading.Thread(target=sample, daemon=True).start()\n"
        "output = child.communicate()[0]\n"
        "wall = time.perf_counter() - t0\n"
        "use = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "cpu = use.ru_utime + use.ru_stime\n"
        "sys.stdout.write(output)\n"
        "print(f'@@peak_at {top[1]}')\n"
        "print(f'@@ {wall} {cpu} {use.ru_maxrss / 1024} {child.returncode}')\n"
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


def peak_job(out: str) -> str:
    """The rule Snakemake was running when its process's sampled memory peaked (jobs run one
    at a time inside that process with --cores 1), from the log's `[date]` + `rule X:` lines."""
    import re

    at = next((float(line.split()[1]) for line in out.splitlines()
               if line.startswith("@@peak_at ")), 0.0)  # fmt: skip
    lines, running = out.splitlines(), "before the first job"
    for stamp, line in zip(lines, lines[1:], strict=False):
        found = re.fullmatch(r"\[(\w{3} \w{3} +\d+ [\d:]{8} \d{4})\]", stamp.strip())
        rule = re.fullmatch(r"(?:local)?rule (\w+):", line.strip())
        if found and rule:
            started = time.mktime(time.strptime(" ".join(found[1].split()), "%a %b %d %H:%M:%S %Y"))
            if started > at:
                break
            running = rule[1]
    return running


def craft_trials(root: Path, n: int) -> list[str]:
    from migfw.trials.crafted import craft_trial, crafted_spec
    from migfw.trials.design import trial_name

    factors = {"interval_s": 0.001}
    ids = [trial_name("bench", factors, r) for r in range(1, n + 1)]
    for k, trial in enumerate(ids, start=1):
        folder = root / trial
        if (folder / "trial.json").exists():
            continue
        if k <= DISTINCT:
            craft_trial(crafted_spec(trial, factors=factors), folder)
            continue
        twin = root / ids[(k - 1) % DISTINCT]
        part = folder.with_name(folder.name + ".partial")
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(parents=True)
        for name in ("probe.pcap", "truth.json"):
            os.link(twin / name, part / name)
        meta = json.loads((twin / "trial.json").read_text())
        meta.update(trial_id=trial, repetition=k)
        (part / "trial.json").write_text(json.dumps(meta, indent=1))
        part.rename(folder)
    return ids


def load() -> str:
    """The 1-minute load average, to print beside every timing."""
    return Path("/proc/loadavg").read_text().split()[0]


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
    parser.add_argument("--sizes", type=int, nargs="+", default=[24, 1000, 10000])
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--slurm", action="store_true", help="also rerun on the Slurm cluster")
    args = parser.parse_args()
    if args.slurm and not os.environ.get("SLURM_CONF"):
        sys.exit(
            'bench_analysis: --slurm needs a cluster: eval "$(bash scripts/slurm-local.sh env)"'
        )
    work = args.work or Path(tempfile.mkdtemp(prefix="migfw-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    rows = []
    try:
        t0 = time.perf_counter()
        ids = craft_trials(work / "trials", max(args.sizes))
        print(f"crafted {len(ids)} 1 kHz trials in {time.perf_counter() - t0:.0f} s", flush=True)
        for n in sorted(args.sizes):
            trial_set = work / f"set-{n}"
            trial_set.mkdir(exist_ok=True)
            for trial in ids[:n]:
                link = trial_set / trial  # <experiment>/<slug>: the slug is the link
                link.parent.mkdir(exist_ok=True)
                if not link.exists():
                    link.symlink_to(work / "trials" / trial, target_is_directory=True)
            # A fresh copy per set: its results/ starts empty, as in a fresh clone.
            repo = work / f"repo-{n}"
            shutil.rmtree(repo, ignore_errors=True)
            repo.mkdir()
            copy_repo(repo)
            config = yaml.safe_load((REPO / "config/config.yaml").read_text())
            config.update(trials_source="directory", trials_dir=str(trial_set))
            config["analysis"]["factors"] = ["interval_s"]  # the crafted trials' one factor
            cfg = work / f"config-{n}.yaml"
            cfg.write_text(yaml.safe_dump(config))
            base = [snakemake, "--cores", "1", "--configfile", str(cfg)]
            # The copy's own package, not the install's: edits here cannot mix into a run.
            env = {**os.environ, "PYTHONPATH": str(repo / "src")}
            # As scripts/install.sh does: the copy's numba kernels compiled before the first run.
            subprocess.run([sys.executable, "-m", "migfw.measure.warm"], env=env, check=True)
            load_first = load()
            first, first_cpu, first_peak, _ = measured(
                [*base, "--forcerun", "trial_metrics"], repo, env
            )
            load_rerun = load()
            rerun, cpu, peak, out = measured([*base, "--forcerun", "trial_metrics"], repo, env)
            jobs = out.count("Finished jobid")
            peak_in = peak_job(out)
            slurm = None
            if args.slurm:
                load_slurm = load()
                cluster = [snakemake, "--profile", "profiles/slurm", "--cores", "2",
                           "--configfile", str(cfg), "--forcerun", "trial_metrics"]  # fmt: skip
                slurm_wall, _, _, slurm_out = measured(cluster, repo, env)
                slurm = (slurm_wall, slurm_out.count("submitted with SLURM jobid"), load_slurm)
            rows.append(dict(n=n, first=first, first_cpu=first_cpu, first_load=load_first,
                             rerun=rerun, cpu=cpu, peak=peak, peak_in=peak_in, jobs=jobs,
                             load=load_rerun, slurm=slurm))  # fmt: skip
            print(
                f"{n:>6} trials: first analysis {first:6.1f} s (CPU {first_cpu:.1f} s, load "
                f"{load_first}); rerun {rerun:6.1f} s (CPU {cpu:.1f} s, load {load_rerun}), "
                f"{jobs} jobs, peak {peak:.0f} MiB (in {peak_in})"
                + (f"; Slurm rerun {slurm[0]:.1f} s, {slurm[1]} jobs (load {slurm[2]})"
                   if slurm else ""),
                flush=True,
            )  # fmt: skip
        pcap = work / "trials" / ids[0] / "probe.pcap"
        probes = first_probes(pcap, work)
    finally:
        if not args.keep and not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print("\nanalysis only (snakemake --cores 1 ... --forcerun trial_metrics), 1 kHz trials")
    print("| trials | first analysis s | target | rerun s | target | rerun CPU s | peak MiB |"
          " peak in | jobs | load | Slurm rerun s (jobs) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    verdicts = []
    peaks = {r["n"]: r["peak"] for r in rows}

    def mark(value: float, target: float | None) -> str:
        if target is None:
            return "-"
        verdicts.append(value <= target)
        return f"{target:g} {'ok' if value <= target else 'MISSED'}"

    for r in rows:
        first_t, rerun_t = FIRST_TARGET_S.get(r["n"]), TARGETS_S.get(r["n"])
        slurm = f"{r['slurm'][0]:.1f} ({r['slurm'][1]})" if r["slurm"] else "-"
        print(f"| {r['n']} | {r['first']:.1f} | {mark(r['first'], first_t)} | {r['rerun']:.1f} |"
              f" {mark(r['rerun'], rerun_t)} | {r['cpu']:.1f} | {r['peak']:.0f} | {r['peak_in']} |"
              f" {r['jobs']} |"
              f" {r['first_load']} / {r['load']} | {slurm} |")  # fmt: skip
    if 1000 in peaks and 10000 in peaks:
        ratio = peaks[10000] / peaks[1000]
        verdicts.append(ratio <= MEMORY_VS_1000)
        loads = {r["n"]: r["load"] for r in rows}
        print(f"\npeak memory 10,000 / 1,000 trials: {ratio:.3f} = {peaks[10000]:.0f} / "
              f"{peaks[1000]:.0f} MiB (target <= {MEMORY_VS_1000:g}: "
              f"{'ok' if ratio <= MEMORY_VS_1000 else 'MISSED'}; memory does not depend on the "
              f"load, times do: load {loads[1000]} / {loads[10000]})")  # fmt: skip
    print(f"\nfirst `migfw probes` after install ({ids[0]}, target {FIRST_PROBES_TARGET_S:g} s):")
    for label in ("warmed at install", "cold numba cache"):
        print(f"  {label}: {probes[label]:.2f} s (CPU {probes[label + ' (CPU)']:.2f} s)")
    verdicts.append(probes["warmed at install"] <= FIRST_PROBES_TARGET_S)
    print(json.dumps({"rows": rows, "first_probes": probes, "all_targets_met": all(verdicts)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
