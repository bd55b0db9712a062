"""A helper the amaranth.sim tests share: run one testbench against a component."""

from amaranth.sim import Simulator


def simulate(dut, bench, period=1e-6):
    """Run the async testbench ``bench`` on ``dut`` with a clock of ``period`` seconds."""
    sim = Simulator(dut)
    sim.add_clock(period)
    sim.add_testbench(bench)
    sim.run()


async def stream_through(ctx, dut, beats, rng, *, gaps, stall, done, took, limit):
    """Offer ``beats`` to ``dut.i`` (a clock with none offered at random, ``gaps`` of them)
    while ``dut.o`` is ready at random (``1 - stall`` of the clocks); ``took(payload)`` gets
    each output taken. Ends at the clock ``done(sent)`` holds; returns that clock's count.
    Fails after ``limit`` clocks."""
    sent = 0
    for t in range(limit):
        if done(sent):
            ctx.set(dut.i.valid, 0)
            return t
        send = sent < len(beats) and rng.random() >= gaps
        ctx.set(dut.i.valid, int(send))
        if send:
            ctx.set(dut.i.payload, list(beats[sent]))
        ctx.set(dut.o.ready, int(rng.random() >= stall))
        await ctx.delay(1e-9)
        if send and ctx.get(dut.i.ready):
            sent += 1
        if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
            took(ctx.get(dut.o.payload))
        await ctx.tick()
    raise AssertionError(f"the transfer did not finish in {limit} clocks")
