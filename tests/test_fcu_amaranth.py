"""amaranth.sim unit tests of the FFA row engine and the fast convolution unit."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ffacc.hw.fcu import FCUConfig, FastConvUnit, PRESETS, ConfigError
from ffacc.sim import golden
from ffacc.sim.fcu_model import plan_conv2d, unit_model


def run_passes(cfg, passes, *, seed=0, stall=0.3):
    """Run passes on the RTL in amaranth.sim with random valid gaps and back-pressure."""
    dut = FastConvUnit(cfg)
    rng = np.random.default_rng(seed)
    results = []

    async def bench(ctx):
        for p in passes:
            ctx.set(dut.mac, int(p.mac))
            for r, words in enumerate(p.weights.reshape(cfg.rows, -1)):
                ctx.set(dut.w_en, 1)
                ctx.set(dut.w_addr, r)
                ctx.set(dut.w_data, [int(v) for v in words])
                await ctx.tick()
            ctx.set(dut.w_en, 0)
            out, sent = [], 0
            while len(out) < len(p.beats):
                send = sent < len(p.beats) and rng.random() >= stall
                ctx.set(dut.i.valid, int(send))
                if send:
                    ctx.set(dut.i.payload, p.beats[sent].tolist())
                ctx.set(dut.o.ready, int(rng.random() >= stall))
                await ctx.delay(1e-9)  # settle combinational ready before sampling
                i_fire = send and ctx.get(dut.i.ready)
                o_fire = ctx.get(dut.o.valid) and ctx.get(dut.o.ready)
                if o_fire:
                    v = ctx.get(dut.o.payload)
                    if cfg.mac_pairs:       # y, then y2 and the beat's MAC bit
                        out.append([v.y[j] for j in range(cfg.L)]
                                   + [v.y2[j] for j in range(cfg.L)] + [v.mac])
                    else:
                        out.append([v[j] for j in range(cfg.L)])
                await ctx.tick()
                if i_fire:
                    sent += 1
            ctx.set(dut.i.valid, 0)
            results.append(np.array(out, dtype=np.int64))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


@pytest.mark.parametrize("preset", ["tiny", "p2", "p3t2"])
@pytest.mark.parametrize("k", [1, 2, 3, 5, 7])
def test_unit_matches_model_and_golden(preset, k):
    cfg = PRESETS[preset]
    rng = np.random.default_rng(k)
    C, zx = 2, 3
    lo, hi = cfg.act_range
    x = rng.integers(lo, hi + 1, (1, C, k + 2, k + 4))
    w = rng.integers(-128, 128, (1, C, k, k))
    w[0, 0, 0, 0] = -128
    xp = golden.pad2d(x, 1, zx)[0]
    plan = plan_conv2d(cfg, xp, w[0])
    outs = run_passes(cfg, plan.passes, seed=k)
    acc = np.zeros(plan.out_shape, dtype=np.int64)
    for p, out in zip(plan.passes, outs):
        assert np.array_equal(out, unit_model(cfg, p.weights, p.beats, p.mac))
        plan.accumulate(acc, out)
    assert np.array_equal(acc - zx * w.sum(), golden.conv2d(x, w, x_zp=zx, pads=1)[0, 0])


@pytest.mark.parametrize("parallel", [(3,), (2, 2)])
def test_mac_pairs_second_output_channel(parallel):
    """With mac_pairs a MAC beat's second outputs are ``y2[q] = sum_r x[r, q] G[r, L + q, 0]``
    (products L..2L-1, the unit's second output channel) beside ``y[q] = sum_r x[r, q]
    G[r, q, 0]``; FFA passes before and after are unchanged (a 3x3 correlation), and the
    beats' MAC bit says which is which. Every weight word random, so a product that read the
    wrong word would show."""
    from ffacc.sim.fcu_model import Pass

    cfg = FCUConfig(parallel=parallel, rows=3, mac_pairs=True)
    L, M, T, R = cfg.L, cfg.ffa.M, cfg.subtaps, cfg.rows
    rng = np.random.default_rng(len(parallel))
    lo, hi = cfg.act_range
    glo, ghi = cfg.gweight_range
    x = rng.integers(lo, hi + 1, (1, 2, 5, 7))
    w = rng.integers(-128, 128, (1, 2, 3, 3))
    plan = plan_conv2d(cfg, golden.pad2d(x, 1, 0)[0], w[0])
    macs = [Pass(None, True, rng.integers(glo, ghi + 1, R * M * T),
                 rng.integers(lo, hi + 1, (9, R, L))) for _ in range(2)]
    passes = [plan.passes[0], macs[0], *plan.passes[1:], macs[1]]
    outs = run_passes(cfg, passes, seed=7)
    acc = np.zeros(plan.out_shape, dtype=np.int64)
    for p, out in zip(passes, outs):
        assert (out[:, 2 * L] == p.mac).all()
        if p.mac:
            G = p.weights.reshape(R, M, T)
            assert np.array_equal(out[:, :L], np.einsum("brq,rq->bq", p.beats, G[:, :L, 0]))
            assert np.array_equal(out[:, L:2 * L],
                                  np.einsum("brq,rq->bq", p.beats, G[:, L:2 * L, 0]))
        else:
            assert np.array_equal(out[:, :L], unit_model(cfg, p.weights, p.beats, False))
            plan.accumulate(acc, out[:, :L])
    assert np.array_equal(acc, golden.conv2d(x, w, pads=1)[0, 0])


def test_mac_pairs_need_two_channels_of_products():
    with pytest.raises(ConfigError, match="mac_pairs"):
        FCUConfig(parallel=(2,), mac_pairs=True)


def test_extremes_signed_activations():
    cfg = FCUConfig(parallel=(3,), rows=2, act_signed=True)
    k = 4
    x = np.full((1, 1, 6, 9), -128)
    x[..., ::2] = 127
    w = np.full((1, 1, k, k), -128)
    plan = plan_conv2d(cfg, x[0], w[0])
    outs = run_passes(cfg, plan.passes, stall=0.0)
    acc = np.zeros(plan.out_shape, dtype=np.int64)
    for out in outs:
        plan.accumulate(acc, out)
    assert np.array_equal(acc, golden.conv2d(x, w)[0, 0])


@pytest.mark.parametrize("bad, msg", [
    (dict(parallel=(5,)), "parallel"),
    (dict(act_bits=9), "act_bits"),
    (dict(weight_bits=3), "weight_bits"),
    (dict(rows=0), "rows"),
    (dict(parallel=(3, 3, 2)), "parallel"),
])
def test_invalid_config_names_parameter(bad, msg):
    with pytest.raises(ConfigError, match=msg):
        FCUConfig(**bad)


def test_unknown_config_key():
    with pytest.raises(ConfigError, match="bogus"):
        FCUConfig.from_dict({"rows": 2, "bogus": 1})


def _products(width, pairs, **kw):
    """``narrow_dsp_product`` of ``width``-bit operands on every pair: ``[(x, y, product)]``."""
    from amaranth.hdl import Module, Signal
    from ffacc.hw.setup import narrow_dsp_product

    m = Module()
    a, b, p = Signal(width), Signal(width), Signal(2 * width + 4)
    m.d.comb += p.eq(narrow_dsp_product(a, b, **kw))
    got = []

    async def bench(ctx):
        for x, y in pairs:
            ctx.set(a, x)
            ctx.set(b, y)
            got.append((x, y, ctx.get(p)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("dsp_bits", [16, 17, 18])
def test_address_multiplier_on_narrow_dsps(dsp_bits):
    """The controller's 18x18 address product built from a dsp_bits-wide hard multiplier plus
    shifted additions equals the plain product (corners and random operands)."""
    rng = np.random.default_rng(dsp_bits)
    top = (1 << 18) - 1
    pairs = [(x, y) for x in (0, 1, 0xFFFF, 0x10000, top) for y in (0, 1, 0xFFFF, 0x1FFFF, top)]
    pairs += [tuple(int(v) for v in rng.integers(0, 1 << 18, 2)) for _ in range(300)]
    bad = [r for r in _products(18, pairs, dsp_bits=dsp_bits) if r[2] != r[0] * r[1]]
    assert not bad, bad[:5]


@pytest.mark.parametrize("limit_bits", [12, 16])
def test_address_multiplier_exact_below_its_limit(limit_bits):
    """With limit_bits <= dsp_bits (the iCEBreaker: 16-bit addresses, 16x16 SB_MAC16) the
    17x17 product is exact below 2**limit_bits and at or above it when the true product is,
    and exact whenever both operands fit the DSP (the sizes the controller assigns as they
    are); that is all its address and size checks use."""
    rng = np.random.default_rng(limit_bits)
    edge = (0, 1, 2, 0xFF, 0xFFFF, 0x10000, 0x10001, 0x1FFFF)
    pairs = [(x, y) for x in edge for y in edge]
    pairs += [tuple(int(v) for v in rng.integers(0, 1 << 17, 2)) for _ in range(300)]
    pairs += [tuple(int(v) for v in rng.integers(0, 1 << 16, 2)) for _ in range(300)]
    bad = []
    for x, y, got in _products(17, pairs, dsp_bits=16, limit_bits=limit_bits):
        exact = x * y < 1 << limit_bits or (x < 1 << 16 and y < 1 << 16)
        if (exact and got != x * y) or (not exact and got < 1 << limit_bits):
            bad.append((x, y, got))
    assert not bad, bad[:5]


def test_requantizer_rounding_equals_the_golden_rounding():
    """The POST/ADD rounding stage, ((prod >> (sh-1)) + 1) >> 1 saturated to RQ_BITS, against
    (prod + 2**(sh-1)) >> sh: equal wherever that fits, and after the zero point and the
    int8/uint8 clamp equal everywhere (products over the whole 64-bit range, every shift,
    values at the rounding boundaries)."""
    from amaranth.hdl import Module, Signal, signed, unsigned
    from ffacc.hw.requant import RQ_BITS, requant_round

    m = Module()
    prod, sh = Signal(signed(66)), Signal(unsigned(8))
    res = requant_round(m, prod, sh)
    rng = np.random.default_rng(5)
    lim = 1 << (RQ_BITS - 2)          # |result| < lim is exact
    cases = []
    for s in range(1, 63):
        for k in (0, 1, -1, 5, -5, lim - 1, -lim, lim, -lim - 1, 1 << 40, -(1 << 40)):
            for d in (-1, 0, 1):
                v = (k << s) + (1 << (s - 1)) + d          # around the rounding boundary
                if -(1 << 63) <= v < 1 << 63:
                    cases.append((v, s))
        cases += [(int(v), s) for v in rng.integers(-(1 << 63), (1 << 63) - 1, 20,
                                                    dtype=np.int64)]
        cases += [(int(v) >> int(rng.integers(0, 62)), s) for v in
                  rng.integers(-(1 << 63), (1 << 63) - 1, 20, dtype=np.int64)]
        cases += [(-(1 << 63), s), ((1 << 63) - 1, s)]
    bad = []

    async def bench(ctx):
        for v, s in cases:
            ctx.set(prod, v)
            ctx.set(sh, s)
            got, ref = ctx.get(res), (v + (1 << (s - 1))) >> s
            if abs(ref) < lim and got != ref:
                bad.append((v, s, got, ref))
            for zp, lo, hi in ((-128, -128, 127), (0, -128, 127), (127, -128, 127),
                               (0, 0, 255), (255, 0, 255), (128, 0, 255)):
                if min(max(got + zp, lo), hi) != min(max(ref + zp, lo), hi):
                    bad.append((v, s, zp, got, ref))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert len(cases) > 4000 and not bad, bad[:5]


def run_back_to_back(cfg, passes, *, banks=2, seed=0, stall=0.3):
    """Run ``passes`` on a unit of ``banks`` weight banks with no gap between them: pass i uses
    bank i % banks, and pass i+1's weights load (a row a clock) while pass i's beats stream.
    A bank is rewritten once the outputs of the pass before that used it are out; a beat goes
    once its pass's weights are in. Random input gaps and output back-pressure. Returns every
    output beat."""
    dut = FastConvUnit(cfg, banks=banks)
    rng = np.random.default_rng(seed)
    beats = [(i, b) for i, p in enumerate(passes) for b in p.beats]
    ends = np.cumsum([len(p.beats) for p in passes])    # outputs done when pass i is out
    out = []

    async def bench(ctx):
        ctx.set(dut.mac, int(passes[0].mac))
        loaded, row, sent = 0, 0, 0
        while len(out) < len(beats):
            # weights of pass `loaded`, once the pass `banks` before it (same bank) is out
            writing = loaded < len(passes) and (loaded < banks
                                                or len(out) >= ends[loaded - banks])
            ctx.set(dut.w_en, int(writing))
            if writing:
                ctx.set(dut.w_bank, loaded % banks)
                ctx.set(dut.w_addr, row)
                ctx.set(dut.w_data, [int(v) for v in
                                     passes[loaded].weights.reshape(cfg.rows, -1)[row]])
            send = sent < len(beats) and beats[sent][0] < loaded and rng.random() >= stall
            ctx.set(dut.i.valid, int(send))
            if send:
                i, b = beats[sent]
                ctx.set(dut.i.payload, {"x": b.tolist(), "bank": i % banks})
            ctx.set(dut.o.ready, int(rng.random() >= stall))
            await ctx.delay(1e-9)
            i_fire = send and ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                v = ctx.get(dut.o.payload)
                out.append([v[j] for j in range(cfg.L)])
            await ctx.tick()
            if writing:
                row += 1
                if row == cfg.rows:
                    loaded, row = loaded + 1, 0
            sent += bool(i_fire)
        ctx.set(dut.i.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return np.array(out, dtype=np.int64)


@pytest.mark.parametrize("banks", [2, 3])
@pytest.mark.parametrize("preset", ["tiny", "p2", "p3t2"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_banks_back_to_back(preset, k, banks):
    """Passes streamed back to back on a two- or three-bank unit, the next pass's weights
    loading while earlier passes' beats are in flight: the passes' outputs, accumulated as
    the plan places them (each row's leading blocks, which see the previous row's filter
    state, dropped), are the correlation."""
    cfg = PRESETS[preset]
    rng = np.random.default_rng(10 + k)
    C, zx = (9 if k > 1 else 17), 2
    lo, hi = cfg.act_range
    x = rng.integers(lo, hi + 1, (1, C, k + 1, k + 5))
    w = rng.integers(-128, 128, (1, C, k, k))
    xp = golden.pad2d(x, 1, zx)[0]
    plan = plan_conv2d(cfg, xp, w[0])
    assert len(plan.passes) >= 3
    assert len(plan.passes) > banks
    outs = run_back_to_back(cfg, plan.passes, banks=banks, seed=k, stall=0.2)
    acc = np.zeros(plan.out_shape, dtype=np.int64)
    at = 0
    for p in plan.passes:
        out = outs[at:at + len(p.beats)]
        at += len(p.beats)
        plan.accumulate(acc, out)
    assert at == len(outs) > 0
    assert np.array_equal(acc - zx * w.sum(), golden.conv2d(x, w, x_zp=zx, pads=1)[0, 0])
