"""The echo matcher's numba kernel (migfw.measure.probes.match_probes calls it).

A module of its own so that `migfw probes` imports numba only where the ahead-of-time compiled
kernels (migfw.measure.capture.aot) are missing.
"""

from __future__ import annotations

import numpy as np

# migfw.measure.capture first: it settles NUMBA_CACHE_DIR before numba is imported.
import migfw.measure.capture  # noqa: F401

from numba import njit, types  # isort: skip
from numba.typed import Dict  # isort: skip

_USEQ_BIAS = np.int64(1) << 43  # keeps (ident, unwrapped seq) keys positive


@njit(cache=True)
def _match_kernel(ts, kind, ident, seq):
    """Walk echoes in time order: unwrap request sequences per identifier, drop duplicates,
    link each reply to the closest preceding request with the same (ident, seq mod 2^16).

    Returns per-request arrays (send, ident, useq, reply) and the three counters.
    """
    n = ts.shape[0]
    last_seq = np.full(65536, -1, np.int64)  # per identifier: last request seq (16-bit)
    last_useq = np.zeros(65536, np.int64)
    latest = Dict.empty(key_type=types.int64, value_type=types.int64)  # ident<<16|seq -> useq
    index = Dict.empty(key_type=types.int64, value_type=types.int64)  # (ident,useq) -> row
    send = np.empty(n, np.int64)
    r_ident = np.empty(n, np.uint16)
    r_useq = np.empty(n, np.int64)
    reply = np.full(n, -1, np.int64)
    nreq = 0
    dup_req = 0
    dup_rep = 0
    orphan = 0
    for i in range(n):
        idt = np.int64(ident[i])
        s = np.int64(seq[i])
        k16 = (idt << 16) | s
        if kind[i] == 0:
            if last_seq[idt] < 0:
                u = s
            else:
                d = (s - last_seq[idt]) & 0xFFFF
                if d >= 32768:  # a step backwards (reordered or duplicate), not a wrap
                    d -= 65536
                u = last_useq[idt] + d
            last_seq[idt] = s
            last_useq[idt] = u
            latest[k16] = u
            key = (idt << 44) + u + _USEQ_BIAS
            if key in index:
                dup_req += 1
                continue
            index[key] = nreq
            send[nreq] = ts[i]
            r_ident[nreq] = idt
            r_useq[nreq] = u
            nreq += 1
        else:
            if k16 not in latest:
                orphan += 1
                continue
            row = index[(idt << 44) + latest[k16] + _USEQ_BIAS]
            if reply[row] >= 0:
                dup_rep += 1
                continue
            reply[row] = ts[i]
    return send[:nreq], r_ident[:nreq], r_useq[:nreq], reply[:nreq], dup_req, dup_rep, orphan
