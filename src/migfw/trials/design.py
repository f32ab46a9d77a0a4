"""The design sheet: the config's experiments expanded once into typed trial specs.

`expand_design(experiments, pairs)` turns every enabled experiment (a factor grid x
repetitions) into one `TrialSpec` per trial, in planned order: its id, experiment,
repetition, position k of N, host pair (round-robin over the pairs, decided here only), the
migration's direction, every factor level with its type, and the experiment's own lead-in,
settle and attack rate. `write_design` writes it as `results/design.tsv` (rule
`design_sheet`); the trial id is the key into it: `migfw testbed trial --spec
results/design.tsv --trial-id ID` and `migfw craft --spec ... --trial ID` read the row, and
the analysis reads the same type back from a finished trial.json
(`TrialSpec.from_trial_json`).

A trial id is `<experiment>/<slug>-r<NN>`, e.g. `thesis/i0.5-r03` or
`placement/vmm-agent-d200-r03`: the slug carries the levels of the factors that vary within
the experiment (placement bare, the others as code + value, `FACTOR_CODES`). Ids are made
and read here only (tests/test_design.py fails if another module decodes one); reading one
back is needed only for a trial named by hand without a config (`adhoc_spec`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.testbed.placements import known as known_placement
from migfw.testbed.placements import names as placement_names
from migfw.testbed.placements import placement_factors

# Every factor a trial may vary: its code in trial ids and its level type. A placement is
# written bare (vm, vmm-agent, ...); other factors as code + value (i0.01, d200). Types:
# `placement` (a registered placement), `text`, `float` (always a float), `number` (an int
# or a float, as the config wrote it).
FACTORS: dict[str, tuple[str, str]] = {
    "placement": ("", "placement"),
    "trigger": ("tr", "text"),
    "agent_delay_ms": ("d", "number"),
    "port_default": ("pd", "text"),
    "nf_conntrack_tcp_loose": ("ctl", "number"),
    "ovn_binding": ("ob", "text"),  # placement ovn: multichassis | rebind
    "interval_s": ("i", "float"),
    "workload": ("w", "text"),
    "dirty_mib": ("dm", "number"),
    "dirty_rate_mibps": ("dr", "number"),
    "memory_mib": ("m", "number"),
    "bandwidth_mibps": ("bw", "number"),
    "max_downtime_ms": ("md", "number"),
    "algorithm": ("alg", "text"),
    "multifd_channels": ("mf", "number"),
    "service_rate_hz": ("sr", "number"),
}
FACTOR_CODES: dict[str, str] = {name: code for name, (code, _) in FACTORS.items()}
KNOWN_FACTORS = tuple(FACTORS)
TEXT_FACTORS = tuple(n for n, (_, kind) in FACTORS.items() if kind in ("text", "placement"))
DEFAULT_EXPERIMENT = "default"  # flat legacy folders
DEFAULT_FACTORS: dict[str, Any] = {"placement": "vm"}
# Snakemake's `trial` wildcard: exactly <experiment>/<slug>.
TRIAL_WILDCARD = r"[^/]+/[^/]+"
EXPERIMENT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
EXPERIMENT_SETTINGS = ("lead_in_s", "settle_s", "attack_rate_hz")
# The testbed migrates the VM away from the host it runs on; trial.json records which way.
AWAY = "away"
NOT_APPLICABLE = "n/a"  # a sheet cell: the factor does not apply to this trial's placement
_VALUE = re.compile(r"^[a-z0-9.]+$")
_REPETITION = re.compile(r"^(?:(?P<head>.+)-)?r\d+$")


# ------------------------------------------------------------------ the spec


@dataclass(frozen=True)
class TrialSpec:
    """One trial: who it is, where and in which order it runs, every factor level, typed.

    `levels` holds the factors its experiment sets, in factor order; a factor that applies to
    other placements only (agent_delay_ms beside `vm`) is None. `in_id` names the factors the
    id writes (the crafted generator keeps their order in trial.json)."""

    trial_id: str
    experiment: str
    repetition: int
    levels: tuple[tuple[str, Any], ...]
    in_id: tuple[str, ...] = ()
    index: int | None = None  # k of "trial k/N" in planned order (1-based)
    of: int | None = None
    pair: int = 0  # host pair (testbed.pairs): round-robin in planned order
    direction: str = AWAY
    lead_in_s: float | None = None  # the experiment's own; None: trials.lead_in_s
    settle_s: float | None = None
    attack_rate_hz: float | None = None

    def __post_init__(self) -> None:
        placement = dict(self.levels).get("placement", "vm")
        if not known_placement(placement):
            raise MigfwError(f"trial {self.trial_id}: placement {placement!r} not registered "
                             f"(placements: {', '.join(placement_names())})")  # fmt: skip
        if isinstance(self.repetition, bool) or not isinstance(self.repetition, int):
            raise MigfwError(f"trial {self.trial_id}: repetition {self.repetition!r} is not an int")

    @property
    def factors(self) -> dict[str, Any]:
        """The factor levels as a dict (a copy), in factor order."""
        return dict(self.levels)

    @property
    def placement(self) -> str:
        return self.factors.get("placement", DEFAULT_FACTORS["placement"])

    @property
    def interval_s(self) -> float | None:
        value = self.factors.get("interval_s")
        return None if value is None else float(value)

    @property
    def cell(self) -> str:
        return cell_of(self.trial_id)

    def id_first(self) -> dict[str, Any]:
        """The levels with those the id names first (the order a decoded id gives)."""
        levels = self.factors
        return {**{k: levels[k] for k in self.in_id if k in levels}, **levels}

    def replace(self, **changes: Any) -> TrialSpec:
        if "factors" in changes:
            changes["levels"] = tuple(changes.pop("factors").items())
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_trial_json(cls, meta: Mapping[str, Any]) -> TrialSpec:
        """The spec a finished trial ran (its trial.json): what the analysis reads."""
        return cls(
            trial_id=meta["trial_id"],
            experiment=meta.get("experiment", DEFAULT_EXPERIMENT),
            repetition=int(meta.get("repetition") or 1),
            levels=tuple((meta.get("factors") or {}).items()),
            pair=int(meta.get("pair") or 0),
            direction=meta.get("direction") or AWAY,
        )

    def analysis_columns(self) -> dict[str, Any]:
        """Its factor columns in trials.csv: placement, agent_delay_ms (empty where the
        placement has no agent), every other factor it records, in its order."""
        factors = self.factors
        factors.pop("interval_s", None)
        placement = factors.pop("placement", "vm")
        delay = factors.pop("agent_delay_ms", None)
        owners = placement_factors().get("agent_delay_ms", set())
        return {"placement": placement,
                "agent_delay_ms": delay if placement in owners else None, **factors}  # fmt: skip


# ------------------------------------------------------------------ ids


def _level_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _slug_factors(factors: Mapping[str, Any], varying: set[str] | None) -> list[str]:
    """The factors written into a slug, in factor order."""
    names = [f for f in KNOWN_FACTORS if f in factors and factors[f] is not None]
    if varying is None:
        return names
    chosen = [f for f in names if f in varying or f == "agent_delay_ms"]
    if not chosen and "interval_s" in names:
        chosen = ["interval_s"]  # an experiment without varying factors: still readable
    return chosen


def trial_name(
    experiment: str,
    factors: Mapping[str, Any],
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


def _decode(trial_id: str) -> tuple[str, dict[str, Any], int]:
    """(experiment, factors written in the slug, repetition) of an id made by `trial_name`.
    A flat legacy id (`i0.01-r03`) is experiment `default`."""
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


def is_trial_id(trial_id: str) -> bool:
    """True if `trial_id` follows the naming of `trial_name`."""
    try:
        _decode(trial_id)
    except MigfwError:
        return False
    return True


def adhoc_spec(
    trial_id: str,
    factors: Mapping[str, Any] | None = None,
    repetition: int | None = None,
    strict: bool = True,
) -> TrialSpec:
    """The spec of a trial named by hand, outside any config's design (a lab's own runs,
    `migfw craft --trial ID` without --config): experiment, repetition and levels read from
    an id made by `trial_name`, completed (or overridden) by `factors`. An id outside that
    naming is an error if `strict`, else experiment `default`, repetition 1, `factors` only."""
    try:
        experiment, named, rep = _decode(trial_id)
    except MigfwError:
        if strict:
            raise
        experiment, named, rep = DEFAULT_EXPERIMENT, {}, 1
    levels = {**named, **(factors or {})}
    return TrialSpec(trial_id, experiment, rep if repetition is None else int(repetition),
                     tuple(levels.items()), in_id=tuple(named))  # fmt: skip


def repetition_of(trial_id: str) -> int:
    """The repetition an id names (`…-r03` -> 3), else 1."""
    try:
        return _decode(trial_id)[2]
    except MigfwError:
        return 1


def cell_of(trial_id: str) -> str:
    """The cell of a trial: its experiment and factor levels without the repetition
    (`placement/vmm-agent-d200-r03` -> `placement/vmm-agent-d200`; `thesis/r02` ->
    `thesis/all`). A slug without `-rNN` (a folder named by hand) is its own cell."""
    experiment, _, slug = trial_id.rpartition("/")
    match = _REPETITION.match(slug)
    cell = (match.group("head") or "all") if match else slug
    return f"{experiment}/{cell}" if experiment else cell


def trial_cells(trial_ids: Iterable[str]) -> dict[str, list[str]]:
    """Cell -> its trial ids, both in the order given."""
    cells: dict[str, list[str]] = {}
    for trial_id in trial_ids:
        cells.setdefault(cell_of(trial_id), []).append(trial_id)
    return cells


# ------------------------------------------------------------------ expansion


def experiment_grid(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
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


def varying_factors(spec: Mapping[str, Any]) -> set[str]:
    return {n for n, v in (spec.get("factors") or {}).items() if len(v) > 1}


def experiment_specs(name: str, spec: Mapping[str, Any]) -> list[TrialSpec]:
    """Every trial of one experiment (no position or pair yet)."""
    varying = varying_factors(spec)
    settings = {k: spec[k] for k in EXPERIMENT_SETTINGS if k in spec}
    return [
        TrialSpec(
            trial_name(name, combo, rep, varying),
            name,
            rep,
            tuple(combo.items()),
            in_id=tuple(_slug_factors(combo, varying)),
            **settings,
        )  # fmt: skip
        for combo in experiment_grid(spec)
        for rep in range(1, int(spec["repetitions"]) + 1)
    ]


def expand_design(experiments: Mapping[str, Any], pairs: int = 1) -> list[TrialSpec]:
    """Every trial of every enabled experiment, in config order: position k of N and the
    host pair (round-robin over `pairs`: trial k runs on pair (k - 1) mod pairs)."""
    specs = [
        s
        for name, spec in (experiments or {}).items()
        if spec.get("enabled", True)
        for s in experiment_specs(name, spec)
    ]
    return [
        s.replace(index=k, of=len(specs), pair=(k - 1) % max(1, pairs))
        for k, s in enumerate(specs, start=1)
    ]


def planned_trials(experiments: Mapping[str, Any]) -> list[str]:
    """Every trial id of every enabled experiment, in config order."""
    return [s.trial_id for s in expand_design(experiments)]


def design_spec(experiments: Mapping[str, Any], trial_id: str, pairs: int = 1) -> TrialSpec:
    """The spec of a planned trial; one-line errors for an id the config does not plan."""
    for spec in expand_design(experiments, pairs):
        if spec.trial_id == trial_id:
            return spec
    experiment = trial_id.partition("/")[0] if "/" in trial_id else DEFAULT_EXPERIMENT
    if experiment not in (experiments or {}):
        raise MigfwError(f"trial {trial_id}: no experiment {experiment!r} in the config")
    raise MigfwError(f"trial {trial_id}: not a trial of experiment {experiment!r} in the config")


# ------------------------------------------------------------------ the sheet (TSV)

COLUMNS = ("trial_id", "experiment", "repetition", "index", "of", "pair", "direction",
           *EXPERIMENT_SETTINGS, "in_id")  # fmt: skip


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # lossless: 200.0 stays a float, 200 an int
    return str(value)


def design_text(specs: Iterable[TrialSpec]) -> str:
    """The sheet as TSV: one row per trial, one column per factor any trial sets (empty:
    its experiment does not set it; `n/a`: it does not apply to the trial's placement)."""
    specs = list(specs)
    used = {name for s in specs for name, _ in s.levels}
    factors = [f for f in KNOWN_FACTORS if f in used]
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow([*COLUMNS, *factors])
    for s in specs:
        levels = s.factors
        row = [s.trial_id, s.experiment, s.repetition, s.index, s.of, s.pair, s.direction,
               s.lead_in_s, s.settle_s, s.attack_rate_hz, ",".join(s.in_id)]  # fmt: skip
        factor_cells = [
            (NOT_APPLICABLE if levels[f] is None else _cell(levels[f])) if f in levels else ""
            for f in factors
        ]
        writer.writerow([_cell(v) for v in row] + factor_cells)
    return out.getvalue()


def write_design(specs: Iterable[TrialSpec], path: str | Path) -> None:
    from migfw.io import atomic_write

    with atomic_write(path, "w") as handle:
        handle.write(design_text(specs))


def _typed(name: str, text: str, where: str) -> Any:
    kind = FACTORS[name][1]
    if text == NOT_APPLICABLE:
        return None
    if kind in ("text", "placement"):
        return text
    try:
        if kind == "float":
            return float(text)
        return int(text) if re.fullmatch(r"-?\d+", text) else float(text)
    except ValueError:
        raise MigfwError(f"{where}: {name} {text!r} is not a number") from None


def _optional(text: str, cast: Any) -> Any:
    return cast(text) if text != "" else None


def read_design(path: str | Path) -> list[TrialSpec]:
    """The sheet's trial specs, typed; one-line errors naming the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise MigfwError(f"{path}: design sheet not found (snakemake results/design.tsv)") from None
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    if not rows or tuple(rows[0][: len(COLUMNS)]) != COLUMNS:
        raise MigfwError(f"{path}: not a design sheet (header must start {' '.join(COLUMNS)})")
    factors = rows[0][len(COLUMNS) :]
    unknown = [f for f in factors if f not in FACTORS]
    if unknown:
        raise MigfwError(f"{path}: unknown factor column {', '.join(unknown)}")
    specs = []
    for line, row in enumerate(rows[1:], start=2):
        where = f"{path}: line {line}"
        if len(row) != len(rows[0]):
            raise MigfwError(f"{where}: {len(row)} fields, the header has {len(rows[0])}")
        cells = dict(zip(rows[0], row, strict=True))
        levels = tuple((f, _typed(f, cells[f], where)) for f in factors if cells[f] != "")
        try:
            specs.append(TrialSpec(
                trial_id=cells["trial_id"], experiment=cells["experiment"],
                repetition=int(cells["repetition"]), levels=levels,
                in_id=tuple(f for f in cells["in_id"].split(",") if f),
                index=_optional(cells["index"], int), of=_optional(cells["of"], int),
                pair=int(cells["pair"]), direction=cells["direction"],
                lead_in_s=_optional(cells["lead_in_s"], float),
                settle_s=_optional(cells["settle_s"], float),
                attack_rate_hz=_optional(cells["attack_rate_hz"], float),
            ))  # fmt: skip
        except (ValueError, MigfwError) as exc:
            raise MigfwError(f"{where}: {exc}") from None
    return specs


def lookup(path: str | Path, trial_id: str) -> TrialSpec:
    """The row of `trial_id` in the sheet at `path`."""
    for spec in read_design(path):
        if spec.trial_id == trial_id:
            return spec
    raise MigfwError(f"trial {trial_id}: not in the design sheet {path} (not planned by its "
                     "config's experiments)")  # fmt: skip
