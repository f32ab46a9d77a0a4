"""Parts of trial.json that describe where and with what a trial ran: the prober, the
software versions, the hypervisor PIDs, the watchdog's flags, the conntrack dumps, the
breach position (docs/trial_folders.md).
"""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from migfw.testbed.base import Testbed

PY_PACKAGES = ["migfw", "libvirt-python", "fabric", "paramiko", "scapy"]


def prober_record(bed: Testbed, capture: dict[str, Any]) -> dict[str, Any]:
    """Where the probes came from: this machine (a namespace of it) or a remote host."""
    remote = bed.extra.get("prober")
    return {
        "host": remote["host"] if remote else None,
        "netns": bed.prober_netns,
        "iface": bed.prober_iface,
        "address": bed.prober_address,
        "copied_sha256": capture.get("copied_sha256"),
    }


def software_versions(bed: Testbed, guest_nft: str | None) -> dict[str, Any]:
    from migfw.testbed.accel import qemu_version

    packages = {}
    for name in PY_PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    libvirt_version = None
    try:
        import libvirt

        v = libvirt.getVersion()
        libvirt_version = f"{v // 1000000}.{v // 1000 % 1000}.{v % 1000}"
    except Exception:  # noqa: BLE001 - versions are informative only
        pass
    guest_kernel = None
    manifest = bed.extra.get("guest_manifest")
    if manifest and Path(manifest).exists():
        guest_kernel = json.loads(Path(manifest).read_text()).get("kernel_version")
    return {
        "qemu": qemu_version(bed.extra.get("emulator")) if bed.provider == "local" else None,
        "libvirt": libvirt_version,
        "kernel": {"host": platform.release(), "guest": guest_kernel},
        "nft": guest_nft,
        "python": platform.python_version(),
        "python_packages": packages,
    }


def hypervisor_pids(cfg: dict[str, Any], bed: Testbed, vm_host: str | None) -> dict[str, Any]:
    """The PIDs the testbed recorded (libvirtd per host) and the VM's QEMU (local provider)."""
    if bed.provider != "local":
        return {}
    from migfw.testbed.base import read_state
    from migfw.testbed.local import LocalTestbed

    local = LocalTestbed(cfg)
    pids: dict[str, Any] = dict((read_state(local.state_dir) or {}).get("pids", {}))
    if vm_host is not None:
        pids["qemu"] = local.vm_pid(vm_host)
        pids["qemu_host"] = vm_host
    return pids


def watchdog_flags(migration: dict[str, Any]) -> list[str]:
    """`migration_slow`: the migration finished but went `slow_stall_s` or longer without
    progress (a stalled one is a failed trial instead)."""
    watchdog = migration.get("watchdog") or {}
    return ["migration_slow"] if watchdog.get("slow") and migration.get("hypervisor") else []


def conntrack_record(
    record: dict[str, Any] | None, placement_record: dict[str, Any] | None
) -> dict[str, Any] | None:
    """trial.json `conntrack`: the kernel dumps, and a placement's own (ovn: OVS's tables)."""
    ovn_dumps = ((placement_record or {}).get("conntrack") or {}).get("dumps") or {}
    if record is None and not ovn_dumps:
        return None
    out = dict(record or {"tcp_loose": {}, "dumps": {}})
    out["dumps"] = {**out.get("dumps", {}), **ovn_dumps}
    return out


def breach_position(folder: Path, meta: dict[str, Any]) -> Any:
    """trial.json `breach_position` when it needs no analysis: `none` for a trial without
    breaches. With breaches it is left out: placing the runs relative to the pause belongs to
    the attack-window analysis, a later stage the testbed may not import (the analysis fills
    it in; tests/test_architecture.py keeps the order)."""
    return "none" if not meta.get("breaches") else None


def migration_record(clock: Any, mig: dict[str, Any], settings: dict[str, Any], source: str,
                     destination: str) -> dict[str, Any]:  # fmt: skip
    """trial.json `migration`."""
    return {
        # The migrate call itself (not when libvirt got to start the job): a frozen
        # guest or a slow daemon cannot shift these.
        "start": clock.epoch("migrate_call"),
        "end": clock.epoch("migrate_return"),
        "source": source,
        "destination": destination,
        "mode": settings["mode"],
        "algorithm": settings["algorithm"],
        "bandwidth_mibps": mig.get("bandwidth_mibps", settings["bandwidth_mibps"] or None),
        "max_downtime_ms": mig.get("max_downtime_ms", settings["max_downtime_ms"] or None),
        "requested": mig.get("requested"),
        "in_force": mig.get("in_force"),
        # The progress watchdog (migfw.testbed.migration_watchdog.ProgressWatch); after a stall
        # or a hung daemon, the last job statistics and what did not answer.
        "watchdog": mig.get("watchdog"),
        "unresponsive": mig.get("unresponsive"),
    }


def capture_record(cap: dict[str, Any], traffic: dict[str, Any]) -> dict[str, Any]:
    """trial.json `capture` and `breaches`."""
    attack = traffic.get("attack")
    # Allowed/blocked-port answers: the attacker's sender, or the prober's when it probed.
    answers = ((attack or {}).get("sender") or {}) if attack is not None else cap
    return {
        "capture": {
            "packets": cap.get("capture_packets"),
            "dropped": cap.get("capture_dropped"),
            "flagged": bool(cap.get("capture_dropped")),
            "requests_sent": cap.get("requests_sent"),
            "allowed_answers": answers.get("allowed_answers"),
            "blocked_answers": answers.get("blocked_answers"),
        },
        # Answered blocked-port probes: the attacker's (attack.pcap, one per probe index)
        # where the testbed has an attacker namespace; else the prober's own (probe.pcap),
        # e.g. the external provider's remote prober.
        "breaches": (traffic.get("breaches") if attack is not None else cap.get("breaches")) or [],
    }
