"""The accelerator: controller, line buffer, CONV sequencer, FCU array, accumulators,
post-processing, buses, control registers (:class:`ffacc.hw.csrbank.CsrBank`).

The controller runs one command at a time, beside two background units: the weight loader
(a ``LOADW`` with ``ASYNC``) and the post-processor (a ``POST`` with ``ASYNC``), each with
the waits that keep results those of running the commands in order (see
:mod:`ffacc.firmware.isa` for the commands and :mod:`ffacc.sim.iss` for their exact
semantics):

* **Fetch/decode**: the fetch unit (:mod:`ffacc.hw.fetch`) reads blocks of instructions in
  whole beats into a queue; the instruction at its head stays there while it runs (without
  a fetch unit, ``fetch_block = 0``, the controller reads each one itself). ``SET`` writes the
  parameter registers, ``INC`` steps one (read from the register RAM), commands start their
  sequencer. ``LOOP``/``ENDLOOP`` push and count down frames of the loop stack
  (:mod:`ffacc.hw.loops`); an ``ENDLOOP`` that jumps back restarts the fetch unit at the body.
  An illegal opcode, a bad register, an inconsistent parameter, an address outside
  ``MEM_SIZE``, a bus error, a memory that stops answering or a loop stack over- or underflow
  stops the run with an error code and the failing ``pc`` (never a hang).
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
* **CONV** (:class:`ffacc.hw.conv.ConvSequencer`): the controller checks a ``CONV`` and works
  out its geometry, then the sequencer runs its passes (while the controller waits): a beat a
  clock through the line buffer into the FCU array, each pass's weights, and the accumulator
  block of each output beat.
* **FCU array**: ``lanes`` fast convolution units (one per output channel) share the engines'
  input rows; a pass loads its weight set in one clock. With ``back_to_back`` the FCUs
  hold three weight banks, used in turn, and each beat names its bank: the next pass's engine
  assignment (into shadow registers) and weights (into the bank the pass before the current
  one used, whose beats are multiplied by then) are set up while the current pass streams, and
  at its last beat the two swap, so a ``CONV``'s passes stream without a gap;
  the output side counts each pass's beats, so it needs no signal from the stream side.
* **Accumulators**: per lane, ``acc_blocks`` words of ``L`` int32, read-modify-write behind the
  FCUs.
* **Post-processing** (:class:`ffacc.hw.post.PostUnit`): the controller checks a ``POST``
  and works out its geometry, then hands the post-processor a command: bias, integer
  requantization, clamp (ReLU), 2×2 max-pool or stride subsampling, an element a clock
  through a pipeline into the byte writer (:class:`ffacc.hw.axi.AxiByteWriter`, which sends
  a word while it collects the next). With ``post_overlap`` it has its own read port on the
  accumulators and copies the command, so a ``POST`` with ``ASYNC`` runs beside the next
  lane group's ``CONV`` (into the other half of the accumulators; one into the blocks it
  reads waits). ``ADD`` reads its operands in chunks of 16 and streams them to the same
  pipeline, an element a clock: its two products on its own multipliers, then the
  requantizer.
"""

from contextlib import contextmanager
from functools import partial

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Shape, Signal, Value, unsigned
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ffacc.firmware.checks import flag_bits, product_operands, rtl_ok
from ffacc.firmware.csr import info_word
from ffacc.firmware.isa import (INSTR_BYTES, LEVEL_REGS, LOAD_LEVEL_REGS, LOOP_BITS,
                                MAX_LEVELS, QPARAM_WORDS, WAITS_FOR_LOADER, WAITS_FOR_POST, Err,
                                Op, PostFlag, Reg, reg_bits)
from .axi import (AxiByteReader, AxiByteWriter, axi_master_ports, axil_slave_ports,
                  bus_timer, connect_axi_master, read_ended)
from .config import AcceleratorConfig
from .conv import ConvSequencer, conv_bounds
from .csrbank import CsrBank
from .fcu import FcuArray
from .fetch import InstructionFetch
from .loops import LoopStack
from .post import PostUnit
from .accum import Accumulators
from .add import AddSequencer
from .regs import ParamRegs
from .linebuf import LineBuffer
from .loada import ActivationLoader
from .loadq import RecordLoader
from .loadw import WeightLoader
from .logic import act_value, addr_clamp, ge_const
from .weights import set_bytes

__all__ = ["Accelerator"]



def narrow_dsp_product(a, b, dsp_bits, limit_bits=None):
    """``a * b`` (unsigned) with one ``dsp_bits`` x ``dsp_bits`` hard multiplier for the low
    parts and the few upper bits as shifted additions in logic: on the iCE40 (16x16 SB_MAC16)
    an 18x18 product takes one DSP instead of three. The plain product when the operands fit.

    With ``limit_bits <= dsp_bits`` the product need only be exact below ``2**limit_bits``, a
    larger one showing some bit at or above it (the controller's address and size checks
    want no more): then an upper operand bit with a non-zero other operand makes the product
    at least ``2**dsp_bits``, and one flag above the low product says so, with no cross
    terms."""
    if max(len(a), len(b)) <= dsp_bits:
        return a * b
    lo = dsp_bits
    a_l, a_h, b_l, b_h = a[:lo], a[lo:], b[:lo], b[lo:]
    if limit_bits is not None and limit_bits <= lo:
        big = (a_h.any() & b.any()) | (b_h.any() & a.any())
        return Cat(a_l * b_l, big)
    # a*b = a_l*b_l + 2**lo * (a_h*b + b_h*a_l)
    cross = Const(0, 1)
    for i in range(len(a_h)):
        cross = cross + (Mux(a_h[i], b, 0) << i)
    for i in range(len(b_h)):
        cross = cross + (Mux(b_h[i], a_l, 0) << i)
    return a_l * b_l + (cross << lo)


