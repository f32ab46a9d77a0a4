"""The migration progress watchdog (migfw.testbed.migration_watchdog: ProgressWatch and the
wait loop) on scripted job statistics: which stretch counts as "no progress", when a
migration is slow, stalled or unanswered. The real stall (a black-holed migration link), a
stopped libvirtd and QEMU are injected on the real testbed in tests/test_faults.py."""

from __future__ import annotations

import threading
import time

import pytest

from migfw.errors import MigfwError
from migfw.testbed.migration_settings import migration_settings
from migfw.testbed.migration_watchdog import ProgressWatch

MIB = 2**20


def _stats(processed: int, remaining: int, total: int = 130 * MIB) -> dict:
    return {"data_total": total, "data_processed": processed, "data_remaining": remaining}


def test_no_progress_is_proven_by_samples_from_the_last_byte_moved() -> None:
    watch = ProgressWatch(started=100.0)
    # Set-up: the job exists, no data yet (libvirt reports zeros): not streaming yet.
    watch.sample(100.5, _stats(0, 0, total=0))
    assert watch.idle_s() == pytest.approx(0.5) and not watch.streaming
    watch.sample(101.2, _stats(1 * MIB, 120 * MIB))  # first data: progress
    assert watch.setup_s == pytest.approx(1.2)
    watch.sample(101.3, _stats(9 * MIB, 112 * MIB))
    # The link goes dark: samples keep coming, the counters freeze.
    for t in (101.4, 103.0, 106.3):
        watch.sample(t, _stats(9 * MIB, 112 * MIB))
    assert watch.idle_s() == pytest.approx(5.0)
    assert watch.longest_s() == pytest.approx(5.0)  # the current stretch counts
    # Remaining shrinking alone is progress (pages re-sent elsewhere, post-copy pulls).
    watch.sample(107.0, _stats(9 * MIB, 100 * MIB))
    assert watch.idle_s() == 0.0
    assert watch.longest_s() == pytest.approx(5.0)  # up to the last sample that showed none
    assert watch.last_progress_stats["data_remaining"] == 100 * MIB


def test_a_slow_call_that_returns_with_progress_proves_no_stall() -> None:
    # Measured on the loaded machine: one jobStats call took 3.0 s (libvirtd busy) and came
    # back with 27 MB more sent at the 8 MiB/s cap. That is no stretch without progress.
    watch = ProgressWatch(started=0.0)
    watch.sample(9.21, _stats(40384309, 75816960), began=9.209)
    watch.sample(12.395, _stats(67304447, 48156672), began=9.39)
    assert watch.longest_s() == 0.0
    watch.sample(12.474, _stats(67304447, 48156672), began=12.47)  # then none for a moment
    assert watch.idle_s() == pytest.approx(12.47 - 12.395)


def test_after_the_last_byte_the_switchover_is_not_a_stall() -> None:
    watch = ProgressWatch(started=0.0)
    watch.sample(0.5, _stats(50 * MIB, 60 * MIB))
    watch.sample(1.0, _stats(110 * MIB, 0))  # all sent: destination finishing
    for t in (2.0, 5.0, 30.0):
        watch.sample(t, _stats(110 * MIB, 0))
        assert watch.idle_s() == 0.0
    assert watch.longest_s() == 0.0
    # Remaining 0 before any data moved is the set-up (libvirt's zeros), not the end.
    fresh = ProgressWatch(started=0.0)
    fresh.sample(3.0, _stats(0, 0, total=0))
    assert fresh.idle_s() == pytest.approx(3.0) and fresh.longest_s() == 0.0


def test_a_hanging_sample_call_is_pending_not_stalled_data() -> None:
    watch = ProgressWatch(started=0.0)
    watch.sample(0.1, _stats(5 * MIB, 50 * MIB))
    watch.calling(0.2)
    assert watch.pending_s(10.2) == pytest.approx(10.0)
    assert watch.idle_s() == 0.0  # nothing proven: no sample came back
    watch.sample(10.3, None)  # the call came back (failed): nothing pending
    assert watch.pending_s(11.0) == 0.0


