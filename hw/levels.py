"""Non-uniform activation levels after the requantizer (``POST`` with ``O_NLEV``).

A layer quantized with a codebook (equal-distance or K-means, :mod:`ffacc.compiler.codes`)
keeps only ``n`` of the 256 activation values: each requantized value ``v`` becomes
``l[c]``, where ``c`` is the number of thresholds ``t[j]`` (``j < n - 1``) with ``v >= t[j]``.
With ascending levels and midpoint thresholds that is the nearest level; the hardware takes
any thresholds and levels, as the ISS does (:func:`ffacc.sim.golden.to_levels`).

:class:`LevelMap` is a two-stage pipeline: 63 comparators against the value (``n`` is 2..64)
and their count (a tree of adds) in one clock, the 64-way level multiplexer in the next. The
post-processor's output stage (:class:`~ffacc.hw.post.PostOutput`) registers the
requantizer's value in front of it. With ``POST``'s flag
``CODES`` (``n`` <= 16) the code ``c`` itself is stored, two a byte (:mod:`ffacc.hw.codes`),
and the loader of the next layer turns it back into its level; a map of more levels (5- and
6-bit codes) is stored a level a byte, which the next layer loads as it is.
"""

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ffacc.firmware.isa import MAX_LEVELS
from .logic import register_stage

__all__ = ["LevelMap", "levels_layout"]


def _count(bits):
    """The number of set ``bits``, as a balanced tree of adds (a chain of 63 is deep)."""
    while len(bits) > 1:
        bits = [a + b for a, b in zip(bits[0::2], bits[1::2])] + bits[len(bits) & ~1:]
    return bits[0]


def levels_layout():
    """A ``POST``'s levels as its command carries them."""
    return data.StructLayout({
        "n": range(2 * MAX_LEVELS),                             # O_NLEV: 0 = none
        "t": data.ArrayLayout(8, MAX_LEVELS - 1),               # O_TH0..15, a byte each
        "l": data.ArrayLayout(8, MAX_LEVELS),                   # O_LV0..15
    })


class LevelMap(wiring.Component):
    """Activation bytes to their levels (or codes): a pipeline of two registered stages.

    Stage 1 compares the value with the thresholds and counts them (the code ``c``); stage 2
    picks the level ``l[c]``. Each stage takes a value when it is empty or its value moves
    on, so the map takes one value a clock and gives it out two clocks later.

    Parameters
    ----------
    signed_acts : bool
        Activations (values, thresholds and levels) are int8; else uint8.

    Ports
    -----
    levels : In(:func:`levels_layout`); codes : In(1)
        The command's count, thresholds and levels, and whether the code is given instead of
        the level (both held while values are inside).
    en : In(1)
        The map moves only while ``en``; while it is low it takes and offers nothing and drops
        what it holds.
    i : In(stream of {data: 8, rowend: 1})
        Values (activation bytes) and whether each is its row's last.
    o : Out(stream of {data: 8, rowend: 1})
        Each value's level byte (its code with ``codes``; the value itself when
        ``levels.n`` is 0), the row end passed along.
    empty : Out(1)
        No value is inside.
    """

    def __init__(self, signed_acts):
        self.signed_acts = signed_acts
        layout = data.StructLayout({"data": 8, "rowend": 1})
        super().__init__({"levels": In(levels_layout()), "codes": In(1), "en": In(1),
                          "i": In(stream.Signature(layout)),
                          "o": Out(stream.Signature(layout)), "empty": Out(1)})

    def elaborate(self, platform):
        m = Module()
        lv, en = self.levels, self.en
        # stage 1: the value, its code and its row end; stage 2: the byte out
        s1 = Signal(data.StructLayout({"value": 8, "code": range(MAX_LEVELS), "rowend": 1}),
                    reset_less=True)
        s2 = Signal(data.StructLayout({"data": 8, "rowend": 1}), reset_less=True)
        ready2 = Signal()                   # stage 1's value moves on when stage 2 takes it
        full1, ready1, load1 = register_stage(m, en, self.i.valid, ready2, "s1")
        full2, ready2_, load2 = register_stage(m, en, full1, self.o.ready, "s2")
        m.d.comb += [ready2.eq(ready2_), self.i.ready.eq(ready1), self.o.valid.eq(en & full2),
                     self.o.payload.eq(s2), self.empty.eq(~full1 & ~full2)]

        x = self.i.payload.data
        v = x.as_signed() if self.signed_acts else x
        # threshold j counts where j < n - 1 (n = 0: none counts, and the byte is the value)
        above = [(j + 1 < lv.n) & (v >= (lv.t[j].as_signed() if self.signed_acts else lv.t[j]))
                 for j in range(MAX_LEVELS - 1)]
        with m.If(load1):
            m.d.sync += [s1.value.eq(x), s1.code.eq(_count(above)),
                         s1.rowend.eq(self.i.payload.rowend)]

        level = Array(lv.l[j] for j in range(MAX_LEVELS))[s1.code]
        with m.If(load2):
            m.d.sync += [s2.rowend.eq(s1.rowend),
                         s2.data.eq(Mux(self.codes, s1.code,
                                        Mux(lv.n == 0, s1.value, level)))]
        return m
