"""The package's shape: no import cycle, and no stage importing a later stage.

Imports are read from the source (top level and inside functions alike), so a lazy import
counts: it is a dependency all the same.
"""

from __future__ import annotations

import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import migfw
from migfw.provenance import direct_imports

# Pipeline stages in order; a module may import its own stage, earlier ones and `base`.
STAGES = ["base", "trials", "testbed", "measure", "paper"]
# The placement registry (one module per placement): every stage reads it, so at module level
# it imports only `base` modules; the placements' trial steps import the testbed inside their
# methods (only the testbed calls them), which direct_imports leaves out for this package.
PLACEMENTS = "migfw.testbed.placements"
# The SLR branch is independent of the measurement pipeline.
INDEPENDENT = {"slr"}


def all_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(migfw.__path__, "migfw."))


def stage_of(module: str) -> str:
    if module == PLACEMENTS or module.startswith(PLACEMENTS + "."):
        return "base"
    part = module.split(".")[1] if module.count(".") else "base"
    if part in STAGES or part in INDEPENDENT:
        return part
    return "base"  # top-level helpers: errors, io, config, provenance, cli, groups


def test_every_module_is_seen() -> None:
    modules = all_modules()
    for expected in ("migfw.measure.probes", "migfw.trials.contract", "migfw.testbed.base"):
        assert expected in modules


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every back edge of a depth-first walk, as the cycle it closes."""
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_no_import_cycle() -> None:
    graph = {m: set(direct_imports(m)) for m in all_modules()}
    # A submodule importing its own package's __init__ is not a cycle worth reporting.
    for module, deps in graph.items():
        deps -= {d for d in deps if module.startswith(d + ".")}
    assert find_cycles(graph) == [], "import cycles"


def test_no_stage_imports_a_later_stage() -> None:
    wrong = []
    for module in all_modules():
        stage = stage_of(module)
        for dep in direct_imports(module):
            dep_stage = stage_of(dep)
            if dep_stage == "base" or dep_stage == stage or module == "migfw.cli":
                continue
            if stage == "base" and module != "migfw.cli":
                wrong.append((module, dep))
            elif stage in INDEPENDENT or dep_stage in INDEPENDENT:
                wrong.append((module, dep))
            elif STAGES.index(dep_stage) > STAGES.index(stage):
                wrong.append((module, dep))
    assert wrong == [], f"imports against the pipeline's order: {wrong}"


def test_the_placement_registry_needs_no_testbed() -> None:
    """Every stage reads the registry: importing it and every placement loads no other
    testbed module and none of libvirt, fabric, scapy (an analysis-only install has none)."""
    probe = (
        "import sys\n"
        "from migfw.testbed.placements import registered\n"
        "assert len(registered()) >= 7\n"
        "print(sorted(m for m in sys.modules if m.startswith(('migfw.testbed.', 'libvirt', "
        "'fabric', 'scapy')) and not m.startswith('migfw.testbed.placements')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.strip()  # fmt: skip
    assert out == "[]", out
    # What a rule's code_version hashes for it: every registered module, nothing of the testbed.
    from migfw.provenance import import_closure
    from migfw.testbed.placements import MODULES

    closure = set(import_closure(PLACEMENTS))
    assert {f"{PLACEMENTS}.{m}" for m in MODULES} <= closure
    assert {m for m in closure if stage_of(m) != "base"} == set(), closure


def test_the_checkers_can_fail() -> None:
    # A planted cycle is found, and a lazy import inside a function counts as an edge.
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    assert "migfw.trials.contract" in direct_imports("migfw.measure.figures")  # lazy import


def test_code_version_reads_sources_without_importing_them() -> None:
    """Parsing the Snakefile computes a code_version per rule: it must not import the modules
    it hashes (figures would pull matplotlib and seaborn into every Snakemake start)."""
    probe = (
        "import sys\n"
        "from migfw.provenance import code_version, import_closure\n"
        "code_version('migfw.measure.figures')\n"
        "heavy = ('matplotlib', 'seaborn', 'pandas', 'numba')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "print(' '.join(import_closure('migfw.measure.figures')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "[]"
    closure = set(out[1].split())
    # figures.py imports these (some inside functions); the capture package is reached through them.
    assert {"migfw.measure.stats", "migfw.measure.attack", "migfw.trials.contract"} <= closure
    assert "migfw.measure.capture" in closure and "migfw.slr.review" not in closure


def test_code_version_changes_with_a_transitively_imported_module(tmp_path: Path) -> None:
    """Editing a module that figures.py reaches only through another one changes its hash."""
    from migfw import provenance

    src = Path(provenance.__file__).parent
    copy = tmp_path / "migfw"
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("__pycache__"))
    probe = (
        "from migfw.provenance import code_version; print(code_version('migfw.measure.figures'))"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def version() -> str:
        return subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
        ).stdout.strip()

    before = version()
    assert version() == before
    (copy / "io.py").write_text((copy / "io.py").read_text() + "\n# edited\n")
    assert version() != before
    (copy / "slr" / "review.py").write_text("# unrelated edit\n")
    after = version()
    (copy / "slr" / "review.py").write_text("# another unrelated edit\n")
    assert version() == after


def test_no_cfg_get_carries_a_fallback() -> None:
    """Defaults live in one place, the config schema (workflow/schemas/config.schema.yaml,
    `default:`): `cfg_get(cfg, "a.b")` falls back to it. A literal fallback written at a call
    site (`cfg_get(cfg, "testbed.provider", "local")`, once written ten times) would be a
    second place that can disagree; every key read must be one the schema knows."""
    import ast

    from migfw.config import schema_node

    root = Path(__file__).resolve().parents[1]
    calls, with_fallback, unknown = 0, [], []
    for path in sorted((root / "src/migfw").rglob("*.py")):
        for call in ast.walk(ast.parse(path.read_text())):
            name = getattr(call, "func", None)
            name = getattr(name, "id", getattr(name, "attr", None))
            if name != "cfg_get" or not isinstance(call, ast.Call):
                continue
            calls += 1
            where = f"{path.relative_to(root)}:{call.lineno}"
            if len(call.args) > 2 or call.keywords:
                with_fallback.append(where)
            key = call.args[1] if len(call.args) > 1 else None
            if isinstance(key, ast.Constant):
                try:
                    schema_node(key.value)
                except KeyError:
                    unknown.append(f"{where} {key.value}")
    rules = [root / "Snakefile", *sorted((root / "workflow/rules").glob("*.smk"))]
    for path in rules:  # the workflow reads the validated config, defaults filled in
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"cfg_get\(|config(\[[^]]+\])*\.get\([^)]*,", line):
                with_fallback.append(f"{path.relative_to(root)}:{n}")
    assert calls >= 40, calls  # the scan finds the readers it is meant to check
    assert not with_fallback, with_fallback
    assert not unknown, unknown


MAX_MODULE_LINES = 600


def oversized_modules(package: Path, limit: int = MAX_MODULE_LINES) -> list[str]:
    """Modules over `limit` lines whose docstring has no line starting `Size:` with a reason
    (at least five words: why this is one unit and not two)."""
    import ast

    found = []
    for path in sorted(package.rglob("*.py")):
        text = path.read_text()
        lines = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
        if lines <= limit:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        reasons = [
            line.strip().removeprefix("Size:").split()
            for line in doc.splitlines()
            if line.strip().startswith("Size:")
        ]
        if not any(len(words) >= 5 for words in reasons):
            found.append(f"{path.relative_to(package.parent)} ({lines} lines)")
    return found


def test_no_module_is_oversized_without_a_written_reason() -> None:
    """Modules at the grain of what they do (issue 17): over 600 lines, a module either splits
    at a seam or says at its top, in a docstring line starting `Size:`, why it is one unit."""
    package = Path(migfw.__file__).parent
    assert oversized_modules(package) == [], "split these or write a 'Size:' line at their top"


def test_the_size_check_can_fail(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    body = "x = 1\n" * 600
    (package / "small.py").write_text('"""Small."""\n' + "x = 1\n" * 599)
    (package / "big.py").write_text('"""Big, no reason."""\n' + body)
    (package / "terse.py").write_text('"""Big.\n\nSize: because.\n"""\n' + body)
    (package / "told.py").write_text(
        '"""Big.\n\nSize: one state machine; its steps share every field.\n"""\n' + body
    )
    assert oversized_modules(package) == ["pkg/big.py (601 lines)", "pkg/terse.py (604 lines)"]


def rule_run_blocks(path: Path) -> dict[str, str]:
    """Rule name -> its `run:` block's code (dedented) in a .smk file."""
    import textwrap

    lines = path.read_text().splitlines()
    blocks: dict[str, str] = {}
    rule = None
    for n, line in enumerate(lines):
        found = re.match(r"\s*rule (\w+):", line)
        if found:
            rule = found[1]
        head = re.match(r"(\s*)run:\s*$", line)
        if head and rule:
            indent = len(head[1])
            body = []
            for below in lines[n + 1 :]:
                if below.strip() and len(below) - len(below.lstrip()) <= indent:
                    break
                body.append(below)
            blocks[rule] = textwrap.dedent("\n".join(body))
    return blocks


