"""The post-processor: accumulators (or ADD's sums) -> bias, requantization, clamp, 2x2
max-pool or stride subsampling -> the byte writer, an element a clock.

:class:`PostUnit` runs one command at a time, given as a stream transfer:

* **POST** (``add = 0``): for each of ``lanes`` lanes, the lane's quantization record is read
  from the parameter buffer, then every kept element of the ``ny`` x ``wout`` band that
  starts at accumulator block ``acc0`` goes through the pipeline (four sub-elements per
  output with ``pool``) and, with ``act_codes``, to its level (:mod:`ffacc.hw.levels`) to the
  output map, lane ``l``'s row ``r`` at
  ``base + l * cstride + r * pitch``. With ``affine`` (``post_affine``) a lane has two records,
  ``q0 + 2 l`` and ``q0 + 2 l + 1``: the second maps each output once more
  (:class:`~ffacc.hw.requant.AffineStage`, after the pool's maximum).
* **ADD** (``add = 1``, with ``ext``): the elements come from the ``ext`` stream (the ADD
  sequencer's two products per element) and go to ``base``, ``base + 1``, ... with the
  command's own requantization parameters ``q``, until an element marked ``last``; with
  ``affine``, each mapped by record ``q0`` (its input zero point: ``q``'s).

With ``latch`` the unit copies the command when it takes it (``cmd.ready`` while idle), so
its producer may go on at once: POST then runs beside the controller's next commands. Without
it the unit takes the command when it is done: the producer holds the payload (a stream's
rule) and waits, and no copy of it costs registers (the smallest parts).
"""

from functools import partial

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ffacc.firmware.isa import QPARAM_WORDS, Err, Reg, reg_bits
from .logic import addr_clamp, register_stage
from .codes import CodePacker
from .levels import LevelMap, levels_layout
from .postscan import PostScan
from .requant import (AFFINE_LAYOUT, QPARAM_LAYOUT, AffineStage, RequantPipe,
                      affine_value, record_value)

__all__ = ["PostUnit", "post_command_layout"]

EXT_LAYOUT = data.StructLayout({"pa": signed(27), "pb": signed(27), "last": 1})


