"""Shared test fixtures and locations."""

from __future__ import annotations

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
