"""Fault injection on the real embedded testbed (issue 9): each fault is an outcome, never a
lost or changed capture, never a leftover.

One testbed (prefix `mff`, its own subnets) is shared by the module to keep CI time low; the
trials are smoke-sized (0.01 s probes, 2 s lead-in/settle); a trial whose fault must land inside
the migration runs with an 8 MiB/s cap, the others (the next trial that must work, a fault in
the lead-in or the settle) uncapped, seconds instead of ~18 s. Each fault is injected by the PID
the testbed recorded (state.json for the daemons, the trial's `pids` event for the VM's
QEMU), and each test asserts: the trial's status and reason in trial.json, every earlier
capture's SHA-256 unchanged, nothing left running by the recorded PIDs, and that the next
trial works. The module ends by tearing down and checking `migfw testbed cleanup --dry-run`
and `ip netns list`.

The other faults of issue 9 have their own tests: a SIGKILLed run and its rerun, and a
concurrent run (tests/test_owner.py), changed repetitions/intervals between runs
(tests/test_immutable_trials.py), Ctrl-C mid-migration (tests/test_testbed_trial.py).

Issue 19's faults hang rather than die, fill the disk or step the clock: a migration link
black-holed (nftables drop on the destination's migration interface) once the stream is
established, briefly (a slow migration) and for good (a stall); either libvirtd or the VM's
QEMU stopped (SIGSTOP) mid-migration; the source libvirtd killed mid-migration; the trial
folder's filesystem (a small tmpfs) filled while the trial captures; the trial process's wall
clock stepped (an LD_PRELOAD shim, tests/data/clockstep.c: this shared machine's clock is
never touched); 150 connections to the guest's FTP server. Each asserts the outcome, the time
from the fault to the trial command's exit (the time to move on; printed as `fault-time`), and
a working testbed after it (the next trial ok). Their watchdog runs with a 5 s stall timeout.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from migfw.testbed.local import pid_alive

REPO = Path(__file__).resolve().parents[1]
PREFIX = "mff"

pytestmark = [pytest.mark.testbed, pytest.mark.slow]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    from testbedcfg import skip_reason as _skip_reason

    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from migfw.testbed.local import LocalTestbed, list_netns, pids_in_netns

    root = tmp_path_factory.mktemp("faults")
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg["ruleset"] = str(REPO / "config" / "ruleset.yaml")
    cfg["trials_dir"] = str(root / "trials")
    cfg["testbed"]["provider"] = "local"
    cfg["testbed"]["local"].update(prefix=PREFIX, subnet="10.236.0.0/24",
                                   migration_subnet="10.236.1.0/30")  # fmt: skip
    cfg["testbed"]["state_dir"] = str(root / "state")
    cfg["testbed"]["guest_dir"] = str(REPO / "results" / "testbed" / "guest")
    cfg["trials"].update(lead_in_s=2.0, settle_s=2.0, max_silence_s=1.0)
    # A bandwidth cap stretches the migration to a few seconds, so a fault lands inside it.
    cfg["migration"]["bandwidth_mibps"] = 8
    cfg["migration"].update(stall_timeout_s=5, slow_stall_s=2)
    cfg_file = root / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    # A trial that only has to work (the one after a fault), or whose fault is outside the
    # migration (lead-in, settle), runs uncapped: its migration takes seconds, not ~18 s.
    fast_file = root / "fast.yaml"
    fast_file.write_text(yaml.safe_dump({**cfg, "migration": {**cfg["migration"],
                                                              "bandwidth_mibps": 0}}))  # fmt: skip
    ctx = {"cfg": cfg, "cfg_file": cfg_file, "fast_file": fast_file, "root": root,
           "captures": {}, "pids": set(), "times": {}}  # fmt: skip
    try:
        yield ctx
    finally:
        for name, seconds in ctx["times"].items():
            print(f"fault-time {name}: {seconds:.1f} s (load {os.getloadavg()[0]:.1f})")
        LocalTestbed(cfg).down(quiet=True)
        from migfw.testbed.owner import lock_path

        assert not lock_path(cfg).exists()  # the last owner removed it
        # Nothing left: no namespace, no process by any PID a trial recorded, no run dir.
        assert list_netns(PREFIX) == []
        assert pids_in_netns(list_netns(PREFIX)) == []
        assert [p for p in ctx["pids"] if pid_alive(p)] == []
        dry = subprocess.run(
            [sys.executable, "-m", "migfw", "testbed", "cleanup", "--dry-run",
             "--config", str(cfg_file)],
            capture_output=True, text=True, timeout=60, cwd=REPO,
        )  # fmt: skip
        assert dry.returncode == 0 and dry.stdout.strip() == "cleanup: nothing left over", dry
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        assert not [n for n in netns.stdout.split() if n.startswith(f"{PREFIX}-")]
        try:
            # Every capture any test recorded is still there, byte for byte.
            for path, digest in ctx["captures"].items():
                assert _sha(path) == digest, path
        finally:
            if ctx.get("tmpfs"):
                subprocess.run(["umount", str(ctx["tmpfs"])], check=False)


def _events(partial: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in (partial / "events.jsonl").read_text().splitlines()
                if line.endswith("}")]  # fmt: skip
    except OSError:
        return []


def _start_trial(
    ctx: dict, name: str, out: Path | None = None, env: dict | None = None, fast: bool = False
) -> tuple[subprocess.Popen, Path]:
    """Start a trial; `fast`: without the bandwidth cap (the bed's fast.yaml)."""
    out = out or ctx["root"] / "trials" / name
    config = ctx["fast_file"] if fast else ctx["cfg_file"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "migfw", "testbed", "trial", "--config", str(config),
         "--trial-id", name, "--interval", "0.01", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    return proc, out


def _wait_event(proc: subprocess.Popen, out: Path, step: str, timeout: float = 240) -> dict:
    partial = out.with_name(out.name + ".partial")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in _events(partial):
            if event["step"] == step:
                return event
        if proc.poll() is not None:
            raise AssertionError(f"trial ended before {step}: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no {step} event after {timeout} s")


def _finish(ctx: dict, proc: subprocess.Popen, out: Path) -> dict:
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, (stdout, stderr)
    meta = json.loads((out / "trial.json").read_text())
    assert (out / "probe.pcap").stat().st_size > 24
    ctx["captures"][out / "probe.pcap"] = _sha(out / "probe.pcap")
    ctx["pids"].update(meta["prober"]["pids"].values())
    assert [p for p in meta["prober"]["pids"].values() if pid_alive(p)] == []
    assert not out.with_name(out.name + ".partial").exists()
    return meta


def _state_pids(ctx: dict) -> dict:
    state = Path(ctx["cfg"]["testbed"]["state_dir"]) / "state.json"
    return json.loads(state.read_text())["pids"]


def test_destination_libvirtd_killed_mid_migration(bed) -> None:
    proc, out = _start_trial(bed, "kill-libvirtd")
    pids = _wait_event(proc, out, "pids")
    destination = "B" if pids["qemu_host"] == "A" else "A"
    daemon = _state_pids(bed)[f"libvirtd_{destination}"]  # the PID the testbed recorded
    assert daemon == pids[f"libvirtd_{destination}"] and pid_alive(daemon, "libvirtd")
    _wait_event(proc, out, "migrate_start")
    time.sleep(1.0)  # inside the migration (8 MiB/s for a 128 MiB guest)
    os.kill(daemon, signal.SIGKILL)
    meta = _finish(bed, proc, out)
    bed["pids"].add(daemon)

    assert meta["status"] == "failed"
    assert "migration" in meta["failure"] and meta["hypervisor"] is None, meta["failure"]
    assert not pid_alive(daemon)
    repaired = meta["recovery"]["repaired"]
    assert repaired and f"libvirtd of host {destination} (PID {daemon} dead" in repaired[0]
    # An incoming QEMU the dead daemon had started is unknown to the restarted one: the
    # repair kills it by PID (it may not have been started yet when the daemon died).
    assert all("killed QEMU PID" in r for r in repaired[1:]), repaired
    now = _state_pids(bed)[f"libvirtd_{destination}"]
    assert now != daemon and pid_alive(now, "libvirtd")
    # The capture holds the whole trial: requests before, during and after the fault.
    steps = meta["timeline"]["steps"]
    assert {"lead_in_start", "migrate_call", "migrate_return", "settle_end"} <= set(steps)
    assert steps["lead_in_start"] < steps["migrate_call"] <= steps["migrate_return"]
    assert steps["migrate_return"] <= steps["settle_end"] <= steps["trial_end"]
    assert meta["capture"]["requests_sent"] > 300

    # The run goes on: the next trial migrates normally and is not flagged.
    proc, out2 = _start_trial(bed, "after-kill", fast=True)
    nxt = _finish(bed, proc, out2)
    assert nxt["status"] == "ok", nxt["failure"]
    assert nxt["hypervisor"]["downtime_ms"] > 0
    assert not [f for f in nxt["flags"] if f.startswith("guest_silent")], nxt["health"]
    # One VM, one QEMU: nothing of the failed migration is left running.
    assert _qemus() == [_vm_pid(bed, nxt["migration"]["destination"])]
    for path, digest in bed["captures"].items():
        assert _sha(path) == digest, path


def _qemus() -> list[int]:
    from migfw.testbed.local import list_netns, pids_in_netns

    return [p for p in pids_in_netns(list_netns(PREFIX))
            if b"qemu-system" in Path(f"/proc/{p}/cmdline").read_bytes()]  # fmt: skip


def _vm_pid(ctx: dict, host: str) -> int | None:
    from migfw.testbed.local import LocalTestbed

    return LocalTestbed(ctx["cfg"]).vm_pid(host)  # libvirt's own pid file on that host


def test_destination_qemu_killed_mid_migration(bed) -> None:
    proc, out = _start_trial(bed, "kill-qemu")
    pids = _wait_event(proc, out, "pids")
    destination = "B" if pids["qemu_host"] == "A" else "A"
    _wait_event(proc, out, "migrate_start")
    deadline = time.monotonic() + 10
    while (incoming := _vm_pid(bed, destination)) is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the incoming QEMU starts once libvirt has prepared the destination
    assert incoming is not None and incoming != pids["qemu"]
    time.sleep(0.5)
    os.kill(incoming, signal.SIGKILL)
    meta = _finish(bed, proc, out)
    bed["pids"].update({incoming, pids["qemu"]} - {_vm_pid(bed, "A"), _vm_pid(bed, "B")})

    assert meta["status"] == "failed" and "migration" in meta["failure"], meta["failure"]
    assert meta["recovery"]["vm_host"] == pids["qemu_host"]  # the source copy runs on
    assert meta["recovery"]["repaired"] == []  # both daemons lived
    assert not pid_alive(incoming)
    assert _qemus() == [pids["qemu"]]  # the same VM process, nothing else
    proc, out2 = _start_trial(bed, "after-qemu", fast=True)
    assert _finish(bed, proc, out2)["status"] == "ok"


def test_guest_frozen_in_lead_in_is_flagged(bed) -> None:
    cfg = {**bed["cfg"], "migration": {**bed["cfg"]["migration"], "bandwidth_mibps": 0}}
    cfg["trials"] = {**cfg["trials"], "lead_in_s": 5.0}  # the freeze is in it: no cap needed
    cfg_file = bed["root"] / "freeze.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    proc, out = _start_trial({**bed, "cfg_file": cfg_file}, "freeze")
    qemu = _wait_event(proc, out, "pids")["qemu"]  # the VM's QEMU, recorded by the trial
    assert pid_alive(qemu, "qemu-system")
    _wait_event(proc, out, "probe_started")
    time.sleep(0.5)
    os.kill(qemu, signal.SIGSTOP)
    try:
        time.sleep(2.5)
    finally:
        os.kill(qemu, signal.SIGCONT)
    meta = _finish(bed, proc, out)

    assert "guest_silent_lead_in" in meta["flags"], meta["health"]
    silence = meta["health"]["periods"]["lead_in"]["longest_silence_s"]
    assert 2.3 <= silence <= 4.0, silence
    assert meta["health"]["periods"]["settle"]["longest_silence_s"] < 1.0
    # migration.start is the migrate call, lead_in_s after the lead-in began, not the
    # moment the frozen QEMU answered its monitor again.
    t = meta["timeline"]
    lead_in_epoch = t["steps"]["lead_in_start"] - t["anchor"]["monotonic"] + t["anchor"]["epoch"]
    assert abs(meta["migration"]["start"] - lead_in_epoch - 5.0) < 0.5
    assert meta["status"] == "ok", meta["failure"]


def test_concurrent_run_refused_first_unharmed(bed) -> None:
    proc, out = _start_trial(bed, "first")
    _wait_event(proc, out, "probe_started")
    second, out2 = _start_trial(bed, "second")  # another run on the same testbed, mid-trial
    _, err = second.communicate(timeout=60)
    assert second.returncode != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"in use by PID {proc.pid} " in lines[0], err
    assert not out2.exists() and not out2.with_name("second.partial").exists()
    meta = _finish(bed, proc, out)
    assert meta["status"] == "ok" and meta["flags"] == [], (meta["failure"], meta["flags"])


def test_run_sigkilled_then_rerun(bed) -> None:
    out = bed["root"] / "trials" / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "migfw", "testbed", "trial", "--config", str(bed["cfg_file"]),
         "--trial-id", "killed", "--interval", "0.01", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, start_new_session=True,
    )  # fmt: skip
    probers = _wait_event(proc, out, "probe_started")["pids"]
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole run, no chance to clean up
    proc.wait(10)
    partial = out.with_name("killed.partial")
    assert partial.is_dir()
    bed["pids"].update(probers.values())
    # The rerun of the same trial: takes the dead owner's lock over after killing its
    # orphan prober and moving its half-written trial aside, then records a clean trial.
    proc, _ = _start_trial(bed, "killed", fast=True)
    meta = _finish(bed, proc, out)
    assert meta["status"] == "ok" and "stray_traffic" not in meta["flags"], meta["flags"]
    assert [p for p in probers.values() if pid_alive(p)] == []
    aborted = list((bed["root"] / "trials" / ".aborted").glob("killed-*"))
    assert len(aborted) == 1 and (aborted[0] / "reason.txt").read_text().strip()
    # The killed run's capture, kept as tcpdump left it (still named as being written).
    kept = aborted[0] / ".probe.pcap.part"
    assert kept.stat().st_size > 24
    bed["captures"][kept] = _sha(kept)
    for path, digest in bed["captures"].items():
        assert _sha(path) == digest, path


def test_repair_fails_trial_kept_run_stops_in_one_line(bed) -> None:
    # The destination host is gone: its daemon killed and its namespace's name removed, so
    # the daemon cannot be restarted there. The trial is still written (exit 0, so a
    # Snakemake job never deletes its capture); the next trial refuses in one line.
    proc, out = _start_trial(bed, "host-gone")
    pids = _wait_event(proc, out, "pids")
    destination = "B" if pids["qemu_host"] == "A" else "A"
    daemon = _state_pids(bed)[f"libvirtd_{destination}"]
    _wait_event(proc, out, "migrate_start")
    time.sleep(1.0)
    incoming = _vm_pid(bed, destination)
    os.kill(daemon, signal.SIGKILL)
    subprocess.run(["ip", "netns", "delete", f"{PREFIX}-host{destination}"], check=True)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "the testbed could not be repaired, stopping" in stderr.strip().splitlines()[-1]
    meta = json.loads((out / "trial.json").read_text())
    bed["captures"][out / "probe.pcap"] = _sha(out / "probe.pcap")
    bed["pids"].update({daemon, *meta["prober"]["pids"].values()} | ({incoming} - {None}))
    assert meta["status"] == "failed" and "migration" in meta["failure"], meta["failure"]
    assert "namespaces gone" in meta["recovery"]["error"]

    proc, out2 = _start_trial(bed, "refused")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and len(err.strip().splitlines()) == 1, err
    assert "could not be repaired after trial host-gone" in err and not out2.exists()

    # `migfw testbed cleanup` removes everything, the orphan incoming QEMU included (found
    # by libvirt's pid file, its namespace has no name), and the next trial works.
    subprocess.run([sys.executable, "-m", "migfw", "testbed", "cleanup", "--config",
                    str(bed["cfg_file"])], check=True, capture_output=True, cwd=REPO)  # fmt: skip
    assert [p for p in bed["pids"] if pid_alive(p)] == []
    proc, out3 = _start_trial(bed, "after-cleanup", fast=True)
    assert _finish(bed, proc, out3)["status"] == "ok"


# ------------------------------------------------------------------ issue 19: hangs, disk, clock


def _stream_bytes(destination: str) -> int | None:
    """Bytes the destination's QEMU received on its incoming migration socket (libvirt's
    ports 49152+), or None while no such socket is established."""
    ss = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-host{destination}", "ss", "-Htin",
                         "state", "established"], capture_output=True, text=True)  # fmt: skip
    received, local = None, ""
    for line in ss.stdout.splitlines():
        if line and not line[0].isspace():  # a socket's line; its details follow indented
            local = line.split()[2] if len(line.split()) > 2 else ""
        elif ":4915" in local:
            found = re.search(r"bytes_received:(\d+)", line)
            received = (received or 0) + (int(found.group(1)) if found else 0)
    return received


