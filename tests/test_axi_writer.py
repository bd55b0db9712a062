"""The byte writer in amaranth.sim against a model AXI memory: data, strobes, throughput,
outstanding writes, and every error it reports."""

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings, strategies as st

from ffacc.firmware.isa import Err
from ffacc.hw.axi import TIMEOUT_CYCLES, AxiByteWriter
from ffacc.sim.cycles import writer_stalls

MEM = 256


def run_writer(writes, *, nb=4, outstanding=3, ready=1.0, b_delay=(1, 1), fault=None,
               silent_after=None, mem_size=MEM, seed=0, max_clocks=6000):
    """Offer ``writes`` ((addr, byte) pairs, or None for a clock without one) one per clock,
    then pulse ``flush`` and wait for ``idle`` or an error.

    The memory takes an address or data beat with probability ``ready`` per clock and
    answers each write ``b_delay`` (a random range of clocks) after both its beats; writes
    answer in order. ``fault``: that write (0-based) answers with SLVERR. ``silent_after``:
    writes from that one on are never answered. The expiry of the parent's bus timer is
    modelled from ``stall``.

    Returns the memory and a dict: err (or None), clocks, clocks the user waited (``waited``;
    ``offer_waits`` of them with a byte waiting), the largest number of unanswered writes
    and the writes on the bus.
    """
    dut = AxiByteWriter(nb, addr_bits=12, outstanding=outstanding)
    rng = np.random.default_rng(seed)
    mem = np.zeros(MEM, np.uint8)
    out = {}

    async def bench(ctx):
        ctx.set(dut.mem_size, mem_size)
        aws, ws, due = [], [], []           # addresses and data taken; (clock, resp) due
        k, clock, waited, tmo, in_flight, sent, offer_waits = 0, 0, 0, 0, 0, 0, 0
        flushed = False
        err = None
        while clock < max_clocks:
            gap = k < len(writes) and writes[k] is None
            offer = k < len(writes) and not gap
            ctx.set(dut.i.valid, int(offer))
            if offer:
                ctx.set(dut.i.payload.addr, writes[k][0])
                ctx.set(dut.i.payload.data, writes[k][1])
            ctx.set(dut.flush, int(k == len(writes) and not flushed))
            awr, wr_ = rng.random() < ready, rng.random() < ready
            ctx.set(dut.aw_ready, int(awr))
            ctx.set(dut.w_ready, int(wr_))
            b = due and due[0][0] <= clock
            ctx.set(dut.b_valid, int(bool(b)))
            ctx.set(dut.b_resp, due[0][1] if b else 0)
            ctx.set(dut.expired, int(tmo >= TIMEOUT_CYCLES))
            await ctx.delay(1e-9)
            if ctx.get(dut.err_valid):
                err = ctx.get(dut.err)
                break
            if k == len(writes) and flushed and ctx.get(dut.idle):
                break
            if k == len(writes):
                flushed = True
            if gap or offer and ctx.get(dut.i.ready):
                k += 1
            stall = ctx.get(dut.stall)
            waited += stall
            offer_waits += stall and offer
            tmo = tmo + 1 if stall else 0
            if ctx.get(dut.aw_valid) and awr:
                aws.append(ctx.get(dut.aw_addr))
            if ctx.get(dut.w_valid) and wr_:
                ws.append((ctx.get(dut.w_data), ctx.get(dut.w_strb)))
            if b and ctx.get(dut.b_ready):
                due.pop(0)
                in_flight -= 1
            while len(aws) > sent and len(ws) > sent:
                addr, (word, strb) = aws[sent], ws[sent]
                assert addr % nb == 0
                for j in range(nb):
                    if strb >> j & 1:
                        mem[addr + j] = word >> 8 * j & 0xFF
                resp = 2 if sent == fault else 0
                if silent_after is None or sent < silent_after:
                    due.append((clock + int(rng.integers(b_delay[0], b_delay[1] + 1)), resp))
                sent += 1
                in_flight += 1
            out["max_in_flight"] = max(out.get("max_in_flight", 0), in_flight)
            await ctx.tick()
            clock += 1
        else:
            raise AssertionError(f"neither idle nor an error in {max_clocks} clocks")
        out.update(err=err, clocks=clock, waited=waited, sent=sent, offer_waits=offer_waits)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return mem, out


def expected(writes):
    mem = np.zeros(MEM, np.uint8)
    for a, v in writes:
        mem[a] = v
    return mem


@pytest.mark.parametrize("nb", [4, 8])
def test_consecutive_bytes_go_out_a_byte_a_clock(nb):
    writes = [(0x10 + j, (7 * j + 1) & 0xFF) for j in range(64)]
    mem, out = run_writer(writes, nb=nb, b_delay=(2, 3))
    assert out["err"] is None
    assert np.array_equal(mem, expected(writes))
    assert out["sent"] == 64 // nb
    # no clock lost while bytes flow; the flush waits for the last word and its answer
    assert out["clocks"] <= 64 + 6, out


