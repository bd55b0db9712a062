"""The FCU array (hw/fcu.py FcuArray) in amaranth.sim: from one weight-buffer word each lane
takes its own weights, all lanes take the same beats, and every lane's sums are those of a
lone FastConvUnit given that lane's weights (the unit's own tests check its arithmetic); with
mac_pairs, lane ``lanes + k`` is unit ``k``'s second output channel of a MAC beat."""

from dataclasses import replace

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from ffacc.hw.config import ACCEL_PRESETS
from ffacc.hw.fcu import FastConvUnit, FcuArray


@pytest.mark.parametrize("banks,pairs", [(1, False), (3, False), (3, True)])
def test_each_lane_computes_with_its_own_weights(banks, pairs):
    fc = replace(ACCEL_PRESETS["tiny"].fcu, mac_pairs=pairs)
    P, R, L = 3, fc.rows, fc.L
    words = fc.ffa.M * fc.subtaps
    m = Module()
    arr = m.submodules.arr = FcuArray(fc, lanes=P, banks=banks)
    refs = [FastConvUnit(fc, input_reg=False, banks=banks, write_rows=R) for _ in range(P)]
    for k, f in enumerate(refs):
        m.submodules[f"ref{k}"] = f
    rng = np.random.default_rng(banks)
    glo, ghi = -(1 << (fc.gweight_shape.width - 1)), 1 << (fc.gweight_shape.width - 1)
    alo, ahi = (-128, 128) if fc.act_signed else (0, 256)

    async def bench(ctx):
        for f in refs:
            ctx.set(f.o.ready, 1)
        compared = pair_beats = 0
        for step in range(120):
            write = step % 17 == 0
            bank = int(rng.integers(banks))
            w = rng.integers(glo, ghi, (R, P, words))
            ctx.set(arr.w_en, write)
            ctx.set(arr.w_bank, bank)
            for r in range(R):
                for k in range(P):
                    for j in range(words):
                        ctx.set(arr.w_data[r][k][j], int(w[r, k, j]))
            for k, f in enumerate(refs):
                ctx.set(f.w_en, write)
                ctx.set(f.w_addr, 0)
                if banks > 1:
                    ctx.set(f.w_bank, bank)
                for r in range(R):
                    for j in range(words):
                        ctx.set(f.w_data[r * words + j], int(w[r, k, j]))
            valid = not write and rng.random() < 0.8
            x = rng.integers(alo, ahi, (R, L))
            mac = int(step // 40 == 1)           # a stretch in MAC mode
            beat_bank = int(rng.integers(banks))
            ctx.set(arr.i.valid, valid)
            ctx.set(arr.mac, mac)
            ctx.set(arr.i.payload.bank, beat_bank)
            for f in refs:
                ctx.set(f.i.valid, valid)
                ctx.set(f.mac, mac)
            for r in range(R):
                for j in range(L):
                    ctx.set(arr.i.payload.x[r][j], int(x[r, j]))
                    for f in refs:
                        (ctx.set(f.i.payload.x[r][j], int(x[r, j])) if banks > 1
                         else ctx.set(f.i.payload[r][j], int(x[r, j])))
            if banks > 1:
                for f in refs:
                    ctx.set(f.i.payload.bank, beat_bank)
            assert ctx.get(arr.o_valid) == ctx.get(refs[0].o.valid)
            assert ctx.get(arr.o_next) == ctx.get(refs[0].o_next)
            if ctx.get(arr.o_valid):
                for k, f in enumerate(refs):
                    y = f.o.payload.y if pairs else f.o.payload
                    assert [ctx.get(arr.o[k][j]) for j in range(L)] == \
                        [ctx.get(y[j]) for j in range(L)], (step, k)
                    if pairs:
                        assert ctx.get(arr.o_pair) == ctx.get(f.o.payload.mac)
                        if ctx.get(arr.o_pair):
                            assert [ctx.get(arr.o[P + k][j]) for j in range(L)] == \
                                [ctx.get(f.o.payload.y2[j]) for j in range(L)], (step, k)
                            pair_beats += 1
                compared += 1
            await ctx.tick()
        assert compared > 40 and (pair_beats > 10 or not pairs)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
