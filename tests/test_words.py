"""The width converter of LOADQ (WordSerializer) in amaranth.sim: every word of every beat, in
order, under random gaps and back-pressure, a word a clock when nothing holds it up."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ffacc.hw.words import WordSerializer


def run(nbytes, beats, *, in_gap=0.0, out_stall=0.0, seed=0, clear_at=None):
    """Offers ``beats`` (ints), the source presenting a beat only while ``i.ready`` is high
    (as the AXI reader does); returns the words seen on ``o`` and the clocks taken."""
    dut = WordSerializer(nbytes)
    rng = np.random.default_rng(seed)
    out = []
    clocks = [0]

    async def bench(ctx):
        sent = 0
        for clock in range(20 * len(beats) + 20):
            if sent == len(beats) and ctx.get(dut.idle):
                break
            ctx.set(dut.o.ready, int(rng.random() >= out_stall))
            ctx.set(dut.clear, int(clock == clear_at))
            await ctx.delay(1e-9)
            offer = sent < len(beats) and rng.random() >= in_gap and ctx.get(dut.i.ready)
            ctx.set(dut.i.valid, int(offer))
            if offer:
                ctx.set(dut.i.payload, beats[sent])
            await ctx.delay(1e-9)
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                out.append(ctx.get(dut.o.payload))
            await ctx.tick()
            sent += bool(offer)
            clocks[0] = clock + 1
        ctx.set(dut.i.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out, clocks[0]


def words_of(nbytes, beats):
    return [(b >> (32 * k)) & 0xFFFFFFFF for b in beats for k in range(nbytes // 4)]


@pytest.mark.parametrize("nbytes", [4, 8])
@pytest.mark.parametrize("in_gap, out_stall", [(0.0, 0.0), (0.3, 0.0), (0.0, 0.4), (0.3, 0.4)])
def test_every_word_in_order(nbytes, in_gap, out_stall):
    rng = np.random.default_rng(nbytes)
    beats = [int(v) for v in rng.integers(0, 1 << 62, 40)]
    beats = [b | (int(rng.integers(0, 4)) << 62) for b in beats]
    out, clocks = run(nbytes, [b & ((1 << (8 * nbytes)) - 1) for b in beats],
                      in_gap=in_gap, out_stall=out_stall, seed=7)
    want = words_of(nbytes, [b & ((1 << (8 * nbytes)) - 1) for b in beats])
    assert len(want) == 40 * nbytes // 4 and out == want
    if in_gap == out_stall == 0:
        # a word a clock: the first a clock after the first beat
        assert clocks == len(want) + 1


def test_clear_drops_the_words_held():
    """The first beat's second word is held when ``clear`` comes: it is dropped, and the next
    beat's words follow."""
    out, _ = run(8, [0x1111111122222222, 0x3333333344444444], clear_at=1)
    assert out == [0x22222222, 0x44444444, 0x33333333]


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_width_must_be_whole_words():
    with pytest.raises(ValueError, match="nbytes=6"):
        WordSerializer(6)