def test_watchdog_record_says_slow_at_the_threshold() -> None:
    settings = migration_settings({"stall_timeout_s": 10, "slow_stall_s": 2})
    watch = ProgressWatch(started=0.0)
    watch.sample(0.1, _stats(1 * MIB, 9 * MIB))
    watch.sample(2.2, _stats(1 * MIB, 9 * MIB))
    watch.sample(2.3, _stats(2 * MIB, 8 * MIB))  # 2.1 s proven without progress, then on
    watch.sample(2.4, _stats(10 * MIB, 0))
    rec = watch.record(settings)
    assert rec["slow"] is True and rec["longest_no_progress_s"] == pytest.approx(2.1)
    assert rec["stall_timeout_s"] == 10 and rec["slow_stall_s"] == 2
    assert rec["setup_s"] == pytest.approx(0.1) and rec["streamed"] is True
    quick = ProgressWatch(started=0.0)
    quick.sample(0.1, _stats(1 * MIB, 9 * MIB))
    quick.sample(0.2, _stats(10 * MIB, 0))
    assert quick.record(settings)["slow"] is False


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"stall_timeout_s": 0.5}, "migration.stall_timeout_s: 0.5 s is below 1 s"),
        ({"stall_timeout_s": "soon"}, "migration.stall_timeout_s: 'soon' is not a number"),
        ({"slow_stall_s": 10}, r"migration.slow_stall_s: 10 s must be above 0 and below "
         r"stall_timeout_s \(10 s\)"),
        ({"slow_stall_s": 0}, "migration.slow_stall_s: 0 s must be above 0"),
    ],
)  # fmt: skip
def test_bad_watchdog_settings_are_one_line_errors(values, message) -> None:
    with pytest.raises(MigfwError, match=message):
        migration_settings(values)


class _Dom:
    """Stands in for a libvirt domain in the wait loop: scripted jobStats answers."""

    def __init__(self, answers, block: threading.Event | None = None) -> None:
        self.answers, self.block, self.calls = list(answers), block, 0

    def jobStats(self, flags: int) -> dict:  # noqa: N802 - libvirt's name
        self.calls += 1
        if self.block is not None and self.calls > 2:
            self.block.wait(30)
        return self.answers[min(self.calls, len(self.answers)) - 1]


def _sampler(dom: _Dom, settings: dict):
    libvirt = pytest.importorskip("libvirt")
    from migfw.testbed.migration_jobstats import JobSampler

    sampler = JobSampler(libvirt, dom, settings)
    sampler._read_in_force = lambda: {}  # no QEMU behind the stand-in
    return sampler


class _Live:
    """Both daemons answer (the liveness pings are exercised on the real testbed); the VM's
    QEMU either keeps using CPU or has used none since the start."""

    uris = {"A": None, "B": None}

    def __init__(self, qemu_working: bool) -> None:
        self.began, self.qemu_working = time.monotonic(), qemu_working

    def silent_s(self, host: str, now: float) -> float:
        return 0.0

    def qemu_idle_s(self, now: float) -> float:
        return 0.0 if self.qemu_working else now - self.began


def _live(qemu_working: bool = False) -> _Live:
    return _Live(qemu_working)


def test_wait_loop_gives_up_on_frozen_counters_after_the_timeout() -> None:
    libvirt = pytest.importorskip("libvirt")
    from migfw.testbed.migration_watchdog import watch_call

    settings = migration_settings({"stall_timeout_s": 1, "slow_stall_s": 0.5})
    job = {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED, "memory_total": 0}
    frozen = {**job, **_stats(3 * MIB, 40 * MIB)}
    sampler = _sampler(_Dom([{**job, **_stats(1 * MIB, 42 * MIB)}, frozen]), settings)
    done = threading.Event()
    began = time.monotonic()
    sampler.start()
    try:
        verdict = watch_call(done, sampler.watch, _live(), "A", settings, timeout_s=60)
    finally:
        sampler.finish()
    waited = time.monotonic() - began
    assert verdict == "stalled"
    assert 1.0 <= waited < 2.5, waited  # the timeout plus a sample period or two
    assert sampler.watch.last_stats["data_processed"] == 3 * MIB
    assert len(sampler.rows) > 10  # the samples went on, the counters did not move


