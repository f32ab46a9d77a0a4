"""A real one-node Slurm for a test module (scripts/slurm-local.sh), stopped afterwards.

Its state lives in a temporary folder and it listens on its own ports, so a cluster a user
started with the script's defaults is not touched; the module takes the machine-wide test
lock (tests/conftest.py: the word slurm-local in a module), because /run/slurm/conf, where
job steps find the cluster's config, is one per machine."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import REPO

SCRIPT = REPO / "scripts" / "slurm-local.sh"
TEST_PORT = "6937"  # the script's default is 6917


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the one-node Slurm needs root"
    missing = [c for c in ("munged", "slurmctld", "slurmd", "slurmdbd", "mariadbd", "sbatch")
               if shutil.which(c) is None and not Path("/usr/sbin", c).exists()]  # fmt: skip
    if missing:
        return f"not installed: {', '.join(missing)} (bash scripts/install.sh --test)"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm not installed (bash scripts/install.sh --test)"
    return None


def daemon_pids(folder: Path) -> dict[str, int]:
    """The daemons' recorded pids (run/<daemon>.pid), alive or not."""
    return {
        p.stem: int(p.read_text().strip() or 0)
        for p in (folder / "run").glob("*.pid")
        if p.read_text().strip().isdigit()
    }


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "(Z)" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
    except OSError:
        return "(Z)"


@contextmanager
def local_slurm(folder: Path) -> Iterator[dict[str, str]]:
    """Start the cluster in `folder`; yield the environment its clients need (SLURM_CONF,
    MIGFW_SLURM_ACCOUNT, MIGFW_SLURM_PARTITION); stop it and check that no daemon is left."""
    env = {**os.environ, "MIGFW_SLURM_DIR": str(folder), "MIGFW_SLURM_PORT": TEST_PORT}
    run = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    pids = daemon_pids(folder)
    try:
        assert run.returncode == 0, run.stderr[-3000:]
        line = subprocess.run(["bash", str(SCRIPT), "env"], env=env, capture_output=True,
                              text=True, check=True).stdout  # fmt: skip
        for pair in line.removeprefix("export ").split():
            key, value = pair.split("=", 1)
            env[key] = value
        yield env
    finally:
        stop = subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        status = subprocess.run(["bash", str(SCRIPT), "status"], env=env, capture_output=True,
                                text=True)  # fmt: skip
        assert stop.returncode == 0, stop.stderr
        assert status.returncode == 3, status.stdout  # 3: every daemon stopped
        assert sorted(pids) == ["mariadb", "munged", "slurmctld", "slurmd", "slurmdbd"], pids
        assert not [name for name, pid in pids.items() if alive(pid)], "a daemon outlived stop"
        assert not Path("/run/slurm/conf").is_symlink() or (
            os.readlink("/run/slurm/conf") != str(folder / "etc")
        )
