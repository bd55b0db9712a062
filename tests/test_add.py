"""The ADD sequencer in amaranth.sim: its chunked operand reads (served by a model of the read
DMA's byte stream) → every element's two products to the post-processor (with random
back-pressure), against numpy; and the post-processor or a read stopping it."""

import numpy as np
import pytest

from ffacc.firmware.isa import Err
from ffacc.hw.add import ADD_CHUNK, AddSequencer
from ffacc.hw.config import ACCEL_PRESETS
from ffacc.hw.fcu import FCUConfig
from readdma import ReadDma, run_command


def run(dut, mem, cmd, *, stop_after=None, fail_read=None, seed=0):
    """Run ``cmd``; returns (elements [(pa, pb, last)], reads [(addr, len)], err)."""
    rng = np.random.default_rng(seed)
    dma = ReadDma(dut, mem, 1, rng, fail=() if fail_read is None else (fail_read,),
                  gap=0.2)
    out = []

    def before(ctx):
        running = stop_after is None or len(out) < stop_after
        ctx.set(dut.po_running, int(running))
        ctx.set(dut.po_err, 0 if running else Err.BUS)
        ctx.set(dut.o.ready, int(rng.random() < 0.7))

    def watch(ctx):
        if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
            p = ctx.get(dut.o.payload)
            out.append((p.pa, p.pb, p.last))

    err = run_command(dut, cmd, dma, watch, before=before)
    return out, dma.reads, err


def as_act(v, signed):
    v = np.asarray(v, np.int64)
    return np.where(v >= 128, v - 256, v) if signed else v


@pytest.mark.parametrize("act_signed", [False, True])
@pytest.mark.parametrize("n", [1, ADD_CHUNK, 37])
def test_elements_are_the_scaled_differences(act_signed, n):
    cfg = ACCEL_PRESETS["tiny"]
    cfg = cfg.with_(fcu=FCUConfig(**{**cfg.fcu.to_dict(), "act_signed": act_signed}))
    dut = AddSequencer(cfg)
    rng = np.random.default_rng(n)
    mem = rng.integers(0, 256, 1 << 11, dtype=np.uint8)
    za, zb = (int(v) for v in rng.integers(0, 256, 2))
    ka, kb = (int(v) for v in rng.integers(0, 1 << 16, 2))
    cmd = {"a": 0x100, "b": 0x403, "n": n, "za": za, "zb": zb, "ka": ka, "kb": kb}
    out, reads, err = run(dut, mem, cmd, seed=n)
    assert err == 0
    chunks = [(o, min(ADD_CHUNK, n - o)) for o in range(0, n, ADD_CHUNK)]
    assert reads == [r for o, c in chunks for r in ((0x100 + o, c), (0x403 + o, c))]
    a = as_act(mem[0x100:0x100 + n], act_signed) - as_act(za, act_signed)
    b = as_act(mem[0x403:0x403 + n], act_signed) - as_act(zb, act_signed)
    assert out == [(int(x * ka), int(y * kb), int(i == n - 1))
                   for i, (x, y) in enumerate(zip(a, b))]


def test_the_post_processor_stopping_ends_the_command_with_its_error():
    dut = AddSequencer(ACCEL_PRESETS["tiny"])
    mem = np.zeros(1 << 11, np.uint8)
    cmd = {"a": 0, "b": 64, "n": 40, "za": 0, "zb": 0, "ka": 1, "kb": 1}
    out, reads, err = run(dut, mem, cmd, stop_after=20)
    assert err == Err.BUS and 20 <= len(out) < 40


def test_a_failed_read_ends_the_command_with_its_error():
    dut = AddSequencer(ACCEL_PRESETS["tiny"])
    mem = np.zeros(1 << 11, np.uint8)
    cmd = {"a": 0, "b": 64, "n": 40, "za": 0, "zb": 0, "ka": 1, "kb": 1}
    out, reads, err = run(dut, mem, cmd, fail_read=2)
    assert err == Err.BUS and len(reads) == 3 and len(out) == ADD_CHUNK
