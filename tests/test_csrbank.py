"""The control slave in amaranth.sim: AXI4-Lite reads and writes of every register, the start
pulse, and the counters."""

import pytest
from amaranth.sim import Simulator

from ffacc.firmware.csr import CSR, CTRL_START
from ffacc.hw.csrbank import CsrBank


async def axil_write(ctx, dut, addr, value):
    ctx.set(dut.s_axil_awaddr, addr)
    ctx.set(dut.s_axil_wdata, value)
    ctx.set(dut.s_axil_awvalid, 1)
    ctx.set(dut.s_axil_wvalid, 1)
    ctx.set(dut.s_axil_bready, 1)
    for _ in range(10):
        await ctx.delay(1e-9)
        taken = ctx.get(dut.s_axil_awready)
        start = ctx.get(dut.start)
        await ctx.tick()
        if taken:
            break
    else:
        raise AssertionError("the write was not taken")
    ctx.set(dut.s_axil_awvalid, 0)
    ctx.set(dut.s_axil_wvalid, 0)
    assert ctx.get(dut.s_axil_bvalid)
    await ctx.tick()
    assert not ctx.get(dut.s_axil_bvalid)
    return start


async def axil_read(ctx, dut, addr):
    ctx.set(dut.s_axil_araddr, addr)
    ctx.set(dut.s_axil_arvalid, 1)
    ctx.set(dut.s_axil_rready, 1)
    await ctx.delay(1e-9)
    assert ctx.get(dut.s_axil_arready)
    await ctx.tick()
    ctx.set(dut.s_axil_arvalid, 0)
    assert ctx.get(dut.s_axil_rvalid)
    value = ctx.get(dut.s_axil_rdata)
    await ctx.tick()
    assert not ctx.get(dut.s_axil_rvalid)
    return value


def simulate(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("addr_bits", [16, 24, 32])
def test_registers_read_back_and_clamp(addr_bits):
    """PROG_BASE and MEM_SIZE read back what was written; a value at or past 2**addr_bits is
    held as 2**addr_bits (0xFFFFFFFF through 32 bits); the read-only registers read their
    inputs; an offset without a register reads 0."""
    dut = CsrBank(addr_bits=addr_bits, ident=0xDEADBEEF, info=0x01030204)
    lim = 1 << addr_bits

    async def bench(ctx):
        assert await axil_read(ctx, dut, CSR.MEM_SIZE) == min(lim, 0xFFFFFFFF)
        await axil_write(ctx, dut, CSR.PROG_BASE, 0x1238)
        assert await axil_read(ctx, dut, CSR.PROG_BASE) == 0x1238
        await axil_write(ctx, dut, CSR.MEM_SIZE, 0xFFFFFFF0)
        assert await axil_read(ctx, dut, CSR.MEM_SIZE) == min(lim, 0xFFFFFFFF) \
            if addr_bits < 32 else 0xFFFFFFF0
        assert ctx.get(dut.mem_size) == (lim if addr_bits < 32 else 0xFFFFFFF0)
        ctx.set(dut.done, 1)
        ctx.set(dut.error, 1)
        ctx.set(dut.err_code, 5)
        ctx.set(dut.err_pc, 0x4448)
        assert await axil_read(ctx, dut, CSR.STATUS) == 0b110
        assert await axil_read(ctx, dut, CSR.ERROR) == 5
        assert await axil_read(ctx, dut, CSR.ERROR_PC) == 0x4448
        assert await axil_read(ctx, dut, CSR.ID) == 0xDEADBEEF
        assert await axil_read(ctx, dut, CSR.INFO) == 0x01030204
        assert await axil_read(ctx, dut, 0xFC) == 0

    simulate(dut, bench)


@pytest.mark.parametrize("perf", [True, False])
def test_start_and_counters(perf):
    """CTRL starts a run only when idle, and the start clears the counters; CYCLES counts the
    busy clocks, STALL the stalled busy clocks, BUSY and MULT_SLOTS the streamed beats and
    their slots, INSTRUCTIONS the decoded instructions (the last four only with the
    profiling counters)."""
    dut = CsrBank(addr_bits=24, ident=0, info=0, perf_counters=perf)

    async def bench(ctx):
        for run in range(2):
            assert await axil_write(ctx, dut, CSR.CTRL, CTRL_START)
            ctx.set(dut.busy, 1)
            assert await axil_read(ctx, dut, CSR.CYCLES) == 0
            assert not await axil_write(ctx, dut, CSR.CTRL, CTRL_START)  # busy: no start
            pattern = [(1, 0, 0, 1), (0, 1, 7, 0), (1, 1, 9, 1), (0, 0, 0, 0), (1, 1, 3, 1)]
            for stall, streaming, slots, decoded in pattern * (run + 1):
                ctx.set(dut.stall, stall)
                ctx.set(dut.streaming, streaming)
                ctx.set(dut.slots, slots)
                ctx.set(dut.decoded, decoded)
                await ctx.tick()
            ctx.set(dut.stall, 0)
            ctx.set(dut.streaming, 0)
            ctx.set(dut.decoded, 0)
            await ctx.tick()                # STALL counts a clock late: the last one
            ctx.set(dut.busy, 0)
            n = run + 1
            # busy: a read and a write before the pattern (two clocks each), a clock after it
            assert await axil_read(ctx, dut, CSR.CYCLES) == 2 + 2 + 5 * n + 1
            want = {CSR.STALL: 3 * n, CSR.BUSY: 3 * n, CSR.MULT_SLOTS: 19 * n,
                    CSR.INSTRUCTIONS: 3 * n, CSR.MULT_SLOTS_HI: 0}
            for reg, value in want.items():
                assert await axil_read(ctx, dut, reg) == (value if perf else 0), reg

    simulate(dut, bench)


def test_the_slot_count_carries_into_the_high_word():
    dut = CsrBank(addr_bits=24, ident=0, info=0)

    async def bench(ctx):
        await axil_write(ctx, dut, CSR.CTRL, CTRL_START)
        ctx.set(dut.busy, 1)
        ctx.set(dut.streaming, 1)
        ctx.set(dut.slots, 0xFFFFFFFF)
        for _ in range(3):
            await ctx.tick()
        ctx.set(dut.streaming, 0)
        total = 3 * 0xFFFFFFFF
        assert await axil_read(ctx, dut, CSR.MULT_SLOTS) == total & 0xFFFFFFFF
        assert await axil_read(ctx, dut, CSR.MULT_SLOTS_HI) == total >> 32

    simulate(dut, bench)
