"""The read DMA (AxiByteReader) in amaranth.sim against a model AXI memory: beats in order,
and an error response mid-transfer ends it only once the failed burst is drained."""

import pytest
from amaranth.sim import Simulator

from ffacc.firmware.isa import Err
from ffacc.hw.axi import AxiByteReader


def run_reader(requests, *, nb=4, burst=4, fail_beat=None, gap_every=0, busy_every=0):
    """Words-mode reads of ``requests`` [(addr, length)], each asked for as soon as the reader
    is idle after the last one's ``done``. The memory answers a beat a clock (a clock without
    one every ``gap_every`` clocks) with word ``addr // nb`` as data and SLVERR from the
    ``fail_beat``-th beat it sends on (counting from 0); the consumer takes a beat a clock
    (none every ``busy_every`` clocks). Returns per request (data words, err, beats the memory
    still owed when ``done`` came, idle the clock after ``done``)."""
    dut = AxiByteReader(nb, burst, addr_bits=16)
    out = []

    async def bench(ctx):
        ctx.set(dut.mem_size, 1 << 15)
        ctx.set(dut.beat_ready, 1)
        bursts, sent = [], 0            # the memory's queue of (word address, beats left)
        for addr, length in requests:
            for _ in range(200):
                if ctx.get(dut.idle):
                    break
                await ctx.tick()
            ctx.set(dut.req_addr, addr)
            ctx.set(dut.req_len, length)
            ctx.set(dut.req_words, 1)
            ctx.set(dut.req_valid, 1)
            await ctx.tick()
            ctx.set(dut.req_valid, 0)
            words = []
            for clock in range(500):
                # the memory's side: the address channel, then its beats
                ctx.set(dut.ar_ready, 1)
                beat = bool(bursts) and not (gap_every and clock % gap_every == gap_every - 1)
                if beat:
                    wa, left = bursts[0]
                    ctx.set(dut.r_valid, 1)
                    ctx.set(dut.r_data, wa)
                    ctx.set(dut.r_last, left == 1)
                    ctx.set(dut.r_resp, 2 if fail_beat is not None and sent >= fail_beat else 0)
                else:
                    ctx.set(dut.r_valid, 0)
                ctx.set(dut.beat_ready,
                        int(not (busy_every and clock % busy_every == busy_every - 1)))
                await ctx.delay(1e-9)
                if ctx.get(dut.beat_valid) and ctx.get(dut.beat_ready):
                    words.append(ctx.get(dut.beat_data))
                if ctx.get(dut.ar_valid):
                    bursts.append((ctx.get(dut.ar_addr) // nb, ctx.get(dut.ar_len) + 1))
                if bursts and beat and ctx.get(dut.r_ready) and ctx.get(dut.r_valid):
                    wa, left = bursts.pop(0)
                    sent += 1
                    if left > 1:
                        bursts.insert(0, (wa + 1, left - 1))
                done, err = ctx.get(dut.done), ctx.get(dut.err)
                await ctx.tick()
                if done:
                    owed = sum(left for _, left in bursts)
                    out.append((words, err, owed, ctx.get(dut.idle)))
                    break
            else:
                raise AssertionError("no done in 500 clocks")
            ctx.set(dut.r_valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


@pytest.mark.parametrize("gap,busy", [(0, 0), (3, 0), (0, 2), (3, 4)])
def test_words_come_in_order_across_bursts(gap, busy):
    """Every word once, in order, whether the memory pauses (``gap``) or the consumer does
    (``busy``: the reader's FIFO holds the memory's beats until it takes them)."""
    (words, err, owed, idle), = run_reader([(8, 40)], gap_every=gap, busy_every=busy)
    assert words == list(range(2, 12)) and err == 0 and owed == 0 and idle


@pytest.mark.parametrize("fail_beat", [0, 1, 5, 6, 7])
def test_an_error_response_ends_the_read_once_its_burst_is_drained(fail_beat):
    """A read of 8 beats in two bursts of 4 whose ``fail_beat``-th beat is SLVERR: the beats
    before it come out, ``done`` comes with BUS once the memory owes no beat of the started
    bursts (no second burst after a failed first one), and the reader is idle then, so the
    next request (here a second read, which fails at once as the memory now only errs) is
    taken at once rather than lost."""
    first, second = run_reader([(0, 32), (64, 8)], fail_beat=fail_beat)
    words, err, owed, idle = first
    assert words == list(range(fail_beat)) and err == Err.BUS
    assert owed == 0 and idle
    assert second[1] == Err.BUS and second[2] == 0
