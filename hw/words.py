"""A width converter: bus beats in, 32-bit words out (``LOADQ`` at the bus width)."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["WordSerializer"]


class WordSerializer(wiring.Component):
    """Splits each ``nbytes``-byte beat into its ``nbytes // 4`` 32-bit words, lowest first.

    Ports
    -----
    i : In(stream)
        Payload ``8 * nbytes`` bits: a bus beat. ``ready`` does not depend on ``valid``, so a
        source that presents a beat only while ``ready`` is high (the AXI reader's word mode)
        may use it.
    o : Out(stream)
        Payload 32 bits: the words, one a clock while ``ready`` is high. A beat's words follow
        the beat a clock later; with one word a beat the output runs at a word every clock.
    clear : In(1)
        Drop the words held (a new transfer after one that failed).
    idle : Out(1)
        No word held: every word taken is out.
    """

    def __init__(self, nbytes):
        if nbytes % 4 or nbytes < 4:
            raise ValueError(f"nbytes={nbytes}: must be a multiple of 4")
        self.nwords = nbytes // 4
        super().__init__({
            "i": In(stream.Signature(8 * nbytes)),
            "o": Out(stream.Signature(32)),
            "clear": In(1),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        nw = self.nwords
        buf = Signal(32 * nw, reset_less=True)
        left = Signal(range(nw + 1))            # words still in buf
        take = self.o.valid & self.o.ready
        m.d.comb += [self.o.valid.eq(left != 0), self.o.payload.eq(buf[:32]),
                     self.idle.eq(left == 0),
                     self.i.ready.eq((left == 0) | ((left == 1) & self.o.ready))]
        with m.If(take):
            m.d.sync += [buf.eq(buf >> 32), left.eq(left - 1)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [buf.eq(self.i.payload), left.eq(nw)]
        with m.If(self.clear):
            m.d.sync += left.eq(0)
        return m
