"""The migration watchdog: is the migration progressing (`ProgressWatch`, fed by the
job-statistics samples), do both libvirt daemons answer (`Liveness`), and when to give up on
the migrate call (`watch_call`: stalled, a daemon or the VM's QEMU not answering, or the
overall timeout). Giving up itself (abortJob, the failure record) is migfw.testbed.migrate's.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any


class ProgressWatch:
    """How long a migration has gone without progress, from its job-statistics samples.

    Progress is the data processed increasing or the data remaining decreasing (libvirt's
    `data_processed`/`data_remaining`: RAM, device state and disks). A stretch without
    progress is proven by samples only: from the sample that last showed progress to the
    start of the latest call that still showed none - a slow call (libvirtd busy for
    seconds) that comes back with progress proves nothing. Not counted: the stretch after
    the last byte is sent (remaining 0: the switchover, the destination finishing). The set-up
    before the first byte (a destination that is not ready) is kept apart (`setup_s`). A call
    that does not return at all is `pending_s` (the source's libvirtd or QEMU does not
    answer). All times are monotonic seconds: a stepped wall clock cannot fake or hide a stall.
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self.last_progress = started
        self.quiet_until: float | None = None  # start of the latest call showing no progress
        self.longest = 0.0  # the longest proven stretch without progress once streaming
        self.setup_s: float | None = None  # set-up: the call to the first byte moved
        self.processed: int | None = None
        self.remaining: int | None = None
        self.streaming = False  # the first byte has moved
        self.done_sending = False  # remaining reached 0 after data moved
        self.last_stats: dict[str, Any] | None = None
        self.last_progress_stats: dict[str, Any] | None = None
        self.call_started: float | None = None  # a sample call in flight since
        self.lock = threading.Lock()

    def calling(self, now: float) -> None:
        with self.lock:
            self.call_started = now

    def sample(self, now: float, stats: dict[str, Any] | None, began: float | None = None) -> None:
        """One returned sample (`stats` None: the call failed or no job runs), its call made
        at `began` (default `now`)."""
        began = now if began is None else began
        with self.lock:
            self.call_started = None
            if not stats:
                return
            self.last_stats = stats
            processed, remaining = stats.get("data_processed"), stats.get("data_remaining")
            moved = processed is not None and processed > (self.processed or 0)
            drained = (
                remaining is not None and self.remaining is not None and remaining < self.remaining
            )
            if processed is not None:
                self.processed = max(processed, self.processed or 0)
            if remaining is not None:
                self.remaining = remaining
            if moved or drained:
                if not self.streaming:
                    self.setup_s = now - self.started
                elif self.quiet_until is not None:
                    self.longest = max(self.longest, self.quiet_until - self.last_progress)
                self.streaming = True
                self.last_progress, self.quiet_until = now, None
                self.last_progress_stats = stats
            else:
                self.quiet_until = max(began, self.quiet_until or began)
            self.done_sending = self.streaming and remaining == 0
            if self.done_sending:  # the switchover is not a stall: nothing to prove
                self.last_progress, self.quiet_until = now, None

    def idle_s(self, now: float | None = None) -> float:
        """Proven seconds without progress so far (0 once all data is sent)."""
        with self.lock:
            if self.done_sending or self.quiet_until is None:
                return 0.0
            return max(0.0, self.quiet_until - self.last_progress)

    def pending_s(self, now: float) -> float:
        """Seconds the sample call in flight has been waiting for libvirt (0 if none)."""
        with self.lock:
            return 0.0 if self.call_started is None else now - self.call_started

    def longest_s(self) -> float:
        """The longest proven stretch without progress after the first byte, the current
        one included."""
        current = self.idle_s() if self.streaming else 0.0
        with self.lock:
            return max(self.longest, current)

    def record(self, settings: dict[str, Any]) -> dict[str, Any]:
        """trial.json `migration.watchdog`."""
        longest = self.longest_s()
        return {
            "stall_timeout_s": settings["stall_timeout_s"],
            "slow_stall_s": settings["slow_stall_s"],
            "longest_no_progress_s": round(longest, 3),
            "setup_s": None if self.setup_s is None else round(self.setup_s, 3),
            "slow": longest >= settings["slow_stall_s"],
            "streamed": self.streaming,
        }


WATCH_PERIOD_S = 0.1
# Before the first byte moves (libvirt preparing the destination, starting its QEMU: 1.5-4.5 s
# measured on the loaded 2-core machine) the bound is this many stall timeouts.
SETUP_FACTOR = 3
# A job-statistics call waits on QEMU's monitor, which a TCG QEMU held for 5.0 s early in a
# healthy migration (the first after a re-provision; it then finished): a call pending this
# many stall timeouts, not one, names the VM's QEMU as not answering - if it also used no CPU
# for a stall timeout (stopped, or waiting on nothing). A QEMU that works while its monitor
# is held (CI: 10 s and more on a loaded machine, then a healthy finish) is given up on only
# after BUSY_PENDING_FACTOR stall timeouts.
PENDING_FACTOR = 2
BUSY_PENDING_FACTOR = 6
LIVENESS_PERIOD_S = 1.0


