"""Provision the target VM with libvirt-python (no virsh) from resources/domain.xml."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from pathlib import Path
from string import Template
from typing import Any
from xml.sax.saxutils import escape

from migfw.errors import MigfwError
from migfw.testbed.base import Testbed
from migfw.testbed.guest import READY_MARKER, RESOURCES

DOMAIN_TEMPLATE = RESOURCES / "domain.xml"
EMULATOR = "/usr/bin/qemu-system-x86_64"  # the system's QEMU (testbed.guest.emulator: system)


def render_domain_xml(params: dict[str, Any], template: Path = DOMAIN_TEMPLATE) -> str:
    """Fill the template; values are XML-escaped, a missing placeholder is one error line."""
    accel = params.get("accelerator", "tcg")
    if accel not in ("kvm", "tcg"):
        raise MigfwError(f"domain XML: accelerator {accel!r} is not kvm or tcg")
    memory = int(params["memory_mib"])
    vcpus = int(params["vcpus"])
    if memory < 96:
        raise MigfwError(
            f"config testbed.guest.memory_mib: {memory} MiB is below the 96 MiB the guest needs"
        )
    if vcpus < 1:
        raise MigfwError(f"config testbed.guest.vcpus: {vcpus} must be at least 1")
    values = {
        "domain_type": "kvm" if accel == "kvm" else "qemu",
        "memory_mib": str(memory),
        "vcpus": str(vcpus),
        "emulator": params.get("emulator") or EMULATOR,
    }
    for key in ("name", "kernel", "initrd", "cmdline", "bridge", "tap", "mac", "serial_log"):
        values[key] = str(params[key])
    escaped = {k: escape(v, {"'": "&apos;", '"': "&quot;"}) for k, v in values.items()}
    escaped["virtualport"] = virtualport_xml(params.get("virtualport_id"))
    try:
        return Template(template.read_text()).substitute(escaped)
    except KeyError as exc:
        raise MigfwError(f"{template}: placeholder ${exc.args[0]} has no value") from exc


def virtualport_xml(interface_id: str | None) -> str:
    """An Open vSwitch port (OVN's logical port `interface_id`, a UUID as Neutron's port ids
    are): libvirt plugs the tap into the OVS bridge with ovs-vsctl and sets iface-id, on
    every host the VM starts or arrives on. Empty for a Linux bridge."""
    if not interface_id:
        return ""
    import uuid

    try:
        value = str(uuid.UUID(str(interface_id)))
    except ValueError:
        raise MigfwError(
            f"domain XML: virtualport interfaceid {interface_id!r} is not a UUID"
        ) from None
    # The userspace (netdev) datapath forwards frames as they are: a guest relying on
    # checksum offload would send TCP with partial checksums that every receiver drops.
    return (
        f"\n      <virtualport type='openvswitch'><parameters interfaceid='{value}'/>"
        "</virtualport>\n      <driver><host csum='off' gso='off' tso4='off' tso6='off' "
        "ecn='off' ufo='off'/></driver>"
    )


def domain_params(bed: Testbed) -> dict[str, Any]:
    return {"name": bed.vm_name, "accelerator": bed.accelerator, **bed.extra}


def _quiet_libvirt() -> None:
    """libvirt prints every error to stderr by default; we report them ourselves."""
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


# A libvirtd that stops answering (stopped, hung, its host gone) must not hang the run:
# opening a connection is waited for at most OPEN_TIMEOUT_S, and connections send keepalives
# - after KEEPALIVE_INTERVAL_S of silence, and KEEPALIVE_COUNT more unanswered, libvirt
# closes it (~12 s) and the call pending on it fails ("connection closed due to keepalive
# timeout"). Keepalives need libvirt's event loop running (ensure_event_loop). Not on the
# migration's own connections: libvirt 9's client leaves a migrate3 call blocked when the
# keepalive closes its connection, and crashed (SIGSEGV) when the daemon then died; the
# migration watches both daemons itself (migfw.testbed.migration_watchdog.Liveness).
OPEN_TIMEOUT_S = 15.0
KEEPALIVE_INTERVAL_S = 3
KEEPALIVE_COUNT = 3
PING_TIMEOUT_S = 5.0

_LOOP_LOCK = threading.Lock()
_LOOP_STARTED = False


def ensure_event_loop() -> None:
    """Register libvirt's default event loop and run it in a daemon thread, once per process.

    Connections opened before it carry neither events nor keepalives."""
    global _LOOP_STARTED
    import libvirt

    with _LOOP_LOCK:
        if _LOOP_STARTED:
            return
        libvirt.virEventRegisterDefaultImpl()

        def loop() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=loop, name="libvirt-events", daemon=True).start()
        _LOOP_STARTED = True


class NoAnswer(MigfwError):
    """A libvirt daemon accepted the connection but did not answer in time."""


def open_libvirt(uri: str, timeout_s: float = OPEN_TIMEOUT_S, keepalive: bool = True):
    """libvirt.open(uri), bounded in time, with keepalives on (-> libvirt.virConnect).

    Raises NoAnswer after `timeout_s` (the opening thread closes the connection if it is
    answered later) and libvirt.libvirtError as libvirt.open does."""
    import libvirt

    _quiet_libvirt()
    ensure_event_loop()
    result: dict[str, Any] = {}
    lock = threading.Lock()
    returned = threading.Event()

    def run() -> None:
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            result["error"] = exc
        else:
            with lock:
                if result.get("abandoned"):  # answered too late: nobody will use it
                    with contextlib.suppress(libvirt.libvirtError):
                        conn.close()
                    return
                result["conn"] = conn
        finally:
            returned.set()

    threading.Thread(target=run, name="libvirt-open", daemon=True).start()
    if not returned.wait(timeout_s):
        with lock:
            if "conn" not in result and "error" not in result:
                result["abandoned"] = True
                raise NoAnswer(f"libvirt at {uri} did not answer within {timeout_s:.0f} s")
    if "error" in result:
        raise result["error"]
    conn = result["conn"]
    if keepalive:
        try:
            conn.setKeepAlive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT)
        except libvirt.libvirtError:
            pass  # a server without keepalive support: calls stay unbounded there
    return conn


def libvirtd_answers(uri: str, timeout_s: float = PING_TIMEOUT_S) -> str | None:
    """None when the daemon at `uri` answers a new connection and a call within
    `timeout_s`; else what happened (one line)."""
    import libvirt

    started = time.monotonic()
    try:
        conn = open_libvirt(uri, timeout_s, keepalive=False)
    except NoAnswer as exc:
        return str(exc)
    except libvirt.libvirtError as exc:
        return f"cannot connect: {exc}"
    answered = threading.Event()

    def call() -> None:
        with contextlib.suppress(libvirt.libvirtError):
            conn.getLibVersion()
            answered.set()

    worker = threading.Thread(target=call, name="libvirt-ping", daemon=True)
    worker.start()
    if answered.wait(max(0.5, timeout_s - (time.monotonic() - started))):
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()
        return None
    return f"libvirt at {uri} accepted a connection but did not answer a call"


def qemu_answers(uri: str, vm_name: str, timeout_s: float = PING_TIMEOUT_S) -> str | None:
    """None when the QEMU of `vm_name` (through the daemon at `uri`) answers a read-only
    monitor query (`query-status`) within `timeout_s`, or no such domain runs there; else
    what happened (one line). A daemon that does not answer is libvirtd_answers's case."""
    import libvirt

    try:
        import libvirt_qemu
    except ImportError:
        return None
    try:
        conn = open_libvirt(uri, timeout_s, keepalive=False)
    except (NoAnswer, libvirt.libvirtError):
        return None  # the daemon's problem, not QEMU's
    outcome: dict[str, Any] = {}
    answered = threading.Event()

    def call() -> None:
        try:
            dom = conn.lookupByName(vm_name)
            if dom.isActive():
                libvirt_qemu.qemuMonitorCommand(dom, '{"execute":"query-status"}', 0)
        except libvirt.libvirtError as exc:
            outcome["error"] = str(exc)
        answered.set()

    threading.Thread(target=call, name="qemu-ping", daemon=True).start()
    if not answered.wait(timeout_s):
        return f"no answer to a monitor query within {timeout_s:.0f} s"
    with contextlib.suppress(libvirt.libvirtError):
        conn.close()
    error = outcome.get("error", "")
    # A domain that is gone is not a hung QEMU; a monitor that cannot be reached is.
    if not error or "not found" in error or "not running" in error:
        return None
    return f"monitor query failed: {error}"


