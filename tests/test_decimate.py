"""The column decimator (LOADA's column step): every 2**shift-th byte of a read, in whole beats."""

import numpy as np
import pytest

from ffacc.hw.decimate import ColumnDecimator

from amsim import simulate, stream_through


def run_decimator(nb, K, reads, *, seed=0, gaps=0.3, stall=0.3):
    """``reads``: (memory, address, kept bytes, shift). Returns each read's output stream,
    from byte 0 of its first beat (the kept bytes' numbering), as a list of bytes."""
    dut = ColumnDecimator(bus_bytes=nb, max_shift=K, max_beats=64)
    rng = np.random.default_rng(seed)
    got = []

    async def bench(ctx):
        for mem, addr, n, k in reads:
            s = 1 << k
            end = addr + (n - 1) * s + 1                  # one past the last kept byte
            a0 = addr - addr % nb
            beats = [mem[a:a + nb] for a in range(a0, end, nb)]
            ctx.set(dut.clear, 1)
            ctx.set(dut.shift, k)
            ctx.set(dut.phase, addr % nb)
            ctx.set(dut.beats, len(beats))
            await ctx.tick()
            ctx.set(dut.clear, 0)
            out = []
            want = -(-len(beats) // s)
            await stream_through(ctx, dut, beats, rng, gaps=gaps, stall=stall,
                                 took=lambda p: out.append(list(p)),
                                 done=lambda sent: len(out) == want,
                                 limit=40 * len(beats) + 40)
            ctx.set(dut.o.ready, 0)
            for _ in range(3):                            # nothing more comes out
                await ctx.tick()
                assert not ctx.get(dut.o.valid)
            got.append(sum(out, []))

    simulate(dut, bench)
    return got


@pytest.mark.parametrize("nb,K", [(4, 2), (8, 3), (2, 1)])
def test_the_kept_bytes_are_every_step_th_from_the_first(nb, K):
    rng = np.random.default_rng(nb)
    mem = rng.integers(0, 256, 512, dtype=np.uint8)
    reads = []
    for k in range(K + 1):
        for addr in (0, 1, nb - 1, 3 * nb + 2, 77):
            for n in (1, 2, 5, 13):
                reads.append((mem, addr, n, k))
    got = run_decimator(nb, K, reads, seed=nb)
    for (m_, addr, n, k), out in zip(reads, got):
        s = 1 << k
        first = addr % nb >> k                            # the first kept byte's place
        assert out[first:first + n] == list(m_[addr:addr + (n - 1) * s + 1:s]), (addr, n, k)
        assert len(out) >= first + n


def test_a_step_of_one_passes_the_beats_in_the_same_clock():
    dut = ColumnDecimator(bus_bytes=4, max_shift=2, max_beats=8)

    async def bench(ctx):
        ctx.set(dut.clear, 1)
        ctx.set(dut.shift, 0)
        ctx.set(dut.beats, 2)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, [1, 2, 3, 4])
        ctx.set(dut.o.ready, 0)
        await ctx.delay(1e-9)
        assert ctx.get(dut.o.valid) and list(ctx.get(dut.o.payload)) == [1, 2, 3, 4]
        assert not ctx.get(dut.i.ready)                   # held by the consumer
        ctx.set(dut.o.ready, 1)
        await ctx.delay(1e-9)
        assert ctx.get(dut.i.ready)

    simulate(dut, bench)


def test_the_configuration_is_checked():
    with pytest.raises(ValueError, match="max_shift"):
        ColumnDecimator(bus_bytes=4, max_shift=3, max_beats=8)
    with pytest.raises(ValueError, match="bus_bytes"):
        ColumnDecimator(bus_bytes=3, max_shift=0, max_beats=8)
