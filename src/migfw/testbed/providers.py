"""Choose and drive a provider: `ensure_up(cfg)` and `migfw testbed up / down / status`.

`local` builds the hosts on this machine (namespaces + one libvirtd per host), `external`
reads them from config. `ensure_up` is idempotent: a live local testbed is reused.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.io import write_json
from migfw.testbed.base import Testbed, cfg_get, load_config, read_state, state_dir


def ensure_up(cfg: dict[str, Any]) -> Testbed:
    """Return a running testbed for `cfg`, bringing the local one up if needed."""
    provider = cfg_get(cfg, "testbed.provider")
    if provider == "external":
        from migfw.testbed.external import ExternalTestbed

        if cfg_get(cfg, "testbed.lab_in_a_box"):
            # The lab in a box: the local hosts come up with SSH servers; from here on the
            # external provider reaches them only through the URIs and addresses in config.
            from migfw.testbed.local import LocalTestbed

            LocalTestbed(cfg).up()
        return ExternalTestbed(cfg).up()
    if provider != "local":
        raise MigfwError(f"config testbed.provider: unknown provider {provider!r} (local|external)")
    from migfw.testbed.local import LocalTestbed

    return LocalTestbed(cfg).up()


def host_identities(bed: Testbed) -> dict[str, Any]:
    """The DAG's provisioning evidence: each host's libvirt identity, and where the VM runs."""
    import xml.etree.ElementTree as ET

    from migfw.testbed.provision import connect, find_vm

    hosts: dict[str, Any] = {}
    for name, info in bed.hosts.items():
        conn = connect(bed, name)
        try:
            # libvirt 9's libssh transport freezes on large replies (the capabilities XML,
            # ~100 kB; measured: no answer in 20 s while small calls return at once): the
            # host UUID is left out over qemu+libssh.
            libssh = info.uri.split(":", 1)[0].endswith("+libssh")
            caps = None if libssh else ET.fromstring(conn.getCapabilities())
            lib = conn.getLibVersion()
            hosts[name] = {
                "uri": info.uri,
                "migration_uri": info.migration_uri,
                "host_uuid": None if caps is None else caps.findtext("./host/uuid"),
                "hostname": conn.getHostname(),
                "libvirt": f"{lib // 1000000}.{lib // 1000 % 1000}.{lib % 1000}",
                "nwfilter_driver": _has_nwfilter(conn),
            }
        finally:
            conn.close()
    return {"provider": bed.provider, "accelerator": bed.accelerator, "hosts": hosts,
            "vm": {"name": bed.vm_name, "address": bed.vm_address, "host": find_vm(bed)},
            "prober": {"netns": bed.prober_netns, "address": bed.prober_address},
            "at": time.time()}  # fmt: skip


def _has_nwfilter(conn: Any) -> bool:
    try:
        conn.listAllNWFilters(0)
        return True
    except Exception:  # noqa: BLE001 - libvirtError: the driver is not loaded
        return False


def bring_up(config: str | Path, out: str | Path | None = None) -> None:
    """Rule testbed_up: the hypervisor hosts up (or the lab's reached) and the VM booted;
    the hosts and their libvirt identities written to `out` (JSON)."""
    from migfw.testbed.owner import acquire

    cfg = load_config(config)
    started = time.monotonic()
    # Refuses if another run owns this prefix; cleans a dead owner's leftovers first. The lock
    # is released when this command exits: a later `migfw testbed trial` takes it again.
    owner = acquire(cfg, "migfw testbed up")
    try:
        bed = ensure_up(cfg)
    finally:
        if owner is not None:
            owner.release()
    if out:
        write_json(out, host_identities(bed))
    boot = bed.extra.get("last_boot_s")
    print(
        f"testbed {bed.provider} up in {time.monotonic() - started:.1f} s: VM {bed.vm_name} at "
        f"{bed.vm_address}" + (f" (booted in {boot} s)" if boot else "") + ", accelerator "
        f"{bed.accelerator} ({bed.extra.get('accelerator_detection', {}).get('reason', '')}), "
        f"state {bed.state_dir}/state.json"
    )


def _cmd_up(args: argparse.Namespace) -> int:
    bring_up(args.config, args.out)
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    lab = cfg_get(cfg, "testbed.lab_in_a_box")
    if cfg_get(cfg, "testbed.provider") != "local" and not lab:
        print("testbed external: nothing to tear down (the hosts are not ours)")
        return 0
    from migfw.testbed.local import LocalTestbed
    from migfw.testbed.owner import acquire
    from migfw.testbed.pairs import all_pair_configs

    removed = []
    for pair_cfg in all_pair_configs(cfg):  # every host pair (testbed.pairs)
        owner = acquire(pair_cfg, "migfw testbed down", quiet=True)  # never another run's
        try:
            removed += LocalTestbed(pair_cfg).down()
        finally:
            if owner is not None:
                owner.release()
    print(f"testbed down: removed {len(removed)} items")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if cfg_get(cfg, "testbed.provider") != "local" and (
        read_state(state_dir(cfg)) or not cfg_get(cfg, "testbed.lab_in_a_box")
    ):
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
        if name == "up":
            parser.add_argument("--out", help="write the hosts and their identities (JSON) here")
        parser.set_defaults(func=func)