def connect(bed: Testbed, host: str, keepalive: bool = True):  # -> libvirt.virConnect
    import libvirt

    uri = bed.hosts[host].uri
    try:
        return open_libvirt(uri, keepalive=keepalive)
    except NoAnswer as exc:
        raise NoAnswer(f"host {host}: libvirtd does not answer ({exc})") from None
    except libvirt.libvirtError as exc:
        raise MigfwError(f"host {host}: cannot connect to libvirt at {uri}: {exc}") from exc


def _state(dom) -> int:
    return dom.state()[0]


def vm_locations(bed: Testbed) -> dict[str, str]:
    """host → 'running' | 'paused' | other state name, for hosts where the domain is active."""
    import libvirt

    names = {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_PAUSED: "paused"}
    found = {}
    for host in bed.hosts:
        conn = connect(bed, host)
        try:
            dom = conn.lookupByName(bed.vm_name)
            if dom.isActive():
                found[host] = names.get(_state(dom), f"state{_state(dom)}")
        except libvirt.libvirtError:
            pass
        finally:
            conn.close()
    return found


def find_vm(bed: Testbed) -> str | None:
    """The host where the VM runs (a paused copy elsewhere does not count)."""
    locations = vm_locations(bed)
    running = [h for h, s in locations.items() if s == "running"]
    return running[0] if len(running) == 1 else None


