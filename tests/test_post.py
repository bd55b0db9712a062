"""The post-processor (hw/post.py) in amaranth.sim: POST over model accumulators and a model
parameter buffer (block-RAM read ports), ADD from its element stream, a writer that stalls at
random; every byte against a Python reference, and a bad record's error."""

from math import ceil

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ffacc.firmware.isa import (Err, pack_affine, pack_levels, pack_qparam, unpack_affine,
                                unpack_levels, unpack_qparam)
from ffacc.hw.config import ACCEL_PRESETS
from ffacc.hw.post import PostUnit
from ffacc.sim import golden
from amsim import simulate

TINY = ACCEL_PRESETS["tiny"]


def requant(v, rec, signed):
    """The output byte of accumulator ``v`` under record ``rec`` (3 words): the golden
    model's requantization of ``v + bias``."""
    q = unpack_qparam(rec, signed)
    out = golden.requantize(np.array([[v + q["bias"]]]), q["multiplier"], q["shift"], q["zp"],
                            q["qmin"], q["qmax"])
    return int(out[0, 0]) & 0xFF


def affine(v, first, second, signed):
    """Byte ``v`` (the output of record ``first``) mapped by ``second`` (flag AFFINE: the
    golden model's ``channel_affine`` of the integers ``pack_affine`` holds)."""
    r, zp = unpack_affine(second, signed), unpack_qparam(first, signed)["zp"]
    x = v - 256 if signed and v >= 128 else v
    out = golden.requantize(np.array([[r["K"] * (x - zp) + r["C"]]]), r["multiplier"],
                            r["shift"], r["zp"], r["qmin"], r["qmax"])
    return int(out[0, 0]) & 0xFF


def expect_post(acc, recs, cmd, signed, L):
    """{address: byte} of a POST (the ISS's semantics, sim/iss.py)."""
    out = {}
    ny, wout, pool, step = cmd["ny"], cmd["wout"], cmd["pool"], cmd["step"]
    k = cmd.get("poolk", 2)
    wob = ceil(wout / L)
    aff = cmd.get("affine", 0)
    for lane in range(cmd["lanes"]):
        first = recs[cmd["q0"] + (1 + aff) * lane]

        def val(y, x):
            b = cmd["acc0"] + y * wob + x // L
            return requant(int(acc[lane][b][x % L]), first, signed)

        def mapped(v):
            return affine(v, first, recs[cmd["q0"] + 2 * lane + 1], signed) if aff else v
        base = cmd["base"] + lane * cmd["cstride"]
        if pool:                        # the k x k windows at stride step in the band
            for r, y in enumerate(range(0, ny - k + 1, step)):
                for c, x in enumerate(range(0, wout - k + 1, step)):
                    vals = [val(y + dy, x + dx) for dy in range(k) for dx in range(k)]
                    sv = [v - 256 if signed and v >= 128 else v for v in vals]
                    out[base + r * cmd["pitch"] + c] = mapped(vals[int(np.argmax(sv))])
        else:
            for r, y in enumerate(range(0, ny, step)):
                for c, x in enumerate(range(0, wout, step)):
                    out[base + r * cmd["pitch"] + c] = mapped(val(y, x))
    return out


