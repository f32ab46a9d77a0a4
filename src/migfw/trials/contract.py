"""The trial-folder contract between whatever runs trials and the analysis.

A trial is one folder `<trials_dir>/<experiment>/<slug>-r<NN>/` holding `probe.pcap` and
`trial.json` (schema: migfw/data/trial.schema.json); its id is `<experiment>/<slug>-r<NN>`,
e.g. `thesis/i0.5-r03` or `placement/vmm-agent-d200-r03`. The slug carries the factor levels
that vary within the experiment (see `trial_name`). The testbed, crafted trials and a lab's own
tooling write such folders; the analysis reads them. Experiments (named factor grids), ids,
validation and discovery live here only. A flat legacy folder `<trials_dir>/<trial>/` is
read as experiment `default`.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import shutil
import time
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migfw.errors import MigfwError
from migfw.testbed.placements import known as known_placement
from migfw.testbed.placements import names as placement_names
from migfw.testbed.placements import placement_factors

if TYPE_CHECKING:  # numpy is imported where a log is read: the Snakefile imports this module
    import numpy as np

# Every factor a trial may vary, with its slug code. A placement is written bare (vm,
# vmm-agent, ...); other factors as code + value (i0.01, d200). Issue 10's factors are here
# so their ids are fixed before they are implemented.
FACTOR_CODES: dict[str, str] = {
    "placement": "",
    "trigger": "tr",
    "agent_delay_ms": "d",
    "port_default": "pd",
    "nf_conntrack_tcp_loose": "ctl",
    "ovn_binding": "ob",  # placement ovn: multichassis | rebind (migfw.testbed.ovn_placement)
    "interval_s": "i",
    "workload": "w",
    "dirty_mib": "dm",
    "dirty_rate_mibps": "dr",
    "memory_mib": "m",
    "bandwidth_mibps": "bw",
    "max_downtime_ms": "md",
    "algorithm": "alg",
    "multifd_channels": "mf",
    "service_rate_hz": "sr",
}
KNOWN_FACTORS = tuple(FACTOR_CODES)
TEXT_FACTORS = ("placement", "workload", "algorithm", "trigger", "port_default", "ovn_binding")
DEFAULT_EXPERIMENT = "default"  # flat legacy folders
DEFAULT_FACTORS: dict[str, Any] = {"placement": "vm"}
# Snakemake's `trial` wildcard: exactly <experiment>/<slug>.
TRIAL_WILDCARD = r"[^/]+/[^/]+"
EXPERIMENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_VALUE = re.compile(r"^[a-z0-9.]+$")


def _level_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _slug_factors(factors: dict[str, Any], varying: set[str] | None) -> list[str]:
    """The factors written into a slug, in FACTOR_CODES order."""
    names = [f for f in KNOWN_FACTORS if f in factors and factors[f] is not None]
    if varying is None:
        return names
    chosen = [f for f in names if f in varying or f == "agent_delay_ms"]
    if not chosen and "interval_s" in names:
        chosen = ["interval_s"]  # an experiment without varying factors: still readable
    return chosen


def trial_name(
    experiment: str,
    factors: dict[str, Any],
    repetition: int,
    varying: set[str] | None = None,
) -> str:
    """The trial id `<experiment>/<slug>-r<NN>`.

    The slug holds the levels of the factors in `varying` (those with more than one level in
    the experiment; all given factors if None), plus `agent_delay_ms` whenever set (it only
    applies to the agent placements), e.g. `placement/vmm-agent-d200-r03`.
    """
    parts = []
    for name in _slug_factors(factors, varying):
        text = _level_text(factors[name])
        if not _VALUE.match(text) and not (name == "placement" and known_placement(text)):
            raise MigfwError(f"factor {name}: level {text!r} cannot be part of a trial id")
        parts.append(FACTOR_CODES[name] + text)
    return f"{experiment}/{'-'.join(parts + [f'r{int(repetition):02d}'])}"


def _parse_level(name: str, text: str) -> Any:
    if name in TEXT_FACTORS:
        return text
    number = float(text)
    return int(number) if name != "interval_s" and number.is_integer() else number


def parse_trial_id(trial_id: str) -> tuple[str, dict[str, Any], int]:
    """(experiment, factors written in the slug, repetition) from an id made by `trial_name`.

    A flat legacy id (`i0.01-r03`) is experiment `default`. Factors with one level in their
    experiment are not in the slug: `experiment_factors` gives the full set.
    """
    experiment, _, slug = trial_id.rpartition("/")
    experiment = experiment or DEFAULT_EXPERIMENT
    head, sep, rep = slug.rpartition("-r")
    if not sep or not rep.isdigit():
        if slug.startswith("r") and slug[1:].isdigit():
            head, rep = "", slug[1:]
        else:
            raise MigfwError(f"trial id {trial_id!r}: expected <experiment>/<slug>-r<NN>")
    factors: dict[str, Any] = {}
    rest = head
    while rest:
        placement = next(
            (p for p in sorted(placement_names(), key=len, reverse=True)
             if rest == p or rest.startswith(p + "-")),
            None,
        )  # fmt: skip
        if placement and "placement" not in factors:
            factors["placement"] = placement
            rest = rest[len(placement) + 1 :]
            continue
        token, _, rest = rest.partition("-")
        for name, code in sorted(FACTOR_CODES.items(), key=lambda kv: -len(kv[1])):
            if code and token.startswith(code) and name not in factors:
                try:
                    factors[name] = _parse_level(name, token[len(code) :])
                except ValueError:
                    continue
                break
        else:
            raise MigfwError(f"trial id {trial_id!r}: cannot read factor level {token!r}")
    return experiment, factors, int(rep)


_REPETITION = re.compile(r"^(?:(?P<head>.+)-)?r\d+$")


def cell_of(trial_id: str) -> str:
    """The cell of a trial: its experiment and factor levels without the repetition
    (`placement/vmm-agent-d200-r03` -> `placement/vmm-agent-d200`; `thesis/r02` ->
    `thesis/all`). A slug without `-rNN` (a folder named by hand) is its own cell."""
    experiment, _, slug = trial_id.rpartition("/")
    match = _REPETITION.match(slug)
    cell = (match.group("head") or "all") if match else slug
    return f"{experiment}/{cell}" if experiment else cell


def trial_cells(trial_ids: list[str]) -> dict[str, list[str]]:
    """Cell -> its trial ids, both in the order given."""
    cells: dict[str, list[str]] = {}
    for trial_id in trial_ids:
        cells.setdefault(cell_of(trial_id), []).append(trial_id)
    return cells


def experiment_grid(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every factor combination of an experiment; a factor that applies to some placements
    only (Placement.factors: the agent's trigger, agent_delay_ms, port_default; ovn's
    ovn_binding) is None with the others."""
    levels = {name: list(values) for name, values in (spec.get("factors") or {}).items()}
    for name, default in DEFAULT_FACTORS.items():
        levels.setdefault(name, [default])
    names = [f for f in KNOWN_FACTORS if f in levels]
    only_some = placement_factors()
    combos: list[dict[str, Any]] = []
    for values in itertools.product(*(levels[n] for n in names)):
        combo = dict(zip(names, values, strict=True))
        for name, where in only_some.items():
            if name in combo and combo.get("placement") not in where:
                combo[name] = None
        if combo not in combos:
            combos.append(combo)
    return combos


