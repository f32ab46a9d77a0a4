"""The manifest of a run's trials: which trial folders the analysis reads, each trial.json
by SHA-256. Written by the `trials_manifest` rule after the testbed, the placements and the
trials, so the report's workflow graph shows provisioning -> deployment -> trials ->
analysis even when every trial was finished by an earlier run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from migfw.io import atomic_write

COLUMNS = ("trial", "status", "trial_json_sha256")


def write_manifest(trials: list[str], trial_jsons: list[str | Path], out: str | Path) -> None:
    """Rule trials_manifest: one row per trial (in the planned order), its id, trial.json's
    status and SHA-256."""
    lines = ["\t".join(COLUMNS)]
    for trial, path in zip(trials, trial_jsons, strict=True):
        data = Path(path).read_bytes()
        status = json.loads(data).get("status", "")
        lines.append(f"{trial}\t{status}\t{hashlib.sha256(data).hexdigest()}")
    with atomic_write(out) as handle:
        handle.write("\n".join(lines) + "\n")
    print(f"{len(lines) - 1} trials -> {out}")
