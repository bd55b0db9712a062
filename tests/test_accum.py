"""The accumulators (hw/accum.py) in amaranth.sim: random beats added by read-modify-write
(a band's first pass replaces), back to back and with gaps, wrapping at 32 bits; read back
through the post-processor's port, its own or the shared one; against numpy. With
``pair_from`` (mac_pairs) the lanes from it are written only by beats marked ``beat_pair``."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ffacc.hw.accum import Accumulators

LANES, L, BLOCKS, BITS = 2, 3, 8, 24


@pytest.mark.parametrize("own_port,pair_from", [(True, None), (False, None), (True, 1)])
def test_beats_accumulate_and_read_back(own_port, pair_from):
    dut = Accumulators(lanes=LANES, L=L, blocks=BLOCKS, beat_bits=BITS, own_port=own_port,
                       pair_from=pair_from)
    rng = np.random.default_rng(int(own_port))
    # the lanes a beat writes: all, or (pair_from) those below it unless the beat is a pair's
    lanes_of = {True: slice(None), False: slice(0, pair_from or LANES)}
    pairs = [0, 0]                          # beats without and with the pair bit
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
                pair = pair_from is None or bool(rng.random() < 0.5)
                if pair_from is not None:
                    ctx.set(dut.beat_pair, pair)
                    pairs[pair] += 1
                w = lanes_of[pair]
                model[w, addr] = wrap((0 if first else model[w, addr]) + beat[w])
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
            if pair_from is not None:
                ctx.set(dut.beat_pair, 1)
            model[:, addr] = wrap((0 if first else model[:, addr]) + beat)
            await ctx.tick()
        got = await read_all(ctx)
        touched = sorted(seen_first)
        assert touched, "no beats"
        assert np.array_equal(got[:, touched], model[:, touched])
        assert pair_from is None or min(pairs) > 20, pairs

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
