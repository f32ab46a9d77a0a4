"""Namespace helpers used only by the tests: throwaway veth-joined namespaces and the
canonical form of an nft ruleset (what the kernel lists back once it is loaded)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from migfw.testbed.deploy import normalise_listing
from migfw.testbed.netns import run, temporary_netns


@contextmanager
def linked_pair(
    guest_addr: str = "10.231.9.1",
    remote_addr: str = "10.231.9.2",
    prefix_len: int = 24,
    extra_remote_addrs: tuple[str, ...] = (),
    prefix: str = "mfwt",
) -> Iterator[tuple[str, str]]:
    """Two fresh namespaces ("guest", "remote") joined by a veth pair; yields their names.

    The remote end is `r0`, the guest end `g0`; both are deleted afterwards, always.
    `extra_remote_addrs` are added to r0 too (e.g. the ruleset's `other` address).
    """
    tag = uuid.uuid4().hex[:6]
    guest, remote = f"{prefix}-{tag}-g", f"{prefix}-{tag}-r"
    made: list[str] = []
    try:
        for name in (guest, remote):
            run(["ip", "netns", "add", name])
            made.append(name)
            run(["ip", "link", "set", "lo", "up"], netns=name)
        # Create the veth inside the remote namespace so nothing touches the host's links.
        run(["ip", "link", "add", "r0", "type", "veth", "peer", "name", "g0", "netns", guest],
            netns=remote)  # fmt: skip
        run(["ip", "addr", "add", f"{guest_addr}/{prefix_len}", "dev", "g0"], netns=guest)
        run(["ip", "addr", "add", f"{remote_addr}/{prefix_len}", "dev", "r0"], netns=remote)
        for extra in extra_remote_addrs:
            run(["ip", "addr", "add", f"{extra}/{prefix_len}", "dev", "r0"], netns=remote)
        run(["ip", "link", "set", "g0", "up"], netns=guest)
        run(["ip", "link", "set", "r0", "up"], netns=remote)
        yield guest, remote
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def canonical_listing(nft_text: str) -> str:
    """What `read_ruleset` must return once `nft_text` is loaded (a throwaway netns)."""
    with temporary_netns("mfwcan") as ns:
        path = Path("/tmp") / f"{ns}.nft"
        path.write_text(nft_text)
        try:
            run(["nft", "-f", str(path)], netns=ns)
            return normalise_listing(run(["nft", "-s", "list", "ruleset"], netns=ns))
        finally:
            path.unlink(missing_ok=True)
