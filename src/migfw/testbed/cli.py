"""`migfw testbed ...`: each testbed module adds its own sub-commands."""

from __future__ import annotations

import argparse

from migfw.groups import register_group

MODULES = [
    "migfw.testbed.preflight",
    "migfw.testbed.guest",
    "migfw.testbed.providers",
    "migfw.testbed.ruleset_render",
    "migfw.testbed.placements.command",
    "migfw.testbed.trialcli",
    "migfw.testbed.cleanup",
]


def register(subparsers: argparse._SubParsersAction) -> None:
    register_group(subparsers, "testbed", "embedded or external migration testbed", MODULES)
