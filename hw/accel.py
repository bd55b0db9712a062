"""The accelerator: controller, line buffer, CONV sequencer, FCU array, accumulators,
post-processing, buses, control registers (:class:`ffacc.hw.csrbank.CsrBank`).

The controller runs one command at a time, beside two background units: the weight loader
(a ``LOADW`` with ``ASYNC``) and the post-processor (a ``POST`` with ``ASYNC``), each with
the waits that keep results those of running the commands in order (see
:mod:`ffacc.firmware.isa` for the commands and :mod:`ffacc.sim.iss` for their exact
semantics):

* **Fetch/decode** (the controller, :class:`ffacc.hw.control.Controller`): the fetch unit
  (:mod:`ffacc.hw.fetch`) reads blocks of instructions in whole beats into a queue; the
  instruction at its head stays there while it runs (without a fetch unit, ``fetch_block =
  0``, the controller reads each one itself). ``SET`` writes the parameter registers, ``INC``
  steps one (read from the register RAM), a command goes to its setup and waits until it
  ends. ``LOOP``/``ENDLOOP`` push and count down frames of the loop stack
  (:mod:`ffacc.hw.loops`); an ``ENDLOOP`` that jumps back restarts the fetch unit at the body.
  An illegal opcode, a bad register, an inconsistent parameter, an address outside
  ``MEM_SIZE``, a bus error, a memory that stops answering or a loop stack over- or underflow
  stops the run with an error code and the failing ``pc`` (never a hang).
* **Setups** (:mod:`ffacc.hw.setup`): each command's checks (generated from the one table
  the ISS checks with, :mod:`ffacc.firmware.checks`) and geometry (sizes and addresses, a
  product at a time on the one multiplier they share), then its unit's command, held until
  the unit is done; a failed check ends the command with ``PARAM``, a unit's error with the
  unit's code.
* **Line buffer** (:class:`ffacc.hw.linebuf.LineBuffer`): ``banks`` (a power of two ≥ row
  engines) × ``L`` byte-wide sub-banks. Input
  row ``g`` (``= channel * LB_PITCH + row - first row``) lives in bank ``g mod banks``; with
  ``LB_PITCH ≡ kernel height (mod banks)`` the ``rows`` (channel, kernel-row) pairs of a pass sit
  in distinct banks, so every engine reads its row in the same cycle; consecutive output rows
  rotate through the banks (circular reuse). Column ``j`` is in sub-bank ``j mod L``, so a block
  of ``L`` samples can start at any column: padding is applied at read time (the zero point
  outside the map), so maps in memory are dense.
* **Loads**: ``LOADA``'s loader (:class:`ffacc.hw.loada.ActivationLoader`) cuts the read's
  beats into line-buffer blocks (a block a clock); ``LOADW``'s loader
  (:class:`ffacc.hw.loadw.WeightLoader`) reads int8 taps and pre-adds them on chip
  (:mod:`ffacc.hw.weights`, an engine a clock) into the weight buffer, one row per (set,
  engine); ``LOADQ``'s (:class:`ffacc.hw.loadq.RecordLoader`) writes the records a word a
  clock. Small parts (``wide_loads = False``) take the reader's byte stream instead.
* **CONV** (:class:`ffacc.hw.conv.ConvSequencer`): given a ``CONV`` by its setup, the
  sequencer runs its passes (while the controller waits): a beat a
  clock through the line buffer into the FCU array, each pass's weights, and the accumulator
  block of each output beat.
* **FCU array**: ``lanes`` fast convolution units (one per output channel; two in MAC mode
  with ``mac_pairs``) share the engines' input rows; a pass loads its weight set in one
  clock. With ``back_to_back`` the FCUs hold three weight banks, used in turn, and each beat
  names its bank: the next pass's engine assignment (into shadow registers) and weights (into
  the bank the pass before the current one used, whose beats are multiplied by then) are set
  up while the current pass streams, and at its last beat the two swap, so a ``CONV``'s passes stream without a gap;
  the output side counts each pass's beats, so it needs no signal from the stream side.
* **Accumulators**: per lane (``acc_lanes``: with ``mac_pairs`` a unit's second MAC channel
  has its own), ``acc_blocks`` words of ``L`` int32, read-modify-write behind the FCUs.
* **Post-processing** (:class:`ffacc.hw.post.PostUnit`): the setup of a ``POST`` or ``ADD``
  hands the post-processor its command: bias, integer
  requantization, clamp (ReLU), 2×2 max-pool or stride subsampling, an element a clock
  through a pipeline into the byte writer (:class:`ffacc.hw.axi.AxiByteWriter`, which sends
  a word while it collects the next). With ``post_overlap`` it has its own read port on the
  accumulators and copies the command, so a ``POST`` with ``ASYNC`` runs beside the next
  lane group's ``CONV`` (into the other half of the accumulators; one into the blocks it
  reads waits). ``ADD`` reads its operands in chunks of 16 and streams them to the same
  pipeline, an element a clock: its two products on its own multipliers, then the
  requantizer.
"""

