"""The 4-bit code packer and unpacker (hw/codes.py) in amaranth.sim: random rows through the
packer with a stalling consumer, and random reads through the unpacker, every byte against a
Python model of the layout (two codes a byte, the even column low, rows start on a byte)."""

import numpy as np
from hypothesis import given, settings, strategies as st

from ffacc.hw.codes import CodePacker, CodeUnpacker
from amsim import simulate


def pack_rows(rows):
    """The bytes of rows of codes, each row from a byte."""
    out = []
    for r in rows:
        r = list(r) + [0] * (len(r) % 2)
        out += [(r[k] & 15) | (r[k + 1] & 15) << 4 for k in range(0, len(r), 2)]
    return out


@settings(max_examples=15, deadline=None)
@given(widths=st.lists(st.integers(1, 9), min_size=1, max_size=5), seed=st.integers(0, 999),
       on=st.booleans())
def test_packer_gives_two_codes_a_byte_and_ends_each_row(widths, seed, on):
    rng = np.random.default_rng(seed)
    rows = [[int(v) for v in rng.integers(0, 256, w)] for w in widths]
    items = [(v, i == len(r) - 1) for r in rows for i, v in enumerate(r)]
    want = pack_rows([[v & 15 for v in r] for r in rows]) if on else [v for v, _ in items]
    dut = CodePacker()

    async def bench(ctx):
        ctx.set(dut.on, on)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        got, rowends, k = [], [], 0
        for _ in range(20 * len(items) + 20):
            if k < len(items) and rng.random() < 0.7:
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload.data, items[k][0])
                ctx.set(dut.i.payload.rowend, int(items[k][1]))
            else:
                ctx.set(dut.i.valid, 0)
            take = rng.random() < 0.6
            ctx.set(dut.o.ready, int(take))
            await ctx.delay(1e-9)
            if ctx.get(dut.o.valid) and take:
                got.append(ctx.get(dut.o.payload.data))
                rowends.append(ctx.get(dut.o.payload.rowend))
            if ctx.get(dut.i.valid) and ctx.get(dut.i.ready):
                k += 1
            await ctx.tick()
        assert k == len(items) and got == want
        per_row = [(len(r) + 1) // 2 if on else len(r) for r in rows]
        assert [n for n, e in enumerate(rowends) if e] == list(np.cumsum(per_row) - 1)

    simulate(dut, bench)


@settings(max_examples=15, deadline=None)
@given(nb=st.sampled_from([4, 8]), beats=st.integers(1, 6), skip=st.integers(0, 7),
       seed=st.integers(0, 999), signed=st.booleans())
def test_unpacker_gives_each_codes_level_half_a_beat_at_a_time(nb, beats, skip, seed, signed):
    """Levels from the table; ``signed`` (4-bit weights): each nibble sign-extended to a
    byte, with no table."""
    rng = np.random.default_rng(seed)
    skip %= nb
    levels = ([c if c < 8 else c + 240 for c in range(16)] if signed
              else [int(v) for v in rng.integers(0, 256, 16)])
    data = [[int(v) for v in rng.integers(0, 256, nb)] for _ in range(beats)]
    codes = [b >> 4 * h & 15 for beat in data for b in beat for h in (0, 1)]
    first = 1 if 2 * skip >= nb else 0            # halves of the first beat skipped
    want = [[levels[c] for c in codes[k * nb:(k + 1) * nb]] for k in range(first, 2 * beats)]
    dut = CodeUnpacker(nb, signed=signed)

    async def bench(ctx):
        for j, v in enumerate(levels if not signed else ()):
            ctx.set(dut.levels[j], v)
        ctx.set(dut.clear, 1)
        ctx.set(dut.half0, first)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        got, k = [], 0
        for _ in range(10 * beats + 10):
            if k < beats and rng.random() < 0.7:
                ctx.set(dut.i.valid, 1)
                for j, v in enumerate(data[k]):
                    ctx.set(dut.i.payload[j], v)
            else:
                ctx.set(dut.i.valid, 0)
            take = rng.random() < 0.7
            ctx.set(dut.o.ready, int(take))
            await ctx.delay(1e-9)
            if ctx.get(dut.o.valid) and take:
                got.append([ctx.get(dut.o.payload[j]) for j in range(nb)])
            if ctx.get(dut.i.valid) and ctx.get(dut.i.ready):
                k += 1
            await ctx.tick()
        assert k == beats and got == want

    simulate(dut, bench)


@settings(max_examples=12, deadline=None)
@given(widths=st.lists(st.integers(1, 7), min_size=1, max_size=4),
       nlev=st.sampled_from([0, 2, 5, 16, 17, 64]), codes=st.booleans(), signed=st.booleans(),
       seed=st.integers(0, 999))
def test_post_output_maps_then_packs_three_clocks_later(widths, nlev, codes, signed, seed):
    """PostOutput (act_codes): each value to its nearest level (or, with ``codes`` and at
    most 16 levels, its code packed two a byte), rows kept, with random gaps and
    back-pressure; a byte leaves no sooner than three clocks after its last value enters,
    ``empty`` says nothing is inside, and ``en`` low drops what is inside."""
    from ffacc.hw.config import ACCEL_PRESETS
    from ffacc.hw.fcu import FCUConfig
    from ffacc.hw.post import PostOutput
    from ffacc.sim import golden
    codes = codes and 0 < nlev <= 16
    rng = np.random.default_rng(seed)
    lo, hi = (-128, 128) if signed else (0, 256)
    lv = sorted(int(v) for v in rng.choice(np.arange(lo, hi), nlev, replace=False))
    th = [int(t) for t in golden.level_thresholds(lv)] if nlev else []
    rows = [[int(v) for v in rng.integers(lo, hi, w)] for w in widths]
    if not nlev:
        want_vals = rows
    else:
        f = golden.to_codes if codes else (lambda v, t: golden.to_levels(v, t, lv))
        want_vals = [[int(c) for c in f(r, th)] for r in rows]
    want, last = [], []             # the bytes, and the index of each one's last value
    n0 = 0
    for r in want_vals:
        if codes:
            last += [n0 + min(k + 1, len(r) - 1) for k in range(0, len(r), 2)]
            p = r + [0] * (len(r) % 2)
            want += [(p[k] | p[k + 1] << 4, k + 2 >= len(p)) for k in range(0, len(p), 2)]
        else:
            last += [n0 + k for k in range(len(r))]
            want += [(v & 0xFF, k == len(r) - 1) for k, v in enumerate(r)]
        n0 += len(r)
    items = [(v & 0xFF, k == len(r) - 1) for r in rows for k, v in enumerate(r)]
    cfg = ACCEL_PRESETS["tiny"].with_(fcu=FCUConfig(parallel=(3,), rows=2, act_signed=signed))
    dut = PostOutput(cfg)

    async def bench(ctx):
        ctx.set(dut.levels.n, nlev)
        for j, t in enumerate(th):
            ctx.set(dut.levels.t[j], t & 0xFF)
        for j, v in enumerate(lv):
            ctx.set(dut.levels.l[j], v & 0xFF)
        ctx.set(dut.codes, int(codes))
        ctx.set(dut.en, 1)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        assert ctx.get(dut.empty)
        got, k, entered = [], 0, []
        for t in range(12 * len(items) + 20):
            offer = k < len(items) and rng.random() < 0.7
            ctx.set(dut.i.valid, int(offer))
            if offer:
                ctx.set(dut.i.payload.data, items[k][0])
                ctx.set(dut.i.payload.rowend, int(items[k][1]))
            take = rng.random() < 0.7
            ctx.set(dut.o.ready, int(take))
            await ctx.delay(1e-9)
            if ctx.get(dut.o.valid) and take:
                assert last[len(got)] < len(entered) and entered[last[len(got)]] <= t - 3, (t, entered, last, got)
                got.append((ctx.get(dut.o.payload.data), bool(ctx.get(dut.o.payload.rowend))))
            took = offer and ctx.get(dut.i.ready)
            if took:
                k += 1
                entered.append(t)
            await ctx.tick()
            if took:                # in the output stage now
                assert not ctx.get(dut.empty)
        assert k == len(items) and got == want
        assert ctx.get(dut.empty)
        # a value inside when en drops is gone, and nothing is offered meanwhile
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload.data, items[0][0])
        await ctx.tick()
        assert not ctx.get(dut.empty)
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.en, 0)
        await ctx.delay(1e-9)
        assert not ctx.get(dut.o.valid) and not ctx.get(dut.i.ready)
        await ctx.tick()
        assert ctx.get(dut.empty)

    simulate(dut, bench)
