"""Small I/O helpers shared by every stage: atomic writes so a crash never leaves a half file."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from migfw.scratch import owner_tag, sweep_partials


def current_umask() -> int:
    """The process's umask now (it may change: `migfw testbed trial` sets 077), read from
    /proc without setting it (os.umask would race with other threads' file creation)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Write to a temporary file beside `path` and rename it into place only on success.
    The temporary file is named after its writer, so the next write of `path` removes one
    that a killed writer left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_partials(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{owner_tag()}-", suffix=".part",
                               dir=path.parent)  # fmt: skip
    os.close(fd)
    try:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; results are ordinary
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output_path(path: str | os.PathLike, kind: str, option: str = "--out") -> Path:
    """Refuse, in one line, an output path of the wrong kind before any work is done:
    `kind` "file" (must not be a folder) or "folder" (must not be a file); a parent that
    is a file is refused as well."""
    from migfw.errors import MigfwError

    path = Path(path)
    if kind == "file" and path.is_dir():
        raise MigfwError(f"{option} {path}: is a folder; give a file name")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise MigfwError(f"{option} {path}: is a file; give a folder (created if missing)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise MigfwError(f"{option} {path}: {parent} is a file, not a folder")
            break
    return path


def read_yaml(path: str | os.PathLike, what: str = "file") -> Any:
    """Parse a YAML file; a missing, unreadable or malformed file is one MigfwError line
    naming the file, `what` it is, and (for a syntax error) the line."""
    import yaml

    from migfw.errors import MigfwError

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MigfwError(f"{path}: {what} not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise MigfwError(f"{path}:{where} cannot read {what} ({problem})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MigfwError(f"{path}: cannot read {what} ({exc})") from None


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_write(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=False, default=str)
        handle.write("\n")


def write_csv(path: str | os.PathLike, frame: Any, **kwargs: Any) -> None:
    """Write a pandas DataFrame atomically (index off unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_write(path, newline="") as handle:
        frame.to_csv(handle, **kwargs)


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (captures can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def csv_records(handle: IO, path: Path, want: list[str]) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a CSV whose header must be `want`; blank lines skipped. A
    wrong header is one MigfwError naming the file."""
    import csv

    from migfw.errors import MigfwError

    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None or [h.strip() for h in header] != want:
        raise MigfwError(f"{path}: header must be {','.join(want)}, found {header}")
    for line, rec in enumerate(reader, start=2):
        if rec:
            yield line, rec