def _in_migration(proc: subprocess.Popen, out: Path, min_bytes: int = 0) -> dict:
    """Wait until the migration stream is established (and has carried `min_bytes` to the
    destination); the trial's `pids` event."""
    pids = _wait_event(proc, out, "pids")
    _wait_event(proc, out, "migrate_start")
    destination = "B" if pids["qemu_host"] == "A" else "A"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        received = _stream_bytes(destination)
        if received is not None and received >= min_bytes:
            break
        time.sleep(0.02)
    else:
        raise AssertionError(f"the migration stream never carried {min_bytes} bytes")
    return {**pids, "destination": destination}


BLACKHOLE = """table netdev migfw_fault {
  chain in { type filter hook ingress device "mig0" priority -500; policy drop; }
}
"""


def _blackhole(host: str, on: bool) -> None:
    ns = ["ip", "netns", "exec", f"{PREFIX}-host{host}", "nft"]
    if on:
        subprocess.run([*ns, "-f", "-"], input=BLACKHOLE, text=True, check=True)
    else:
        subprocess.run([*ns, "delete", "table", "netdev", "migfw_fault"], check=False)


def _exit_after(bed: dict, name: str, proc: subprocess.Popen, since: float) -> float:
    proc.wait(300)
    seconds = time.monotonic() - since
    bed["times"][name] = seconds
    return seconds


