"""The clocks of the hosts a trial involves, against this machine's.

The prober host timestamps the probes, the controller (this machine) timestamps the
migration, the hypervisors run it. `clock_offsets` measures each host's clock against this
machine's NTP-style over an SSH channel - t1 send, remote reads its clock, t4 receive;
offset = t_remote - (t1 + t4) / 2, bounded by +-(t4 - t1) / 2; the sample with the smallest
round trip of several wins - and derives prober - hypervisor offsets, whose error bound is
the sum of the two bounds.
"""

from __future__ import annotations

import time
from typing import Any

from migfw.errors import MigfwError
from migfw.testbed.remote import libvirt_ssh_target, open_shell

# Print this host's CLOCK_REALTIME for every line read; `date` where python3 is missing.
CLOCK_LOOP = (
    "python3 -u -c 'import sys, time\nfor _ in sys.stdin: print(time.time_ns(), flush=True)'"
    " 2>/dev/null || while read -r _; do date +%s%N; done"
)


def measure_offset(shell: Any, samples: int = 12) -> dict[str, float]:
    """The remote clock minus this machine's (ms), with its bound and the best round trip."""
    chan = shell.conn.client.get_transport().open_session()
    try:
        chan.settimeout(10.0)
        chan.exec_command(CLOCK_LOOP)
        buf = b""
        best: tuple[int, float] | None = None  # (rtt_ns, offset_ns)
        for i in range(samples + 1):
            t1 = time.time_ns()
            chan.sendall(b"\n")
            while b"\n" not in buf:
                chunk = chan.recv(256)
                if not chunk:
                    raise MigfwError(f"ssh {shell.address}: clock reader exited")
                buf += chunk
            t4 = time.time_ns()
            line, _, buf = buf.partition(b"\n")
            if i == 0:
                continue  # the first answer pays for the interpreter's start
            remote = int(line.strip())
            rtt = t4 - t1
            if best is None or rtt < best[0]:
                best = (rtt, remote - (t1 + t4) / 2)
    except (OSError, ValueError, TimeoutError) as exc:
        raise MigfwError(f"ssh {shell.address}: clock measurement failed: {exc}") from None
    finally:
        chan.close()
    assert best is not None
    return {"offset_ms": round(best[1] / 1e6, 4), "error_ms": round(best[0] / 2e6, 4),
            "rtt_ms": round(best[0] / 1e6, 4), "samples": samples}  # fmt: skip


def clock_offsets(bed: Any) -> dict[str, Any]:
    """Offsets of the prober host and each hypervisor against this machine, and prober - each
    hypervisor (error bounds add). Hosts whose libvirt URI is not SSH are left out."""
    result: dict[str, Any] = {"reference": "controller", "at": time.time()}
    targets = {"prober": bed.extra["prober"]["target"]}
    for name, host in bed.hosts.items():
        target = libvirt_ssh_target(host.uri)
        if target:
            targets[name] = target
    for name, target in targets.items():
        shell = open_shell(target)
        try:
            result[name] = measure_offset(shell)
        finally:
            shell.close()
    for name in bed.hosts:
        if name in result:
            result[f"prober-{name}"] = {
                "offset_ms": round(result["prober"]["offset_ms"] - result[name]["offset_ms"], 4),
                "error_ms": round(result["prober"]["error_ms"] + result[name]["error_ms"], 4),
            }
    return result
