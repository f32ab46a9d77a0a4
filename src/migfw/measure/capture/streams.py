"""Opening a capture stream: what the start of a file that is not a capture looks like (text,
a compressor other than gzip) and a pipe's head put back in front of its stream."""

from __future__ import annotations

import io

# Compressed captures other than gzip (read as it is, like tshark does).
_COMPRESSED = {
    b"\x28\xb5\x2f\xfd": "zstd",
    b"\x04\x22\x4d\x18": "lz4",
    b"BZh": "bzip2",
    b"\xfd7zXZ": "xz",
}


def _describe_start(head: bytes) -> str:
    if not head:
        return "empty file"
    for magic, name in _COMPRESSED.items():
        if head.startswith(magic):
            return f"{name}-compressed file: decompress it first (only gzip is read as it is)"
    sample = head[:64]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        shown = text.strip().splitlines()[0][:40] if text.strip() else ""
        return f"looks like text ({shown!r}), not a pcap/pcapng capture"
    return f"unknown magic number 0x{head[:4].hex()} (not a pcap/pcapng capture)"


class _Replayed:
    """A stream that cannot seek, with the bytes already read from it put back in front."""

    def __init__(self, head: bytes, handle: io.BufferedReader) -> None:
        self.head, self.handle = head, handle

    def read(self, n: int = -1) -> bytes:
        if not self.head:
            return self.handle.read(n)
        if n < 0:
            out, self.head = self.head + self.handle.read(), b""
            return out
        out, self.head = self.head[:n], self.head[n:]
        return out + (self.handle.read(n - len(out)) if n > len(out) else b"")

    def readinto(self, buffer: memoryview) -> int:
        if not self.head:
            return self.handle.readinto(buffer) or 0
        n = min(len(self.head), len(buffer))
        buffer[:n] = self.head[:n]
        self.head = self.head[n:]
        return n