def _next_trial_ok(bed: dict, name: str, **kwargs) -> dict:
    """The trial after a fault works (uncapped: only that it works is asserted)."""
    proc, out = _start_trial(bed, name, fast=True, **kwargs)
    meta = _finish(bed, proc, out)
    assert meta["status"] == "ok", meta["failure"]
    return meta


def _clockstep_library(root: Path) -> Path:
    lib = root / "clockstep.so"
    if not lib.exists():
        source = REPO / "tests" / "data" / "clockstep.c"
        subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(source), "-ldl"],
                       check=True)  # fmt: skip
    return lib


def _libvirtd_stopped(bed: dict, side: str) -> dict:
    """SIGSTOP the source's or the destination's libvirtd (its PID in state.json) once the
    migration streams: a failed trial naming it within 60 s, the daemon killed and replaced."""
    proc, out = _start_trial(bed, f"stop-{side}")
    pids = _in_migration(proc, out)
    host = pids["qemu_host"] if side == "source" else pids["destination"]
    daemon = _state_pids(bed)[f"libvirtd_{host}"]
    time.sleep(0.5)
    os.kill(daemon, signal.SIGSTOP)
    seconds = _exit_after(bed, f"{side} libvirtd SIGSTOP", proc, time.monotonic())
    meta = _finish(bed, proc, out)
    bed["pids"].add(daemon)
    assert meta["status"] == "failed" and seconds < 60, (meta["failure"], seconds)
    assert f"libvirtd on host {host} does not answer" in meta["failure"]
    assert meta["migration"]["unresponsive"]["what"] == "libvirtd"
    assert any(f"(PID {daemon} did not answer (state T: stopped), killed" in r
               for r in meta["recovery"]["repaired"]), meta["recovery"]  # fmt: skip
    assert not pid_alive(daemon)
    return {**pids, "meta": meta}


