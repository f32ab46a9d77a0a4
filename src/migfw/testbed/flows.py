"""Stateful TCP flows across the migration: request/response at a constant rate.

Two long-lived TCP connections from the prober's namespace to services in the guest:

* `stateful`: the FTP control connection (tcp/21, passed by the ruleset's S1/F1 from the
  prober), one `NOOP` -> `200 OK` exchange per request;
* `established`: the guest's echo service (tcp/7), which no rule passes: the trial runner
  opens it while a temporary allow rule exists and removes the rule before migrating, so
  from then on only the firewall's connection-tracking state (`ct state established`)
  admits it. Whose conntrack follows the VM is the point.

Requests are sent at t0 + k/rate whatever the replies do (pipelined; TCP keeps them in
order, so replies are matched first-in first-out); each row of `flows.csv` is one request:
`flow,seq,t_send_ns,t_reply_ns,event` (epoch ns; t_reply_ns empty if never answered; event
on the row where it happened: `reset`, `closed`, `timeout`, `error:<text>`). A flow that hit
an event sends nothing more.

`python -m migfw.testbed.flows --target IP --flow stateful:21:ftp --flow established:7:echo
--rate 100 --log flows.csv` prints `READY {json}` once every flow is connected (or failed to
connect), runs until SIGTERM, writes the log atomically and prints `DONE {json}`.
"""

from __future__ import annotations

import argparse
import csv
import errno
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from migfw.errors import MigfwError
from migfw.io import atomic_write
from migfw.testbed.netns import netns_argv

FLOWS_HEADER = ["flow", "seq", "t_send_ns", "t_reply_ns", "event"]
# ftp: NOOP -> 200; echo: a line echoed at once; hold: a line echoed after the guest's tick
# (migfw-hold, tcp/8), the next request sent only once answered (issue 22's `guest_first`).
KINDS = ("ftp", "echo", "hold")
TERMINAL = ("reset", "closed", "timeout", "error")


def error_text(exc: OSError) -> str:
    """An OSError as CSV-safe text (no commas): the cell of a log row."""
    return (exc.strerror or str(exc)).replace(",", ";")


