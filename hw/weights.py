"""The weight pre-adder: int8 kernel taps as they arrive from memory → pre-added FFA weights.

Weights sit in memory as int8, one byte per tap, and the FFA weight pre-addition
(``G[m, t] = sum_i A[m, i] h[i + t L]``, :meth:`ffacc.hw.ffa.FFA.preadd_weights`) is done
here as they load, so weight traffic and image size are those of the int8 model rather than
of the ``M * T`` wider pre-added words per ``N`` taps (4x for the 3-parallel FFA).

A *weight set* is one CONV pass's weights: for each of the ``rows`` engines and each of the
``lanes`` output channels, one kernel-row piece of ``N = L T`` taps. In memory a set is
``[engine][tap][lane]`` int8 (the compiler writes each piece reversed and zero-padded, i.e.
the FIR filter ``h`` the engine runs, see :func:`raw_set`); in *MAC* sets (1×1 kernels and
fully-connected layers) an engine has one weight per lane, ``[engine][lane]``, and its words
are that weight for products ``m < L`` (``t = 0``) and zero otherwise. With ``mac_pairs`` a MAC
set has ``2 * lanes`` weights per engine, ``[engine][channel]``: channel ``k < lanes`` is lane
``k``'s products ``m < L``, channel ``lanes + k`` its products ``L <= m < 2 L`` (the unit's
second output channel).

:func:`preadd_set` is the arithmetic (numpy, used by the ISS), :class:`WeightPreAdder` the
gateware; both take the FFA from :mod:`ffacc.hw.ffa`.
"""

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .fcu import FCUConfig
from .logic import reset_less_copy

__all__ = ["WeightPreAdder", "preadd_set", "set_bytes", "raw_set", "pack4", "unpack4",
           "fits4"]


def set_bytes(fcu, lanes, mac):
    """Bytes of one weight set in memory (``lanes``: the units; a MAC set has a weight per
    output channel, :attr:`~ffacc.hw.fcu.FCUConfig.mac_channels` per unit)."""
    return fcu.rows * lanes * (fcu.mac_channels if mac else fcu.piece_taps)


def fits4(taps):
    """Whether every tap of ``taps`` is a 4-bit two's complement value (-8..7): ``LOADW``
    can read them packed (``PACK4``)."""
    taps = np.asarray(taps)
    return taps.size == 0 or (int(taps.min()) >= -8 and int(taps.max()) <= 7)


def pack4(taps):
    """4-bit taps (-8..7, in memory order) as ``LOADW``'s ``PACK4`` reads them: two a byte,
    the even tap in the low nibble, two's complement; an odd count ends with 0 above."""
    t = np.asarray(taps, dtype=np.int64).reshape(-1)
    if not fits4(t):
        raise ValueError(f"4-bit taps must be in -8..7, not {int(t.min())}..{int(t.max())}")
    t = np.concatenate([t, np.zeros(t.size % 2, np.int64)]) & 15
    return (t[0::2] | t[1::2] << 4).astype(np.uint8).tobytes()


def unpack4(data, n):
    """The first ``n`` taps of bytes ``data`` packed by :func:`pack4`, as int64."""
    b = np.frombuffer(bytes(data), np.uint8).astype(np.int64)
    nib = np.stack([b & 15, b >> 4], axis=1).reshape(-1)[:n]
    if nib.size != n:
        raise ValueError(f"{len(data)} bytes hold {2 * len(data)} 4-bit taps, not {n}")
    return np.where(nib >= 8, nib - 16, nib)


def raw_set(fcu, rows, out=None):
    """Memory layout of weight sets from their engines' kernel-row pieces.

    ``rows``: int array ``(..., rows, lanes, taps)`` of correlation weights (``taps <= N``:
    one engine's piece per output channel), or ``(..., rows, channels)`` for MAC sets (a
    weight per output channel: ``lanes``, ``2 * lanes`` with ``mac_pairs``). Returns
    the ``int8`` array in memory order, ``[engine][tap][lane]``: each piece reversed
    (correlation is convolution with the reversed kernel) and zero-padded to ``N`` taps at
    the front, as the conv geometry expects. ``out``: an int8 array of the result's shape to
    write into (the compiler's image layout) instead of a new one.
    """
    rows = np.asarray(rows)
    if rows.dtype.kind not in "iu":
        rows = rows.astype(np.int64)
    if rows.ndim == 2:
        return rows.astype(np.int8)
    k, N = rows.shape[-1], fcu.piece_taps
    if k > N:
        raise ValueError(f"a piece of {k} taps does not fit an engine's {N}")
    h = np.empty(rows.shape[:-2] + (N, rows.shape[-2]), dtype=np.int8) if out is None else out
    h[..., :N - k, :] = 0                                  # [..., tap, lane]
    h[..., N - k:, :] = rows[..., ::-1].swapaxes(-1, -2)   # h[N - k + j] = w[k - 1 - j]
    return h