from functools import reduce
from operator import or_

from amaranth.hdl import Module, Mux, ResetInserter, Shape, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ffacc.firmware.csr import info_word
from ffacc.firmware.isa import QPARAM_WORDS, Err, Op, Reg
from .accum import Accumulators
from .add import AddSequencer
from .axi import (AxiByteReader, AxiByteWriter, axi_master_ports, axil_slave_ports,
                  bus_timer, connect_axi_master)
from .config import AcceleratorConfig
from .control import Controller
from .conv import ConvSequencer, conv_bounds
from .csrbank import CsrBank
from .fcu import FcuArray
from .holds import BackgroundHolds
from .linebuf import LineBuffer
from .loada import ActivationLoader
from .loadq import RecordLoader
from .loadw import WeightLoader
from .post import PostUnit
from .regs import ParamRegs
from .setup import ConvSetup, LoadSetup, PostSetup, RowBlocks, SizeMultiplier, share

__all__ = ["Accelerator"]


def route_reads(m, rd, readers, ctl, wide):
    """The read DMA ``rd`` (:class:`~ffacc.hw.axi.AxiByteReader`) for its clients: the
    request of the unit of ``readers`` (``(unit, words)``) that has a command (one at a time,
    beside a background LOADW's read), else the controller ``ctl``'s fetch (which asks only
    while no unit has a command); the beats to all of them.

    A read's beats wait for the unit that asked for it (``owner``, registered as the DMA
    takes the request; 0: the controller's fetch, which always takes them), not for whichever
    has a command now, so the controller's decode is no part of the bus's handshake path (a
    background LOADW keeps its read after its command has ended). Without ``wide`` loads
    every read is of bytes, which need no ``beat_ready``."""
    owner = Signal(range(len(readers) + 1))
    for k, (unit, words) in enumerate(readers, 1):
        with m.If(unit.cmd.valid):
            m.d.comb += [rd.req_valid.eq(unit.req.valid), rd.req_addr.eq(unit.req.payload.addr),
                         rd.req_len.eq(unit.req.payload.len), rd.req_words.eq(words)]
            with m.If(rd.idle & unit.req.valid):
                m.d.sync += owner.eq(k)
    with m.If(ctl.rd_req.valid):
        m.d.comb += [rd.req_valid.eq(1), rd.req_addr.eq(ctl.rd_req.addr),
                     rd.req_len.eq(ctl.rd_req.len), rd.req_words.eq(ctl.rd_req.words)]
        with m.If(rd.idle):
            m.d.sync += owner.eq(0)
    if wide:
        with m.Switch(owner):
            for k, (unit, _) in enumerate(readers, 1):
                with m.Case(k):
                    m.d.comb += rd.beat_ready.eq(unit.beats.ready)
    m.d.comb += [ctl.rd_beat_valid.eq(rd.beat_valid), ctl.rd_beat_data.eq(rd.beat_data),
                 ctl.rd_out_valid.eq(rd.out_valid), ctl.rd_out_data.eq(rd.out_data),
                 ctl.rd_done.eq(rd.done), ctl.rd_err.eq(rd.err)]


