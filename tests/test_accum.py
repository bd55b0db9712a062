"""The accumulators (hw/accum.py) in amaranth.sim: random beats added by read-modify-write
(a band's first pass replaces), back to back and with gaps, wrapping at 32 bits; read back
through the post-processor's port, its own or the shared one; against numpy."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ffacc.hw.accum import Accumulators

LANES, L, BLOCKS, BITS = 2, 3, 8, 24


@pytest.mark.parametrize("own_port", [True, False])
def test_beats_accumulate_and_read_back(own_port):
    dut = Accumulators(lanes=LANES, L=L, blocks=BLOCKS, beat_bits=BITS, own_port=own_port)
    rng = np.random.default_rng(int(own_port))
    model = np.zeros((LANES, BLOCKS, L), dtype=np.int64)
    seen_first = set()

    def wrap(v):
        return ((v + (1 << 31)) % (1 << 32)) - (1 << 31)

    async def read_all(ctx):
        """Every block through the post-processor's port: the words a clock after."""
        ctx.set(dut.post_reading, 1)
        ctx.set(dut.post_en, 1)
        got = np.zeros_like(model)
        for b in range(BLOCKS):
            ctx.set(dut.post_addr, b)
            await ctx.tick()
            word = ctx.get(dut.post_data)
            for lane in range(LANES):
                for q in range(L):
                    v = (word >> (32 * (lane * L + q))) & 0xFFFFFFFF
                    got[lane, b, q] = v - (1 << 32) if v >> 31 else v
        ctx.set(dut.post_reading, 0)
        return got

    async def bench(ctx):
        ctx.set(dut.post_en, 1)             # an idle post-processor leaves its port enabled
        pending = None                      # the beat of this clock: (addr, first)
        for step in range(300):
            beat = rng.integers(-(1 << (BITS - 1)), 1 << (BITS - 1), (LANES, L))
            if pending is not None:
                addr, first = pending
                for lane in range(LANES):
                    for q in range(L):
                        ctx.set(dut.beat[lane][q], int(beat[lane, q]))
                model[:, addr] = wrap((0 if first else model[:, addr]) + beat)
                assert ctx.get(dut.busy) == 1
            else:
                assert ctx.get(dut.busy) == 0
            written, pending = pending, None
            if rng.random() < 0.75:         # gaps between beats, and back to back
                # (never into the block the beat of this clock writes: the contract)
                prev = written[0] if written is not None else None
                addr = int(rng.choice([b for b in range(BLOCKS) if b != prev]))
                first = addr not in seen_first or rng.random() < 0.1
                seen_first.add(addr)
                ctx.set(dut.nxt.valid, 1)
                ctx.set(dut.nxt.payload, {"addr": addr, "first": first})
                pending = (addr, first)
            else:
                ctx.set(dut.nxt.valid, 0)
            await ctx.tick()
        ctx.set(dut.nxt.valid, 0)
        if pending is not None:             # the last beat
            addr, first = pending
            beat = rng.integers(-(1 << (BITS - 1)), 1 << (BITS - 1), (LANES, L))
            for lane in range(LANES):
                for q in range(L):
                    ctx.set(dut.beat[lane][q], int(beat[lane, q]))
            model[:, addr] = wrap((0 if first else model[:, addr]) + beat)
            await ctx.tick()
        got = await read_all(ctx)
        touched = sorted(seen_first)
        assert touched, "no beats"
        assert np.array_equal(got[:, touched], model[:, touched])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_a_post_read_beside_the_adds_with_its_own_port():
    """With its own port, the post-processor reads a block while beats add into another."""
    dut = Accumulators(lanes=1, L=1, blocks=4, beat_bits=8, own_port=True)

    async def bench(ctx):
        for addr, v in ((0, 5), (1, 7)):
            ctx.set(dut.nxt.valid, 1)
            ctx.set(dut.nxt.payload, {"addr": addr, "first": 1})
            await ctx.tick()
            ctx.set(dut.nxt.valid, 0)
            ctx.set(dut.beat[0][0], v)
            await ctx.tick()
        # block 1 adds 3 while block 0 is read
        ctx.set(dut.nxt.valid, 1)
        ctx.set(dut.nxt.payload, {"addr": 1, "first": 0})
        ctx.set(dut.post_en, 1)
        ctx.set(dut.post_addr, 0)
        await ctx.tick()
        ctx.set(dut.nxt.valid, 0)
        ctx.set(dut.beat[0][0], 3)
        assert ctx.get(dut.post_data) == 5
        ctx.set(dut.post_addr, 1)
        await ctx.tick()
        await ctx.tick()
        assert ctx.get(dut.post_data) == 10

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
