"""Shared test fixtures and locations."""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TESTDATA = SHARED / "testdata"


@pytest.fixture
def testdata() -> Path:
    """../shared/testdata, or skip where a user's clone has no ../shared beside it."""
    if not TESTDATA.is_dir():
        pytest.skip("../shared/testdata is not present")
    return TESTDATA


# Tests that make namespaces, links or testbeds use fixed names and subnets. Two suites run at
# once on one machine (parallel sessions, each in its own clone) would collide: such modules
# take one machine-wide lock for their duration, so they run one module at a time (so do the
# modules that start the one-node Slurm, scripts/slurm-local.sh: its /run/slurm/conf is one).
_NETWORK_MODULE = re.compile(r"netns|testbedcfg|nethelpers|LocalTestbed|linked_pair|slurm-local")
_MACHINE_LOCK = Path("/run/migfw-tests.lock")


@pytest.fixture(autouse=True, scope="module")
def _one_network_module_per_machine(request: pytest.FixtureRequest) -> Iterator[None]:
    source = Path(str(request.module.__file__))
    if os.geteuid() != 0 or not _NETWORK_MODULE.search(source.read_text()):
        yield
        return
    with open(_MACHINE_LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"\n{source.name}: waiting for another suite's network tests", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
