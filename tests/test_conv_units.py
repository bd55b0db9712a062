"""The CONV sequencer's parts in amaranth.sim, each against the command's meaning: the piece's
first column as block and rotation (PieceColumn), a pass's beats (BeatStream) and where each
output beat accumulates (OutputPlacer). tests/test_conv_seq.py runs them together."""

import numpy as np
import pytest

from ffacc.hw.conv import BeatStream, OutputPlacer, PieceColumn, conv_bounds
from amsim import simulate
from test_conv_seq import make_buffer


@pytest.mark.parametrize("parallel", [(3,), (2,)])
def test_piece_column_divides_every_legal_column(parallel):
    cfg, _ = make_buffer(False, parallel=parallel)
    g = conv_bounds(cfg)
    L, K0 = cfg.L, g["K0"]
    dut = PieceColumn(cfg)
    cols = list(range(-g["col_lo"], g["n_kw"] + 1))
    seen = []

    async def bench(ctx):
        for col in cols:
            ctx.set(dut.start, 1)
            ctx.set(dut.col, col)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.col, 0)                 # sampled with start only
            clocks = 0
            while not ctx.get(dut.done):
                await ctx.tick()
                clocks += 1
            blk, rot = ctx.get(dut.blk), ctx.get(dut.rot)
            await ctx.tick()                    # it holds until the next start
            assert (ctx.get(dut.blk), ctx.get(dut.rot)) == (blk, rot)
            seen.append((ctx.get(dut.col0), blk, rot, clocks))

    simulate(dut, bench)
    assert seen == [(c, c // L, c % L, c // L + K0) for c in cols]


def beats_of(cmd, eng, col0, L, row_bits):
    """A pass's beats: (rows, use, column) of each, and the index of a beat that reads a row
    outside the loaded band (or None)."""
    out, bad = [], None
    for y in range(cmd["y0"], cmd["y0"] + cmd["ny"]):
        for b in range(cmd["bk"] if y == cmd["y0"] + cmd["ny"] - 1 else cmd["pb"]):
            rows, use = [], 0
            for r, (act, G, h0) in enumerate(eng):
                h = y + h0
                ok = act and 0 <= h < cmd["h"]
                use |= ok << r
                rows.append((G + y) % (1 << row_bits))
                if ok and not 0 <= h - cmd["hb0"] < cmd["pitch"] and bad is None:
                    bad = len(out)
            out.append((tuple(rows), use, col0 + L * b))
    return out, bad


@pytest.mark.parametrize("case", ["inside", "padding", "bottom", "outside", "chained",
                                  "chained1"])
def test_beat_stream_reads_every_engine_row_and_column(case):
    """A pass's rows of bk beats each, or chained (each row but the last pb beats; also a
    pass of one row); rows above and below the map read padding."""
    cfg, lb = make_buffer(False, rows=2)
    L = cfg.L
    dut = BeatStream(cfg, lb.r.payload.shape())
    cmd = dict(y0=3, bk=4, pb=4, ny=3, h=8, hb0=2, pitch=6)
    if case.startswith("chained"):
        cmd.update(pb=3, ny=3 if case == "chained" else 1)
    eng = [(1, 5, -1), (1, 9, 0)]
    if case == "padding":
        eng = [(1, 5, -4), (0, 9, 7)]           # rows above the map, an idle engine
        cmd["hb0"] = 0
    if case == "bottom":
        eng = [(1, 5, 1), (1, 9, 2)]            # rows 4..7 of a 6-row map: 6 and 7 are below
        cmd["h"] = 6
    if case == "outside":
        cmd["pitch"] = 3                        # the band is rows 2..4: engine 1 at y = 5 is out
    col0, blk, rot = -2, -1, 1
    want, bad_at = beats_of(cmd, eng, col0, L, len(dut.lb.payload.row[0]))
    assert (bad_at is not None) == (case == "outside")
    got, last, bad = [], [], []

    async def bench(ctx):
        for k, v in cmd.items():
            ctx.set(getattr(dut.cmd, k), v)
        for r, (act, G, h0) in enumerate(eng):
            ctx.set(dut.act, ctx.get(dut.act) | act << r)
            ctx.set(dut.G[r], G)
            ctx.set(dut.h0[r], h0)
        ctx.set(dut.col0, col0)
        ctx.set(dut.colblk0, blk)
        ctx.set(dut.rot, rot)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for r in range(len(eng)):               # sampled with start (the next pass's setup
                                                # writes them meanwhile)
            ctx.set(dut.G[r], 17 + r)
            ctx.set(dut.h0[r], 3 - r)
        rng = np.random.default_rng(0)
        after = 0
        while after < 4:                        # the beats, then 4 clocks without one
            go = len(got) < len(want) and rng.random() < 0.7    # gaps between beats
            after += len(got) == len(want)
            ctx.set(dut.issue, int(go))
            assert ctx.get(dut.lb.valid) == go
            if go:
                p = ctx.get(dut.lb.payload)
                blk_bits = len(dut.lb.payload.blk)
                assert p.blk == (blk + (p.col - col0) // L) % (1 << blk_bits) and p.rot == rot
                got.append((tuple(p.row), p.use, p.col))
                last.append(ctx.get(dut.last))
            await ctx.tick()
            # flagged the clock after the beat, and never after a clock without one (the
            # counters then point at rows no beat reads)
            if ctx.get(dut.bad):
                assert go, "bad without a beat"
                bad.append(len(got) - 1)

    simulate(dut, bench)
    assert got == want
    assert last == [0] * (len(want) - 1) + [1]
    assert bad == [k for k in range(len(want)) if _out(eng, cmd, k)]
    assert bool(bad) == (case == "outside")


def _out(eng, cmd, k):
    """Whether beat ``k`` reads a row outside the band."""
    y = cmd["y0"] + min(k // cmd["pb"], cmd["ny"] - 1)
    return any(act and 0 <= y + h0 < cmd["h"] and not 0 <= y + h0 - cmd["hb0"] < cmd["pitch"]
               for act, _, h0 in eng)


@pytest.mark.parametrize("overwrite, chain, ny", [(0, 0, 2), (1, 0, 2), (1, 1, 3), (0, 1, 1),
                                                  (1, 0, 1)])
def test_output_placer_names_each_kept_beat_its_block(overwrite, chain, ny):
    """Beat g of a pass (after the D leading ones) is row (g - D) // pb's block
    (g - D) % pb, kept below wob; pb = bk - chain."""
    cfg, _ = make_buffer(False)
    D, wob, acc, passes = 1, 3, 10, 3
    pb = D + wob - chain
    cmd = dict(D=D, wob=wob, bk=D + wob, pb=pb, ny=ny, acc=acc, overwrite=overwrite)
    dut = OutputPlacer(cfg)
    per_pass = (ny - 1) * pb + D + wob
    # (block, overwrite, the beat out it comes with)
    want = [(acc + (g - D) // pb * wob + (g - D) % pb, overwrite and p == 0, p * per_pass + g)
            for p in range(passes) for g in range(per_pass) if g >= D and (g - D) % pb < wob]
    n = passes * per_pass
    got = []

    async def bench(ctx):
        for k, v in cmd.items():
            ctx.set(getattr(dut.cmd, k), v)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        rng = np.random.default_rng(1)
        issued = out = 0
        pipe = []                                   # beats in the FCUs: clocks left
        while out < n:
            go = issued < n and rng.random() < 0.6
            ctx.set(dut.issue, int(go))
            nxt = bool(pipe) and pipe[0] == 0
            ctx.set(dut.o_next, int(nxt))
            assert ctx.get(dut.pending) == (issued > out)
            assert nxt or not ctx.get(dut.acc_valid)        # a block only for a beat out
            if nxt:
                pipe.pop(0)
                if ctx.get(dut.acc_valid):
                    got.append((ctx.get(dut.acc_addr), bool(ctx.get(dut.acc_first)), out))
                out += 1
            pipe = [t - 1 if t else 0 for t in pipe]
            if go:
                pipe.append(3)
                issued += 1
            await ctx.tick()
        ctx.set(dut.issue, 0)
        ctx.set(dut.o_next, 0)
        await ctx.tick()
        assert ctx.get(dut.pending) == 0

    simulate(dut, bench)
    assert got == [(a, bool(f), k) for a, f, k in want] and len(got) == passes * ny * wob


def test_output_placer_restarts_at_a_command():
    """A new command's first beat goes to its own first block, whatever the last one left."""
    cfg, _ = make_buffer(False)
    dut = OutputPlacer(cfg)
    got = []

    async def bench(ctx):
        for acc in (5, 20):
            for k, v in dict(D=0, wob=2, bk=2, pb=2, ny=3, acc=acc, overwrite=1).items():
                ctx.set(getattr(dut.cmd, k), v)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for _ in range(3):                      # half a pass, then the next command
                ctx.set(dut.o_next, 1)
                got.append(ctx.get(dut.acc_addr))
                await ctx.tick()
        ctx.set(dut.o_next, 0)

    simulate(dut, bench)
    assert got == [5, 6, 7, 20, 21, 22]
