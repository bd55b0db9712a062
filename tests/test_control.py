"""The controller (hw/control.py) in amaranth.sim, with the real parameter registers, a model
of the read DMA over a program in memory (whole beats for the fetch unit, bytes without it)
and a model of the setups (a command ends some clocks after it is given, with an error or
not): the instructions it does itself, the commands it hands on, and how a run ends (at END,
at its own error, at a command's or a background unit's, after the background work)."""

import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring

from ffacc.firmware.isa import INSTR_BYTES, Err, Op, Program, Reg, encode
from ffacc.hw.config import ACCEL_PRESETS, AcceleratorConfig
from ffacc.hw.control import Controller
from ffacc.hw.regs import ParamRegs
from amsim import simulate

COMMANDS = (Op.LOADA, Op.LOADW, Op.LOADQ, Op.CONV, Op.POST)
FETCHING = ACCEL_PRESETS["tiny"]            # the fetch unit and hardware loops
BYTEWISE = AcceleratorConfig(fetch_block=0, loop_depth=0, weight_prefetch=False, post_overlap=False,
                             addr_bits=16)   # reads each instruction a byte a clock
BASE = 0x40


class Harness(Elaboratable):
    def __init__(self, cfg):
        self.ctl, self.params = Controller(cfg, COMMANDS), ParamRegs(cfg)

    def elaborate(self, platform):
        m = Module()
        m.submodules.ctl, m.submodules.params = ctl, p = self.ctl, self.params
        wiring.connect(m, ctl.reg_w, p.w)
        m.d.comb += [p.chk_reg.eq(ctl.chk_reg), p.chk_value.eq(ctl.chk_value),
                     ctl.chk_wide.eq(p.chk_wide), p.r_addr.eq(ctl.inc_addr),
                     ctl.reg_data.eq(p.r_data)]
        return m


def run(cfg, prog, *, cmd_clocks=3, cmd_err=None, bg=None, limit=3000):
    """Run ``prog`` (a :class:`Program`) from BASE. ``cmd_err``: {pc: error} of commands;
    ``bg(ctx, ctl, clock)`` drives the controller's background inputs each clock.

    Returns {"status", "err", "err_pc", "writes": [(reg, value)], "commands": [(pc, op)],
    "reads": [(addr, len)], "clocks"}."""
    h = Harness(cfg)
    ctl, nb = h.ctl, cfg.bus_bytes
    mem = bytearray(1 << 12)
    code = bytes(prog)
    mem[BASE:BASE + len(code)] = code
    out = {"writes": [], "commands": [], "reads": []}

    async def bench(ctx):
        ctx.set(ctl.mem_size, len(mem))
        ctx.set(ctl.prog_base, BASE)
        ctx.set(ctl.start, 1)
        await ctx.tick()
        ctx.set(ctl.start, 0)
        serving, given = [], None          # the read's beats or bytes still to give
        for n in range(limit):
            if bg:
                bg(ctx, ctl, n)
            ctx.set(ctl.rd_done, 0)
            ctx.set(ctl.rd_beat_valid, 0)
            ctx.set(ctl.rd_out_valid, 0)
            if serving:
                kind, v = serving.pop(0)
                if kind == "beat":
                    ctx.set(ctl.rd_beat_valid, 1)
                    ctx.set(ctl.rd_beat_data, v)
                elif kind == "byte":
                    ctx.set(ctl.rd_out_valid, 1)
                    ctx.set(ctl.rd_out_data, v)
                else:
                    ctx.set(ctl.rd_done, 1)
            req = ctx.get(ctl.rd_req)
            if req.valid and not serving:
                out["reads"].append((req.addr, req.len))
                data = mem[req.addr:req.addr + req.len]
                if req.words:
                    serving = [("beat", int.from_bytes(data[i:i + nb], "little"))
                               for i in range(0, len(data), nb)]
                else:
                    serving = [("byte", b) for b in data]
                serving.append(("done", 0))
            if ctx.get(ctl.reg_w.valid):
                w = ctx.get(ctl.reg_w.payload)
                out["writes"].append((Reg(w.reg).name, w.value))
            # the setups: a command ends cmd_clocks after it is given
            if ctx.get(ctl.run.valid):
                pc = ctx.get(ctl.pc)
                if given is None:
                    given = n
                    out["commands"].append((pc, Op(ctx.get(ctl.run.payload.op)).name))
                ends = n - given >= cmd_clocks
                ctx.set(ctl.run.ready, ends)
                ctx.set(ctl.run_err, (cmd_err or {}).get(pc, 0) if ends else 0)
                if ends:
                    given = None
            else:
                ctx.set(ctl.run.ready, 0)
                ctx.set(ctl.run_err, 0)
            await ctx.tick()
            if not ctx.get(ctl.busy):
                out.update(status="done" if ctx.get(ctl.done) else
                           "error" if ctx.get(ctl.error) else "?", clocks=n,
                           err=ctx.get(ctl.err_code), err_pc=ctx.get(ctl.err_pc))
                return
        raise AssertionError(f"the run did not end in {limit} clocks")

    simulate(h, bench)
    return out


