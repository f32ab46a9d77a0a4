"""The testbed owner lock with real processes: a second owner is refused naming the first; a
dead owner's lock is taken over only after its leftovers (orphan prober by recorded PID,
half-written trials) are cleaned. Uses its own prefix; no VM is started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from migfw.errors import MigfwError

PREFIX = "mfo"


def _cfg(tmp_path: Path) -> dict:
    return {
        "trials_dir": str(tmp_path / "trials"),
        "testbed": {"provider": "local", "state_dir": str(tmp_path / "state"),
                    "local": {"prefix": PREFIX, "subnet": "10.234.0.0/24",
                              "migration_subnet": "10.234.1.0/30"}},
    }  # fmt: skip


HOLDER = "\n".join([
    "import time",
    "from migfw.testbed.owner import acquire",
    f"acquire({{'testbed': {{'local': {{'prefix': '{PREFIX}'}}}}}}, 'holder')",
    "print('held', flush=True)",
    "time.sleep(60)",
])  # fmt: skip


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (/run/migfw, ip netns)")
def test_second_owner_refused_then_stale_lock_taken_over(tmp_path: Path) -> None:
    from migfw.testbed.owner import acquire, lock_path

    cfg = _cfg(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(MigfwError, match=rf"in use by PID {holder.pid} "):
            acquire(cfg, "second")
        # An orphan "prober" recorded by the owner, and a half-written trial.
        orphan = subprocess.Popen(["sleep", "60"], start_new_session=True)
        (tmp_path / "state").mkdir()
        (tmp_path / "state" / "prober.json").write_text(
            json.dumps({"icmp_id": 1, "pids": {"prober": orphan.pid}})
        )
        partial = tmp_path / "trials" / "smoke" / "i0.01-r01.partial"
        partial.mkdir(parents=True)
        (partial / "probe.pcap").write_bytes(b"half")
        holder.send_signal(signal.SIGKILL)  # the owner dies without releasing
        holder.wait(10)
        owner = acquire(cfg, "taker")
        assert owner is not None
        body = json.loads(lock_path(cfg).read_text())
        assert body["pid"] == os.getpid()
        orphan.wait(10)  # killed by the takeover
        assert orphan.returncode is not None
        assert not partial.exists()
        aborted = list((tmp_path / "trials" / ".aborted" / "smoke").iterdir())
        assert len(aborted) == 1 and aborted[0].name.startswith("i0.01-r01-")
        assert (aborted[0] / "probe.pcap").read_bytes() == b"half"
        assert f"PID {holder.pid}" in (aborted[0] / "reason.txt").read_text()
        owner.release()
        assert not lock_path(cfg).exists()  # a clean release leaves nothing behind
        again = acquire(cfg, "clean")
        assert oct(lock_path(cfg).stat().st_mode & 0o777) == "0o600"
        again.release()
        assert not lock_path(cfg).exists()
    finally:
        if holder.poll() is None:
            holder.kill()
        time.sleep(0.1)
