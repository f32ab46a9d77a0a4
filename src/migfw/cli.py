"""The `migfw` command. Each stage registers its own sub-commands.

Every sub-command handler returns an exit code; a MigfwError becomes one line on stderr
and exit status 2, so no user ever sees a traceback for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from migfw.errors import MigfwError

# Modules that provide `register(subparsers)`. Imported lazily so that an analysis-only
# install (no libvirt, no fabric) can still run every analysis command.
_STAGES = [
    "migfw.probes",
    "migfw.analysis",
    "migfw.paper",
    "migfw.figures",
    "migfw.synth",
    "migfw.testbed.cli",
    "migfw.slr.cli",
    "migfw.report",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="migfw", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _STAGES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # A stage whose extra packages (libvirt, fabric) are absent is left out.
            if exc.name == name or not (exc.name or "").startswith("migfw"):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MigfwError as exc:
        print(f"migfw {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"migfw {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