def post_registers(cfg, pp, rg, is_add, s8, flags):
    """The assignments of the post-processor's command fields ``pp`` that are parameter
    registers (``rg``, the hot ones) or instruction ``flags``: a POST's sizes, records,
    levels and codes, an ADD's requantizer (``s8``: an 8-bit field's activation value)."""
    out = [pp.lanes.eq(rg[Reg.C_LANES]), pp.ny.eq(rg[Reg.C_NY]), pp.wout.eq(rg[Reg.C_WOUT]),
           pp.acc0.eq(rg[Reg.C_ACC]), pp.q0.eq(rg[Reg.O_Q]), pp.pitch.eq(rg[Reg.O_W])]
    if cfg.add_unit:
        dsz, dcl = rg[Reg.D_SZ], rg[Reg.D_CLAMP]
        out += [pp.add.eq(is_add), pp.q.mult.eq(rg[Reg.D_M]), pp.q.shift.eq(dsz[:8]),
                pp.q.zp.eq(s8(dsz[24:32])), pp.q.lo.eq(s8(dcl[:8])), pp.q.hi.eq(s8(dcl[8:16]))]
    if cfg.act_codes:
        out += [pp.codes.eq(flags[PostFlag.CODES.bit_length() - 1]),
                pp.levels.n.eq(rg[Reg.O_NLEV]),
                pp.levels.t.eq(Cat(*(rg[r] for r in LEVEL_REGS[:MAX_LEVELS // 4]))
                               [:8 * (MAX_LEVELS - 1)]),
                pp.levels.l.eq(Cat(*(rg[r] for r in LEVEL_REGS[MAX_LEVELS // 4:])))]
    return out


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
        s = fc.ffa
        L, M, T, R, P = s.L, s.M, fc.subtaps, fc.rows, cfg.lanes
        B = cfg.lb_banks
        N = fc.piece_taps
        cb = conv_bounds(cfg)
        D_ffa = cb["D"]                 # leading output blocks of a CONV row
        gw = fc.gweight_shape.width
        act = fc.act_shape
        nb = cfg.bus_bytes

        def ax(name):
            return getattr(self, f"m_axi_{name}")

        # addresses: addr_bits plus an overflow bit; every address sum keeps the overflow bit
        # set when any bit at or above 2**addr_bits (at or beyond any MEM_SIZE) is, so an
        # address that overflows stays out of range and the bus engines refuse it
        # (Err.ADDRESS), as the ISS does, instead of wrapping. Only the CSRs, which read back,
        # hold exactly 2**addr_bits (CsrBank).
        A = cfg.addr_bits
        AW = A + 1

        aclamp = partial(addr_clamp, addr_bits=A)

        def whole_beats(n):
            """A read length of ``n`` bytes in whole bus beats (wide loads)."""
            return aclamp(n + (nb - 1)) & ~(nb - 1)

        # ---------------------------------------------------------------- bus engines
        rd = m.submodules.rd = AxiByteReader(nb, cfg.burst_beats, AW)
        wr = m.submodules.wr = AxiByteWriter(nb, AW)
        # a silent bus stops the engine that waits on it (one count for both engines: with
        # weight_prefetch a background read and POST's writes overlap, so on a memory that
        # serves them in turn their waits add up; separate counts are the fix, but this
        # netlist with two counts trips an internal assertion of yosys's abc9 reintegration)
        bus_timer(m, rd, wr)
        m.d.comb += rd.beat_ready.eq(1)
        # the fetch unit (fetch_block > 0), or, on the smallest parts, the controller reads
        # each instruction itself, a byte a clock (FETCH/FETCH_DATA, pc += 8 in NEXT)
        fu = None
        if cfg.fetch_block:
            fu = m.submodules.fetch = InstructionFetch(block=cfg.fetch_block, bus_bytes=nb,
                                                       addr_bits=AW)
            m.d.comb += [fu.beat_valid.eq(rd.beat_valid), fu.beat_data.eq(rd.beat_data),
                         fu.done.eq(rd.done), fu.rd_err.eq(rd.err)]
        # hardware loops (loop_depth > 0, which needs the fetch unit)
        ls = None
        if cfg.loop_depth:
            ls = m.submodules.loops = LoopStack(depth=cfg.loop_depth, addr_bits=AW)
        connect_axi_master(m, ax, rd, wr, nb)

        # ---------------------------------------------------------------- CSRs
        busy = Signal()
        done = Signal()
        error = Signal()
        err_code = Signal(range(max(Err) + 1))
        err_pc = Signal(AW)
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
                     csr.busy.eq(busy), csr.done.eq(done), csr.error.eq(error),
                     csr.err_code.eq(err_code), csr.err_pc.eq(err_pc),
                     # the bus stall comes late in the clock, out of the DMA engines' request
                     # logic: the bank registers it
                     csr.stall.eq(rd.stall | wr.stall)]
        if fu:
            m.d.comb += fu.mem_size.eq(mem_size)
        m.d.comb += [rd.mem_size.eq(mem_size), wr.mem_size.eq(mem_size),
                     self.irq.eq(done | error), self.busy.eq(busy), self.error.eq(error)]

        # ---------------------------------------------------------------- parameter registers
        # (hw/regs.py): a cold register is read by presenting its index (`cold_addr`) in the
        # state before the one that needs it (`cold`); the hot ones (`rg`) are flip-flops
        rbits = reg_bits(cfg)
        params = m.submodules.params = ParamRegs(cfg)
        rg = {r: params.hot[r.name.lower()] for r in params.hot_regs}

        def cold_addr(r):
            m.d.comb += params.r_addr.eq(r)

        cold = params.cold

        def checked(op, stage, **given):
            """The condition that ``op``'s checks of ``stage`` hold, generated from the table
            (:mod:`ffacc.firmware.checks`) the ISS checks with: hot registers and the
            instruction's flags by name, cold registers and derived values as ``given``."""
            return rtl_ok(op, stage, cfg, partial(check_env, given))

        def operands(op, name, **given):
            """Derived value ``name`` of ``op``'s product operands (for ``product``)."""
            return product_operands(op, name, cfg, partial(check_env, given))

        def check_env(given, name):
            if name in given:
                return given[name]
            if name in flag_bits():
                return cmd_flags[flag_bits()[name].bit_length() - 1]
            if Reg[name] in rg:
                return rg[Reg[name]]
            raise ValueError(f"a check reads register {name}, which is cold: the state that "
                             "checks it gives its value")

        # ---------------------------------------------------------------- buffers
        # the weight buffer: one word per set, for every engine its M * T pre-added words for
        # every lane ([engine][lane][m * T + t]): a CONV pass loads all its engines' weights in
        # one clock; LOADW's pre-adder writes an engine a clock (write granularity)
        MT = M * T
        EW = P * MT * gw                # an engine's words, every lane
        wbm = m.submodules.wbuf = Memory(shape=unsigned(R * EW), depth=cfg.wb_sets, init=[])
        wb_w = wbm.write_port(granularity=EW)
        wb_r = wbm.read_port(transparent_for=())
        qbm = m.submodules.qbuf = Memory(shape=unsigned(32 * QPARAM_WORDS),
                                         depth=cfg.qb_entries, init=[])
        qb_w = qbm.write_port(granularity=32)
        qb_r = qbm.read_port(transparent_for=())
        # the accumulators (hw/accum.py) and the post-processor; with post_overlap it has its
        # own read port (a copy of the accumulators' block RAMs) and runs beside CONV, else it
        # shares CONV's
        accs = m.submodules.accs = Accumulators(lanes=P, L=L, blocks=cfg.acc_blocks,
                                                beat_bits=fc.out_shape.width,
                                                own_port=cfg.post_overlap)
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

        # ---------------------------------------------------------------- FCU array
        # (hw/fcu.py; the line buffer's output register is its input register)
        fcus = m.submodules.fcus = FcuArray(fc, lanes=P, banks=NBANK)
        conv_mac = Signal()
        m.d.comb += fcus.mac.eq(conv_mac)

        # ---------------------------------------------------------------- controller state
        pc = Signal(AW)
        # the instruction stays at the head of the fetch unit's queue while it runs: it is
        # taken (fu.o.ready) when it is done, in NEXT or in DECODE for a SET or NOP. FETCH
        # copies it into ``instr``, so the decode starts at a flip-flop, not behind the
        # queue's LUT-RAM read (that was the ULX3S's critical path)
        instr = Signal(64, reset_less=True)
        op = instr[0:8]
        flags = instr[8:16]
        ireg = instr[16:24]
        rsvd = instr[24:32]
        imm = instr[32:64]
        cmd_flags = flags          # the instruction is held while its command runs
        fail = Signal()
        fail_code = Signal(range(max(Err) + 1))
        m.d.comb += fail.eq(0)

        # a SET value wider than its register (reg_bits); set_val is what SET or INC writes
        # (the check looks at the immediate, so INC's adder is not in front of it)
        set_val = Signal(34)
        set_wide = params.chk_wide
        m.d.comb += [set_val.eq(imm), params.chk_reg.eq(ireg), params.chk_value.eq(imm)]

        def write_reg():
            """Parameter register ``ireg`` = ``set_val`` (a SET checked, an INC modulo the
            register's width), then the next instruction."""
            m.d.comb += [params.w.valid.eq(1), params.w.payload.reg.eq(ireg),
                         params.w.payload.value.eq(set_val)]
            take_next()

        def take_next():
            """A SET or NOP is done in DECODE: take it from the queue (the unit) or go
            through NEXT (pc += 8)."""
            if fu:
                m.d.comb += fu.o.ready.eq(1)
                m.next = "FETCH"
            else:
                m.next = "NEXT"

        fail_pc = Signal(AW)
        m.d.comb += fail_pc.eq(pc)

        def failure(code):
            m.d.comb += [fail.eq(1), fail_code.eq(code)]
            m.next = "IDLE"

        def read_client(unit, words):
            """Connect ``unit``'s read ports (:func:`~ffacc.hw.axi.read_client_ports`) to the
            read DMA: its beats (``words``) or bytes, and the read's end."""
            m.d.comb += [unit.req.ready.eq(rd.idle),
                         unit.beats.valid.eq(rd.beat_valid if words else rd.out_valid),
                         unit.beats.payload.eq(rd.beat_data if words else rd.out_data),
                         unit.rd_done.eq(rd.done), unit.rd_err.eq(rd.err)]

        @contextmanager
        def run_unit(unit, words):
            """``unit`` runs its command (held meanwhile) on the read DMA, which takes its
            request and holds its beats (``words``) for it; in the clock it takes the command,
            its error stops the run, else the body runs."""
            m.d.comb += [unit.cmd.valid.eq(1), rd.req_valid.eq(unit.req.valid),
                         rd.req_addr.eq(unit.req.payload.addr),
                         rd.req_len.eq(unit.req.payload.len), rd.req_words.eq(words),
                         rd.beat_ready.eq(unit.beats.ready)]
            with m.If(unit.cmd.ready):
                with m.If(unit.err != 0):
                    failure(unit.err)
                with m.Else():
                    yield

        def rd_request(addr, length, words=False):
            """Request a read (in whole beats with ``words``); true: the reader takes it."""
            m.d.comb += [rd.req_valid.eq(1), rd.req_addr.eq(addr), rd.req_len.eq(length),
                         rd.req_words.eq(words)]
            return rd.idle

        # ---- shared registers: a load's first address and its length
        addr_a = Signal(AW)
        nbytes = Signal(AW)

        # Loop counters are as wide as the command checks bound them (each bound below follows
        # from a check that passes before the counter runs):
        #   W <= lb_width; (nch-1)*pitch + nr <= lb_rows (LOADA); nch <= lb_rows and
        #   kh, kw <= max_kernel (CONV); wout <= acc_blocks*L, hence ceil(wout/L) <=
        #   acc_blocks; ny*ceil(wout/L) <= acc_blocks; C_WSET < wb_sets; step <= 255
        n_blk, n_pairs, n_kw = cb["n_blk"], cb["n_pairs"], cb["n_kw"]

        # the line buffer: its rows, written by LOADA, read a beat a clock by CONV
        lbuf = m.submodules.lbuf = LineBuffer(
            L=L, engines=R, banks=B, slots=cfg.lb_slots, blocks=cfg.lb_blocks, act_shape=act,
            col_shape=Shape.cast(range(-cb["col_lo"], cb["n_col"] + 1)), tags=NBANK)

        # ---- LOADA state
        la_hw = Signal(AW)
        la_contig = Signal()

        # ---- CONV: the geometry the controller works out for the sequencer
        kh, kw = rg[Reg.C_KH], rg[Reg.C_KW]
        cv_npairs = Signal(range(n_pairs + 1))
        cv_wob = Signal(range(cfg.acc_blocks + 1))
        cv_t = Signal(range(L * cfg.acc_blocks + L + 1))
        cv_pieces = Signal(range(cfg.max_kernel + 1))
        cv_lmt = Signal(16)
        cv_t2 = Signal(range(n_kw + 1))
        cv_bk = Signal(range(n_blk + 1))
        cv_D = Signal(range(D_ffa + 1))

        # ---- POST / ADD state: the geometry the post-processor's command carries
        po_lanebase = Signal(AW)
        po_step = Signal(8)
        po_cstride = Signal(rbits[Reg.O_CSTRIDE])
        # one small multiplier for every address/size product (sequenced through micro-states
        # so no command needs a DSP of its own), with registered operands: a state using it
        # presents the operands in its first cycle and acts on the product in its second, so
        # neither the operand selection nor what follows the product shares the multiplier's
        # clock cycle ...
        # Its operands are the size registers below and the controller's own small counters:
        # 17 bits (A_PITCH, O_W, O_ROW0) in every configuration, one DSP on the ECP5's 18x18
        # and two cross terms fewer around the iCE40's 16x16 than 18 bits would take.
        SW = max(rbits[r] for r in (Reg.A_CH, Reg.A_H, Reg.A_HB0, Reg.A_NR, Reg.A_W, Reg.A_PITCH,
                                    Reg.LB_PITCH, Reg.W_DST, Reg.W_COUNT, Reg.Q_COUNT, Reg.C_KH,
                                    Reg.C_WSET, Reg.C_LANES, Reg.C_NY, Reg.O_ROW0, Reg.O_W))
        smul_a = Signal(unsigned(SW))
        smul_b = Signal(unsigned(SW))
        smul_p = Signal(unsigned(2 * SW))
        smul_ph = Signal()
        # every product with an operand at or above 2**dsp_bits goes through aclamp or tmp_of
        # (exact below 2**A or 2**tmp_k, a sticky bit above); the others are exact
        tmp_k = max(cfg.lb_rows, cfg.acc_blocks).bit_length()
        m.d.comb += smul_p.eq(narrow_dsp_product(smul_a, smul_b, cfg.dsp_bits,
                                                 limit_bits=max(A, tmp_k)))

        @contextmanager
        def product(a, b):
            for v in (a, b):
                if isinstance(v, int):
                    assert 0 <= v < 1 << SW, v
                else:
                    v = Value.cast(v)
                    assert len(v) - v.shape().signed <= SW, (v, SW)
            m.d.sync += [smul_a.eq(a), smul_b.eq(b), smul_ph.eq(~smul_ph)]
            with m.If(smul_ph):
                yield smul_p

        # a product the next state checks against lb_rows or acc_blocks: its low bits plus a
        # sticky bit for any above, so a product too large for either stays too large
        tmp = Signal(tmp_k + 1)

        def tmp_of(p):
            return Cat(p[:tmp_k], p[tmp_k:].any())

        po_sblk = Signal(range(256))                 # step // L, step <= 255
        po_ssub = Signal(9)
        po_rowstep = Signal(range(cfg.acc_blocks + 1))

        s8 = partial(act_value, signed=fc.act_signed)   # an 8-bit register field's value

        # the post-processor's command: the geometry above and the parameter registers (with
        # post_overlap the unit copies them as it takes the command; otherwise the controller
        # holds them, waiting in PO_WAIT); ADD's requantizer from its registers
        po_valid = Signal()
        po_async = Signal()         # the last POST ran in the background: FETCH reports its error
        po_pc = Signal(AW)
        po_pending = Signal()       # a command given or running
        m.d.comb += po_pending.eq(po_valid | po.busy)
        pp = po.cmd.payload
        m.d.comb += [po.cmd.valid.eq(po_valid), pp.pool.eq(cmd_flags[0]), pp.step.eq(po_step),
                     pp.sblk.eq(po_sblk), pp.ssub.eq(po_ssub), pp.wob.eq(cv_wob),
                     pp.rowstep.eq(po_rowstep), pp.acc1.eq(rg[Reg.C_ACC] + tmp),
                     pp.base.eq(po_lanebase),
                     *post_registers(cfg, pp, rg, op == Op.ADD, s8, cmd_flags)]
        with m.If(po.cmd.ready):
            m.d.sync += po_valid.eq(0)
        # O_CSTRIDE, a cold register: copied in PO_M2 for a unit that copies the command,
        # else read in place (PO_WAIT presents it)
        m.d.comb += pp.cstride.eq(po_cstride if cfg.post_overlap else cold(Reg.O_CSTRIDE))

        # the ADD sequencer (hw/add.py): its operands' reads, its elements to the
        # post-processor
        if cfg.add_unit:
            addu = m.submodules.add = AddSequencer(cfg)
            wiring.connect(m, addu.o, po.ext)
            read_client(addu, words=False)
            m.d.comb += [addu.po_running.eq(po_pending), addu.po_err.eq(po.err)]

        # ---------------------------------------------------------------- CONV sequencer
        # a checked CONV (CV_M4 gives it, CV_RUN waits): its passes' beats through the line
        # buffer into the FCUs, their weights, and where their outputs accumulate
        seq = m.submodules.conv = ConvSequencer(cfg, lbuf.r.payload.shape())
        wiring.connect(m, seq.lb, lbuf.r)
        sc = seq.cmd.payload
        m.d.comb += [sc.npairs.eq(cv_npairs), sc.pieces.eq(cv_pieces), sc.mac.eq(conv_mac),
                     sc.D.eq(cv_D), sc.wob.eq(cv_wob), sc.bk.eq(cv_bk), sc.slots.eq(cv_lmt),
                     sc.overwrite.eq(~cmd_flags[0]), sc.wset.eq(rg[Reg.C_WSET]), sc.kh.eq(kh),
                     sc.pt.eq(rg[Reg.C_PT]), sc.pl.eq(rg[Reg.C_PL]), sc.ny.eq(rg[Reg.C_NY]),
                     sc.acc.eq(rg[Reg.C_ACC]), sc.y0.eq(cold(Reg.C_Y0)), sc.h.eq(rg[Reg.A_H]),
                     sc.hb0.eq(rg[Reg.A_HB0]), sc.pitch.eq(rg[Reg.LB_PITCH]),
                     csr.streaming.eq(seq.streaming), csr.slots.eq(seq.slots),
                     lbuf.width.eq(rg[Reg.A_W]), lbuf.zero.eq(rg[Reg.C_ZX][:8])]
        m.d.comb += [fcus.i.valid.eq(lbuf.o.valid), fcus.i.payload.x.eq(lbuf.o.payload.x),
                     fcus.i.payload.bank.eq(lbuf.o.payload.tag if b2b else 0)]

        # ---------------------------------------------------------------- accumulate
        # an FCU output beat's block is named a clock before the beat (the FCU's o_next; the
        # sequencer's output counters run a clock ahead with it): the accumulators read the
        # word then and write it back, plus the beat, as it arrives
        m.d.comb += [seq.o_next.eq(fcus.o_next), seq.acc_busy.eq(accs.busy),
                     accs.nxt.valid.eq(seq.acc_valid), accs.nxt.payload.addr.eq(seq.acc_addr),
                     accs.nxt.payload.first.eq(seq.acc_first)]
        m.d.comb += accs.beat.eq(fcus.o)

        # ---------------------------------------------------------------- activation loading
        # LOADA: the loader's reads into the line buffer (in whole beats through its row
        # packer, a block a clock; on the smallest parts the reader's byte stream)
        loada = m.submodules.loada = ActivationLoader(cfg, lbuf.w.payload.shape())
        wiring.connect(m, loada.lb, lbuf.w)
        read_client(loada, cfg.wide_loads)

        # ---------------------------------------------------------------- record loading
        # LOADQ: the loader's read into the parameter buffer, a word (a record's slice) at a
        # time
        loadq = m.submodules.loadq = RecordLoader(cfg)
        qw = loadq.w.payload
        read_client(loadq, cfg.wide_loads)
        m.d.comb += [qb_w.addr.eq(qw.entry),
                     qb_w.data.eq(qw.word.replicate(QPARAM_WORDS)),
                     qb_w.en.eq(loadq.w.valid << qw.slot)]

        # ---------------------------------------------------------------- weight loading
        # LOADW: the loader's read through its pre-adder into the weight buffer, an engine's
        # words (every lane) a clock; with weight_prefetch and ASYNC in the background (its
        # read error is kept, with the LOADW's pc, until FETCH stops the run with it)
        loadw = m.submodules.loadw = WeightLoader(cfg)
        lw_rows = Signal(range(cfg.wb_sets * R + 1))
        lw_pc = Signal(AW)
        lww = loadw.w.payload
        read_client(loadw, cfg.wide_loads)
        m.d.comb += [loadw.clear.eq(start),
                     wb_w.addr.eq(lww.set), wb_w.data.eq(lww.data.replicate(R)),
                     wb_w.en.eq(loadw.w.valid << lww.engine)]
        with m.If(loadw.bg_reading):
            m.d.comb += rd.beat_ready.eq(loadw.beats.ready)
        # a pass's setup reads its set's word (all engines) and writes it to the FCUs a clock
        # later; a set a background LOADW is loading is read when the load is over
        m.d.comb += [wb_r.addr.eq(seq.w_set), loadw.probe.eq(seq.w_set),
                     seq.w_set_busy.eq(loadw.probe_busy)]
        m.d.comb += [fcus.w_en.eq(seq.w_write), fcus.w_data.eq(wb_r.data),
                     fcus.w_bank.eq(seq.w_bank if b2b else 0)]

        # ---------------------------------------------------------------- main FSM
        with m.FSM(name="ctl"):
            with m.State("IDLE"):
                if fu:
                    m.d.comb += [fu.base.eq(prog_base), fu.start.eq(start)]
                if ls:
                    m.d.comb += ls.clear.eq(start)
                m.d.comb += wr.clear.eq(start)
                with m.If(start):
                    m.d.sync += [pc.eq(prog_base), busy.eq(1), done.eq(0), error.eq(0),
                                 err_code.eq(0), err_pc.eq(0)]
                    m.d.sync += po_async.eq(0)
                    m.next = "FETCH"
            if fu:
                with m.State("FETCH"):
                    # the next instruction from the fetch unit, which has the DMA meanwhile
                    # (not while a background LOADW reads: it then waits to ask for a block)
                    # (nor once it failed: the run stops here, and a block read would be left
                    # on the bus)
                    m.d.comb += [fu.o.ready.eq(~fu.o.valid & ~loadw.bg_reading
                                               & (loadw.bg_err == 0)),
                                 rd.req_valid.eq(fu.req_valid), rd.req_addr.eq(fu.req_addr),
                                 rd.req_len.eq(fu.req_len), rd.req_words.eq(fu.req_words)]
                    # a command that reads memory, and END, start after a background LOADW
                    # (and those that need the post-processor, after a background POST)
                    fop = fu.o.payload.instr[0:8]
                    reads = Const(0, 1)
                    if pf:
                        reads = loadw.bg_busy & fop.matches(*WAITS_FOR_LOADER)
                    if cfg.post_overlap:
                        # a LOADQ waits only for a POST that reads the records it writes
                        qdst = rg[Reg.Q_DST]
                        recs = ((qdst < po.q_hi) & (po.q_lo < qdst + rg[Reg.Q_COUNT]))
                        reads = reads | (po_pending & (fop.matches(*WAITS_FOR_POST)
                                                       | ((fop == Op.LOADQ) & recs)))
                    with m.If(loadw.bg_err != 0 if pf else Const(0, 1)):
                        # a background LOADW's read failed: the run stops at that LOADW
                        m.d.comb += fail_pc.eq(lw_pc)
                        failure(loadw.bg_err)
                    with m.Elif(po_async & ~po_pending & (po.err != 0) if cfg.post_overlap
                                else Const(0, 1)):
                        # a background POST failed: the run stops at that POST
                        m.d.comb += fail_pc.eq(po_pc)
                        failure(po.err)
                    with m.Elif(fu.o.valid & ~reads):
                        with m.If(fu.o.payload.err != 0):
                            m.d.comb += fail_pc.eq(fu.o.payload.pc)
                            failure(fu.o.payload.err)
                        with m.Else():
                            m.d.sync += [pc.eq(fu.o.payload.pc),
                                         instr.eq(fu.o.payload.instr)]
                            m.next = "DECODE"
            else:
                with m.State("FETCH"):
                    with m.If(pc[:3] != 0):
                        failure(Err.ADDRESS)            # PROG_BASE not a multiple of 8
                    with m.Else():
                        rd_request(pc, 8)
                        m.next = "FETCH_DATA"
                with m.State("FETCH_DATA"):
                    with m.If(rd.out_valid):
                        m.d.sync += instr.eq(Cat(instr[8:], rd.out_data))
                    with read_ended(m, rd.done, rd.err, failure):
                        m.next = "DECODE"
            with m.State("DECODE"):
                m.d.comb += csr.decoded.eq(1)
                with m.If(rsvd != 0):
                    failure(Err.OPCODE)
                with m.Else():
                    with m.Switch(op):
                        with m.Case(Op.SET):
                            with m.If(ireg >= len(Reg)):
                                failure(Err.REG)
                            with m.Elif(set_wide):
                                failure(Err.PARAM)
                            with m.Else():
                                write_reg()
                        if ls:
                            with m.Case(Op.INC):
                                with m.If(ireg >= len(Reg)):
                                    failure(Err.REG)
                                with m.Else():
                                    cold_addr(ireg)
                                    m.next = "INC"
                            with m.Case(Op.LOOP):
                                with m.If((imm == 0) | imm[LOOP_BITS:].any()):
                                    failure(Err.PARAM)
                                with m.Elif(ls.full):
                                    failure(Err.LOOP)
                                with m.Else():
                                    m.d.comb += [ls.push.eq(1), ls.push_pc.eq(pc + INSTR_BYTES),
                                                 ls.push_left.eq(imm - 1)]
                                    take_next()
                            with m.Case(Op.ENDLOOP):
                                with m.If(ls.empty):
                                    failure(Err.LOOP)
                                with m.Else():
                                    m.d.comb += ls.end.eq(1)
                                    with m.If(ls.jump):
                                        # the fetch unit goes on from the body's start in
                                        # its queue, or drops the queue and reads the body
                                        m.d.comb += [fu.start.eq(1), fu.reuse.eq(1),
                                                     fu.base.eq(ls.target)]
                                        m.next = "FETCH"
                                    with m.Else():
                                        take_next()
                        with m.Case(Op.NOP):
                            take_next()
                        with m.Case(Op.END):
                            m.d.sync += [busy.eq(0), done.eq(1)]
                            m.next = "IDLE"
                        with m.Case(Op.LOADA):
                            m.next = "LA_CHECK"
                        with m.Case(Op.LOADW):
                            m.next = "LW_CHECK"
                        with m.Case(Op.LOADQ):
                            m.next = "LQ_CHECK"
                        with m.Case(Op.CONV):
                            m.next = "CV_CHECK"
                        with m.Case(Op.POST):
                            m.next = "PO_CHECK"
                        if cfg.add_unit:
                            with m.Case(Op.ADD):
                                m.next = "AD_CHECK"
                        with m.Default():
                            failure(Err.OPCODE)
            if ls:
                with m.State("INC"):
                    # the register from the RAM (decode presented its index) plus the signed
                    # immediate, modulo the register's width (the writes keep its bits)
                    m.d.comb += set_val.eq(params.r_data + imm.as_signed())
                    write_reg()
            with m.State("NEXT"):
                if fu:
                    m.d.comb += fu.o.ready.eq(1)
                else:
                    m.d.sync += pc.eq(pc + 8)
                m.next = "FETCH"

            # ------------------------------------------------------------ LOADA
            nch, H, W = rg[Reg.A_CH], rg[Reg.A_H], rg[Reg.A_W]
            hb0, nr, pitch = rg[Reg.A_HB0], rg[Reg.A_NR], rg[Reg.LB_PITCH]
            apitch = rg[Reg.A_PITCH]
            # a row's bytes in memory: ceil(W / 2) for 4-bit codes (flag DECODE, act_codes)
            wbytes = Mux(cmd_flags[0], (W + 1) >> 1, W) if cfg.act_codes else W
            la_rowpitch = Mux(apitch == 0, wbytes, apitch)
            # whole maps, contiguous in memory (wide loads): one read of all (A_CH * A_NR rows
            # instead of the band's offset, 0), each channel's rows at its pitch (the flag is
            # registered in LA_CHECK, off the multiplier's operand path)
            la_whole = Signal() if cfg.wide_loads else Const(0, 1)
            contig_now = (apitch == 0) | (apitch == wbytes)
            with m.State("LA_CHECK"):
                if cfg.wide_loads:
                    m.d.sync += la_whole.eq(contig_now & (nr == H))
                with m.If(~checked(Op.LOADA, "regs")):
                    failure(Err.PARAM)
                with m.Else(), product(*operands(Op.LOADA, "band")) as p:
                    m.d.sync += tmp.eq(tmp_of(p))
                    m.next = "LA_M1"
            with m.State("LA_M1"):
                with m.If(~checked(Op.LOADA, "band", band=tmp)):
                    failure(Err.PARAM)
                with m.Else(), product(H, la_rowpitch) as p:
                    m.d.sync += la_hw.eq(aclamp(p))
                    m.next = "LA_M2"
            with m.State("LA_M2"):
                cold_addr(Reg.A_SRC)                        # there in the product's cycle
                with product(Mux(la_whole, nch, hb0), Mux(la_whole, nr, la_rowpitch)) as p:
                    m.d.sync += [addr_a.eq(aclamp(cold(Reg.A_SRC)
                                                  + aclamp(Mux(la_whole, 0, p)))),
                                 la_contig.eq(contig_now), tmp.eq(tmp_of(p))]
                    m.next = "LA_M3"
            with m.State("LA_M3"), product(Mux(la_whole, tmp, nr), wbytes) as p:
                # contiguous rows: one read per channel (or of all); a column tile: one a row
                m.d.sync += nbytes.eq(Mux(la_contig, aclamp(p), wbytes))
                m.next = "LA_RUN"
            la = loada.cmd.payload
            m.d.comb += [la.addr.eq(addr_a), la.nbytes.eq(nbytes), la.contig.eq(la_contig),
                         la.nch.eq(Mux(la_whole, 1, nch)), la.nr.eq(nr), la.pitch.eq(pitch),
                         la.width.eq(W), la.row_step.eq(la_rowpitch), la.chan_step.eq(la_hw)]
            if cfg.act_codes:
                m.d.comb += [la.decode.eq(cmd_flags[0]),
                             la.levels.eq(Cat(*(rg[r] for r in LOAD_LEVEL_REGS)))]
            with m.State("LA_RUN"):
                # the loader runs the command (its registers hold meanwhile), on the read DMA
                with run_unit(loada, cfg.wide_loads):
                    m.next = "NEXT"

            # ------------------------------------------------------------ LOADW / LOADQ
            with m.State("LW_CHECK"):
                with m.If(~checked(Op.LOADW, "regs")):
                    failure(Err.PARAM)
                with m.Else():
                    m.next = "LW_M1" if cfg.wide_loads else "LW_M2"
            if cfg.wide_loads:
                # the engines to expect: the last beat's extra bytes are dropped after them
                with m.State("LW_M1"), product(rg[Reg.W_COUNT], R) as p:
                    m.d.sync += lw_rows.eq(p)
                    m.next = "LW_M2"
            with m.State("LW_M2"):
                cold_addr(Reg.W_SRC)
                per_set = Mux(cmd_flags[0], set_bytes(fc, P, True), set_bytes(fc, P, False))
                with product(rg[Reg.W_COUNT], per_set) as p:
                    p = Mux(cmd_flags[2] & cfg.packed_weights, (p + 1) >> 1, p)   # PACK4
                    m.d.sync += nbytes.eq(whole_beats(p) if cfg.wide_loads else aclamp(p))
                    m.next = "LW_RUN"
            lwc = loadw.cmd.payload
            m.d.comb += [lwc.src.eq(cold(Reg.W_SRC)), lwc.nbytes.eq(nbytes), lwc.rows.eq(lw_rows),
                         lwc.dst.eq(rg[Reg.W_DST]), lwc.n.eq(rg[Reg.W_COUNT]), lwc.flags.eq(flags)]
            with m.State("LW_RUN"):
                # the loader runs the command (its registers hold meanwhile), on the read DMA,
                # or takes it with its read (ASYNC) and the next instruction runs; with wide
                # loads the weights start on a bus word (the read is in whole beats)
                cold_addr(Reg.W_SRC)
                with m.If(~checked(Op.LOADW, "src", W_SRC=cold(Reg.W_SRC))):
                    failure(Err.PARAM)
                with m.Else():
                    with run_unit(loadw, cfg.wide_loads):
                        m.d.sync += lw_pc.eq(pc)            # a background read's error names it
                        m.next = "NEXT"
            with m.State("LQ_CHECK"):
                cold_addr(Reg.Q_SRC)
                with m.If(~checked(Op.LOADQ, "regs")):
                    failure(Err.PARAM)
                with m.Else(), product(rg[Reg.Q_COUNT], 4 * QPARAM_WORDS) as p:
                    m.d.sync += nbytes.eq(whole_beats(p) if cfg.wide_loads else aclamp(p))
                    m.next = "LQ_RUN"
            lq = loadq.cmd.payload
            m.d.comb += [lq.src.eq(cold(Reg.Q_SRC)), lq.nbytes.eq(nbytes),
                         lq.dst.eq(rg[Reg.Q_DST]), lq.end.eq(rg[Reg.Q_DST] + rg[Reg.Q_COUNT])]
            with m.State("LQ_RUN"):
                # the loader runs the command (its registers hold meanwhile), on the read DMA;
                # with wide loads the records start on a bus word (the read is in whole beats)
                cold_addr(Reg.Q_SRC)
                with m.If(~checked(Op.LOADQ, "src", Q_SRC=cold(Reg.Q_SRC))):
                    failure(Err.PARAM)
                with m.Else():
                    with run_unit(loadq, cfg.wide_loads):
                        m.next = "NEXT"

            # ------------------------------------------------------------ CONV
            with m.State("CV_CHECK"):
                cold_addr(Reg.C_Y0)         # the sequencer's command: there from CV_M1 on
                with m.If(~checked(Op.CONV, "regs")):
                    failure(Err.PARAM)
                with m.Else(), product(*operands(Op.CONV, "band")) as p:
                    m.d.sync += [tmp.eq(tmp_of(p)), cv_t.eq(0), cv_wob.eq(0),
                                 cv_t2.eq(0), cv_pieces.eq(0), conv_mac.eq(kw == 1)]
                    m.next = "CV_M1"
            with m.State("CV_M1"):
                cold_addr(Reg.C_Y0)
                with m.If(~checked(Op.CONV, "band", band=tmp)):
                    failure(Err.PARAM)
                with m.Else(), product(nch, kh) as p:
                    m.d.sync += cv_npairs.eq(p)
                    m.next = "CV_M3"
            with m.State("CV_M3"), product(rg[Reg.C_LANES], M * T) as p:
                cold_addr(Reg.C_Y0)
                m.d.sync += cv_lmt.eq(p)
                m.next = "CV_GEOM"
            with m.State("CV_GEOM"):
                # ceil(wout / L) and the number of N-tap pieces by repeated addition
                cold_addr(Reg.C_Y0)
                busy_w = cv_t < rg[Reg.C_WOUT]
                busy_p = cv_t2 < kw
                with m.If(busy_w):
                    m.d.sync += [cv_t.eq(cv_t + L), cv_wob.eq(cv_wob + 1)]
                with m.If(busy_p):
                    m.d.sync += [cv_t2.eq(cv_t2 + N), cv_pieces.eq(cv_pieces + 1)]
                with m.If(~busy_w & ~busy_p), product(*operands(Op.CONV, "acc", wob=cv_wob)) as p:
                    m.d.sync += tmp.eq(tmp_of(p))
                    with m.If(conv_mac):
                        m.d.sync += [cv_pieces.eq(1), cv_D.eq(0), cv_bk.eq(cv_wob)]
                    with m.Else():
                        m.d.sync += [cv_D.eq(D_ffa), cv_bk.eq(cv_wob + D_ffa)]
                    m.next = "CV_M4"
            with m.State("CV_M4"):
                cold_addr(Reg.C_Y0)
                with m.If(~checked(Op.CONV, "acc", acc=tmp)):
                    failure(Err.PARAM)
                with m.Elif(po_pending & (rg[Reg.C_ACC] < po.acc_hi)
                            & (po.acc_lo < rg[Reg.C_ACC] + tmp) if cfg.post_overlap
                            else Const(0, 1)):
                    pass                # its blocks are being read by a background POST
                with m.Else():
                    m.d.comb += seq.cmd.valid.eq(1)         # it starts now
                    m.next = "CV_RUN"
            with m.State("CV_RUN"):
                # the sequencer runs the command (its registers hold meanwhile)
                cold_addr(Reg.C_Y0)
                m.d.comb += seq.cmd.valid.eq(1)
                with m.If(seq.cmd.ready):
                    with m.If(seq.err):
                        failure(Err.PARAM)
                    with m.Else():
                        m.next = "NEXT"

            # ------------------------------------------------------------ POST
            wout, stride = rg[Reg.C_WOUT], rg[Reg.O_STRIDE]
            pool = cmd_flags[0]
            with m.State("PO_CHECK"):
                with m.If(~checked(Op.POST, "regs")):
                    failure(Err.PARAM)
                with m.Else():
                    m.d.sync += [cv_t.eq(0), cv_wob.eq(0),
                                 po_step.eq(Mux(pool, 2, stride[:8]))]
                    m.next = "PO_GEOM"
            with m.State("PO_GEOM"):
                cold_addr(Reg.O_ROW0)                       # PO_M1's product operand
                with m.If(cv_t < wout):
                    m.d.sync += [cv_t.eq(cv_t + L), cv_wob.eq(cv_wob + 1)]
                with m.Else(), product(*operands(Op.POST, "acc", wob=cv_wob)) as p:
                    m.d.sync += tmp.eq(tmp_of(p))
                    m.next = "PO_M1"
            with m.State("PO_M1"):
                cold_addr(Reg.O_DST)                        # there in the product's cycle
                with m.If(~checked(Op.POST, "acc", acc=tmp)):
                    failure(Err.PARAM)
                with m.Else(), product(cold(Reg.O_ROW0), rg[Reg.O_W]) as p:
                    # lane 0's first output row; each lane adds O_CSTRIDE
                    m.d.sync += [po_lanebase.eq(aclamp(cold(Reg.O_DST) + aclamp(p))), cv_t.eq(0),
                                 po_sblk.eq(0), po_ssub.eq(po_step)]
                    m.next = "PO_M2"
            with m.State("PO_M2"):
                # the step in (block, sub) form and the row step in accumulator words, then
                # the post-processor takes the command: with ASYNC (post_overlap) the
                # controller goes on as it does
                cold_addr(Reg.O_CSTRIDE)                    # there in the product's cycle
                with m.If(ge_const(po_ssub, L)):
                    m.d.sync += [po_ssub.eq(po_ssub - L), po_sblk.eq(po_sblk + 1)]
                with m.Else(), product(po_step, cv_wob) as p:
                    m.d.sync += [po_rowstep.eq(p), po_valid.eq(1), po_pc.eq(pc)]
                    if cfg.post_overlap:
                        m.d.sync += po_cstride.eq(cold(Reg.O_CSTRIDE))
                        m.d.sync += po_async.eq(cmd_flags[1])
                        with m.If(cmd_flags[1]):
                            m.next = "NEXT"
                        with m.Else():
                            m.next = "PO_WAIT"
                    else:
                        m.next = "PO_WAIT"
            with m.State("PO_WAIT"):
                # a POST (without ASYNC) or ADD: until the post-processor is done
                cold_addr(Reg.O_CSTRIDE)
                with m.If(~po_pending):
                    with m.If(po.err != 0):
                        failure(po.err)
                    with m.Else():
                        m.next = "NEXT"

            # ------------------------------------------------------------ ADD
            if cfg.add_unit:
                sz, kab = rg[Reg.D_SZ], rg[Reg.D_KAB]
                with m.State("AD_CHECK"):
                    cold_addr(Reg.O_DST)                    # AD_DST's
                    with m.If(~checked(Op.ADD, "regs")):
                        failure(Err.PARAM)
                    with m.Else():
                        m.next = "AD_DST"
                with m.State("AD_DST"):
                    # the post-processor writes the elements from O_DST on
                    cold_addr(Reg.A_SRC)                    # the sequencer's, from now on
                    m.d.sync += [po_lanebase.eq(aclamp(cold(Reg.O_DST))), po_valid.eq(1),
                                 po_async.eq(0)]
                    m.next = "AD_RUN"
                ac = addu.cmd.payload
                m.d.comb += [ac.a.eq(cold(Reg.A_SRC)), ac.b.eq(rg[Reg.D_SRC2]),
                             ac.n.eq(rg[Reg.D_N]), ac.za.eq(sz[8:16]), ac.zb.eq(sz[16:24]),
                             ac.ka.eq(kab[:16]), ac.kb.eq(kab[16:32])]
                with m.State("AD_RUN"):
                    # the sequencer runs the command (its registers hold meanwhile), on the
                    # read DMA; then POST_WAIT waits for the post-processor's last write
                    cold_addr(Reg.A_SRC)
                    with run_unit(addu, words=False):
                        m.next = "PO_WAIT"

        # any state: a failure stops the run
        with m.If(fail):
            m.d.sync += [err_code.eq(fail_code), err_pc.eq(fail_pc), smul_ph.eq(0)]
        if cfg.add_unit:
            m.d.comb += po.stop.eq(fail)    # an ADD's elements end with the run
        if pf or cfg.post_overlap or cfg.add_unit:
            # a run stops when no background read is left on the bus (the next run's fetch
            # would take its beats) and the post-processor is done (a background POST, or
            # the elements an ADD gave it): until then it is busy, in IDLE. A background POST
            # came first: its error, if it has one, is the run's.
            bg = ((loadw.bg_reading if pf else Const(0, 1))
                  | (po_pending if cfg.post_overlap or cfg.add_unit else 0))
            halting = Signal()
            with m.If(fail & bg):
                m.d.sync += halting.eq(1)
            with m.Elif((fail | halting) & ~bg):
                m.d.sync += [busy.eq(0), error.eq(1), halting.eq(0)]
                if cfg.post_overlap:
                    with m.If(po_async & (po.err != 0)):
                        m.d.sync += [err_code.eq(po.err), err_pc.eq(po_pc)]
        else:
            with m.If(fail):
                m.d.sync += [busy.eq(0), error.eq(1)]
        return m
