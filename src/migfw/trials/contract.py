"""The trial-folder contract between whatever runs trials and the analysis.

A trial is one folder `<trials_dir>/<trial_id>/` holding `probe.pcap` and `trial.json`
(schema: migfw/data/trial.schema.json). The testbed, crafted trials and a lab's own tooling
write such folders; the analysis reads them. Names, validation and discovery live here only.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError


def trial_name(interval_s: float, repetition: int) -> str:
    """The trial id used everywhere: interval and repetition, e.g. i0.01-r03."""
    return f"i{interval_s:g}-r{repetition:02d}"


def parse_trial_name(trial_id: str) -> tuple[float, int]:
    """(interval_s, repetition) from an id made by `trial_name`."""
    interval, repetition = trial_id.split("-r")
    return float(interval[1:]), int(repetition)


@cache
def trial_schema() -> dict:
    text = resources.files("migfw.data").joinpath("trial.schema.json").read_text()
    return json.loads(text)


def validate_trial(meta: dict[str, Any], where: str = "trial.json") -> None:
    """Raise a one-line MigfwError naming `where` and the first offending key."""
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(trial_schema()).iter_errors(meta), key=str)
    if errors:
        err = errors[0]
        key = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise MigfwError(f"{where}: {key}: {err.message}")


def load_trial(trial_dir: str | Path) -> dict[str, Any]:
    """Read and validate `trial.json`; errors name the file and the offending key."""
    path = Path(trial_dir) / "trial.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise MigfwError(f"{path}: missing (every trial folder needs trial.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MigfwError(f"{path}: not valid JSON ({exc})") from None
    validate_trial(meta, str(path))
    return meta


def discover_trials(trials_dir: str | Path) -> list[Path]:
    """Trial folders (those with a trial.json) under `trials_dir`, sorted by name."""
    root = Path(trials_dir)
    if not root.is_dir():
        raise MigfwError(f"{root}: trials directory not found")
    return sorted(p.parent for p in root.glob("*/trial.json") if not p.parent.name.startswith("."))