def post_command_layout(cfg):
    """The command's fields for an :class:`~ffacc.hw.config.AcceleratorConfig`."""
    rb = reg_bits(cfg)
    fields = {
        "lanes": unsigned(rb[Reg.C_LANES]), "ny": unsigned(rb[Reg.C_NY]),
        "wout": unsigned(rb[Reg.C_WOUT]), "pool": 1,
        "poolk": unsigned(rb[Reg.O_POOLK]),    # the pool's window (with pool)
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
    if cfg.act_codes:
        fields["levels"] = levels_layout()
        fields["codes"] = 1                 # write codes, two a byte (flag CODES)
    if cfg.post_affine:
        fields["affine"] = 1                # two records a lane, the second's map (AFFINE)
    if cfg.pool_pads:
        fields["pads"] = unsigned(16)       # the pool's padding: top, left, bottom, right
    return data.StructLayout(fields)


class PostOutput(wiring.Component):
    """The post-processor's last stage: requantized values -> (``post_affine``) their
    per-channel affine map (:class:`~ffacc.hw.requant.AffineStage`) -> (``act_codes``) their
    levels (:class:`~ffacc.hw.levels.LevelMap`), or their codes two a byte
    (:class:`~ffacc.hw.codes.CodePacker`) -> the bytes to write.

    Ports
    -----
    affine : In(:data:`~ffacc.hw.requant.AFFINE_LAYOUT`); affine_on : In(1)
        (``post_affine``) The lane's map and whether values go through it (held).
    levels : In(:func:`~ffacc.hw.levels.levels_layout`); codes : In(1)
        The command's levels (``n`` = 0: none) and whether codes are written (held).
    start : In(1)
        A command starts.
    en : In(1)
        The stage moves only while ``en``; while it is low it takes and offers nothing and
        drops what it holds (a run that ended or failed). A pass-through without
        ``act_codes`` and ``post_affine``.
    i : In(stream of {data: 8, rowend: 1})
        The requantizer's values and row ends.
    o : Out(stream of {data: 8, rowend: 1})
        The bytes, and whether each is its row's last.
    empty : Out(1)
        No value is inside (a lane's last byte has reached ``o``'s consumer).

    With ``act_codes`` a register precedes the level map, whose two stages are registered as
    well (its 63 comparators and their count are a clock's work, which the ULX3S could do
    neither behind the requantizer's clamp nor together with the level multiplexer): a value
    leaves three clocks after it enters, still one a clock.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        layout = data.StructLayout({"data": 8, "rowend": 1})
        ports = {"start": In(1), "en": In(1), "i": In(stream.Signature(layout)),
                 "o": Out(stream.Signature(layout)), "empty": Out(1)}
        if cfg.act_codes:
            ports.update(levels=In(levels_layout()), codes=In(1))
        if cfg.post_affine:
            ports.update(affine=In(AFFINE_LAYOUT), affine_on=In(1))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        src, src_empty = wiring.flipped(self.i), Const(1, 1)
        if self.cfg.post_affine:
            amap = m.submodules.affine = AffineStage(self.cfg.fcu.act_signed)
            m.d.comb += [amap.p.eq(self.affine), amap.on.eq(self.affine_on),
                         amap.en.eq(self.en)]
            wiring.connect(m, src, amap.i)
            src, src_empty = amap.o, amap.empty
        if not self.cfg.act_codes:
            wiring.connect(m, src, wiring.flipped(self.o))
            m.d.comb += self.empty.eq(src_empty)
            return m
        lmap = m.submodules.levels = LevelMap(self.cfg.fcu.act_signed)
        pack = m.submodules.pack = CodePacker()
        # the requantized value in a register of its own (so the requantizer's clamp and the
        # map's comparators are not one clock's work) -> the level map's two stages -> packer
        held = Signal(data.StructLayout({"data": 8, "rowend": 1}), reset_less=True)
        full, ready, load = register_stage(m, self.en, src.valid, lmap.i.ready, "held")
        m.d.comb += [lmap.levels.eq(self.levels), lmap.codes.eq(self.codes), lmap.en.eq(self.en),
                     pack.on.eq(self.codes), pack.start.eq(self.start),
                     src.ready.eq(ready),
                     lmap.i.valid.eq(self.en & full), lmap.i.payload.eq(held),
                     self.empty.eq(src_empty & ~full & lmap.empty)]
        with m.If(load):
            m.d.sync += held.eq(src.payload)
        wiring.connect(m, lmap.o, pack.i)
        wiring.connect(m, pack.o, wiring.flipped(self.o))
        return m


def _bad_shift(shift):
    """A record's shift outside 1..62 (``Err.PARAM``)."""
    return (shift == 0) | (shift > 62)


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
    acc_addr, acc_en : Out; acc_data : In(acc_lanes x L x 32)
        The accumulators' read port (a word of every lane at once): the data of the address
        presented with ``acc_en`` the clock before.
    reading : Out(1)
        The unit reads the accumulators (a POST's elements): with a shared port, its address
        has the port.
    q_addr, q_en : Out; q_data : In(QPARAM_WORDS x 32)
        The parameter buffer's read port: a lane's record, read once per lane and held (with
        ``affine``, its second record is read in the clock before and copied).
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
    q_lo, q_hi : Out
        The records the running POST reads, ``[q0, q0 + lanes)`` (``2 lanes`` with
        ``affine``; empty when idle): a ``LOADQ`` into them waits.
    """

    def __init__(self, cfg, *, latch):
        self.cfg = cfg
        self.latch = latch
        P, L = cfg.acc_lanes, cfg.L
        AB = cfg.acc_blocks.bit_length() + 1
        QB = reg_bits(cfg)[Reg.O_Q]
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
            "q_lo": Out(unsigned(QB)),
            "q_hi": Out(unsigned(QB + 1)),
        }
        if cfg.add_unit:
            ports["ext"] = In(stream.Signature(EXT_LAYOUT))
            ports["stop"] = In(1)
        super().__init__(ports)

    def _command_slot(self, m, start, finish):
        """The command: a copy taken while idle (``latch``), or the producer's held payload,
        taken when the unit finishes it. Drives ``start`` (the command begins) from ``cmd``
        and ``busy``; ``finish`` (the command ends) is the caller's. Returns the command."""
        if self.latch:
            c = Signal(self.cmd_layout, reset_less=True)
            running = Signal()
            m.d.comb += [self.cmd.ready.eq(~running), start.eq(self.cmd.valid & ~running),
                         self.busy.eq(running)]
            with m.If(start):
                m.d.sync += [c.eq(self.cmd.payload), running.eq(1)]
            with m.If(finish):
                m.d.sync += running.eq(0)
            return c
        started = Signal()
        m.d.comb += [self.cmd.ready.eq(finish), start.eq(self.cmd.valid & ~started),
                     self.busy.eq(self.cmd.valid)]
        with m.If(start):
            m.d.sync += started.eq(1)
        with m.If(finish):
            m.d.sync += started.eq(0)
        return self.cmd.payload

    def _hazard_ranges(self, m, c, start, is_add):
        """The accumulator blocks and records of the running POST (the hazard checks of CONV
        and LOADQ); a copied command's record end is added up as it is copied, so the
        controller's check of a LOADQ starts at flip-flops (it was the ULX3S's critical
        path)."""
        def end(cmd):
            if self.cfg.post_affine:
                return cmd.q0 + Mux(cmd.affine, cmd.lanes << 1, cmd.lanes)
            return cmd.q0 + cmd.lanes

        if self.latch:
            q_end = Signal.like(self.q_hi)
            with m.If(start):
                m.d.sync += q_end.eq(end(self.cmd.payload))
        else:
            q_end = end(c)
        with m.If(self.busy & ~is_add):
            m.d.comb += [self.acc_lo.eq(c.acc0), self.acc_hi.eq(c.acc1),
                         self.q_lo.eq(c.q0), self.q_hi.eq(q_end)]

    def _records(self, m, c, is_add):
        """The requantizer's parameters: a lane's record, which the parameter buffer's read
        port holds while the lane runs (it reads only at the lane's start), or ADD's from the
        command; copied into registers at a lane's start (``q_load``) on a fast clock
        (``qparams_in_registers``), read in place otherwise. (``post_affine``) A lane's
        second record, copied as the lane starts (``aff_load``; the read port then holds the
        first). Returns ``(q, q_load, aff, aff_load)``."""
        cfg = self.cfg
        q = Signal(QPARAM_LAYOUT, reset_less=True)
        q_load = Signal()
        rec = record_value(m, self.q_data, cfg.fcu.act_signed)
        q_in = Mux(is_add, c.q, rec) if cfg.add_unit else rec
        if cfg.qparams_in_registers:
            with m.If(q_load):
                m.d.sync += q.eq(q_in)
        else:
            m.d.comb += q.eq(q_in)
        aff = Signal(AFFINE_LAYOUT, reset_less=True)
        aff_load = Signal()
        if cfg.post_affine:
            with m.If(aff_load):
                m.d.sync += aff.eq(affine_value(m, self.q_data, 0, cfg.fcu.act_signed))
        return q, q_load, aff, aff_load

    def _stage1(self, m, pipe, scan, lane, q, is_add, run):
        """Stage 1: the element the scan gave last clock (``p1``), whose accumulator word (of
        every lane) the read port gives in this clock, or ADD's products (``p1_pa``,
        ``p1_pb``); the scan's address to the accumulators' read port. Stage 1b
        (``read_registers``): the element and its lane's words of the read registered
        (``p1b``; without, ``p1b`` is ``p1``), then its word plus the
        record's bias, or the products' sum, into the requantizer ``pipe``: no block RAM's
        output drives the lane multiplexer and the adder in the clock it is read. Returns
        ``(p1, p1_pa, p1_pb, p1b)``; the caller loads the first three."""
        P, L = self.cfg.acc_lanes, self.cfg.L
        adv = pipe.i.ready
        flags = data.StructLayout({"valid": 1, "sub": range(L), "first": 1, "last": 1,
                                   "rowend": 1, "pad": 1})
        p1, p1b = Signal(flags), Signal(flags)
        p1_pa, p1_pb = Signal(signed(27), reset_less=True), Signal(signed(27), reset_less=True)
        pa, pb = Signal(signed(27), reset_less=True), Signal(signed(27), reset_less=True)
        # the lane's L words (the lane is the same for the whole run)
        acc = Signal(data.ArrayLayout(32, L), reset_less=True)
        lanes = Array(self.acc_data[32 * L * k:32 * L * (k + 1)] for k in range(P))
        word = lanes[lane[:max(1, (P - 1).bit_length())]] if P > 1 else self.acc_data
        if self.cfg.read_registers:
            with m.If(adv):
                m.d.sync += [p1b.eq(p1), acc.eq(word), pa.eq(p1_pa), pb.eq(p1_pb)]
            with m.If(~run):
                m.d.sync += p1b.valid.eq(0)
        else:           # no stage 1b: its signals are stage 1's
            m.d.comb += [p1b.eq(p1), acc.eq(word), pa.eq(p1_pa), pb.eq(p1_pb)]
        v = acc[p1b.sub]
        m.d.comb += [
            pipe.i.valid.eq(p1b.valid),
            pipe.i.payload.v.eq(Mux(is_add, pa + pb, v.as_signed() + q.bias)),
            pipe.i.payload.first.eq(p1b.first), pipe.i.payload.last.eq(p1b.last),
            pipe.i.payload.rowend.eq(p1b.rowend), pipe.i.payload.pad.eq(p1b.pad),
            self.acc_addr.eq(scan.o.payload.addr),
            self.acc_en.eq(~run | adv),
        ]
        with m.If(adv | ~run):
            m.d.sync += p1.valid.eq(0)      # unless an element enters (the caller's)
        return p1, p1_pa, p1_pb, p1b

    def elaborate(self, platform):
        m = Module()
        cfg, add = self.cfg, self.cfg.add_unit
        P, A = cfg.acc_lanes, cfg.addr_bits
        aclamp = partial(addr_clamp, addr_bits=A)
        start, finish = Signal(), Signal()
        c = self._command_slot(m, start, finish)
        is_add = c.add if add else Const(0, 1)

        self._hazard_ranges(m, c, start, is_add)

        lane = Signal(range(P + 1))
        orow, lanebase, ocol = Signal(A + 1), Signal(A + 1), Signal(A + 1)
        add_done = Signal()                 # an ADD took its last element
        run = Signal()

        q, q_load, aff, aff_load = self._records(m, c, is_add)
        affine = c.affine if cfg.post_affine else Const(0, 1)
        # (post_affine) the second record's shift, checked from its copy in registers
        bad_aff = affine & _bad_shift(aff.shift) if cfg.post_affine else Const(0)
        qidx = Signal.like(self.q_addr)     # the lane's (first) record

        # the band's elements (scan) -> stage 1, the accumulator read (or ADD's products) ->
        # stage 1b, the read registered -> the requantizer's stages 2-4 (pipe) ->
        # (post_affine) the affine map -> the byte writer
        scan = m.submodules.scan = PostScan(cfg, self.cmd_layout)
        pipe = m.submodules.pipe = RequantPipe()
        m.d.comb += [scan.cmd.eq(c), pipe.q.eq(q), pipe.en.eq(run)]
        adv = pipe.i.ready
        p1, p1_pa, p1_pb, p1b = self._stage1(m, pipe, scan, lane, q, is_add, run)
        empty = Signal()                    # (and the output stage's, below)

        # the write side: orow/ocol advance as bytes are written, so no address rides the
        # pipeline
        # (act_codes) a POST's values to their levels or codes (ADD's are never mapped)
        out = m.submodules.out = PostOutput(cfg)
        if cfg.post_affine:
            # (the map's input zero point: the first record's, which the lane holds)
            m.d.comb += [out.affine.eq(aff), out.affine.zin.eq(q.zp),
                         out.affine_on.eq(affine)]
        m.d.comb += [empty.eq(~p1.valid & ~p1b.valid & pipe.empty & out.empty),
                     out.i.valid.eq(pipe.o.valid), out.i.payload.eq(pipe.o.payload),
                     pipe.o.ready.eq(out.i.ready), out.start.eq(start), out.en.eq(run),
                     self.wr.valid.eq(out.o.valid), self.wr.payload.addr.eq(ocol),
                     self.wr.payload.data.eq(out.o.payload.data), out.o.ready.eq(self.wr.ready)]
        if cfg.act_codes:
            with m.If(~is_add):
                m.d.comb += [out.levels.eq(c.levels), out.codes.eq(c.codes)]
        with m.If(out.o.valid & out.o.ready):
            with m.If(out.o.payload.rowend):
                next_row = aclamp(orow + c.pitch)
                m.d.sync += [orow.eq(next_row), ocol.eq(next_row)]
            with m.Else():
                m.d.sync += ocol.eq(aclamp(ocol + 1))

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
                    m.d.sync += [self.err.eq(0), lane.eq(0), lanebase.eq(self.cmd.payload.base),
                                 qidx.eq(self.cmd.payload.q0)]
                    m.next = "LANE"
                    if add:
                        with m.If(self.cmd.payload.add):
                            m.d.sync += [ocol.eq(self.cmd.payload.base), add_done.eq(0)]
                            # (AFFINE) its map's record, copied in ADD_PARAMS
                            m.d.comb += [self.q_addr.eq(self.cmd.payload.q0), self.q_en.eq(1)]
                            m.next = "ADD_PARAMS"
            with m.State("LANE"):
                # the lane's record is read once: the read port holds it while the lane runs
                # (with affine, its second record first, copied in AFF)
                m.d.comb += [self.q_addr.eq(qidx), self.q_en.eq(1), scan.start.eq(1)]
                m.d.sync += [orow.eq(lanebase), ocol.eq(lanebase)]
                m.next = "QP" if cfg.qparams_in_registers else "SH"
                if cfg.post_affine:
                    with m.If(affine):
                        m.d.comb += [self.q_addr.eq(qidx + 1), scan.start.eq(0)]
                        m.next = "AFF"
            if cfg.post_affine:
                with m.State("AFF"):
                    m.d.comb += [aff_load.eq(1), self.q_addr.eq(qidx), self.q_en.eq(1),
                                 scan.start.eq(1)]
                    m.next = "QP" if cfg.qparams_in_registers else "SH"
            if cfg.qparams_in_registers:
                with m.State("QP"):
                    m.d.comb += q_load.eq(1)
                    m.next = "SH"
            with m.State("SH"):
                with m.If(_bad_shift(q.shift) | bad_aff):
                    fail(Err.PARAM)
                with m.Else():
                    m.next = "RUN"
            # an element a clock from the scan into the pipeline, stalled by the byte writer
            with m.State("RUN"):
                m.d.comb += [self.reading.eq(1), run.eq(1), scan.o.ready.eq(adv)]
                with m.If(scan.o.valid & adv):
                    e = scan.o.payload
                    m.d.sync += [p1.valid.eq(1), p1.sub.eq(e.sub), p1.first.eq(e.first),
                                 p1.last.eq(e.last), p1.rowend.eq(e.rowend),
                                 p1.pad.eq(e.pad)]
                with m.If(self.wr_err_valid):
                    fail(self.wr_err)
                with m.Elif(~scan.o.valid & empty):
                    m.next = "LANEEND"
            with m.State("LANEEND"):
                with m.If(lane + 1 == c.lanes):
                    m.d.comb += self.wr_flush.eq(1)
                    m.next = "FLUSH"
                with m.Else():
                    m.d.sync += [lane.eq(lane + 1), lanebase.eq(aclamp(lanebase + c.cstride)),
                                 qidx.eq(qidx + 1 + affine)]
                    m.next = "LANE"
            with m.State("FLUSH"):
                with m.If(self.wr_err_valid):
                    fail(self.wr_err)
                with m.Elif(self.wr_idle):
                    m.d.comb += finish.eq(1)
                    m.next = "IDLE"
            if add:
                # (AFFINE) its shift is checked in ADD_RUN's first clock, not from the block
                # RAM's output (an element taken then is dropped with the pipeline)
                with m.State("ADD_PARAMS"):
                    m.d.comb += q_load.eq(1)
                    m.next = "ADD_RUN"
                    if cfg.post_affine:
                        m.d.comb += aff_load.eq(affine)
                # an element a clock from ext into the pipeline, stalled by the writer (until
                # the last, or a stop)
                with m.State("ADD_RUN"):
                    m.d.comb += [run.eq(1), self.ext.ready.eq(adv & ~add_done & ~stopped)]
                    with m.If(self.ext.valid & self.ext.ready):
                        m.d.sync += [p1.valid.eq(1), p1.first.eq(1), p1.last.eq(1),
                                     p1.rowend.eq(0), p1.pad.eq(0),
                                     p1_pa.eq(self.ext.payload.pa),
                                     p1_pb.eq(self.ext.payload.pb),
                                     add_done.eq(self.ext.payload.last)]
                    with m.If(bad_aff):
                        fail(Err.PARAM)     # (the add sequencer sees the unit stop)
                    with m.Elif(self.wr_err_valid):
                        fail(self.wr_err)
                    with m.Elif((add_done | stopped) & empty):
                        m.d.comb += self.wr_flush.eq(1)
                        m.next = "FLUSH"
        return m
