"""The commands' setups (hw/setup.py) in amaranth.sim, each with the real parameter registers
and the shared multiplier: the unit command each works out from its registers (against the
formulas of the ISA), the clocks before the unit starts, the handshake (the command is taken
only as the unit ends, or at the first failed check), the checks' errors, and the waits (a
CONV on blocks a background POST reads, a POST for its unit)."""

import random
from dataclasses import replace

import pytest
from amaranth.hdl import Elaboratable, Module

from ffacc.firmware.isa import QPARAM_WORDS, Err, LoadWFlag, Op, PostFlag, Reg
from ffacc.hw.config import ACCEL_PRESETS
from ffacc.hw.conv import conv_bounds
from ffacc.hw.regs import ParamRegs
from ffacc.hw.setup import (ConvSetup, LoadSetup, PostSetup, RowBlocks, SizeMultiplier, share,
                            size_bits)
from ffacc.hw.weights import set_bytes
from ffacc.sim.iss import conv_geometry
from amsim import simulate

CFG = ACCEL_PRESETS["tiny"]
L = CFG.L


class Harness(Elaboratable):
    """A setup on the parameter registers and the multiplier, wired as in the accelerator."""

    def __init__(self, setup):
        cfg = setup.cfg
        self.setup, self.params, self.mul = setup, ParamRegs(cfg), SizeMultiplier(cfg)
        self.blocks = RowBlocks(cfg)

    def elaborate(self, platform):
        m = Module()
        m.submodules.setup, m.submodules.params = self.setup, self.params
        m.submodules.mul, m.submodules.blocks = self.mul, self.blocks
        m.d.comb += [self.params.r_addr.eq(share(m, [self.setup], self.mul.i, self.params,
                                                 self.blocks.i)),
                     self.setup.regs.eq(self.params.hot),
                     self.blocks.wout.eq(self.params.hot.c_wout)]
        return m


def run(setup, regs, flags=0, *, unit_clocks=3, unit_err=0, busy_clocks=0, before=None,
        limit=300, **cmd):
    """Set ``regs`` ({name: value}), give ``setup`` a command with ``flags`` (and ``cmd``'s
    fields) and play its unit: it takes the command ``unit_clocks`` clocks after it appears,
    with ``unit_err``, then is busy for ``busy_clocks`` (``unit_busy``, PostSetup).
    ``before(ctx, clock)`` runs each clock before the setup's outputs are read.

    Returns {"start": clocks from the command to the unit's, "o": its payload, "end": clocks
    to the end, "err", "add": the add sequencer's command and "add_start" (PostSetup)}."""
    h = Harness(setup)
    out = {"start": None, "o": None, "add_start": None}
    if isinstance(setup, LoadSetup):        # the loader of the command's op
        name = Op(cmd["op"]).name.lower()
        o, o_err = getattr(setup, name), getattr(setup, f"{name}_err")
    else:
        o, o_err = setup.o, setup.o_err

    async def bench(ctx):
        p = h.params
        for r, v in regs.items():
            ctx.set(p.w.payload.reg, Reg[r])
            ctx.set(p.w.payload.value, v)
            ctx.set(p.w.valid, 1)
            await ctx.tick()
        ctx.set(p.w.valid, 0)
        ctx.set(setup.cmd.payload.flags, flags)
        for k, v in cmd.items():
            ctx.set(getattr(setup.cmd.payload, k), v)
        ctx.set(setup.cmd.valid, 1)
        busy_until = None
        for n in range(limit):
            if before:
                before(ctx, n)
            if busy_until is not None and hasattr(setup, "unit_busy"):
                ctx.set(setup.unit_busy, n < busy_until)
            if isinstance(setup, LoadSetup):      # the other loaders get nothing
                assert not any(ctx.get(getattr(setup, other).valid)
                               for other in ("loada", "loadw", "loadq") if other != name), n
            if ctx.get(o.valid) and out["start"] is None:
                out["start"], out["o"] = n, ctx.get(o.payload)
            if hasattr(setup, "add_o") and ctx.get(setup.add_o.valid):
                if out["add_start"] is None:
                    out["add_start"], out["add"] = n, ctx.get(setup.add_o.payload)
                ctx.set(setup.add_o.ready, n - out["add_start"] >= unit_clocks)
                ctx.set(setup.add_err, unit_err)
            taking = out["start"] is not None and n - out["start"] >= unit_clocks \
                and busy_until is None
            ctx.set(o.ready, taking)
            ctx.set(o_err, unit_err)
            if taking and isinstance(setup, PostSetup):
                busy_until = n + 1 + busy_clocks
            if ctx.get(setup.cmd.ready):
                out["end"], out["err"] = n, ctx.get(setup.err)
                await ctx.tick()
                if isinstance(setup, PostSetup):
                    out["background"], out["bg_pc"] = (ctx.get(setup.background),
                                                       ctx.get(setup.bg_pc))
                    if out["start"] is None and ctx.get(setup.o.valid):    # ASYNC
                        out["start"], out["o"] = n + 1, ctx.get(setup.o.payload)
                ctx.set(setup.cmd.valid, 0)
                await ctx.tick()
                assert not ctx.get(o.valid) or isinstance(setup, PostSetup)
                return
            await ctx.tick()
        raise AssertionError(f"{type(setup).__name__} did not end in {limit} clocks")

    simulate(h, bench)
    return out