def run_unit(cfg, cmd, *, acc=None, recs=(), ext=(), ready=0.7, seed=0, latch=True,
             fail_after=None, max_clocks=20000):
    """Give ``cmd`` to a :class:`PostUnit`, serve its read ports from ``acc`` ``[lane][block]
    [column]`` and ``recs`` (records of 3 words), feed ``ext`` ((pa, pb) pairs) for an ADD,
    and take its writes with probability ``ready`` a clock. Returns ({address: byte}, err,
    clocks). ``cmd`` may be a list: the commands run in turn, each once the one before is
    done, and the result is a list of those triples. With ``fail_after`` the writer reports
    ``Err.BUS`` once it has taken that many bytes of the first command."""
    dut = PostUnit(cfg, latch=latch)
    L, P = cfg.L, cfg.lanes
    rng = np.random.default_rng(seed)
    results = []

    def complete(cmd):
        wob = ceil(cmd.get("wout", 1) / L)
        full = dict(lanes=1, ny=1, wout=1, pool=0, poolk=2, step=1, acc0=0, q0=0, base=0,
                    pitch=0, cstride=0, affine=0)
        full.update(cmd)
        full.update(sblk=full["step"] // L, ssub=full["step"] % L, wob=wob,
                    rowstep=full["step"] * wob, acc1=full["acc0"] + full["ny"] * wob)
        return full

    async def bench(ctx):
        acc_word = q_word = 0
        for n, full in enumerate(map(complete, cmd if isinstance(cmd, list) else [cmd])):
            p = dut.cmd.payload
            for k, v in full.items():
                if k in ("q", "levels"):
                    continue
                ctx.set(getattr(p, k), v)
            if "levels" in full:            # {n, t: thresholds, l: levels}, bytes
                lv = full["levels"]
                ctx.set(p.levels.n, lv["n"])
                for j, v in enumerate(lv["t"]):
                    ctx.set(p.levels.t[j], v & 0xFF)
                for j, v in enumerate(lv["l"]):
                    ctx.set(p.levels.l[j], v & 0xFF)
            if "add" in full:
                ctx.set(p.add, 1)
                q = full["q"]
                for k in ("mult", "shift", "zp", "lo", "hi"):
                    ctx.set(getattr(p.q, k), q[k])
            ctx.set(dut.cmd.valid, 1)
            ctx.set(dut.wr_idle, 1)
            written = {}
            k = 0
            for clock in range(max_clocks):
                # the read ports: the data of last clock's address (with enable)
                ctx.set(dut.acc_data, acc_word)
                ctx.set(dut.q_data, q_word)
                if k < len(ext):
                    ctx.set(dut.ext.valid, 1)
                    ctx.set(dut.ext.payload.pa, ext[k][0])
                    ctx.set(dut.ext.payload.pb, ext[k][1])
                    ctx.set(dut.ext.payload.last, int(k == len(ext) - 1))
                elif "add" in full:
                    ctx.set(dut.ext.valid, 0)
                failing = n == 0 and fail_after is not None and len(written) >= fail_after
                ctx.set(dut.wr_err_valid, int(failing))
                ctx.set(dut.wr_err, Err.BUS if failing else 0)
                take = rng.random() < ready
                ctx.set(dut.wr.ready, int(take))
                await ctx.delay(1e-9)
                # the ranges a CONV's and a LOADQ's hazard checks compare with: the running
                # POST's accumulator blocks and records, empty for an ADD and when idle
                ranges = [ctx.get(getattr(dut, r)) for r in ("acc_lo", "acc_hi", "q_lo", "q_hi")]
                if ctx.get(dut.busy) and "add" not in full:
                    assert ranges == [full["acc0"], full["acc1"], full["q0"],
                                      full["q0"] + (1 + full["affine"]) * full["lanes"]], \
                        (clock, ranges)
                else:
                    assert ranges == [0, 0, 0, 0], (clock, ranges)
                if ctx.get(dut.cmd.ready) and clock and not latch:
                    ctx.set(dut.cmd.valid, 0)
                if ctx.get(dut.wr.valid) and take and not failing:
                    written[ctx.get(dut.wr.payload.addr)] = ctx.get(dut.wr.payload.data)
                if "add" in full and k < len(ext) and ctx.get(dut.ext.ready):
                    k += 1
                if ctx.get(dut.acc_en):
                    a = ctx.get(dut.acc_addr)
                    acc_word = 0
                    if acc is not None:
                        for lane in range(P):
                            for j in range(L):
                                v = int(acc[lane][a][j]) & 0xFFFFFFFF
                                acc_word |= v << (32 * (lane * L + j))
                if ctx.get(dut.q_en):
                    r = (recs[ctx.get(dut.q_addr)] if ctx.get(dut.q_addr) < len(recs)
                         else (0, 0, 0))
                    q_word = r[0] | r[1] << 32 | r[2] << 64
                await ctx.tick()
                if latch and clock == 0:
                    ctx.set(dut.cmd.valid, 0)
                if clock > 1 and not ctx.get(dut.busy):
                    results.append((written, ctx.get(dut.err), clock))
                    break
            else:
                raise AssertionError("the post-processor did not finish")
            ctx.set(dut.cmd.valid, 0)
            ctx.set(dut.wr_err_valid, 0)
            await ctx.tick()

    simulate(dut, bench)
    return results if isinstance(cmd, list) else results[0]


