"""The requantizer: an element's int32 sum (accumulator plus bias, or ADD's two products) ->
multiply, round and shift, zero point, clamp, and the maximum over a 2x2 pool's four elements
-> an output byte.

:class:`RequantPipe` is the post-processor's pipeline, a stream in and a stream out;
:func:`requant_round` its rounding stage. The parameters (:data:`QPARAM_LAYOUT`) are held by
its user while elements flow.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ffacc.firmware.isa import AFFINE_C_BITS
from .logic import act_value

__all__ = ["RQ_BITS", "QPARAM_LAYOUT", "ELEMENT_LAYOUT", "AFFINE_LAYOUT", "requant_round",
           "record_value", "affine_value", "RequantPipe", "AffineStage"]

RQ_BITS = 10


def requant_round(m, prod, sh):
    """``(prod + 2**(sh-1)) >> sh`` (round half up, ``1 <= sh <= 62``) saturated to
    ``RQ_BITS``-bit signed, as logic added to ``m``: ``((prod >> (sh-1)) + 1) >> 1``, which
    is equal (``floor((floor(y) + 1) / 2) = floor((y + 1) / 2)``), so the rounding adder works
    on the narrow result. The saturation changes nothing the requantizer's output can show:
    the result, in [-2**(RQ_BITS-2), 2**(RQ_BITS-2)] = [-256, 256], is followed by the zero
    point (an int8 in [-128, 127] or a uint8 in [0, 255], as the activations) and the clamp to
    the activation type, and a saturated 256 + zp stays above 127 (int8) and 255 (uint8),
    -256 + zp below -128 and 0. One bit fewer would not (128 - 128 = 0 passes an int8 clamp):
    the rounding test checks both.

    The shift keeps only what the narrow result needs: shifting by 32, 16, ..., 1 in turn,
    each stage keeps the window plus the shift still to come (``RQ_BITS + 2**k - 1`` bits) and
    notes whether a bit it drops above that differs from the sign (then the result does not fit
    and saturates). A full-width shifter and a test of all its high bits cost 446 logic cells
    more on the iCE40 (measured)."""
    R = RQ_BITS
    n = len(prod)
    s = (sh - 1)[:6]
    sign = prod[n - 1]
    v = prod.as_unsigned()
    over = Const(0, 1)                    # a dropped bit differs from the sign
    for k in reversed(range(6)):
        amt = 1 << k
        keep = R + amt - 1
        shifted = Signal(len(v), name=f"rq_shift{k}")
        m.d.comb += shifted.eq(Mux(s[k], Cat(v, sign.replicate(amt))[amt:], v))
        if keep < len(v):
            dropped = shifted[keep:]
            over = over | (dropped != sign.replicate(len(dropped)))
            v = shifted[:keep]
        else:
            v = shifted
    fits = ~over & (v[R - 1] == sign)
    sat = Signal(signed(R))
    m.d.comb += sat.eq(Mux(fits, v, Mux(sign, -(1 << (R - 1)), (1 << (R - 1)) - 1)))
    res = Signal(signed(R))
    m.d.comb += res.eq((sat + 1) >> 1)
    return res


QPARAM_LAYOUT = data.StructLayout({
    "bias": signed(32), "mult": unsigned(32), "shift": unsigned(8),
    "zp": signed(9), "lo": signed(9), "hi": signed(9)})


def record_value(m, word, act_signed):
    """A quantization record as the parameter buffer stores it (``QPARAM_WORDS`` words:
    :func:`~ffacc.firmware.isa.pack_qparam`) as a :data:`QPARAM_LAYOUT` value."""
    rec = Signal(QPARAM_LAYOUT)
    m.d.comb += [rec.bias.eq(word[0:32].as_signed()), rec.mult.eq(word[32:64]),
                 rec.shift.eq(word[64:72]), rec.zp.eq(act_value(word[72:80], act_signed)),
                 rec.lo.eq(act_value(word[80:88], act_signed)),
                 rec.hi.eq(act_value(word[88:96], act_signed))]
    return rec


# an element into the pipe: its sum, and where it stands in its output group and row
ELEMENT_LAYOUT = data.StructLayout({
    "v": signed(33),        # accumulator + bias, or ADD's pa + pb
    "first": 1,             # the first of its output's group (a pool's four; else alone)
    "last": 1,              # the last of its group: the output is written after it
    "rowend": 1,            # ... and it ends an output row
    "pad": 1,               # it is a pool window's padding: no value (q.lo in the maximum)
})


class RequantPipe(wiring.Component):
    """Three registered stages: the sum (stage 2 of the post-processor), the product with
    ``q.mult`` (3), the rounded shift (4); then zero point, clamp to ``[q.lo, q.hi]`` and the
    running maximum of the group, combinational into the output.

    Ports
    -----
    i : In(stream of :data:`ELEMENT_LAYOUT`)
        Elements. ``ready`` is the pipe's advance: every stage moves when the output is
        taken or not offered.
    o : Out(stream of {data: unsigned(8), rowend: 1})
        An output byte (the activation type's 8 bits) for each element marked ``last``: the
        maximum of its group's requantized values.
    q : In(:data:`QPARAM_LAYOUT`)
        The parameters (``bias`` unused here), held while elements are in the pipe.
    en : In(1)
        The pipe moves only while ``en``; while it is low it offers no output and drops what
        it holds (a run that ended or failed).
    empty : Out(1)
        No element is in the pipe.
    """

    def __init__(self):
        super().__init__({
            "i": In(stream.Signature(ELEMENT_LAYOUT)),
            "o": Out(stream.Signature(data.StructLayout(
                {"data": unsigned(8), "rowend": 1}))),
            "q": In(QPARAM_LAYOUT),
            "en": In(1),
            "empty": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        q = self.q
        adv = Signal()
        # per stage: valid, first, last, rowend, pad (the flags ride with the element)
        flags = [Signal(5, name=f"p{k}_flags") for k in (2, 3, 4)]
        valid = [f[0] for f in flags]
        p2_in = Signal(signed(33), reset_less=True)
        mul_p = Signal(signed(66))
        m.d.comb += mul_p.eq(p2_in * Cat(q.mult, Const(0, 1)).as_signed())
        p3_prod = Signal(signed(66), reset_less=True)
        p3_rnd = Signal(signed(RQ_BITS))
        m.d.comb += p3_rnd.eq(requant_round(m, p3_prod, q.shift))
        p4_rnd = Signal(signed(RQ_BITS), reset_less=True)

        res = Signal(signed(10))
        # a pad element is the clamp's minimum, which no value of the window is below
        m.d.comb += res.eq(Mux((p4_rnd + q.zp < q.lo) | flags[2][4], q.lo,
                               Mux(p4_rnd + q.zp > q.hi, q.hi, p4_rnd + q.zp)))
        maxv = Signal(signed(10), reset_less=True)
        grp_max = Signal(signed(10))
        p4_first, p4_last, p4_rowend = flags[2][1], flags[2][2], flags[2][3]
        m.d.comb += grp_max.eq(Mux(p4_first | (res > maxv), res, maxv))

        m.d.comb += [
            self.o.valid.eq(self.en & valid[2] & p4_last),
            self.o.payload.data.eq(grp_max[:8]),
            self.o.payload.rowend.eq(p4_rowend),
            adv.eq(self.en & ~(self.o.valid & ~self.o.ready)),
            self.i.ready.eq(adv),
            self.empty.eq(~(valid[0] | valid[1] | valid[2])),
        ]
        e = self.i.payload
        with m.If(adv):
            m.d.sync += [
                flags[0].eq(Cat(self.i.valid, e.first, e.last, e.rowend, e.pad)),
                flags[1].eq(flags[0]), flags[2].eq(flags[1]),
                p2_in.eq(e.v), p3_prod.eq(mul_p), p4_rnd.eq(p3_rnd),
            ]
            with m.If(valid[2]):
                m.d.sync += maxv.eq(grp_max)
        with m.If(~self.en):
            m.d.sync += [f.eq(0) for f in flags]
        return m


# a lane's second record (POST flag AFFINE; firmware.isa.pack_affine), and the zero point of
# the values it maps (the first record's)
AFFINE_LAYOUT = data.StructLayout({
    "c": signed(AFFINE_C_BITS), "k": unsigned(4), "neg": 1, "zero": 1,
    "mult": unsigned(32), "shift": unsigned(8), "zp": signed(9), "lo": signed(9),
    "hi": signed(9), "zin": signed(9)})


def affine_value(m, word, zin, act_signed):
    """A second record as the parameter buffer stores it (``QPARAM_WORDS`` words:
    :func:`~ffacc.firmware.isa.pack_affine`) as an :data:`AFFINE_LAYOUT` value, with ``zin``,
    the zero point of the values it maps."""
    rec = Signal(AFFINE_LAYOUT)
    m.d.comb += [rec.c.eq(word[0:AFFINE_C_BITS].as_signed()), rec.k.eq(word[24:28]),
                 rec.neg.eq(word[28]), rec.zero.eq(word[29]), rec.mult.eq(word[32:64]),
                 rec.shift.eq(word[64:72]), rec.zp.eq(act_value(word[72:80], act_signed)),
                 rec.lo.eq(act_value(word[80:88], act_signed)),
                 rec.hi.eq(act_value(word[88:96], act_signed)), rec.zin.eq(zin)]
    return rec


class AffineStage(wiring.Component):
    """A per-channel affine map after the requantizer (``POST``'s flag ``AFFINE``): each
    value ``x`` -> ``clamp(((K (x - zin) + C) M + 2**(s-1)) >> s + zp, lo, hi)``, ``K = 0`` or
    ``+-2**k`` (:func:`~ffacc.firmware.isa.pack_affine`; the same integers as
    :func:`ffacc.sim.golden.channel_affine`). Five registered stages: the value as it comes
    (the requantizer's clamp and maximum end in its output), ``(x - zin) << k``, ``C`` plus or
    minus it, the product with ``M``, the rounded shift; then zero point and clamp,
    combinational into the output. Off, it passes its input through.

    Ports
    -----
    i : In(stream of {data: unsigned(8), rowend: 1})
        Values (the activation type's 8 bits) and whether each ends its output row.
        ``ready`` is the stage's advance: every register moves when the output is taken or
        not offered.
    o : Out(stream of {data: unsigned(8), rowend: 1})
        The mapped values, in order.
    p : In(:data:`AFFINE_LAYOUT`)
        The map, held while values are inside.
    on : In(1)
        Map (held while values are inside); else ``o`` is ``i``.
    en : In(1)
        The stage moves only while ``en``; while it is low it offers nothing and drops what it
        holds (a run that ended or failed).
    empty : Out(1)
        No value is inside.
    """

    DEPTH = 5

    def __init__(self, act_signed):
        self.act_signed = act_signed
        layout = data.StructLayout({"data": unsigned(8), "rowend": 1})
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
            "p": In(AFFINE_LAYOUT),
            "on": In(1),
            "en": In(1),
            "empty": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        SB = 10 + 15                            # (x - zin) << k: a 10-bit difference, k < 16
        AB = max(SB, AFFINE_C_BITS) + 1         # ... plus or minus C
        flags = [Signal(2, name=f"a{k}_flags") for k in range(self.DEPTH)]    # valid, rowend
        valid = [f[0] for f in flags]
        adv = Signal()

        x0 = Signal(8, reset_less=True)                     # the value as it came
        diff = Signal(signed(10))
        m.d.comb += diff.eq(act_value(x0, self.act_signed) - p.zin)
        t1 = Signal(signed(SB), reset_less=True)            # (x - zin) << k
        a2 = Signal(signed(AB), reset_less=True)            # C +- that
        a3 = Signal(signed(AB + 33), reset_less=True)       # times M
        a4 = Signal(signed(RQ_BITS), reset_less=True)       # rounded and shifted
        rnd = Signal(signed(RQ_BITS))
        m.d.comb += rnd.eq(requant_round(m, a3, p.shift))
        res = Signal(signed(10))
        m.d.comb += res.eq(Mux(a4 + p.zp < p.lo, p.lo, Mux(a4 + p.zp > p.hi, p.hi, a4 + p.zp)))

        last = flags[-1]
        with m.If(self.on):
            m.d.comb += [
                self.o.valid.eq(self.en & last[0]),
                self.o.payload.data.eq(res[:8]),
                self.o.payload.rowend.eq(last[1]),
                adv.eq(self.en & ~(self.o.valid & ~self.o.ready)),
                self.i.ready.eq(adv),
                self.empty.eq(~Cat(*valid).any()),
            ]
        with m.Else():
            m.d.comb += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload),
                         self.i.ready.eq(self.o.ready), self.empty.eq(1)]
        with m.If(adv):
            m.d.sync += [flags[0].eq(Cat(self.i.valid, self.i.payload.rowend)),
                         *(flags[k].eq(flags[k - 1]) for k in range(1, self.DEPTH)),
                         x0.eq(self.i.payload.data),
                         t1.eq(diff << p.k),
                         a2.eq(Mux(p.zero, p.c, Mux(p.neg, p.c - t1, p.c + t1))),
                         a3.eq(a2 * Cat(p.mult, Const(0, 1)).as_signed()),
                         a4.eq(rnd)]
        with m.If(~self.en):
            m.d.sync += [f.eq(0) for f in flags]
        return m
