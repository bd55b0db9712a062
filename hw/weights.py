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
are that weight for products ``m < L`` (``t = 0``) and zero otherwise.

:func:`preadd_set` is the arithmetic (numpy, used by the ISS), :class:`WeightPreAdder` the
gateware; both take the FFA from :mod:`ffacc.hw.ffa`.
"""

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .fcu import FCUConfig

__all__ = ["WeightPreAdder", "preadd_set", "set_bytes", "raw_set"]


def set_bytes(fcu, lanes, mac):
    """Bytes of one weight set in memory."""
    return fcu.rows * lanes * (1 if mac else fcu.piece_taps)


def raw_set(fcu, rows):
    """Memory layout of weight sets from their engines' kernel-row pieces.

    ``rows``: int array ``(..., rows, lanes, taps)`` of correlation weights (``taps <= N``:
    one engine's piece per output channel), or ``(..., rows, lanes)`` for MAC sets. Returns
    the ``int8`` array in memory order, ``[engine][tap][lane]``: each piece reversed
    (correlation is convolution with the reversed kernel) and zero-padded to ``N`` taps at
    the front, as the conv geometry expects.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim == 2:
        return rows.astype(np.int8)
    k, N = rows.shape[-1], fcu.piece_taps
    if k > N:
        raise ValueError(f"a piece of {k} taps does not fit an engine's {N}")
    h = np.zeros(rows.shape[:-1] + (N,), dtype=np.int64)
    h[..., N - k:] = rows[..., ::-1]            # h[N - k + j] = w[k - 1 - j], zeros before
    return h.swapaxes(-1, -2).astype(np.int8)


def preadd_set(fcu, raw, mac):
    """Pre-added words of weight sets: int64 ``(..., rows, M, T, lanes)`` from their bytes.

    ``raw`` is ``(..., rows, N, lanes)`` (or ``(..., rows, lanes)`` with ``mac``), the int8
    taps as :func:`raw_set` lays them out; leading axes (several sets) pass through. The
    filter pre-addition is the FFA's ``A`` (:attr:`ffacc.hw.ffa.FFA.A`):
    ``G[m, t] = sum_i A[m, i] h[i + t L]``.
    """
    s = fcu.ffa
    L, M, T = s.L, s.M, fcu.subtaps
    raw = np.asarray(raw, dtype=np.int64)
    if mac:
        G = np.zeros(raw.shape[:-1] + (M, T, raw.shape[-1]), dtype=np.int64)
        G[..., :L, 0, :] = raw[..., None, :]
        return G
    *lead, R, N, P = raw.shape
    if N != L * T:
        raise ValueError(f"a set has {N} taps per engine, not N = {L * T}")
    poly = raw.reshape(*lead, R, T, L, P)              # [.., t, i, lane] = h[i + t L]
    return np.einsum("mi,...rtip->...rmtp", s.A, poly)


class WeightPreAdder(wiring.Component):
    """int8 taps in, one engine's pre-added weights (all lanes) out.

    Ports
    -----
    i : In(stream of signed(8))
        Taps in memory order: ``N * lanes`` bytes per engine (``lanes`` with ``mac``).
    o : Out(stream of [lanes][M * T] pre-added words)
        One engine's words per beat, ``o.payload[lane][m * T + t] = G[m, t]``: the layout of
        the FCU's weight port (:class:`ffacc.hw.fcu.FastConvUnit`), lane after lane.
    mac : In(1)
        MAC sets (one tap per engine and lane). Hold it for the whole load.
    clear : In(1)
        Drop a partly collected engine and the output beat (before a new load).
    idle : Out(1)
        Nothing collected and no beat waiting.

    The taps of the next engine are collected while a beat waits, and the beat is formed in
    the clock that takes an engine's last tap: with ``o.ready`` high the unit accepts a tap
    every clock, so a DMA without back-pressure can feed it.
    """

    def __init__(self, fcu, lanes):
        if not isinstance(fcu, FCUConfig):
            raise TypeError(f"fcu must be an FCUConfig, not {fcu!r}")
        if not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
        self.fcu, self.lanes = fcu, lanes
        mt = fcu.ffa.M * fcu.subtaps
        super().__init__({
            "i": In(stream.Signature(signed(8))),
            "o": Out(stream.Signature(data.ArrayLayout(
                data.ArrayLayout(fcu.gweight_shape, mt), lanes))),
            "mac": In(1), "clear": In(1), "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        fc, P = self.fcu, self.lanes
        s = fc.ffa
        L, M, T, N = s.L, s.M, fc.subtaps, fc.piece_taps
        n_in = N * P
        taps = [Signal(signed(8), name=f"tap{k}") for k in range(n_in)]
        cnt = Signal(range(n_in))
        # the index of an engine's last tap
        full_at = Signal(range(n_in))
        m.d.comb += full_at.eq(Mux(self.mac, P - 1, n_in - 1))

        # the taps of the engine with the one arriving now in its place
        vals = [Signal(signed(8), name=f"val{k}") for k in range(n_in)]
        for k in range(n_in):
            m.d.comb += vals[k].eq(Mux(cnt == k, self.i.payload, taps[k]))

        take = Signal()
        m.d.comb += [
            self.i.ready.eq((cnt != full_at) | ~self.o.valid | self.o.ready),
            take.eq(self.i.valid & self.i.ready),
            self.idle.eq((cnt == 0) & ~self.o.valid),
        ]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            with m.Switch(cnt):
                for k in range(n_in):
                    with m.Case(k):
                        m.d.sync += taps[k].eq(self.i.payload)
            with m.If(cnt == full_at):
                m.d.sync += [cnt.eq(0), self.o.valid.eq(1)]
                for lane in range(P):
                    for mm in range(M):
                        for t in range(T):
                            # G[m, t] = sum_i A[m, i] h[i + t L]; tap n of a lane at n * P + lane
                            terms = [vals[(i + t * L) * P + lane] for i in range(L)
                                     if s.A[mm, i]]
                            conv = sum(terms[1:], terms[0])
                            mac = vals[lane] if (mm < L and t == 0) else 0
                            m.d.sync += self.o.payload[lane][mm * T + t].eq(
                                Mux(self.mac, mac, conv))
            with m.Else():
                m.d.sync += cnt.eq(cnt + 1)
        with m.If(self.clear):
            m.d.sync += [cnt.eq(0), self.o.valid.eq(0)]
        return m