def test_source_libvirtd_stopped_then_a_clock_step_is_flagged(bed) -> None:
    _libvirtd_stopped(bed, "source")

    # The next trial, its process's wall clock stepped 3 s forward in the settle period: ok,
    # flagged clock_step. The machine's clock is never touched (tests/data/clockstep.c).
    offset = bed["root"] / "clock-offset"
    offset.write_text("0\n")
    env = {"LD_PRELOAD": str(_clockstep_library(bed["root"])),
           "MIGFW_CLOCK_OFFSET_FILE": str(offset)}  # fmt: skip
    # The product's default stall timeout (10 s) here: this trial is about the clock, and a
    # QEMU monitor slowed by a loaded 2-core machine must not fail it on the 5 s bound.
    # Uncapped: the step is in the settle period.
    cfg = {**bed["cfg"], "migration": {**bed["cfg"]["migration"], "stall_timeout_s": 10,
                                       "bandwidth_mibps": 0}}  # fmt: skip
    cfg_file = bed["root"] / "clock.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    proc, out = _start_trial({**bed, "cfg_file": cfg_file}, "clock-step", env=env)
    _wait_event(proc, out, "migrate_end")
    time.sleep(0.5)
    offset.write_text("3\n")
    meta = _finish(bed, proc, out)
    assert meta["status"] == "ok" and "clock_step" in meta["flags"], meta["flags"]
    assert meta["health"]["clock"]["process_step_s"] == pytest.approx(3.0, abs=0.2)
    assert meta["health"]["clock"]["capture_steps"] == []  # tcpdump's clock was not stepped