class Flow:
    """One connection, its outstanding requests and its rows."""

    def __init__(self, name: str, port: int, kind: str) -> None:
        if kind not in KINDS:
            raise MigfwError(f"flows: kind {kind!r} for {name} (known: {', '.join(KINDS)})")
        self.name, self.port, self.kind = name, port, kind
        self.sock: socket.socket | None = None
        self.rows: list[list[Any]] = []  # seq, t_send_ns, t_reply_ns|None, event
        self.outstanding: deque[int] = deque()
        self.buf = b""
        self.alive = False
        self.connected_at: int | None = None
        self.local_port: int | None = None
        self.next_seq = 0  # hold: its own request counter

    def connect(self, target: str, timeout_s: float) -> str | None:
        """Open the connection (and read the FTP greeting); None or the error text."""
        t = time.time_ns()
        try:
            sock = socket.create_connection((target, self.port), timeout=timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.kind == "ftp":
                greeting = b""
                while b"\n" not in greeting:
                    chunk = sock.recv(512)
                    if not chunk:
                        raise OSError("closed before the FTP greeting")
                    greeting += chunk
                if not greeting.startswith(b"220"):
                    raise OSError(f"unexpected FTP greeting {greeting[:40]!r}")
            sock.setblocking(False)
        except OSError as exc:
            text = error_text(exc)
            self.rows.append([0, t, None, f"error:connect {text}"])
            return text
        self.sock, self.alive, self.connected_at = sock, True, time.time_ns()
        self.local_port = sock.getsockname()[1]
        return None

    def request(self, seq: int) -> bytes:
        return b"NOOP\r\n" if self.kind == "ftp" else f"{seq}\n".encode()

    def send_next(self) -> None:
        """hold: the next request, once the previous one was answered."""
        self.send(self.next_seq)
        self.next_seq += 1

    def end(self, event: str) -> None:
        """A terminal event: mark it on the latest request's row and stop the flow."""
        if self.rows:
            self.rows[-1][3] = self.rows[-1][3] or event
        else:
            self.rows.append([0, time.time_ns(), None, event])
        self.alive = False

    def send(self, seq: int) -> None:
        assert self.sock is not None
        data = self.request(seq)
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self.rows.append([seq, time.time_ns(), None, ""])
            self.end("reset" if exc.errno in (errno.ECONNRESET, errno.EPIPE) else
                     f"error:{error_text(exc)}")  # fmt: skip
            return
        if sent != len(data):
            # Small requests never fill the socket buffer unless the peer is gone for long.
            self.rows.append([seq, time.time_ns(), None, ""])
            self.end("error:send buffer full")
            return
        self.rows.append([seq, time.time_ns(), None, ""])
        self.outstanding.append(len(self.rows) - 1)

    def receive(self) -> None:
        assert self.sock is not None
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self.end("reset" if exc.errno == errno.ECONNRESET else
                     f"error:{error_text(exc)}")  # fmt: skip
            return
        now = time.time_ns()
        if not chunk:
            self.end("closed")
            return
        self.buf += chunk
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if not self.outstanding:
                self.end("error:reply without request")
                return
            row = self.rows[self.outstanding.popleft()]
            expected = b"200" if self.kind == "ftp" else str(row[0]).encode()
            got = line.rstrip(b"\r")
            if not (got.startswith(expected) if self.kind == "ftp" else got == expected):
                row[3] = f"error:unexpected reply {got[:20]!r}".replace(",", ";")
                self.alive = False
                return
            row[2] = now

    def summary(self) -> dict[str, Any]:
        replies = sorted(r[2] for r in self.rows if r[2] is not None)
        gaps = [b - a for a, b in zip(replies, replies[1:], strict=False)]
        events = [r[3] for r in self.rows if r[3]]
        latency = [r[2] - r[1] for r in self.rows if r[2] is not None]
        return {
            "port": self.port,
            "local_port": self.local_port,
            "kind": self.kind,
            "requests": len(self.rows),
            "answered": len(replies),
            "events": events,
            "reset": "reset" in events,
            "survived": bool(self.rows) and not events and self.rows[-1][2] is not None,
            "longest_stall_ms": max(gaps) / 1e6 if gaps else None,
            "max_latency_ms": max(latency) / 1e6 if latency else None,
        }


def run_flows(
    target: str,
    flows: list[Flow],
    rate_hz: float,
    log: Path,
    stop: threading.Event | None = None,
    duration_s: float | None = None,
    timeout_s: float = 10.0,
    linger_s: float = 3.0,
    ready: Any = None,
) -> dict[str, Any]:
    """Connect every flow, then request at `rate_hz` each until `stop`/`duration_s`; a
    request unanswered for `timeout_s` ends its flow (`timeout`). After the stop, up to
    `linger_s` for the replies still due (a slow guest answers late, not never). Writes the
    log."""
    if not rate_hz > 0:
        raise MigfwError(f"flows: rate {rate_hz!r} Hz must be positive")
    stop = stop or threading.Event()
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, len(flows))) as pool:  # every flow at once
        errors = pool.map(lambda f: f.connect(target, min(timeout_s, 5.0)), flows)
        connect = {f.name: error for f, error in zip(flows, errors, strict=True)}
    if ready is not None:
        ready({"connected": {k: v is None for k, v in connect.items()}, "errors": connect})
    period = int(round(1e9 / rate_hz))
    t0 = time.monotonic_ns()
    end = None if duration_s is None else t0 + int(duration_s * 1e9)
    k = 0
    stopping_at: int | None = None
    while True:
        live = [f for f in flows if f.alive]
        now = time.monotonic_ns()
        if stopping_at is None and (stop.is_set() or (end is not None and now >= end)):
            stopping_at = now
        if stopping_at is not None and (
            now - stopping_at > linger_s * 1e9 or not any(f.outstanding for f in live)
        ):
            break
        if not live:
            if stopping_at is None:
                stop.wait(0.05)
                continue
            break
        due = t0 + k * period
        if stopping_at is None and now >= due:
            for f in live:
                if f.kind == "hold":
                    if not f.outstanding:  # the first request, or one after an answer
                        f.send_next()
                else:
                    f.send(k)
            k += 1
            continue
        wait = 0.05 if stopping_at is not None else max(0.0, (due - now) / 1e9)
        ready_socks, _, _ = select.select([f.sock for f in live], [], [], min(wait, 0.05))
        for f in live:
            if f.sock in ready_socks and f.alive:
                f.receive()
                if f.kind == "hold" and f.alive and not f.outstanding and stopping_at is None:
                    f.send_next()  # at once: the guest holds a request nearly all the time
        wall = time.time_ns()
        for f in live:
            if f.alive and f.outstanding and wall - f.rows[f.outstanding[0]][1] > timeout_s * 1e9:
                f.end("timeout")
    for f in flows:
        if f.sock is not None:
            f.sock.close()
    with atomic_write(log, newline="") as handle:
        out = csv.writer(handle)
        out.writerow(FLOWS_HEADER)
        for f in flows:
            for seq, t_send, t_reply, event in f.rows:
                out.writerow([f.name, seq, t_send, "" if t_reply is None else t_reply, event])
    return {"rate_hz": rate_hz, "flows": {f.name: f.summary() for f in flows}}


