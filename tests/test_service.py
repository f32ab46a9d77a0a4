"""The `service` workload: the request generator on real sockets, service.csv's contract, and
the per-trial columns against hand-worked numbers and crafted trials whose truth is known.

Hand-worked case (times in ms after T0; migration window 10,000-12,000 ms):

  request   send     done     outcome   latency
  ftp 0     9000     9010     ok        10
  ssh 0     9000     9004     ok         4
  ftp 1     10000    10020    ok        20
  ssh 1     10000    10006    ok         6
  ftp 2     11000    16000    timeout
  ssh 2     11000    11500    reset
  ftp 3     12000    13100    ok      1100   (its SYN retransmitted)
  ssh 3     12000    12300    refused
  ftp 4     13000    13030    ok        30
  ssh 4     13000    13008    ok         8
  ssh 5     14000    19000    timeout

11 requests, 7 ok, 4 failed. The ok completions 9004 9010 10006 10020 13008 13030 13100,
bounded by the first send 9000 and the last outcome 19000, leave the intervals 4, 6, 996, 14,
2988, 22, 70 and 5900 ms; those overlapping 10,000-12,000 are 996 (9010-10006), 14 and 2988
(10020-13008): the gap is 2988 ms (the tail's 5900 ms lies after the migration). Latencies
sorted 4 6 8 10 20 30 1100: p50 = the 4th = 10 ms; p99 at rank 0.99 x 6 = 5.94:
30 + 0.94 x (1100 - 30) = 1035.8 ms.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from migfw.errors import MigfwError
from migfw.measure.metrics import trial_metrics
from migfw.measure.service import service_metrics
from migfw.testbed.service import run_service
from migfw.testbed.workload import workload_settings
from migfw.trials.contract import SERVICE_HEADER, read_service, validate_trial
from migfw.trials.crafted import CraftedTrial, craft_trial
from migfw.trials.design import trial_name

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
ROWS = [
    ("ftp", 0, 21, 9000, 9010, "ok"),
    ("ssh", 0, 22, 9000, 9004, "ok"),
    ("ftp", 1, 21, 10000, 10020, "ok"),
    ("ssh", 1, 22, 10000, 10006, "ok"),
    ("ftp", 2, 21, 11000, 16000, "timeout"),
    ("ssh", 2, 22, 11000, 11500, "reset"),
    ("ftp", 3, 21, 12000, 13100, "ok"),
    ("ssh", 3, 22, 12000, 12300, "refused"),
    ("ftp", 4, 21, 13000, 13030, "ok"),
    ("ssh", 4, 22, 13000, 13008, "ok"),
    ("ssh", 5, 22, 14000, 19000, "timeout"),
]


def write_log(folder: Path, rows: list, extra: str = "") -> Path:
    lines = [",".join(SERVICE_HEADER)]
    for name, seq, port, send, done, outcome in rows:
        lines.append(f"{name},{seq},{port},{T0 + send * MS},{T0 + done * MS},{outcome},")
    (folder / "service.csv").write_text("\n".join(lines) + "\n" + extra)
    return folder / "service.csv"


def meta(start_ms: float, end_ms: float) -> dict:
    return {"migration": {"start": (T0 + start_ms * MS) / 1e9, "end": (T0 + end_ms * MS) / 1e9}}


def test_hand_worked(tmp_path: Path) -> None:
    write_log(tmp_path, ROWS)
    row = service_metrics(tmp_path, meta(10_000, 12_000))
    assert row["service_requests"] == 11
    assert row["service_ok"] == 7
    assert row["service_failed"] == 4
    assert row["service_gap_ms"] == pytest.approx(2988.0)
    assert row["service_p50_ms"] == pytest.approx(10.0)
    assert row["service_p99_ms"] == pytest.approx(1035.8)


def test_gap_only_around_the_migration(tmp_path: Path) -> None:
    write_log(tmp_path, ROWS)
    # A window in the tail: only the 13100-19000 interval overlaps it.
    assert service_metrics(tmp_path, meta(15_000, 16_000))["service_gap_ms"] == pytest.approx(5900)
    # A window before the load: no interval overlaps it, no gap.
    assert service_metrics(tmp_path, meta(1_000, 2_000))["service_gap_ms"] is None
    # A window inside 9010-10006 only.
    assert service_metrics(tmp_path, meta(9_500, 9_600))["service_gap_ms"] == pytest.approx(996)


def test_nothing_answered(tmp_path: Path) -> None:
    write_log(tmp_path, [("ftp", 0, 21, 100, 5100, "timeout"), ("ssh", 0, 22, 200, 210,
                                                                  "refused")])  # fmt: skip
    row = service_metrics(tmp_path, meta(0, 1_000))
    assert (row["service_requests"], row["service_ok"], row["service_failed"]) == (2, 0, 2)
    assert row["service_gap_ms"] == pytest.approx(5000)  # first send 100 to last outcome 5100
    assert row["service_p50_ms"] is None and row["service_p99_ms"] is None


def test_empty_log_and_no_log(tmp_path: Path) -> None:
    assert service_metrics(tmp_path, meta(0, 1)) == {}
    write_log(tmp_path, [])
    row = service_metrics(tmp_path, meta(0, 1))
    assert (row["service_requests"], row["service_ok"], row["service_gap_ms"]) == (0, 0, None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("service,seq,t_send_ns,outcome\n", "header must be"),
        ("ftp,0,21,1,2,ok\n", "expected 7 fields"),
        ("ftp,0,21,1.5,2,ok,\n", "must be integers"),
        ("ftp,0,21,1,2,lost,\n", "outcome 'lost' is not one of"),
        ("ftp,0,21,1,,ok,\n", "ok without t_done_ns"),
        ("ftp,0,21,5,2,ok,\n", "t_done_ns before t_send_ns"),
        ("ftp,0,21,1,2,ok,\nftp,0,21,3,4,ok,\n", "logged twice"),
        (b"\xff\xfe\x00", "not a text CSV file"),
    ],
)
def test_bad_service_csv_one_line(tmp_path: Path, body: str | bytes, message: str) -> None:
    path = tmp_path / "service.csv"
    if isinstance(body, bytes):
        path.write_bytes(body)
    elif body.startswith("service,seq,t_send"):
        path.write_text(body)
    else:
        path.write_text(",".join(SERVICE_HEADER) + "\n" + body)
    with pytest.raises(MigfwError) as err:
        read_service(path)
    assert str(path) in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_factor_validated_and_in_trial_ids() -> None:
    assert workload_settings({"workload": "service"})["service_rate_hz"] == 2.0
    assert workload_settings({"workload": "service", "service_rate_hz": "20"})[
        "service_rate_hz"
    ] == pytest.approx(20.0)
    for bad in (0, -1, 51, "fast"):
        with pytest.raises(MigfwError, match="service_rate_hz"):
            workload_settings({"workload": "service", "service_rate_hz": bad})
    with pytest.raises(MigfwError, match="not one of idle, dirty, service"):
        workload_settings({"workload": "busy"})
    tid = trial_name("svc", {"placement": "vm", "workload": "service", "service_rate_hz": 10}, 1)
    assert tid == "svc/vm-wservice-sr10-r01"


def test_trial_json_workload_schema() -> None:
    base = {"trial_id": "x/r01", "interval_s": 0.01, "target": "10.0.0.1", "status": "ok",
            "failure": None, "migration": {"start": 1.0, "end": 2.0, "source": "A",
                                           "destination": "B"}}  # fmt: skip
    validate_trial({**base, "workload": {"name": "service", "rate_hz": 5.0, "requests": 3,
                                         "ok": 3, "failed": 0}})  # fmt: skip
    validate_trial({**base, "workload": {"name": "idle", "report": None}})
    with pytest.raises(MigfwError, match="workload/name"):
        validate_trial({**base, "workload": {"name": "busy"}})


@pytest.mark.parametrize("rate", [5.0, 20.0])
def test_crafted_service_trial_matches_its_truth(tmp_path: Path, rate: float) -> None:
    spec = CraftedTrial("svc/vm-r01", 0.01, downtime_s=0.45, seed=3,
                        factors={"workload": "service", "service_rate_hz": rate})  # fmt: skip
    truth = craft_trial(spec, tmp_path)
    row = trial_metrics(tmp_path)
    for key in ("service_requests", "service_ok", "service_failed"):
        assert row[key] == truth[key], key
    assert row["service_gap_ms"] == pytest.approx(truth["service_gap_ms"])
    # The pause is 450 ms; the gap spans it plus at most a period of requests either side.
    assert 450 <= row["service_gap_ms"] <= 450 + 2 * 1000 / rate + 10
    assert row["service_requests"] == 2 * round(12 * rate)  # 12 s of load, two services
    loaded = json.loads((tmp_path / "trial.json").read_text())["workload"]
    assert (loaded["name"], loaded["requests"]) == ("service", row["service_requests"])


def test_timeline_figure_shows_failed_requests(tmp_path: Path) -> None:
    from migfw.measure.figures import timeline_figure

    spec = CraftedTrial("svc/vm-r01", 0.01, seed=4, factors={"workload": "service"})
    craft_trial(spec, tmp_path)
    # Two requests that failed, written into the crafted log.
    with open(tmp_path / "service.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    rows[5][4:6] = [str(int(rows[5][3]) + 300 * MS), "reset"]
    rows[8][4:6] = [str(int(rows[8][3]) + 5000 * MS), "timeout"]
    with open(tmp_path / "service.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    failed = service_metrics(tmp_path, json.loads((tmp_path / "trial.json").read_text()))
    assert failed["service_failed"] == 2
    timeline_figure(tmp_path, tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 0 and (tmp_path / "t.svg").exists()
    assert "2 of " in (tmp_path / "t.svg").read_text()  # the title counts the failed requests


# --------------------------------------------------------------------------- the generator


def _serve(handler) -> tuple[int, socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)

    def loop() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    threading.Thread(target=loop, daemon=True).start()
    return sock.getsockname()[1], sock


def _ftp(conn: socket.socket) -> None:
    conn.sendall(b"220-migfw\r\n220 ready\r\n")  # a multi-line greeting
    if conn.recv(64).startswith(b"QUIT"):
        conn.sendall(b"221 Bye\r\n")
    conn.close()


def _ssh(conn: socket.socket) -> None:
    conn.sendall(b"a banner line first\r\nSSH-2.0-dropbear\r\n")
    time.sleep(0.05)
    conn.close()


def _reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _mute(conn: socket.socket, held: list = []) -> None:  # noqa: B006 - keeps them open
    held.append(conn)


def _eof(conn: socket.socket) -> None:
    conn.close()


def test_generator_outcomes_on_real_sockets(tmp_path: Path) -> None:
    """Real TCP connections on loopback, one kind of server per port: every request's outcome
    is the one its server causes."""
    servers = {name: _serve(h) for name, h in (("ftp", _ftp), ("ssh", _ssh), ("reset", _reset),
                                                ("mute", _mute), ("eof", _eof))}  # fmt: skip
    spare = socket.socket()
    spare.bind(("127.0.0.1", 0))
    closed_port = spare.getsockname()[1]
    spare.close()  # nothing listens there: refused
    services = [("ftp", servers["ftp"][0]), ("ssh", servers["ssh"][0]), ("ftp", closed_port),
                ("ssh", servers["reset"][0]), ("ftp", servers["mute"][0]),
                ("ssh", servers["eof"][0])]  # fmt: skip
    log = tmp_path / "service.csv"
    summary = run_service("127.0.0.1", services, 20.0, log, duration_s=1.0, timeout_s=0.4)
    for _, sock in servers.values():
        sock.close()
    parsed = read_service(log)
    per_port: dict[int, set] = {}
    for port, outcome in zip(parsed["port"].tolist(), parsed["outcome"].tolist(), strict=True):
        per_port.setdefault(port, set()).add(outcome)
    expected = ["ok", "ok", "refused", "reset", "timeout", "closed"]
    assert {p: per_port[p] for p, _ in [(s[1], 0) for s in services]} == {
        s[1]: {e} for s, e in zip(services, expected, strict=True)
    }
    n = summary["requests"] // len(services)
    assert summary["requests"] == n * len(services) and 15 <= n <= 20  # 20 Hz for 1 s
    assert summary["ok"] == 2 * n and summary["failed"] == 4 * n
    ok = parsed["outcome"] == "ok"
    assert (parsed["done"][ok] >= parsed["send"][ok]).all()
    timeouts = parsed["outcome"] == "timeout"
    waited = (parsed["done"][timeouts] - parsed["send"][timeouts]) / 1e9
    assert ((waited >= 0.4) & (waited < 1.0)).all()
    # Sent on the schedule: consecutive requests to one service 50 ms apart on average.
    ftp = parsed["send"][parsed["port"] == servers["ftp"][0]]
    assert abs((ftp[-1] - ftp[0]) / (len(ftp) - 1) / 1e6 - 50) < 10


# --------------------------------------------------------------------------- in namespaces

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(c) for c in ("nft", "ip")),
    reason="needs root, nft and ip",
)
GUEST = "10.243.9.1"


@needs_netns
def test_session_in_a_namespace_across_a_blackout_and_a_reject(tmp_path: Path) -> None:
    """The generator process in the "prober" namespace (ServiceSession, as in a trial), FTP
    and SSH servers in the "guest" namespace behind nftables: a 300 ms blackout of everything
    (requests sent into it are answered after TCP's 1 s SYN retransmission: ok, late), then
    SSH rejected with a TCP reset for 300 ms (refused). The analysis's gap around the
    blackout is at least the blackout."""
    from nethelpers import linked_pair

    from migfw.testbed.netns import in_netns, run
    from migfw.testbed.service import ServiceSession

    with linked_pair(GUEST, "10.243.9.2", prefix="mtwt") as (guest, remote):
        run(["nft", "add table inet g; add chain inet g c { type filter hook input priority 0;"
             " policy accept; }"], netns=guest)  # fmt: skip
        servers = []
        for port, handler in ((21, _ftp), (22, _ssh)):
            with in_netns(guest):
                sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((GUEST, port))
            sock.listen(64)
            servers.append(sock)

            def loop(s: socket.socket = sock, h=handler) -> None:
                while True:
                    try:
                        conn, _ = s.accept()
                    except OSError:
                        return
                    threading.Thread(target=h, args=(conn,), daemon=True).start()

            threading.Thread(target=loop, daemon=True).start()
        log = tmp_path / "service.csv"
        session = ServiceSession(remote, GUEST, ["ftp:21", "ssh:22"], 20.0, log, timeout_s=3.0)
        try:
            ready = session.start()
            assert ready == {"services": ["ftp:21", "ssh:22"], "rate_hz": 20.0}
            time.sleep(0.6)
            # Each rule change commits somewhere between its nft command's start and return.
            run(["nft", "add rule inet g c drop"], netns=guest)
            t_drop = time.time_ns()
            time.sleep(0.3)
            t_back_call = time.time_ns()
            run(["nft", "flush chain inet g c"], netns=guest)
            t_back = time.time_ns()
            time.sleep(1.5)
            t_rej_call = time.time_ns()
            run(["nft", "add rule inet g c tcp dport 22 reject with tcp reset"], netns=guest)
            time.sleep(0.3)
            run(["nft", "flush chain inet g c"], netns=guest)
            t_rej_end = time.time_ns()
            time.sleep(0.6)
            summary = session.stop()
        finally:
            session.kill()
            for sock in servers:
                sock.close()
    parsed = read_service(log)
    send, outcome, name = parsed["send"], parsed["outcome"], parsed["service"]
    latency = parsed["done"] - send
    refused = outcome == "refused"
    assert set(outcome.tolist()) == {"ok", "refused"}, summary
    # Refused: SSH requests sent while the reject rule was in place, nothing else.
    assert (name[refused] == "ssh").all() and refused.sum() >= 3
    assert ((send[refused] >= t_rej_call) & (send[refused] <= t_rej_end)).all()
    # Sent surely into the blackout: answered after the SYN's retransmission, ~1 s later.
    dark = (send > t_drop + 20 * MS) & (send < t_back_call - 20 * MS)
    assert dark.sum() >= 6 and (outcome[dark] == "ok").all()
    assert (latency[dark] >= 0.9e9).all()
    row = service_metrics(log.parent, {"migration": {"start": t_drop / 1e9, "end": t_back / 1e9}})
    assert row["service_requests"] == summary["requests"] and row["service_failed"] == refused.sum()
    assert 300 <= row["service_gap_ms"] <= 1500


def test_remote_probe_session_runs_the_load_beside_the_prober(tmp_path: Path, monkeypatch) -> None:
    """With a prober host (external provider), the remote probe session starts the request
    generator there with the prober's interpreter, stops it before the prober and copies
    service.csv back SHA-256-checked. The SSH session is a stand-in that answers like the
    prober host's shell, one command at a time as migfw.testbed.remote.RemoteSh sends them
    (the real path: the lab in a box, docs/testbed.md, tests/test_lab_in_a_box.py)."""
    import hashlib
    import re

    from migfw.testbed import remote

    files = {"probe.pcap": b"", "sendlog.csv": b"i,t\n", "service.csv": b"service log\n"}
    done = {"rate_hz": 2.0, "requests": 4, "ok": 4, "failed": 0}

    class Conn:
        def get(self, src: str, dst: str) -> None:
            Path(dst).write_bytes(files[src.rsplit("/", 1)[1]])

    class Shell:
        conn = Conn()

        def __init__(self) -> None:
            self.commands: list[str] = []
            self.pids: dict[int, str] = {}
            self.dead: set[int] = set()

        def run(self, cmd: str, check: bool = True, timeout: float = 30) -> str:
            self.commands.append(cmd)
            if cmd.startswith("mktemp"):
                return "/tmp/migfw-probe.test\n"
            if cmd.startswith("( setsid"):
                pid = 100 + len(self.pids)
                self.pids[pid] = re.search(r">/tmp/migfw-probe.test/(\w+)\.out", cmd)[1]
                return f"{pid}\n"
            if cmd.startswith("kill -"):
                self.dead.add(int(cmd.split()[2]))
                return ""
            if "/proc/" in cmd:
                return "" if int(re.search(r"/proc/(\d+)/", cmd)[1]) in self.dead else "y\n"
            if cmd.startswith("cat /tmp/migfw-probe.test/"):
                name = cmd.rsplit("/", 1)[1]
                return {
                    "tcpdump.err": "listening on eth0\n",
                    "sender.out": "READY 123\nDONE {}\n",
                    "service.out": "READY {}\nDONE " + json.dumps(done) + "\n",
                }.get(name, "")
            if cmd.startswith("cd /tmp/migfw-probe.test && sha256sum"):
                return "".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n"
                               for n in cmd.split()[4:])  # fmt: skip
            return ""

        def close(self) -> None:
            pass

    shell = Shell()
    monkeypatch.setattr(remote, "open_shell", lambda target: shell)
    monkeypatch.setattr(remote, "RemoteSh", lambda shell: shell)  # runs each command
    prober = {"target": {"host": "10.0.0.3"}, "python": "/opt/migfw/bin/python"}
    session = remote.RemoteProbeSession(
        prober, "eth0", "10.0.0.10", 0.01, tmp_path / "probe.pcap", tmp_path / "sendlog.csv",
        service={"services": ["ftp:21", "ssh:22"], "rate_hz": 2.0, "log": tmp_path / "svc.csv"},
    )  # fmt: skip
    session.start()
    spawned = [c for c in shell.commands if c.startswith("( setsid")]
    assert [shell.pids[p] for p in sorted(shell.pids)] == ["tcpdump", "sender", "service"]
    assert spawned[2].startswith(
        "( setsid /opt/migfw/bin/python -m migfw.testbed.service --target 10.0.0.10 --rate 2.0 "
        "--log /tmp/migfw-probe.test/service.csv --timeout 5.0 --service ftp:21 --service ssh:22"
    )
    session.stop(linger_s=0)
    kills = [c for c in shell.commands if c.startswith("kill -TERM")]
    assert kills == ["kill -TERM 102", "kill -TERM 101"]  # the load first, then the prober
    assert session.service_result == done
    assert (tmp_path / "svc.csv").read_bytes() == b"service log\n"
    assert "service.csv" in session.copied
