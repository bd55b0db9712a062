"""cocotb testbench: the fast convolution unit's generated Verilog against the golden model.

Run through :class:`ffacc.sim.cocotb_run.FCUTestbench` (pytest and ``ffacc selfcheck`` do). The
environment carries the job: ``FFACC_FCU_CONFIG`` (JSON of :class:`~ffacc.hw.fcu.FCUConfig`),
``FFACC_TB_JOB`` (JSON: kernel size ``k``, ``seed``, ``channels``, ``height``, ``width``,
``pad``, ``stall``, ``data`` = ``random`` | ``extreme``) and ``FFACC_TB_STATS`` (where to write
the measured cycles as JSON).

Each pass loads its pre-added weights, streams its input beats and collects the output beats;
every pass is compared bit for bit with :func:`~ffacc.sim.fcu_model.unit_model` and the
accumulated result with :func:`~ffacc.sim.golden.conv2d`. The first run is free-flowing (its
cycles are the unit's throughput); the second inserts random valid gaps and back-pressure.
"""

import json
import os

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from ffacc.hw.fcu import FCUConfig
from ffacc.sim import golden
from ffacc.sim.fcu_model import plan_conv2d, unit_model, pack_beats, unpack_outputs


def make_data(cfg, job, rng):
    """Activations ``(1, C, H, W)``, one output channel's weights ``(1, C, k, k)``, zero point."""
    k, C, H, W = job["k"], job["channels"], job["height"], job["width"]
    lo, hi = cfg.act_range
    wlo, whi = cfg.weight_range
    if job["data"] == "extreme":
        x = rng.choice([lo, hi], size=(1, C, H, W))
        w = rng.choice([wlo, whi], size=(1, C, k, k))
        w[0, 0] = wlo                      # a whole kernel of the most negative weight
        zx = hi if not cfg.act_signed else lo
    else:
        x = rng.integers(lo, hi + 1, size=(1, C, H, W))
        w = rng.integers(wlo, whi + 1, size=(1, C, k, k))
        zx = int(rng.integers(lo, hi + 1))
    return x, w, zx


async def run_pass(dut, cfg, p, rng, stall):
    """Load weights, stream one pass; returns (output beats, streaming cycles)."""
    dut.mac.value = int(p.mac)
    gw = cfg.gweight_shape.width
    for r, words in enumerate(p.weights.reshape(cfg.rows, -1)):
        await FallingEdge(dut.clk)
        dut.w_en.value = 1
        dut.w_addr.value = r
        dut.w_data.value = sum((int(v) & ((1 << gw) - 1)) << (gw * a)
                               for a, v in enumerate(words))
    await FallingEdge(dut.clk)
    dut.w_en.value = 0
    words = pack_beats(cfg, p.beats)
    out, sent, cycles = [], 0, 0
    while len(out) < len(words):
        send = sent < len(words) and (stall == 0 or rng.random() >= stall)
        dut.i__valid.value = int(send)
        if send:
            dut.i__payload.value = words[sent]
        dut.o__ready.value = int(stall == 0 or rng.random() >= stall)
        await ReadOnly()
        if send and dut.i__ready.value:
            sent += 1
        if dut.o__valid.value and dut.o__ready.value:
            out.append(unpack_outputs(cfg, dut.o__payload.value.to_unsigned()))
        await FallingEdge(dut.clk)
        cycles += 1
    dut.i__valid.value = 0
    return np.array(out, dtype=np.int64), cycles


@cocotb.test()
async def conv_kernel(dut):
    """One conv of kernel size ``k`` through the unit, checked against the golden model."""
    cfg = FCUConfig.from_dict(json.loads(os.environ["FFACC_FCU_CONFIG"]))
    job = json.loads(os.environ["FFACC_TB_JOB"])
    rng = np.random.default_rng(job["seed"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.w_en.value = 0
    dut.i__valid.value = 0
    dut.o__ready.value = 1
    dut.mac.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    x, w, zx = make_data(cfg, job, rng)
    pad = job["pad"]
    xp = golden.pad2d(x, pad, zx)[0]
    plan = plan_conv2d(cfg, xp, w[0])
    expected = golden.conv2d(x, w, x_zp=zx, pads=pad)[0, 0]
    stats = {"k": job["k"], "passes": len(plan.passes), "beats": plan.beats,
             "outputs": int(np.prod(plan.out_shape)), "runs": []}
    for stall in (0.0, job["stall"]):
        acc = np.zeros(plan.out_shape, dtype=np.int64)
        stream_cycles = 0
        for n, p in enumerate(plan.passes):
            out, cyc = await run_pass(dut, cfg, p, rng, stall)
            want = unit_model(cfg, p.weights, p.beats, p.mac)
            assert np.array_equal(out, want), f"k={job['k']} pass {n} stall={stall}: RTL != model"
            plan.accumulate(acc, out)
            stream_cycles += cyc
        # the unit sums raw activations; the zero point folds into the bias: -zx * sum(w)
        got = acc - zx * int(w.sum())
        assert np.array_equal(got, expected), f"k={job['k']} stall={stall}: RTL != golden"
        stats["runs"].append({"stall": stall, "stream_cycles": stream_cycles})
    if "FFACC_TB_STATS" in os.environ:
        with open(os.environ["FFACC_TB_STATS"], "w") as f:
            json.dump(stats, f)
