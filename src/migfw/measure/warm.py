"""Compile the analysis's numba kernels once, at install time (`python -m migfw.measure.warm`).

numba compiles each kernel on first use (seconds) and caches the machine code on disk
(migfw.measure.capture chooses the folder). Running the real analysis path on a small crafted
trial here fills that cache with exactly the signatures the pipeline uses, so the first
`migfw probes` after `scripts/install.sh` only loads the kernels. It then compiles the same
kernels ahead of time with those signatures (migfw.measure.capture.aot), which is what the
pipeline runs: no numba import, no kernel load. Without a C compiler that step is skipped and
the JIT path (cached) serves.
"""

from __future__ import annotations

import time
from pathlib import Path

from migfw.scratch import scratch


def warm_jit() -> float:
    """Run every kernel on real inputs (pcap and pcapng readers, matcher); seconds spent."""
    from migfw.measure.capture import warm_up
    from migfw.measure.metrics import trial_metrics
    from migfw.trials.crafted import craft_trial, crafted_spec

    t0 = time.perf_counter()
    warm_up()
    with scratch("warm") as tmp:
        spec = crafted_spec("warm/i0.5-r01", factors={"interval_s": 0.5})
        craft_trial(spec, Path(tmp) / spec.trial_id)
        trial_metrics(Path(tmp) / spec.trial_id)
    return time.perf_counter() - t0


def warm() -> tuple[float, str]:
    """JIT-compile and cache every kernel, then build the ahead-of-time module from them."""
    from migfw.measure.capture import aot

    t0 = time.perf_counter()
    with aot.jit_only():
        warm_jit()
    try:
        where = f"ahead-of-time module {aot.build().name}"
    except Exception as exc:  # noqa: BLE001  (no compiler, no distutils: the JIT path serves)
        where = f"no ahead-of-time module ({type(exc).__name__}: {exc}); JIT cache only"
    return time.perf_counter() - t0, where


if __name__ == "__main__":
    seconds, where = warm()
    print(f"migfw: analysis kernels compiled and cached ({seconds:.1f} s; {where})")
