"""Command groups (`migfw testbed ...`, `migfw slr ...`) built from the modules of a stage."""

from __future__ import annotations

import argparse
import importlib


def register_group(
    subparsers: argparse._SubParsersAction, name: str, help_text: str, modules: list[str]
) -> None:
    """Add `migfw NAME SUBCOMMAND`; each module in `modules` adds its sub-commands.

    A module that is not written yet is skipped; a missing third-party package is
    skipped too, so an analysis-only install still gets every command it can run.
    """
    group = subparsers.add_parser(name, help=help_text)
    sub = group.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name or not (exc.name or "").startswith("migfw"):
                continue
            raise
        module.register_cli(sub)
