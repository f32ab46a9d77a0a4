"""`migfw slr ...`: each SLR module adds its own sub-commands."""

from __future__ import annotations

import argparse

from migfw.groups import register_group

MODULES = ["migfw.slr.imports", "migfw.slr.dedupe", "migfw.slr.review"]


def register(subparsers: argparse._SubParsersAction) -> None:
    register_group(subparsers, "slr", "systematic literature review branch", MODULES)
