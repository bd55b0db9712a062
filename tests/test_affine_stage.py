"""The affine stage after the requantizer (hw/requant.py ``AffineStage``, ``POST``'s flag
``AFFINE``) in amaranth.sim: values from random per-channel affine maps (the integer form of
``golden.affine_params``, packed by ``isa.pack_affine``) with random gaps in and random
back-pressure out; every output byte against ``golden.channel_affine``; off, it passes its
input through; ``en`` low empties it."""

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from ffacc.firmware.isa import pack_affine, unpack_affine
from ffacc.hw.requant import AffineStage
from ffacc.sim import golden
from amsim import simulate, through_pipe


def _record(rng, signed):
    """A map of a random scale and offset (a BatchNormalization's), as the compiler packs it:
    ``(params for AffineStage.p, golden.channel_affine's keywords)``."""
    lo, hi = (-128, 127) if signed else (0, 255)
    x_zp = int(rng.integers(lo + 64, hi - 63))
    scale = float(rng.choice([-1, 1]) * rng.uniform(0.05, 3.0))
    offset = float(rng.uniform(-20, 20))
    ka, kb, zb, M, s = (int(a[0]) for a in golden.affine_params([scale], [offset], x_zp,
                                                                 (lo, hi)))
    y_zp = int(rng.integers(lo // 2, hi // 2 + 1))
    qmin, qmax = (lo, hi) if rng.random() < 0.7 else (y_zp, hi)       # (a fused ReLU)
    words = pack_affine(ka, kb, zb, x_zp, M, s, y_zp, qmin, qmax)
    r = unpack_affine(words, signed)
    K = r["K"]
    p = dict(c=r["C"], k=abs(K).bit_length() - 1 if K else 0, neg=int(K < 0), zero=int(K == 0),
             mult=r["multiplier"], shift=r["shift"], zp=r["zp"], lo=r["qmin"], hi=r["qmax"],
             zin=x_zp)
    ref = dict(x_zp=x_zp, ka=[ka], kb=[kb], zb=[zb], multiplier=[M], shift=[s], y_zp=y_zp,
               qmin=qmin, qmax=qmax)
    return p, ref


def run_stage(values, p, *, on=True, signed, gap, ready, seed, drop_after=None, clocks=3000):
    """Feed ``values`` ([(byte, rowend)]); returns the (byte, rowend) outputs in order. With
    ``drop_after``, ``en`` falls for a clock after that many values went in."""
    dut = AffineStage(signed)
    rng = np.random.default_rng(seed)
    got = []

    async def bench(ctx):
        for k, v in p.items():
            ctx.set(getattr(dut.p, k), v)
        ctx.set(dut.on, int(on))
        got.extend(await through_pipe(
            ctx, dut, [dict(data=b, rowend=int(r)) for b, r in values], rng, gap=gap,
            ready=ready, drop_after=drop_after, clocks=clocks))

    simulate(dut, bench)
    return got


def reference(values, ref, signed):
    x = np.array([[b - 256 if signed and b > 127 else b for b, _ in values]])
    y = golden.channel_affine(x, **ref)[0]
    return [(int(v) & 0xFF, r) for v, (_, r) in zip(y, values)]


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), gap=st.sampled_from([0.0, 0.4]),
       ready=st.sampled_from([1.0, 0.5]))
def test_every_value_is_the_golden_affine_map(seed, gap, ready):
    rng = np.random.default_rng(seed)
    signed = bool(seed % 2)
    p, ref = _record(rng, signed)
    values = [(int(b), bool(rng.random() < 0.2)) for b in rng.integers(0, 256, 40)]
    want = reference(values, ref, signed)
    # a map that saturates (its slope drew large) tells little: draw again
    assume(len(set(b for b, _ in want)) > 3)
    assert run_stage(values, p, signed=signed, gap=gap, ready=ready, seed=seed) == want


@pytest.mark.parametrize("signed", [False, True])
def test_every_input_of_extreme_maps(signed):
    """All 256 inputs through maps at the integer form's edges: the largest slope (K =
    +-2**14 with the least multiplier), a negative one, K = 0 (a scale taken as 0: a constant
    offset), and the largest constant C."""
    lo, hi = (-128, 127) if signed else (0, 255)
    values = [(b, b % 17 == 0) for b in range(256)]
    cases = [(2.5, 30.0), (-1.75, -12.0), (1e-9, 7.3), (0.999, -100.0), (0.01, 120.0)]
    for scale, offset in cases:
        for x_zp in (lo, (lo + hi) // 2, hi):
            ka, kb, zb, M, s = (int(a[0]) for a in golden.affine_params([scale], [offset],
                                                                         x_zp, (lo, hi)))
            r = unpack_affine(pack_affine(ka, kb, zb, x_zp, M, s, 3, lo, hi), signed)
            K = r["K"]
            assert K == ka + kb
            p = dict(c=r["C"], k=abs(K).bit_length() - 1 if K else 0, neg=int(K < 0),
                     zero=int(K == 0), mult=M, shift=s, zp=3, lo=lo, hi=hi, zin=x_zp)
            ref = dict(x_zp=x_zp, ka=[ka], kb=[kb], zb=[zb], multiplier=[M], shift=[s],
                       y_zp=3, qmin=lo, qmax=hi)
            assert run_stage(values, p, signed=signed, gap=0.1, ready=0.8, seed=1) == \
                reference(values, ref, signed), (scale, offset, x_zp)


def test_off_it_passes_its_input_through():
    rng = np.random.default_rng(5)
    p, _ = _record(rng, False)
    values = [(int(b), bool(b % 3 == 0)) for b in rng.integers(0, 256, 30)]
    assert run_stage(values, p, on=False, signed=False, gap=0.3, ready=0.6, seed=2) == values


@pytest.mark.parametrize("drop_after", [1, 3, 7])
def test_en_low_drops_what_is_in_flight(drop_after):
    """``en`` falls with values inside: none of them comes out, the stage is empty, and the
    values after it flow as before."""
    rng = np.random.default_rng(11)
    p, ref = _record(rng, False)
    values = [(k * 20, False) for k in range(10)]
    got = run_stage(values, p, signed=False, gap=0.0, ready=1.0, seed=0, drop_after=drop_after)
    lost = set(range(max(0, drop_after - AffineStage.DEPTH), drop_after))
    want = [b for k, b in enumerate(reference(values, ref, False)) if k not in lost]
    assert got == want and len(got) < len(values)


def test_pack_affine_refuses_what_the_record_cannot_hold():
    with pytest.raises(ValueError, match="K = ka \\+ kb = 3"):
        pack_affine(1, 2, 0, 0, 1 << 30, 31, 0, 0, 255)
    # (int16 ka and kb always fit: |C| <= 32768 * 255 < 2**23)
    with pytest.raises(ValueError, match="does not fit 24 bits"):
        pack_affine(4 - 40000, 40000, -255, 0, 1 << 30, 31, 0, 0, 255)
