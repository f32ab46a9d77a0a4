"""Transport layer (numba kernels): ICMP/ICMPv6 echoes and TCP segments in one frame, and
the emitters that append what a reader mode keeps to the preallocated output columns."""

from __future__ import annotations

import numpy as np

from migfw.measure.capture.jit import (
    C_CUT,
    C_ECHO,
    C_OTHER,
    C_PACKETS,
    C_TCP,
    M_TCP,
    njit,
)  # fmt: skip
from migfw.measure.capture.link import L4_CUT, _inner_l4, _u16, _u32


@njit(cache=True)
def _parse_echo(b, p, n, lt):
    """Find an ICMP/ICMPv6 echo in one frame (inside any encapsulation _inner_l4 walks).

    Returns (kind, ident, seq, addr_pos, addr_len): kind 0 request (addr_pos = destination
    address), 1 reply (addr_pos = source address); -1 not an echo; -2 unknown because the
    frame was cut (snaplen) before the end of its ICMP header (counted apart: a snaplen too
    small for a tunnel would otherwise look like a capture without probes).
    """
    ip, l4, proto, end = _inner_l4(b, p, n, lt)
    if proto == 1:
        if (b[ip] >> 4) != 4:
            return -1, 0, 0, 0, 0
        if l4 + 8 > end:
            return -2, 0, 0, 0, 0
        t = b[l4]
        if t == 8:
            return 0, _u16(b, l4 + 4, True), _u16(b, l4 + 6, True), ip + 16, 4
        if t == 0:
            return 1, _u16(b, l4 + 4, True), _u16(b, l4 + 6, True), ip + 12, 4
        return -1, 0, 0, 0, 0
    if proto == 58:
        if (b[ip] >> 4) != 6:
            return -1, 0, 0, 0, 0
        if l4 + 8 > end:
            return -2, 0, 0, 0, 0
        t = b[l4]
        if t == 128:
            return 0, _u16(b, l4 + 4, True), _u16(b, l4 + 6, True), ip + 24, 16
        if t == 129:
            return 1, _u16(b, l4 + 4, True), _u16(b, l4 + 6, True), ip + 8, 16
        return -1, 0, 0, 0, 0
    if proto == L4_CUT:
        return -2, 0, 0, 0, 0
    return -1, 0, 0, 0, 0


@njit(cache=True)
def _parse_tcp(b, p, n, lt):
    """Find a TCP header in one frame (inside any encapsulation _inner_l4 walks).

    Returns (flags, sport, dport, seq, ack, src_pos, dst_pos, alen); flags -1 if not TCP,
    -2 if the frame was cut (snaplen) before the end of the TCP flags.
    """
    ip, l4, proto, end = _inner_l4(b, p, n, lt)
    if proto == 6:
        if l4 + 14 > end:  # ports, seq, ack and flags must be captured
            return -2, 0, 0, 0, 0, 0, 0, 0
        if (b[ip] >> 4) == 4:
            src, dst, alen = ip + 12, ip + 16, 4
        else:
            src, dst, alen = ip + 8, ip + 24, 16
        return (
            np.int64(b[l4 + 13]),
            _u16(b, l4, True),
            _u16(b, l4 + 2, True),
            _u32(b, l4 + 4, True),
            _u32(b, l4 + 8, True),
            src,
            dst,
            alen,
        )
    if proto == L4_CUT:
        return -2, 0, 0, 0, 0, 0, 0, 0
    return -1, 0, 0, 0, 0, 0, 0, 0


@njit(cache=True)
def _emit_tcp(b, p, n, lt, ts, tgt, tgt_len, o_ts, o_kind, o_id, o_seq, o_addr, o_alen, k, cnt):
    """TCP mode of _emit: keep segments to (direction 0) or from (1) the target.

    Packing (no extra kernel arguments): kind = TCP flags, ident = source port, seq =
    destination port, addr[0:4] = sequence number, addr[4:8] = acknowledgement number
    (big-endian), alen = direction.
    """
    flags, sport, dport, sq, ak, src, dst, alen = _parse_tcp(b, p, n, lt)
    if flags < 0:
        cnt[C_OTHER] += 1
        if flags == -2:
            cnt[C_CUT] += 1
        return k
    cnt[C_TCP] += 1
    if alen != tgt_len:
        return k
    direction = -1
    for d in range(2):
        ap = dst if d == 0 else src
        same = True
        for i in range(alen):
            if b[ap + i] != tgt[i]:
                same = False
                break
        if same:
            direction = d
            break
    if direction < 0:
        return k
    o_ts[k] = ts
    o_kind[k] = flags
    o_id[k] = sport
    o_seq[k] = dport
    for i in range(4):
        o_addr[k, i] = (sq >> (24 - 8 * i)) & 0xFF
        o_addr[k, 4 + i] = (ak >> (24 - 8 * i)) & 0xFF
    o_alen[k] = direction
    return k + 1


@njit(cache=True)
def _emit(b, p, n, lt, ts, mode, tgt, tgt_len, o_ts, o_kind, o_id, o_seq, o_addr, o_alen, k, cnt):
    """Classify one frame and append it to the outputs; returns the new output count."""
    cnt[C_PACKETS] += 1
    if mode == M_TCP:
        return _emit_tcp(
            b, p, n, lt, ts, tgt, tgt_len, o_ts, o_kind, o_id, o_seq, o_addr, o_alen, k, cnt
        )
    kind, ident, seq, ap, alen = _parse_echo(b, p, n, lt)
    if kind < 0:
        cnt[C_OTHER] += 1
        if kind == -2:
            cnt[C_CUT] += 1
        return k
    cnt[C_ECHO] += 1
    if mode == 0:  # keep echoes that involve the target
        if alen != tgt_len:
            return k
        for i in range(alen):
            if b[ap + i] != tgt[i]:
                return k
        o_ts[k] = ts
        o_kind[k] = kind
        o_id[k] = ident
        o_seq[k] = seq
        return k + 1
    if kind != 0:  # listing mode: only request destinations
        return k
    for i in range(alen):
        o_addr[k, i] = b[ap + i]
    o_alen[k] = alen
    return k + 1
