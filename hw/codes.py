"""Activations stored as 4-bit codes, two a byte (the even column in the low nibble; a row
starts on a byte, so a row of ``w`` codes takes ``ceil(w / 2)`` bytes).

``POST`` with flag ``CODES`` writes each output's code (:class:`~ffacc.hw.levels.LevelMap`
gives it) through :class:`CodePacker`; ``LOADA`` with flag ``DECODE`` reads such a map and
gives the row packer (:class:`~ffacc.hw.linebuf.RowPacker`) the codes' levels, a byte each,
through :class:`CodeUnpacker`, and ``LOADW`` with flag ``PACK4`` 4-bit weights through a
:class:`CodeUnpacker` that sign-extends them.

:class:`CodePacker` holds a row's even code until the odd one comes, then gives their byte;
a row's last code, if even, goes out with 0 above it.

:class:`CodeUnpacker` turns each bus beat of ``nb`` bytes (``2 nb`` codes) into two beats of
``nb`` levels: the beat's first half, then its second, from a register the beat is taken into
(two clocks a beat). A read that starts in the second half of its first beat
(``2 * skip >= nb``) skips the first half.
"""

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ffacc.firmware.isa import CODE_LEVELS

__all__ = ["CodePacker", "CodeUnpacker", "beats_or_unpacked"]


def beats_or_unpacked(m, beats, unp, on, sink, feed=1):
    """Drive ``sink`` (a stream's valid and payload, a bus beat's bytes) with ``beats``
    themselves or, while ``on``, with the beats :class:`CodeUnpacker` ``unp`` makes of them.

    The beats reach the unpacker only while ``on`` and ``feed``; while not ``feed`` the caller
    says what ``beats.ready`` is. The unpacker's output reaches ``sink`` whenever ``on``, also
    after the read ends (what it still holds)."""
    m.d.comb += [unp.i.payload.eq(beats.payload),
                 unp.i.valid.eq(on & feed & beats.valid),
                 unp.o.ready.eq(on & sink.ready),
                 sink.payload.eq(Mux(on, unp.o.payload, beats.payload)),
                 sink.valid.eq(Mux(on, unp.o.valid, feed & beats.valid))]
    with m.If(feed):
        m.d.comb += beats.ready.eq(Mux(on, unp.i.ready, sink.ready))


class CodePacker(wiring.Component):
    """Codes to bytes of two codes.

    Ports
    -----
    on : In(1)
        Pack (held while a command runs); off, ``i``'s bytes pass as they are.
    start : In(1)
        A command starts: no code is held.
    i : In(stream of {data: 8, rowend: 1})
        Values (``on``: their code in the low 4 bits) and whether each is its row's last.
    o : Out(stream of {data: 8, rowend: 1})
        Bytes; ``rowend`` marks the row's last byte.
    """

    def __init__(self):
        layout = data.StructLayout({"data": 8, "rowend": 1})
        super().__init__({"on": In(1), "start": In(1), "i": In(stream.Signature(layout)),
                          "o": Out(stream.Signature(layout))})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        held = Signal()
        low = Signal(4)
        # off, or a code that completes a byte (odd, or a row's last): out now
        out = ~self.on | held | i.payload.rowend
        # the payload is driven whole by plain assignments (a field set under an If and
        # another outside makes a process that nothing triggers in the Verilog)
        code = i.payload.data[:4]
        m.d.comb += [o.valid.eq(i.valid & out), o.payload.rowend.eq(i.payload.rowend),
                     o.payload.data.eq(Mux(self.on, Mux(held, Cat(low, code), code),
                                           i.payload.data)),
                     i.ready.eq(o.ready | ~out)]
        with m.If(i.valid & i.ready & self.on):
            m.d.sync += [held.eq(~out), low.eq(i.payload.data[:4])]
        with m.If(self.start):
            m.d.sync += held.eq(0)
        return m


class CodeUnpacker(wiring.Component):
    """Beats of codes to beats of levels, for a bus of ``nb`` bytes; with ``signed`` (4-bit
    weights, ``LOADW``'s ``PACK4``) each code is a two's complement nibble and its value the
    byte it sign-extends to, with no table.

    A beat is taken into a register (the read DMA shows a beat only while it is asked for
    one) and gives out its two halves in the clocks after; the next beat is taken in the
    clock its second half goes, so a read streams at two clocks a beat.

    Ports
    -----
    clear : In(1)
        A new read: nothing is held, and its first beat's half to start from is ``half0``.
    half0 : In(1)
        With ``clear``: the first beat gives only its second half.
    levels : In([16] bytes)
        The level of each code (held while the read runs); not with ``signed``.
    i : In(stream of [nb] bytes)
        The read's beats of codes.
    o : Out(stream of [nb] bytes)
        The levels: code ``k`` of a beat (byte ``k // 2``, low nibble first) is byte
        ``k mod nb`` of its half ``k // nb``.
    """

    def __init__(self, nb, signed=False):
        self.nb, self.signed = nb, signed
        super().__init__({
            "clear": In(1), "half0": In(1),
            **({} if signed else {"levels": In(data.ArrayLayout(8, CODE_LEVELS))}),
            "i": In(stream.Signature(data.ArrayLayout(8, nb))),
            "o": Out(stream.Signature(data.ArrayLayout(8, nb))),
        })

    def elaborate(self, platform):
        m = Module()
        nb = self.nb
        beat = Signal(data.ArrayLayout(8, nb), reset_less=True)
        full = Signal()
        half = Signal()
        first = Signal()                # the read's first beat: from half0
        skip_half = Signal()
        table = None if self.signed else Array(self.levels[j] for j in range(CODE_LEVELS))
        codes = [beat[k // 2][4 * (k % 2):4 * (k % 2) + 4] for k in range(2 * nb)]
        last_half = self.o.valid & self.o.ready & half
        m.d.comb += [self.o.valid.eq(full), self.i.ready.eq(~full | last_half)]
        for j in range(nb):
            code = Signal(4, name=f"code{j}")
            m.d.comb += code.eq(Array([codes[j], codes[nb + j]])[half])
            m.d.comb += self.o.payload[j].eq(code.as_signed() if self.signed else table[code])
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += half.eq(~half)
            with m.If(half):
                m.d.sync += full.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [beat.eq(self.i.payload), full.eq(1), first.eq(0),
                         half.eq(first & skip_half)]
        with m.If(self.clear):
            m.d.sync += [full.eq(0), first.eq(1), skip_half.eq(self.half0)]
        return m
