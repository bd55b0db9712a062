"""The width converters in amaranth.sim: LOADQ's (WordSerializer), every word of every beat,
and ADD's (BeatBytes), each beat's bytes lo..hi-1; in order, under random gaps and
back-pressure, a word or byte a clock when nothing holds it up."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from amsim import simulate
from ffacc.hw.words import BeatBytes, WordSerializer


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


def split(nbytes, beats, *, gaps, stall, seed):
    """``beats`` [(bytes, lo, hi)] through BeatBytes; the bytes out and the clocks taken."""
    dut = BeatBytes(nbytes)
    rng = np.random.default_rng(seed)
    want = sum(hi - lo for _, lo, hi in beats)
    out, clocks = [], []
    payloads = [{"data": list(d), "lo": lo, "hi": hi} for d, lo, hi in beats]

    async def bench(ctx):
        sent = 0
        for t in range(40 * len(beats) + 40):
            if len(out) == want:
                clocks.append(t)
                return
            send = sent < len(beats) and rng.random() >= gaps
            ctx.set(dut.i.valid, int(send))
            if send:
                ctx.set(dut.i.payload, payloads[sent])
            ctx.set(dut.o.ready, int(rng.random() >= stall))
            await ctx.delay(1e-9)
            if send and ctx.get(dut.i.ready):
                sent += 1
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                out.append(ctx.get(dut.o.payload))
            await ctx.tick()
        raise AssertionError("the bytes did not all come out")

    simulate(dut, bench)
    return out, clocks[0]


@pytest.mark.parametrize("nbytes", [1, 4, 8])
@pytest.mark.parametrize("gaps, stall", [(0.0, 0.0), (0.3, 0.0), (0.0, 0.4), (0.3, 0.4)])
def test_beat_bytes_gives_each_beats_range_in_order(nbytes, gaps, stall):
    rng = np.random.default_rng(nbytes + 10)
    beats = []
    for _ in range(30):
        lo = int(rng.integers(0, nbytes))
        hi = int(rng.integers(lo + 1, nbytes + 1))
        beats.append((rng.integers(0, 256, nbytes), lo, hi))
    out, clocks = split(nbytes, beats, gaps=gaps, stall=stall, seed=3)
    want = [int(b) for d, lo, hi in beats for b in d[lo:hi]]
    assert len(want) >= 30 and out == want
    if gaps == stall == 0:
        # a byte a clock, the first a clock after the first beat
        assert clocks == len(want) + 1


def test_beat_bytes_clear_drops_the_beat_held():
    dut = BeatBytes(4)
    out = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for t, (beat, clear) in enumerate([((1, 2, 3, 4), 0), (None, 0), (None, 1),
                                           ((5, 6, 7, 8), 0), (None, 0), (None, 0),
                                           (None, 0), (None, 0)]):
            ctx.set(dut.i.valid, int(beat is not None))
            if beat:
                ctx.set(dut.i.payload, {"data": list(beat), "lo": 0, "hi": 4})
            ctx.set(dut.clear, clear)
            await ctx.delay(1e-9)
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                out.append(ctx.get(dut.o.payload))
            await ctx.tick()

    simulate(dut, bench)
    assert out == [1, 2, 5, 6, 7, 8]


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_beat_bytes_width_must_be_a_bus_width():
    with pytest.raises(ValueError, match="nbytes must be 1, 2, 4 or 8"):
        BeatBytes(3)
