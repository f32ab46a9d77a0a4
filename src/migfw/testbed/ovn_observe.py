"""What OVN did during a trial, read-only: the VM's Southbound Port_Binding row followed live
(`BindingMonitor`: where the port is bound, chassis by name, each change time-stamped), when each
host's ovn-controller installed the port's flows (`flow_install`), and OVS's conntrack dump
turned into `conntrack -L`'s listing (`ovs_to_listing`). The site and its daemons are
migfw.testbed.ovn's.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.testbed.ovn import OvnSite, sbctl, vsctl

# ---------------------------------------------------------------------- Port_Binding monitor

BINDING_COLUMNS = ("logical_port", "chassis", "additional_chassis", "requested_chassis",
                   "requested_additional_chassis", "options", "up")  # fmt: skip


def _ovsdb_value(value: Any) -> Any:
    """An OVSDB JSON datum as Python: uuid -> str, set -> list, map -> dict."""
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
        kind, body = value
        if kind == "uuid":
            return body
        if kind == "set":
            return [_ovsdb_value(v) for v in body]
        if kind == "map":
            return {k: _ovsdb_value(v) for k, v in body}
    return value


def chassis_names(site: OvnSite) -> dict[str, str]:
    """SB Chassis row UUID -> chassis name."""
    data = json.loads(sbctl(site, "--format=json", "--columns=_uuid,name", "list", "Chassis"))
    return {_ovsdb_value(row[0]): row[1] for row in data["data"]}


def binding_rows(text: str, port: str) -> list[dict[str, Any]]:
    """The `new`/`initial`/`insert` rows of logical port `port` in one line of
    `ovsdb-client monitor --format=json` output (columns BINDING_COLUMNS)."""
    doc = json.loads(text)
    heads = doc["headings"]
    out = []
    for raw in doc["data"]:
        row = dict(zip(heads, raw, strict=False))
        if row.get("action") in ("old", "delete") or row.get("logical_port") != port:
            continue
        out.append({c: _ovsdb_value(row.get(c)) for c in BINDING_COLUMNS if c in row})
    return out


def _one(value: Any) -> Any:
    """An optional column (a set of 0 or 1) as its value or None."""
    if isinstance(value, list):
        return value[0] if value else None
    return value


def binding_state(row: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """What a Port_Binding row says about where the port is bound, chassis by name."""

    def name(uuid: Any) -> Any:
        return names.get(uuid, uuid)

    options = row.get("options") or {}
    extra = row.get("additional_chassis") or []
    return {
        "chassis": name(_one(row.get("chassis"))),
        "additional_chassis": sorted(
            name(u) for u in (extra if isinstance(extra, list) else [extra])
        ),
        "requested_chassis": options.get("requested-chassis"),
        "activation_strategy": options.get("activation-strategy"),
        "additional_chassis_activated": options.get("additional-chassis-activated"),
        "up": _one(row.get("up")),
    }


def transitions(samples: list[tuple[float, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Time-stamped binding states, keeping only those that differ from the one before."""
    out: list[dict[str, Any]] = []
    for t, st in samples:
        if not out or any(out[-1][k] != v for k, v in st.items()):
            out.append({"t": round(t, 6), **st})
    return out