def loada_regs(**kw):
    r = dict(A_SRC=0x340, A_CH=3, A_H=20, A_W=17, A_HB0=4, A_NR=6, LB_PITCH=9, A_PITCH=0,
             A_CSHIFT=0, A_LB0=0)
    r.update(kw)
    return r


@pytest.mark.parametrize("kw,decode", [
    ({}, 0),                                # a band of a map: one read a channel
    (dict(A_HB0=0, A_NR=20, LB_PITCH=20), 0),   # whole maps, contiguous: one read of all
    (dict(A_PITCH=40), 0),                  # a column tile: a read a row
    (dict(A_PITCH=17), 0),                  # a pitch equal to the width: contiguous
    (dict(A_W=17, A_PITCH=0), 1),           # 4-bit codes: ceil(17 / 2) bytes a row
    (dict(A_W=9, A_PITCH=18, A_CSHIFT=1, A_LB0=5), 0),  # a stride phase: a read a row of
    (dict(A_W=4, A_PITCH=16, A_CSHIFT=2, A_HB0=0, A_NR=20, LB_PITCH=20), 0),  # 2**k (W-1)+1
])
def test_loada_setup(kw, decode):
    regs = loada_regs(**kw)
    out = run(LoadSetup(CFG), regs, flags=decode, op=Op.LOADA)
    W, k = regs["A_W"], regs["A_CSHIFT"]
    wbytes = (W + 1) // 2 if decode else W
    row_step = regs["A_PITCH"] or wbytes
    contig = regs["A_PITCH"] in (0, wbytes) and not k
    if k:
        wbytes = (W - 1 << k) + 1
    whole = contig and regs["A_NR"] == regs["A_H"]
    o = out["o"]
    # four products, two clocks each, before the loader starts
    assert out["start"] == 8 and out["err"] == 0 and out["end"] == out["start"] + 3
    assert o.addr == regs["A_SRC"] + (0 if whole else regs["A_HB0"] * row_step)
    assert o.nbytes == ((regs["A_CH"] * regs["A_NR"] if whole else regs["A_NR"]) * wbytes
                        if contig else wbytes)
    assert (o.contig, o.nch, o.nr, o.pitch, o.width) == (
        contig, 1 if whole else regs["A_CH"], regs["A_NR"], regs["LB_PITCH"], W)
    assert (o.row_step, o.chan_step, o.decode) == (row_step, regs["A_H"] * row_step, decode)
    assert (o.cshift, o.lb0) == (k, regs["A_LB0"])


def test_a_units_error_ends_the_command_with_it():
    out = run(LoadSetup(CFG), loada_regs(), unit_clocks=7, unit_err=Err.BUS, op=Op.LOADA)
    assert (out["err"], out["end"]) == (Err.BUS, out["start"] + 7)


@pytest.mark.parametrize("setup,regs,flags", [
    (Op.LOADA, loada_regs(A_W=0), 0),                                   # regs
    (Op.LOADA, loada_regs(A_CH=8, LB_PITCH=9), 0),                      # band: 63 + 6 > 64
    (Op.LOADW, dict(W_SRC=0x100, W_COUNT=0, W_DST=0), 0),               # regs
    (Op.LOADW, dict(W_SRC=0x102, W_COUNT=2, W_DST=0), 0),               # src: not on a word
    (Op.LOADQ, dict(Q_SRC=0x100, Q_COUNT=4, Q_DST=62), 0),              # regs
    (Op.LOADQ, dict(Q_SRC=0x101, Q_COUNT=4, Q_DST=0), 0),               # src
    (ConvSetup, None, 0),                                               # acc: 120 + 9 > 128
    (PostSetup, dict(C_LANES=1, C_NY=1, C_WOUT=6, O_Q=0, O_STRIDE=0), 0),   # regs
    # a 3x3 pool of a band of 2 rows; a 1x1 "pool"
    (PostSetup, dict(C_LANES=1, C_NY=2, C_WOUT=6, O_Q=0, O_STRIDE=1, O_POOLK=3), PostFlag.POOL),
    (PostSetup, dict(C_LANES=1, C_NY=3, C_WOUT=6, O_Q=0, O_STRIDE=1, O_POOLK=1), PostFlag.POOL),
])
def test_a_failed_check_ends_the_command_before_its_unit_starts(setup, regs, flags):
    if regs is None:
        regs = conv_regs(C_NY=3, C_WOUT=9, C_ACC=120)
    if isinstance(setup, Op):
        out = run(LoadSetup(CFG), regs, flags, op=setup)
    else:
        out = run(setup(CFG), regs, flags)
    assert out["err"] == Err.PARAM and out["start"] is None and out["end"] < 20


