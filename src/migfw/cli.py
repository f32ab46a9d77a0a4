"""The `migfw` command. Each stage registers its own sub-commands.

Every sub-command handler returns an exit code; a MigfwError becomes one line on stderr
and exit status 2, so no user ever sees a traceback for bad input. A reader that goes away
(`migfw probes x.pcap | head -1`) ends the command quietly with status 141, the status of a
Unix tool killed by SIGPIPE (128 + 13), so `set -o pipefail` still tells it apart from success.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from migfw.jobs import guarded, logged

# Which module provides each command and its one-line summary, so `migfw X` imports only
# what X needs and `migfw --help` imports none of them (numba, pandas, scipy, matplotlib and
# seaborn together take seconds to import; the pipeline used to run many commands).
COMMANDS: dict[str, tuple[str, str]] = {
    "probes": ("migfw.measure.probes", "loss, downtime and RTT of the echo probes in a capture"),
    "trial-metrics": ("migfw.measure.metrics", "metrics of trial folders (JSON, one per trial)"),
    "collect": ("migfw.measure.metrics", "per-trial metrics -> trials.csv"),
    "summarize": ("migfw.measure.metrics", "trials.csv -> summary.csv (per factor level)"),
    "paper": ("migfw.paper.table11", "the thesis's Table 11 recomputed from PS/PR, audited"),
    "fig-uptime": ("migfw.measure.figures", "uptime per trial with CIs (thesis Figure 7)"),
    "fig-estimators": ("migfw.measure.figures", "downtime per trial by estimator"),
    "fig-timeline": ("migfw.measure.figures", "probe timeline of one trial"),
    "fig-attack-window": ("migfw.measure.figures", "breach window by placement"),
    "attack-window": ("migfw.measure.attackstats", "trials.csv -> attack_window.csv"),
    "sweeps": ("migfw.measure.sweeps", "sweep table, power table and sweep figure"),
    "craft": ("migfw.trials.craftcli", "write crafted trial folders with known losses"),
    "compare": ("migfw.paper.compare", "paper vs reproduction table (markdown)"),
    "testbed": ("migfw.testbed.cli", "embedded or external migration testbed"),
    "slr": ("migfw.slr.cli", "systematic literature review branch"),
    "report-check": ("migfw.paper.report_check", "open the HTML report in headless Chromium"),
    "run-info": ("migfw.paper.runinfo", "the run's parameters, versions and timings"),
}  # fmt: skip
_COMMAND_MODULES = {name: module for name, (module, _) in COMMANDS.items()}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser of one known command (imports its module only); for help or an unknown
    command, a parser that lists every command from COMMANDS without importing anything."""
    parser = argparse.ArgumentParser(prog="migfw", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if command not in COMMANDS:
        for name, (_, summary) in COMMANDS.items():
            sub.add_parser(name, help=summary)
        return parser
    try:
        module = importlib.import_module(COMMANDS[command][0])
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("migfw"):
            raise
        # A stage whose extra packages (libvirt, fabric) are absent: say so in one line.
        parser.exit(
            2, f"migfw {command}: needs the Python package {exc.name} (bash scripts/install.sh)\n"
        )
    module.register(sub)
    return parser


EXIT_BROKEN_PIPE = 141


def _run(argv: list[str]) -> int:
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    return guarded(lambda: args.func(args), f"migfw {args.command}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        code = _run(argv)
        sys.stdout.flush()  # inside the try: buffered output meets a closed pipe here
        return code
    except SystemExit as exc:  # argparse's --help and usage errors print, then exit
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            return _closed_pipe()
        raise exc
    except BrokenPipeError:
        return _closed_pipe()


def _closed_pipe() -> int:
    # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail
    # (and print "Exception ignored ... BrokenPipeError") after we return.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def run_in_process(argv: list[str], log: str | Path) -> int:
    """Run `migfw ARGV` inside this process with its output written to `log`; the exit code
    (the workflow's rules call their stage functions directly, migfw.jobs.run_job)."""

    def call() -> int:
        try:
            return main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's usage errors
            return exc.code if isinstance(exc.code, int) else 2

    return logged(log, call)


if __name__ == "__main__":
    sys.exit(main())