def test_writes_in_flight_are_bounded_and_counted():
    writes = [(j, j) for j in range(128)]
    mem, out = run_writer(writes, outstanding=2, b_delay=(12, 12))
    assert np.array_equal(mem, expected(writes))
    assert out["max_in_flight"] == 2
    assert out["waited"] > 0               # the slow answers held the bytes up


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, MEM - 1), st.integers(0, 255)), min_size=1,
                max_size=40),
       st.integers(0, 2**16), st.sampled_from([4, 8]))
def test_any_bytes_land_with_their_strobes(writes, seed, nb):
    mem, out = run_writer(writes, nb=nb, ready=0.5, b_delay=(0, 5), seed=seed)
    assert out["err"] is None
    assert np.array_equal(mem, expected(writes))


def test_an_error_response_is_a_bus_error():
    writes = [(j, j) for j in range(40)]
    mem, out = run_writer(writes, fault=3, b_delay=(1, 4))
    assert out["err"] == Err.BUS


def test_a_byte_past_the_memory_is_an_address_error():
    mem, out = run_writer([(5, 1), (MEM - 1, 2)], mem_size=MEM - 1)
    assert out["err"] == Err.ADDRESS
    assert not mem.any() or out["sent"] <= 1


@pytest.mark.parametrize("silent_after", [0, 5])
def test_a_memory_that_stops_answering_times_out(silent_after):
    writes = [(j, j) for j in range(64)]
    mem, out = run_writer(writes, outstanding=3, silent_after=silent_after,
                          max_clocks=TIMEOUT_CYCLES + 400)
    assert out["err"] == Err.TIMEOUT


def test_a_memory_that_never_takes_the_address_times_out():
    mem, out = run_writer([(1, 1), (9, 2)], ready=0.0, max_clocks=TIMEOUT_CYCLES + 100)
    assert out["err"] == Err.TIMEOUT


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 3), st.integers(1, 10), st.data(), st.sampled_from([4, 8]))
def test_the_cycle_model_counts_the_clocks_bytes_wait(lanes, n, draw, nb):
    """sim/cycles.writer_stalls (the ISS's and the compiler's cost) against the writer: POST
    lanes of ``n`` bytes, a clock apart, with a lane's setup (8 idle clocks) between them."""
    rows = draw.draw(st.lists(st.lists(st.integers(0, 40), min_size=n, max_size=n),
                              min_size=lanes, max_size=lanes))
    writes = []
    for r, row in enumerate(rows):
        writes += ([None] * 8 if r else []) + [(a, (7 * len(writes)) & 0xFF) for a in row]
    mem, out = run_writer(writes, nb=nb, outstanding=7)
    assert np.array_equal(mem, expected([w for w in writes if w]))
    assert out["offer_waits"] == writer_stalls([[a // nb for a in row] for row in rows])[0]


def test_the_last_word_of_a_flush_times_out_when_its_answer_never_comes():
    # one word: nothing but the flush waits on the bus
    mem, out = run_writer([(0, 1), (1, 2)], silent_after=0, max_clocks=TIMEOUT_CYCLES + 100)
    assert out["err"] == Err.TIMEOUT


def test_an_error_is_kept_until_clear_and_a_presented_word_is_never_withdrawn():
    """The address is taken, the data not yet; then a byte past the memory. The word stays on
    the bus until its data is taken and answered, the error stays until ``clear``, and the
    writer takes bytes again only after the answer."""
    dut = AxiByteWriter(4, addr_bits=12, outstanding=3)
    seen = {}

    async def bench(ctx):
        ctx.set(dut.mem_size, 64)
        ctx.set(dut.aw_ready, 1)
        for a in (8, 9, 12):                            # the third hands word 8 over
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload.addr, a)
            ctx.set(dut.i.payload.data, a)
            await ctx.delay(1e-9)
            assert ctx.get(dut.i.ready)
            await ctx.tick()
        ctx.set(dut.i.payload.addr, 100)                # past the memory
        await ctx.tick()                                # (AW of word 8 taken meanwhile)
        ctx.set(dut.i.valid, 0)
        for _ in range(5):
            await ctx.delay(1e-9)
            assert ctx.get(dut.err_valid) and ctx.get(dut.err) == Err.ADDRESS
            assert ctx.get(dut.w_valid) and ctx.get(dut.w_strb) == 0b11
            assert not ctx.get(dut.aw_valid) and not ctx.get(dut.idle)
            await ctx.tick()
        ctx.set(dut.w_ready, 1)
        await ctx.tick()
        ctx.set(dut.w_ready, 0)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload.addr, 20)
        await ctx.delay(1e-9)
        assert not ctx.get(dut.i.ready)                 # the answer is still due
        await ctx.tick()
        ctx.set(dut.b_valid, 1)
        await ctx.tick()
        ctx.set(dut.b_valid, 0)
        ctx.set(dut.i.valid, 0)
        await ctx.tick()
        await ctx.delay(1e-9)
        assert ctx.get(dut.idle) and ctx.get(dut.err_valid)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        await ctx.delay(1e-9)
        assert not ctx.get(dut.err_valid)
        ctx.set(dut.i.valid, 1)
        await ctx.delay(1e-9)
        seen["ready_after"] = ctx.get(dut.i.ready)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen["ready_after"]
