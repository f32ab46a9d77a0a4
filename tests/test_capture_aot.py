"""The ahead-of-time compiled kernels (migfw.measure.capture.aot) against numba's JIT ones:
the same columns, counters and refusals on real third-party captures and on crafted and
randomly corrupted ones, and a `migfw probes` process that never imports numba."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pcapcraft as pc  # noqa: E402

from migfw.errors import MigfwError  # noqa: E402
from migfw.measure.capture import aot, echo_destinations, read_echoes, read_tcp  # noqa: E402
from migfw.measure.probes import match_probes  # noqa: E402

TESTDATA = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "pcap"
T0 = 1_700_000_000 * 10**9 + 123_456_789


@pytest.fixture(scope="module")
def built() -> None:
    """The module install.sh builds; built here (as install does) when the sources changed."""
    if not aot.aot_loaded():
        subprocess.run([sys.executable, "-m", "migfw.measure.warm"], check=True, timeout=900)
        aot._loaded.clear()
    assert aot.aot_loaded(), f"no ahead-of-time module at {aot.module_path()}"


def _everything(path: Path, target: str) -> tuple:
    """What every reader mode and the matcher say about one file (or the refusal)."""
    out = []
    for call in (
        lambda: read_echoes(path, target),
        lambda: read_tcp(path, target),
        lambda: echo_destinations(path),
    ):
        try:
            got = call()
        except MigfwError as exc:
            out.append(("refused", str(exc)))
            continue
        if isinstance(got, dict):
            out.append(got)
            continue
        cols = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in vars(got).items()}
        out.append(cols)
        if hasattr(got, "kind"):
            table = match_probes(got)
            out.append({k: v.tolist() if isinstance(v, np.ndarray) else v
                        for k, v in vars(table).items()})  # fmt: skip
    return tuple(out)


def _both(path: Path, target: str) -> tuple[tuple, tuple]:
    assert aot.aot_loaded()
    ahead = _everything(path, target)
    with aot.jit_only():
        assert not aot.aot_loaded()
        jit = _everything(path, target)
    return ahead, jit


def test_real_captures_read_the_same(built):
    if not TESTDATA.is_dir():
        pytest.skip("../shared/testdata is absent (a user's clone)")
    files = sorted(p for p in TESTDATA.rglob("*") if p.suffix in (".pcap", ".pcapng"))
    assert len(files) > 20
    refused = 0
    for path in files:
        dests = echo_destinations(path) if _readable(path) else {}
        target = next(iter(dests), "10.0.0.1")
        ahead, jit = _both(path, target)
        assert ahead == jit, path
        refused += _refused(ahead)
    assert refused >= 5  # the corrupt ones are refused the same way too


def _refused(result: tuple) -> bool:
    return isinstance(result[0], tuple) and result[0][0] == "refused"


def _readable(path: Path) -> bool:
    try:
        echo_destinations(path)
    except MigfwError:
        return False
    return True


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_corrupted_captures_read_or_refused_the_same(built, tmp_path, kind):
    trial = pc.make_trial(200, 0.001, lost={3, 50, 51}, v6=False, noise_every=7)
    pkts = [(t, pc.frame(1, p, vlans=(0x8100,))) for t, p in trial.packets]
    if kind == "pcap":
        good = pc.pcap_bytes(pkts, nano=True)
    else:
        ifaces = [pc.Iface(1, tsresol=9), pc.Iface(229, tsresol=0x88, tsoffset=5)]
        sec = pc.Section(ifaces=ifaces, packets=[(0, t, d, "epb") for t, d in pkts])
        good = pc.pcapng_bytes([sec, pc.Section(be=True, packets=sec.packets[:5])])
    rng = random.Random(20)
    f = tmp_path / "fuzz"
    outcomes = set()
    for i in range(60):
        data = bytearray(good)
        if i:  # the first file is the intact one
            for _ in range(rng.choice((1, 2, 8))):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if rng.random() < 0.2:
                data = data[: rng.randrange(len(data))]
        f.write_bytes(bytes(data))
        ahead, jit = _both(f, pc.TARGET4)
        assert ahead == jit, i
        outcomes.add("refused" if _refused(ahead) else "read")
    assert outcomes == {"refused", "read"}


def test_migfw_probes_does_not_import_numba(built, tmp_path):
    """The whole `migfw probes` path on the shipped kernels: numba (~0.4 CPU-s) stays out,
    and the result equals the JIT path's in another process."""
    trial = pc.make_trial(300, 0.001, lost={10, 11, 12}, v6=False)
    f = pc.write_pcap(tmp_path / "t.pcap", [(t, pc.frame(1, p)) for t, p in trial.packets])
    code = (
        "import json, sys\n"
        "from migfw.measure.probes import analyse_capture\n"
        f"m = analyse_capture({str(f)!r}, {pc.TARGET4!r}, 0.001)\n"
        "print(json.dumps([m, 'numba' in sys.modules], sort_keys=True))\n"
    )
    runs = {}
    for mode in ("auto", "jit"):
        env = {**os.environ, "MIGFW_KERNELS": mode}
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True)  # fmt: skip
        runs[mode] = res.stdout
    import json

    (auto, numba_auto), (jit, numba_jit) = json.loads(runs["auto"]), json.loads(runs["jit"])
    assert not numba_auto and numba_jit
    assert auto == jit and auto["pl"] == 3 and auto["ps"] == 300


def test_module_name_follows_every_kernel_source(tmp_path, monkeypatch):
    """An edit to any kernel source (numba would not see an edit to a called module) names a
    new module, so a stale one is never loaded."""
    sources = []
    for name in ("jit.py", "link.py", "l4.py", "containers.py", "aot.py", "match_kernel.py"):
        (tmp_path / name).write_text(f"# {name} v1\n")
        sources.append(tmp_path / name)
    monkeypatch.setattr(aot, "_SOURCES", sources)
    first = aot.module_name()
    for path in sources:
        path.write_text(path.read_text() + "# edited\n")
        assert aot.module_name() != first
        first = aot.module_name()
