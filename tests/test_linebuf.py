"""The row packer in amaranth.sim: bus beats of a map → line-buffer blocks, against numpy."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ffacc.hw.linebuf import RowPacker


def expected_blocks(rows, L):
    """(data, en, row_end) of every block, row after row."""
    out = []
    for row in rows:
        for b0 in range(0, len(row), L):
            part = list(row[b0:b0 + L])
            out.append((part + [None] * (L - len(part)), len(part), b0 + L >= len(row)))
    return out


def run_packer(L, nb, transfers, *, seed=0, gaps=0.3, stall=0.3):
    """``transfers``: (memory bytes, start address, width, rows). Returns blocks and clocks."""
    dut = RowPacker(L=L, bus_bytes=nb, max_width=64, max_bytes=1024)
    rng = np.random.default_rng(seed)
    got, clocks = [], []

    async def bench(ctx):
        for mem, addr, width, nrows in transfers:
            n = width * nrows
            a0 = addr - addr % nb
            beats = [mem[a:a + nb] for a in range(a0, addr + n, nb)]
            ctx.set(dut.clear, 1)
            ctx.set(dut.skip, addr % nb)
            ctx.set(dut.nbytes, n)
            ctx.set(dut.width, width)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            blocks, sent = [], 0
            for t in range(50 * (len(beats) + n) + 50):
                if sent == len(beats) and ctx.get(dut.idle):
                    break
                send = sent < len(beats) and rng.random() >= gaps
                ctx.set(dut.i.valid, int(send))
                if send:
                    ctx.set(dut.i.payload, list(beats[sent]))
                ctx.set(dut.o.ready, int(rng.random() >= stall))
                await ctx.delay(1e-9)
                if send and ctx.get(dut.i.ready):
                    sent += 1
                if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                    p = ctx.get(dut.o.payload)
                    en = [p.en >> j & 1 for j in range(L)]
                    assert en == sorted(en, reverse=True), en      # a prefix of the block
                    k = sum(en)
                    blocks.append(([p.data[j] for j in range(k)] + [None] * (L - k), k,
                                   bool(p.row_end)))
                await ctx.tick()
            else:
                raise AssertionError("the transfer did not finish")
            ctx.set(dut.i.valid, 0)
            got.append(blocks)
            clocks.append(t)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, clocks


@pytest.mark.parametrize("L,nb", [(3, 4), (2, 4), (3, 8), (4, 4), (6, 8), (1, 4)])
def test_blocks_are_the_rows_cut_at_L(L, nb):
    rng = np.random.default_rng(L * 10 + nb)
    mem = bytes(rng.integers(0, 256, 512, dtype=np.uint8))
    transfers = [(mem, int(rng.integers(0, 64)), int(w), int(r))
                 for w, r in ((1, 3), (L, 2), (L + 1, 2), (7, 4), (17, 1), (32, 3))]
    got, _ = run_packer(L, nb, transfers)
    for (m, addr, width, nrows), blocks in zip(transfers, got):
        rows = [m[addr + r * width:addr + (r + 1) * width] for r in range(nrows)]
        assert blocks == expected_blocks(rows, L), (addr, width, nrows)


def test_a_block_a_clock():
    """Without gaps or back-pressure a 32-byte row from an unaligned start takes about
    ceil(32 / 3) = 11 clocks on a 4-byte bus, not 32."""
    mem = bytes(range(256))
    _, clocks = run_packer(3, 4, [(mem, 5, 32, 4)], gaps=0, stall=0)
    assert clocks[0] <= 4 * 11 + 4, clocks
