"""Capture containers: classic pcap and pcapng, walked record by record (numba kernels) in
fixed-size chunks by a Python driver that keeps the partial record between chunks, parses the
pcapng section and interface blocks and turns kernel error codes into one-line errors."""

from __future__ import annotations

import gzip
import ipaddress
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from migfw.errors import MigfwError
from migfw.measure.capture.aot import kernel
from migfw.measure.capture.jit import (
    C_CUT,
    C_OTHER,
    C_PACKETS,
    C_SPB_ECHO,
    C_TCP,
    CHUNK_BYTES,
    E_BLOCKLEN,
    E_BODY,
    E_CAPLEN,
    E_LINKTYPE,
    E_NOIDB,
    E_NSEC,
    E_OK,
    E_SNAPLEN,
    E_TRAILER,
    E_TSRANGE,
    E_USEC,
    INT64_MAX,
    M_DEST,
    M_TCP,
    MAX_BLOCK,
    MAX_CAPLEN,
    ST_IDB,
    ST_NEED_MORE,
    ST_SHB,
    njit,
)  # fmt: skip
from migfw.measure.capture.l4 import _emit
from migfw.measure.capture.link import LINKTYPES_READ, _linktype_read, _u16, _u32, linktype_name
from migfw.measure.capture.records import Echoes, TcpSegments, _Out
from migfw.measure.capture.streams import _describe_start, _Replayed


@njit(cache=True)
def _scan_pcap(
    b, pos, end, be, nano, lt, snap, mode, tgt, tgt_len,
    o_ts, o_kind, o_id, o_seq, o_addr, o_alen, cnt,
):  # fmt: skip
    """Walk classic pcap records in b[pos:end]. Returns (pos, n_out, err, err_pos)."""
    k = 0
    ltc = lt
    while pos + 16 <= end:
        caplen = _u32(b, pos + 8, be)
        if caplen > MAX_CAPLEN:
            return pos, k, E_CAPLEN, pos
        # Longer than the snaplen: read whole, as Wireshark does (dpkt writes snaplen 1500
        # for any frame). Longer than its wire length too: corrupt, refused at this record.
        if snap > 0 and caplen > snap and caplen > _u32(b, pos + 12, be):
            return pos, k, E_SNAPLEN, pos
        if pos + 16 + caplen > end:
            break  # the rest of the record is in the next chunk
        sec = _u32(b, pos, be)
        frac = _u32(b, pos + 4, be)
        if nano:
            if frac >= 1_000_000_000:
                return pos, k, E_NSEC, pos
            ts = sec * 1_000_000_000 + frac
        else:
            if frac >= 1_000_000:
                return pos, k, E_USEC, pos
            ts = sec * 1_000_000_000 + frac * 1000
        k = _emit(
            b, pos + 16, caplen, ltc, ts, mode, tgt, tgt_len,
            o_ts, o_kind, o_id, o_seq, o_addr, o_alen, k, cnt,
        )  # fmt: skip
        pos += 16 + caplen
    return pos, k, E_OK, pos


