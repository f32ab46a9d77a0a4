"""The analysis kernels compiled ahead of time (numba.pycc) into one extension module, so that
`migfw probes` and every trial-metrics job start without importing numba (~0.4 CPU-s).

`python -m migfw.measure.warm` (run by scripts/install.sh) builds it from the same kernel
functions the JIT path compiles, with exactly the signatures the JIT path compiled for them:
same code, same types, same results. It is named after a digest of the kernels' sources and
stored beside numba's cache (NUMBA_CACHE_DIR, see jit.py), so an edited kernel is never run
from a stale module. Where it is missing or cannot be loaded, kernel() falls back to numba's
JIT. MIGFW_KERNELS=jit forces the JIT path (tests compare the two).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from migfw.measure.capture.jit import KERNEL_MODULES, realise
from migfw.scratch import scratch

# Exported name -> (module, kernel).
EXPORTS = {
    "scan_pcap": ("migfw.measure.capture.containers", "_scan_pcap"),
    "scan_pcapng": ("migfw.measure.capture.containers", "_scan_pcapng"),
    "match_echoes": ("migfw.measure.match_kernel", "_match_kernel"),
}
_PACKAGE = Path(__file__).resolve().parent
_SOURCES = [_PACKAGE / name for name in (*KERNEL_MODULES, "aot.py")]
_SOURCES.append(_PACKAGE.parent / "match_kernel.py")

_loaded: dict[str, ModuleType | None] = {}  # module name -> module (None: unusable)
_process_name: str | None = None


def module_name() -> str:
    """The extension module's name: a digest of every source its machine code came from."""
    digest = hashlib.sha256()
    for path in _SOURCES:
        try:
            digest.update(path.read_bytes())
        except OSError:
            pass
    return f"_migfw_kernels_{digest.hexdigest()[:16]}"


def module_path(name: str | None = None) -> Path:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    return Path(os.environ["NUMBA_CACHE_DIR"]) / f"{name or module_name()}{suffix}"


def _load() -> ModuleType | None:
    global _process_name
    if _process_name is None:  # named once: sources edited meanwhile do not switch paths
        _process_name = module_name()
    name = _process_name
    if name not in _loaded:
        _loaded[name] = None
        path = module_path(name)
        if path.is_file():
            try:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                if all(hasattr(module, export) for export in EXPORTS):
                    _loaded[name] = module
            except (ImportError, OSError):
                pass  # built for another numpy or Python: the JIT path still works
    return _loaded[name]


def kernel(export: str) -> Callable:
    """The kernel `export` (a key of EXPORTS): compiled ahead of time where available."""
    if os.environ.get("MIGFW_KERNELS", "").lower() != "jit":
        module = _load()
        if module is not None:
            return getattr(module, export)
    return jit_kernel(export)


def jit_kernel(export: str) -> Callable:
    """The numba dispatcher of `export` (compiled or loaded from numba's cache on first call)."""
    module_name_, attr = EXPORTS[export]
    module = importlib.import_module(module_name_)
    realise()
    return getattr(module, attr)


@contextmanager
def jit_only() -> Iterator[None]:
    """Serve the JIT kernels inside the block (to compile them, or to compare)."""
    before = os.environ.get("MIGFW_KERNELS")
    os.environ["MIGFW_KERNELS"] = "jit"
    try:
        yield
    finally:
        if before is None:
            del os.environ["MIGFW_KERNELS"]
        else:
            os.environ["MIGFW_KERNELS"] = before


def build() -> Path:
    """Compile every export with the one signature the JIT path compiled for it.

    Run the JIT kernels on real inputs first (migfw.measure.warm), so the exported signatures
    are exactly those the pipeline calls. Writes the module atomically.
    """
    global _process_name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pycc's pending-deprecation notice
        from numba.pycc import CC

    name = module_name()
    dest = module_path(name)
    with scratch("aot", dest.parent) as tmp:
        cc = CC(name)  # generic x86-64 code by default: runs on any node of a cluster
        cc.output_dir = tmp
        cc.verbose = False
        for export in EXPORTS:
            dispatcher = jit_kernel(export)
            sigs = dispatcher.nopython_signatures
            if len(sigs) != 1:
                raise RuntimeError(f"{export}: {len(sigs)} JIT signatures, expected 1: {sigs}")
            cc.export(export, sigs[0])(dispatcher.py_func)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cc.compile()
        built = next(Path(tmp).glob(f"{name}*"))
        os.replace(built, dest)  # same folder's file system: atomic, also beside a second build
    _loaded.pop(name, None)
    _process_name = None
    return dest


def aot_loaded() -> bool:
    """Whether kernel() serves ahead-of-time compiled kernels in this process."""
    return os.environ.get("MIGFW_KERNELS", "").lower() != "jit" and _load() is not None


__all__ = ["EXPORTS", "aot_loaded", "build", "jit_kernel", "jit_only", "kernel", "module_name"]
