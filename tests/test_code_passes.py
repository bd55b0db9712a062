"""The compiler's passes over a finished program: dropping the SETs of values their registers
already hold (compiler/known_sets.py) and aligning short loops to the fetch unit's blocks
(compiler/fetch_align.py). Both are checked on the ISS, which runs the programs."""

import numpy as np
from hypothesis import given, settings, strategies as st

from ffacc.compiler.driver import compile_model
from ffacc.compiler.fetch_align import align_loops
from ffacc.compiler.known_sets import drop_known_sets, kept_index
from ffacc.firmware.isa import NUM_REGS, Op, Program, Reg, decode, reg_bits
from ffacc.hw.config import ACCEL_PRESETS
from ffacc.models import path
from ffacc.sim.iss import ISS
from ffacc.sim.runner import run_image

TINY = ACCEL_PRESETS["tiny"]
ULX3S = ACCEL_PRESETS["ulx3s"]
# a narrow register (INC wraps), a wide one and one the compiler counts modulo its width
REGS = [Reg.C_NY, Reg.A_SRC, Reg.W_DST]


def _observe(cfg, words, init, between=None):
    """Run ``words`` on the ISS from registers ``init``, segment after segment (each ends with
    END; ``between``: the registers' values at each later segment's start, as a run after
    other code may find them): the register values at every NOP and END, and the cycles."""
    iss = ISS(cfg, mem_size=1 << 14)
    iss.regs = list(init)
    p = Program()
    p.words = list(words)
    iss.load(0, bytes(p))
    seen = []
    step = iss.step

    def spy(ins):
        if ins.op in (Op.NOP, Op.END):
            seen.append(tuple(iss.regs[r] for r in REGS))
        return step(ins)

    iss.step = spy
    ends = [i for i, w in enumerate(words) if decode(w).op == Op.END]
    cycles = 0
    for k, start in enumerate([0] + [e + 1 for e in ends[:-1]]):
        if k and between:
            for r, v in zip(REGS, between[k - 1]):
                iss.regs[r] = v
        res = iss.run(8 * start, max_instructions=100_000)
        assert res.status == "done", res
        cycles += res.cycles
    return seen, cycles


def _programs(cfg):
    """Random programs of SETs, INCs, NOPs (where the registers are looked at) and loops."""
    bits = reg_bits(cfg)

    def leaf():
        r = st.sampled_from(REGS)
        return st.one_of(
            r.flatmap(lambda r: st.builds(lambda v: ("set", r, v),
                                          st.sampled_from([0, 1, (1 << bits[r]) - 1]))),
            r.flatmap(lambda r: st.builds(lambda d: ("inc", r, d),
                                          st.sampled_from([-1, 1, 1 << bits[r] - 1]))),
            st.just(("nop",)))

    def nest(depth):
        if depth == cfg.loop_depth:
            return st.lists(leaf(), max_size=6)
        return st.lists(st.one_of(leaf(), leaf(), st.builds(lambda n, b: ("loop", n, b),
                                                             st.integers(1, 4), nest(depth + 1))),
                        max_size=5)

    items = nest(0)

    def assemble(body):
        p = Program()

        def emit(xs):
            for x in xs:
                if x[0] == "set":
                    p.set(x[1], x[2])
                elif x[0] == "inc":
                    p.inc(x[1], x[2])
                elif x[0] == "nop":
                    p.op(Op.NOP)
                else:
                    p.op(Op.LOOP, imm=x[1])
                    emit(x[2])
                    p.op(Op.ENDLOOP)
        emit(body)
        return p.end().words

    return st.builds(assemble, items)


@settings(max_examples=150, deadline=None)
@given(words=_programs(TINY), seed=st.integers(0, 2**32 - 1), twice=st.booleans())
def test_dropped_sets_change_no_register_anywhere(words, seed, twice):
    """From any registers, the program without the known SETs holds the same values at every
    NOP and at the end (twice: two segments, the second may not count on the first)."""
    if twice:
        words = words + words
    rng = np.random.default_rng(seed)
    bits = reg_bits(TINY)

    def regs():
        return [int(rng.integers(0, 1 << bits[r])) for r in REGS]

    init = [0] * NUM_REGS
    for r, v in zip(REGS, regs()):
        init[r] = v
    between = [regs()]
    keep = drop_known_sets(words, TINY)
    assert all(k or decode(w).op == Op.SET for w, k in zip(words, keep))
    kept = [w for w, k in zip(words, keep) if k]
    want, _ = _observe(TINY, words, init, between)
    got, _ = _observe(TINY, kept, init, between)
    assert got == want