class Accelerator(wiring.Component):
    """The whole accelerator for an :class:`AcceleratorConfig`.

    Ports: ``m_axi_*`` (AXI4 master to memory), ``s_axil_*`` (AXI4-Lite control slave),
    ``irq`` (high while done or error until the next start), ``busy`` and ``error`` (status
    LEDs).
    """

    def __init__(self, config=None):
        self.config = cfg = config or AcceleratorConfig()
        ports = {}
        ports.update(axi_master_ports("m_axi", cfg.bus_bytes))
        ports.update(axil_slave_ports("s_axil"))
        ports["irq"] = Out(1)
        ports["busy"] = Out(1)
        ports["error"] = Out(1)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        fc = cfg.fcu
        b2b = cfg.back_to_back
        NBANK = 3 if b2b else 1         # FCU weight banks (see ConvSequencer)
        pf = cfg.weight_prefetch
        M, T, R, P = fc.ffa.M, fc.subtaps, fc.rows, cfg.lanes
        cb = conv_bounds(cfg)
        nb = cfg.bus_bytes
        # addresses: addr_bits plus an overflow bit; every address sum keeps the overflow bit
        # set when any bit at or above 2**addr_bits (at or beyond any MEM_SIZE) is, so an
        # address that overflows stays out of range and the bus engines refuse it
        # (Err.ADDRESS), as the ISS does, instead of wrapping. Only the CSRs, which read back,
        # hold exactly 2**addr_bits (CsrBank).
        A = cfg.addr_bits
        AW = A + 1

        # ---------------------------------------------------------------- bus engines
        rd = m.submodules.rd = AxiByteReader(nb, cfg.burst_beats, AW,
                                             registered=cfg.read_registers)
        wr = m.submodules.wr = AxiByteWriter(nb, AW)
        # a silent bus stops the engine that waits on it (one count for both engines: with
        # weight_prefetch a background read and POST's writes overlap, so on a memory that
        # serves them in turn their waits add up; separate counts are the fix, but this
        # netlist with two counts trips an internal assertion of yosys's abc9 reintegration)
        bus_timer(m, rd, wr)
        m.d.comb += rd.beat_ready.eq(1)
        connect_axi_master(m, lambda name: getattr(self, f"m_axi_{name}"), rd, wr, nb)

        # ---------------------------------------------------------------- CSRs
        csr = m.submodules.csr = CsrBank(addr_bits=A, ident=cfg.fingerprint(),
                                         info=info_word(cfg), perf_counters=cfg.perf_counters)
        for name, member in csr.signature.members.items():
            if name.startswith("s_axil_"):
                outer, inner = getattr(self, name), getattr(csr, name)
                m.d.comb += inner.eq(outer) if member.flow == In else outer.eq(inner)
        start, prog_base, mem_size = csr.start, csr.prog_base, csr.mem_size
        # the counters a profiler follows per instruction (tb_accel), here at the top
        cycles, stall_cycles = Signal(32), Signal(32)
        m.d.comb += [cycles.eq(csr.cycles), stall_cycles.eq(csr.stall_cycles),
                     # the bus stall comes late in the clock, out of the DMA engines' request
                     # logic: the bank registers it
                     csr.stall.eq(rd.stall | wr.stall),
                     rd.mem_size.eq(mem_size), wr.mem_size.eq(mem_size)]

        # ---------------------------------------------------------------- buffers
        # the weight buffer: one word per set, for every engine its M * T pre-added words for
        # every lane ([engine][lane][m * T + t]): a CONV pass loads all its engines' weights in
        # one clock; LOADW's pre-adder writes an engine a clock (write granularity)
        EW = P * M * T * fc.gweight_shape.width     # an engine's words, every lane
        wbm = m.submodules.wbuf = Memory(shape=unsigned(R * EW), depth=cfg.wb_sets, init=[])
        wb_w = wbm.write_port(granularity=EW)
        wb_r = wbm.read_port(transparent_for=())
        qbm = m.submodules.qbuf = Memory(shape=unsigned(32 * QPARAM_WORDS),
                                         depth=cfg.qb_entries, init=[])
        qb_w = qbm.write_port(granularity=32)
        qb_r = qbm.read_port(transparent_for=())
        # the accumulators (hw/accum.py; mac_pairs: lane P + k unit k's second MAC channel) and
        # the post-processor, with its own read port (post_overlap) beside CONV, else CONV's
        accs = m.submodules.accs = Accumulators(
            lanes=cfg.acc_lanes, L=cfg.L, blocks=cfg.acc_blocks, beat_bits=fc.out_shape.width,
            own_port=cfg.post_overlap, pair_from=P if fc.mac_pairs else None)
        po = m.submodules.post = PostUnit(cfg, latch=cfg.post_overlap)
        m.d.comb += [po.acc_data.eq(accs.post_data), accs.post_addr.eq(po.acc_addr),
                     accs.post_en.eq(po.acc_en), accs.post_reading.eq(po.reading),
                     qb_r.addr.eq(po.q_addr), qb_r.en.eq(po.q_en), po.q_data.eq(qb_r.data),
                     wr.flush.eq(po.wr_flush),
                     po.wr_err_valid.eq(wr.err_valid), po.wr_err.eq(wr.err)]
        if cfg.write_slice:
            # POST's bytes through a two-entry FIFO: its ready is the FIFO's level, not the
            # writer's compare; a flush reaches the writer once the bytes before it do (the
            # writer takes a byte before it acts on a flush), and POST sees the writer idle
            # only with the FIFO empty. A run's start empties it (a byte the writer refused
            # with an error stays behind)
            wslice = SyncFIFO(width=len(po.wr.payload.as_value()), depth=2)
            m.submodules.wslice = ResetInserter(wr.clear)(wslice)
            m.d.comb += [wslice.w_en.eq(po.wr.valid), wslice.w_data.eq(po.wr.payload),
                         po.wr.ready.eq(wslice.w_rdy)]
            m.d.comb += [wr.i.valid.eq(wslice.r_stream.valid),
                         wr.i.payload.eq(wslice.r_stream.payload),
                         wslice.r_stream.ready.eq(wr.i.ready),
                         po.wr_idle.eq(wr.idle & ~wslice.r_rdy)]
        else:
            m.d.comb += [wr.i.valid.eq(po.wr.valid), wr.i.payload.eq(po.wr.payload),
                         po.wr.ready.eq(wr.i.ready), po.wr_idle.eq(wr.idle)]
        # the line buffer: its rows, written by LOADA, read a beat a clock by CONV
        lbuf = m.submodules.lbuf = LineBuffer(
            L=cfg.L, engines=R, banks=cfg.lb_banks, slots=cfg.lb_slots, blocks=cfg.lb_blocks,
            act_shape=fc.act_shape, tags=NBANK,
            col_shape=Shape.cast(range(-cb["col_lo"], cb["n_col"] + 1)))
        # the FCU array (hw/fcu.py; the line buffer's output register is its input register)
        fcus = m.submodules.fcus = FcuArray(fc, lanes=P, banks=NBANK)

        # ---------------------------------------------------------------- parameter registers
        # (hw/regs.py) and the commands' setups (hw/setup.py): each checks its command and
        # works out its unit's command, on the one multiplier they share
        params = m.submodules.params = ParamRegs(cfg)
        rg = {r: params.hot[r.name.lower()] for r in params.hot_regs}
        m.submodules.mul = mul = SizeMultiplier(cfg)
        m.submodules.blocks = blocks = RowBlocks(cfg)
        m.d.comb += blocks.wout.eq(rg[Reg.C_WOUT])
        m.submodules.load_setup = lds = LoadSetup(cfg)
        m.submodules.conv_setup = cvs = ConvSetup(cfg)
        m.submodules.post_setup = ps = PostSetup(cfg)
        setups = {Op.LOADA: lds, Op.LOADW: lds, Op.LOADQ: lds, Op.CONV: cvs, Op.POST: ps}
        if cfg.add_unit:
            setups[Op.ADD] = ps
        clients = [lds, cvs, ps]
        ctl = m.submodules.ctl = Controller(cfg, commands=setups)
        # the register RAM's read port: the setups' cold registers, INC's register
        m.d.comb += params.r_addr.eq(share(m, clients, mul.i, params, blocks.i) | ctl.inc_addr)

        # ---------------------------------------------------------------- the units
        def read_client(unit, words):
            """``unit``'s read ports (:func:`~ffacc.hw.axi.read_client_ports`) on the read DMA:
            its beats (``words``) or bytes and the read's end; while it has a command, its
            request, and the beats wait for it."""
            m.d.comb += [unit.req.ready.eq(rd.idle),
                         unit.beats.valid.eq(rd.beat_valid if words else rd.out_valid),
                         unit.beats.payload.eq(rd.beat_data if words else rd.out_data),
                         unit.rd_done.eq(rd.done), unit.rd_err.eq(rd.err)]
            return unit, words

        def run(o, o_err, unit, err=None):
            """A setup's command ``o`` to ``unit``: the unit's error back to ``o_err``
            (``err``: the unit's, in Err form)."""
            wiring.connect(m, o, unit.cmd)
            m.d.comb += o_err.eq(unit.err if err is None else err)

        # LOADA: the loader's reads into the line buffer (in whole beats through its row
        # packer, a block a clock; on the smallest parts the reader's byte stream)
        loada = m.submodules.loada = ActivationLoader(cfg, lbuf.w.payload.shape())
        wiring.connect(m, loada.lb, lbuf.w)
        # LOADQ: the loader's read into the parameter buffer, a word (a record's slice) a clock
        loadq = m.submodules.loadq = RecordLoader(cfg)
        qw = loadq.w.payload
        m.d.comb += [qb_w.addr.eq(qw.entry), qb_w.data.eq(qw.word.replicate(QPARAM_WORDS)),
                     qb_w.en.eq(loadq.w.valid << qw.slot)]
        # LOADW: the loader's read through its pre-adder into the weight buffer, an engine's
        # words (every lane) a clock; with weight_prefetch and ASYNC in the background (its
        # read error is kept, with the LOADW's pc, until FETCH stops the run with it)
        loadw = m.submodules.loadw = WeightLoader(cfg)
        lw_pc = Signal(AW)
        lww = loadw.w.payload
        m.d.comb += [loadw.clear.eq(start),
                     wb_w.addr.eq(lww.set), wb_w.data.eq(lww.data.replicate(R)),
                     wb_w.en.eq(loadw.w.valid << lww.engine)]
        # CONV: the sequencer's passes' beats through the line buffer into the FCUs, their
        # weights (a pass's setup reads its set's word, all engines, and writes it to the FCUs
        # a clock later; a set a background LOADW is loading is read when the load is over),
        # and where their outputs accumulate
        seq = m.submodules.conv = ConvSequencer(cfg, lbuf.r.payload.shape())
        wiring.connect(m, seq.lb, lbuf.r)
        m.d.comb += [csr.streaming.eq(seq.streaming), csr.slots.eq(seq.slots),
                     lbuf.width.eq(rg[Reg.A_W]), lbuf.zero.eq(rg[Reg.C_ZX][:8]),
                     fcus.mac.eq(cvs.mac),
                     fcus.i.valid.eq(lbuf.o.valid), fcus.i.payload.x.eq(lbuf.o.payload.x),
                     fcus.i.payload.bank.eq(lbuf.o.payload.tag if b2b else 0),
                     wb_r.addr.eq(seq.w_set), loadw.probe.eq(seq.w_set),
                     seq.w_set_busy.eq(loadw.probe_busy),
                     fcus.w_en.eq(seq.w_write), fcus.w_data.eq(wb_r.data),
                     fcus.w_bank.eq(seq.w_bank if b2b else 0)]
        # an FCU output beat's block is named a clock before the beat (the FCU's o_next; the
        # sequencer's output counters run a clock ahead with it): the accumulators read the
        # word then and write it back, plus the beat, as it arrives
        m.d.comb += [seq.o_next.eq(fcus.o_next), seq.acc_busy.eq(accs.busy),
                     accs.nxt.valid.eq(seq.acc_valid), accs.nxt.payload.addr.eq(seq.acc_addr),
                     accs.nxt.payload.first.eq(seq.acc_first), accs.beat.eq(fcus.o),
                     accs.beat_pair.eq(fcus.o_pair)]
        # POST and ADD: the post-processor's command (with post_overlap the unit copies it as
        # it takes it, and a POST with ASYNC runs in the background)
        po_pending = Signal()       # a command given or running
        m.d.comb += [po_pending.eq(ps.o.valid | po.busy), ps.unit_busy.eq(po.busy)]
        if cfg.post_overlap:
            m.d.comb += [cvs.reading.busy.eq(po_pending), cvs.reading.lo.eq(po.acc_lo),
                         cvs.reading.hi.eq(po.acc_hi)]
        readers = [read_client(loada, cfg.wide_loads), read_client(loadq, cfg.wide_loads),
                   read_client(loadw, cfg.wide_loads)]
        run(lds.loada, lds.loada_err, loada)
        run(lds.loadq, lds.loadq_err, loadq)
        run(lds.loadw, lds.loadw_err, loadw)
        run(cvs.o, cvs.o_err, seq, err=Mux(seq.err, Err.PARAM, 0))
        run(ps.o, ps.o_err, po)
        # ADD (hw/add.py): its operands' reads, its elements to the post-processor
        if cfg.add_unit:
            addu = m.submodules.add = AddSequencer(cfg)
            wiring.connect(m, addu.o, po.ext)
            readers.append(read_client(addu, cfg.wide_loads))
            wiring.connect(m, ps.add_o, addu.cmd)
            m.d.comb += [ps.add_err.eq(addu.err), addu.po_running.eq(po_pending),
                         addu.po_err.eq(po.err)]
        route_reads(m, rd, readers, ctl, cfg.wide_loads)

        # ---------------------------------------------------------------- controller
        # (hw/control.py): fetch, decode, the commands to their setups, the run's end
        pc = Signal(AW)                 # the instruction's address (a profiler follows it)
        op, flags = ctl.instr[0:8], ctl.instr[8:16]
        m.d.comb += [pc.eq(ctl.pc), ctl.start.eq(start), ctl.prog_base.eq(prog_base),
                     ctl.mem_size.eq(mem_size), csr.decoded.eq(ctl.decoded),
                     csr.busy.eq(ctl.busy), csr.done.eq(ctl.done), csr.error.eq(ctl.error),
                     csr.err_code.eq(ctl.err_code), csr.err_pc.eq(ctl.err_pc),
                     self.irq.eq(ctl.done | ctl.error), self.busy.eq(ctl.busy),
                     self.error.eq(ctl.error), wr.clear.eq(ctl.clear), ps.clear.eq(ctl.clear)]
        # SET and INC on the parameter registers
        wiring.connect(m, ctl.reg_w, params.w)
        m.d.comb += [params.chk_reg.eq(ctl.chk_reg), params.chk_value.eq(ctl.chk_value),
                     ctl.chk_wide.eq(params.chk_wide), ctl.reg_data.eq(params.r_data)]
        # the commands to their setups (one at a time: the one for the op runs, and ends it)
        for s in clients:
            ops = [o for o, c in setups.items() if c is s]
            m.d.comb += [s.cmd.valid.eq(ctl.run.valid & op.matches(*ops)),
                         s.regs.eq(params.hot), s.cmd.payload.flags.eq(flags)]
        m.d.comb += [lds.cmd.payload.op.eq(op), ps.cmd.payload.add.eq(op == Op.ADD),
                     ps.cmd.payload.pc.eq(ctl.pc),
                     ctl.run.ready.eq(reduce(or_, (s.cmd.ready for s in clients))),
                     ctl.run_err.eq(reduce(or_, (s.err for s in clients)))]
        with m.If(loadw.cmd.valid & loadw.cmd.ready):
            m.d.sync += lw_pc.eq(ctl.pc)        # a background read's error names it
        # the background units: what an instruction waits for, their errors
        holds = m.submodules.holds = BackgroundHolds(cfg)
        m.d.comb += [holds.next_op.eq(ctl.next_op), holds.peek_op.eq(ctl.peek_op),
                     holds.lw_busy.eq(loadw.bg_busy if pf else 0), holds.po_busy.eq(po_pending),
                     holds.q_dst.eq(rg[Reg.Q_DST]), holds.q_count.eq(rg[Reg.Q_COUNT]),
                     holds.q_lo.eq(po.q_lo), holds.q_hi.eq(po.q_hi),
                     ctl.hold.eq(holds.hold), ctl.peek_hold.eq(holds.peek_hold),
                     ctl.fetch_hold.eq(loadw.bg_reading | (loadw.bg_err != 0))]
        # a background LOADW's read failed: the run stops at that LOADW; a background POST
        # failed: at that POST
        failed = []                 # (condition, error, pc), the first one first
        if pf:
            failed.append((loadw.bg_err != 0, loadw.bg_err, lw_pc))
        if cfg.post_overlap:
            failed.append((ps.background & ~po_pending & (po.err != 0), po.err, ps.bg_pc))
        for k, (cond, err, at) in enumerate(failed):
            with (m.Elif if k else m.If)(cond):
                m.d.comb += [ctl.bg_err.eq(err), ctl.bg_pc.eq(at)]
        # a stopping run waits until no background read is left on the bus (the next run's
        # fetch would take its beats) and the post-processor is done (a background POST, or
        # the elements an ADD gave it); a background POST came first: its error is the run's
        m.d.comb += ctl.bg_busy.eq((loadw.bg_reading if pf else 0)
                                   | (po_pending if cfg.post_overlap or cfg.add_unit else 0))
        if cfg.post_overlap:
            m.d.comb += [ctl.late_err.eq(Mux(ps.background, po.err, 0)),
                         ctl.late_pc.eq(ps.bg_pc)]
        if cfg.add_unit:
            m.d.comb += po.stop.eq(ctl.fail)    # an ADD's elements end with the run
        return m
