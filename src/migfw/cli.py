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
import threading
import warnings
from pathlib import Path
from typing import TextIO

from migfw.errors import MigfwError

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


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """migfw's own warnings (bad rows in an export, ...) as one `warning: ...` line on
    stderr, the log's format, instead of Python's file:line and source excerpt."""
    if category.__module__.startswith("migfw."):
        print(f"warning: {message}", file=sys.stderr if file is None else file)
    else:
        _show_warning(message, category, filename, lineno, file, line)


_show_warning = warnings.showwarning


EXIT_BROKEN_PIPE = 141


def _run(argv: list[str]) -> int:
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            return int(args.func(args) or 0)
    except MigfwError as exc:
        print(f"migfw {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"migfw {args.command}: interrupted", file=sys.stderr)
        return 130


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


class _PerThreadStream:
    """Stands in for sys.stdout/sys.stderr: writes go to the stream the current thread set
    (its step's log), else to the original stream. Snakemake runs `run:` blocks in threads,
    so a process-wide redirect would mix the logs of steps running side by side."""

    def __init__(self, original):
        self.original = original
        self.local = threading.local()

    def _target(self):
        return getattr(self.local, "stream", None) or self.original

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str):
        return getattr(self._target(), name)


_STREAMS_LOCK = threading.Lock()


def _per_thread(name: str) -> _PerThreadStream:
    with _STREAMS_LOCK:
        stream = getattr(sys, name)
        if not isinstance(stream, _PerThreadStream):
            stream = _PerThreadStream(stream)
            setattr(sys, name, stream)
        return stream


# Snakemake runs these jobs in threads (force-use-threads). Two threads importing overlapping
# stage modules in different orders can meet a partially initialised module (CPython breaks
# the import deadlock that way), so in-process commands run one at a time. They hold the GIL
# nearly all the time anyway, so little parallelism is lost.
_IN_PROCESS = threading.Lock()


def run_in_process(argv: list[str], log: str | Path) -> int:
    """Run `migfw ARGV` inside this process with its output written to `log`; the exit code.

    The workflow's rules call this instead of starting a `migfw` process per job: start-up
    and imports (seconds) are then paid once per Snakemake run, not once per trial.
    """
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    out, err = _per_thread("stdout"), _per_thread("stderr")
    with _IN_PROCESS, open(log, "w") as handle:
        out.local.stream = err.local.stream = handle
        try:
            return main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's usage errors
            return exc.code if isinstance(exc.code, int) else 2
        finally:
            out.local.stream = err.local.stream = None
            _return_freed_memory()


def _return_freed_memory() -> None:
    """Hand the heap a finished job freed back to the system (glibc's malloc_trim, ~10 ms).

    Jobs run one after another in Snakemake's process; without it each job's freed tables stay
    in the heap and the next job's allocations add to them, so the run's peak grew with every
    job that read a large trials.csv (10,000 trials: ~50 MiB each).
    """
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc: nothing to do
            _LIBC = False
    if _LIBC:
        _LIBC(0)


_LIBC = None


if __name__ == "__main__":
    sys.exit(main())