class Liveness:
    """Both daemons asked, each by its own thread over its own connection (no keepalive),
    for a trivial call (getLibVersion) every LIVENESS_PERIOD_S; `silent_s(host)` is the time
    since the last answer. A stopped daemon leaves its thread waiting in the call until it
    answers or dies (then the connection is opened again). One connection per host, not one
    per question: over qemu+libssh each opening is an SSH login."""

    def __init__(self, uris: dict[str, str], vm: tuple[str, str] | None = None) -> None:
        self.uris = uris
        self.vm = vm  # (host, domain name): the VM's QEMU whose CPU time is watched
        now = time.monotonic()
        self.last_answer = {h: now for h in uris}
        self.last_error: dict[str, str | None] = {h: None for h in uris}
        self.cpu_ns: int | None = None
        self.last_cpu_advance = now  # the VM's QEMU last seen using CPU
        self.stopped = threading.Event()
        self.lock = threading.Lock()

    def start(self) -> None:
        for host in self.uris:
            threading.Thread(target=self._run, args=(host,), name=f"liveness-{host}",
                             daemon=True).start()  # fmt: skip
        if self.vm is not None:
            threading.Thread(target=self._run_cpu, name="liveness-qemu-cpu",
                             daemon=True).start()  # fmt: skip

    def stop(self) -> None:
        self.stopped.set()

    def _run(self, host: str) -> None:
        def ask(conn: Any) -> None:
            conn.getLibVersion()
            with self.lock:
                self.last_answer[host], self.last_error[host] = time.monotonic(), None

        def keep_connection(exc: Any) -> bool:
            with self.lock:
                self.last_error[host] = str(exc)
            return False

        self._poll(host, ask, keep_connection)

    def _run_cpu(self) -> None:
        """The VM's QEMU's CPU time (virDomainGetInfo: read from the process, not asked of
        QEMU's monitor, so it answers while a job-statistics call waits on that monitor),
        over a connection of its own: a call held up here never silences the daemon's
        liveness."""
        import libvirt

        host, name = self.vm or ("", "")

        def ask(conn: Any) -> None:
            cpu_ns = int(conn.lookupByName(name).info()[4])
            with self.lock:
                if self.cpu_ns is not None and cpu_ns > self.cpu_ns:
                    self.last_cpu_advance = time.monotonic()
                self.cpu_ns = cpu_ns

        def keep_connection(exc: Any) -> bool:
            # The domain gone (migrated away) is not a broken connection: over SSH each
            # reopening is a login.
            return exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN

        self._poll(host, ask, keep_connection)

    def _poll(
        self,
        host: str,
        ask: Callable[[Any], None],
        keep_connection: Callable[[Any], bool],
    ) -> None:
        """`ask` over one connection to `host` every LIVENESS_PERIOD_S until stopped; a
        libvirt error closes the connection (reopened next time) unless `keep_connection`."""
        import libvirt

        conn = None
        while not self.stopped.is_set():
            try:
                if conn is None:
                    conn = libvirt.open(self.uris[host])
                ask(conn)
            except libvirt.libvirtError as exc:
                if not keep_connection(exc) and conn is not None:
                    with contextlib.suppress(libvirt.libvirtError):
                        conn.close()
                    conn = None
            self.stopped.wait(LIVENESS_PERIOD_S)
        if conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    def silent_s(self, host: str, now: float) -> float:
        with self.lock:
            return now - self.last_answer[host]

    def qemu_idle_s(self, now: float) -> float:
        """Seconds since the VM's QEMU was last seen using CPU (since the start when never:
        a stopped or unreadable QEMU shows no work)."""
        with self.lock:
            return now - self.last_cpu_advance


def watch_call(
    done: threading.Event,
    watch: ProgressWatch,
    liveness: Liveness,
    source: str,
    settings: dict[str, Any],
    timeout_s: float,
) -> str | None:
    """Wait for the migrate call; None when it returned, else why to give up on it:
    `stalled` (samples show no progress), `unanswered:<host>` (that host's libvirtd answers
    nothing, or - the source - a job-statistics call hangs while the VM's QEMU uses no CPU,
    or hangs BUSY_PENDING_FACTOR stall timeouts in all) or `timeout`. `watch` is the
    migration's ProgressWatch (its JobSampler's `watch`)."""
    limit = settings["stall_timeout_s"]
    deadline = time.monotonic() + timeout_s
    while not done.wait(WATCH_PERIOD_S):
        now = time.monotonic()
        for host in liveness.uris:
            if liveness.silent_s(host, now) >= limit:
                return f"unanswered:{host}"
        pending = watch.pending_s(now)
        if pending >= PENDING_FACTOR * limit and (
            liveness.qemu_idle_s(now) >= limit or pending >= BUSY_PENDING_FACTOR * limit
        ):
            return f"unanswered:{source}"  # the source's QEMU (or its libvirtd)
        if watch.idle_s(now) >= (limit if watch.streaming else SETUP_FACTOR * limit):
            return "stalled"
        if now >= deadline:
            return "timeout"
    return None
