"""Hardware loops: the loop stack in amaranth.sim, the ISS's LOOP/ENDLOOP/INC, and the loop
nests the compiler emits (compiler/emit.py) against the same layers unrolled."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ffacc.compiler.emit import Nest, affine_runs
from ffacc.firmware.isa import (LOOP_MAX, Err, Op, Program, Reg, decode_program, encode,
                                reg_bits, simm)
from ffacc.hw.config import ACCEL_PRESETS
from ffacc.hw.loops import LoopStack
from ffacc.sim.iss import ISS
from ffacc.sim.programs import FAULTS, conv_case, fault_case, fc_case, loop_case, run_iss

TINY = ACCEL_PRESETS["tiny"]


# ------------------------------------------------------------------ the loop stack (RTL)
def test_loop_stack_follows_a_model_on_random_operations():
    """Random push/end/clear against a list of frames: jump, target, full and empty every
    clock; pushes on a full stack and ends on an empty one change nothing."""
    D = 3
    dut = LoopStack(depth=D, addr_bits=12)
    rng = np.random.default_rng(1)
    seen = set()

    async def bench(ctx):
        frames = []
        for _ in range(600):
            op = rng.choice(["push", "end", "end", "clear", "idle"], p=[.4, .35, .1, .02, .13])
            pc, left = int(rng.integers(0, 1 << 12)), int(rng.integers(0, 3))
            ctx.set(dut.push, op == "push")
            ctx.set(dut.push_pc, pc)
            ctx.set(dut.push_left, left)
            ctx.set(dut.end, op == "end")
            ctx.set(dut.clear, op == "clear")
            await ctx.delay(1e-9)
            assert ctx.get(dut.full) == (len(frames) == D)
            assert ctx.get(dut.empty) == (not frames)
            jump = bool(frames) and frames[-1][1] > 0
            assert ctx.get(dut.jump) == jump
            if frames:
                assert ctx.get(dut.target) == frames[-1][0]
            seen.add((op, len(frames), jump))
            if op == "clear":
                frames = []
            elif op == "push" and len(frames) < D:
                frames.append([pc, left])
            elif op == "end" and frames:
                if jump:
                    frames[-1][1] -= 1
                else:
                    frames.pop()
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # the run went through a full stack, an empty one, jumps and pops
    assert ("push", D, False) in seen or ("push", D, True) in seen
    assert ("end", 0, False) in seen and any(o == "end" and j for o, _, j in seen)


# ------------------------------------------------------------------ the ISS
def _run(cfg, prog, mem=1 << 12):
    iss = ISS(cfg, mem_size=mem)
    iss.load(0, bytes(prog))
    return iss, iss.run(0)


def test_iss_loops_nest_and_count():
    p = Program().set(A_SRC=0)
    p.op(Op.LOOP, imm=3).op(Op.LOOP, imm=5).inc(Reg.A_SRC, 1).op(Op.ENDLOOP)
    p.inc(Reg.A_SRC, 100).op(Op.ENDLOOP).end()
    iss, res = _run(TINY, p)
    assert res.status == "done" and iss.regs[Reg.A_SRC] == 3 * (5 + 100)
    # SET, LOOP, 3 x (LOOP, 5 x (INC, ENDLOOP), INC, ENDLOOP), END
    assert res.instructions == 2 + 3 * (1 + 5 * 2 + 2) + 1


def test_iss_inc_is_modulo_the_register_width():
    bits = reg_bits(TINY)[Reg.C_NY]
    assert bits < 32
    p = Program().set(C_NY=3).inc(Reg.C_NY, -5).end()
    iss, res = _run(TINY, p)
    assert res.status == "done" and iss.regs[Reg.C_NY] == (3 - 5) % (1 << bits)
    iss, res = _run(TINY, Program().set(C_NY=3).inc(Reg.C_NY, 1 << bits).end())
    assert iss.regs[Reg.C_NY] == 3


@pytest.mark.parametrize("kind", ["loop_depth", "endloop", "loop_zero", "inc_register"])
def test_loop_errors_name_their_code_and_pc(kind):
    blobs, res = run_iss(fault_case(TINY, kind), TINY)
    assert res.status == "error" and res.error == FAULTS[kind]
    code = decode_program(bytes(fault_case(TINY, kind).image.sections[0].data))
    assert Op(code[(res.error_pc - 0x1000) // 8].op) in (Op.LOOP, Op.ENDLOOP, Op.INC)


def test_loop_count_beyond_the_limit_and_configurations_without_loops():
    _, res = _run(TINY, Program().op(Op.LOOP, imm=LOOP_MAX + 1).op(Op.ENDLOOP).end())
    assert res.error == Err.PARAM
    flat = TINY.with_(loop_depth=0)
    for word in (encode(Op.LOOP, 0, 2), encode(Op.ENDLOOP), encode(Op.INC, Reg.A_SRC, 1)):
        _, res = _run(flat, Program().raw(word).end())
        assert res.status == "error" and res.error == Err.OPCODE and res.error_pc == 0


def test_hand_written_loop_program_matches_golden():
    case = loop_case(TINY)
    blobs, res = run_iss(case, TINY)
    assert res.status == "done" and case.outputs and case.check(blobs)


# ------------------------------------------------------------------ the compiler's nests
def test_affine_runs_peel_the_irregular_iterations():
    items = [dict(y=0, h=0, n=5)] + [dict(y=5 * i, h=5 * i - 1, n=5) for i in range(1, 7)] \
        + [dict(y=35, h=34, n=3)]
    assert affine_runs(items) == [(0, 1), (1, 6), (7, 1)]
    assert affine_runs([dict(a=1, f=True), dict(a=2, f=False), dict(a=3, f=False)]) == \
        [(0, 1), (1, 2)]
    assert affine_runs([]) == []


def _words(cfg, build):
    nest = Nest(cfg)
    build(nest)
    return decode_program(bytes(nest.assemble(Program()).end()))


def test_nest_rolls_affine_loops_and_unrolls_the_rest():
    def build(nest):
        nest.loop(6, lambda j: nest.cmd(Op.LOADA, A_SRC=100 + 8 * j, A_CH=2))
    rolled = _words(TINY, build)
    ops = [Op(i.op) for i in rolled]
    assert ops.count(Op.LOOP) == 1 and ops.count(Op.LOADA) == 1
    # unrolled: 6 x (SET A_SRC, LOADA), one SET A_CH (written once), END
    assert len(_words(TINY.with_(loop_depth=0), build)) == 6 * 2 + 1 + 1

    def quadratic(nest):
        nest.loop(5, lambda j: nest.cmd(Op.LOADA, A_SRC=j * j))
    ops = [Op(i.op) for i in _words(TINY, quadratic)]
    assert Op.LOOP not in ops and ops.count(Op.LOADA) == 5


def test_nest_peels_a_different_last_iteration_and_wraps_the_weight_sets():
    """A body whose last iteration differs is a loop of one fewer plus that iteration; the
    weight-set registers hold ``half * k`` modulo the buffer, so alternating halves is one
    ``INC`` per iteration; every value the instructions leave equals the iteration's."""
    half = TINY.wb_sets // 2

    def build(nest):
        def body(j):
            if j < 5:
                nest.cmd(Op.LOADW, W_SRC=64 + 8 * j, W_COUNT=2, W_DST=half * (j + 1))
            nest.cmd(Op.CONV, C_WSET=half * j)
        nest.loop(6, body)
    code = _words(TINY, build)
    ops = [Op(i.op) for i in code]
    loop = ops.index(Op.LOOP)
    assert [i.imm for i in code if i.op == Op.LOOP] == [5]
    assert ops[loop:].count(Op.LOADW) == 1 and ops[ops.index(Op.ENDLOOP):].count(Op.CONV) == 1
    assert all(i.imm < TINY.wb_sets for i in code
               if i.op == Op.SET and i.reg in (Reg.W_DST, Reg.C_WSET))
    # replay the registers: each command sees its iteration's values modulo the buffer
    bits = reg_bits(TINY)
    regs, seen, pc, stack = {}, [], 0, []
    while code[pc].op != Op.END:
        i = code[pc]
        if i.op == Op.SET:
            regs[i.reg] = i.imm
        elif i.op == Op.INC:
            regs[i.reg] = (regs[i.reg] + simm(i.imm)) % (1 << bits[Reg(i.reg)])
        elif i.op == Op.LOOP:
            stack.append([pc, i.imm - 1])
        elif i.op == Op.ENDLOOP:
            if stack[-1][1]:
                stack[-1][1] -= 1
                pc = stack[-1][0]
            else:
                stack.pop()
        elif i.op == Op.LOADW:
            seen.append(("w", regs[Reg.W_SRC], regs[Reg.W_DST]))
        elif i.op == Op.CONV:
            seen.append(("c", regs[Reg.C_WSET]))
        pc += 1
    want = []
    for j in range(6):
        if j < 5:
            want.append(("w", 64 + 8 * j, half * (j + 1) % TINY.wb_sets))
        want.append(("c", half * j % TINY.wb_sets))
    assert seen == want