def _case(rng, cfg, pool, step, ny, wout, lanes, signed, poolk=2):
    L, P = cfg.L, cfg.lanes
    acc = rng.integers(-(1 << 20), 1 << 20, (P, cfg.acc_blocks, L))
    recs = []
    for _ in range(cfg.qb_entries):
        recs.append(tuple(pack_qparam(int(rng.integers(-5000, 5000)),
                                      int(rng.integers(1 << 28, 1 << 31)), 31 + int(rng.integers(0, 4)),
                                      int(rng.integers(-20, 20)), -128 if signed else 0,
                                      127 if signed else 255)))
    wob = ceil(wout / L)
    cmd = dict(lanes=lanes, ny=ny, wout=wout, pool=pool, poolk=poolk, step=step,
               acc0=int(rng.integers(0, cfg.acc_blocks - ny * wob + 1)),
               q0=int(rng.integers(0, cfg.qb_entries - lanes + 1)), base=64,
               pitch=wout + 3, cstride=(ny + 1) * (wout + 3))
    return acc, recs, cmd


@settings(max_examples=14, deadline=None)
@given(pool=st.booleans(), poolk=st.integers(2, 3), step=st.integers(1, 4),
       ny=st.integers(1, 5), wout=st.integers(1, 11), lanes=st.integers(1, 2),
       latch=st.booleans(), seed=st.integers(0, 1000))
def test_post_writes_every_kept_element(pool, poolk, step, ny, wout, lanes, latch, seed):
    """Subsampled bands, and max-pools of 2x2 and 3x3 windows at strides 1..4: each output
    the requantized maximum of its window (the ISS's semantics)."""
    cfg = TINY
    if pool:
        ny = max(ny, poolk)             # POST's check: the band holds a window's rows
    rng = np.random.default_rng(seed)
    acc, recs, cmd = _case(rng, cfg, pool, step, ny, wout, lanes, cfg.fcu.act_signed, poolk)
    want = expect_post(acc, recs, cmd, cfg.fcu.act_signed, cfg.L)
    got, err, _ = run_unit(cfg, cmd, acc=acc, recs=recs, seed=seed, latch=latch)
    assert err == 0 and got == want
    assert want or (pool and wout < poolk)


def test_a_bad_shift_stops_after_the_lanes_before_it():
    cfg = TINY
    rng = np.random.default_rng(5)
    acc, recs, cmd = _case(rng, cfg, False, 1, 2, 6, 2, cfg.fcu.act_signed)
    bad = list(recs[cmd["q0"] + 1])
    bad[2] &= ~0xFF                                         # shift 0
    recs[cmd["q0"] + 1] = tuple(bad)
    want = expect_post(acc, recs, dict(cmd, lanes=1), cfg.fcu.act_signed, cfg.L)
    got, err, _ = run_unit(cfg, cmd, acc=acc, recs=recs)
    assert err == Err.PARAM and got == want and len(want) == 12


def _affine_case(rng, cfg, pool, ny, wout, lanes):
    """A POST with flag AFFINE: lane l's records at q0 + 2l (the requantization) and
    q0 + 2l + 1 (a random BatchNormalization's integer form)."""
    signed = cfg.fcu.act_signed
    lo, hi = (-128, 127) if signed else (0, 255)
    acc, recs, cmd = _case(rng, cfg, pool, 1, ny, wout, 2 * lanes, signed, 2)
    acc = acc >> 10                     # values inside the range, not only its ends
    for lane in range(lanes):
        x_zp = int(rng.integers(-20, 20)) + (0 if signed else 128)
        recs[cmd["q0"] + 2 * lane] = tuple(pack_qparam(int(rng.integers(-50, 50)), 1 << 30,
                                                       33, x_zp, lo, hi))
        scale = float(rng.choice([-1, 1]) * rng.uniform(0.2, 2.5))
        ka, kb, zb, M, sh = (int(a[0]) for a in golden.affine_params(
            [scale], [float(rng.uniform(-15, 15))], x_zp, (lo, hi)))
        recs[cmd["q0"] + 2 * lane + 1] = tuple(pack_affine(
            ka, kb, zb, x_zp, M, sh, int(rng.integers(-10, 10)), lo, hi))
    return acc, recs, dict(cmd, lanes=lanes, affine=1)