def _hanging_call(qemu_working: bool) -> tuple[str | None, float]:
    """The wait loop over a source whose job-statistics call hangs after two samples
    (stall timeout 1 s): its verdict and how long the call had been pending."""
    libvirt = pytest.importorskip("libvirt")
    from migfw.testbed.migration_watchdog import watch_call

    settings = migration_settings({"stall_timeout_s": 1, "slow_stall_s": 0.5})
    job = {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED}
    release = threading.Event()
    moving = [{**job, **_stats(i * MIB, (99 - i) * MIB)} for i in range(1, 99)]
    sampler = _sampler(_Dom(moving, block=release), settings)
    done = threading.Event()
    sampler.start()
    try:
        verdict = watch_call(done, sampler.watch, _live(qemu_working), "A", settings, 60)
        waited = sampler.watch.pending_s(time.monotonic())
    finally:
        release.set()
        sampler.finish()
    return verdict, waited


def test_wait_loop_tells_a_hanging_call_from_a_stall() -> None:
    verdict, _ = _hanging_call(qemu_working=False)
    assert verdict == "unanswered:A"


@pytest.mark.parametrize("qemu_working", [False, True])
def test_a_hanging_call_is_given_up_on_later_while_the_qemu_works(qemu_working) -> None:
    # A job-statistics call held up by a QEMU that is busy (its CPU time advances) is not
    # taken for a dead QEMU at two stall timeouts, only at BUSY_PENDING_FACTOR.
    from migfw.testbed.migration_watchdog import BUSY_PENDING_FACTOR, PENDING_FACTOR

    verdict, waited = _hanging_call(qemu_working)
    assert verdict == "unanswered:A"
    factor = BUSY_PENDING_FACTOR if qemu_working else PENDING_FACTOR
    assert factor <= waited < factor + 1.0, waited


def test_wait_loop_returns_when_the_call_returns() -> None:
    libvirt = pytest.importorskip("libvirt")
    from migfw.testbed.migration_watchdog import watch_call

    settings = migration_settings({})
    sampler = _sampler(_Dom([{"type": libvirt.VIR_DOMAIN_JOB_NONE}]), settings)
    done = threading.Event()
    threading.Timer(0.3, done.set).start()
    sampler.start()
    try:
        assert watch_call(done, sampler.watch, _live(), "A", settings, timeout_s=60) is None
    finally:
        sampler.finish()


def test_liveness_sees_a_working_qemu_and_none_in_a_missing_domain() -> None:
    # libvirt's own test driver (a real libvirt connection, in process): its running domain
    # "test" reports CPU time that advances with the clock; a domain that is not there
    # (migrated away) shows no work, and its lookups keep the one connection.
    libvirt = pytest.importorskip("libvirt")
    from migfw.testbed import migration_watchdog
    from migfw.testbed.migration_watchdog import Liveness

    opened = []
    real_open = libvirt.open

    def counting_open(uri):
        opened.append(uri)
        return real_open(uri)

    results = {}
    for name in ("test", "not-there"):
        live = Liveness({"A": "test:///default"}, ("A", name))
        libvirt.open, opened[:] = counting_open, []
        try:
            live.start()
            time.sleep(4 * migration_watchdog.LIVENESS_PERIOD_S)
            results[name] = (live.qemu_idle_s(time.monotonic()), len(opened))
        finally:
            live.stop()
            libvirt.open = real_open
    working, missing = results["test"], results["not-there"]
    assert working[0] < 2.5 * migration_watchdog.LIVENESS_PERIOD_S, working
    assert missing[0] >= 4 * migration_watchdog.LIVENESS_PERIOD_S, missing
    assert missing[1] == 2  # one connection for the daemon, one for the CPU time: kept
