"""Whole models through the golden model, the ISS and the RTL, for the tests (tests only)."""

import numpy as np
import pytest

from ffacc.compiler.ir import quantize, reference_run
from ffacc.sim.runner import run_image


def accuracy_iss_exact(g, c, x, y, iss_images=2):
    """The golden model's accuracy of compiled model ``(g, c)`` on images ``x`` with labels
    ``y``; its first ``iss_images`` also run on the ISS, which must give the same logits."""
    qin, out = g.inputs[0], g.outputs[0]
    right = 0
    for i in range(len(y)):
        xq = quantize(x[i:i + 1], g.tensors[qin])
        want = reference_run(g, {qin: xq})[out]
        right += int(np.argmax(want) == y[i])
        if i < iss_images:
            got, _ = run_image(c.image, {qin: xq}, engine="iss")
            assert np.array_equal(got[out], want), i
    return right / len(y)


def rtl_equals_iss_and_golden(cfg, simulator, g, c, x, name):
    """Images ``x`` through compiled model ``(g, c)`` on the RTL (cocotb on ``simulator``), the
    ISS and the golden model: the logits equal, the RTL's cycles within 5 % of the ISS's.
    Returns each image's RTL record and ISS statistics."""
    from ffacc.sim.cocotb_run import AccelBench, available_simulators
    if simulator not in available_simulators():
        pytest.skip(f"{simulator} is not installed")
    qin, out = g.inputs[0], g.outputs[0]
    xq = np.stack([quantize(xi[None], g.tensors[qin]) for xi in x])
    bench = AccelBench(cfg, simulator, quiet=True).build()
    rtl, items = bench.run_batch(c.image, {qin: xq}, name=name)
    stats = []
    for i in range(len(xq)):
        iss, st = run_image(c.image, {qin: xq[i]}, engine="iss")
        assert np.array_equal(rtl[out][i], iss[out])
        assert np.array_equal(iss[out], reference_run(g, {qin: xq[i]})[out])
        assert items[i]["cycles"] == pytest.approx(st["cycles"], rel=0.05)
        stats.append(st)
    return items, stats
