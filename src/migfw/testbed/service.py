"""The `service` workload: the guest's allowed services under steady request load.

A load, not a probe: from where the prober runs (its namespace on the local testbed; this
machine for the external provider without a `prober_host`), one new TCP connection per
request to each of the guest's services that the ruleset passes from the prober
(config/ruleset.yaml: FTP on tcp/21 by S1/F1, SSH on tcp/22 by D5; HTTP on tcp/80 is served
but S2 blocks it from the prober), at `rate_hz` requests per second per service, service i
of n sent at t0 + (k + i/n)/rate whatever earlier requests do (open loop, many may be in
flight).

One request: connect, then
* `ftp`: read the `220` greeting, send `QUIT`, read `221` (the guest's migfw-ftpd);
* `ssh`: read the server's `SSH-` identification line, then close (no key exchange);
and its outcome: `ok`, `refused` (RST to the SYN), `timeout` (no outcome in `timeout_s`),
`reset` (RST after connecting), `closed` (EOF before the answer), `unreachable` (ICMP) or
`error`. Each row of `service.csv` (header migfw.trials.contract.SERVICE_HEADER) is one
request with its send time (connect() called) and completion time, epoch ns.

`python -m migfw.testbed.service --target IP --service ftp:21 --service ssh:22 --rate 2
--log service.csv` prints `READY {json}` at once, requests until SIGTERM, waits for the
outcome of every request in flight (at most `--timeout`), writes the log atomically and
prints `DONE {json}`. The process management is the flows client's (migfw.testbed.flows).
"""

from __future__ import annotations

import argparse
import csv
import errno
import selectors
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.io import atomic_write
from migfw.testbed.flows import FlowSession, client_main, error_text
from migfw.trials.contract import SERVICE_HEADER, SERVICE_OUTCOMES

# The guest's services the ruleset passes from the prober, and what their answer starts with.
SERVICES = {"ftp": b"220", "ssh": b"SSH-"}
ALLOWED = ("ftp:21", "ssh:22")
TIMEOUT_S = 5.0  # > the 1 s SYN retransmission: a request sent into the pause can still be ok
ERRNO_OUTCOME = {
    errno.ECONNREFUSED: "refused",
    errno.ECONNRESET: "reset",
    errno.EPIPE: "reset",
    errno.ETIMEDOUT: "timeout",
    errno.EHOSTUNREACH: "unreachable",
    errno.ENETUNREACH: "unreachable",
}


class Request:
    """One connection: its socket, what it waits for, and its row."""

    __slots__ = ("service", "port", "seq", "sock", "t_send", "t_done", "outcome", "detail",
                 "buf", "stage")  # fmt: skip

    def __init__(self, service: str, port: int, seq: int) -> None:
        self.service, self.port, self.seq = service, port, seq
        self.sock: socket.socket | None = None
        self.t_send = time.time_ns()
        self.t_done: int | None = None
        self.outcome = ""
        self.detail = ""
        self.buf = b""
        self.stage = "connect"  # connect -> answer (ftp: -> bye) -> done

    def finish(self, outcome: str, detail: str = "") -> None:
        self.t_done, self.outcome, self.detail = time.time_ns(), outcome, detail.replace(",", ";")
        self.stage = "done"
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def fail(self, exc: OSError) -> None:
        outcome = ERRNO_OUTCOME.get(exc.errno or 0, "error")
        self.finish(outcome, "" if outcome != "error" else error_text(exc))

    def row(self) -> list[Any]:
        return [self.service, self.seq, self.port, self.t_send,
                "" if self.t_done is None else self.t_done, self.outcome, self.detail]  # fmt: skip


def _open(req: Request, target: str, sel: selectors.BaseSelector) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    req.sock = sock
    req.t_send = time.time_ns()
    code = sock.connect_ex((target, req.port))
    if code not in (0, errno.EINPROGRESS):
        req.fail(OSError(code, errno.errorcode.get(code, str(code))))
        return
    sel.register(sock, selectors.EVENT_WRITE, req)


def _step(req: Request, sel: selectors.BaseSelector) -> None:
    """Advance one request whose socket is ready."""
    sock = req.sock
    assert sock is not None
    if req.stage == "connect":
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        sel.unregister(sock)
        if code:
            req.fail(OSError(code, errno.errorcode.get(code, str(code))))
            return
        req.stage = "answer"
        sel.register(sock, selectors.EVENT_READ, req)
        return
    try:
        chunk = sock.recv(4096)
    except BlockingIOError:
        return
    except OSError as exc:
        sel.unregister(sock)
        req.fail(exc)
        return
    if not chunk:
        sel.unregister(sock)
        req.finish("closed", f"EOF while waiting for the {req.stage}")
        return
    req.buf += chunk
    while b"\n" in req.buf and req.stage != "done":
        line, req.buf = req.buf.split(b"\n", 1)
        line = line.rstrip(b"\r")
        if req.service == "ssh":
            if line.startswith(b"SSH-"):  # RFC 4253: other lines may precede it
                sel.unregister(sock)
                req.finish("ok")
        elif req.stage == "answer":
            if line.startswith(b"220-"):  # a multi-line greeting goes on
                continue
            if not line.startswith(b"220"):
                sel.unregister(sock)
                req.finish("error", f"unexpected greeting {line[:30]!r}")
                return
            req.stage = "bye"
            try:
                sock.send(b"QUIT\r\n")
            except OSError as exc:
                sel.unregister(sock)
                req.fail(exc)
                return
        elif line.startswith(b"221"):
            sel.unregister(sock)
            req.finish("ok")
        else:
            sel.unregister(sock)
            req.finish("error", f"unexpected reply to QUIT {line[:30]!r}")


