"""Check that a Snakemake HTML report opens in headless Chromium with every figure in it."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from migfw.errors import MigfwError
from migfw.scratch import scratch

BROWSERS = ["chromium", "chromium-browser", "google-chrome"]
# No background traffic: this machine may have no network, and nothing should leave it.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise MigfwError("no headless browser found (install Debian's chromium package)")


def _chromium(browser: str, args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    with scratch("chromium") as profile:
        cmd = [browser, *FLAGS, f"--user-data-dir={profile}", *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise MigfwError(f"{browser} did not finish within {timeout} s") from None


def check_report(
    report: str | Path,
    expected: list[str],
    screenshot: str | Path | None = None,
    categories: list[str] | None = None,
) -> dict[str, object]:
    """Render the report; every expected file name must be embedded and categories shown."""
    report = Path(report).resolve()
    if not report.is_file():
        raise MigfwError(f"{report}: report not found (run `snakemake --report {report.name}`)")
    html = report.read_text(errors="replace")
    missing = [name for name in expected if Path(name).name not in html]
    if missing:
        raise MigfwError(f"{report}: missing from the report: {', '.join(missing)}")
    browser = find_browser()
    dom = _chromium(browser, ["--virtual-time-budget=10000", "--dump-dom", report.as_uri()])
    if "Snakemake" not in dom.stdout:
        raise MigfwError(f"{report}: headless {Path(browser).name} did not render it")
    absent = [c for c in categories or [] if c not in dom.stdout]
    if absent:
        raise MigfwError(f"{report}: rendered page lacks the categories {', '.join(absent)}")
    result: dict[str, object] = {"figures": len(expected), "dom_bytes": len(dom.stdout)}
    if screenshot:
        shot = Path(screenshot).resolve()
        shot.parent.mkdir(parents=True, exist_ok=True)
        _chromium(
            browser,
            [
                "--window-size=1400,1000",
                "--virtual-time-budget=10000",
                f"--screenshot={shot}",
                report.as_uri(),
            ],
        )
        if not shot.exists() or shot.stat().st_size < 5000:
            raise MigfwError(f"{shot}: screenshot missing or blank")
        result["screenshot"] = str(shot)
    return result


def _cli(args: argparse.Namespace) -> int:
    expected = [str(p) for p in args.expect]
    result = check_report(args.report, expected, args.screenshot, args.category)
    print(
        f"{args.report}: renders, {result['figures']} expected files embedded"
        + (f", screenshot {result['screenshot']}" if "screenshot" in result else "")
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report-check", help="open the HTML report in headless Chromium")
    p.add_argument("report")
    p.add_argument("--expect", nargs="*", default=[], help="files that must be in the report")
    p.add_argument("--category", nargs="*", default=[], help="categories the page must show")
    p.add_argument("--screenshot", help="write a PNG screenshot of the rendered report")
    p.set_defaults(func=_cli)
