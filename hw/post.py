"""The post-processor: accumulators (or ADD's sums) -> bias, requantization, clamp, 2x2
max-pool or stride subsampling -> the byte writer, an element a clock.

:class:`PostUnit` runs one command at a time, given as a stream transfer:

* **POST** (``add = 0``): for each of ``lanes`` lanes, the lane's quantization record is read
  from the parameter buffer, then every kept element of the ``ny`` x ``wout`` band that
  starts at accumulator block ``acc0`` goes through the pipeline (four sub-elements per
  output with ``pool``) to the output map, lane ``l``'s row ``r`` at
  ``base + l * cstride + r * pitch``.
* **ADD** (``add = 1``, with ``ext``): the elements come from the ``ext`` stream (the ADD
  sequencer's two products per element) and go to ``base``, ``base + 1``, ... with the
  command's own requantization parameters ``q``, until an element marked ``last``.

With ``latch`` the unit copies the command when it takes it (``cmd.ready`` while idle), so
its producer may go on at once: POST then runs beside the controller's next commands. Without
it the unit takes the command when it is done: the producer holds the payload (a stream's
rule) and waits, and no copy of it costs registers (the smallest parts).
"""

from functools import partial

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ffacc.firmware.isa import QPARAM_WORDS, Err, Reg, reg_bits
from .logic import act_value, addr_clamp, ge_const, lt_const

__all__ = ["PostUnit", "RQ_BITS", "requant_round", "post_command_layout"]

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

EXT_LAYOUT = data.StructLayout({"pa": signed(27), "pb": signed(27), "last": 1})


def post_command_layout(cfg):
    """The command's fields for an :class:`~ffacc.hw.config.AcceleratorConfig`."""
    rb = reg_bits(cfg)
    fields = {
        "lanes": unsigned(rb[Reg.C_LANES]), "ny": unsigned(rb[Reg.C_NY]),
        "wout": unsigned(rb[Reg.C_WOUT]), "pool": 1,
        "step": unsigned(8),                # the output step in accumulator columns
        "sblk": unsigned(8), "ssub": unsigned(9),  # ... as blocks and columns (< L)
        "wob": unsigned(cfg.acc_blocks.bit_length()),       # a row's blocks
        "rowstep": unsigned(cfg.acc_blocks.bit_length()),   # step rows' blocks
        "acc0": unsigned(rb[Reg.C_ACC]), "q0": unsigned(rb[Reg.O_Q]),
        "acc1": unsigned(cfg.acc_blocks.bit_length()),      # the band's end: acc0 + ny * wob
        "base": unsigned(cfg.addr_bits + 1), "pitch": unsigned(rb[Reg.O_W]),
        "cstride": unsigned(rb[Reg.O_CSTRIDE]),
    }
    if cfg.add_unit:
        fields["add"] = 1
        fields["q"] = QPARAM_LAYOUT
    return data.StructLayout(fields)


