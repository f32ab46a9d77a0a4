"""The trial-folder contract between whatever runs trials and the analysis.

A trial is one folder `<trials_dir>/<experiment>/<slug>-r<NN>/` holding `probe.pcap` and
`trial.json` (schema: migfw/data/trial.schema.json); its id is `<experiment>/<slug>-r<NN>`,
e.g. `thesis/i0.5-r03` or `placement/vmm-agent-d200-r03`. The slug carries the factor levels
that vary within the experiment; ids and the expansion of experiments into trial specs live in
migfw.trials.design (the design sheet). The testbed, crafted trials and a lab's own tooling
write such folders; the analysis reads them. Validation and discovery live here. A flat
legacy folder `<trials_dir>/<trial>/` is read as experiment `default`.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migfw.errors import MigfwError
from migfw.testbed.placements import known as known_placement
from migfw.testbed.placements import names as placement_names
from migfw.trials.design import (  # noqa: F401 - the contract's names, defined with the ids
    DEFAULT_EXPERIMENT,
    DEFAULT_FACTORS,
    EXPERIMENT_NAME,
    KNOWN_FACTORS,
    TRIAL_WILDCARD,
    experiment_specs,
)

if TYPE_CHECKING:  # numpy is imported where a log is read: the Snakefile imports this module
    import numpy as np


def experiment_problems(experiments: Any) -> list[str]:
    """One line per problem the JSON schema cannot express (names, levels, ids)."""
    problems: list[str] = []
    if not isinstance(experiments, dict):
        return problems
    for name, spec in experiments.items():
        key = f"experiments.{name}"
        if not EXPERIMENT_NAME.match(str(name)):
            problems.append(f"{key}: name must match {EXPERIMENT_NAME.pattern}")
            continue
        factors = (spec or {}).get("factors") if isinstance(spec, dict) else None
        if not isinstance(factors, dict):
            continue
        unknown = sorted(set(factors) - set(KNOWN_FACTORS))
        if unknown:
            problems.append(
                f"{key}.factors: unknown factor {', '.join(unknown)} "
                f"(allowed: {', '.join(KNOWN_FACTORS)})"
            )
            continue
        levels = factors.get("placement") or []
        unknown = [str(p) for p in (levels if isinstance(levels, list) else [levels])
                   if not known_placement(p)]  # fmt: skip
        if unknown:
            problems.append(f"{key}.factors.placement: {', '.join(map(repr, unknown))} not "
                            f"registered (placements: {', '.join(placement_names())})")  # fmt: skip
            continue
        try:
            ids = [s.trial_id for s in experiment_specs(name, spec)]
        except (MigfwError, TypeError, ValueError, KeyError) as exc:
            problems.append(f"{key}: {exc}")
            continue
        if len(set(ids)) != len(ids):
            problems.append(f"{key}: factor levels give duplicate trial ids")
    return problems


def trial_schema() -> dict:
    """trial.schema.json, its `factors.placement` limited to the registered placements."""
    return _trial_schema(tuple(placement_names()))


@cache
def _trial_schema(placements: tuple[str, ...]) -> dict:
    schema = json.loads(resources.files("migfw.data").joinpath("trial.schema.json").read_text())
    schema["properties"]["factors"]["properties"]["placement"]["enum"] = list(placements)
    return schema


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
    """Trial folders (those with a trial.json) under `trials_dir`, sorted by id.

    Nested `<experiment>/<trial>/trial.json` folders, and flat legacy `<trial>/trial.json`
    ones (experiment `default`); names starting with a dot (`.aborted`) and `*.partial`
    folders are never trials.
    """
    root = Path(trials_dir)
    if not root.is_dir():
        raise MigfwError(f"{root}: trials directory not found")
    found = [*root.glob("*/trial.json"), *root.glob("*/*/trial.json")]
    folders = [
        p.parent
        for p in found
        if not any(
            part.startswith(".") or part.endswith(".partial")
            for part in p.parent.relative_to(root).parts
        )
    ]
    return sorted(folders, key=lambda p: trial_id_of(p, root))


def trial_id_of(folder: str | Path, trials_dir: str | Path) -> str:
    """The id of a trial folder: `<experiment>/<trial>`; a flat legacy one is `default/<trial>`."""
    rel = Path(folder).relative_to(Path(trials_dir)).as_posix()
    return rel if "/" in rel else f"{DEFAULT_EXPERIMENT}/{rel}"


def trial_dir(trials_dir: str | Path, trial_id: str) -> Path:
    """The folder of a trial id (a `default/<trial>` id may be a flat legacy folder)."""
    root = Path(trials_dir)
    nested = root / trial_id
    experiment, _, name = trial_id.partition("/")
    if experiment == DEFAULT_EXPERIMENT and not nested.exists() and (root / name).is_dir():
        return root / name
    return nested


def aborted_root(out: Path, trial_id: str) -> Path:
    """`<trials_dir>/.aborted`: the trials dir is `out` minus the id's depth."""
    depth = trial_id.count("/") + 1
    return out.parents[depth - 1] / ".aborted"