def varying_factors(spec: dict[str, Any]) -> set[str]:
    return {n for n, v in (spec.get("factors") or {}).items() if len(v) > 1}


def experiment_trials(name: str, spec: dict[str, Any]) -> list[tuple[str, dict[str, Any], int]]:
    """(trial id, full factor levels, repetition) of every trial of one experiment."""
    varying = varying_factors(spec)
    return [
        (trial_name(name, combo, rep, varying), combo, rep)
        for combo in experiment_grid(spec)
        for rep in range(1, int(spec["repetitions"]) + 1)
    ]


def planned_trials(experiments: dict[str, Any]) -> list[str]:
    """Every trial id of every enabled experiment, in config order."""
    return [
        tid
        for name, spec in experiments.items()
        if spec.get("enabled", True)
        for tid, _, _ in experiment_trials(name, spec)
    ]


def trial_spec(experiments: dict[str, Any], trial_id: str) -> dict[str, Any]:
    """experiment, factors, repetition and per-experiment settings of a planned trial id."""
    experiment, _, _ = parse_trial_id(trial_id)
    spec = experiments.get(experiment)
    if spec is None:
        raise MigfwError(f"trial {trial_id}: no experiment {experiment!r} in the config")
    for tid, factors, rep in experiment_trials(experiment, spec):
        if tid == trial_id:
            extra = {k: spec[k] for k in ("lead_in_s", "settle_s", "attack_rate_hz") if k in spec}
            return {"experiment": experiment, "factors": factors, "repetition": rep, **extra}
    raise MigfwError(f"trial {trial_id}: not a trial of experiment {experiment!r} in the config")


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
            ids = [tid for tid, _, _ in experiment_trials(name, spec)]
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
