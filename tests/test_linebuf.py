"""The line buffer in amaranth.sim, against numpy: the row packer (bus beats of a map →
line-buffer blocks) and the buffer (blocks in, every engine's window of a row out)."""

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from ffacc.hw.linebuf import LineBuffer, RowPacker

from amsim import stream_through


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
            blocks = []

            def took(p):
                en = [p.en >> j & 1 for j in range(L)]
                assert en == sorted(en, reverse=True), en      # a prefix of the block
                k = sum(en)
                blocks.append(([p.data[j] for j in range(k)] + [None] * (L - k), k,
                               bool(p.row_end)))

            t = await stream_through(
                ctx, dut, beats, rng, gaps=gaps, stall=stall, took=took,
                done=lambda sent: sent == len(beats) and ctx.get(dut.idle),
                limit=50 * (len(beats) + n) + 50)
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


def packer_last_block_clock(L, nb, width, rows, skip, burst, gap):
    """The clock (from the first beat's) the packer gives out a read's last block, its beats
    offered back to back but ``gap`` clocks apart after each burst of ``burst``, as the read
    DMA gives them; the bytes are checked on the way."""
    dut = RowPacker(L=L, bus_bytes=nb, max_width=64, max_bytes=1024)
    n = width * rows
    nbeats = -(-(skip + n) // nb)
    res = {}

    async def bench(ctx):
        ctx.set(dut.clear, 1)
        ctx.set(dut.skip, skip)
        ctx.set(dut.nbytes, n)
        ctx.set(dut.width, width)
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        clk = beat = offered = 0
        out = []
        while len(out) < n:
            v = beat < nbeats and clk >= offered
            ctx.set(dut.i.valid, v)
            if v:
                ctx.set(dut.i.payload, [(beat * nb + j) % 256 for j in range(nb)])
            took = v and ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid):
                p = ctx.get(dut.o.payload)
                out += [p.data[j] for j in range(L) if p.en >> j & 1]
                res["last"] = clk
            if len(out) < n:
                await ctx.tick()
                if took:
                    beat += 1
                    offered = clk + 1 + (gap if beat % burst == 0 else 0)
                clk += 1
                assert clk < 1000
        res["out"] = out

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert res["out"] == [v % 256 for v in range(skip, skip + n)]
    return res["last"]


@pytest.mark.parametrize("L, nb", [(3, 4), (2, 4), (3, 8)])
def test_the_packers_clocks_are_the_cycle_models(L, nb):
    """The ISS's LOADA cost (sim/cycles.py packer_clocks) takes the packer's rules clock by
    clock: rows whose width L does not divide (their last block is short, and the packer's
    registered ready takes a beat the room after it allows), unaligned starts, burst gaps."""
    from ffacc.sim.cycles import packer_clocks
    for width, rows, skip, burst in [(7, 3, 3, 2), (8, 3, 1, 2), (13, 3, 0, 2), (14, 3, 3, 2),
                                     (5, 1, 1, 16), (32, 2, 1, 16), (3, 3, 0, 2), (56, 1, 2, 4)]:
        got = packer_last_block_clock(L, nb, width, rows, skip, burst, gap=2)
        want = packer_clocks(width * rows, width, L, nb, skip=skip, burst=burst, gap=2)
        assert got == want, (width, rows, skip, burst)


def run_line_buffer(L, engines, banks, slots, blocks, act_signed, seed, nbeats=120):
    """Write every row of the buffer in blocks (then overwrite random columns through partial
    enables), read ``nbeats`` random beats (distinct banks, columns across both edges, random
    gaps); returns (every beat's expected x and tag, every beat the buffer gave out)."""
    act = signed(8) if act_signed else unsigned(8)
    dut = LineBuffer(L=L, engines=engines, banks=banks, slots=slots, blocks=blocks,
                     act_shape=act, col_shape=signed(8), tags=3)
    rng = np.random.default_rng(seed)
    nrows, width = banks * slots, L * blocks
    lo, hi = (-128, 128) if act_signed else (0, 256)
    mem = rng.integers(lo, hi, (nrows, width))
    writes = [(g, b, mem[g, L * b:L * b + L], (1 << L) - 1)
              for g in range(nrows) for b in range(blocks)]
    for _ in range(40):                     # partial blocks: only the enabled columns change
        g, b, en = int(rng.integers(nrows)), int(rng.integers(blocks)), int(rng.integers(1 << L))
        new = rng.integers(lo, hi, L)
        for j in range(L):
            if en >> j & 1:
                mem[g, L * b + j] = new[j]
        writes.append((g, b, new, en))
    beats, want, got = [], [], []
    for _ in range(nbeats):
        rows = [int(bank + banks * rng.integers(slots))
                for bank in rng.permutation(banks)[:engines]]
        use, act_ = int(rng.integers(1 << engines)), int(rng.integers(1 << engines))
        col, w, zero, tag = (int(rng.integers(-2 * L, width + L)), int(rng.integers(1, width + 1)),
                             int(rng.integers(lo, hi)), int(rng.integers(3)))
        beats.append((rows, use, act_, col, w, zero, tag))
        x = [[0 if not act_ >> e & 1 else
              int(mem[rows[e], col + q]) if use >> e & 1 and 0 <= col + q < w else zero
              for q in range(L)] for e in range(engines)]
        want.append((x, tag))

    async def bench(ctx):
        for g, b, d, en in writes:
            ctx.set(dut.w.valid, 1)
            ctx.set(dut.w.payload, {"row": g, "blk": b, "data": [int(v) for v in d], "en": en})
            await ctx.tick()
        ctx.set(dut.w.valid, 0)
        pending = list(beats)
        for _ in range(4 * nbeats + 10):
            issue = bool(pending) and rng.random() < 0.7
            ctx.set(dut.r.valid, int(issue))
            if issue:
                rows, use, act_, col, w, zero, tag = pending.pop(0)
                ctx.set(dut.r.payload, {"row": rows, "use": use, "act": act_, "blk": col // L,
                                        "rot": col % L, "col": col, "tag": tag})
                ctx.set(dut.width, w)
                ctx.set(dut.zero, zero)
            await ctx.delay(1e-9)
            if ctx.get(dut.o.valid):
                p = ctx.get(dut.o.payload)
                got.append(([[int(p.x[e][q]) for q in range(L)] for e in range(engines)],
                            int(p.tag)))
            await ctx.tick()
        assert not pending

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return want, got


@pytest.mark.parametrize("L,engines,banks,slots,blocks,act_signed", [
    (3, 2, 2, 4, 3, False), (3, 3, 4, 2, 4, False), (2, 1, 1, 8, 5, True),
    (4, 4, 4, 2, 2, True), (3, 2, 4, 2, 3, False)])
def test_line_buffer_reads_every_engines_window(L, engines, banks, slots, blocks, act_signed):
    """Each beat gives, two clocks after its request, every engine's ``L`` columns from any
    column (a rotation across sub-banks), the zero point outside the map or for a row not
    used, and 0 for an engine not in the pass."""
    want, got = run_line_buffer(L, engines, banks, slots, blocks, act_signed,
                                seed=L * 100 + engines * 10 + banks)
    assert len(got) == len(want) > 0
    for k, (w, g) in enumerate(zip(want, got)):
        assert g == w, f"beat {k}"


def test_line_buffer_refuses_too_few_banks():
    with pytest.raises(ValueError, match="banks=2"):
        LineBuffer(L=3, engines=3, banks=2, slots=4, blocks=2, act_shape=unsigned(8),
                   col_shape=signed(8))