def test_an_add_with_bad_registers_fails():
    out = run(PostSetup(CFG), dict(D_N=0, D_SZ=5), add=1)
    assert out["err"] == Err.PARAM and out["start"] is None and out["end"] == 0


# three engines a unit: LOADW's engine count is a product (W_M1), not a shift
ROWS3 = replace(CFG, fcu=replace(CFG.fcu, rows=3))


@pytest.mark.parametrize("cfg", [CFG, ROWS3], ids=["rows2", "rows3"])
@pytest.mark.parametrize("count,flags", [(1, 0), (3, 0), (5, LoadWFlag.MAC),
                                         (3, LoadWFlag.PACK4), (3, LoadWFlag.ASYNC)])
def test_loadw_setup(count, flags, cfg):
    """The loader's command: the read, and W_COUNT * rows engines, three clocks after the
    command (the count shifted), or five (rows not a power of two: a product)."""
    regs = dict(W_SRC=0x200, W_COUNT=count, W_DST=4)
    out = run(LoadSetup(cfg), regs, flags, op=Op.LOADW)
    n = count * set_bytes(cfg.fcu, cfg.lanes, bool(flags & LoadWFlag.MAC))
    if flags & LoadWFlag.PACK4:
        n = (n + 1) // 2
    nb = cfg.bus_bytes
    o = out["o"]
    assert out["start"] == (3 if cfg.fcu.rows == 2 else 5) and out["err"] == 0
    assert (o.src, o.nbytes, o.rows, o.dst, o.n) == (0x200, -(-n // nb) * nb,
                                                     count * cfg.fcu.rows, 4, count)
    assert (o.flags.mac, o.flags.background, o.flags.packed) == (
        bool(flags & LoadWFlag.MAC), bool(flags & LoadWFlag.ASYNC),
        bool(flags & LoadWFlag.PACK4))


@pytest.mark.parametrize("count,dst", [(1, 0), (5, 3), (64, 0)])
def test_loadq_setup(count, dst):
    out = run(LoadSetup(CFG), dict(Q_SRC=0x180, Q_COUNT=count, Q_DST=dst), op=Op.LOADQ)
    o = out["o"]
    assert out["start"] == 2 and out["err"] == 0
    nb = CFG.bus_bytes          # the records in whole bus beats
    assert (o.src, o.nbytes, o.dst, o.end) == (0x180, -(-count * 4 * QPARAM_WORDS // nb) * nb,
                                               dst, dst + count)


def conv_regs(**kw):
    r = dict(C_KH=3, C_KW=5, C_LANES=2, C_NY=2, C_WOUT=10, A_CH=2, C_PT=1, C_PL=2, A_W=12,
             A_H=14, A_HB0=0, LB_PITCH=3, C_WSET=5, C_ACC=7, C_Y0=3)
    r.update(kw)
    return r


CHAINS = [  # 3x3 on a 4-wide map: its rows chain (pb = wob = 2) unless the map is wider than
    # the 6 columns hold with the leading sample and the padding, or the right padding is
    # wider than the next row's left margin (asymmetric); a 2-wide kernel's piece reads 3
    # taps, whose last may be nonzero: a 5-wide output does not chain, a 4-wide one does
    dict(C_KW=3, C_PL=1, A_W=4, C_WOUT=4), dict(C_KW=3, C_PL=1, A_W=5, C_WOUT=5),
    dict(C_KW=3, C_PL=1, A_W=4, C_WOUT=5), dict(C_KW=3, C_PL=1, A_W=4, C_WOUT=6),
    dict(C_KW=2, C_PL=0, A_W=5, C_WOUT=5), dict(C_KW=3, C_PL=1, A_W=16, C_WOUT=16),
    dict(C_KW=2, C_PL=0, A_W=5, C_WOUT=4)]


@pytest.mark.parametrize("kw", [{}, dict(C_KW=1, C_KH=1, LB_PITCH=1), dict(C_KW=12, C_WOUT=1),
                                dict(C_WOUT=96, C_NY=1, C_ACC=0)] + CHAINS)
def test_conv_setup(kw):
    regs = conv_regs(**kw)
    out = run(ConvSetup(CFG), regs, flags=1)
    kw_, wout = regs["C_KW"], regs["C_WOUT"]
    wob, mac = -(-wout // L), kw_ == 1
    D = 0 if mac else conv_bounds(CFG)["D"]
    o = out["o"]
    # three products, then the row's blocks and the pieces counted (a clock each, both at
    # once), a product and the accumulator check
    assert out["err"] == 0 and out["start"] == 6 + max(wob, -(-kw_ // CFG.fcu.piece_taps)) + 2
    assert (o.npairs, o.pieces, o.mac, o.D, o.wob, o.bk) == (
        regs["A_CH"] * regs["C_KH"], 1 if mac else -(-kw_ // CFG.fcu.piece_taps), mac, D,
        wob, wob + D)
    g = conv_geometry(CFG, regs["C_KH"], kw_, wout, 1, regs["A_W"], regs["C_PL"])
    assert o.pb == g.pb         # the rows' chain (row_pitch)
    if kw in CHAINS:            # the cases that chain, and those that cannot
        assert (o.pb < o.bk) == (kw in CHAINS[0:3:2] + CHAINS[5:]), (o.pb, o.bk)
    # the multiplier slots of an engine's beat: a lane's M * T products, L an output channel
    # in MAC mode
    assert o.slots == regs["C_LANES"] * (CFG.L if mac else CFG.fcu.ffa.M * CFG.fcu.subtaps)
    assert (o.overwrite, o.wset, o.kh, o.pt, o.pl, o.ny, o.acc, o.y0, o.h, o.hb0, o.pitch) == (
        0, 5, regs["C_KH"], 1, regs["C_PL"], regs["C_NY"], regs["C_ACC"], 3, 14, 0,
        regs["LB_PITCH"])


@pytest.mark.parametrize("kw,pl,wout", [(2, 6, 6), (2, 6, 1), (3, 11, 12), (12, 11, 1),
                                        (2, 0, 1), (3, 1, 1)])
def test_conv_setup_chain_bound_on_a_narrow_map(kw, pl, wout):
    """A line buffer one column wide (A_W = 1, a register bit) with padding up to max_kernel:
    the chain's bound A_W + C_PL + d is wider than A_W's register, and pb is row_pitch's."""
    cfg = CFG.with_(lb_width=1)
    regs = conv_regs(C_KW=kw, C_KH=1, C_PL=pl, A_W=1, C_WOUT=wout, LB_PITCH=1, A_H=4)
    out = run(ConvSetup(cfg), regs)
    g = conv_geometry(cfg, 1, kw, wout, 2, 1, pl)
    assert out["err"] == 0 and out["o"].pb == g.pb


@pytest.mark.parametrize("lo,hi,waits", [(0, 8, True), (14, 20, True), (0, 7, False),
                                         (15, 30, False)])
def test_a_conv_waits_for_the_blocks_a_background_post_reads(lo, hi, waits):
    """The CONV's blocks are 7..14 (C_ACC 7, 2 rows of 4): a POST reading any of them holds
    it until the POST is done (clock 30 here)."""
    def post(ctx, n):
        ctx.set(setup.reading.busy, n < 30)
        ctx.set(setup.reading.lo, lo)
        ctx.set(setup.reading.hi, hi)
    setup = ConvSetup(CFG)
    out = run(setup, conv_regs(), before=post)
    assert out["err"] == 0 and (out["start"] == 30) == waits and (out["start"] < 30) != waits


def post_regs(**kw):
    r = dict(C_LANES=2, C_NY=2, C_WOUT=10, C_ACC=3, O_Q=1, O_STRIDE=1, O_W=9, O_ROW0=5,
             O_DST=0x1000, O_CSTRIDE=0x90, O_NLEV=0)
    r.update(kw)
    return r


@pytest.mark.parametrize("kw,flags", [({}, 0), (dict(O_STRIDE=4), 0), (dict(O_STRIDE=7), 0),
                                      (dict(O_STRIDE=2, O_POOLK=2), PostFlag.POOL),
                                      (dict(C_NY=5, O_STRIDE=2, O_POOLK=3), PostFlag.POOL),
                                      ({}, PostFlag.ASYNC)])
def test_post_setup(kw, flags):
    regs = post_regs(**kw)
    out = run(PostSetup(CFG), regs, flags, pc=0x128, busy_clocks=9)
    step = regs["O_STRIDE"]
    wob = -(-regs["C_WOUT"] // L)
    o = out["o"]
    assert out["err"] == 0
    assert (o.step, o.sblk, o.ssub, o.wob, o.rowstep) == (step, step // L, step % L, wob,
                                                          step * wob)
    assert (o.base, o.cstride, o.acc0, o.acc1, o.pool) == (
        0x1000 + 5 * 9, 0x90, 3, 3 + regs["C_NY"] * wob, bool(flags & PostFlag.POOL))
    if flags & PostFlag.POOL:
        assert o.poolk == regs["O_POOLK"]
    if flags & PostFlag.ASYNC:
        # it ends as it gives the command; the post-processor runs on in the background
        assert out["end"] == out["start"] - 1 and out["background"] and out["bg_pc"] == 0x128
    else:
        # it waits for the post-processor: taken 3 clocks after it appears, then busy 9
        assert out["end"] == out["start"] + 3 + 1 + 9 and not out["background"]


def test_a_post_ends_with_its_units_error():
    out = run(PostSetup(CFG), post_regs(), unit_err=Err.ADDRESS, busy_clocks=4)
    assert out["err"] == Err.ADDRESS


@pytest.mark.parametrize("unit_err", [0, Err.TIMEOUT])
def test_add_setup(unit_err):
    regs = dict(D_N=40, D_SZ=(9 << 24) | (7 << 16) | (3 << 8) | 5, D_KAB=(300 << 16) | 700,
                D_SRC2=0x2200, A_SRC=0x2100, O_DST=0x3000)
    out = run(PostSetup(CFG), regs, add=1, unit_clocks=5, unit_err=unit_err, busy_clocks=6)
    a = out["add"]
    # the post-processor gets its command (where to write) before the operands stream
    assert out["start"] == 2 and out["add_start"] == 2
    assert out["o"].base == 0x3000 and out["o"].add == 1
    assert (a.a, a.b, a.n, a.za, a.zb, a.ka, a.kb) == (0x2100, 0x2200, 40, 3, 7, 700, 300)
    assert out["err"] == unit_err


def test_size_multiplier_products():
    """Products of random operands, a clock after they are presented, every other clock while
    a client keeps asking; exact below the address limit."""
    mul = SizeMultiplier(CFG)
    sw = size_bits(CFG)
    rng = random.Random(5)
    pairs = [(rng.randrange(1 << sw), rng.randrange(1 << 8)) for _ in range(40)]
    pairs += [((1 << sw) - 1, 1), (0, (1 << sw) - 1), (1 << (sw - 1), 2)]

    async def bench(ctx):
        for a, b in pairs:
            ctx.set(mul.i.req, 1)
            ctx.set(mul.i.a, a)
            ctx.set(mul.i.b, b)
            assert not ctx.get(mul.i.valid)
            await ctx.tick()
            assert ctx.get(mul.i.valid)
            p = ctx.get(mul.i.p)
            if a * b < 1 << CFG.addr_bits:
                assert p == a * b, (a, b, p)
            else:
                assert p >= 1 << CFG.addr_bits, (a, b, p)
            await ctx.tick()
        ctx.set(mul.i.req, 0)
        await ctx.tick()
        assert not ctx.get(mul.i.valid)

    simulate(mul, bench)


def test_row_blocks_count_a_block_a_clock_and_hold():
    """ceil(wout / L) blocks, one a clock while stepping; the count holds without a step and
    starts again from 0 after a clear, unless it already is that of the new wout (a wout with
    as many blocks as the one before: no clock to count, the same count)."""
    rb = RowBlocks(CFG)

    async def bench(ctx):
        last = 0
        for wout in [1, 2, 3, 4, 10, 95, 96, 97, 96, 94, 95, L * CFG.acc_blocks]:
            ctx.set(rb.wout, wout)
            ctx.set(rb.i.clear, 1)
            await ctx.tick()
            ctx.set(rb.i.clear, 0)
            ctx.set(rb.i.step, 1)
            clocks = 0
            while ctx.get(rb.i.busy):
                await ctx.tick()
                clocks += 1
            wob = -(-wout // L)
            assert clocks == (0 if wob == last else wob), wout
            assert ctx.get(rb.i.wob) == wob and ctx.get(rb.i.cols) == L * wob, wout
            await ctx.tick()            # no more counting once it is done
            ctx.set(rb.i.step, 0)
            for _ in range(3):
                await ctx.tick()
            assert ctx.get(rb.i.wob) == wob
            last = wob

    simulate(rb, bench)