def preadd_set(fcu, raw, mac):
    """Pre-added words of weight sets: int64 ``(..., rows, M, T, lanes)`` from their bytes.

    ``raw`` is ``(..., rows, N, lanes)`` (or ``(..., rows, channels)`` with ``mac``:
    ``mac_channels * lanes`` weights), the int8 taps as :func:`raw_set` lays them out; leading
    axes (several sets) pass through. The filter pre-addition is the FFA's ``A``
    (:attr:`ffacc.hw.ffa.FFA.A`): ``G[m, t] = sum_i A[m, i] h[i + t L]``.
    """
    s = fcu.ffa
    L, M, T = s.L, s.M, fcu.subtaps
    raw = np.asarray(raw, dtype=np.int64)
    if mac:
        f = fcu.mac_channels
        P, rem = divmod(raw.shape[-1], f)
        if rem:
            raise ValueError(f"a MAC set of {raw.shape[-1]} channels per engine is not "
                             f"{f} per lane")
        G = np.zeros(raw.shape[:-1] + (M, T, P), dtype=np.int64)
        for h in range(f):                  # channel h * P + k: lane k's products h L..
            G[..., h * L:(h + 1) * L, 0, :] = raw[..., None, h * P:(h + 1) * P]
        return G
    *lead, R, N, P = raw.shape
    if N != L * T:
        raise ValueError(f"a set has {N} taps per engine, not N = {L * T}")
    poly = raw.reshape(*lead, R, T, L, P)              # [.., t, i, lane] = h[i + t L]
    return np.einsum("mi,...rtip->...rmtp", s.A, poly)