def serial_log(bed: Testbed, host: str) -> Path | None:
    roots = bed.extra.get("host_roots")
    if not roots:
        return None
    return Path(roots[host]) / bed.extra["serial_log"].lstrip("/")


# Kernel messages that mean the guest is hurt (oops, lockup, corrupted virtio ring, panic).
CONSOLE_ALERT = re.compile(
    r"BUG:|Oops|soft lockup|hung_task|not a head|WARNING:|Kernel panic|general protection"
    r"|corruption|RIP:|Call Trace"
)


def guest_console(
    bed: Testbed, host: str, max_alerts: int = 20
) -> tuple[str, dict[str, Any]] | None:
    """The guest's serial console on `host` and its alarming lines, or None when empty or
    unknown (external provider). libvirt recreates the file when a migration arrives, so on
    a destination it holds only what the guest printed since it arrived there."""
    log = serial_log(bed, host)
    if log is None or not log.exists():
        return None
    text = log.read_text(errors="replace")
    if not text.strip():
        return None
    lines = text.splitlines()
    alerts = [line.strip() for line in lines if CONSOLE_ALERT.search(line)]
    return text, {"host": host, "lines": len(lines), "alerts": alerts[:max_alerts],
                  "alerts_total": len(alerts)}  # fmt: skip


def wait_ready(bed: Testbed, host: str, timeout: float = 90.0) -> float:
    """Seconds until the guest printed its ready marker on the serial console."""
    log = serial_log(bed, host)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if log and log.exists() and READY_MARKER in log.read_text(errors="replace"):
            return time.monotonic() - started
        time.sleep(0.1)
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log and log.exists() else []
    raise MigfwError(
        f"VM {bed.vm_name} on host {host}: no ready marker after {timeout:.0f} s "
        f"(serial log {log}: {tail[0] if tail else 'empty'})"
    )


def destroy_vm(bed: Testbed) -> list[str]:
    """Destroy the VM wherever it is active (local provider only)."""
    import libvirt

    removed = []
    for host in bed.hosts:
        try:
            conn = connect(bed, host)
        except MigfwError:
            continue
        try:
            dom = conn.lookupByName(bed.vm_name)
            if dom.isActive():
                dom.destroy()
                removed.append(f"domain {bed.vm_name} on host {host}")
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefine()
        except libvirt.libvirtError:
            pass
        finally:
            conn.close()
    return removed


def start_vm(bed: Testbed, host: str = "A") -> float:
    """Create the (transient) domain on `host` and wait until it is ready; returns boot s."""
    import libvirt

    xml = render_domain_xml(domain_params(bed))
    log = serial_log(bed, host)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")
    conn = connect(bed, host)
    try:
        started = time.monotonic()
        conn.createXML(xml, 0)
    except libvirt.libvirtError as exc:
        raise MigfwError(f"host {host}: cannot start VM {bed.vm_name}: {exc}") from exc
    finally:
        conn.close()
    wait_ready(bed, host)
    return time.monotonic() - started


def ensure_vm(bed: Testbed) -> str:
    """Make sure exactly one running VM exists; (re)provision it on host A if not.

    Used after a failed migration too: a VM left paused or on both hosts is replaced.
    """
    locations = vm_locations(bed)
    running = [h for h, s in locations.items() if s == "running"]
    if len(running) == 1 and len(locations) == 1:
        return running[0]
    if bed.provider != "local":
        if len(running) == 1:
            return running[0]
        raise MigfwError(
            f"external testbed: domain {bed.vm_name} is not running on exactly one host "
            f"({locations or 'nowhere'})"
        )
    if len(running) == 1:
        # A paused leftover on the other host (aborted migration): remove only that copy.
        import libvirt

        for host, state in locations.items():
            if state != "running":
                conn = connect(bed, host)
                with contextlib.suppress(libvirt.libvirtError):
                    conn.lookupByName(bed.vm_name).destroy()
                conn.close()
        return running[0]
    paused = [h for h, st in locations.items() if st == "paused"]
    if len(paused) == 1 and len(locations) == 1:
        # An aborted migration can leave the only copy paused on its source: resume it.
        import libvirt

        conn = connect(bed, paused[0])
        try:
            conn.lookupByName(bed.vm_name).resume()
            return paused[0]
        except libvirt.libvirtError:
            pass
        finally:
            conn.close()
    destroy_vm(bed)
    boot = start_vm(bed, "A")
    bed.extra["last_boot_s"] = round(boot, 2)
    return "A"