class PostUnit(wiring.Component):
    """Requantizer pipeline and its sequencer for an :class:`AcceleratorConfig` ``cfg``.

    Ports
    -----
    cmd : In(stream of :func:`post_command_layout`)
        A command (see the module). With ``latch`` it is taken while the unit is idle and
        copied; without, it is taken in the clock the unit finishes it.
    busy : Out(1)
        A command runs (its last write not yet answered).
    err : Out(Err)
        The last command's error (0: none), from the clock ``busy`` falls until the next
        command starts: ``Err.PARAM`` for a record's shift outside 1..62 (the lanes before it
        are written), else the writer's ``ADDRESS``/``BUS``/``TIMEOUT``.
    acc_addr, acc_en : Out; acc_data : In(lanes x L x 32)
        The accumulators' read port (a word of every lane at once): the data of the address
        presented with ``acc_en`` the clock before.
    reading : Out(1)
        The unit reads the accumulators (a POST's elements): with a shared port, its address
        has the port.
    q_addr, q_en : Out; q_data : In(QPARAM_WORDS x 32)
        The parameter buffer's read port: a lane's record, read once per lane and held.
    wr : Out(stream of {addr, data}); wr_flush : Out(1); wr_idle, wr_err_valid : In(1);
    wr_err : In(Err)
        The byte writer (:class:`~ffacc.hw.axi.AxiByteWriter`).
    ext : In(stream of {pa, pb, last})
        ADD's elements (configurations with the ADD unit): ``pa + pb`` is requantized.
    stop : In(1)
        The producer of an ADD's elements gives up (its run failed): the elements taken are
        written, then the unit is idle (a POST runs to its end: it was issued whole).
    acc_lo, acc_hi : Out
        The running POST's accumulator blocks ``[acc_lo, acc_hi)`` (empty when idle): a
        ``CONV`` into them waits.
    """

    def __init__(self, cfg, *, latch):
        self.cfg = cfg
        self.latch = latch
        P, L = cfg.lanes, cfg.L
        AB = cfg.acc_blocks.bit_length() + 1
        self.cmd_layout = post_command_layout(cfg)
        ports = {
            "cmd": In(stream.Signature(self.cmd_layout)),
            "busy": Out(1),
            "err": Out(range(max(Err) + 1)),
            "acc_addr": Out(range(max(2, cfg.acc_blocks))),
            "acc_en": Out(1),
            "acc_data": In(unsigned(32 * L * P)),
            "reading": Out(1),
            "q_addr": Out(range(max(2, cfg.qb_entries))),
            "q_en": Out(1),
            "q_data": In(unsigned(32 * QPARAM_WORDS)),
            "wr": Out(stream.Signature(data.StructLayout(
                {"addr": unsigned(cfg.addr_bits + 1), "data": unsigned(8)}))),
            "wr_flush": Out(1),
            "wr_idle": In(1),
            "wr_err_valid": In(1),
            "wr_err": In(range(max(Err) + 1)),
            "acc_lo": Out(unsigned(AB)),
            "acc_hi": Out(unsigned(AB)),
        }
        if cfg.add_unit:
            ports["ext"] = In(stream.Signature(EXT_LAYOUT))
            ports["stop"] = In(1)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        P, L = cfg.lanes, cfg.L
        act_signed = cfg.fcu.act_signed
        A = cfg.addr_bits
        add = cfg.add_unit

        aclamp = partial(addr_clamp, addr_bits=A)
        s8 = partial(act_value, signed=act_signed)

        # the command: a copy (latch) or the producer's held payload
        start = Signal()
        finish = Signal()
        if self.latch:
            c = Signal(self.cmd_layout, reset_less=True)
            running = Signal()
            m.d.comb += [self.cmd.ready.eq(~running), start.eq(self.cmd.valid & ~running),
                         self.busy.eq(running)]
            with m.If(start):
                m.d.sync += [c.eq(self.cmd.payload), running.eq(1)]
            with m.If(finish):
                m.d.sync += running.eq(0)
        else:
            c = self.cmd.payload
            started = Signal()
            m.d.comb += [self.cmd.ready.eq(finish), start.eq(self.cmd.valid & ~started),
                         self.busy.eq(self.cmd.valid)]
            with m.If(start):
                m.d.sync += started.eq(1)
            with m.If(finish):
                m.d.sync += started.eq(0)
        is_add = c.add if add else Const(0, 1)

        # accumulator range of the running POST (the hazard check of CONV)
        with m.If(self.busy & ~is_add):
            m.d.comb += [self.acc_lo.eq(c.acc0), self.acc_hi.eq(c.acc1)]

        lane = Signal(range(P + 1))
        y = Signal(range(cfg.acc_blocks + 256 + 1))
        # a row's first accumulator block; it and the row step need only hold what a valid row
        # reaches (< acc_blocks): the next row's base is exact whenever that row exists
        rowbase = Signal(range(cfg.acc_blocks + 1))
        xblk = Signal(range(cfg.acc_blocks + 256 + 1))
        xsub = Signal(range(L))
        x = Signal(range(L * cfg.acc_blocks + 256 + 1))
        sub = Signal(2)
        orow = Signal(A + 1)
        lanebase = Signal(A + 1)
        ocol = Signal(A + 1)
        done = Signal()
        run = Signal()
        adv = Signal()

        # the requantizer's parameters: a lane's record, which the parameter buffer's read
        # port holds while the lane runs (it reads only at the lane's start), or ADD's from the
        # command; copied into registers at a lane's start on a fast clock
        # (qparams_in_registers), read in place otherwise
        q = Signal(QPARAM_LAYOUT, reset_less=True)
        q_load = Signal()
        qw = self.q_data
        rec = Signal(QPARAM_LAYOUT)
        m.d.comb += [rec.bias.eq(qw[0:32].as_signed()), rec.mult.eq(qw[32:64]),
                     rec.shift.eq(qw[64:72]), rec.zp.eq(s8(qw[72:80])),
                     rec.lo.eq(s8(qw[80:88])), rec.hi.eq(s8(qw[88:96]))]
        q_in = Mux(is_add, c.q, rec) if add else rec
        if cfg.qparams_in_registers:
            with m.If(q_load):
                m.d.sync += q.eq(q_in)
        else:
            m.d.comb += q.eq(q_in)

        # the pipeline: stage 1 the accumulator read (or ADD's products), 2 + bias (or the
        # products' sum), 3 the multiply, 4 round/shift; clamp and max at the write
        p1_valid, p2_valid, p3_valid, p4_valid = Signal(), Signal(), Signal(), Signal()
        p1_sub = Signal(range(L))
        p1_first, p2_first, p3_first, p4_first = Signal(), Signal(), Signal(), Signal()
        p1_last, p2_last, p3_last, p4_last = Signal(), Signal(), Signal(), Signal()
        # the element ends an output row: the write side's address then moves to the next row
        # (orow/ocol advance as elements are written, so no address rides the pipeline)
        p1_rowend, p2_rowend, p3_rowend, p4_rowend = Signal(), Signal(), Signal(), Signal()
        p1_pa, p1_pb = Signal(signed(27), reset_less=True), Signal(signed(27), reset_less=True)
        p2_in = Signal(signed(33), reset_less=True)
        mul_p = Signal(signed(66))
        m.d.comb += mul_p.eq(p2_in * Cat(q.mult, Const(0, 1)).as_signed())
        p3_prod = Signal(signed(66), reset_less=True)
        p4_rnd = Signal(signed(RQ_BITS), reset_less=True)
        res = Signal(signed(10))
        maxv = Signal(signed(10), reset_less=True)
        p3_rnd = Signal(signed(RQ_BITS))
        m.d.comb += p3_rnd.eq(requant_round(m, p3_prod, q.shift))

        def clamp(v):
            return Mux(v < q.lo, q.lo, Mux(v > q.hi, q.hi, v))

        m.d.comb += res.eq(clamp(p4_rnd + q.zp))
        grp_max = Signal(signed(10))
        m.d.comb += grp_max.eq(Mux(p4_first | (res > maxv), res, maxv))
        want_write = p4_valid & p4_last
        m.d.comb += adv.eq(run & ~(want_write & ~self.wr.ready))
        with m.If(run & want_write):
            m.d.comb += [self.wr.valid.eq(1), self.wr.payload.addr.eq(ocol),
                         self.wr.payload.data.eq(grp_max[:8])]
            with m.If(self.wr.ready):
                with m.If(p4_rowend):
                    next_row = aclamp(orow + c.pitch)
                    m.d.sync += [orow.eq(next_row), ocol.eq(next_row)]
                with m.Else():
                    m.d.sync += ocol.eq(aclamp(ocol + 1))
        with m.If(adv):
            words = Array(Array(self.acc_data[32 * (k * L + j):32 * (k * L + j) + 32]
                                for j in range(L)) for k in range(P))
            v = words[lane[:max(1, (P - 1).bit_length())] if P > 1 else 0][p1_sub]
            m.d.sync += [
                p2_valid.eq(p1_valid), p2_first.eq(p1_first), p2_last.eq(p1_last),
                p2_rowend.eq(p1_rowend),
                p2_in.eq(Mux(is_add, p1_pa + p1_pb, v.as_signed() + q.bias)),
                p3_valid.eq(p2_valid), p3_first.eq(p2_first), p3_last.eq(p2_last),
                p3_rowend.eq(p2_rowend), p3_prod.eq(mul_p),
                p4_valid.eq(p3_valid), p4_first.eq(p3_first), p4_last.eq(p3_last),
                p4_rowend.eq(p3_rowend), p4_rnd.eq(p3_rnd),
            ]
            with m.If(p4_valid):
                m.d.sync += maxv.eq(grp_max)
        with m.If(~run):
            m.d.sync += [p1_valid.eq(0), p2_valid.eq(0), p3_valid.eq(0), p4_valid.eq(0)]
        m.d.comb += self.acc_en.eq(~run | adv)
        empty = ~p1_valid & ~p2_valid & ~p3_valid & ~p4_valid

        def fail(code):
            m.d.sync += self.err.eq(code)
            m.d.comb += finish.eq(1)
            m.next = "IDLE"

        stopped = Signal()                  # an ADD's producer gave up
        if add:
            with m.If(start):
                m.d.sync += stopped.eq(0)
            with m.Elif(self.stop):
                m.d.sync += stopped.eq(1)

        with m.FSM(name="post"):
            with m.State("IDLE"):
                with m.If(start):
                    m.d.sync += [self.err.eq(0), lane.eq(0)]
                    if add:
                        with m.If(self.cmd.payload.add):
                            m.d.sync += [ocol.eq(self.cmd.payload.base), done.eq(0)]
                            m.next = "ADD_PARAMS"
                        with m.Else():
                            m.d.sync += lanebase.eq(self.cmd.payload.base)
                            m.next = "LANE"
                    else:
                        m.d.sync += lanebase.eq(self.cmd.payload.base)
                        m.next = "LANE"
            with m.State("LANE"):
                # the lane's record is read once: the read port holds it while the lane runs
                m.d.comb += [self.q_addr.eq(c.q0 + lane), self.q_en.eq(1)]
                m.d.sync += [y.eq(0), rowbase.eq(c.acc0), xblk.eq(0), xsub.eq(0), x.eq(0),
                             sub.eq(0), orow.eq(lanebase), ocol.eq(lanebase),
                             done.eq(c.pool & lt_const(c.wout, 2))]
                m.next = "QP" if cfg.qparams_in_registers else "SH"
            if cfg.qparams_in_registers:
                with m.State("QP"):
                    m.d.comb += q_load.eq(1)
                    m.next = "SH"
            with m.State("SH"):
                with m.If((q.shift == 0) | (q.shift > 62)):
                    fail(Err.PARAM)
                with m.Else():
                    m.next = "RUN"
            # one sub-element issued per cycle into the pipeline, stalled by the byte writer
            with m.State("RUN"):
                m.d.comb += [self.reading.eq(1), run.eq(1)]
                pool = c.pool
                last_sub = ~pool | (sub == 3)
                issue = ~done & adv
                dx = sub[0] & pool
                dy = sub[1] & pool
                xsub1 = Mux(xsub == L - 1, 0, xsub + 1)
                xblk1 = Mux(xsub == L - 1, xblk + 1, xblk)
                m.d.comb += self.acc_addr.eq(rowbase + Mux(dy, c.wob, 0) + Mux(dx, xblk1, xblk))
                nx = x + c.step
                row_end = Mux(pool, nx + 1 >= c.wout, nx >= c.wout)
                with m.If(issue):
                    m.d.sync += [p1_valid.eq(1), p1_sub.eq(Mux(dx, xsub1, xsub)),
                                 p1_first.eq(~pool | (sub == 0)), p1_last.eq(last_sub),
                                 p1_rowend.eq(last_sub & row_end)]
                    with m.If(pool & (sub != 3)):
                        m.d.sync += sub.eq(sub + 1)
                    with m.Else():
                        # next element: x += step; at the row end, y += step
                        nsub = xsub + c.ssub
                        carry = ge_const(nsub, L)
                        m.d.sync += sub.eq(0)
                        with m.If(row_end):
                            ny_next = y + c.step
                            m.d.sync += [x.eq(0), xblk.eq(0), xsub.eq(0), y.eq(ny_next),
                                         rowbase.eq(rowbase + c.rowstep)]
                            with m.If(Mux(pool, ny_next + 1 >= c.ny, ny_next >= c.ny)):
                                m.d.sync += done.eq(1)
                        with m.Else():
                            m.d.sync += [x.eq(nx), xsub.eq(Mux(carry, nsub - L, nsub)),
                                         xblk.eq(xblk + c.sblk + carry)]
                with m.Elif(adv):
                    m.d.sync += p1_valid.eq(0)
                with m.If(self.wr_err_valid):
                    fail(self.wr_err)
                with m.Elif(done & empty):
                    m.next = "LANEEND"
            with m.State("LANEEND"):
                with m.If(lane + 1 == c.lanes):
                    m.d.comb += self.wr_flush.eq(1)
                    m.next = "FLUSH"
                with m.Else():
                    m.d.sync += [lane.eq(lane + 1), lanebase.eq(aclamp(lanebase + c.cstride))]
                    m.next = "LANE"
            with m.State("FLUSH"):
                with m.If(self.wr_err_valid):
                    fail(self.wr_err)
                with m.Elif(self.wr_idle):
                    m.d.comb += finish.eq(1)
                    m.next = "IDLE"
            if add:
                with m.State("ADD_PARAMS"):
                    m.d.comb += q_load.eq(1)
                    m.next = "ADD_RUN"
                # an element a clock from ext into the pipeline, stalled by the writer (until
                # the last, or a stop)
                with m.State("ADD_RUN"):
                    m.d.comb += [run.eq(1), self.ext.ready.eq(adv & ~done & ~stopped)]
                    with m.If(self.ext.valid & self.ext.ready):
                        m.d.sync += [p1_valid.eq(1), p1_first.eq(1), p1_last.eq(1),
                                     p1_rowend.eq(0), p1_pa.eq(self.ext.payload.pa),
                                     p1_pb.eq(self.ext.payload.pb),
                                     done.eq(self.ext.payload.last)]
                    with m.Elif(adv):
                        m.d.sync += p1_valid.eq(0)
                    with m.If(self.wr_err_valid):
                        fail(self.wr_err)
                    with m.Elif((done | stopped) & empty):
                        m.d.comb += self.wr_flush.eq(1)
                        m.next = "FLUSH"
        return m
