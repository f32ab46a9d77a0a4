"""Which migfw source a pipeline step depends on, so editing it reruns exactly that step.

`code_version("migfw.measure.figures")` hashes the module's source and that of every migfw
module it imports, directly or transitively, at top level or inside a function (read from the
source with `ast`, nothing is imported). The placement registry counts as its registered
modules' module level (their trial steps run in the testbed only). A rule passes it as a
param: Snakemake reruns the rule when any of that code changes and never otherwise.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
from functools import cache
from pathlib import Path

PACKAGE = "migfw"


@cache
def _package_root() -> Path:
    spec = importlib.util.find_spec(PACKAGE)  # migfw/__init__ only: light
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


def _source_path(module: str) -> Path | None:
    """The source file of migfw module `module`, found on disk: `find_spec` would import
    every parent package (and with it matplotlib, pandas...) just to answer."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    base = _package_root().joinpath(*module.split(".")[1:])
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


def _resolve(name: str) -> str | None:
    """`name` if it is a migfw module, else its parent package (a `from X import attr`
    names an attribute, not a module)."""
    while name.startswith(PACKAGE):
        if _source_path(name) is not None:
            return name
        name = name.rpartition(".")[0]
    return None


# The placement registry's package (migfw.testbed.placements): its modules are imported by
# name from its MODULES tuple, and their steps import the testbed inside methods.
PLACEMENTS = "migfw.testbed.placements"


def _registered_modules(tree: ast.Module) -> list[str]:
    """The names in a module-level `MODULES = (...)` (the placement registry's list)."""
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "MODULES"
                                                 for t in node.targets)
                and isinstance(node.value, ast.Tuple | ast.List)):  # fmt: skip
            return [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
    return []


@cache
def direct_imports(module: str) -> frozenset[str]:
    """The migfw modules that `module`'s source imports anywhere in its body."""
    path = _source_path(module)
    if path is None:
        return frozenset()
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    nodes: list[ast.AST] = list(ast.walk(tree))
    if module == PLACEMENTS or module.startswith(PLACEMENTS + "."):
        # The placement registry: what every stage reads is the registered modules and
        # their module level; their trial steps' testbed imports run in the testbed only.
        nodes = list(tree.body)
        found.update(f"{PLACEMENTS}.{name}" for name in _registered_modules(tree))
    for node in nodes:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                resolved = _resolve(name)
                if resolved and resolved != module:
                    found.add(resolved)
    return frozenset(found)


def import_closure(*modules: str) -> list[str]:
    """`modules` and every migfw module they import, transitively, sorted."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(direct_imports(module))
    return sorted(seen)


def code_version(*modules: str) -> str:
    """A short hash of the source of `modules` and everything migfw they import."""
    digest = hashlib.sha256()
    for module in import_closure(*modules):
        path = _source_path(module)
        if path is not None:
            digest.update(module.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def folder_digest(*folders: str | Path) -> str:
    """A short hash of every file's relative name, size and modification time under
    `folders` (subfolders too): it changes when any file is added, removed, rewritten or
    touched, without reading a byte. A rule that declares a trial folder as one directory
    input (Snakemake sees only the folder's own mtime) passes it as a param, so a changed
    file inside still reruns exactly the jobs that read that folder."""
    digest = hashlib.sha256()
    for folder in folders:
        digest.update(f"{folder}\0".encode())
        for name, size, mtime in sorted(_files_under(str(folder), "")):
            digest.update(f"{name}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()[:16]


def _files_under(folder: str, prefix: str):
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir():
                yield from _files_under(entry.path, f"{prefix}{entry.name}/")
            elif entry.is_file():
                info = entry.stat()
                yield f"{prefix}{entry.name}", info.st_size, info.st_mtime_ns
