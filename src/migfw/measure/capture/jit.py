"""numba for the capture reader: where compiled kernels are cached, kernels compiled only when
first needed (realise), a faster kernel load, and the kernels' shared constants (counters,
reader modes, stop reasons, error codes, limits).

Imported before numba by every kernel module of the reader: it settles NUMBA_CACHE_DIR first.
Importing it does not import numba: the ahead-of-time kernels (aot.py) run without it.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

# The modules whose kernels call one another (containers -> l4 -> link).
KERNEL_MODULES = ("jit.py", "link.py", "l4.py", "containers.py")


def _sources_key(package_dir: Path) -> str:
    """A short digest of the kernel modules' sources (empty where they cannot be read)."""
    digest = hashlib.sha256()
    for name in KERNEL_MODULES:
        try:
            digest.update((package_dir / name).read_bytes())
        except OSError:
            pass
    return digest.hexdigest()[:12]


def _pick_cache_dir(package_dir: Path, home: Path) -> str:
    """The folder numba caches compiled kernels in, named after the kernels' sources.

    numba checks only the file that defines a kernel, not the modules of the kernels it calls
    (link <- l4 <- containers): an edit to link.py would leave stale machine code cached for
    the others. A folder per version of the sources cannot. It lies in the package's
    __pycache__, or in ~/.cache when the package is installed read-only, or in the temporary
    folder when both are unwritable (numba would raise at import time).
    """
    key = f"numba-{_sources_key(package_dir)}"
    for candidate in (package_dir / "__pycache__" / key, home / ".cache" / "migfw" / key):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=candidate, prefix=".w", delete=True)
            probe.close()
        except OSError:
            continue
        return str(candidate)
    return str(Path(tempfile.gettempdir()) / f"migfw-numba-{os.getuid()}" / key)


if not os.environ.get("NUMBA_CACHE_DIR"):
    os.environ["NUMBA_CACHE_DIR"] = _pick_cache_dir(Path(__file__).resolve().parent, Path.home())


class _Kernel:
    """A kernel whose numba compilation waits until it is first needed.

    `migfw probes` normally runs the ahead-of-time compiled kernels (migfw.measure.capture.aot)
    and never imports numba (~0.4 CPU-s of start-up). Where those are missing, realise() turns
    every kernel into a numba dispatcher (cached on disk as before) in each module that holds it.
    """

    def __init__(self, func, options: dict) -> None:  # noqa: ANN001
        self.py_func, self.options = func, options
        self.__name__, self.__doc__ = func.__name__, func.__doc__
        _KERNELS.append(self)

    def __call__(self, *args):  # noqa: ANN002, ANN204
        return realise()[self.py_func](*args)


_KERNELS: list[_Kernel] = []
_DISPATCHERS: dict = {}


def njit(**options):  # noqa: ANN201
    """numba.njit, applied on first use (see _Kernel)."""
    return lambda func: _Kernel(func, options)


def realise() -> dict:
    """Import numba, make each kernel a dispatcher and put it wherever a module holds the lazy
    kernel (kernels call one another by their module globals, which numba resolves)."""
    if len(_DISPATCHERS) == len(_KERNELS):
        return _DISPATCHERS
    import numba

    if os.environ.get("NUMBA_CACHE_DIR") and not numba.config.CACHE_DIR:
        numba.config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
    for k in _KERNELS:
        if k.py_func not in _DISPATCHERS:
            _DISPATCHERS[k.py_func] = numba.njit(**k.options)(k.py_func)
    lazy = {id(k): _DISPATCHERS[k.py_func] for k in _KERNELS}
    for name, module in list(sys.modules.items()):
        if name.startswith("migfw.") and module is not None:
            for attr, value in list(vars(module).items()):
                if isinstance(value, _Kernel):
                    setattr(module, attr, lazy[id(value)])
    ready_target()
    return _DISPATCHERS


class _NoScipyLinalg(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):  # noqa: ANN001, ANN201
        if name in ("scipy", "scipy.linalg", "scipy.linalg.cython_blas"):
            raise ModuleNotFoundError(f"{name} is kept out while numba sets up", name=name)
        return None


@contextmanager
def _without_scipy_linalg() -> Iterator[None]:
    blocker = _NoScipyLinalg()
    sys.meta_path.insert(0, blocker)
    try:
        yield
    finally:
        sys.meta_path.remove(blocker)


_TARGET_READY = False


def ready_target() -> None:
    """Set up numba's CPU target before the first kernel runs, without scipy.linalg.

    numba's set-up imports scipy.linalg only to learn whether compiled np.dot may use BLAS
    (numba.np.arraymath._HAVE_BLAS); no kernel of migfw uses it, and the import was ~0.15
    CPU-s of a whole `migfw probes` process. Where scipy.linalg is loaded already, nothing
    is kept out (the answer is then free).
    """
    global _TARGET_READY
    if _TARGET_READY:
        return
    import numba  # noqa: F401  (sets numba's config up first)
    from numba.core.registry import cpu_target

    if "scipy.linalg" in sys.modules:
        cpu_target.target_context.refresh()
    else:
        with _without_scipy_linalg():
            cpu_target.target_context.refresh()
    _TARGET_READY = True


CHUNK_BYTES = 16 << 20  # read size; one chunk's worth of output arrays is preallocated
MAX_CAPLEN = 262144  # libpcap's largest snapshot length; anything bigger is corrupt
MAX_BLOCK = 64 << 20  # a pcapng block larger than this is treated as corrupt

# Counters filled by the kernels (indices into the `counters` array).
C_PACKETS, C_ECHO, C_OTHER, C_SPB_ECHO, C_CUT = 0, 1, 2, 3, 4
C_TCP = 5  # TCP segments (any address), counted in TCP mode only
# Reader modes: 0 echoes of one target, 1 echo request destinations, 2 TCP of one target.
M_ECHO, M_DEST, M_TCP = 0, 1, 2
# Kernel stop reasons.
ST_NEED_MORE, ST_SHB, ST_IDB = 0, 1, 2
# Kernel error codes (reported with the byte offset of the offending record).
E_OK, E_CAPLEN, E_USEC, E_NSEC, E_BLOCKLEN, E_TRAILER, E_NOIDB, E_BODY = 0, 1, 2, 3, 4, 5, 6, 7
E_TSRANGE, E_SNAPLEN, E_LINKTYPE = 8, 9, 10
INT64_MAX = np.int64(0x7FFFFFFFFFFFFFFF)