class WeightPreAdder(wiring.Component):
    """int8 taps in, a bus beat at a time; one engine's pre-added weights (all lanes) out.

    Ports
    -----
    i : In(stream of [bus_bytes] signed(8))
        Bus beats of taps in memory order: ``N * lanes`` bytes per engine (``lanes`` with
        ``mac``, ``2 * lanes`` with ``mac`` and ``mac_pairs``), engines back to back across
        beats.
    o : Out(stream of [lanes][M * T] pre-added words)
        One engine's words per beat, ``o.payload[lane][m * T + t] = G[m, t]``: the layout of
        the FCU's weight port (:class:`ffacc.hw.fcu.FastConvUnit`), lane after lane.
    mac : In(1)
        MAC sets (one tap per engine and output channel: a lane's one, or two with
        ``mac_pairs``). Hold it for the whole load.
    clear, count : In
        Start a load of ``count`` engines: drop what is collected. Bytes after the
        ``count``-th engine (the rest of the last beat) are taken and dropped. ``compact``
        (the smallest parts: a byte stream that ends with the last engine) has no count and
        gives an engine out straight from a shift register of its taps, with no output
        register.
    idle : Out(1)
        ``count`` engines given out (``compact``: nothing collected).

    A beat is taken whenever the collect buffer (an engine plus a beat, less a byte) has room
    for it after the engine that leaves in the same clock: an engine per clock at most, a beat
    per clock while engines are at least a beat long.
    """

    def __init__(self, fcu, lanes, bus_bytes=1, max_count=1 << 16, compact=False):
        if not isinstance(fcu, FCUConfig):
            raise TypeError(f"fcu must be an FCUConfig, not {fcu!r}")
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        if bus_bytes not in (1, 2, 4, 8):
            raise ValueError(f"bus_bytes must be 1, 2, 4 or 8, not {bus_bytes!r}")
        if compact and bus_bytes != 1:
            raise ValueError(f"a compact pre-adder takes a byte a clock, not {bus_bytes}")
        self.fcu, self.lanes, self.nb = fcu, lanes, bus_bytes
        self.max_count, self.compact = max_count, compact
        mt = fcu.ffa.M * fcu.subtaps
        super().__init__({
            "i": In(stream.Signature(data.ArrayLayout(signed(8), bus_bytes))),
            "o": Out(stream.Signature(data.ArrayLayout(
                data.ArrayLayout(fcu.gweight_shape, mt), lanes))),
            "mac": In(1), "clear": In(1), "count": In(range(max_count + 1)), "idle": Out(1),
        })

    def _words(self, m, taps, out, dst):
        """The engine's pre-added words from its taps (``taps[n * P + lane]``) into ``dst``
        (the output payload, or its flip-flops) in domain ``out``."""
        s, P, T = self.fcu.ffa, self.lanes, self.fcu.subtaps
        L, M, f = s.L, s.M, self.fcu.mac_channels
        for lane in range(P):
            for mm in range(M):
                for t in range(T):
                    # G[m, t] = sum_i A[m, i] h[i + t L]; tap n of a lane at n * P + lane
                    terms = [taps[(i + t * L) * P + lane] for i in range(L) if s.A[mm, i]]
                    conv = sum(terms[1:], terms[0])
                    # MAC: channel (m // L) * P + lane (mac_pairs: products L..2L-1 the
                    # unit's second channel)
                    mac = taps[mm // L * P + lane] if (mm < f * L and t == 0) else 0
                    out += dst[lane][mm * T + t].eq(Mux(self.mac, mac, conv))

    def _elaborate_bytes(self, m):
        """A byte a clock, no count, no output register (the smallest parts): a shift
        register of one engine's taps; the engine goes out when its taps are in."""
        P, N = self.lanes, self.fcu.piece_taps
        n_in = N * P
        MP = P * self.fcu.mac_channels        # a MAC engine's bytes
        sr = [Signal(signed(8), name=f"sr{k}", reset_less=True) for k in range(n_in)]
        cnt = Signal(range(n_in + 1))
        row = Signal(range(n_in + 1))
        m.d.comb += row.eq(Mux(self.mac, MP, n_in))
        # the taps of an engine sit at the end of the shift register: a MAC engine's MP at
        # sr[n_in - MP:], so the words read them from there
        taps = [Signal(signed(8), name=f"tap{k}") for k in range(n_in)]
        for k in range(n_in):
            m.d.comb += taps[k].eq(sr[k] if k + n_in - MP >= n_in
                                   else Mux(self.mac, sr[k + n_in - MP], sr[k]))
        take = Signal()
        m.d.comb += [self.o.valid.eq(cnt == row), self.i.ready.eq(~self.o.valid | self.o.ready),
                     take.eq(self.i.valid & self.i.ready), self.idle.eq(cnt == 0)]
        self._words(m, taps, m.d.comb, self.o.payload)
        with m.If(take):
            m.d.sync += [sr[k].eq(sr[k + 1]) for k in range(n_in - 1)]
            m.d.sync += sr[n_in - 1].eq(self.i.payload[0])
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += cnt.eq(Mux(take, 1, 0))
        with m.Elif(take):
            m.d.sync += cnt.eq(cnt + 1)
        with m.If(self.clear):
            m.d.sync += cnt.eq(0)
        return m

    def elaborate(self, platform):
        m = Module()
        fc, P, nb = self.fcu, self.lanes, self.nb
        if self.compact:
            return self._elaborate_bytes(m)
        N = fc.piece_taps
        row_max = N * P
        MP = P * fc.mac_channels                  # a MAC engine's bytes (at most row_max)
        cap = row_max + nb - 1
        buf = [Signal(signed(8), name=f"buf{k}", reset_less=True) for k in range(cap)]
        fill = Signal(range(cap + 1))
        left = Signal(range(self.max_count + 1))  # engines still to give out
        row = Signal(range(row_max + 1))
        m.d.comb += row.eq(Mux(self.mac, MP, row_max))

        emit = Signal()
        shift = Signal(range(row_max + 1))
        rest = Signal(range(cap + 1))             # bytes kept after this clock's engine leaves
        m.d.comb += [
            emit.eq((~self.o.valid | self.o.ready) & (fill >= row) & (left != 0)),
            shift.eq(Mux(emit, row, 0)),
            rest.eq(fill - shift),
            self.i.ready.eq((left == 0) | (rest + nb <= cap)),
            self.idle.eq((left == 0) & ~self.o.valid),
        ]
        take = Signal()
        m.d.comb += take.eq(self.i.valid & self.i.ready & (left != 0))

        words = reset_less_copy(m, self.o.payload, name="words_q")   # data: valid qualifies it
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(emit):
            m.d.sync += [self.o.valid.eq(1), left.eq(left - 1)]
            self._words(m, buf, m.d.sync, words)
        # the buffer moves down by the engine that leaves; the beat lands after what stays
        for j in range(cap):
            kept = buf[j]
            for sh in sorted({MP, row_max}):
                if j + sh < cap:
                    kept = Mux(shift == sh, buf[j + sh], kept)
            new = kept
            for b in range(nb):
                if 0 <= j - b <= cap - nb:
                    new = Mux(take & (rest == j - b), self.i.payload[b], new)
            m.d.sync += buf[j].eq(new)
        m.d.sync += fill.eq(rest + Mux(take, nb, 0))
        with m.If(self.clear):
            m.d.sync += [fill.eq(0), self.o.valid.eq(0), left.eq(self.count)]
        return m
