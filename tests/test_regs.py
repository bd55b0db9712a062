"""The parameter registers in amaranth.sim: writes, the hot copies, the RAM read a clock later,
and SET's width check."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ffacc.firmware.isa import Reg, reg_bits
from ffacc.hw.config import ACCEL_PRESETS
from ffacc.hw.regs import COLD, ParamRegs


@pytest.mark.parametrize("lutram", [True, False])
@pytest.mark.parametrize("preset", ["tiny", "icebreaker"])
def test_registers_hold_what_was_written(preset, lutram):
    """Random writes: each hot register's copy and the RAM's word (for the cold registers, and
    for every register where INC reads it, with hardware loops) are the last value written,
    modulo the width; the RAM's word the clock after its index, before a write in the clock
    it is read, or after it with hardware loops (distributed RAM and a flip-flop, or a block
    RAM: the same)."""
    cfg = ACCEL_PRESETS[preset]
    dut = ParamRegs(cfg, lutram=lutram)
    rb = reg_bits(cfg)
    rng = np.random.default_rng(len(preset))
    model = {r: 0 for r in Reg}
    in_ram = [r for r in Reg if r in COLD or cfg.loop_depth]

    async def bench(ctx):
        shown = None                    # the register r_data shows (read at the last tick)
        for _ in range(200):
            r = Reg(int(rng.integers(len(Reg))))
            v = int(rng.integers(0, 1 << 34))
            ctx.set(dut.w.valid, 1)
            ctx.set(dut.w.payload, {"reg": r, "value": v})
            # a read in the clock of a write to the same register gives the value before it,
            # or, with hardware loops (an INC reads its register then), the value written
            old = dict(model)
            await ctx.tick()
            model[r] = v & ((1 << rb[r]) - 1)
            if shown is not None:
                want = (model if cfg.loop_depth else old)[shown]
                assert ctx.get(dut.cold(shown)) == want, shown
            ctx.set(dut.w.valid, 0)
            for h in dut.hot_regs:
                assert ctx.get(dut.hot[h.name.lower()]) == model[h], h
            q = in_ram[int(rng.integers(len(in_ram)))]
            ctx.set(dut.r_addr, q)
            # the value comes the clock after its index, not before
            await ctx.delay(1e-9)
            if shown is not None and want != model[q]:
                assert ctx.get(dut.cold(shown)) == want, (shown, q)
            await ctx.tick()
            assert ctx.get(dut.cold(q)) == model[q], q
            shown = q

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_set_width_check():
    cfg = ACCEL_PRESETS["tiny"]
    dut = ParamRegs(cfg)
    rb = reg_bits(cfg)

    async def bench(ctx):
        for r in Reg:
            for v, wide in ((0, False), ((1 << min(rb[r], 32)) - 1, False),
                            (1 << rb[r] if rb[r] < 32 else 0, rb[r] < 32)):
                ctx.set(dut.chk_reg, r)
                ctx.set(dut.chk_value, v)
                await ctx.delay(1e-9)
                assert ctx.get(dut.chk_wide) == wide, (r, v)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
