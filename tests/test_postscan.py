"""The post-processor's scan (hw/postscan.py) in amaranth.sim: a band's elements (accumulator
block, column, group and row flags) under random back-pressure, against the order worked out
from the command alone; a restart mid-band; an empty pooled band."""

from math import ceil

import numpy as np
from hypothesis import given, settings, strategies as st

from ffacc.hw.config import ACCEL_PRESETS
from ffacc.hw.post import post_command_layout
from ffacc.hw.postscan import PostScan
from amsim import simulate

TINY = ACCEL_PRESETS["tiny"]


def expect(cmd, L):
    """The elements of a band: (block, column, first, last, rowend, pad); a pad element's
    block and column are None (any element's)."""
    ny, wout, pool, k, step, acc0 = (cmd[n] for n in ("ny", "wout", "pool", "poolk", "step",
                                                      "acc0"))
    pt, pl, pb, pr = ((cmd.get("pads", 0) >> 4 * i) & 15 for i in range(4)) if pool else \
        (0, 0, 0, 0)
    wob = ceil(wout / L)
    out = []

    def at(y, x):
        if not (0 <= y < ny and 0 <= x < wout):
            return None, None, True
        return acc0 + y * wob + x // L, x % L, False

    if pool:
        rows = range(0, ny + pt + pb - k + 1, step)
        cols = list(range(0, wout + pl + pr - k + 1, step))
        for y in rows:
            for x in cols:
                window = [(dy, dx) for dy in range(k) for dx in range(k)]
                for n, (dy, dx) in enumerate(window):
                    last = n == len(window) - 1
                    blk, sub, pad = at(y + dy - pt, x + dx - pl)
                    out.append((blk, sub, n == 0, last, last and x == cols[-1], pad))
    else:
        xs = list(range(0, wout, step))
        for y in range(0, ny, step):
            for x in xs:
                out.append((*at(y, x)[:2], True, True, x == xs[-1], False))
    return out


def command(cfg, ny, wout, pool, step, acc0, poolk=2, pads=(0, 0, 0, 0)):
    """A POST's scan fields; ``pads`` (top, left, bottom, right) with ``pool_pads``."""
    wob = ceil(wout / cfg.L)
    cmd = dict(ny=ny, wout=wout, pool=int(pool), poolk=poolk, step=step, sblk=step // cfg.L,
               ssub=step % cfg.L, wob=wob, rowstep=step * wob, acc0=acc0)
    if cfg.pool_pads:
        cmd["pads"] = sum(p << 4 * i for i, p in enumerate(pads))
    return cmd


def run_scan(cfg, bands, *, ready, seed, restart_after=None, clocks=5000):
    """Start each command of ``bands`` in turn and take its elements; with ``restart_after``
    the first band is started again after that many elements. Returns each band's list."""
    dut = PostScan(cfg, post_command_layout(cfg))
    rng = np.random.default_rng(seed)
    got = []

    async def start(ctx, cmd):
        for k, v in cmd.items():
            ctx.set(getattr(dut.cmd, k), v)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)

    async def take(ctx, limit=None):
        """Elements until ``valid`` falls (or ``limit`` of them)."""
        elems = []
        for _ in range(clocks):
            if len(elems) == limit:
                return elems
            take = rng.random() < ready
            ctx.set(dut.o.ready, int(take))
            if not ctx.get(dut.o.valid):
                return elems
            if take:
                e = ctx.get(dut.o.payload)
                pad = bool(e.pad)
                elems.append((None if pad else e.addr, None if pad else e.sub, bool(e.first),
                              bool(e.last), bool(e.rowend), pad))
            await ctx.tick()
        raise AssertionError("the scan did not end")

    async def bench(ctx):
        assert ctx.get(dut.o.valid) == 0            # nothing before a start
        for n, cmd in enumerate(bands):
            await start(ctx, cmd)
            if n == 0 and restart_after is not None:
                assert len(await take(ctx, restart_after)) == restart_after
                ctx.set(dut.o.ready, 0)
                await start(ctx, cmd)
            got.append(await take(ctx))

    simulate(dut, bench)
    return got


# L = 3 with windows up to 4x4 (the window cursors), L = 2 with 2x2 only (max_pool = 2: the
# smallest scan)
SCANS = {"tiny": TINY.with_(max_pool=4), "icebreaker": ACCEL_PRESETS["icebreaker"]}


@settings(max_examples=30, deadline=None)
@given(poolk=st.integers(2, 4), step=st.integers(1, 3), ny=st.integers(1, 7),
       wout=st.integers(1, 13), pads=st.lists(st.integers(0, 3), min_size=4, max_size=4),
       seed=st.integers(0, 1000))
