"""The provider interface: a `Testbed` names two hypervisor hosts, the VM and the prober.

Providers (migfw.testbed.local, migfw.testbed.external) build or read a `Testbed`; everything
after "the hosts exist" (provisioning, deploying the ruleset, probing, migrating, trials) uses
only this interface. It imports no provider: migfw.testbed.providers picks one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from migfw.errors import MigfwError


@dataclass
class HostInfo:
    name: str  # "A" or "B"
    uri: str  # libvirt connection URI
    migration_uri: str  # where the migration stream goes when this host is the destination


@dataclass
class Testbed:
    provider: str
    hosts: dict[str, HostInfo]
    vm_name: str
    vm_address: str
    prober_netns: str | None
    prober_iface: str | None
    prober_address: str | None
    ssh_user: str
    ssh_key: str
    ssh_known_hosts: str
    ssh_netns: str | None
    accelerator: str
    state_dir: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Testbed:
        data = dict(data)
        data["hosts"] = {k: HostInfo(**v) for k, v in data["hosts"].items()}
        return cls(**data)

    def other(self, host: str) -> str:
        return "B" if host == "A" else "A"


def load_config(path: str | Path) -> dict[str, Any]:
    """Read the YAML config; a missing or malformed file is one clear error line."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise MigfwError(f"{path}: config file not found") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise MigfwError(f"{path}:{where} not valid YAML") from exc
    if not isinstance(data, dict):
        raise MigfwError(f"{path}: config must be a mapping of keys")
    # Checked here too so every `migfw testbed` command (not only Snakemake) refuses a bad
    # subnet in one line instead of failing deep inside with a ValueError.
    from migfw.config import network_problems, watchdog_problems
    from migfw.testbed.ruleset import enforcement_problems

    problems = network_problems(data) or enforcement_problems(data)
    problems += watchdog_problems(data)
    if problems:
        raise MigfwError(f"{path}: " + "; ".join(problems))
    data.setdefault("_path", str(path))
    return data


def cfg_get(cfg: dict[str, Any], dotted: str) -> Any:
    """The value at `a.b.c`; when absent or null, the default the config schema declares
    (workflow/schemas/config.schema.yaml, the one place defaults live), else None. A partial
    config (a lab's hand-written file, a test's dict) thus means the documented defaults."""
    from migfw.config import default

    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            return default(dotted)
        node = node[part]
    return node


def state_dir(cfg: dict[str, Any]) -> Path:
    return Path(cfg_get(cfg, "testbed.state_dir"))


def read_state(directory: Path) -> dict[str, Any] | None:
    path = directory / "state.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MigfwError(
            f"{path}: not valid JSON ({exc.msg}); run `migfw testbed cleanup`"
        ) from exc
