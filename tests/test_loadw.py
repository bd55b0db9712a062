"""The weight loader in amaranth.sim: a LOADW command's read (served by a model of the read DMA
over a memory, with gaps and back-pressure) → every engine's pre-added words in its set, against
numpy's pre-addition; in the foreground and in the background (the command taken with its
request, the busy flags, the set probe), and the read errors."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ffacc.firmware.isa import Err
from ffacc.hw.config import AcceleratorConfig
from ffacc.hw.fcu import FCUConfig
from ffacc.hw.loadw import WeightLoader
from ffacc.hw.weights import preadd_set, set_bytes
from readdma import ReadDma


def make(wide, background, parallel=(3,)):
    cfg = AcceleratorConfig(fcu=FCUConfig(parallel=parallel, rows=2), lanes=2, lb_rows=16,
                            lb_width=16, wb_sets=8, acc_blocks=16, qb_entries=8, bus_bytes=4,
                            wide_loads=wide, weight_prefetch=background, addr_bits=16,
                            act_codes=wide, packed_weights=wide, strided_loads=wide,
                            post_overlap=False, fetch_block=16 if background else 0,
                            loop_depth=0)
    return cfg, WeightLoader(cfg)


def run(cfg, dut, mem, cmd, *, fail=False, clear_at=None, seed=0):
    """Run ``cmd``; returns the engines written ({(set, engine): word}), a trace of every
    clock's (cmd.ready, bg_reading, bg_busy, probe_busy, bg_err) and the err given with
    cmd.ready."""
    dma = ReadDma(dut, mem, cfg.bus_bytes if cfg.wide_loads else 1,
                  np.random.default_rng(seed), fail=(0,) if fail else ())
    written, trace, out = {}, [], {"err": None}

    async def bench(ctx):
        ctx.set(dut.cmd.payload, cmd)
        ctx.set(dut.cmd.valid, 1)
        ctx.set(dut.probe, cmd["dst"])
        taken = False
        for t in range(3000):
            ctx.set(dut.clear, int(t == clear_at))
            dma.drive(ctx)
            await ctx.delay(1e-9)
            if ctx.get(dut.w.valid):
                w = ctx.get(dut.w.payload)
                assert (w.set, w.engine) not in written
                written[(w.set, w.engine)] = w.data
            dma.sample(ctx)
            ready = ctx.get(dut.cmd.ready)
            trace.append((ready, ctx.get(dut.bg_reading), ctx.get(dut.bg_busy),
                          ctx.get(dut.probe_busy), ctx.get(dut.bg_err)))
            if ready:
                out["err"] = ctx.get(dut.err)
            await ctx.tick()
            if ready:
                taken = True
                ctx.set(dut.cmd.valid, 0)
            if taken and dma.idle and not ctx.get(dut.bg_busy) and t > (clear_at or 0):
                break
        else:
            raise AssertionError("the load did not end")
        trace.append((0, ctx.get(dut.bg_reading), ctx.get(dut.bg_busy),
                      ctx.get(dut.probe_busy), ctx.get(dut.bg_err)))     # the clock after

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert dma.reads == [(cmd["src"], cmd["nbytes"])]
    return written, trace, out["err"]


def expected(cfg, mem, cmd):
    """{(set, engine): the engine's words as the pre-adder packs them} for the command."""
    fc, P, R = cfg.fcu, cfg.lanes, cfg.rows
    mac = bool(cmd["flags"]["mac"])
    n = cmd["n"]
    ntaps = n * set_bytes(fc, P, mac)
    if cmd["flags"]["packed"]:      # two's complement nibbles, the even tap low
        b = mem[cmd["src"]:cmd["src"] + (ntaps + 1) // 2].astype(np.int64)
        nib = np.stack([b & 15, b >> 4], axis=1).reshape(-1)[:ntaps]
        taps = np.where(nib >= 8, nib - 16, nib)
    else:
        taps = np.frombuffer(bytes(mem[cmd["src"]:cmd["src"] + ntaps]),
                             np.int8).astype(np.int64)
    raw = taps.reshape((n, R, P * fc.mac_channels) if mac else (n, R, fc.piece_taps, P))
    G = preadd_set(fc, raw, mac)                    # [set, engine, m, t, lane]
    gw = fc.gweight_shape.width
    mt = fc.ffa.M * fc.subtaps
    want = {}
    for s in range(n):
        for r in range(R):
            word = 0
            for p in range(P):
                for k in range(mt):
                    v = int(G[s, r, k // fc.subtaps, k % fc.subtaps, p])
                    word |= (v & ((1 << gw) - 1)) << ((p * mt + k) * gw)
            want[(cmd["dst"] + s, r)] = word
    return want


def command(cfg, n, dst, mac, background, src=0x104, packed=False):
    nbytes = n * set_bytes(cfg.fcu, cfg.lanes, mac)
    if packed:
        nbytes = (nbytes + 1) // 2
    if cfg.wide_loads:
        nbytes = -(-nbytes // cfg.bus_bytes) * cfg.bus_bytes
    return {"src": src, "nbytes": nbytes, "rows": n * cfg.rows, "dst": dst, "n": n,
            "flags": {"mac": int(mac), "background": int(background), "packed": int(packed)}}


@pytest.mark.parametrize("wide,background,packed", [
    (True, False, False), (True, True, False), (False, False, False),
    (True, False, True), (True, True, True)])
@pytest.mark.parametrize("n,dst,mac", [(1, 0, False), (3, 4, False), (5, 1, True)])
def test_every_engine_gets_its_pre_added_words(wide, background, packed, n, dst, mac):
    """Every engine's words; with ``packed`` (PACK4) from 4-bit taps, two a byte."""
    cfg, dut = make(wide, background)
    mem = np.random.default_rng(n * 8 + dst).integers(0, 256, 1 << 12, dtype=np.uint8)
    cmd = command(cfg, n, dst, mac, background, packed=packed)
    written, trace, err = run(cfg, dut, mem, cmd, seed=n)
    assert err == 0
    assert written == expected(cfg, mem, cmd)
    ready_at = [t for t, tr in enumerate(trace) if tr[0]]
    assert len(ready_at) == 1
    if background:
        # taken with its request; then the read, then the pre-adder's last engines
        assert ready_at[0] <= 1
        reading = [tr[1] for tr in trace]
        busy = [tr[2] for tr in trace]
        assert reading[ready_at[0] + 1] and busy[ready_at[0] + 1] and not busy[-1]
        assert all(b for r, b in zip(reading, busy) if r)       # reading implies busy
        # the probe (the first set) is busy exactly while the load runs
        assert [tr[3] for tr in trace] == busy
    else:
        assert ready_at[0] == len(trace) - 2                   # taken at the end
        assert not any(tr[1] or tr[2] or tr[3] for tr in trace)


def test_the_probe_sees_only_the_sets_being_loaded():
    cfg, dut = make(True, True)
    for probe, busy in ((2, True), (4, True), (1, False), (5, False)):
        cmd = command(cfg, 3, 2, False, True)

        async def bench(ctx, probe=probe, busy=busy):
            ctx.set(dut.cmd.payload, cmd)
            ctx.set(dut.cmd.valid, 1)
            ctx.set(dut.req.ready, 1)
            ctx.set(dut.probe, probe)
            await ctx.tick()
            ctx.set(dut.cmd.valid, 0)
            await ctx.delay(1e-9)
            assert ctx.get(dut.bg_busy) and ctx.get(dut.probe_busy) == busy

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.run()


@pytest.mark.parametrize("background", [False, True])
def test_a_failed_read_gives_its_error(background):
    """In the foreground with the command; in the background kept in bg_err (the load ends)
    until a run's start clears it."""
    cfg, dut = make(True, background)
    mem = np.zeros(1 << 12, np.uint8)
    cmd = command(cfg, 4, 0, False, background)
    _, trace, err = run(cfg, dut, mem, cmd, fail=True, clear_at=60 if background else None)
    if background:
        assert err == 0                         # taken with its request
        errs = [tr[4] for tr in trace]
        first = errs.index(Err.BUS)
        assert all(e == Err.BUS for e in errs[first:61]) and errs[61:] == [0] * len(errs[61:])
        assert not trace[first][2]              # the load is over
    else:
        assert err == Err.BUS