def test_a_padded_pool_marks_the_elements_past_the_band(poolk, step, ny, wout, pads, seed):
    """Pooled bands padded on each side by up to the window's side less one (pool_pads):
    each window's elements in order, those in the padding marked, the others at their
    accumulator word; the band starts anywhere in the accumulator, also at block 0 (the
    padding's addresses wrap)."""
    cfg = SCANS["tiny"]
    pads = tuple(min(p, poolk - 1) for p in pads)
    ny = max(ny, poolk - pads[0] - pads[2])             # POST's check with padding
    wob = ceil(wout / cfg.L)
    acc0 = int(seed % (cfg.acc_blocks - ny * wob + 1)) if seed % 3 else 0
    cmd = command(cfg, ny, wout, True, step, acc0, poolk, pads)
    want = expect(cmd, cfg.L)
    assert run_scan(cfg, [cmd, command(cfg, 2, 5, False, 1, 7)], ready=0.6, seed=seed) == [
        want, expect(command(cfg, 2, 5, False, 1, 7), cfg.L)]
    assert want or wout + pads[1] + pads[3] < poolk


def test_resnets_stem_pool_reads_its_padding_as_no_value():
    """3x3 windows at stride 2 with a pad on each side over a 7 x 7 band: 4 x 4 windows, the
    outer ones reaching into the padding: 3 elements of a side's, 5 of a corner's."""
    cfg = SCANS["tiny"]
    cmd = command(cfg, 7, 7, True, 2, 5, poolk=3, pads=(1, 1, 1, 1))
    want = expect(cmd, cfg.L)
    assert len(want) == 4 * 4 * 9
    pads = [sum(e[5] for e in want[9 * w:9 * w + 9]) for w in range(16)]
    assert pads == [5, 3, 3, 5, 3, 0, 0, 3, 3, 0, 0, 3, 5, 3, 3, 5], pads
    assert run_scan(cfg, [cmd], ready=0.7, seed=2) == [want]


@settings(max_examples=30, deadline=None)
@given(pool=st.booleans(), poolk=st.integers(2, 4), step=st.integers(1, 5),
       ny=st.integers(1, 7), wout=st.integers(1, 13), seed=st.integers(0, 1000),
       preset=st.sampled_from(sorted(SCANS)))
def test_the_scan_visits_every_kept_element_in_order(pool, poolk, step, ny, wout, seed, preset):
    """Unpooled bands, and pooled ones of 2x2 to 4x4 windows at strides 1 to 5 (overlapping
    windows, and windows with rows and columns between them)."""
    cfg = SCANS[preset]
    poolk = min(poolk, cfg.max_pool)
    if pool:
        ny = max(ny, poolk)                 # POST's check: the band holds a window's rows
    wob = ceil(wout / cfg.L)
    cmd = command(cfg, ny, wout, pool, step, int(seed % (cfg.acc_blocks - ny * wob + 1)),
                  poolk)
    want = expect(cmd, cfg.L)
    # two bands back to back: the second starts from a clean state
    cmd2 = command(cfg, 2, 5, False, 1, 7)
    got = run_scan(cfg, [cmd, cmd2], ready=0.6, seed=seed)
    assert got == [want, expect(cmd2, cfg.L)]
    assert want or (pool and wout < poolk)


def test_a_3x3_stride_2_pool_reads_each_window_row_by_row():
    """The stem's pool: 3x3 windows at stride 2 overlap by a row and a column; 3 x 2
    windows of 9 elements on a 7 x 6 band, the window's rows a block row apart."""
    cfg = TINY
    cmd = command(cfg, 7, 6, True, 2, 0, poolk=3)
    want = expect(cmd, cfg.L)
    assert len(want) == 3 * 2 * 9
    assert want[:4] == [(0, 0, True, False, False, False), (0, 1, False, False, False, False),
                        (0, 2, False, False, False, False), (2, 0, False, False, False, False)]
    assert run_scan(cfg, [cmd], ready=0.7, seed=4) == [want]


def test_a_start_mid_band_begins_it_again():
    cfg = TINY
    cmd = command(cfg, 4, 7, True, 2, 3)
    want = expect(cmd, cfg.L)
    assert len(want) == 24
    assert run_scan(cfg, [cmd], ready=0.8, seed=1, restart_after=9) == [want]


def test_a_pooled_band_narrower_than_its_window_has_no_element():
    cfg = TINY
    assert run_scan(cfg, [command(cfg, 4, 1, True, 2, 0)], ready=1.0, seed=0) == [[]]
    assert run_scan(cfg, [command(cfg, 4, 2, True, 1, 0, poolk=3)], ready=1.0, seed=0) == [[]]
