"""The controller: the instruction stream of a run, from its start to its end.

It fetches each instruction (through the fetch unit, or, on the smallest parts, a byte a
clock from the read DMA), decodes it, and either does it itself (``SET``, ``INC``, ``NOP``,
``LOOP``, ``ENDLOOP`` on the loop stack, ``END``) or hands it to the commands' setups
(:mod:`ffacc.hw.setup`) and waits until they end it. With the fetch unit, an instruction the
queue holds is decoded in the clock after the one before it ends (*chained*), unless it must
wait for a background unit: one that the controller does itself then takes one clock, not
two, and a command one clock less. It holds an instruction back while a
background unit (a ``LOADW`` or ``POST`` with ``ASYNC``) still works on what it needs, and it
stops the run at the first error: its own (an illegal opcode or register, a bad ``SET``, a
fetch that failed, a loop stack over- or underflow), a command's, or a background unit's,
which names that unit's instruction. A stopping run waits until no background work is left.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ffacc.firmware.isa import INSTR_BYTES, LOOP_BITS, Err, Op, Reg
from .fetch import ByteFetch, InstructionFetch
from .loops import LoopStack
from .regs import WRITE_LAYOUT, ram_bits
from .runstatus import RunStatus

__all__ = ["Controller"]


class Controller(wiring.Component):
    """The controller of an :class:`~ffacc.hw.config.AcceleratorConfig` ``cfg`` whose
    ``commands`` (opcodes) go to the setups.

    Ports
    -----
    start, prog_base, mem_size : In
        A run starts (taken while idle) at ``prog_base``; the memory's size (the fetch unit's
        bound).
    clear : Out(1)
        A run starts: the units forget the last run.
    busy, done, error, err_code, err_pc : Out
        The run's status: running, ended at ``END``, stopped with ``err_code`` at ``err_pc``.
    pc, instr : Out
        The instruction being done and its address (the setups read its opcode and flags;
        a profiler follows ``pc``).
    decoded : Out(1)
        An instruction is decoded this clock (profiling).
    fail : Out(1)
        The run stops this clock (an ``ADD``'s elements end with it).
    rd_req : Out(struct of {valid, addr, len, words}); rd_* : In
        The read DMA, for the fetches: a request, and the reader's beats, bytes, end and
        error.
    reg_w : Out(stream of {reg, value}); chk_reg, chk_value : Out; chk_wide : In;
    inc_addr : Out; reg_data : In
        The parameter registers (:class:`~ffacc.hw.regs.ParamRegs`): ``SET`` and ``INC``
        write them; a ``SET`` wider than its register fails; ``INC`` reads its register
        (``inc_addr``, its value on ``reg_data`` the clock after): the register of the next
        instruction, read in the clock before its decode (while it is fetched, or while the
        one before it is decoded), so that an ``INC`` is done in its decode, as a ``SET`` is.
        (Nothing else reads the register RAM then: the setups read it only while their
        command runs.)
    run : Out(stream of {op}); run_err : In(Err)
        A command for the setups, held until one of them ends it (``ready``), with its error.
    next_op : Out(8); hold : In(1)
        The opcode of the instruction the fetch unit has next, and whether it must wait for
        a background unit.
    peek_op : Out(8); peek_hold : In(1)
        The same for the instruction after it (the fetch unit's ``peek``), a clock before it
        may be decoded: whether it must not be chained (its hold, or more: the registers an
        instruction's hold reads may be written in that clock).
    fetch_hold : In(1)
        The fetch unit must not read (a background load has the bus, or failed).
    bg_err, bg_pc : In
        A background unit failed at the instruction at ``bg_pc``: the run stops there.
    bg_busy : In(1)
        Background work is left (a stopping run waits for it).
    late_err, late_pc : In
        The error a stopping run reports instead of its own, when non-zero (a background
        ``POST``'s, which came first).
    """

    def __init__(self, cfg, commands):
        self.cfg = cfg
        self.commands = tuple(commands)
        aw, nb, err = cfg.addr_bits + 1, cfg.bus_bytes, range(max(Err) + 1)
        super().__init__({
            "start": In(1), "prog_base": In(aw), "mem_size": In(aw),
            "clear": Out(1), "busy": Out(1), "done": Out(1), "error": Out(1),
            "err_code": Out(err), "err_pc": Out(aw), "fail": Out(1),
            "pc": Out(aw), "instr": Out(8 * INSTR_BYTES), "decoded": Out(1),
            "rd_req": Out(data.StructLayout({"valid": 1, "addr": aw, "len": aw, "words": 1})),
            "rd_beat_valid": In(1), "rd_beat_data": In(8 * nb), "rd_out_valid": In(1),
            "rd_out_data": In(8), "rd_done": In(1), "rd_err": In(3),
            "reg_w": Out(stream.Signature(WRITE_LAYOUT, always_ready=True)),
            "chk_reg": Out(8), "chk_value": Out(32), "chk_wide": In(1),
            "inc_addr": Out(range(len(Reg))), "reg_data": In(ram_bits(cfg)),
            "run": Out(stream.Signature(data.StructLayout({"op": 8}))), "run_err": In(err),
            "next_op": Out(8), "hold": In(1), "peek_op": Out(8), "peek_hold": In(1),
            "fetch_hold": In(1),
            "bg_err": In(err), "bg_pc": In(aw), "bg_busy": In(1),
            "late_err": In(err), "late_pc": In(aw),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        aw = cfg.addr_bits + 1
        # the fetch unit (fetch_block > 0), or, on the smallest parts, an instruction read a
        # byte a clock when it is asked for (hw/fetch.py)
        ls = None
        if cfg.fetch_block:
            fu = m.submodules.fetch = InstructionFetch(block=cfg.fetch_block,
                                                       bus_bytes=cfg.bus_bytes, addr_bits=aw)
            m.d.comb += [fu.beat_valid.eq(self.rd_beat_valid), fu.beat_data.eq(self.rd_beat_data)]
        else:
            fu = m.submodules.fetch = ByteFetch(addr_bits=aw)
            m.d.comb += [fu.out_valid.eq(self.rd_out_valid), fu.out_data.eq(self.rd_out_data)]
        m.d.comb += [fu.done.eq(self.rd_done), fu.rd_err.eq(self.rd_err),
                     fu.mem_size.eq(self.mem_size), self.next_op.eq(fu.o.payload.instr[0:8])]
        # hardware loops (loop_depth > 0, which needs the fetch unit)
        if cfg.loop_depth:
            ls = m.submodules.loops = LoopStack(depth=cfg.loop_depth, addr_bits=aw)
        # the instruction stays at the head of the fetch unit's queue while it runs: taken
        # (fu.o.ready) when done, in NEXT (a command) or DECODE (the others). FETCH, or a
        # chained decode, copies it into ``instr``, so the decode starts at a flip-flop, not
        # behind the queue's LUT-RAM read (that was the ULX3S's critical path); the byte
        # reader's instruction is in flip-flops already, and holds until it is taken
        pc, instr = self.pc, Signal(8 * INSTR_BYTES, reset_less=True)
        if fu.registered:
            pc, instr = fu.o.payload.pc, fu.o.payload.instr
            m.d.comb += self.pc.eq(pc)
        m.d.comb += self.instr.eq(instr)
        op, ireg, rsvd, imm = instr[0:8], instr[16:24], instr[24:32], instr[32:64]
        m.d.comb += self.run.payload.op.eq(op)
        # the run's status (hw/runstatus.py): a failure stops it once no background work is
        # left; until then it is busy, in IDLE
        st = m.submodules.status = RunStatus(aw)
        m.d.comb += [st.fail.eq(self.fail), st.fail_pc.eq(pc), st.bg_busy.eq(self.bg_busy),
                     st.late_err.eq(self.late_err), st.late_pc.eq(self.late_pc)]
        m.d.comb += [getattr(self, n).eq(getattr(st, n))
                     for n in ("busy", "done", "error", "err_code", "err_pc")]

        # a SET value wider than its register (reg_bits); set_val is what SET or INC writes
        # (the check looks at the immediate, so INC's adder is not in front of it)
        set_val = Signal(34)
        m.d.comb += [set_val.eq(imm), self.chk_reg.eq(ireg), self.chk_value.eq(imm)]

        def write_reg():
            """Parameter register ``ireg`` = ``set_val`` (a SET checked, an INC modulo the
            register's width), then the next instruction."""
            m.d.comb += [self.reg_w.valid.eq(1), self.reg_w.payload.reg.eq(ireg),
                         self.reg_w.payload.value.eq(set_val)]
            take_next()

        chainable = Signal()
        m.d.comb += [self.peek_op.eq(fu.peek.instr[0:8]),
                     chainable.eq(fu.peek.valid & (self.bg_err == 0) & ~self.peek_hold)]

        def take_next():
            """An instruction done (in DECODE: SET, INC, NOP, LOOP, an ENDLOOP that does not
            jump; a command in NEXT): take it from the queue, and decode the next one at once
            (chained: the queue holds it, it need not wait for a background unit, and no
            background error is there for FETCH to take first) or fetch it."""
            m.d.comb += fu.o.ready.eq(1)
            m.next = "FETCH"
            if not fu.registered:       # (the byte reader has no instruction queued)
                with m.If(chainable):
                    m.d.sync += [pc.eq(fu.peek.pc), instr.eq(fu.peek.instr)]
                    if ls:      # an INC's register, there in its decode
                        m.d.comb += self.inc_addr.eq(fu.peek.instr[16:24])
                    m.next = "DECODE"

        run_err = Signal.like(self.run_err)

        def failure(code, at=None):
            m.d.comb += [self.fail.eq(1), st.fail_code.eq(code)]
            if at is not None:
                m.d.comb += st.fail_pc.eq(at)
            m.next = "IDLE"

        with m.FSM(name="ctl") as fsm:
            with m.State("IDLE"):
                m.d.comb += [fu.start.eq(self.start), self.clear.eq(self.start),
                             st.start.eq(self.start)]
                if ls:
                    m.d.comb += ls.clear.eq(self.start)
                with m.If(self.start):
                    m.next = "FETCH"
            with m.State("FETCH"):
                # the next instruction from the fetch unit, which has the DMA meanwhile (not
                # while a background LOADW reads, nor once it failed: the run stops here)
                m.d.comb += fu.o.ready.eq(~fu.o.valid & ~self.fetch_hold)
                if ls:      # an INC's register, there in its decode
                    m.d.comb += self.inc_addr.eq(fu.o.payload.instr[16:24])
                with m.If(self.bg_err != 0):
                    failure(self.bg_err, at=self.bg_pc)     # at that background command
                with m.Elif(fu.o.valid & ~self.hold):
                    with m.If(fu.o.payload.err != 0):
                        failure(fu.o.payload.err, at=fu.o.payload.pc)
                    with m.Else():
                        if not fu.registered:
                            m.d.sync += [pc.eq(fu.o.payload.pc), instr.eq(fu.o.payload.instr)]
                        m.next = "DECODE"
            with m.State("DECODE"):
                m.d.comb += self.decoded.eq(1)
                with m.If(rsvd != 0):
                    failure(Err.OPCODE)
                with m.Else(), m.Switch(op):
                    with m.Case(Op.SET):
                        with m.If(ireg >= len(Reg)):
                            failure(Err.REG)
                        with m.Elif(self.chk_wide):
                            failure(Err.PARAM)
                        with m.Else():
                            write_reg()
                    if ls:
                        with m.Case(Op.INC):
                            with m.If(ireg >= len(Reg)):
                                failure(Err.REG)
                            with m.Else():
                                # the register read while it was fetched, plus the signed
                                # immediate, modulo the register's width (the writes keep
                                # its bits)
                                m.d.comb += set_val.eq(self.reg_data + imm.as_signed())
                                write_reg()
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
                                    # the fetch unit goes on from the body's start in its
                                    # queue, or drops the queue and reads the body
                                    m.d.comb += [fu.start.eq(1), fu.reuse.eq(1)]
                                    m.next = "FETCH"
                                with m.Else():
                                    take_next()
                    with m.Case(Op.NOP):
                        take_next()
                    with m.Case(Op.END):
                        m.d.comb += st.end.eq(1)
                        m.next = "IDLE"
                    with m.Case(*self.commands):
                        m.next = "RUN"
                    with m.Default():
                        failure(Err.OPCODE)
            with m.State("NEXT"):
                with m.If(run_err != 0):
                    failure(run_err)
                with m.Else():
                    take_next()
            with m.State("RUN"):
                # the command's setup, then its unit, run it (the instruction holds); its
                # error is taken in NEXT (a setup's checks were the ULX3S's critical path)
                m.d.comb += self.run.valid.eq(1)
                with m.If(self.run.ready):
                    m.d.sync += run_err.eq(self.run_err)
                    m.next = "NEXT"

        self._fetch_wiring(m, fu, fsm, ls)
        return m

    def _fetch_wiring(self, m, fu, fsm, ls):
        """The fetch unit's restart address and its reads."""
        # where it restarts (it reads base only with start): the program's first instruction
        # in IDLE, else the innermost loop's body. From the state alone, so that its queue-hit
        # compare on it runs beside the decode of an ENDLOOP, not after it (decode -> base ->
        # compare -> the next block's address was the ULX3S's critical path at 60 MHz)
        m.d.comb += fu.base.eq(Mux(fsm.ongoing("IDLE"), self.prog_base, ls.target) if ls
                               else self.prog_base)
        # the fetches' reads (the request driven whole, by plain assignments: see
        # tests/test_integration_docs.py): in FETCH, the fetch unit's, or an instruction's
        # 8 bytes at pc
        req, fetching = self.rd_req, fsm.ongoing("FETCH")
        m.d.comb += [fu.want.eq(fetching & ~self.fetch_hold),
                     req.valid.eq(fu.req_valid), req.addr.eq(fu.req_addr),
                     req.len.eq(fu.req_len), req.words.eq(fu.req_words)]