def at(k):
    """The address of instruction ``k``."""
    return BASE + k * INSTR_BYTES


@pytest.mark.parametrize("cfg", [FETCHING, BYTEWISE], ids=["fetch unit", "bytewise"])
def test_a_program_runs_in_order(cfg):
    p = Program().set(A_W=5, C_KH=3).op(Op.NOP).op(Op.LOADA).set(C_KW=2).op(Op.CONV, flags=1)
    out = run(cfg, p.op(Op.POST).end())
    assert out["status"] == "done" and out["err"] == 0
    assert out["writes"] == [("A_W", 5), ("C_KH", 3), ("C_KW", 2)]
    assert out["commands"] == [(at(3), "LOADA"), (at(5), "CONV"), (at(6), "POST")]
    if not cfg.fetch_block:         # a byte a clock, one instruction a read
        assert out["reads"] == [(at(k), INSTR_BYTES) for k in range(8)]


@pytest.mark.parametrize("cfg", [FETCHING, BYTEWISE], ids=["fetch unit", "bytewise"])
@pytest.mark.parametrize("word,k,err", [
    (encode(Op.SET, Reg.A_W, 1) | 1 << 24, 1, Err.OPCODE),     # a reserved byte set
    (0xEE, 1, Err.OPCODE),                                      # no such opcode
    (encode(Op.SET, 200, 1), 1, Err.REG),                       # no such register
    (encode(Op.SET, Reg.A_W, 1 << 20), 1, Err.PARAM),           # wider than A_W
])
def test_a_bad_instruction_stops_the_run_at_its_pc(cfg, word, k, err):
    out = run(cfg, Program().set(A_H=1).raw(word).set(A_H=2).end())
    assert (out["status"], out["err"], out["err_pc"]) == ("error", err, at(k))
    assert out["writes"] == [("A_H", 1)]


def test_a_commands_error_stops_the_run_at_it():
    p = Program().op(Op.LOADA).op(Op.LOADW).set(A_W=1).end()
    out = run(FETCHING, p, cmd_err={at(1): Err.BUS}, cmd_clocks=5)
    assert (out["status"], out["err"], out["err_pc"]) == ("error", Err.BUS, at(1))
    assert out["commands"] == [(at(0), "LOADA"), (at(1), "LOADW")] and out["writes"] == []


def test_loops_and_inc():
    """LOOP 3 { INC A_SRC, 16; LOOP 2 { SET A_W } }: the body thrice, the inner twice each."""
    p = Program().set(A_SRC=0x100).op(Op.LOOP, imm=3).inc(Reg.A_SRC, 16)
    p.op(Op.LOOP, imm=2).set(A_W=7).op(Op.ENDLOOP).op(Op.ENDLOOP).inc(Reg.A_SRC, -8).end()
    out = run(FETCHING, p)
    assert out["status"] == "done"
    assert out["writes"] == [("A_SRC", 0x100)] + [("A_SRC", 0x110), ("A_W", 7), ("A_W", 7),
                                                  ("A_SRC", 0x120), ("A_W", 7), ("A_W", 7),
                                                  ("A_SRC", 0x130), ("A_W", 7), ("A_W", 7),
                                                  ("A_SRC", 0x128)]


def test_inc_reads_its_register_right_after_its_write():
    """INCs of several registers, each right after a SET or an INC of the same register (it
    reads the value written the clock before), and an INC is done in as many clocks as a
    SET (its register is read while it is fetched)."""
    p = Program().set(C_ACC=5).inc(Reg.C_ACC, 3).inc(Reg.C_ACC, -1).set(O_DST=0x200)
    p.inc(Reg.O_DST, 0x40).inc(Reg.C_ACC, 10).set(W_DST=1).inc(Reg.W_DST, 2).end()
    out = run(FETCHING, p)
    assert out["status"] == "done"
    assert out["writes"] == [("C_ACC", 5), ("C_ACC", 8), ("C_ACC", 7), ("O_DST", 0x200),
                             ("O_DST", 0x240), ("C_ACC", 17), ("W_DST", 1), ("W_DST", 3)]
    sets = Program().set(C_ACC=5)
    incs = Program().set(C_ACC=5)
    for k in range(8):
        sets.set(C_ACC=k)
        incs.inc(Reg.C_ACC, 1)
    assert run(FETCHING, sets.end())["clocks"] == run(FETCHING, incs.end())["clocks"]