def test_known_sets_are_dropped_across_loops_and_kept_where_a_loop_changes_them():
    p = Program().set(C_NY=3, A_SRC=10).op(Op.NOP).set(C_NY=3)          # dropped
    p.op(Op.LOOP, imm=3).inc(Reg.A_SRC, 5).set(C_KH=2).op(Op.NOP).set(C_KH=2)  # 2nd dropped
    p.op(Op.ENDLOOP)
    p.set(A_SRC=25)           # 10 + 3 * 5: dropped
    p.set(C_KH=2)             # the body's SET holds after it: dropped
    p.op(Op.LOOP, imm=2).set(C_NY=3).inc(Reg.C_NY, 1).op(Op.ENDLOOP)      # kept: 4 after one
    p.set(C_NY=4)             # dropped: the body ends on 4
    p.end().set(C_NY=4)       # a new segment: kept
    keep = drop_known_sets(p.words, TINY)
    ins = [decode(w) for w in p.words]
    dropped = [(Reg(x.reg).name, x.imm) for x, k in zip(ins, keep) if not k]
    assert dropped == [("C_NY", 3), ("C_KH", 2), ("A_SRC", 25), ("C_KH", 2), ("C_NY", 4)]
    assert kept_index(keep)[-1] == len(p.words) - 5


def test_a_loop_that_straddles_two_blocks_is_aligned_and_runs_faster():
    """A 6-instruction body that starts 3 before a block's end: NOPs put it in one block,
    and the ISS (the fetch unit's queue as loop buffer) reads a block fewer."""
    Q = ULX3S.fetch_block
    p = Program()
    for _ in range(Q - 4):
        p.op(Op.NOP)
    p.op(Op.LOOP, imm=20)
    for _ in range(5):
        p.op(Op.NOP)
    p.op(Op.ENDLOOP).op(Op.NOP).end()
    words, new = align_loops(p.words, ULX3S)
    assert len(words) == len(p.words) + 3 and new[Q - 4] == Q - 4 and new[Q - 3] == Q
    assert [decode(w).op for w in words].count(Op.NOP) == Q - 4 + 3 + 5 + 1
    init = [0] * NUM_REGS
    seen0, c0 = _observe(ULX3S, p.words, init)
    seen1, c1 = _observe(ULX3S, words, init)
    assert len(seen1) == len(seen0) + 3 * 1 and c1 < c0
    # a body longer than a block, or a loop that fits, is left where it is
    for n in (Q + 2, 4):
        p = Program().op(Op.LOOP, imm=3)
        for _ in range(n):
            p.op(Op.NOP)
        p.op(Op.ENDLOOP).end()
        assert align_loops(p.words, ULX3S)[0] == p.words


def test_digits_reads_fewer_blocks_and_stays_exact():
    """The bundled digits CNN: fewer instructions and clocks than without the passes, the same
    output (the ISS's, which tests/test_digits.py holds to golden)."""
    import pytest

    import ffacc.compiler.compile as cc
    outs = {}
    for on in (False, True):
        with pytest.MonkeyPatch.context() as mp:
            if not on:
                mp.setattr(cc, "drop_known_sets", lambda w, cfg: [True] * len(w))
                mp.setattr(cc, "align_loops", lambda w, cfg: (list(w), list(range(len(w) + 1))))
            _, c, _ = compile_model(path("digits/digits_int8.onnx"), ULX3S)
        img = c.image
        rng = np.random.default_rng(0)
        x = {t.name: rng.integers(0, 256, t.shape).astype(t.dtype) for t in img.tensors
             if t.role == "input"}
        y, st_ = run_image(img, x, engine="iss")
        code = next(s for s in img.sections if s.kind == 1).data
        layers = img.meta["layers"]
        assert (sum(li["pc_count"] for li in layers if li["where"] == "accel") + 1
                == len(code) // 8)
        sets = sum(decode(int.from_bytes(code[i:i + 8], "little")).op == Op.SET
                   for i in range(0, len(code), 8))
        outs[on] = (y, st_["cycles"], sets)
    (y0, c0, n0), (y1, c1, n1) = outs[False], outs[True]
    assert all(np.array_equal(y0[k], y1[k]) for k in y0)
    assert n1 <= n0 - 10 and c1 < c0
