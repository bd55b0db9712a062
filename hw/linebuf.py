"""The line-buffer writer's gearbox: bus beats of a map in memory → blocks of a line-buffer row.

The line buffer keeps column ``j`` of a row in byte-wide sub-bank ``j mod L``, so ``L``
consecutive columns starting at a multiple of ``L`` (a *block*) are written in one clock.
``LOADA`` reads a run of rows (a channel's band, or one row of a column tile) as bus beats;
:class:`RowPacker` re-cuts that byte stream into blocks: every row starts a new block, and a
row's last block is partial when the row width is not a multiple of ``L`` (its byte enables
say which columns it writes). That moves ``min(L, bus bytes)`` activations per clock instead of
one.
"""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RowPacker"]


class RowPacker(wiring.Component):
    """Bus beats in, line-buffer blocks out.

    Ports
    -----
    clear : In(1)
        Start a transfer of ``nbytes`` bytes (whole rows of ``width``) whose first beat holds
        them from byte ``skip`` on.
    skip, nbytes, width : In
    i : In(stream of [bus_bytes] bytes)
        The read's beats; bytes before ``skip`` in the first beat and after ``nbytes`` in the
        last are dropped.
    o : Out(stream of {data: [L] bytes, en: L, row_end: 1})
        Blocks in row order: ``data[j]`` is column ``L * b + j`` of the row, written where
        ``en[j]``; ``row_end`` marks a row's last block (the next block is column 0 of the
        next row).
    idle : Out(1)
        Every byte of the transfer is given out.
    """

    def __init__(self, *, L, bus_bytes, max_width, max_bytes):
        if not isinstance(L, int) or not 1 <= L <= 12:
            raise ValueError(f"L must be 1..12, not {L!r}")
        if bus_bytes not in (1, 2, 4, 8):
            raise ValueError(f"bus_bytes must be 1, 2, 4 or 8, not {bus_bytes!r}")
        self.L, self.nb = L, bus_bytes
        self.max_width, self.max_bytes = max_width, max_bytes
        super().__init__({
            "clear": In(1), "skip": In(range(bus_bytes)), "nbytes": In(range(max_bytes + 1)),
            "width": In(range(max_width + 1)),
            "i": In(stream.Signature(data.ArrayLayout(8, bus_bytes))),
            "o": Out(stream.Signature(data.StructLayout({
                "data": data.ArrayLayout(8, L), "en": L, "row_end": 1}))),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        L, nb = self.L, self.nb
        cap = L + nb - 1
        buf = [Signal(8, name=f"buf{k}") for k in range(cap)]
        fill = Signal(range(cap + 1))
        left = Signal(range(self.max_bytes + 1))      # bytes still to take from beats
        out_left = Signal(range(self.max_bytes + 1))  # bytes still to give out
        row_left = Signal(range(self.max_width + 1))  # of the current row
        first = Signal()                              # the next beat is the first
        skip = Signal(range(nb))

        # the block now: up to L bytes, fewer at the end of a row
        size = Signal(range(L + 1))
        m.d.comb += size.eq(Mux(row_left < L, row_left, L))
        emit = Signal()
        m.d.comb += emit.eq((~self.o.valid | self.o.ready) & (out_left != 0) & (fill >= size))
        shift = Signal(range(L + 1))
        rest = Signal(range(cap + 1))
        m.d.comb += [shift.eq(Mux(emit, size, 0)), rest.eq(fill - shift)]

        # the beat now: bytes from `lo` on, at most `left` of them
        lo = Signal(range(nb))
        m.d.comb += lo.eq(Mux(first, skip, 0))
        avail = Signal(range(nb + 1))
        m.d.comb += avail.eq(nb - lo)
        got = Signal(range(nb + 1))
        m.d.comb += got.eq(Mux(left < avail, left, avail))
        m.d.comb += [self.i.ready.eq((left == 0) | (rest + nb <= cap)),
                     self.idle.eq((out_left == 0) & ~self.o.valid)]
        take = Signal()
        m.d.comb += take.eq(self.i.valid & self.i.ready & (left != 0))

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(emit):
            m.d.sync += [self.o.valid.eq(1), out_left.eq(out_left - size),
                         self.o.payload.row_end.eq(size == row_left),
                         row_left.eq(Mux(size == row_left, self.width, row_left - size))]
            for j in range(L):
                m.d.sync += [self.o.payload.data[j].eq(buf[j]),
                             self.o.payload.en[j].eq(j < size)]
        # the buffer moves down by the block that leaves; the beat's bytes land after the rest
        for k in range(cap):
            kept = buf[k]
            for sh in range(1, L + 1):
                if k + sh < cap:
                    kept = Mux(shift == sh, buf[k + sh], kept)
            new = kept
            for b in range(nb):
                for s in range(nb):                    # byte b of the beat, s bytes skipped
                    pos = k - (b - s)                  # lands at rest + b - s
                    if b >= s and 0 <= pos <= cap - nb:
                        new = Mux(take & (lo == s) & (rest == pos), self.i.payload[b], new)
            m.d.sync += buf[k].eq(new)
        with m.If(take):
            m.d.sync += [left.eq(left - got), first.eq(0)]
        m.d.sync += fill.eq(rest + Mux(take, got, 0))
        with m.If(self.clear):
            m.d.sync += [fill.eq(0), left.eq(self.nbytes), out_left.eq(self.nbytes),
                         row_left.eq(self.width), first.eq(1), skip.eq(self.skip),
                         self.o.valid.eq(0)]
        return m