def run_service(
    target: str,
    services: list[tuple[str, int]],
    rate_hz: float,
    log: Path,
    stop: threading.Event | None = None,
    duration_s: float | None = None,
    timeout_s: float = TIMEOUT_S,
    ready: Any = None,
) -> dict[str, Any]:
    """Request each service at `rate_hz` until `stop`/`duration_s`, then wait for every
    request's outcome (each ends by `timeout_s`); writes the log, returns a summary."""
    if not rate_hz > 0:
        raise MigfwError(f"service: rate {rate_hz!r} Hz must be positive")
    for name, _port in services:
        if name not in SERVICES:
            raise MigfwError(f"service: {name!r} is not one of {', '.join(SERVICES)}")
    stop = stop or threading.Event()
    if ready is not None:
        ready({"services": [f"{n}:{p}" for n, p in services], "rate_hz": rate_hz})
    sel = selectors.DefaultSelector()
    requests: list[Request] = []
    pending: list[Request] = []
    # The services take turns: service i of n at t0 + (k + i/n)/rate, so the guest gets a
    # request every 1/(n x rate) s and the load's time resolution is that, not 1/rate.
    step = 1e9 / (rate_hz * len(services))
    t0 = time.monotonic_ns()
    end = None if duration_s is None else t0 + int(duration_s * 1e9)
    k = 0
    sending = True
    try:
        while sending or pending:
            now = time.monotonic_ns()
            if sending and (stop.is_set() or (end is not None and now >= end)):
                sending = False
            due = t0 + int(round(k * step))
            if sending and now >= due:
                name, port = services[k % len(services)]
                req = Request(name, port, k // len(services))
                requests.append(req)
                _open(req, target, sel)
                if req.stage != "done":
                    pending.append(req)
                k += 1
                continue
            wait = (due - now) / 1e9 if sending else 0.05
            for key, _ in sel.select(timeout=max(0.0, min(wait, 0.05))):
                _step(key.data, sel)
            wall = time.time_ns()
            for req in pending:
                if req.stage != "done" and wall - req.t_send > timeout_s * 1e9:
                    sel.unregister(req.sock)
                    req.finish("timeout")
            pending = [r for r in pending if r.stage != "done"]
    finally:
        for req in pending:
            if req.sock is not None:
                req.sock.close()
        sel.close()
    with atomic_write(log, newline="") as handle:
        out = csv.writer(handle)
        out.writerow(SERVICE_HEADER)
        out.writerows(r.row() for r in requests)
    return summarize(requests, rate_hz, timeout_s)


def summarize(requests: list[Request], rate_hz: float, timeout_s: float) -> dict[str, Any]:
    """trial.json's `workload` summary: counts by service and outcome (the analysis reads
    service.csv itself)."""
    by: dict[str, dict[str, int]] = {}
    for r in requests:
        counts = by.setdefault(f"{r.service}:{r.port}", dict.fromkeys(SERVICE_OUTCOMES, 0))
        counts[r.outcome] += 1
    ok = sum(c["ok"] for c in by.values())
    counts = {s: {k: v for k, v in c.items() if v} for s, c in by.items()}
    return {"rate_hz": rate_hz, "timeout_s": timeout_s, "requests": len(requests), "ok": ok,
            "failed": len(requests) - ok, "by_service": counts}  # fmt: skip


def parse_service(spec: str) -> tuple[str, int]:
    name, sep, port = spec.partition(":")
    if not sep or not port.isdigit() or name not in SERVICES:
        raise MigfwError(f"service: --service {spec!r}: expected NAME:PORT, NAME one of "
                         f"{', '.join(SERVICES)}")  # fmt: skip
    return name, int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m migfw.testbed.service", description=__doc__)
    p.add_argument("--target", required=True)
    p.add_argument("--service", action="append", required=True, help="NAME:PORT, ftp|ssh")
    p.add_argument("--rate", type=float, default=2.0, help="requests per second per service")
    p.add_argument("--log", type=Path, required=True)
    p.add_argument("--duration", type=float, default=None)
    p.add_argument("--timeout", type=float, default=TIMEOUT_S)
    args = p.parse_args(argv)

    def work(stop: threading.Event, ready: Any) -> dict[str, Any]:
        services = [parse_service(s) for s in args.service]
        return run_service(args.target, services, args.rate, args.log, stop, args.duration,
                           args.timeout, ready)  # fmt: skip

    return client_main("service", work)


class ServiceSession(FlowSession):
    """The request generator in `netns` (None: this machine), managed as the flows client."""

    name = "service"

    def __init__(
        self,
        netns: str | None,
        target: str,
        services: list[str],
        rate_hz: float,
        log_path: str | Path,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        super().__init__(netns, target, services, rate_hz, log_path, timeout_s)

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "migfw.testbed.service", "--target", self.target,
               "--rate", repr(self.rate_hz), "--log", str(self.log_path),
               "--timeout", repr(self.timeout_s)]  # fmt: skip
        for spec in self.flows:
            cmd += ["--service", spec]
        return cmd


if __name__ == "__main__":
    sys.exit(main())