def test_destination_libvirtd_stopped_then_a_short_outage_is_slow(bed) -> None:
    pids = _libvirtd_stopped(bed, "destination")
    assert pids["meta"]["recovery"]["vm_host"] == pids["qemu_host"]  # aborted: it stayed

    # The link black-holed for 3 s once the stream runs: past slow_stall_s (2 s), short of
    # the 5 s stall timeout - the migration finishes, flagged migration_slow. A fault that
    # came too late (the migration call returned within 0.5 s of it: nothing left to send)
    # proves nothing either way, and is injected again into the next trial, once. So is one
    # the watchdog could not see: no job-statistics sample was taken in its last second (the
    # source QEMU's monitor blocked the whole outage: 0.37 -> 5.38 s without a sample in a CI
    # run), since a stall is counted only when a sample proves it. Two CI runs in a row
    # (2026-12-07) had both attempts blocked: a third, then the case is unobservable here.
    for attempt in ("short-outage", "short-outage-again", "short-outage-third"):
        proc, out = _start_trial(bed, attempt)
        pids = _in_migration(proc, out)
        _blackhole(pids["destination"], True)
        on = time.time()
        try:
            time.sleep(3.0)
        finally:
            _blackhole(pids["destination"], False)
        meta = _finish(bed, proc, out)
        assert meta["status"] == "ok", meta["failure"]
        with open(out / "jobstats.csv") as fh:
            sampled = [float(row["t"]) for row in csv.DictReader(fh)]
        seen = any(on + 2.0 <= t <= on + 3.0 for t in sampled)
        if meta["migration"]["end"] > on + 0.5 and seen:
            break
    assert meta["migration"]["end"] > on + 0.5, "the outage missed every migration"
    if not seen:  # a known limit (docs/testbed.md): a blocked monitor hides the outage
        pytest.skip("the source QEMU's monitor blocked all three outages: nothing to judge")
    assert "migration_slow" in meta["flags"], meta["migration"]["watchdog"]
    assert 2.0 <= meta["migration"]["watchdog"]["longest_no_progress_s"] < 5.0