def parse_flow(spec: str) -> Flow:
    try:
        name, port, kind = spec.split(":")
        return Flow(name, int(port), kind)
    except ValueError:
        raise MigfwError(f"flows: --flow {spec!r}: expected NAME:PORT:KIND") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m migfw.testbed.flows", description=__doc__)
    p.add_argument("--target", required=True)
    p.add_argument("--flow", action="append", required=True, help="NAME:PORT:ftp|echo")
    p.add_argument("--rate", type=float, default=100.0, help="requests per second per flow")
    p.add_argument("--log", type=Path, required=True)
    p.add_argument("--duration", type=float, default=None)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--wait-go", action="store_true",
                   help="print WAITING, connect only after a line on stdin")  # fmt: skip
    args = p.parse_args(argv)
    if args.wait_go:  # started ahead (FlowSession.spawn): the imports are paid already
        print("WAITING", flush=True)
        if not sys.stdin.readline():
            return 2

    def work(stop: threading.Event, ready: Any) -> dict[str, Any]:
        flows = [parse_flow(s) for s in args.flow]
        return run_flows(args.target, flows, args.rate, args.log, stop, args.duration,
                         args.timeout, ready=ready)  # fmt: skip

    return client_main("flows", work)


def client_main(name: str, work: Any) -> int:
    """The client side of the session protocol: `work(stop, ready)` runs until `stop` (set by
    SIGTERM/SIGINT), calling `ready(info)` once it is under way; prints `READY {json}`, then
    `DONE {json}` with what `work` returned. One line on stderr and exit 2 on an error."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stats = work(stop, lambda info: print("READY " + json.dumps(info), flush=True))
    except (OSError, MigfwError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    print("DONE " + json.dumps(stats), flush=True)
    return 0


class FlowSession:
    """The flows process in `netns` (start() returns once every flow tried to connect)."""

    def __init__(
        self,
        netns: str | None,
        target: str,
        flows: list[str],
        rate_hz: float,
        log_path: str | Path,
        timeout_s: float = 10.0,
        ready_timeout_s: float = 30.0,
    ) -> None:
        self.netns, self.target, self.flows = netns, target, list(flows)
        self.rate_hz, self.log_path = float(rate_hz), Path(log_path)
        self.timeout_s, self.ready_timeout_s = timeout_s, ready_timeout_s
        self.proc: subprocess.Popen | None = None
        self.connected: dict[str, Any] | None = None

    name = "flows"  # in messages

    def command(self) -> list[str]:
        """The client's argv (it prints READY {json}, runs until SIGTERM, prints DONE {json})."""
        cmd = [sys.executable, "-m", "migfw.testbed.flows", "--target", self.target,
               "--rate", repr(self.rate_hz), "--log", str(self.log_path),
               "--timeout", repr(self.timeout_s)]  # fmt: skip
        for spec in self.flows:
            cmd += ["--flow", spec]
        return cmd

    def spawn(self) -> None:
        """Start the process ahead: it imports, then waits for start() to let it connect
        (its start-up overlaps whatever comes before the connects)."""
        self.proc = subprocess.Popen(netns_argv(self.netns, [*self.command(), "--wait-go"]),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)  # fmt: skip

    def start(self) -> dict[str, Any]:
        if self.proc is None:
            self.proc = subprocess.Popen(netns_argv(self.netns, self.command()),
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True, start_new_session=True)  # fmt: skip
        elif self.proc.stdin is not None:  # spawned ahead: once it waits, let it connect
            self._await("WAITING")
            stdin, self.proc.stdin = self.proc.stdin, None  # communicate() must not flush it
            try:
                stdin.write("go\n")
                stdin.close()
            except OSError:
                pass  # it died: the wait for READY below says why
        try:
            self.connected = json.loads(self._await("READY ")[6:])
            return self.connected
        except BaseException:
            self.kill()
            raise

    def _await(self, prefix: str) -> str:
        """The process's next stdout line, which must start with `prefix` (nothing else is
        printed before it: a line already buffered is never left unread behind select)."""
        assert self.proc is not None and self.proc.stdout is not None
        try:
            deadline = time.monotonic() + self.ready_timeout_s
            line = ""
            while time.monotonic() < deadline:
                ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
                if ready:
                    line = self.proc.stdout.readline()
                    if line.startswith(prefix) or not line:
                        break
            if not line.startswith(prefix):
                err = self.proc.stderr.read() if self.proc.poll() is not None else ""
                tail = (err.strip().splitlines() or ["no output"])[-1]
                raise MigfwError(f"{self.name} did not start in {self.netns}: {tail}")
            return line
        except BaseException:
            self.kill()
            raise

    def stop(self) -> dict[str, Any]:
        if self.proc is None:
            raise MigfwError(f"{self.name}: stop() before start()")
        try:
            self.proc.send_signal(signal.SIGTERM)
            try:
                out, err = self.proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                raise MigfwError(f"{self.name}: did not stop within 15 s of SIGTERM") from None
            if self.proc.returncode != 0:
                raise MigfwError(f"{self.name}: exited {self.proc.returncode}: "
                                 f"{(err.strip().splitlines() or ['no output'])[-1]}")  # fmt: skip
            return json.loads(next(ln[5:] for ln in out.splitlines() if ln.startswith("DONE ")))
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=5)


if __name__ == "__main__":
    sys.exit(main())
