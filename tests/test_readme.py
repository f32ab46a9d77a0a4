"""The README is the test: its quick start, "Rerun only the analysis" and "Report and archive"
command blocks run exactly as written, on a fresh clone, in an environment made by the plain
`bash scripts/install.sh` (not this test run's .venv with the test extras).

The blocks are read from README.md here, so editing the README changes what runs. They run in
one bash session, in README order, as a user types them in one terminal (so the `. .venv/bin/
activate` of the quick start holds for the blocks after it), with two documented changes:
- every `snakemake` command gets `--configfile config/test.yaml` appended (a shell function
  named `snakemake` wraps the real one): crafted trials with known losses instead of the
  testbed's 24 live migrations, which take 10 minutes and need root and QEMU. The workflow,
  the rules and every command line are otherwise the README's;
- the quick start's `bash scripts/test.sh` line is left out: it is the command that runs
  this test.
Afterwards `git status --porcelain` in the clone must be empty: everything the install, the
run, the report and the archive made is git-ignored.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow

SECTIONS = ("Quick start", "Rerun only the analysis", "Report and archive")
SKIPPED_LINES = {"bash scripts/test.sh"}  # the test command itself
SUBSTITUTE = 'snakemake() { command snakemake "$@" --configfile config/test.yaml; }'


def readme_blocks(text: str) -> dict[str, list[str]]:
    """The ```sh blocks of each wanted `## ` section of the README, in order."""
    blocks: dict[str, list[str]] = {}
    section = None
    for match in re.finditer(r"^## ([^\n]+)$|^```sh\n(.*?)^```$", text, re.M | re.S):
        if match[1] is not None:
            section = next((s for s in SECTIONS if match[1].startswith(s)), None)
        elif section is not None:
            blocks.setdefault(section, []).append(match[2])
    return blocks


def script_from(blocks: dict[str, list[str]]) -> str:
    lines = ["set -euo pipefail", SUBSTITUTE, "set -x"]
    for section in SECTIONS:
        for block in blocks[section]:
            for line in block.splitlines():
                command = line.split("#", 1)[0].strip()
                if command and command not in SKIPPED_LINES:
                    lines.append(line)
    return "\n".join(lines) + "\n"


def test_blocks_are_found_and_the_substitution_is_the_documented_one() -> None:
    blocks = readme_blocks((REPO / "README.md").read_text())
    assert set(blocks) == set(SECTIONS), "a README section the test runs has no ```sh block"
    script = script_from(blocks)
    assert "bash scripts/install.sh && . .venv/bin/activate && snakemake --cores 1" in script
    assert "snakemake --report report.html" in script
    assert "--forcerun trial_metrics" in script
    assert "snakemake --archive" in script
    assert "bash scripts/test.sh" not in script.split(SUBSTITUTE, 1)[1]
    # The parser sees a block only inside a wanted section.
    fake = "## Other\n```sh\nrm -rf /\n```\n## Quick start\n```sh\necho hi\n```\n"
    assert readme_blocks(fake) == {"Quick start": ["echo hi\n"]}


def plain_environment() -> dict[str, str]:
    """This process's environment without the test run's virtualenv."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    venv_bin = str(REPO / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    return env


@pytest.mark.skipif(os.geteuid() != 0, reason="the plain install runs apt-get: needs root")
def test_readme_commands_run_as_written_on_a_fresh_clone(tmp_path: Path) -> None:
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", head], cwd=clone, check=True)
    script = script_from(readme_blocks((clone / "README.md").read_text()))
    (tmp_path / "readme.sh").write_text(script)
    done = subprocess.run(
        ["bash", str(tmp_path / "readme.sh")],
        cwd=clone,
        env=plain_environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=2400,
    )
    output = done.stdout + done.stderr
    (tmp_path / "readme.log").write_text(output)
    assert done.returncode == 0, output[-4000:]

    # The environment was the plain install's, from the lock, without the test extras.
    record = (clone / ".venv" / "migfw-install.json").read_text()
    assert '"mode": "full"' in record and '"lock": "requirements/full.txt"' in record
    assert not (clone / ".venv" / "bin" / "pytest").exists()
    # What the blocks made, checked beyond their exit codes.
    assert (clone / "report.html").stat().st_size > 100_000
    assert (clone / "report.png").stat().st_size > 0
    with tarfile.open(clone / "migfw-paper.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"Snakefile", "requirements/full.txt", "requirements/analysis.txt"} <= names
    assert any(n.endswith("/probe.pcap") for n in names)
    info = (clone / "results" / "run_info.md").read_text()
    assert "| lock file | requirements/full.txt |" in info
    assert "| venv matches lock | yes" in info
    rebuilt = clone / "paper"
    assert (rebuilt / "results" / "analysis" / "summary.csv").exists()
    assert '"mode": "analysis"' in (rebuilt / ".venv" / "migfw-install.json").read_text()
    assert (rebuilt / "results" / "analysis" / "trials.csv").read_text() == (
        clone / "results" / "analysis" / "trials.csv"
    ).read_text()

    status = subprocess.run(
        ["git", "status", "--porcelain", "--ignored=no"],
        cwd=clone,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert status == "", f"generated files not ignored:\n{status}"
    shutil.rmtree(clone)  # two virtualenvs, ~1.5 GB