def test_each_rule_runs_one_named_function_of_its_stage_module() -> None:
    """One hop from a rule to its code (issue 17): every `run:` block calls exactly one
    function, `job(log, stage.f, ...)` (in process) or `testbed_job(log, stage.f, ...)` (a
    process of its own), where `stage = Stage("migfw.<stage>.<module>")` is named in the same
    file; never a command string (`migfw ...`, the CLI's COMMANDS table, run_migfw). The
    function imports, is public and typed, and takes exactly the arguments the rule passes."""
    import ast
    import importlib
    import inspect

    root = Path(__file__).resolve().parents[1]
    checked, problems = 0, []
    for path in sorted((root / "workflow" / "rules").glob("*.smk")):
        text = path.read_text()
        stages = dict(re.findall(r'^\s*(\w+) = Stage\("([\w.]+)"\)', text, re.M))
        for rule, code in rule_run_blocks(path).items():
            where = f"{path.name}:{rule}"
            if re.search(r"run_migfw|run_in_process|shell\(|\bmigfw [a-z]", code):
                problems.append(f"{where}: a command string instead of a named function")
            calls = [c for c in ast.walk(ast.parse(code)) if isinstance(c, ast.Call)
                     and getattr(c.func, "id", None) in ("job", "testbed_job")]  # fmt: skip
            if len(calls) != 1:
                problems.append(f"{where}: {len(calls)} job calls (one named function)")
                continue
            (call,) = calls
            target = call.args[1] if len(call.args) == 2 else None
            if not (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                    and target.value.id in stages):  # fmt: skip
                problems.append(f"{where}: not job(log, <Stage of this file>.<function>, ...)")
                continue
            module = stages[target.value.id]
            function = getattr(importlib.import_module(module), target.attr, None)
            if function is None or target.attr.startswith("_"):
                problems.append(f"{where}: {module}.{target.attr} is not a public function")
                continue
            signature = inspect.signature(function)
            given = {k.arg for k in call.keywords}
            required = {n for n, p in signature.parameters.items()
                        if p.default is inspect.Parameter.empty}  # fmt: skip
            if not given <= set(signature.parameters) or not required <= given:
                problems.append(f"{where}: passes {sorted(given)}, {target.attr} takes "
                                f"{list(signature.parameters)}")  # fmt: skip
            if any(p.annotation is inspect.Parameter.empty for p in signature.parameters.values()):
                problems.append(f"{where}: {module}.{target.attr} has untyped parameters")
            if not module.startswith(("migfw.measure", "migfw.paper", "migfw.slr",
                                      "migfw.testbed", "migfw.trials")):  # fmt: skip
                problems.append(f"{where}: {module} is not a stage module")
            checked += 1
    assert checked >= 20, checked  # every rule with a run: block was found
    assert not problems, problems


def test_rule_files_mirror_the_stage_packages() -> None:
    """testbed.smk, trials.smk, measure.smk, paper.smk, slr.smk (+ common.smk): a rule's
    function lives in the package its file is named after (paper.smk also draws the thesis's
    uptime figure with measure's figure code)."""
    root = Path(__file__).resolve().parents[1]
    rules = root / "workflow" / "rules"
    assert {p.stem for p in rules.glob("*.smk")} == {
        "common", "testbed", "trials", "measure", "paper", "slr"}  # fmt: skip
    for path in rules.glob("*.smk"):
        for name, module in re.findall(r'^\s*(\w+) = Stage\("([\w.]+)"\)', path.read_text(), re.M):
            package = module.split(".")[1]
            assert package == path.stem or (path.stem, module) == (
                "paper",
                "migfw.measure.figures",
            ), f"{path.name}: {name} = {module}"
