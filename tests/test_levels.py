"""Non-uniform activation levels: the LevelMap after the requantizer (hw/levels.py) in
amaranth.sim against the golden model's definition, every byte; the registers' packing; the
POST check; and the ISS running a POST with levels."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ffacc.firmware.checks import CheckError, enforce
from ffacc.firmware.isa import (ISAError, LEVEL_REGS, MAX_LEVELS, Op, PostFlag, Reg,
                                pack_levels, reg_bits, unpack_levels)
from ffacc.hw.config import ACCEL_PRESETS
from ffacc.hw.levels import LevelMap
from ffacc.sim import golden


def _level_sets(signed):
    lo, hi = (-128, 127) if signed else (0, 255)
    rng = np.random.default_rng(5)
    sets = [[lo, hi], [lo, lo + 1], [hi - 1, hi], list(range(lo, lo + 16)),
            list(range(hi - 15, hi + 1)), list(range(lo, lo + 64)), list(range(hi - 63, hi + 1))]
    for n in (3, 7, 16, 17, 33, 64):
        sets.append(sorted(int(v) for v in rng.choice(np.arange(lo, hi + 1), n, replace=False)))
    return sets


@pytest.mark.parametrize("signed", [False, True])
def test_every_value_maps_to_the_golden_models_level(signed):
    """Every byte through LevelMap against golden.to_levels (and, with ``codes``,
    golden.to_codes): midpoint thresholds (the compiler's) and, for the same levels,
    thresholds at both ends of the range (any are legal), and n = 0 (every value itself).
    A value a clock, each out two clocks after it enters, row ends passed along."""
    dut = LevelMap(signed)
    cases = []
    for lv in _level_sets(signed):
        cases.append((lv, [int(t) for t in golden.level_thresholds(lv)]))
        cases.append((lv, sorted([lv[0]] * (len(lv) - 1))))
    values = np.arange(256)
    as_value = values - 256 * (signed & (values >= 128))
    rowend = [int(b % 7 == 6) for b in range(256)]

    async def bench(ctx):
        ctx.set(dut.en, 1)
        ctx.set(dut.o.ready, 1)
        for (lv, th), codes in [(c, k) for c in cases for k in (0, 1)] + [((None, None), 0)]:
            n = 0 if lv is None else len(lv)
            ctx.set(dut.levels.n, n)
            ctx.set(dut.codes, codes)
            for j in range(MAX_LEVELS - 1):
                ctx.set(dut.levels.t[j], (th[j] if lv and j < len(th) else 0x5A) & 0xFF)
            for j in range(MAX_LEVELS):
                ctx.set(dut.levels.l[j], (lv[j] if lv and j < n else 0xA5) & 0xFF)
            want = (values if lv is None else golden.to_codes(as_value, th) if codes
                    else golden.to_levels(as_value, th, lv) & 0xFF)
            got = []
            for t in range(256 + 2):
                ctx.set(dut.i.valid, int(t < 256))
                ctx.set(dut.i.payload.data, t % 256)
                ctx.set(dut.i.payload.rowend, rowend[t % 256])
                await ctx.delay(1e-9)
                assert ctx.get(dut.i.ready)
                if ctx.get(dut.o.valid):
                    got.append((ctx.get(dut.o.payload.data), ctx.get(dut.o.payload.rowend)))
                assert len(got) == max(0, t - 1)            # two clocks after it entered
                await ctx.tick()
            assert got == [(int(w), r) for w, r in zip(want, rowend)], (lv, th, codes)
            assert ctx.get(dut.empty)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_the_registers_hold_levels_and_thresholds_as_bytes():
    lv, th = [-100, -3, 0, 120], [-50, -1, 60]
    regs = pack_levels(lv, th)
    # only the words that hold a level or threshold
    assert regs[Reg.O_NLEV] == 4 and set(regs) == {Reg.O_NLEV, Reg.O_TH0, Reg.O_LV0}
    assert regs[Reg.O_LV0] == (-100 & 0xFF) | (-3 & 0xFF) << 8 | 0 << 16 | 120 << 24
    assert regs[Reg.O_TH0] == (-50 & 0xFF) | 0xFF << 8 | 60 << 16
    assert unpack_levels(regs, True) == (4, th, lv)
    lv = list(range(-32, 32))
    regs = pack_levels(lv, lv[1:])
    assert regs[Reg.O_NLEV] == 64 and set(regs) == {Reg.O_NLEV, *LEVEL_REGS}
    assert regs[Reg.O_LV15] == 28 & 0xFF | 29 << 8 | 30 << 16 | 31 << 24
    assert regs[Reg.O_TH15] == 29 | 30 << 8 | 31 << 16
    assert unpack_levels(regs, True) == (64, lv[1:], lv)
    with pytest.raises(ISAError, match="65 levels"):
        pack_levels(list(range(65)), list(range(64)))
    with pytest.raises(ISAError, match="one threshold fewer"):
        pack_levels([0, 5, 9], [3])


def test_a_post_with_one_level_fails_its_check():
    cfg = ACCEL_PRESETS["tiny"]
    regs = {r: 0 for r in Reg}
    regs.update({Reg.C_LANES: 1, Reg.C_NY: 1, Reg.C_WOUT: 1, Reg.O_STRIDE: 1})
    enforce(Op.POST, cfg, regs)                     # no levels
    for n in (2, 16, 17, 64):
        enforce(Op.POST, cfg, {**regs, Reg.O_NLEV: n})
    for n in (1, 65, 127):
        with pytest.raises(CheckError, match="output levels"):
            enforce(Op.POST, cfg, {**regs, Reg.O_NLEV: n})
    # codes are 4 bits: a POST that writes them names at most 16 levels
    enforce(Op.POST, cfg, {**regs, Reg.O_NLEV: 16}, flags=PostFlag.CODES)
    with pytest.raises(CheckError, match="at most 16 levels"):
        enforce(Op.POST, cfg, {**regs, Reg.O_NLEV: 17}, flags=PostFlag.CODES)
    # without act_codes nothing reads O_NLEV (it is a bit wide)
    enforce(Op.POST, ACCEL_PRESETS["icebreaker"], {**regs, Reg.O_NLEV: 1})


def test_without_act_codes_the_level_registers_are_a_bit_wide():
    small = ACCEL_PRESETS["icebreaker"]
    assert not small.act_codes
    rb = reg_bits(small)
    assert rb[Reg.O_NLEV] == 1 and all(rb[r] == 1 for r in LEVEL_REGS)
    assert reg_bits(ACCEL_PRESETS["tiny"])[Reg.O_NLEV] == 7
