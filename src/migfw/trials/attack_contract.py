"""The attack-window part of the trial-folder contract: attacker sides, flows, conntrack dumps
and the factors of a host firewall (issue 22). docs/attack_window.md defines every file and
field; this module holds the names both ends use, so the testbed writes exactly what the
analysis (migfw.measure.attack) reads.

Every file here is optional: a trial without it gets empty cells for what it would give.
Times are CLOCK_REALTIME epoch nanoseconds (files) or seconds (trial.json), the capture's
clock, unless a side's `clock` says `guest`.
"""

from __future__ import annotations

import re
from typing import Any

# --------------------------------------------------------------------------- factors
# Factors of a host firewall's programming (trial.json `factors`, trials.csv columns; slug
# codes in migfw.trials.design.FACTOR_CODES).
TRIGGERS = ("pre", "incoming", "resume")  # destination programmed before / at incoming / at resume
PORT_DEFAULTS = ("open", "closed")  # the VM's new port passes or drops until programmed
TCP_LOOSE = (0, 1)  # net.netfilter.nf_conntrack_tcp_loose on every conntrack of the trial
FACTOR_LEVELS: dict[str, tuple[Any, ...]] = {
    "trigger": TRIGGERS,
    "port_default": PORT_DEFAULTS,
    "nf_conntrack_tcp_loose": TCP_LOOSE,
}
# `trigger`, `agent_delay_ms` and `port_default` apply only to the placements whose
# destination host is programmed by migfw's agent (null for the others): the registry's
# names(agent=True), migfw.testbed.placements.
AGENT_FACTORS = ("trigger", "agent_delay_ms", "port_default")
# The factors attack_window.csv and the flows table group by (besides experiment, placement).
ATTACK_FACTORS = ("agent_delay_ms", "trigger", "port_default", "nf_conntrack_tcp_loose")

# --------------------------------------------------------------------------- attackers
# Where an attacker sits. Inbound sides send TCP SYNs to the VM's blocked (and allowed) port
# and capture the answers; `egress` is the guest itself sending SYNs to a destination its
# ruleset blocks, captured where they would arrive (the sink).
ATTACKER_SIDES = ("switch", "dst_cotenant", "src_cotenant", "egress")
INBOUND_SIDES = ("switch", "dst_cotenant", "src_cotenant")
SIDE_TEXT = {
    "switch": "attacker on the switch between the hosts",
    "dst_cotenant": "co-tenant on the destination host's bridge",
    "src_cotenant": "co-tenant on the source host's bridge",
    "egress": "the guest's own SYNs to a destination its ruleset blocks",
}
SENDLOG_HEADER = ["port", "index", "t_sched_ns", "t_send_ns"]
# A side's probe to port p leaves from source port base + p % 1000 (switch 40000, as today):
# answers are told apart by the port they go to, whichever capture they show up in.
SIDE_SPORT_BASE = {"switch": 40000, "dst_cotenant": 41000, "src_cotenant": 42000, "egress": 43000}
CLOCKS = ("host", "guest")


def probe_sport(side: str, dport: int) -> int:
    """The source port of a side's SYN probes to `dport`."""
    return SIDE_SPORT_BASE[side] + int(dport) % 1000


def side_files(side: str) -> tuple[str, str]:
    """(capture, send log) file names of an attacker side; `switch` keeps today's names."""
    if side not in ATTACKER_SIDES:
        raise ValueError(f"unknown attacker side {side!r}")
    if side == "switch":
        return "attack.pcap", "attack_sendlog.csv"
    return f"attack_{side}.pcap", f"attack_{side}_sendlog.csv"


def side_meta(meta: dict[str, Any], side: str) -> dict[str, Any] | None:
    """trial.json's description of a side: `attackers.<side>`, for `switch` else `attack`."""
    found = (meta.get("attackers") or {}).get(side)
    if found is None and side == "switch":
        found = meta.get("attack")
    return found


# --------------------------------------------------------------------------- flows
FLOWS_HEADER = ["flow", "seq", "t_send_ns", "t_reply_ns", "event"]
FLOW_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
INITIATIVES = ("prober", "guest")
# Flows with a fixed role, for trials whose trial.json does not describe them (older trials):
# who speaks first after the resume, and whether only connection state admits the flow.
KNOWN_FLOWS: dict[str, dict[str, Any]] = {
    # FTP control, rule S1/F1: NOOP at 100 Hz, so after the resume either side's segment may
    # come first (one in flight at the pause); flows.pcap says which.
    "stateful": {"initiative": None, "state_only": False},
    "established": {"initiative": "prober", "state_only": True},  # echo: guest answers at once
    "guest_first": {"initiative": "guest", "state_only": True},  # guest holds, answers on its tick
}
FLOWS_CAPTURE = "flows.pcap"
TERMINAL_EVENTS = ("reset", "closed", "timeout", "error")


def flow_meta(meta: dict[str, Any], name: str) -> dict[str, Any]:
    """What trial.json says about one flow: port, local_port, initiative, state_only.

    `flows.flows.<name>` (this contract), else the older `flows.<name>` {port}; initiative
    and state_only default to KNOWN_FLOWS (None when the flow is unknown and undescribed).
    """
    record = meta.get("flows") or {}
    described = (record.get("flows") or {}).get(name) or record.get(name) or {}
    known = KNOWN_FLOWS.get(name, {})
    return {
        "port": described.get("port"),
        "local_port": described.get("local_port"),
        "initiative": described.get("initiative", known.get("initiative")),
        "state_only": described.get("state_only", known.get("state_only")),
    }


def allow_removed_at(meta: dict[str, Any]) -> float | None:
    """When the last temporary allow rule was removed (epoch s): `flows.allow_removed`, else
    the latest `removed_at` of `flows.temporary_rules`, else the older single
    `flows.temporary_rule`; None when no allow rule was used."""
    record = meta.get("flows") or {}
    if record.get("allow_removed") is not None:
        return float(record["allow_removed"])
    rules = list(record.get("temporary_rules") or [])
    if record.get("temporary_rule"):
        rules.append(record["temporary_rule"])
    times = [float(r["removed_at"]) for r in rules if r.get("removed_at") is not None]
    return max(times) if times else None


# --------------------------------------------------------------------------- conntrack
# `conntrack -L` (conntrack-tools; `-o extended` too) of each host's namespace and of the
# guest, filtered to the VM's address or not, at three moments.
CONNTRACK_DIR = "conntrack"
CONNTRACK_HOSTS = ("src", "dst", "guest")  # the migration's source and destination hosts
CONNTRACK_MOMENTS = ("before", "resume", "end")  # before migrating, just after resume, end


def conntrack_file(host: str, moment: str) -> str:
    """A dump's path inside the trial folder, e.g. conntrack/dst-resume.txt."""
    if host not in CONNTRACK_HOSTS or moment not in CONNTRACK_MOMENTS:
        raise ValueError(f"no conntrack dump {host}-{moment}")
    return f"{CONNTRACK_DIR}/{host}-{moment}.txt"


# --------------------------------------------------------------------------- experiments
# The experiment the verdict prefers: config/attack.yaml's full grid when it ran, else the
# default run's `placement` experiment.
FULL_GRID_EXPERIMENT = "attack"
DEFAULT_ATTACK_EXPERIMENT = "placement"