@settings(max_examples=8, deadline=None)
@given(pool=st.booleans(), ny=st.integers(2, 4), wout=st.integers(2, 8),
       lanes=st.integers(1, 2), latch=st.booleans(), seed=st.integers(0, 1000))
def test_post_maps_each_output_by_its_second_record(pool, ny, wout, lanes, latch, seed):
    """Flag AFFINE: each output (after a pool's maximum) mapped by its lane's second record,
    both records of a lane read from q0 + 2 lane on; the records a LOADQ must not overwrite
    meanwhile are 2 lanes."""
    cfg = TINY
    rng = np.random.default_rng(seed)
    acc, recs, cmd = _affine_case(rng, cfg, pool, ny, wout, lanes)
    want = expect_post(acc, recs, cmd, cfg.fcu.act_signed, cfg.L)
    plain = expect_post(acc, recs, dict(cmd, affine=0, lanes=lanes), cfg.fcu.act_signed, cfg.L)
    assert want and want != plain
    got, err, _ = run_unit(cfg, cmd, acc=acc, recs=recs, seed=seed, latch=latch)
    assert err == 0 and got == want


def test_a_bad_shift_in_a_second_record_stops_at_its_lane():
    cfg = TINY
    rng = np.random.default_rng(8)
    acc, recs, cmd = _affine_case(rng, cfg, False, 2, 5, 2)
    bad = list(recs[cmd["q0"] + 3])
    bad[2] |= 0x3F                                          # shift 63
    recs[cmd["q0"] + 3] = tuple(bad)
    want = expect_post(acc, recs, dict(cmd, lanes=1), cfg.fcu.act_signed, cfg.L)
    got, err, _ = run_unit(cfg, cmd, acc=acc, recs=recs)
    assert err == Err.PARAM and got == want and len(want) == 10


def _random_levels(rng, signed):
    """``n`` random ascending levels and random thresholds (not the midpoints: the hardware
    takes any), as the command's bytes, and the ISS's decoding of them."""
    n = int(rng.integers(2, 65))
    lo, hi = (-128, 127) if signed else (0, 255)
    lv = sorted(int(v) for v in rng.choice(np.arange(lo, hi + 1), n, replace=False))
    th = sorted(int(v) for v in rng.integers(lo, hi + 1, n - 1))
    words = {r: v for r, v in pack_levels(lv, th).items()}
    return {"n": n, "t": th, "l": lv}, unpack_levels(words, signed)


@settings(max_examples=10, deadline=None)
@given(pool=st.booleans(), step=st.integers(1, 3), ny=st.integers(1, 4),
       wout=st.integers(1, 9), latch=st.booleans(), seed=st.integers(0, 1000))
def test_post_writes_each_value_as_its_level(pool, step, ny, wout, latch, seed):
    cfg = TINY
    if pool:
        ny += ny % 2
    rng = np.random.default_rng(seed)
    signed = cfg.fcu.act_signed
    acc, recs, cmd = _case(rng, cfg, pool, step, ny, wout, 2, signed)
    cmd["levels"], (_, th, lv) = _random_levels(rng, signed)
    plain = expect_post(acc, recs, cmd, signed, cfg.L)
    value = {a: (b - 256 if signed and b >= 128 else b) for a, b in plain.items()}
    want = {a: int(golden.to_levels(v, th, lv)) & 0xFF for a, v in value.items()}
    got, err, _ = run_unit(cfg, cmd, acc=acc, recs=recs, seed=seed, latch=latch)
    assert err == 0 and got == want
    assert want or (pool and wout < 2)