def test_blackholed_link_stalls_and_the_run_goes_on(bed) -> None:
    # Black-holed once RAM pages flow (1 MiB received): a stall in the migration's setup,
    # before any page was sent (a CI run: the last sample had 0 bytes processed), would not
    # show that the watchdog keeps the progress it saw.
    proc, out = _start_trial(bed, "stall")
    pids = _in_migration(proc, out, min_bytes=1 << 20)
    _blackhole(pids["destination"], True)
    try:
        seconds = _exit_after(bed, "migration link black-holed", proc, time.monotonic())
    finally:
        _blackhole(pids["destination"], False)
    meta = _finish(bed, proc, out)
    assert meta["status"] == "failed" and meta["hypervisor"] is None
    # Proven by samples: >= the 5 s timeout; a loaded machine's late samples add seconds
    # (7 s seen at load 8).
    stalled = re.match(r"migration stalled: no progress for (\d+) s \(", meta["failure"])
    assert stalled and 5 <= int(stalled.group(1)) <= 10, meta["failure"]
    assert seconds < 5 + 30, seconds
    watchdog = meta["migration"]["watchdog"]
    assert watchdog["verdict"] == "stalled" and watchdog["call_returned"]
    last = watchdog["last_jobstats"]
    assert 0 < last["data_processed"] and last["data_remaining"] > 0
    assert meta["recovery"]["vm_host"] == pids["qemu_host"] and not meta["recovery"]["repaired"]
    _next_trial_ok(bed, "after-stall")


