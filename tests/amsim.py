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


async def through_pipe(ctx, dut, items, rng, *, gap, ready, drop_after=None, clocks=2000):
    """Offer ``items`` (payload dicts) to a pipeline's ``dut.i`` with a clock of none offered
    at random (``gap`` of them) while ``dut.o`` is ready at random (``ready`` of the clocks);
    with ``drop_after``, ``en`` falls for a clock once that many went in (then nothing may
    come out or go in, and the pipe is ``empty`` after it). Returns the outputs taken, each
    ``(data, rowend)``, once every item went in and the pipe is empty; fails after
    ``clocks``."""
    got = []
    sent, dropped = 0, False
    for _ in range(clocks):
        drop = not dropped and sent == drop_after
        ctx.set(dut.en, 0 if drop else 1)
        offer = sent < len(items) and rng.random() >= gap
        ctx.set(dut.i.valid, int(offer))
        if offer:
            for k, v in items[sent].items():
                ctx.set(getattr(dut.i.payload, k), v)
        take = rng.random() < ready
        ctx.set(dut.o.ready, int(take))
        if drop:
            assert ctx.get(dut.i.ready) == 0 and ctx.get(dut.o.valid) == 0
            await ctx.tick()
            assert ctx.get(dut.empty) == 1
            dropped = True
            continue
        if ctx.get(dut.o.valid) and take:
            got.append((ctx.get(dut.o.payload.data), ctx.get(dut.o.payload.rowend)))
        if offer and ctx.get(dut.i.ready):
            sent += 1
        await ctx.tick()
        if sent == len(items) and ctx.get(dut.empty) and not ctx.get(dut.o.valid):
            return got
    raise AssertionError("the pipe did not empty")