def test_add_ignores_the_levels():
    """ADD's sums are never mapped to levels (its command's level fields are the POST's
    registers, whatever they hold)."""
    cfg = TINY
    rng = np.random.default_rng(3)
    ext = [(int(a), int(b)) for a, b in rng.integers(-(1 << 20), 1 << 20, (9, 2))]
    q = dict(mult=1 << 30, shift=33, zp=100, lo=0, hi=255)
    levels, _ = _random_levels(np.random.default_rng(1), cfg.fcu.act_signed)
    got, err, _ = run_unit(cfg, dict(add=1, base=40, q=q, levels=levels), ext=ext)
    rec = (0, q["mult"], q["shift"] | 100 << 8 | 0 << 16 | 255 << 24)
    assert err == 0
    assert got == {40 + k: requant(a + b, rec, False) for k, (a, b) in enumerate(ext)}


@pytest.mark.parametrize("latch", [True, False])
def test_add_elements_from_the_stream(latch):
    cfg = TINY
    rng = np.random.default_rng(7)
    n = 23
    ext = [(int(a), int(b)) for a, b in rng.integers(-(1 << 20), 1 << 20, (n, 2))]
    q = dict(mult=int(rng.integers(1 << 28, 1 << 30)), shift=33, zp=3, lo=-128, hi=127)
    if not cfg.fcu.act_signed:
        q.update(zp=100, lo=0, hi=255)
    got, err, clocks = run_unit(cfg, dict(add=1, base=300, q=q), ext=ext, latch=latch)
    rec = (0, q["mult"], q["shift"] | (q["zp"] & 0xFF) << 8 | (q["lo"] & 0xFF) << 16
           | (q["hi"] & 0xFF) << 24)
    want = {300 + k: requant(a + b, rec, cfg.fcu.act_signed) for k, (a, b) in enumerate(ext)}
    assert err == 0 and got == want


@pytest.mark.parametrize("latch", [True, False])
def test_add_maps_each_result_by_its_affine_record(latch):
    """ADD with flag AFFINE: each result mapped by record q0 (the zero point of its input:
    the ADD's output's); a record with a bad shift stops it before any element with
    Err.PARAM."""
    cfg = TINY
    rng = np.random.default_rng(9)
    n = 17
    ext = [(int(a), int(b)) for a, b in rng.integers(-(1 << 12), 1 << 12, (n, 2))]
    q = dict(mult=1 << 30, shift=35, zp=100, lo=0, hi=255)
    rec = (0, q["mult"], q["shift"] | q["zp"] << 8 | q["lo"] << 16 | q["hi"] << 24)
    ka, kb, zb, M, sh = (int(a[0]) for a in golden.affine_params([-1.3], [4.5], q["zp"],
                                                                  (0, 255)))
    second = tuple(pack_affine(ka, kb, zb, q["zp"], M, sh, 90, 0, 255))
    recs = [(0, 0, 0)] * 5 + [second]
    got, err, _ = run_unit(cfg, dict(add=1, base=300, q=q, q0=5, affine=1), ext=ext,
                           recs=recs, latch=latch)
    want = {300 + k: affine(requant(a + b, rec, False), rec, second, False)
            for k, (a, b) in enumerate(ext)}
    plain = {k: requant(a + b, rec, False) for k, (a, b) in enumerate(ext)}
    assert err == 0 and got == want and list(want.values()) != list(plain.values())
    bad = (second[0], second[1], second[2] & ~0xFF)             # shift 0
    got, err, _ = run_unit(cfg, dict(add=1, base=300, q=q, q0=5, affine=1), ext=ext,
                           recs=recs[:5] + [bad], latch=latch)
    assert err == Err.PARAM and got == {}


@pytest.mark.parametrize("latch", [True, False])
def test_a_writer_error_leaves_nothing_for_the_next_command(latch):
    """The writer fails in the middle of a band: the command ends with its error, and what
    was in flight is dropped, so the next command writes exactly its own bytes."""
    cfg = TINY
    rng = np.random.default_rng(11)
    acc, recs, cmd = _case(rng, cfg, False, 1, 4, 9, 1, cfg.fcu.act_signed)
    again = dict(cmd, base=cmd["base"] + 1000)
    (w1, err1, _), (w2, err2, _) = run_unit(cfg, [cmd, again], acc=acc, recs=recs, ready=1.0,
                                            latch=latch, fail_after=5)
    assert err1 == Err.BUS and len(w1) == 5
    want = expect_post(acc, recs, again, cfg.fcu.act_signed, cfg.L)
    assert err2 == 0 and w2 == want and len(want) == 36