def test_source_libvirtd_killed_mid_migration(bed) -> None:
    proc, out = _start_trial(bed, "kill-src")
    pids = _in_migration(proc, out)
    daemon = _state_pids(bed)[f"libvirtd_{pids['qemu_host']}"]
    time.sleep(0.5)
    os.kill(daemon, signal.SIGKILL)
    _exit_after(bed, "source libvirtd SIGKILL", proc, time.monotonic())
    meta = _finish(bed, proc, out)
    bed["pids"].add(daemon)
    assert meta["status"] == "failed" and "migration" in meta["failure"], meta["failure"]
    repaired = meta["recovery"]["repaired"]
    assert repaired and f"libvirtd of host {pids['qemu_host']} (PID {daemon} dead" in repaired[0]
    # The VM's true location: where exactly one running copy is, as the repair found it.
    assert _vm_pid(bed, meta["recovery"]["vm_host"]) is not None
    assert _qemus() == [_vm_pid(bed, meta["recovery"]["vm_host"])]
    bed["tmpfs"] = _mount_tmpfs(bed["root"] / "small", 48)
    # The next trial, written to a small filesystem (the next test fills it).
    nxt = _next_trial_ok(bed, "on-small-disk", out=bed["tmpfs"] / "on-small-disk")
    assert oct((bed["tmpfs"] / "on-small-disk").stat().st_mode & 0o777) == "0o700"
    assert oct((bed["tmpfs"] / "on-small-disk" / "probe.pcap").stat().st_mode & 0o777) == "0o600"
    assert nxt["disk_space"]["free_mib"] > nxt["disk_space"]["expected_mib"]


def _mount_tmpfs(where: Path, mib: int) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mib}m", "migfw-test", str(where)],
                   check=True)  # fmt: skip
    return where


