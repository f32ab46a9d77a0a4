"""Handing freed memory back to the system between deduplication's stages, so one stage's
freed buffers do not sit under the next stage's peak."""

from __future__ import annotations

import ctypes

import pyarrow


def return_heap() -> None:
    """Hand freed heap back to the system."""
    # pandas' str columns live in Arrow's pool (mimalloc), which keeps freed pages too.
    pyarrow.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the memory is freed, just not returned
        pass
