"""The ADD sequencer in amaranth.sim: its chunked operand reads (served by a model of the read
DMA: whole beats with ``wide_loads``, on 4- and 8-byte buses, else its byte stream) → every
element's two products to the post-processor (with random back-pressure), against numpy; the
post-processor or a read stopping it, and the next command after a failed one."""

import numpy as np
import pytest

from ffacc.firmware.isa import Err
from ffacc.hw.add import ADD_CHUNK, ADD_CHUNK_BEATS, AddSequencer
from ffacc.hw.config import ACCEL_PRESETS
from ffacc.hw.fcu import FCUConfig
from readdma import ReadDma, run_command

TINY = ACCEL_PRESETS["tiny"]
CONFIGS = {"beats4": TINY, "beats8": TINY.with_(bus_bytes=8),
           "bytes": ACCEL_PRESETS["icebreaker"].with_(add_unit=True)}


def chunk(cfg):
    return ADD_CHUNK_BEATS * cfg.bus_bytes if cfg.wide_loads else ADD_CHUNK


def run(dut, mem, cmd, *, stop_after=None, fail_read=None, seed=0):
    """Run ``cmd`` (a list: one after another); returns (elements [(pa, pb, last)], reads
    [(addr, len)], err or errs)."""
    rng = np.random.default_rng(seed)
    cfg = dut.cfg
    nb = cfg.bus_bytes if cfg.wide_loads else 1
    dma = ReadDma(dut, mem, nb, rng, fail=() if fail_read is None else (fail_read,),
                  gap=0.2, valid_after_ready=cfg.wide_loads)
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


def expected_reads(cfg, a, b, n):
    """Per chunk, its read of a then of b: whole beats from the beat its first byte is in."""
    size, nb = chunk(cfg), cfg.bus_bytes
    reads = []
    for o in range(0, n, size):
        c = min(size, n - o)
        for base in (a + o, b + o):
            if cfg.wide_loads:
                skip = base % nb
                reads.append((base - skip, -(-(skip + c) // nb) * nb))
            else:
                reads.append((base, c))
    return reads


def as_act(v, signed):
    v = np.asarray(v, np.int64)
    return np.where(v >= 128, v - 256, v) if signed else v


def elements(mem, cmd, signed):
    n = cmd["n"]
    a = as_act(mem[cmd["a"]:cmd["a"] + n], signed) - as_act(cmd["za"], signed)
    b = as_act(mem[cmd["b"]:cmd["b"] + n], signed) - as_act(cmd["zb"], signed)
    return [(int(x * cmd["ka"]), int(y * cmd["kb"]), int(i == n - 1))
            for i, (x, y) in enumerate(zip(a, b))]


@pytest.mark.parametrize("act_signed", [False, True])
@pytest.mark.parametrize("n", [1, ADD_CHUNK, 37, 64, 150])
@pytest.mark.parametrize("config", CONFIGS)
def test_elements_are_the_scaled_differences(config, n, act_signed):
    cfg = CONFIGS[config]
    cfg = cfg.with_(fcu=FCUConfig(**{**cfg.fcu.to_dict(), "act_signed": act_signed}))
    dut = AddSequencer(cfg)
    rng = np.random.default_rng(n)
    mem = rng.integers(0, 256, 1 << 11, dtype=np.uint8)
    za, zb = (int(v) for v in rng.integers(0, 256, 2))
    ka, kb = (int(v) for v in rng.integers(-(1 << 15), 1 << 15, 2))     # int16 (D_KAB)
    for a, b in ((0x100, 0x403), (0x107, 0x200)):
        cmd = {"a": a, "b": b, "n": n, "za": za, "zb": zb, "ka": ka, "kb": kb}
        out, reads, err = run(dut, mem, cmd, seed=n)
        assert err == 0
        assert reads == expected_reads(cfg, a, b, n)
        assert out == elements(mem, cmd, act_signed)


@pytest.mark.parametrize("config", CONFIGS)
def test_an_add_of_no_elements_reads_nothing(config):
    dut = AddSequencer(CONFIGS[config])
    out, reads, err = run(dut, np.zeros(1 << 11, np.uint8),
                          {"a": 0, "b": 64, "n": 0, "za": 0, "zb": 0, "ka": 1, "kb": 1})
    assert (out, reads, err) == ([], [], 0)


@pytest.mark.parametrize("config", CONFIGS)
def test_the_post_processor_stopping_ends_the_command_with_its_error(config):
    cfg = CONFIGS[config]
    dut = AddSequencer(cfg)
    mem = np.zeros(1 << 11, np.uint8)
    n = chunk(cfg) + 24
    cmd = {"a": 0, "b": 1024, "n": n, "za": 0, "zb": 0, "ka": 1, "kb": 1}
    out, reads, err = run(dut, mem, cmd, stop_after=20)
    assert err == Err.BUS and 20 <= len(out) < n


@pytest.mark.parametrize("fail", [0, 1, 2])
@pytest.mark.parametrize("config", CONFIGS)
def test_a_failed_read_ends_the_command_and_the_next_one_starts_clean(config, fail):
    """Read ``fail`` (the first chunk's a or b, or the second chunk's a) fails after half its
    beats: the command ends with its error having given out at most the first chunk; the next
    command's elements are its own (nothing of the failed one is left in the FIFOs)."""
    cfg = CONFIGS[config]
    dut = AddSequencer(cfg)
    rng = np.random.default_rng(5)
    mem = rng.integers(0, 256, 1 << 11, dtype=np.uint8)
    size = chunk(cfg)
    bad = {"a": 3, "b": 1024, "n": size + 24, "za": 0, "zb": 0, "ka": 1, "kb": 1}
    good = {"a": 517, "b": 1300, "n": 40, "za": 7, "zb": 9, "ka": 3, "kb": 5}
    out, reads, errs = run(dut, mem, [bad, good], fail_read=fail)
    assert errs == [Err.BUS, 0]
    assert reads == (expected_reads(cfg, 3, 1024, size + 24)[:fail + 1]
                     + expected_reads(cfg, 517, 1300, 40))
    first = len(out) - 40
    assert first <= size
    assert out[:first] == elements(mem, bad, False)[:first]
    assert out[first:] == elements(mem, good, False)
