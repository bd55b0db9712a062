"""A model of the read DMA, as the loaders and the ADD sequencer see it, for their amaranth.sim
benches (tests only)."""

from amaranth.sim import Simulator

from ffacc.firmware.isa import Err


class ReadDma:
    """Serves ``dut``'s read requests (``req``: addr, len) from ``mem``.

    A request is taken while no read runs (``req.ready``). Its data go out on ``dut.beats`` a
    beat at a time (``nb`` bytes from the request's address rounded down to a
    beat; ``nb = 1``: bytes), with random gaps, each beat held until ``ready``; then
    ``rd_done`` pulses. A read whose number is in ``fail`` gives half its beats and ends with
    ``BUS``. ``reads`` lists the requests as (addr, len).

    With ``valid_after_ready`` a beat is shown only in a clock its client asks for one
    (``ready``), as :class:`~ffacc.hw.axi.AxiByteReader` does (its ``beat_valid`` is the bus's
    ``rvalid`` while ``rready``, which is the client's ``ready``): a client whose ``ready``
    waits for ``valid`` then never gets a beat.

    Call :meth:`drive` before a clock's settle, :meth:`show` after it (then settle again), and
    :meth:`sample` after that.
    """

    def __init__(self, dut, mem, nb, rng, *, fail=(), gap=0.3, valid_after_ready=False):
        self.dut, self.mem, self.nb, self.rng = dut, mem, nb, rng
        self.fail, self.gap = set(fail), gap
        self.valid_after_ready = valid_after_ready
        self.stream = dut.beats
        self.reads = []
        self.busy = None            # the read being served: [beats left, error]
        self.send = self.last = False

    def drive(self, ctx):
        dut, busy = self.dut, self.busy
        ctx.set(dut.req.ready, int(busy is None))
        self.send = busy is not None and bool(busy[0]) and self.rng.random() >= self.gap
        ctx.set(self.stream.valid, int(self.send and not self.valid_after_ready))
        if self.send:
            ctx.set(self.stream.payload, [int(b) for b in busy[0][0]])
        self.last = busy is not None and not busy[0]
        ctx.set(dut.rd_done, int(self.last))
        ctx.set(dut.rd_err, int(self.last and busy[1]))

    def show(self, ctx):
        """(``valid_after_ready``) Show the beat if the client asks; true: the caller settles
        again."""
        if not self.valid_after_ready:
            return False
        self.send = self.send and bool(ctx.get(self.stream.ready))
        ctx.set(self.stream.valid, int(self.send))
        return True

    def sample(self, ctx):
        dut = self.dut
        if self.send and ctx.get(self.stream.ready):
            self.busy[0].pop(0)
        if self.last:
            self.busy = None
        if ctx.get(dut.req.valid) and ctx.get(dut.req.ready):
            r = ctx.get(dut.req.payload)
            self.reads.append((r.addr, r.len))
            a0 = r.addr - r.addr % self.nb
            beats = [self.mem[a:a + self.nb] for a in range(a0, r.addr + r.len, self.nb)]
            err = Err.BUS if len(self.reads) - 1 in self.fail else 0
            self.busy = [beats[:len(beats) // 2] if err else beats, err]

    @property
    def idle(self):
        return self.busy is None


def run_command(dut, cmd, dma, watch, *, before=None, clocks=20000, top=None):
    """Give ``dut`` the command ``cmd`` (held until taken) and simulate it, ``dma`` serving its
    reads, until ``cmd.ready``; ``before(ctx)`` runs each clock before the settle and
    ``watch(ctx)`` after it. ``top``: the elaboratable to simulate (``dut`` and its
    neighbours). Returns the ``err`` given with ``cmd.ready``; ``cmd`` a list: the commands one
    after another (each given the clock after the one before ends), and their errors."""
    cmds = cmd if isinstance(cmd, list) else [cmd]
    errs = []

    async def bench(ctx):
        for one in cmds:
            ctx.set(dut.cmd.payload, one)
            ctx.set(dut.cmd.valid, 1)
            for _ in range(clocks):
                if before:
                    before(ctx)
                dma.drive(ctx)
                await ctx.delay(1e-9)
                if dma.show(ctx):
                    await ctx.delay(1e-9)
                watch(ctx)
                dma.sample(ctx)
                done = ctx.get(dut.cmd.ready)
                err = ctx.get(dut.err)
                await ctx.tick()
                if done:
                    errs.append(err)
                    break
            else:
                raise AssertionError("the command did not end")

    sim = Simulator(top or dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return errs if isinstance(cmd, list) else errs[0]
