"""The external provider: real hypervisor hosts named in config `testbed.external.*`.

Nothing is created or torn down: the two libvirt URIs (e.g. qemu+libssh://root@hv-a/system
?keyfile=...&known_hosts=...), the migration URIs (tcp://<host on the migration network>),
the running domain and the SSH parameters of the VM are taken as given. The prober runs on
this machine (`prober_host: null`; its interface is the one that routes to the VM) or on
`prober_host`, an SSH destination (migfw.testbed.remote). With `testbed.lab_in_a_box: true`
the hosts are the local testbed's namespaces, brought up with SSH servers first
(migfw.testbed.providers); this module still knows them only by their URIs and addresses.
"""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path
from typing import Any

from migfw.config import default
from migfw.errors import MigfwError
from migfw.testbed.base import HostInfo, Testbed, cfg_get, state_dir
from migfw.testbed.placements import get, known

REQUIRED = [
    "source_uri",
    "destination_uri",
    "source_migration_uri",
    "destination_migration_uri",
    "domain",
    "vm_address",
    "ssh_key",
    "ssh_known_hosts",
]


def host_placements(cfg: dict[str, Any]) -> list[str]:
    """The host-firewall placements (vmm, vmm-agent, ...) the enabled experiments ask for."""
    found: list[str] = []
    for spec in (cfg.get("experiments") or {}).values():
        if not isinstance(spec, dict) or not spec.get("enabled", True):
            continue
        levels = (spec.get("factors") or {}).get("placement") or []
        for level in levels if isinstance(levels, list) else [levels]:
            if known(level) and get(level).host_rules and level not in found:
                found.append(str(level))
    return found


def route_to(address: str) -> tuple[str | None, str | None]:
    """(interface, source address) the kernel would use to reach `address`."""
    try:
        out = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True)
    except FileNotFoundError:
        return None, None
    words = out.stdout.split()

    def after(key: str) -> str | None:
        return words[words.index(key) + 1] if key in words[:-1] else None

    return after("dev"), after("src")


def external_testbed(cfg: dict[str, Any]) -> Testbed:
    """Build the Testbed from config; each missing or bad key is one error line."""
    ext = cfg_get(cfg, "testbed.external") or {}
    for key in REQUIRED:
        if not ext.get(key):
            raise MigfwError(f"config testbed.external.{key}: required when provider is external")
    try:
        ipaddress.ip_address(str(ext["vm_address"]))
    except ValueError:
        raise MigfwError(
            f"config testbed.external.vm_address: {ext['vm_address']!r} is not an IP address"
        ) from None
    for key in ("ssh_key", "ssh_known_hosts"):
        if not Path(str(ext[key])).expanduser().exists():
            raise MigfwError(f"config testbed.external.{key}: file {ext[key]} does not exist")
    prober = None
    if ext.get("prober_host"):
        from migfw.testbed.remote import split_destination

        user, host, port = split_destination(str(ext["prober_host"]))
        for key in ("prober_ssh_key", "prober_known_hosts"):
            if not ext.get(key):
                raise MigfwError(f"config testbed.external.{key}: required with prober_host")
            if not Path(str(ext[key])).expanduser().exists():
                raise MigfwError(f"config testbed.external.{key}: file {ext[key]} does not exist")
        prober = {
            "host": str(ext["prober_host"]),
            "target": {"user": user, "host": host, "port": port,
                       "key": str(Path(str(ext["prober_ssh_key"])).expanduser()),
                       "known_hosts": str(Path(str(ext["prober_known_hosts"])).expanduser())},
            # null: the same interpreter path as here (a prober host sharing this install)
            "python": str(ext.get("prober_python") or sys.executable),
        }  # fmt: skip
    for key in ("source_uri", "destination_uri"):
        from migfw.testbed.remote import libvirt_ssh_target

        target = libvirt_ssh_target(str(ext[key]))
        for param in ("keyfile", "known_hosts"):
            value = (target or {}).get("key" if param == "keyfile" else param)
            if value and not Path(value).expanduser().exists():
                raise MigfwError(f"config testbed.external.{key}: {param}={value} does not exist")
    for key in ("source_migration_uri", "destination_migration_uri"):
        if not str(ext[key]).startswith("tcp://"):
            raise MigfwError(f"config testbed.external.{key}: {ext[key]!r} must be tcp://HOST")
    for key in ("source_uri", "destination_uri"):
        from migfw.testbed.remote import libvirt_ssh_target

        wanted = host_placements(cfg)
        if wanted and libvirt_ssh_target(str(ext[key])) is None:
            # nft / iptables on the hosts run over SSH with the URI's login.
            raise MigfwError(
                f"config testbed.external.{key}: placement {wanted[0]} needs an SSH login to "
                "the host (a qemu+ssh:// or qemu+libssh:// URI)"
            )
    vm = str(ext["vm_address"])
    iface, source = (None, None) if prober else route_to(vm)
    return Testbed(
        provider="external",
        hosts={
            "A": HostInfo("A", str(ext["source_uri"]), str(ext["source_migration_uri"])),
            "B": HostInfo("B", str(ext["destination_uri"]), str(ext["destination_migration_uri"])),
        },
        vm_name=str(ext["domain"]),
        vm_address=vm,
        prober_netns=None,
        prober_iface=iface,
        prober_address=source,
        ssh_user=str(ext.get("ssh_user") or default("testbed.external.ssh_user")),
        ssh_key=str(Path(str(ext["ssh_key"])).expanduser()),
        ssh_known_hosts=str(Path(str(ext["ssh_known_hosts"])).expanduser()),
        ssh_netns=None,
        accelerator=str(cfg_get(cfg, "testbed.accelerator")),
        state_dir=str(state_dir(cfg).resolve()),
        extra={"prober": prober} if prober else {},
    )