def test_disk_full_while_capturing_loses_no_finished_trial(bed) -> None:
    small = bed.get("tmpfs")
    if small is None:
        pytest.skip("needs the small filesystem of test_source_libvirtd_killed_mid_migration")
    filler = small / "filler"
    try:
        proc, out = _start_trial(bed, "disk-full", out=small / "disk-full")
        _wait_event(proc, out, "probe_started")
        time.sleep(0.5)
        free = os.statvfs(small).f_bavail * os.statvfs(small).f_frsize
        filling = time.monotonic()
        with open(filler, "wb") as handle:  # leave 64 KiB: the capture runs into the wall
            handle.truncate(0)
            handle.write(b"\0" * max(0, free - 65536))
        seconds = _exit_after(bed, "trial folder's disk full", proc, filling)
        stdout, stderr = proc.communicate()
        assert proc.returncode == 0, stderr
        meta = json.loads((out / "trial.json").read_text())
        assert meta["status"] == "failed" and "disk_full" in meta["flags"]
        assert meta["failure"].startswith("no space left on device"), meta["failure"]
        assert (out / "probe.pcap").stat().st_size == 24  # an empty capture, not a cut one
        assert not list(small.glob("*.partial")) and not list(small.glob("*/.*.part"))
        for path, digest in bed["captures"].items():  # the finished trial beside it: intact
            assert _sha(path) == digest, path
        # With the disk still full the next trial stops before writing anything, in one line.
        proc, out2 = _start_trial(bed, "no-room", out=small / "no-room")
        _, err = proc.communicate(timeout=120)
        assert proc.returncode != 0 and len(err.strip().splitlines()) == 1, err
        assert "MiB free on the filesystem of" in err and not out2.exists()
    finally:
        filler.unlink(missing_ok=True)
    assert seconds < 60
    _next_trial_ok(bed, "after-disk-full", out=small / "after-disk-full")


def test_guest_qemu_stopped_mid_migration_is_replaced(bed) -> None:
    proc, out = _start_trial(bed, "stop-qemu")
    pids = _in_migration(proc, out)
    time.sleep(0.5)
    os.kill(pids["qemu"], signal.SIGSTOP)
    seconds = _exit_after(bed, "guest QEMU SIGSTOP", proc, time.monotonic())
    meta = _finish(bed, proc, out)
    bed["pids"].add(pids["qemu"])
    assert meta["status"] == "failed" and seconds < 120, (meta["failure"], seconds)
    assert "the VM's QEMU on host" in meta["failure"] and "does not answer" in meta["failure"]
    assert any(f"killed QEMU PID {pids['qemu']}" in r for r in meta["recovery"]["repaired"])
    assert meta["recovery"]["reprovisioned"] and not pid_alive(pids["qemu"])
    _next_trial_ok(bed, "after-stop-qemu")


def test_guest_ftp_server_is_bounded(bed) -> None:
    import socket

    from migfw.testbed.base import Testbed, read_state
    from migfw.testbed.netns import in_netns
    from migfw.testbed.trial import guest_shell

    state = read_state(Path(bed["cfg"]["testbed"]["state_dir"]))
    testbed = Testbed.from_dict(state["testbed"])

    def used_kib() -> int:
        with guest_shell(testbed) as shell:
            return int(shell.run("free -k | awk '/Mem:/{print $3}'"))

    before = used_kib()
    with in_netns(testbed.prober_netns):
        socks = [socket.create_connection((testbed.vm_address, 21), timeout=120)
                 for _ in range(60)]  # fmt: skip
    try:
        firsts = [s.makefile("rb").readline()[:3] for s in socks]
        # At most 12 sessions from one address (fewer if the prober still had one open).
        assert 1 <= firsts.count(b"220") <= 12 and firsts.count(b"421") >= 48, firsts
        grown = used_kib() - before
        assert grown < 8 * 1024, grown  # 12 sessions, not 60
    finally:
        for s in socks:
            s.close()