@pytest.mark.parametrize("case", [
    lambda c: conv_case(c, 8, 20, 40, 40, 3, seed=1),            # channel and lane groups
    lambda c: conv_case(c, 2, 3, 9, 9, 5, stride=2, seed=2),
    lambda c: conv_case(c, 3, 5, 12, 10, 3, pool2=True, relu=True, seed=3),
    lambda c: conv_case(c, 2, 3, 6, 2 * c.lb_width + 7, 3, seed=4),   # column tiles
    lambda c: fc_case(c, 70, 9, seed=5),
], ids=["groups", "stride2", "pool", "coltiles", "fc"])
def test_rolled_layers_equal_the_unrolled_ones(case):
    """The same layer with hardware loops and unrolled (loop_depth 0, and loops nested
    deeper than a 1-frame stack unrolled): golden outputs on the ISS in every form, fewer
    instructions in the code with loops."""
    sizes = {}
    for depth in (4, 1, 0):
        cfg = TINY.with_(loop_depth=depth)
        c = case(cfg)
        blobs, res = run_iss(c, cfg)
        assert res.status == "done", res.detail
        assert c.outputs and c.check(blobs)
        sizes[depth] = len(c.image.sections[0].data) // 8
    assert sizes[4] <= sizes[1] <= sizes[0]


def test_loops_longer_than_the_count_limit_are_cut(monkeypatch):
    """A run of more iterations than a LOOP counts is consecutive loops (here with the limit
    lowered to 4): the same outputs, and no LOOP above the limit."""
    import ffacc.compiler.emit as emit
    monkeypatch.setattr(emit, "LOOP_MAX", 4)
    case = conv_case(TINY, 2, 20, 12, 12, 3, seed=1)        # 10 lane groups in a row
    blobs, res = run_iss(case, TINY)
    assert res.status == "done" and case.outputs and case.check(blobs)
    code = decode_program(case.image.sections[0].data)
    counts = [i.imm for i in code if i.op == Op.LOOP]
    assert counts and max(counts) == 4 and counts.count(4) >= 2


def test_a_case_check_fails_on_an_empty_or_short_read_back():
    case = loop_case(TINY)
    blobs, res = run_iss(case, TINY)
    assert case.check(blobs)
    assert not case.check([])                           # nothing read back
    assert not case.check([blobs[0][:-1]])              # a byte short
    assert not fault_case(TINY, "endloop").check([])   # nothing expected