def test_chained_decode_takes_a_clock_per_instruction_from_the_queue():
    """With the fetch unit, an instruction the queue already holds is decoded in the clock
    after the one before it ends (its DECODE, or a command's NEXT): a SET, INC, NOP, LOOP
    or non-jumping ENDLOOP in one clock. The first of a block, the first after a loop's
    jump back, and one that peek_hold keeps back go through FETCH (a clock more)."""
    def prog(n, body=lambda p: p.set(A_W=1)):
        p = Program().set(A_SRC=0)
        for _ in range(n):
            body(p)
        return p.end()
    base = run(FETCHING, prog(0))["clocks"]
    for per, body in ((1, lambda p: p.set(A_W=1)), (1, lambda p: p.inc(Reg.A_SRC, 4)),
                      (1, lambda p: p.op(Op.NOP)),
                      (2, lambda p: p.op(Op.LOOP, imm=1).op(Op.ENDLOOP))):
        assert run(FETCHING, prog(6, body))["clocks"] - base == 6 * per
    # after a command: the SET after it is chained from its NEXT
    one = run(FETCHING, Program().set(A_SRC=0).op(Op.LOADA).end())
    two = run(FETCHING, Program().set(A_SRC=0).op(Op.LOADA).set(A_W=1).end())
    assert two["clocks"] - one["clocks"] == 1 and two["writes"][-1] == ("A_W", 1)
    # commands and END are chained too, unless peek_hold (one clock more each: FETCH)
    def held(ctx, ctl, n):
        ctx.set(ctl.peek_hold, 1)
    unheld = run(FETCHING, Program().set(A_SRC=0).op(Op.LOADA).op(Op.CONV).set(A_W=1).end())
    slow = run(FETCHING, Program().set(A_SRC=0).op(Op.LOADA).op(Op.CONV).set(A_W=1).end(),
               bg=held)
    assert slow["clocks"] - unheld["clocks"] == 4          # LOADA, CONV, SET, END
    assert slow["commands"] == unheld["commands"] and len(unheld["commands"]) == 2
    # fourteen SETs in a block of 16 cost a clock each, the fifteenth starts a block and
    # waits for its read (a block of 16 after that one)
    fetches = run(FETCHING, prog(14))["reads"], run(FETCHING, prog(15))["reads"]
    assert len(fetches[0]) == 1 and len(fetches[1]) == 2
    # a loop: its body's first instruction after the jump goes through FETCH (2 clocks),
    # the rest are chained; three passes over a two-SET body
    loop = Program().set(A_SRC=0).op(Op.LOOP, imm=3).set(A_W=1).set(A_H=2).op(Op.ENDLOOP).end()
    flat = Program().set(A_SRC=0).op(Op.LOOP, imm=1).set(A_W=1).set(A_H=2).op(Op.ENDLOOP).end()
    assert run(FETCHING, loop)["clocks"] - run(FETCHING, flat)["clocks"] == 2 * (2 + 1 + 1)


@pytest.mark.parametrize("prog,k", [
    (Program().op(Op.ENDLOOP), 0),                              # no loop to end
    (Program().op(Op.LOOP, imm=0), 0),                          # zero passes
    (Program().op(Op.LOOP, imm=2).op(Op.LOOP, imm=2).op(Op.LOOP, imm=2).op(Op.LOOP, imm=2)
     .op(Op.LOOP, imm=2), 4),                                   # one too deep (depth 4)
])
def test_loop_stack_errors(prog, k):
    out = run(FETCHING, prog.end())
    assert out["status"] == "error" and out["err_pc"] == at(k)
    assert out["err"] in (Err.LOOP, Err.PARAM)


def test_a_background_units_error_stops_the_run_at_its_instruction():
    """A background unit fails while the controller fetches: the run stops with its error
    at its pc, not at the instruction being fetched."""
    def bg(ctx, ctl, n):
        ctx.set(ctl.bg_err, Err.TIMEOUT if n >= 40 else 0)
        ctx.set(ctl.bg_pc, 0x123 * 8)
    p = Program()
    for _ in range(30):
        p.set(A_W=1)
    out = run(FETCHING, p.end(), bg=bg)
    assert (out["status"], out["err"], out["err_pc"]) == ("error", Err.TIMEOUT, 0x123 * 8)
    assert 0 < len(out["writes"]) < 30


def test_a_stopping_run_waits_for_the_background_and_reports_its_error_first():
    """A bad instruction while background work is left: the run stays busy until it is done
    (clock 200), then reports the background POST's error (late_err) at its pc."""
    def bg(ctx, ctl, n):
        ctx.set(ctl.bg_busy, n < 200)
        ctx.set(ctl.late_err, Err.ADDRESS if n >= 150 else 0)
        ctx.set(ctl.late_pc, 0x88)
    out = run(FETCHING, Program().set(A_W=1).raw(0xEE).end(), bg=bg)
    assert (out["status"], out["err"], out["err_pc"]) == ("error", Err.ADDRESS, 0x88)
    assert out["clocks"] >= 199


def test_a_command_held_back_waits():
    """While ``hold`` (a background unit has what the next instruction needs) nothing is
    taken from the fetch unit."""
    def bg(ctx, ctl, n):
        ctx.set(ctl.hold, n < 100)
    out = run(FETCHING, Program().set(A_W=1).end(), bg=bg)
    assert out["status"] == "done" and out["clocks"] >= 100

