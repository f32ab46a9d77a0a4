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
import warnings
from typing import TextIO

from migfw.errors import MigfwError

# Which module provides each command, so `migfw X` imports only what X needs (numba,
# scipy and matplotlib together take seconds to import; the pipeline runs many commands).
_COMMAND_MODULES = {
    "probes": "migfw.measure.probes",
    "trial-metrics": "migfw.measure.metrics",
    "collect": "migfw.measure.metrics",
    "summarize": "migfw.measure.metrics",
    "paper": "migfw.paper.table11",
    "fig-uptime": "migfw.measure.figures",
    "fig-estimators": "migfw.measure.figures",
    "fig-timeline": "migfw.measure.figures",
    "fig-attack-window": "migfw.measure.figures",
    "attack-window": "migfw.measure.attackstats",
    "craft": "migfw.trials.crafted",
    "compare": "migfw.paper.compare",
    "testbed": "migfw.testbed.cli",
    "slr": "migfw.slr.cli",
    "report-check": "migfw.paper.report_check",
    "run-info": "migfw.paper.runinfo",
}
# Every stage module (each provides `register(subparsers)`), for help and unknown commands.
# Imported lazily so that an analysis-only install (no libvirt, no fabric) still works.
_STAGES = list(dict.fromkeys(_COMMAND_MODULES.values()))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for one command (fast), or for all of them (help, unknown command)."""
    parser = argparse.ArgumentParser(prog="migfw", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    stages = [_COMMAND_MODULES[command]] if command in _COMMAND_MODULES else _STAGES
    for name in stages:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # A stage whose extra packages (libvirt, fabric) are absent is left out.
            if exc.name == name or not (exc.name or "").startswith("migfw"):
                continue
            raise
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


if __name__ == "__main__":
    sys.exit(main())
