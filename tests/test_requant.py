"""The requantizer pipeline (hw/requant.py) in amaranth.sim: elements in groups of one or four
(a 2x2 pool) with random gaps in, random back-pressure out; every output byte against the golden
model's requantization and the group's maximum; ``en`` low empties it."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ffacc.hw.requant import RequantPipe
from ffacc.sim import golden
from amsim import simulate, through_pipe


def reference(groups, q):
    """The bytes of ``groups`` (lists of sums) and their row ends."""
    out = []
    for vals, rowend in groups:
        r = golden.requantize(np.array([vals]), q["mult"], q["shift"], q["zp"], q["lo"],
                              q["hi"])
        out.append((int(r.max()) & 0xFF, rowend))
    return out


def run_pipe(groups, q, *, gap, ready, seed, drop_after=None, clocks=2000):
    """Feed ``groups`` ([(sums, rowend)]); returns the (byte, rowend) outputs in order. With
    ``drop_after``, ``en`` falls for a clock after that many elements went in."""
    dut = RequantPipe()
    rng = np.random.default_rng(seed)
    elems = [(v, k == 0, k == len(vals) - 1, rowend and k == len(vals) - 1)
             for vals, rowend in groups for k, v in enumerate(vals)]
    got = []

    async def bench(ctx):
        for k, v in q.items():
            ctx.set(getattr(dut.q, k), v)
        got.extend(await through_pipe(
            ctx, dut, [dict(v=v, first=int(f), last=int(la), rowend=int(r))
                       for v, f, la, r in elems],
            rng, gap=gap, ready=ready, drop_after=drop_after, clocks=clocks))

    simulate(dut, bench)
    return got


def _q(rng, signed):
    """Parameters that put most outputs inside the range: sums of about 2**20 times a
    multiplier of 2**30 to 2**32 (the top bit set too: the multiplier is unsigned) shifted by
    45 to 48 give |y| up to about 2**7."""
    lo, hi = (-128, 127) if signed else (0, 255)
    return dict(bias=0, mult=int(rng.integers(1 << 30, 1 << 32)),
                shift=int(rng.integers(45, 49)),
                zp=int(rng.integers(-20, 21)) + (0 if signed else 100), lo=lo, hi=hi)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), pool=st.booleans(), n=st.integers(4, 12),
       gap=st.sampled_from([0.0, 0.4]), ready=st.sampled_from([1.0, 0.5]))
def test_every_group_gives_its_maximum(seed, pool, n, gap, ready):
    rng = np.random.default_rng(seed)
    signed = bool(seed % 2)
    q = _q(rng, signed)
    size = 4 if pool else 1
    groups = [([int(v) for v in rng.integers(-(1 << 20), 1 << 20, size)],
               bool(rng.random() < 0.3)) for _ in range(n)]
    want = reference(groups, q)
    assert len(want) == n
    # not only the clamp's ends: most bytes are values inside the range
    inside = [b for b, _ in want if (b - 256 if signed and b > 127 else b) not in (q["lo"],
                                                                                 q["hi"])]
    assert len(inside) >= n // 4, (want, q)
    assert run_pipe(groups, q, gap=gap, ready=ready, seed=seed) == want


def test_the_rounding_and_clamp_edges():
    """Sums that round at .5 both ways and saturate the shifter both ways."""
    q = dict(bias=0, mult=1 << 30, shift=31, zp=5, lo=0, hi=255)   # y = v / 2 + 5
    vals = [-(1 << 31), -11, -9, -1, 0, 1, 3, 5, 499, 500, 501, (1 << 31) - 1]
    groups = [([v], False) for v in vals]
    assert run_pipe(groups, q, gap=0.2, ready=0.6, seed=3) == reference(groups, q)


@pytest.mark.parametrize("drop_after", [1, 3])
def test_en_low_drops_what_is_in_flight(drop_after):
    """``en`` falls with elements inside: none of them comes out, the pipe is empty, and the
    elements after it flow as before."""
    q = dict(bias=0, mult=1 << 30, shift=31, zp=0, lo=0, hi=255)
    groups = [([2 * k + 2], False) for k in range(6)]
    got = run_pipe(groups, q, gap=0.0, ready=1.0, seed=0, drop_after=drop_after)
    # with no gap and no stall, elements come out 3 clocks after they go in: the one taken
    # in the clock before the drop and the two before it are lost (fewer near the start)
    lost = set(range(max(0, drop_after - 3), drop_after))
    want = [b for k, b in enumerate(reference(groups, q)) if k not in lost]
    assert got == want and len(got) < len(groups)
