"""The README stays a ten-minute read that points at things that exist.

Checked against the repository itself, not against a copy of the README: its length, every
relative link (and #anchor) of the README, config/README.md and docs/*.md, that the Layout
block names every rule file and stage package and only paths that exist, that the rules,
modules, presets and `migfw` commands the README names are real, and that every docs page is
reachable from the README's index.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

README = REPO / "README.md"
MAX_README_LINES = 150
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# Files whose links are checked: the README and every page it is the index of.
PAGES = [README, REPO / "config" / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*_\[\]]|\]\([^)]*\)", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {slug(m[1]) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def layout_block() -> str:
    text = README.read_text()
    section = text.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    return re.search(r"^```\n(.*?)^```", section, re.M | re.S)[1]


def test_slug_and_link_parsing_match_known_cases() -> None:
    assert slug("Rerun only the analysis (cached pcaps)") == "rerun-only-the-analysis-cached-pcaps"
    pairs = "many-host-pairs-at-once-testbedpairs"
    assert slug("Many host pairs at once (`testbed.pairs`)") == pairs
    assert LINK.findall("see [a](docs/x.md#y) and [b](https://e.org)") == [
        "docs/x.md#y",
        "https://e.org",
    ]


def test_readme_is_short() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading with anchor #{anchor}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_every_docs_page_is_in_the_readme_index() -> None:
    linked = {(REPO / t.partition("#")[0]).resolve() for t in relative_links(README)}
    orphans = [p.name for p in sorted((REPO / "docs").glob("*.md")) if p.resolve() not in linked]
    # A page may be reached through another page of its topic instead (the SLR's steps).
    reached = {
        (REPO / "docs" / t.partition("#")[0]).resolve()
        for p in (REPO / "docs").glob("*.md")
        if p.resolve() in linked
        for t in relative_links(p)
    }
    orphans = [n for n in orphans if (REPO / "docs" / n).resolve() not in reached]
    assert not orphans, f"docs pages nothing in the README leads to: {orphans}"


def test_layout_names_real_paths_every_rule_file_and_every_stage_package() -> None:
    block = layout_block()
    # Every top-level path in the left column exists.
    for line in block.splitlines():
        head = line.split()[0] if line.strip() and not line.startswith(" ") else None
        if head and head != "results/":
            assert (REPO / head.rstrip("/")).exists(), f"Layout names {head}, which does not exist"
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        assert smk.name in block, f"Layout does not name {smk.name}"
    package = REPO / "src" / "migfw"
    for init in package.glob("*/__init__.py"):
        stage = init.parent.name + "/"
        assert re.search(rf"^\s+{re.escape(stage)}\s", block, re.M), f"Layout misses {stage}"
    for sub in package.glob("*/*/__init__.py"):
        assert sub.parent.name + "/" in block, f"Layout misses {sub.parent.name}/"
    for module in re.findall(r"\b(\w+\.py)\b", block):
        assert (package / module).exists(), f"Layout names src/migfw/{module}, which is absent"


def test_rules_modules_and_presets_the_readme_names_exist() -> None:
    text = README.read_text()
    table = text.split("\n## What it produces", 1)[1].split("\n## ", 1)[0]
    sources = [REPO / "Snakefile", *(REPO / "workflow").rglob("*.smk")]
    rules = set(re.findall(r"^\s*rule (\w+):", "\n".join(p.read_text() for p in sources), re.M))
    rows = [r for r in table.splitlines() if r.startswith("| ") and "---" not in r][1:]
    assert len(rows) >= 6
    for row in rows:
        _, _, rule_cell, _, module_cell, _ = row.split("|")
        for rule in re.findall(r"`(\w+)`", rule_cell):
            assert rule in rules, f"README names rule {rule}, which no .smk defines"
        for module in re.findall(r"`([\w/]+\.py)`", module_cell):
            assert (REPO / "src" / "migfw" / module).is_file(), f"no src/migfw/{module}"
    presets = set(re.findall(r"`(\w[\w-]*\.yaml)`", text.split("\n## Presets", 1)[1]))
    on_disk = {p.name for p in (REPO / "config").glob("*.yaml")} - {"config.yaml", "ruleset.yaml"}
    assert presets - {"config.yaml"} == on_disk, "README's preset table and config/ disagree"


def test_the_module_column_of_docs_outputs_names_real_modules() -> None:
    table = (REPO / "docs" / "outputs.md").read_text().split("\n## ", 1)[0]
    rows = [r for r in table.splitlines() if r.startswith("| ") and "---" not in r][1:]
    assert len(rows) > 20
    for row in rows:
        cell = row.split("|")[-2]
        named = [m for m in re.findall(r"`([\w/]+(?:\.py|/))`", cell) if "/" in m]
        assert named, f"no module in: {row}"
        for module in named:
            assert (REPO / "src" / "migfw" / module).exists(), f"no src/migfw/{module}"


def test_migfw_commands_the_readme_names_exist() -> None:
    helptext = subprocess.run(
        [sys.executable, "-m", "migfw", "--help"], capture_output=True, text=True, check=True
    ).stdout
    text = README.read_text()
    blocks = "\n".join(re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S))
    named = set(re.findall(r"`migfw ([a-z][a-z-]+)", text))
    named |= set(re.findall(r"^migfw ([a-z][a-z-]+)", blocks, re.M))
    assert named, "the README names no migfw command: the pattern is out of date"
    for command in named:
        assert re.search(rf"^\s+{command}\s", helptext, re.M), f"`migfw {command}` does not exist"


def test_config_examples_in_the_docs_are_valid_configs() -> None:
    """Each ```yaml block of the pages is a config a user would pass with --configfile."""
    import yaml

    from migfw.config import config_problems

    def merged(base: dict, over: dict) -> dict:
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merged(base[key], value)
            else:
                base[key] = value
        return base

    schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    blocks = [
        (page, block)
        for page in PAGES
        for block in re.findall(r"^```yaml\n(.*?)^```", page.read_text(), re.M | re.S)
    ]
    assert blocks, "no ```yaml config example found: the pattern is out of date"
    for page, block in blocks:
        config = merged(
            yaml.safe_load((REPO / "config" / "config.yaml").read_text()), yaml.safe_load(block)
        )
        problems = config_problems(config, schema)
        assert not problems, f"{page.relative_to(REPO)}: {problems}"
    # The check can fail: the key the old lab example used is refused.
    bad = merged(
        yaml.safe_load((REPO / "config" / "config.yaml").read_text()),
        {"trials": {"intervals_s": [1]}},
    )
    assert config_problems(bad, schema)


