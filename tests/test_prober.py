"""The constant-rate prober: packet templates against scapy, then real sessions between two
network namespaces - timing, capture, a timed nftables outage, and enforcement breaches."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from nethelpers import linked_pair
from scapy.layers.inet import ICMP, IP, TCP
from scapy.packet import Raw
from scapy.utils import RawPcapReader

from migfw.errors import MigfwError
from migfw.testbed.netns import netns_argv, run
from migfw.testbed.prober import (
    PAYLOAD,
    EchoTemplate,
    ProbeSession,
    SynTemplate,
    flags_text,
    lateness_stats,
)

GUEST, REMOTE = "10.231.9.1", "10.231.9.2"
ENF = {"rate_hz": 20, "blocked_port": 23, "allowed_port": 22}

needs_netns = pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(c) for c in ("tcpdump", "nft", "ip")),
    reason="needs root, tcpdump, nft and ip",
)


@pytest.mark.parametrize("seq", [0, 1, 255, 256, 4660, 65535, 65536 + 7])
def test_echo_template_equals_scapy_packet(seq: int) -> None:
    tpl = EchoTemplate(0xBEEF)
    want = bytes(ICMP(type=8, id=0xBEEF, seq=seq & 0xFFFF) / Raw(PAYLOAD))
    assert tpl.packet(seq) == want


@pytest.mark.parametrize(("sport", "seq"), [(20000, 0), (24095, 0xFFFFFFFF), (20001, 7919)])
def test_syn_template_checksum_equals_scapy(sport: int, seq: int) -> None:
    tpl = SynTemplate(REMOTE, GUEST, 23)
    raw = tpl.packet(sport, seq)
    ref = IP(src=REMOTE, dst=GUEST) / TCP(sport=sport, dport=23, flags="S", seq=seq,
                                          window=64240, options=[("MSS", 1460)])  # fmt: skip
    assert raw == bytes(ref[TCP])
    assert flags_text(0x12) == "SA" and flags_text(0x14) == "RA"


def test_lateness_stats_by_hand() -> None:
    rows = [(k, 1, 1000 * k, 1000 * k + late) for k, late in enumerate([0, 0, 1000, 600_000])]
    st = lateness_stats(rows, 0.001)
    assert st["requests_sent"] == 4 and st["lateness_p50_us"] == 1.0
    assert st["lateness_max_us"] == 600.0 and st["late_over_half_interval"] == 1


def echo_table(pcap: Path, target: str) -> tuple[dict[int, int], dict[int, int], list[tuple]]:
    """From a capture: request seq -> time, reply seq -> time, TCP answers (time, port, flags)."""
    requests, replies, tcp_answers = {}, {}, []
    reader = RawPcapReader(str(pcap))
    scale = 1 if reader.nano else 1000  # the session asks tcpdump for nanoseconds
    assert reader.nano
    for data, meta in reader:
        t = meta.sec * 1_000_000_000 + meta.usec * scale
        pkt = IP(data[14:])
        if ICMP in pkt and pkt[ICMP].type == 8 and pkt.dst == target:
            requests[pkt[ICMP].seq] = t
        elif ICMP in pkt and pkt[ICMP].type == 0 and pkt.src == target:
            replies[pkt[ICMP].seq] = t
        elif TCP in pkt and pkt.src == target:
            tcp_answers.append((t, pkt[TCP].sport, str(pkt[TCP].flags)))
    return requests, replies, tcp_answers


@pytest.fixture
def pair():
    with linked_pair(GUEST, REMOTE, 24) as names:
        yield names


PUNCTUAL_ATTEMPTS = 3  # 2-s sessions: a stall of the host (a few ms) lands in one of them


@needs_netns
def test_session_is_punctual_and_capture_is_complete(pair, tmp_path: Path) -> None:
    """At 1 kHz the send log, the capture and the answers agree in every session, and the
    prober is punctual (p99 lateness under half an interval) in one of up to three:
    on this 2-core VM a host stall of a few ms, alone on the machine, made 3 of 8 single
    sessions late (p99 1.1-3.0 ms) while the others were at 0.2-452 us."""
    guest, remote = pair
    run(["nft", "add table inet t; add chain inet t c { type filter hook input priority 0; };"
         " add rule inet t c tcp dport 23 drop"], netns=guest)  # fmt: skip
    p99s = []
    for attempt in range(PUNCTUAL_ATTEMPTS):
        pcap, sendlog = tmp_path / f"probe{attempt}.pcap", tmp_path / f"sendlog{attempt}.csv"
        with ProbeSession(remote, "r0", GUEST, 0.001, pcap, sendlog, enforcement=ENF) as session:
            time.sleep(2.0)
            res = session.stop()
        print(f"1 kHz: sent={res['requests_sent']} lateness p50={res['lateness_p50_us']} us "
              f"p99={res['lateness_p99_us']} us max={res['lateness_max_us']} us "
              f"captured={res['capture_packets']} dropped={res['capture_dropped']}")  # fmt: skip
        _check_session(res, pcap, sendlog)
        p99s.append(res["lateness_p99_us"])
        if p99s[-1] < 500:  # well under half an interval
            break
    assert min(p99s) < 500, f"late in all {PUNCTUAL_ATTEMPTS} sessions: p99 {p99s} us"


def _check_session(res: dict, pcap: Path, sendlog: Path) -> None:
    assert 1900 <= res["requests_sent"] <= 2100
    assert res["capture_dropped"] == 0
    requests, replies, tcp_answers = echo_table(pcap, GUEST)
    # Peer check: the capture holds exactly the requests the send log lists, all answered.
    assert len(requests) == res["requests_sent"] and set(replies) == set(requests)
    log = sendlog.read_text().splitlines()
    assert log[0] == "seq,ident,scheduled_ns,sent_ns" and len(log) == res["requests_sent"] + 1
    first = [int(x) for x in log[1].split(",")]
    assert abs(requests[0] - first[3]) < 5_000_000  # capture time vs logged send time
    # Enforcement: the blocked port stays silent, the allowed one answers (RST, nobody listens).
    assert res["breaches"] == [] and res["blocked_answers"] == 0
    assert 35 <= res["allowed_answers"] <= 42
    assert all(port == 22 and "R" in flags for _, port, flags in tcp_answers)
    assert len(tcp_answers) == res["allowed_answers"]


@needs_netns
def test_timed_outage_and_breaches_are_measured(pair, tmp_path: Path) -> None:
    guest, remote = pair
    run(["nft", "add table inet t; add chain inet t c { type filter hook input priority 0; };"
         " add chain inet t e; add rule inet t c jump e; add rule inet t c tcp dport 23 drop"],
        netns=guest)  # fmt: skip
    interval, outage_s = 0.001, 0.300
    pcap, sendlog = tmp_path / "probe.pcap", tmp_path / "sendlog.csv"
    # One interactive nft process at real-time priority toggles the drop; listing the chain
    # after each change tells when the change was committed, bounding the true outage.
    nft = subprocess.Popen(
        netns_argv(guest, ["chrt", "-f", "40", "nft", "-i"]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )

    def change(cmd: str) -> tuple[int, int]:
        begin = time.time_ns()
        nft.stdin.write(f"{cmd}\nlist chain inet t e\n")
        nft.stdin.flush()
        while nft.stdout.readline().rstrip() != "}":
            pass
        return begin, time.time_ns()

    try:
        with ProbeSession(remote, "r0", GUEST, interval, pcap, sendlog, enforcement=ENF) as s:
            time.sleep(0.8)
            add_begin, add_end = change("add rule inet t e icmp type echo-request drop")
            time.sleep(outage_s - (time.time_ns() - add_begin) / 1e9)
            del_begin, del_end = change("flush chain inet t e")
            time.sleep(0.5)
            open_begin, open_end = change("flush chain inet t c")  # the firewall "breaks"
            time.sleep(1.0)
            res = s.stop()
    finally:
        nft.stdin.close()
        nft.wait(timeout=5)
    requests, replies, _ = echo_table(pcap, GUEST)
    lost = sorted(set(requests) - set(replies))
    shortest, longest = (
        (del_begin - add_end) / 1e9 / interval,
        (del_end - add_begin) / 1e9 / interval,
    )
    print(f"outage between {shortest:.1f} and {longest:.1f} intervals; "
          f"pcap shows {len(lost)} lost (seq {lost[0]}..{lost[-1]}); "
          f"breaches={len(res['breaches'])} allowed={res['allowed_answers']}")  # fmt: skip
    assert longest - shortest < 20  # the bounds are tight enough to mean something
    assert shortest - 2 <= len(lost) <= longest + 2
    assert abs(len(lost) - outage_s / interval) <= 20
    assert lost == list(range(lost[0], lost[0] + len(lost)))  # one contiguous gap
    if shutil.which("tshark"):  # a peer tool's request/response matching agrees
        out = subprocess.run(
            ["tshark", "-2", "-r", str(pcap), "-Y", "icmp.type==8 && !icmp.resp_in",
             "-T", "fields", "-e", "icmp.seq"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert [int(x) for x in out.split()] == lost
    # The gap starts when the drop rule lands; a late first loss is the sender stalling
    # (host stalls of a few ms are seen on 2 loaded cores), an early one is never right.
    assert add_begin - 2_000_000 <= requests[lost[0]] <= add_end + 10_000_000
    # Breaches: every SYN to the blocked port after the drop rule went away was answered.
    times = [b["time"] * 1e9 for b in res["breaches"]]
    assert res["blocked_answers"] == len(times) > 0
    assert all(b["flags"] == "RA" for b in res["breaches"])
    # The first breach comes after the break began and within one SYN period of its end.
    syn_period_ns = 1e9 / ENF["rate_hz"]
    assert open_begin <= min(times) <= open_end + syn_period_ns + 20_000_000
    end_ns = res["t0_ns"] + res["requests_sent"] * interval * 1e9
    longest_open, shortest_open = (end_ns - open_begin) / 1e9, (end_ns - open_end) / 1e9
    assert shortest_open * ENF["rate_hz"] - 3 <= len(times) <= longest_open * ENF["rate_hz"] + 3


@needs_netns
def test_bad_interface_fails_cleanly(pair, tmp_path: Path) -> None:
    _, remote = pair
    session = ProbeSession(remote, "nope0", GUEST, 0.01, tmp_path / "p.pcap", tmp_path / "s.csv",
                           ready_timeout_s=5)  # fmt: skip
    with pytest.raises(MigfwError, match="tcpdump did not start") as info:
        session.start()
    assert "\n" not in str(info.value)
    assert session.tcpdump.poll() is not None and session.prober is None
    assert list(tmp_path.iterdir()) == []


def test_bad_parameters_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(MigfwError, match="interval 0 s must be positive"):
        ProbeSession(None, "lo", "127.0.0.1", 0, tmp_path / "p", tmp_path / "s")
    with pytest.raises(MigfwError, match="enforcement needs allowed_port"):
        ProbeSession(None, "lo", "127.0.0.1", 0.1, tmp_path / "p", tmp_path / "s",
                     enforcement={"rate_hz": 1, "blocked_port": 23})  # fmt: skip
