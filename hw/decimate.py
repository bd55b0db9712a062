"""Every ``s``-th byte of a read, packed into whole beats again: ``LOADA``'s column step.

A convolution of stride ``s`` inside a network loads its input's ``s × s`` stride phases as
channels and runs at stride 1 (:mod:`ffacc.compiler.lower`, ``A_CSHIFT``): a phase's row is
every ``s``-th byte of a map's row, from the phase's first column on. The read DMA gives the
row's whole bus beats; :class:`ColumnDecimator` keeps the phase's bytes and packs them into
whole beats, which the row packer (:class:`~ffacc.hw.linebuf.RowPacker`) cuts into line-buffer
blocks as it does any row.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ColumnDecimator"]


class ColumnDecimator(wiring.Component):
    """Bus beats in; the beats of every ``2**shift``-th byte out.

    A read's bytes are numbered from its first beat's byte 0 (an aligned address); with
    ``shift = k`` the bytes ``j`` with ``j ≡ phase (mod 2**k)`` are kept, byte ``j`` as the
    output stream's byte ``j >> k``. So output beat ``b`` holds the kept bytes of input beats
    ``b·2**k`` to ``b·2**k + 2**k - 1``, the read's last output beat those of its last input
    beats (the bytes past them are undefined). With ``shift = 0`` the beats pass through
    unchanged, in the same clock.

    Parameters
    ----------
    bus_bytes : int
        Bytes of a beat, a power of two.
    max_shift : int
        The largest ``shift``: ``2**max_shift <= bus_bytes``.
    max_beats : int
        The most beats of a read.

    Ports
    -----
    clear : In(1)
        A read starts: ``shift``, ``phase`` and ``beats`` are taken. The next beat is its first.
    shift : In(range(max_shift + 1))
        The column step's exponent.
    phase : In(range(bus_bytes))
        Its low ``shift`` bits: the kept bytes' place in a beat (the read's first byte's place
        in its beat, the address modulo the bus width, is one of them).
    beats : In(range(max_beats + 1))
        The read's input beats (its last output beat is given out after the last of them).
    i : In(stream of [bus_bytes] bytes)
        The read's beats.
    o : Out(stream of [bus_bytes] bytes)
        The kept bytes, a beat every ``2**shift`` input beats (registered; combinational
        with ``shift = 0``).
    """

    def __init__(self, *, bus_bytes, max_shift, max_beats):
        if bus_bytes not in (1, 2, 4, 8):
            self._MustUse__silence = True         # refused: not a component left unused
            raise ValueError(f"bus_bytes must be 1, 2, 4 or 8, not {bus_bytes!r}")
        if not isinstance(max_shift, int) or max_shift < 0 or 1 << max_shift > bus_bytes:
            self._MustUse__silence = True
            raise ValueError(f"max_shift={max_shift!r}: 2**max_shift must be at most "
                             f"bus_bytes={bus_bytes}")
        self.nb, self.K, self.max_beats = bus_bytes, max_shift, max_beats
        beat = data.ArrayLayout(8, bus_bytes)
        super().__init__({
            "clear": In(1), "shift": In(range(max_shift + 1)), "phase": In(range(bus_bytes)),
            "beats": In(range(max_beats + 1)),
            "i": In(stream.Signature(beat)),
            "o": Out(stream.Signature(beat)),
        })

    def elaborate(self, platform):
        m = Module()
        nb, K = self.nb, self.K
        shift = Signal(range(K + 1))
        phase = Signal(range(nb))
        left = Signal(range(self.max_beats + 1))      # input beats still to come
        slot = Signal(range(1 << K))                  # input beats gathered in this output
        acc = [Signal(8, name=f"acc{b}", reset_less=True) for b in range(nb)]
        out = Signal(data.ArrayLayout(8, nb), reset_less=True, name="out_q")
        ov = Signal()                                 # the output register holds a beat

        with m.If(self.clear):
            m.d.sync += [shift.eq(self.shift), phase.eq(self.phase), left.eq(self.beats),
                         slot.eq(0)]

        # each output byte: its input byte when this beat is its slot's, for each shift
        merged = []
        for b in range(nb):
            v = acc[b]
            for k in range(1, K + 1):
                per = nb >> k                         # kept bytes per input beat
                s = 1 << k
                src = self.i.payload[0]
                for p in range(s):                    # the byte at phase p of the beat
                    src = Mux(phase[:k] == p, self.i.payload[p + s * (b % per)], src)
                v = Mux((shift == k) & (slot == b // per), src, v)
            merged.append(v)

        last = Signal()
        m.d.comb += last.eq((slot == (1 << shift) - 1) | (left == 1))
        with m.If(shift == 0):
            m.d.comb += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload),
                         self.i.ready.eq(self.o.ready)]
        with m.Else():
            m.d.comb += [self.o.valid.eq(ov), self.o.payload.eq(out),
                         self.i.ready.eq(~ov | self.o.ready)]
            with m.If(self.o.ready):
                m.d.sync += ov.eq(0)
            with m.If(self.i.valid & self.i.ready & ~self.clear):
                m.d.sync += left.eq(left - 1)
                with m.If(last):
                    m.d.sync += [ov.eq(1), slot.eq(0)]
                    m.d.sync += [out[b].eq(merged[b]) for b in range(nb)]
                with m.Else():
                    m.d.sync += [slot.eq(slot + 1)] + [acc[b].eq(merged[b]) for b in range(nb)]
        with m.If(self.clear):
            m.d.sync += ov.eq(0)
        return m