def move_aside(partial: Path, out: Path, trial_id: str, reason: str) -> Path:
    """Move a half-written trial to .aborted/<trial id>-<UTC time>/ with reason.txt."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = aborted_root(out, trial_id) / f"{trial_id}-{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = target.with_name(f"{trial_id.rsplit('/', 1)[-1]}-{stamp}-{n}")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(partial), str(target))
    (target / "reason.txt").write_text(reason.rstrip() + "\n")
    return target


# --------------------------------------------------------------------------- service.csv
# The `service` workload's requests (migfw.testbed.service): one row per request, a new TCP
# connection to one of the guest's allowed services. Times are epoch ns (CLOCK_REALTIME, the
# capture's clock); t_done_ns is when the outcome was known (empty only if it never was).
SERVICE_HEADER = ["service", "seq", "port", "t_send_ns", "t_done_ns", "outcome", "detail"]
# ok: the service's answer arrived; refused: RST to the SYN; timeout: no outcome within the
# timeout; reset: RST after connecting; closed: EOF before the answer; unreachable: ICMP
# unreachable; error: anything else (detail says what).
SERVICE_OUTCOMES = ("ok", "refused", "timeout", "reset", "closed", "unreachable", "error")


def read_service(path: str | Path) -> dict[str, np.ndarray]:
    """service.csv, validated, as arrays sorted by send time: service, outcome (str), seq,
    port, send, done (int64 epoch ns; done -1 where empty). One-line errors naming the file
    and line: wrong header or field count, non-integers, an unknown outcome, an `ok` without
    a completion time, a completion before its send, a (service, port, seq) logged twice."""
    import numpy as np

    path = Path(path)
    rows: list[tuple[int, int, int, int]] = []
    names: list[tuple[str, str]] = []
    seen: set[tuple[str, int, int]] = set()
    try:
        with open(path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or [h.strip() for h in header] != SERVICE_HEADER:
                raise MigfwError(
                    f"{path}: header must be {','.join(SERVICE_HEADER)}, found {header}"
                )
            for line, rec in enumerate(reader, start=2):
                if not rec:
                    continue
                if len(rec) != len(SERVICE_HEADER):
                    raise MigfwError(f"{path}: line {line}: expected {len(SERVICE_HEADER)} "
                                     f"fields, got {len(rec)}")  # fmt: skip
                service, seq, port, send, done, outcome, _detail = (v.strip() for v in rec)
                try:
                    item = (int(seq), int(port), int(send), int(done) if done else -1)
                except ValueError:
                    raise MigfwError(f"{path}: line {line}: seq, port, t_send_ns and "
                                     "t_done_ns must be integers") from None  # fmt: skip
                if outcome not in SERVICE_OUTCOMES:
                    raise MigfwError(f"{path}: line {line}: outcome {outcome!r} is not one of "
                                     f"{', '.join(SERVICE_OUTCOMES)}")  # fmt: skip
                if outcome == "ok" and item[3] < 0:
                    raise MigfwError(f"{path}: line {line}: outcome ok without t_done_ns")
                if 0 <= item[3] < item[2]:
                    raise MigfwError(f"{path}: line {line}: t_done_ns before t_send_ns")
                if not service or (service, item[1], item[0]) in seen:
                    raise MigfwError(f"{path}: line {line}: request {service!r} port {item[1]} "
                                     f"seq {item[0]} is empty or logged twice")  # fmt: skip
                seen.add((service, item[1], item[0]))
                rows.append(item)
                names.append((service, outcome))
    except OSError as exc:
        raise MigfwError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise MigfwError(f"{path}: not a text CSV file") from None
    arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
    text = np.array(names, dtype=object).reshape(-1, 2)
    order = np.argsort(arr[:, 2], kind="stable")
    arr, text = arr[order], text[order]
    return {"service": text[:, 0].astype(str), "outcome": text[:, 1].astype(str),
            "seq": arr[:, 0], "port": arr[:, 1], "send": arr[:, 2],
            "done": arr[:, 3]}  # fmt: skip