@njit(cache=True)
def _scan_pcapng(
    b, pos, end, be, if_lt, if_snap, if_mode, if_fac, if_off, n_if, lt_cnt,
    mode, tgt, tgt_len, o_ts, o_kind, o_id, o_seq, o_addr, o_alen, cnt,
):  # fmt: skip
    """Walk pcapng blocks of one section in b[pos:end].

    Returns (pos, n_out, stop, err, err_pos, extra); stops at SHB/IDB (parsed in Python) or
    at a block not wholly in the buffer (extra = its total length, to read enough).
    """
    k = 0
    while pos + 12 <= end:
        btype = _u32(b, pos, be)
        if btype == 0x0A0D0D0A:
            return pos, k, ST_SHB, E_OK, pos, 0
        blen = _u32(b, pos + 4, be)
        if blen < 12 or (blen & 3) != 0 or blen > MAX_BLOCK:
            return pos, k, ST_NEED_MORE, E_BLOCKLEN, pos, blen
        if pos + blen > end:
            return pos, k, ST_NEED_MORE, E_OK, pos, blen
        if _u32(b, pos + blen - 4, be) != blen:
            return pos, k, ST_NEED_MORE, E_TRAILER, pos, blen
        if btype == 1:
            return pos, k, ST_IDB, E_OK, pos, 0
        if btype == 6 or btype == 2:  # enhanced / obsolete packet block
            if blen < 32:
                return pos, k, ST_NEED_MORE, E_BLOCKLEN, pos, blen
            if btype == 6:
                ifid = _u32(b, pos + 8, be)
            else:
                ifid = _u16(b, pos + 8, be)
            if ifid >= n_if:
                return pos, k, ST_NEED_MORE, E_NOIDB, pos, ifid
            if lt_cnt[ifid] == 0 and not _linktype_read(if_lt[ifid]):
                return pos, k, ST_NEED_MORE, E_LINKTYPE, pos, ifid
            caplen = _u32(b, pos + 20, be)
            if caplen > blen - 32:
                return pos, k, ST_NEED_MORE, E_BODY, pos, caplen
            if if_snap[ifid] > 0 and caplen > if_snap[ifid] and caplen > _u32(b, pos + 24, be):
                return pos, k, ST_NEED_MORE, E_SNAPLEN, pos, ifid  # (as in _scan_pcap)
            raw = (_u32(b, pos + 12, be) << 32) | _u32(b, pos + 16, be)
            m = if_mode[ifid]
            f = if_fac[ifid]
            # A corrupt timestamp must not wrap around silently: refuse what int64 ns can't hold.
            if (
                raw < 0
                or (m == 0 and raw > INT64_MAX // f)
                or (m == 2 and (raw >> f) > INT64_MAX // 1_000_000_000 - 1)
            ):
                return pos, k, ST_NEED_MORE, E_TSRANGE, pos, 0
            if m == 0:
                ts = raw * f
            elif m == 1:
                ts = raw // f
            else:  # resolution 2^-f seconds
                # frac * 10^9 / 2^f, exact: 10^9 = 5^9 * 2^9, and frac * 5^9 fits for f <= 42
                whole = raw >> f
                frac = raw & ((np.int64(1) << f) - 1)
                e = f
                if e > 42:
                    frac >>= e - 42
                    e = 42
                frac *= 1953125
                frac = frac >> (e - 9) if e >= 9 else frac << (9 - e)
                ts = whole * 1_000_000_000 + frac
            ts += if_off[ifid]
            lt = if_lt[ifid]
            lt_cnt[ifid] += 1
            k = _emit(
                b, pos + 28, caplen, lt, ts, mode, tgt, tgt_len,
                o_ts, o_kind, o_id, o_seq, o_addr, o_alen, k, cnt,
            )  # fmt: skip
        elif btype == 3:  # simple packet block: interface 0, no timestamp
            if blen < 16:
                return pos, k, ST_NEED_MORE, E_BLOCKLEN, pos, blen
            if n_if < 1:
                return pos, k, ST_NEED_MORE, E_NOIDB, pos, 0
            if lt_cnt[0] == 0 and not _linktype_read(if_lt[0]):
                return pos, k, ST_NEED_MORE, E_LINKTYPE, pos, 0
            caplen = _u32(b, pos + 8, be)
            room = blen - 16
            if if_snap[0] > 0 and caplen > if_snap[0]:
                caplen = if_snap[0]
            if caplen > room:
                caplen = room
            lt_cnt[0] += 1
            before = k
            k = _emit(
                b, pos + 12, caplen, if_lt[0], np.int64(-1), mode, tgt, tgt_len,
                o_ts, o_kind, o_id, o_seq, o_addr, o_alen, k, cnt,
            )  # fmt: skip
            if mode != M_DEST and k > before:
                cnt[C_SPB_ECHO] += 1
        pos += blen
    return pos, k, ST_NEED_MORE, E_OK, pos, 0


def _target_bytes(target: str) -> np.ndarray:
    try:
        packed = ipaddress.ip_address(target).packed
    except ValueError as exc:
        raise MigfwError(f"--target {target!r}: not an IPv4/IPv6 address") from exc
    out = np.zeros(16, np.uint8)
    out[: len(packed)] = np.frombuffer(packed, np.uint8)
    return out


class _Reader:
    """Drives the kernels over a file in chunks; keeps the carried-over partial record."""

    def __init__(self, path: str | os.PathLike, mode: int, target: str | None) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.mode = mode
        self.tgt = _target_bytes(target) if target else np.zeros(16, np.uint8)
        self.tgt_len = (4 if len(ipaddress.ip_address(target).packed) == 4 else 16) if target else 0
        self.cnt = np.zeros(8, np.int64)
        self.linktypes: dict[int, int] = {}
        self.out = _Out(1, mode)  # sized to the read buffer once it exists
        self.gzip = False

    def fail(self, problem: str, offset: int) -> MigfwError:
        where = " of the decompressed data" if self.gzip else ""
        return MigfwError(f"{self.name}: {problem} at byte {offset}{where}")

    def run(self) -> Echoes:
        try:
            handle = open(self.path, "rb")
        except OSError as exc:
            raise MigfwError(f"{self.name}: cannot open ({exc.strerror})") from exc
        with handle:
            self.fh = handle
            head = handle.read(4)
            if handle.seekable():
                handle.seek(0)
            else:  # a FIFO or a pipe (tcpdump -w - | ...): read once, the head replayed
                self.fh = _Replayed(head, handle)
            if head[:2] == b"\x1f\x8b":  # gzip (.pcap.gz): read through, as tshark does
                self.gzip = True
                try:
                    return self._result(self._container(gzip.GzipFile(fileobj=self.fh)))
                except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
                    raise MigfwError(f"{self.name}: corrupt gzip data ({exc})") from None
            return self._result(self._container(self.fh))

    def _container(self, stream) -> str:
        """Read a pcap or pcapng from `stream` (at its start); returns the format's name."""
        head = stream.read(4)
        self.fh = _Replayed(head, stream)
        if len(head) < 4:
            raise self.fail(_describe_start(head), 0)
        magic_le = struct.unpack("<I", head)[0]
        if magic_le in (0xA1B2C3D4, 0xD4C3B2A1, 0xA1B23C4D, 0x4D3CB2A1):
            return self._pcap(magic_le)
        if magic_le == 0x0A0D0D0A:
            return self._pcapng()
        raise self.fail(_describe_start(self.fh.read(64)), 0)

    def _result(self, fmt: str) -> Echoes | TcpSegments:
        parts = self.out.parts
        if self.mode == M_TCP:
            return self._tcp_result(fmt)
        if self.mode == 0 and parts:
            cols = [np.concatenate([p[i] for p in parts]) for i in range(4)]
        else:
            cols = [np.empty(0, t) for t in (np.int64, np.uint8, np.uint16, np.uint16)]
        ech = Echoes(*cols, fmt=fmt)
        ech.packets, ech.echo_packets, ech.other_packets = (int(x) for x in self.cnt[:3])
        ech.cut_packets = int(self.cnt[C_CUT])
        ech.linktypes = dict(sorted(self.linktypes.items()))
        return ech

    def _tcp_result(self, fmt: str) -> TcpSegments:
        parts = self.out.parts
        if parts:
            ts, flags, sport, dport, words, direction = (
                np.concatenate([p[i] for p in parts]) for i in range(6)
            )
            words = np.ascontiguousarray(words).view(">u4")  # (n, 2): seq, ack
            seq, ack = words[:, 0].astype(np.uint32), words[:, 1].astype(np.uint32)
        else:
            ts = np.empty(0, np.int64)
            flags, direction = np.empty(0, np.uint8), np.empty(0, np.uint8)
            sport, dport = np.empty(0, np.uint16), np.empty(0, np.uint16)
            seq, ack = np.empty(0, np.uint32), np.empty(0, np.uint32)
        seg = TcpSegments(ts, flags, sport, dport, seq, ack, direction == 0, fmt=fmt)
        seg.packets, seg.tcp_packets = int(self.cnt[C_PACKETS]), int(self.cnt[C_TCP])
        seg.other_packets = int(self.cnt[C_OTHER])
        seg.cut_packets = int(self.cnt[C_CUT])
        seg.linktypes = dict(sorted(self.linktypes.items()))
        return seg

    # -- buffer handling: one buffer, refilled in place, partial record carried to its front
    def _fill(self, buf: np.ndarray, keep_from: int, keep_to: int) -> tuple[np.ndarray, int, bool]:
        """Move buf[keep_from:keep_to] to the front and read more. Returns (buf, end, eof)."""
        n = keep_to - keep_from
        if n:
            buf[:n] = buf[keep_from:keep_to].copy()
        got = self.fh.readinto(memoryview(buf)[n:])
        return buf, n + got, got == 0

    def _pcap(self, magic_le: int) -> str:
        hdr = self.fh.read(24)
        if len(hdr) < 24:
            raise self.fail(f"truncated pcap file header ({len(hdr)} of 24 bytes)", len(hdr))
        be = magic_le in (0xD4C3B2A1, 0x4D3CB2A1)
        nano = magic_le in (0xA1B23C4D, 0x4D3CB2A1)
        e = ">" if be else "<"
        major, minor, _zone, _sig, snap, ltf = struct.unpack(e + "HHiIII", hdr[4:])
        if major < 2:
            raise self.fail(f"archaic pcap version {major}.{minor} (only 2.x is read)", 4)
        if major != 2 or minor > 4:
            raise self.fail(f"unsupported pcap version {major}.{minor}", 4)
        if ltf & 0x03FF0000:
            raise self.fail(f"link-type field 0x{ltf:08x} has reserved bits set", 20)
        lt = ltf & 0xFFFF
        if lt not in LINKTYPES_READ:
            raise self.fail(f"{linktype_name(lt)} not supported", 20)
        self.snap = snap if snap <= MAX_CAPLEN else 0  # 0: no limit but MAX_CAPLEN
        buf = np.empty(CHUNK_BYTES + 16 + MAX_CAPLEN, np.uint8)
        # Every record is >= 16 bytes: one output slot per 16 buffer bytes never overflows.
        self.out = _Out(len(buf) // 16 + 1, self.mode)
        base, end, pos = 24, 0, 0
        scan = kernel("scan_pcap")
        while True:
            buf, end, eof = self._fill(buf, pos, end)
            base += pos
            pos, k, err, epos = scan(
                buf, 0, end, be, nano, lt, self.snap, self.mode, self.tgt, self.tgt_len,
                self.out.ts, self.out.kind, self.out.ident, self.out.seq,
                self.out.addr, self.out.alen, self.cnt,
            )  # fmt: skip
            self.out.keep(k, self.mode)
            if err:
                self._pcap_error(buf, err, epos, base, be)
            if eof:
                if pos < end:
                    self._pcap_truncated(buf, pos, end, base, be)
                break
        self.linktypes[lt] = int(self.cnt[C_PACKETS])
        return f"pcap-{'be' if be else 'le'}-{'ns' if nano else 'us'}"

    def _pcap_error(self, buf: np.ndarray, err: int, epos: int, base: int, be: bool) -> None:
        e = ">" if be else "<"
        sec, frac, caplen, wire = struct.unpack(e + "IIII", bytes(buf[epos : epos + 16]))
        at = base + epos
        rec = f"record {int(self.cnt[C_PACKETS]) + 1}"
        if err == E_CAPLEN:
            raise self.fail(f"{rec} claims {caplen} captured bytes (max {MAX_CAPLEN})", at)
        if err == E_SNAPLEN:
            raise self.fail(
                f"{rec} claims {caplen} captured bytes, more than the file's snaplen {self.snap} "
                f"and than its wire length {wire}",
                at,
            )
        if err == E_USEC:
            raise self.fail(f"{rec}: corrupt timestamp: microsecond field {frac} >= 10^6", at)
        raise self.fail(f"{rec}: corrupt timestamp: nanosecond field {frac} >= 10^9", at)

    def _pcap_truncated(self, buf: np.ndarray, pos: int, end: int, base: int, be: bool) -> None:
        left = end - pos
        if left < 16:
            raise self.fail(f"file ends inside a record header ({left} of 16 bytes)", base + pos)
        caplen = struct.unpack(">I" if be else "<I", bytes(buf[pos + 8 : pos + 12]))[0]
        raise self.fail(
            f"file ends inside a record: record {int(self.cnt[C_PACKETS]) + 1} claims {caplen} "
            f"captured bytes, only {left - 16} remain",
            base + pos,
        )

    def _pcapng(self) -> str:
        self.buf = np.empty(CHUNK_BYTES, np.uint8)
        self.out = _Out(len(self.buf) // 16 + 1, self.mode)  # blocks are >= 16 bytes
        self.base, self.end, self.pos, self.eof = 0, 0, 0, False
        be = False
        n_if = 0
        cap_if = 64
        if_lt = np.zeros(cap_if, np.int64)
        if_snap = np.zeros(cap_if, np.int64)
        if_mode = np.zeros(cap_if, np.int64)
        if_fac = np.ones(cap_if, np.int64)
        if_off = np.zeros(cap_if, np.int64)
        lt_cnt = np.zeros(cap_if, np.int64)
        sections = 0
        scan = kernel("scan_pcapng")
        self._refill(0)
        while True:
            out = self.out
            pos, k, stop, err, epos, extra = scan(
                self.buf, self.pos, self.end, be, if_lt, if_snap, if_mode, if_fac, if_off, n_if,
                lt_cnt, self.mode, self.tgt, self.tgt_len,
                out.ts, out.kind, out.ident, out.seq, out.addr, out.alen, self.cnt,
            )  # fmt: skip
            self.pos = pos
            out.keep(k, self.mode)
            if err:
                self._pcapng_error(err, epos, extra, be, if_lt, if_snap)
            if stop in (ST_SHB, ST_IDB):
                if sections == 0 and stop == ST_IDB:
                    raise self.fail("interface block before any section header", self.base + pos)
                blk, blen, be_new = self._whole_block(stop == ST_SHB, be)
                if blk is None:  # not all in the buffer yet
                    if self.eof:
                        self._pcapng_truncated(blen)
                    self._refill(blen)
                    continue
                at = self.base + pos
                if stop == ST_SHB:
                    be = be_new
                    sections += 1
                    self._flush_lt(if_lt, lt_cnt, n_if)
                    n_if = 0
                    self._parse_shb(blk, be, at)
                else:
                    if n_if == cap_if:
                        cap_if *= 2
                        if_lt, if_snap, if_mode, if_fac, if_off, lt_cnt = (
                            np.resize(a, cap_if)
                            for a in (if_lt, if_snap, if_mode, if_fac, if_off, lt_cnt)
                        )
                    self._parse_idb(blk, be, at, n_if, if_lt, if_snap, if_mode, if_fac, if_off)
                    lt_cnt[n_if] = 0
                    n_if += 1
                self.pos += blen
                continue
            if self.eof:  # ran out of whole blocks and there is nothing more to read
                if self.pos < self.end:
                    self._pcapng_truncated(extra)
                break
            self._refill(extra)
        self._flush_lt(if_lt, lt_cnt, n_if)
        if int(self.cnt[C_SPB_ECHO]):
            raise MigfwError(
                f"{self.name}: {int(self.cnt[C_SPB_ECHO])} "
                f"{'TCP segments' if self.mode == M_TCP else 'echo packets'} are in Simple Packet "
                "Blocks, which carry no timestamp; timing metrics are impossible"
            )
        return f"pcapng ({sections} section{'s' if sections != 1 else ''})"

    def _refill(self, needed: int) -> None:
        """Move the unread tail to the front, grow the buffer if a block needs it, read more."""
        left = self.end - self.pos
        if left:
            self.buf[:left] = self.buf[self.pos : self.end].copy()
        self.base += self.pos
        self.pos, self.end = 0, left
        if len(self.buf) < max(needed, left + 1):
            bigger = np.empty(max(needed, left + 1) + CHUNK_BYTES, np.uint8)
            bigger[:left] = self.buf[:left]
            self.buf = bigger
            parts = self.out.parts
            self.out = _Out(len(bigger) // 16 + 1, self.mode)  # room for every record
            self.out.parts = parts
        got = self.fh.readinto(memoryview(self.buf)[left:])
        self.end += got
        self.eof = got == 0

    def _flush_lt(self, if_lt: np.ndarray, lt_cnt: np.ndarray, n_if: int) -> None:
        for i in range(n_if):
            lt = int(if_lt[i])
            self.linktypes[lt] = self.linktypes.get(lt, 0) + int(lt_cnt[i])
            lt_cnt[i] = 0

    def _whole_block(self, shb: bool, be: bool) -> tuple[bytes | None, int, bool]:
        buf, pos, end, base = self.buf, self.pos, self.end, self.base
        if shb:
            if end - pos < 12:
                return None, 12, be
            bom = bytes(buf[pos + 8 : pos + 12])
            if bom == b"\x1a\x2b\x3c\x4d":
                be = True
            elif bom == b"\x4d\x3c\x2b\x1a":
                be = False
            else:
                raise self.fail(
                    f"section header with bad byte-order magic 0x{bom.hex()}", base + pos
                )
        if end - pos < 8:
            return None, 8, be
        blen = struct.unpack(">I" if be else "<I", bytes(buf[pos + 4 : pos + 8]))[0]
        if blen < (28 if shb else 20) or blen % 4 or blen > MAX_BLOCK:
            what = "section header" if shb else "interface description"
            raise self.fail(f"{what} block has bad length {blen}", base + pos)
        if end - pos < blen:
            return None, blen, be
        blk = bytes(buf[pos : pos + blen])
        trailer = struct.unpack(">I" if be else "<I", blk[-4:])[0]
        if trailer != blen:
            raise self.fail(
                f"block length {blen} in header and {trailer} in trailer don't match", base + pos
            )
        return blk, blen, be

    def _options(self, blk: bytes, start: int, be: bool, at: int) -> dict[int, bytes]:
        e = ">" if be else "<"
        opts: dict[int, bytes] = {}
        p, stop = start, len(blk) - 4
        while p + 4 <= stop:
            code, olen = struct.unpack(e + "HH", blk[p : p + 4])
            if code == 0:
                break
            if p + 4 + olen > stop:
                raise self.fail(
                    f"option {code} of length {olen} runs past the end of its block", at + p
                )
            opts.setdefault(code, blk[p + 4 : p + 4 + olen])
            p += 4 + ((olen + 3) & ~3)
        return opts

    def _parse_shb(self, blk: bytes, be: bool, at: int) -> None:
        major, minor = struct.unpack(">HH" if be else "<HH", blk[12:16])
        if (major, minor) not in ((1, 0), (1, 2)):
            raise self.fail(f"unsupported pcapng version {major}.{minor}", at + 12)
        self._options(blk, 24, be, at)

    def _parse_idb(self, blk, be, at, i, if_lt, if_snap, if_mode, if_fac, if_off) -> None:
        e = ">" if be else "<"
        lt, _res, snap = struct.unpack(e + "HHI", blk[8:16])
        opts = self._options(blk, 16, be, at)
        if_lt[i], if_snap[i] = lt, snap
        mode, fac = 0, 1000  # default resolution: microseconds
        if 9 in opts and opts[9]:
            r = opts[9][0]
            if r & 0x80:
                exp = r & 0x7F
                if exp > 62:
                    raise self.fail(f"if_tsresol 2^-{exp} is out of range", at)
                mode, fac = (2, exp) if exp else (0, 1_000_000_000)
            elif r <= 9:
                mode, fac = 0, 10 ** (9 - r)
            elif r <= 18:
                mode, fac = 1, 10 ** (r - 9)
            else:
                raise self.fail(f"if_tsresol 10^-{r} is out of range", at)
        if_mode[i], if_fac[i] = mode, fac
        off = 0
        if 14 in opts and len(opts[14]) >= 8:
            off = struct.unpack(e + "q", opts[14][:8])[0]
            if abs(off) > 1 << 32:  # > 136 years: corrupt, and ns would overflow int64
                raise self.fail(f"if_tsoffset {off} s is out of range", at)
        if_off[i] = off * 1_000_000_000

    def _pcapng_error(
        self, err: int, epos: int, extra: int, be: bool, if_lt: np.ndarray, if_snap: np.ndarray
    ) -> None:
        at = self.base + epos
        rec = f"record {int(self.cnt[C_PACKETS]) + 1}"  # packet blocks, counted from 1
        if err == E_LINKTYPE:
            lt = int(if_lt[extra])
            raise self.fail(f"{rec}: interface {extra} has {linktype_name(lt)}: not supported", at)
        if err == E_SNAPLEN:  # EPB and PB both hold the captured and wire lengths at 20, 24
            caplen, wire = struct.unpack(
                ">II" if be else "<II", bytes(self.buf[epos + 20 : epos + 28])
            )
            raise self.fail(
                f"{rec} claims {caplen} captured bytes, more than interface {extra}'s "
                f"snaplen {int(if_snap[extra])} and than its wire length {wire}",
                at,
            )
        if err == E_BLOCKLEN:
            raise self.fail(f"block has bad total length {extra}", at)
        if err == E_TRAILER:
            raise self.fail("block length in header and trailer don't match", at)
        if err == E_TSRANGE:
            raise self.fail("packet timestamp out of range (corrupt block?)", at)
        if err == E_NOIDB:
            raise self.fail(f"packet on interface {extra}, which has no interface block", at)
        raise self.fail(f"packet block claims {extra} captured bytes, more than the block", at)

    def _pcapng_truncated(self, need: int) -> None:
        pos, base, left = self.pos, self.base, self.end - self.pos
        if left < 12:
            raise self.fail(f"file ends inside a block header ({left} bytes left)", base + pos)
        raise self.fail(f"file ends inside a block of {need} bytes ({left} bytes left)", base + pos)
