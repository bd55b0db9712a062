"""The weight pre-adder: numpy arithmetic against an independent FFA formula, gateware against it."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from ffacc.hw.fcu import FCUConfig
from ffacc.hw.weights import WeightPreAdder, preadd_set, raw_set, set_bytes

CONFIGS = [FCUConfig(parallel=(3,), rows=2), FCUConfig(parallel=(2,), rows=1),
           FCUConfig(parallel=(3,), subtaps=2, rows=3), FCUConfig(parallel=(2, 2), rows=2),
           FCUConfig(parallel=(3,), rows=2, mac_pairs=True),
           FCUConfig(parallel=(2, 2), rows=2, mac_pairs=True)]


def _direct(fcu, w_rows):
    """G[r, m, t, lane] written out from the FFA definition, without FFA.preadd_weights: the
    filter is the reversed piece, polyphase component i holds taps i, i + L, ..."""
    s, T = fcu.ffa, fcu.subtaps
    R, P, k = w_rows.shape
    N = fcu.piece_taps
    G = np.zeros((R, s.M, T, P), dtype=np.int64)
    for r in range(R):
        for lane in range(P):
            h = np.zeros(N, dtype=np.int64)
            h[N - k:] = w_rows[r, lane, ::-1]
            for mm in range(s.M):
                for t in range(T):
                    G[r, mm, t, lane] = sum(int(s.A[mm, i]) * h[i + t * s.L] for i in range(s.L))
    return G


@pytest.mark.parametrize("fcu", CONFIGS, ids=str)
def test_preadd_set_is_the_ffa_pre_addition(fcu):
    rng = np.random.default_rng(1)
    for k in range(1, fcu.piece_taps + 1):
        w = rng.integers(-128, 128, (fcu.rows, 3, k))
        raw = raw_set(fcu, w)
        assert raw.dtype == np.int8 and raw.shape == (fcu.rows, fcu.piece_taps, 3)
        assert raw.size == set_bytes(fcu, 3, mac=False)
        assert np.array_equal(preadd_set(fcu, raw, mac=False), _direct(fcu, w))


def test_mac_sets_broadcast_one_weight_to_the_first_L_products():
    fcu = CONFIGS[0]
    w = np.array([[5, -7], [127, -128]])
    G = preadd_set(fcu, raw_set(fcu, w), mac=True)
    assert np.array_equal(G[:, :3, 0, :], np.repeat(w[:, None, :], 3, axis=1))
    assert not G[:, 3:].any() and set_bytes(fcu, 2, mac=True) == 4


def test_mac_pair_sets_give_each_lane_two_channels():
    """With mac_pairs an engine's MAC weights are [channel]: lane k's products 0..L-1 take
    channel k, its products L..2L-1 channel lanes + k; the rest are zero."""
    fcu = FCUConfig(parallel=(3,), rows=2, mac_pairs=True)
    w = np.array([[5, -7, 9, 11], [127, -128, 0, 3]])          # [engine][channel], 2 lanes
    G = preadd_set(fcu, w, mac=True)                           # [engine, m, t, lane]
    assert np.array_equal(G[:, :3, 0, :], np.repeat(w[:, None, :2], 3, axis=1))
    assert np.array_equal(G[:, 3:6, 0, :], np.repeat(w[:, None, 2:], 3, axis=1))
    assert set_bytes(fcu, 2, mac=True) == 8
    with pytest.raises(ValueError, match="per lane"):
        preadd_set(fcu, w[:, :3], mac=True)


def test_a_piece_longer_than_an_engine_is_refused():
    with pytest.raises(ValueError, match="4 taps does not fit an engine's 3"):
        raw_set(CONFIGS[0], np.zeros((2, 1, 4)))


def run_preadder(fcu, lanes, loads, *, nb=4, seed=0, gaps=0.3, stall=0.3, **kw):
    """Feed each load's bytes as bus beats of ``nb`` (the last one padded with junk), with
    random valid gaps and back-pressure; collect the engines' words. A load may start with
    junk beats cut short by ``clear`` (a load that ended in a bus error)."""
    dut = WeightPreAdder(fcu, lanes, nb, **kw)
    rng = np.random.default_rng(seed)
    got, cycles = [], []
    mt = fcu.ffa.M * fcu.subtaps

    async def bench(ctx):
        for mac, data, *junk in loads:
            ctx.set(dut.mac, int(mac))
            for v in (junk[0] if junk else ()):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, [int(v)] * nb)
                await ctx.tick()
            ctx.set(dut.i.valid, 0)
            want = len(data) // set_bytes(fcu, lanes, mac) * fcu.rows
            ctx.set(dut.clear, 1)
            ctx.set(dut.count, want)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            pad = np.full(-len(data) % nb, 99, dtype=np.int8)
            beats_in = np.concatenate([np.asarray(data, dtype=np.int8), pad]).reshape(-1, nb)
            beats, sent, n = [], 0, 0
            for n in range(20 * len(beats_in) + 20 * want + 50):
                if len(beats) == want and sent == len(beats_in):
                    break
                send = sent < len(beats_in) and rng.random() >= gaps
                ctx.set(dut.i.valid, int(send))
                if send:
                    ctx.set(dut.i.payload, [int(v) for v in beats_in[sent]])
                ctx.set(dut.o.ready, int(rng.random() >= stall))
                await ctx.delay(1e-9)
                if send and ctx.get(dut.i.ready):
                    sent += 1
                if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                    v = ctx.get(dut.o.payload)
                    beats.append([[v[lane][a] for a in range(mt)] for lane in range(lanes)])
                await ctx.tick()
            assert len(beats) == want, f"{len(beats)} of {want} engines"
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.o.ready, 1)
            await ctx.tick()
            assert ctx.get(dut.idle)
            got.append(np.array(beats, dtype=np.int64))
            cycles.append(n)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got if gaps or stall else (got, cycles)


@pytest.mark.parametrize("nb", [1, 4, 8])
@pytest.mark.parametrize("fcu", CONFIGS, ids=str)
def test_preadder_matches_preadd_set(fcu, nb):
    rng = np.random.default_rng(2)
    lanes = 2
    loads, want = [], []
    for mac, nsets in ((False, 2), (True, 3), (False, 1)):
        shape = ((nsets, fcu.rows, lanes * fcu.mac_channels) if mac
                 else (nsets, fcu.rows, fcu.piece_taps, lanes))
        raw = rng.integers(-128, 128, shape).astype(np.int8)
        raw[0].flat[0], raw[-1].flat[-1] = -128, 127          # the extremes
        loads.append((mac, raw.reshape(-1)))
        G = np.stack([preadd_set(fcu, r, mac) for r in raw])       # (sets, R, M, T, lanes)
        want.append(G.transpose(0, 1, 4, 2, 3).reshape(nsets * fcu.rows, lanes, -1))
    for got, exp in zip(run_preadder(fcu, lanes, loads, nb=nb), want):
        assert got.shape == exp.shape and np.array_equal(got, exp)


def test_preadder_keeps_up_with_the_bus():
    """Without gaps or back-pressure: a beat per clock while an engine is at least a beat
    long (3 taps x 2 lanes = 6 bytes on a 4-byte bus), an engine per clock otherwise."""
    fcu = CONFIGS[0]
    conv = np.arange(12 * 8, dtype=np.int8)                   # 8 sets = 16 engines, 24 beats
    mac = np.arange(4 * 8, dtype=np.int8)                     # 8 MAC sets = 16 engines, 8 beats
    _, cycles = run_preadder(fcu, 2, [(False, conv), (True, mac)], gaps=0, stall=0)
    assert cycles[0] <= 24 + 3 and cycles[1] <= 16 + 3, cycles


def test_clear_drops_a_partial_engine():
    fcu = CONFIGS[0]
    raw = np.arange(1, 13, dtype=np.int8)              # one set: 2 engines x 3 taps x 2 lanes
    got = run_preadder(fcu, 2, [(False, raw, [99, 98, 97])], gaps=0.2, stall=0.2)
    exp = preadd_set(fcu, raw.reshape(fcu.rows, 3, 2), False)
    assert np.array_equal(got[0], exp.transpose(0, 3, 1, 2).reshape(2, 2, -1))


@pytest.mark.parametrize("fcu", CONFIGS, ids=str)
def test_the_small_parts_preadder_matches_too(fcu):
    """A byte stream that ends with the last engine (no count) and no output register."""
    rng = np.random.default_rng(5)
    loads, want = [], []
    for mac, nsets in ((False, 2), (True, 3)):
        shape = ((nsets, fcu.rows, fcu.mac_channels) if mac
                 else (nsets, fcu.rows, fcu.piece_taps, 1))
        raw = rng.integers(-128, 128, shape).astype(np.int8)
        loads.append((mac, raw.reshape(-1)))
        G = np.stack([preadd_set(fcu, r, mac) for r in raw])
        want.append(G.transpose(0, 1, 4, 2, 3).reshape(nsets * fcu.rows, 1, -1))
    got = run_preadder(fcu, 1, loads, nb=1, compact=True)
    for g, e in zip(got, want):
        assert g.shape == e.shape and np.array_equal(g, e)
