"""How the workflow's rules run one named stage function as a job.

A rule file names its stage modules once (`metrics = Stage("migfw.measure.metrics")`) and
each rule's `run:` block calls one function of one of them with the rule's files and params
(`job(log, metrics.write_trial_metrics, folders=..., out=...)`, workflow/rules/common.smk).
A Stage imports its module only when one of its functions runs, so parsing the workflow
(`snakemake -n`, every dry run in the tests) never imports pandas, matplotlib or scipy.

`run_job(log, function, **kwargs)` calls `function(**kwargs)` inside Snakemake's own process
(the profile's force-use-threads runs `run:` blocks in threads), its output written to the
job's log: start-up and imports are paid once per run, not once per job. A MigfwError
becomes the job's one-line error. `python -m migfw.jobs MODULE:FUNCTION JSON` runs one in a
process of its own: the testbed's jobs, which boot VMs, hold namespaces and must die with
their process group.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from migfw.errors import MigfwError


@dataclass(frozen=True)
class StageFunction:
    """A function of a stage module, by name; imported when it runs."""

    module: str
    name: str

    def resolve(self) -> Callable[..., int | None]:
        return getattr(importlib.import_module(self.module), self.name)


class Stage:
    """A stage module named in a rule file; `stage.f` is its function `f`, imported only when
    a job runs it (migfw.jobs.run_job, under the lock that keeps imports one at a time)."""

    def __init__(self, module: str) -> None:
        self.module = module

    def __getattr__(self, name: str) -> StageFunction:
        if name.startswith("_"):
            raise AttributeError(name)
        return StageFunction(self.module, name)


Function = Callable[..., int | None] | StageFunction


def _name(function: Function) -> str:
    return function.name if isinstance(function, StageFunction) else function.__name__


class _PerThreadStream:
    """Stands in for sys.stdout/sys.stderr: writes go to the stream the current thread set
    (its job's log), else to the original stream. Snakemake runs `run:` blocks in threads,
    so a process-wide redirect would mix the logs of jobs running side by side."""

    def __init__(self, original: TextIO) -> None:
        self.original = original
        self.local = threading.local()

    def _target(self) -> TextIO:
        return getattr(self.local, "stream", None) or self.original

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:
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
# the import deadlock that way), so in-process jobs run one at a time. They hold the GIL
# nearly all the time anyway, so little parallelism is lost.
_IN_PROCESS = threading.Lock()


def one_line_warning(
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


def logged(log: str | Path, call: Callable[[], int]) -> int:
    """`call()` with this thread's stdout and stderr written to `log` (one job at a time),
    then the heap it freed handed back; its exit code."""
    log = Path(log)
    log.parent.mkdir(parents=True, exist_ok=True)
    out, err = _per_thread("stdout"), _per_thread("stderr")
    with _IN_PROCESS, open(log, "w") as handle:
        out.local.stream = err.local.stream = handle
        try:
            return call()
        finally:
            out.local.stream = err.local.stream = None
            _return_freed_memory()


def call_function(function: Function, kwargs: dict[str, Any]) -> int:
    """`function(**kwargs)`'s exit code (None: 0); a MigfwError is one line on stderr, 2."""
    if isinstance(function, StageFunction):
        function = function.resolve()
    return guarded(lambda: function(**kwargs), function.__name__)


def guarded(call: Callable[[], int | None], name: str) -> int:
    """`call()`'s exit code (None: 0) with migfw's warnings as one line each; a MigfwError
    is one line `NAME: why` on stderr and 2, an interrupt 130 (jobs and the `migfw` CLI)."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line_warning
            return int(call() or 0)
    except MigfwError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130


def run_job(log: str | Path, function: Function, /, **kwargs: Any) -> str | None:
    """Run `function(**kwargs)` in this process, its output to `log`. None when it succeeded,
    else the line saying why (the log's last line): the rule raises it as its error."""
    if not logged(log, lambda: call_function(function, plain(kwargs))):
        return None
    lines = Path(log).read_text().strip().splitlines()
    return lines[-1] if lines else f"{_name(function)} failed; see {log}"


def plain(value: Any) -> Any:
    """Snakemake's file lists and named lists as plain lists and strings (also for JSON)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, str | Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def target(function: Function) -> str:
    """`MODULE:FUNCTION`, what `python -m migfw.jobs` imports and calls."""
    if isinstance(function, StageFunction):
        return f"{function.module}:{function.name}"
    return f"{function.__module__}:{function.__qualname__}"


def process_argv(function: Function, kwargs: dict[str, Any]) -> list[str]:
    """The command that runs `function(**kwargs)` in a process of its own."""
    return [sys.executable, "-m", "migfw.jobs", target(function), json.dumps(plain(kwargs))]


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


def main(argv: list[str]) -> int:
    """`python -m migfw.jobs MODULE:FUNCTION JSON_KWARGS`."""
    module, _, name = argv[0].partition(":")
    return call_function(StageFunction(module, name), json.loads(argv[1]) if len(argv) > 1 else {})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
