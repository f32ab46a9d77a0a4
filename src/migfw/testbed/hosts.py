"""The provider interface: a `Testbed` names two hypervisor hosts, the VM and the prober.

`local` builds the hosts on this machine (namespaces + one libvirtd per host), `external`
reads them from config. Everything after "the hosts exist" (provisioning, deploying the
ruleset, probing, migrating, trials) uses only a `Testbed`, so both providers share it.
`ensure_up(cfg)` is idempotent: a live local testbed recorded in state.json is reused.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from migfw.errors import MigfwError

DEFAULT_STATE_DIR = Path("results/testbed")


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
    data.setdefault("_path", str(path))
    return data


def cfg_get(cfg: dict[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return default if node is None else node


def state_dir(cfg: dict[str, Any]) -> Path:
    return Path(cfg_get(cfg, "testbed.state_dir", str(DEFAULT_STATE_DIR)))


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


def ensure_up(cfg: dict[str, Any]) -> Testbed:
    """Return a running testbed for `cfg`, bringing the local one up if needed."""
    provider = cfg_get(cfg, "testbed.provider", "local")
    if provider == "external":
        from migfw.testbed.external import ExternalTestbed

        return ExternalTestbed(cfg).up()
    if provider != "local":
        raise MigfwError(f"config testbed.provider: unknown provider {provider!r} (local|external)")
    from migfw.testbed.local import LocalTestbed

    return LocalTestbed(cfg).up()


def _cmd_up(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    started = time.monotonic()
    bed = ensure_up(cfg)
    boot = bed.extra.get("last_boot_s")
    print(
        f"testbed {bed.provider} up in {time.monotonic() - started:.1f} s: VM {bed.vm_name} at "
        f"{bed.vm_address}" + (f" (booted in {boot} s)" if boot else "") + ", accelerator "
        f"{bed.accelerator} ({bed.extra.get('accelerator_detection', {}).get('reason', '')}), "
        f"state {bed.state_dir}/state.json"
    )
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if cfg_get(cfg, "testbed.provider", "local") != "local":
        print("testbed external: nothing to tear down (the hosts are not ours)")
        return 0
    from migfw.testbed.local import LocalTestbed

    removed = LocalTestbed(cfg).down()
    print(f"testbed down: removed {len(removed)} items")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if cfg_get(cfg, "testbed.provider", "local") != "local":
        from migfw.testbed.external import ExternalTestbed

        status = ExternalTestbed(cfg).status()
        print(json.dumps(status, indent=2))
        return 0 if status["up"] else 1
    from migfw.testbed.local import LocalTestbed

    status = LocalTestbed(cfg).status()
    print(json.dumps(status, indent=2))
    return 0 if status.get("up") else 1


def register_cli(sub: argparse._SubParsersAction) -> None:
    for name, func, text in (
        ("up", _cmd_up, "bring the testbed up (idempotent) and boot the VM"),
        ("down", _cmd_down, "tear the local testbed down (VM, daemons, namespaces)"),
        ("status", _cmd_status, "show the recorded testbed and whether it is alive"),
    ):
        parser = sub.add_parser(name, help=text)
        parser.add_argument("--config", default="config/config.yaml")
        parser.set_defaults(func=func)