def domain_facts(bed: Testbed, host: str) -> tuple[str, str | None]:
    """kvm or tcg, as the running domain's XML says (<domain type='kvm'|'qemu'>), and the
    VM's tap device on that host (its interface's <target dev>)."""
    import xml.etree.ElementTree as ET

    from migfw.testbed.provision import connect

    conn = connect(bed, host)
    try:
        root = ET.fromstring(conn.lookupByName(bed.vm_name).XMLDesc(0))
    finally:
        conn.close()
    target = root.find("./devices/interface/target")
    return ("kvm" if root.get("type") == "kvm" else "tcg"), (
        None if target is None else target.get("dev")
    )


def resolve_remote_prober(bed: Testbed) -> None:
    """Ask the prober host which interface and source address reach the VM."""
    from migfw.testbed.remote import open_shell

    prober = bed.extra["prober"]
    shell = open_shell(prober["target"])
    try:
        words = shell.run(f"ip route get {bed.vm_address}").split()
    finally:
        shell.close()

    def after(key: str) -> str | None:
        return words[words.index(key) + 1] if key in words[:-1] else None

    bed.prober_iface, bed.prober_address = after("dev"), after("src")
    if not bed.prober_iface or not bed.prober_address:
        raise MigfwError(
            f"prober host {prober['host']}: no route to the VM {bed.vm_address} "
            f"(`ip route get` said: {' '.join(words) or 'nothing'})"
        )


class ExternalTestbed:
    """Same shape as LocalTestbed: up() checks the configured hosts, down() leaves them be."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg

    def up(self) -> Testbed:
        from migfw.testbed.provision import ensure_vm

        bed = external_testbed(self.cfg)
        where = ensure_vm(bed)  # the domain must run on exactly one of the two hosts
        bed.accelerator, tap = domain_facts(bed, where)
        if tap:  # the VM's bridge port: host placements filter on it
            bed.extra["tap"] = tap
        if bed.extra.get("prober"):
            resolve_remote_prober(bed)
        return bed

    def down(self, quiet: bool = False) -> list[str]:
        return []  # the hosts and the VM are not ours to remove

    def status(self) -> dict[str, Any]:
        from migfw.testbed.provision import vm_locations

        bed = external_testbed(self.cfg)
        where = vm_locations(bed)
        return {"up": list(where.values()).count("running") == 1, "vm": where}
