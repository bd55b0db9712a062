"""Non-uniform activation levels after the requantizer (``POST`` with ``O_NLEV``).

A layer quantized with a codebook (equal-distance or K-means, :mod:`ffacc.compiler.codes`)
keeps only ``n`` of the 256 activation values: each requantized value ``v`` becomes
``l[c]``, where ``c`` is the number of thresholds ``t[j]`` (``j < n - 1``) with ``v >= t[j]``.
With ascending levels and midpoint thresholds that is the nearest level; the hardware takes
any thresholds and levels, as the ISS does (:func:`ffacc.sim.golden.to_levels`).

:class:`LevelMap` is combinational: 15 comparators against the value, their count, and a
16-way multiplexer. The post-processor's output stage (:class:`~ffacc.hw.post.PostOutput`)
registers its result before the code packer and the byte writer. With ``POST``'s flag ``CODES`` the code ``c`` itself is stored, two a byte
(:mod:`ffacc.hw.codes`), and the loader of the next layer turns it back into its level.
"""

from amaranth.hdl import Array, Module, Mux
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ffacc.firmware.isa import MAX_LEVELS

__all__ = ["LevelMap", "levels_layout"]


def levels_layout():
    """A ``POST``'s levels as its command carries them."""
    return data.StructLayout({
        "n": range(32),                                         # O_NLEV: 0 = none
        "t": data.ArrayLayout(8, MAX_LEVELS - 1),               # O_TH0..3, a byte each
        "l": data.ArrayLayout(8, MAX_LEVELS),                   # O_LV0..3
    })


class LevelMap(wiring.Component):
    """An activation byte to its level.

    Parameters
    ----------
    signed_acts : bool
        Activations (values, thresholds and levels) are int8; else uint8.

    Ports
    -----
    levels : In(:func:`levels_layout`)
        The command's count, thresholds and levels (held while it runs).
    i : In(8)
        The requantized activation (its byte).
    o : Out(8)
        Its level's byte, or ``i`` itself when ``levels.n`` is 0 (combinational).
    code : Out(4)
        The level's index (0 when ``levels.n`` is 0).
    """

    def __init__(self, signed_acts):
        self.signed_acts = signed_acts
        super().__init__({"levels": In(levels_layout()), "i": In(8), "o": Out(8),
                          "code": Out(4)})

    def elaborate(self, platform):
        m = Module()
        lv = self.levels
        v = self.i.as_signed() if self.signed_acts else self.i
        # threshold j counts where j < n - 1 (n = 0: none counts, and o is i)
        above = [(j + 1 < lv.n) & (v >= (lv.t[j].as_signed() if self.signed_acts else lv.t[j]))
                 for j in range(MAX_LEVELS - 1)]
        code = self.code
        m.d.comb += code.eq(sum(above))
        level = Array(lv.l[j] for j in range(MAX_LEVELS))[code]
        m.d.comb += self.o.eq(Mux(lv.n == 0, self.i, level))
        return m
