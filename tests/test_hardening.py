"""Bad subnets and closed pipes end in one line, never a traceback (issue 9, item 5)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

from migfw.config import config_problems, network_problems
from migfw.errors import MigfwError
from migfw.testbed.base import load_config

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
BASE = yaml.safe_load((REPO / "config" / "config.yaml").read_text())

# (subnet, migration_subnet) -> the key named and a word of the reason.
BAD = [
    ("999.1.2.3/24", "10.231.1.0/30", "testbed.local.subnet", "CIDR"),
    ("10.231.0.0/40", "10.231.1.0/30", "testbed.local.subnet", "CIDR"),
    ("10.231.0.0", "10.231.1.0/30", "testbed.local.subnet", "CIDR"),
    ("10.231.0.1/24", "10.231.1.0/30", "testbed.local.subnet", "host bits"),
    ("8.8.8.0/24", "10.231.1.0/30", "testbed.local.subnet", "not private"),
    ("172.32.0.0/24", "10.231.1.0/30", "testbed.local.subnet", "not private"),
    ("10.231.0.0/25", "10.231.1.0/30", "testbed.local.subnet", "too small"),
    ("10.231.0.0/24", "10.231.1.0/31", "testbed.local.migration_subnet", "too small"),
    ("10.231.0.0/24", "10.231.1.2/30", "testbed.local.migration_subnet", "host bits"),
    ("10.231.0.0/24", "300.0.0.0/30", "testbed.local.migration_subnet", "CIDR"),
    ("10.231.0.0/24", "100.64.0.0/30", "testbed.local.migration_subnet", "not private"),
    ("10.231.0.0/24", "10.231.0.4/30", "testbed.local.migration_subnet", "overlaps"),
    ("10.231.0.0/16", "10.231.1.0/30", "testbed.local.migration_subnet", "overlaps"),
]


def _cfg(subnet: str, mig: str) -> dict:
    cfg = copy.deepcopy(BASE)
    cfg["testbed"]["local"].update(subnet=subnet, migration_subnet=mig)
    return cfg


@pytest.mark.parametrize(("subnet", "mig", "key", "reason"), BAD)
def test_bad_subnet_is_one_line_naming_the_key(subnet, mig, key, reason, tmp_path) -> None:
    problems = config_problems(_cfg(subnet, mig), SCHEMA)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{key}: ") and reason in problems[0], problems
    # The same check when the testbed commands read the file themselves.
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_cfg(subnet, mig)))
    with pytest.raises(MigfwError, match=f"{key}: .*{reason}") as err:
        load_config(path)
    assert "\n" not in str(err.value)


def test_good_subnets_pass() -> None:
    for subnet, mig in (("10.231.0.0/24", "10.231.1.0/30"), ("192.168.7.0/24", "172.16.0.0/29")):
        assert config_problems(_cfg(subnet, mig), SCHEMA) == []
    # Absent keys take LocalTestbed's defaults, and collide with them too.
    assert network_problems({"testbed": {"local": {}}}) == []
    clash = network_problems({"testbed": {"local": {"subnet": "10.231.1.0/24"}}})
    assert len(clash) == 1 and "overlaps" in clash[0]


@pytest.mark.parametrize(
    "command", [["up"], ["status"], ["preflight"], ["cleanup", "--dry-run"], ["down"]]
)
def test_testbed_commands_refuse_a_bad_subnet_in_one_line(command, tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_cfg("999.1.2.3/24", "10.231.1.0/30")))
    done = subprocess.run(
        [sys.executable, "-m", "migfw", "testbed", *command, "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "testbed.local.subnet: '999.1.2.3/24'" in lines[0], lines


@pytest.mark.slow
def test_snakemake_refuses_a_bad_subnet(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--directory", str(tmp_path),
         "--snakefile", str(REPO / "Snakefile"), "--configfile", str(REPO / "config/config.yaml"),
         "--config", 'testbed={"local":{"subnet":"10.231.0.0/40"}}'],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "testbed.local.subnet: '10.231.0.0/40' is not valid" in out, out[-2000:]
    assert "ValueError" not in out


# ------------------------------------------------------------------ closed pipe


def _migfw_into_closed_pipe(*args: str) -> subprocess.CompletedProcess:
    """Run migfw with stdout a real pipe whose reader has gone (what `| head -1` leaves)."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will read: every write to the pipe fails with EPIPE
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    try:
        return subprocess.run(
            [sys.executable, "-m", "migfw", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=300,
        )
    finally:
        os.close(write_end)


CAPTURE = REPO.parent / "shared" / "testdata" / "pcap" / "tcpdump"


@pytest.mark.parametrize("args", [["--help"], ["probes", "--help"], ["probes-on-capture"]])
def test_closed_pipe_ends_quietly_with_141(args) -> None:
    if args == ["probes-on-capture"]:
        caps = sorted(CAPTURE.glob("icmp*.pcap*")) if CAPTURE.exists() else []
        if not caps:
            pytest.skip("no shared ICMP capture beside the clone")
        args = ["probes", str(caps[0]), "--interval", "1"]
    done = _migfw_into_closed_pipe(*args)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    # argparse's help swallows a failed write itself (then 0) when stdout is unbuffered.
    codes = {0, 141} if "--help" in args else {141}
    assert done.returncode in codes, (done.returncode, done.stderr)


def test_pipe_into_head_has_no_traceback() -> None:
    """The shell form, `migfw probes … | head -1`, as a user types it (pipefail on)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    caps = sorted(CAPTURE.glob("icmp*.pcap*")) if CAPTURE.exists() else []
    if not caps:
        pytest.skip("no shared ICMP capture beside the clone")
    script = f"{sys.executable} -m migfw probes {caps[0]} --interval 1 | head -1"
    done = subprocess.run(
        ["bash", "-c", "set -o pipefail; " + script],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode in (0, 141), (done.returncode, done.stderr)  # 0: head read it all
    assert len(done.stdout.splitlines()) == 1