def _named_outputs(table: str, root: str) -> dict[str, set[str]]:
    """results/ files named in a Markdown table's "File" column (placeholders left out), each
    with the rules named in the same row's "Rule" column."""
    header, *rows = [r for r in table.splitlines() if r.startswith("| ") and "---" not in r]
    cells = [c.strip() for c in header.split("|")]
    file_col = next(i for i, c in enumerate(cells) if c.startswith("File"))
    rule_col = cells.index("Rule")
    named: dict[str, set[str]] = {}
    for row in rows:
        folder = root
        rules = set(re.findall(r"`(\w+)`", row.split("|")[rule_col]))
        for token in re.findall(r"`([^`]+)`", row.split("|")[file_col]):
            if not re.fullmatch(r"[\w./-]+\.(csv|json|png|md|rst|ris|nft|conf)", token):
                continue
            path = token if token.startswith(("results/", "config/", "resources/")) else None
            if path is None:
                path = (root + token) if "/" in token else folder + token
            folder = path.rsplit("/", 1)[0] + "/"
            named.setdefault(path, set()).update(rules)
    return named


@pytest.mark.skipif(shutil.which("snakemake") is None, reason="snakemake is not installed")
def test_every_output_the_tables_name_is_made_by_the_rule_they_name() -> None:
    """The README's and docs/outputs.md's Rule and File columns against a dry run of the
    default config (every rule planned, testbed ones included): a renamed or dropped output,
    or a file credited to the wrong rule, fails here."""
    done = subprocess.run(
        ["snakemake", "-n", "--forceall", "--nolock", "--cores", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    made: dict[str, set[str]] = {}
    for job in re.finditer(r"^(?:local)?rule (\w+):\n((?: {4}.*\n)*)", done.stdout, re.M):
        output = re.search(r"^\s+output: (.*)$", job[2], re.M)
        for path in output[1].split(", ") if output else []:
            made.setdefault(path.strip(), set()).add(job[1])
    assert "trials_table" in made.get("results/analysis/trials.csv", ()), "dry-run format changed"
    readme = README.read_text().split("\n## What it produces", 1)[1].split("\n## ", 1)[0]
    outputs = (REPO / "docs" / "outputs.md").read_text().split("\n## ", 1)[0]
    named = [*_named_outputs(readme, "results/").items()]
    named += _named_outputs(outputs, "results/").items()
    assert len(named) > 40
    for path, rules in sorted(named):
        if not path.startswith("results/"):
            assert (REPO / path).exists(), f"{path} does not exist"
        elif path not in made:
            pytest.fail(f"{path} is named as an output but the workflow never makes it")
        else:
            assert made[path] & rules, f"{path} is made by {made[path]}, not by {rules}"


def _migfw_command_lines() -> list[tuple[str, str]]:
    """(page, command) for every `migfw …` in an inline code span or a sh/plain code block."""
    found = []
    for page in PAGES:
        text = page.read_text()
        spans = re.findall(r"`(migfw [^`\n]+)`", text)
        for block in re.findall(r"^```(?:sh)?\n(.*?)^```", text, re.M | re.S):
            spans += [line.strip() for line in block.splitlines()]
        spans += re.findall(r"^ {4}(migfw .*)$", text, re.M)  # indented code blocks
        for span in spans:
            for part in re.split(r"&&|\|\||[|;]", span.split("#", 1)[0]):
                part = part.strip()
                if part.startswith("migfw "):
                    found.append((str(page.relative_to(REPO)), part))
    return found


def test_every_migfw_option_the_docs_use_exists() -> None:
    """Each documented `migfw [sub…] --option` is an option of that (sub)command's parser."""
    import argparse

    from migfw.cli import COMMANDS, build_parser

    def child(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices.get(name)
        return None

    wrong = []
    lines = _migfw_command_lines()
    assert len(lines) > 20, "the docs' migfw commands were not found: the pattern is out of date"
    for page, line in lines:
        words = line.split()
        if words[1] not in COMMANDS:
            continue
        try:
            parser = child(build_parser(words[1]), words[1])
        except SystemExit:  # a stage whose packages are absent here
            continue
        for word in words[2:]:
            sub = child(parser, word) if re.fullmatch(r"[a-z][a-z-]*", word) else None
            if sub is None:
                break
            parser = sub
        options = set(parser._option_string_actions)
        for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", line):
            if option not in options:
                wrong.append(f"{page}: `{line}`: {option}")
    assert not wrong, "documented options that do not exist:\n" + "\n".join(wrong)


def test_every_dotted_migfw_name_in_the_docs_resolves() -> None:
    """`migfw.a.b.Name` in a page is importable: a moved or renamed module or object fails."""
    import importlib

    missing = []
    seen = 0
    for page in PAGES:
        for name in set(re.findall(r"`(migfw(?:\.\w+)+)(?:\(\))?`", page.read_text())):
            seen += 1
            parts = name.split(".")
            for cut in range(len(parts), 0, -1):
                try:
                    found = importlib.import_module(".".join(parts[:cut]))
                    break
                except ModuleNotFoundError:
                    continue
            for attribute in parts[cut:]:
                found = getattr(found, attribute, None)
            if found is None:
                missing.append(f"{page.relative_to(REPO)}: {name}")
    assert seen > 20, "no dotted migfw names found: the pattern is out of date"
    assert not missing, "names that do not resolve:\n" + "\n".join(missing)


def test_every_repository_path_in_the_docs_exists() -> None:
    """`src/…`, `scripts/…`, `config/…`, `tests/…` etc. in code spans name real files."""
    top = "src|scripts|config|resources|tests|workflow|profiles|requirements|docs"
    span = re.compile(rf"`((?:{top})/[\w./-]*[\w/])(?:::\w+)?`")
    missing = []
    paths = [(page, path) for page in PAGES for path in set(span.findall(page.read_text()))]
    assert len(paths) > 100, "no repository paths found: the pattern is out of date"
    for page, path in paths:
        if not (REPO / path).exists():
            missing.append(f"{page.relative_to(REPO)}: {path}")
    assert not missing, "paths that do not exist:\n" + "\n".join(missing)