class BindingMonitor:
    """`ovsdb-client monitor` of the SB Port_Binding table, the VM's row; every update is
    stamped with time.time() as it arrives (the clock of the captures and the hypervisor's
    events; ovsdb-client's own --timestamp crashes with --format=json in OVS 3.1)."""

    def __init__(self, site: OvnSite, raw_path: Path | None = None) -> None:
        self.site, self.raw_path = site, raw_path
        self.samples: list[tuple[float, dict[str, Any]]] = []
        self.names: dict[str, str] = {}
        self.proc: subprocess.Popen | None = None
        self.thread: Any = None
        self.errors: list[str] = []

    def start(self) -> BindingMonitor:
        import threading

        self.names = chassis_names(self.site)
        self.proc = subprocess.Popen(
            [
                "ovsdb-client",
                "monitor",
                "--format=json",
                self.site.central_db(),
                "OVN_Southbound",
                "Port_Binding",
                ",".join(BINDING_COLUMNS),
            ],  # fmt: skip
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        ready = threading.Event()
        self.thread = threading.Thread(target=self._read, args=(ready,), daemon=True)
        self.thread.start()
        if not ready.wait(10):
            self.stop()
            raise MigfwError("ovsdb-client monitor of OVN_Southbound Port_Binding: no "
                             "initial rows after 10 s")  # fmt: skip
        return self

    def _read(self, ready: Any) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        raw = open(self.raw_path, "a") if self.raw_path else None  # noqa: SIM115
        try:
            for line in self.proc.stdout:
                t = time.time()
                if raw:
                    raw.write(json.dumps({"t": t, "update": line.strip()}) + "\n")
                    raw.flush()
                try:
                    rows = binding_rows(line, self.site.vm_port)
                except (ValueError, KeyError) as exc:
                    self.errors.append(f"unreadable monitor line: {exc}")
                    continue
                for row in rows:
                    self.samples.append((t, binding_state(row, self.names)))
                ready.set()
        finally:
            if raw:
                raw.close()

    def stop(self) -> dict[str, Any]:
        from migfw.testbed.procs import kill_pid

        if self.proc is not None:
            kill_pid(self.proc.pid, grace=1.0)
            if self.thread is not None:
                self.thread.join(timeout=5)
            self.proc = None
        return {"port": self.site.vm_port, "transitions": transitions(self.samples),
                "errors": self.errors}  # fmt: skip


def flow_install(site: OvnSite, host: str) -> dict[str, Any]:
    """When host's ovn-controller had installed the VM port's flows (OVS Interface
    external_ids ovn-installed-ts, ms since the epoch) and the port's OpenFlow number."""
    out = vsctl(site, host, "--format=json", "--columns=name,ofport,external_ids", "find",
                "Interface", f"external_ids:iface-id={site.vm_port}")  # fmt: skip
    data = json.loads(out)["data"]
    if not data:
        return {"host": host, "plugged": False, "ovn_installed": None, "ofport": None}
    name, ofport, ext = (_ovsdb_value(v) for v in data[0])
    ts = ext.get("ovn-installed-ts")
    return {"host": host, "plugged": True, "iface": name, "ofport": ofport,
            "ovn_installed": ext.get("ovn-installed") == "true",
            "ovn_installed_t": int(ts) / 1000 if ts else None}  # fmt: skip


# ---------------------------------------------------------------------- conntrack dumps

_OVS_TUPLE = re.compile(r"(orig|reply)=\(([^)]*)\)")


def ovs_to_listing(text: str) -> str:
    """`ovs-appctl dpctl/dump-conntrack` lines as `conntrack -L`'s plain listing (proto,
    number, timeout 0, TCP state, the original then the reply tuple, then mark and zone), the
    format the flow analysis reads (migfw.measure.flowstate); lines it cannot read are left
    out. OVS prints e.g. `tcp,orig=(src=A,dst=B,sport=1,dport=2),reply=(...),zone=1,mark=1,
    protoinfo=(state=ESTABLISHED)`."""
    numbers = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132}
    out = [
        "# converted from ovs-appctl dpctl/dump-conntrack "
        "(migfw.testbed.ovn_observe.ovs_to_listing)"
    ]
    for line in text.splitlines():
        proto = line.split(",", 1)[0].strip()
        tuples = dict(_OVS_TUPLE.findall(line))
        if proto not in numbers or "orig" not in tuples:
            continue
        state = re.search(r"state=([A-Z_0-9]+)", line)
        parts = [proto, str(numbers[proto]), "0"] + ([state[1]] if state else [])
        for direction in ("orig", "reply"):
            fields = dict(
                kv.split("=", 1) for kv in tuples.get(direction, "").split(",") if "=" in kv
            )
            parts += [f"{k}={fields[k]}" for k in ("src", "dst", "sport", "dport") if k in fields]
        for key in ("mark", "zone"):
            found = re.search(rf"(?:^|,){key}=(\d+)", line)
            parts.append(f"{key}={found[1] if found else 0}")
        out.append(" ".join(parts))
    return "\n".join(out) + "\n"
