"""Scratch folders of killed runs: removed by the next run, live ones and others' kept.

Faults injected for real: processes SIGKILLed while they hold a scratch folder (a plain one,
and the dedupe CLI mid-run) or an unfinished atomic write, then a new run on the same folder.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from migfw.io import atomic_write
from migfw.scratch import owner_tag, scratch, scratch_dir

REPO = Path(__file__).resolve().parents[1]

HOLDER = (
    "import sys, time\n"
    "from migfw.scratch import scratch_dir\n"
    "path = scratch_dir('links', sys.argv[1])\n"
    "open(path + '/part.arrow', 'w').write('x' * 4096)\n"
    "print(path, flush=True)\n"
    "time.sleep(120)\n"
)


def _holder(parent: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(parent)], stdout=subprocess.PIPE,
                            text=True, cwd=REPO)  # fmt: skip
    return proc, Path(proc.stdout.readline().strip())


def test_a_killed_owners_folder_goes_a_live_ones_and_others_stay(tmp_path: Path) -> None:
    killed, killed_dir = _holder(tmp_path)
    live, live_dir = _holder(tmp_path)
    try:
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(10)
        assert killed_dir.is_dir() and live_dir.is_dir()
        # This PID with another start time: the PID was reused, its owner is gone.
        host, boot, pid, start = owner_tag().split(".")
        reused = tmp_path / f"migfw-links-{host}.{boot}.{pid}.{int(start) + 1}-abc"
        past_boot = tmp_path / f"migfw-links-{host}.{'0' * 8}.{pid}.{start}-abc"
        other_host = tmp_path / f"migfw-links-otherhost.{boot}.1.1-abc"  # a shared /tmp
        unrelated = tmp_path / "migfw-links-notours"
        for folder in (reused, past_boot, other_host, unrelated):
            folder.mkdir()
        with scratch("probes", tmp_path) as mine:
            assert Path(mine).is_dir()
            assert not killed_dir.exists() and not reused.exists() and not past_boot.exists()
            assert live_dir.is_dir() and (live_dir / "part.arrow").stat().st_size == 4096
            assert other_host.is_dir() and unrelated.is_dir()
        assert not Path(mine).exists()
    finally:
        live.kill()
        live.wait(10)
    # The live holder is now dead too: the next folder removes its leftovers.
    Path(scratch_dir("links", tmp_path)).rmdir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other_host.name, unrelated.name])


WRITER = (
    "import sys, time\n"
    "from migfw.io import atomic_write\n"
    "with atomic_write(sys.argv[1]) as out:\n"
    "    out.write('half')\n"
    "    out.flush()\n"
    "    print('writing', flush=True)\n"
    "    time.sleep(120)\n"
)


def _writer(target: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE,
                            text=True, cwd=REPO)  # fmt: skip
    assert proc.stdout.readline().strip() == "writing"
    return proc


def test_a_killed_writers_partial_file_goes_with_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "table.csv"
    target.write_text("old\n")
    killed = _writer(target)
    live = _writer(target)
    try:
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(10)
        partials = sorted(tmp_path.glob(".table.csv.*.part"))
        assert len(partials) == 2 and target.read_text() == "old\n"  # the kill changed nothing
        killed_part = next(p for p in partials if f".{killed.pid}." in p.name)
        host, boot, pid, start = owner_tag().split(".")
        reused = tmp_path / f".table.csv.{host}.{boot}.{pid}.{int(start) + 1}-x.part"
        other_host = tmp_path / f".table.csv.otherhost.{boot}.1.1-x.part"  # a shared folder
        other_file = tmp_path / f".other.csv.{host}.{boot}.{pid}.{int(start) + 1}-x.part"
        for path in (reused, other_host, other_file):
            path.write_text("x")
        with atomic_write(target) as out:
            out.write("new\n")
        assert target.read_text() == "new\n"
        left = sorted(tmp_path.glob(".*.part"))
        assert killed_part not in left and reused not in left
        assert sorted(set(left) - set(partials)) == sorted([other_host, other_file])
        assert len(set(left) & set(partials)) == 1  # the live writer's file stays
    finally:
        live.kill()
        live.wait(10)


def _clean_export(path: Path, works: int) -> int:
    """Distinct works, every third exported twice (the same after folding); the copies."""
    rnd = random.Random(11)
    words = [f"w{rnd.randrange(10**6):06d}" for _ in range(400)]
    out, copies = [], 0
    for i in range(works):
        title = " ".join(rnd.choice(words) for _ in range(8))
        authors = "".join(f"AU  - Name{rnd.randrange(300)}, {chr(65 + k)}.\n" for k in range(3))
        for copy in range(2 if i % 3 == 0 else 1):
            out.append(f"TY  - JOUR\nTI  - {title.upper() if copy else title}\n{authors}"
                       f"PY  - {2000 + i % 20}\nJO  - Journal {i % 50}\nSP  - {i % 300 + 1}\n"
                       "ER  - \n")  # fmt: skip
            copies += copy
    path.write_text("\n".join(out))
    return copies


def test_sigkilled_dedupe_leaves_nothing_after_the_next_run(tmp_path: Path) -> None:
    works = 6000
    copies = _clean_export(tmp_path / "x.ris", works)
    scratch_root = tmp_path / "tmp"
    scratch_root.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch_root)}
    command = [sys.executable, "-m", "migfw", "slr", "dedupe", str(tmp_path / "x.ris")]
    proc = subprocess.Popen([*command, "--out", str(tmp_path / "killed")], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(scratch_root.glob("migfw-*")) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    left = list(scratch_root.glob("migfw-*"))
    assert left  # the kill left the run's scratch folder behind
    assert not (tmp_path / "killed" / "clusters.csv").exists()
    done = subprocess.run([*command, "--out", str(tmp_path / "out")], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert list(scratch_root.iterdir()) == []  # the dead run's folder and its own: gone
    clusters = (tmp_path / "out" / "clusters.csv").read_text().splitlines()[1:]
    assert len(clusters) == works + copies
    assert len({line.split(",")[1] for line in clusters}) == works
