"""The post-processor's scan of a band: which accumulator word each output element reads.

:class:`PostScan` walks one lane's band of a ``POST`` in output order: row by row, every
``step``-th accumulator column of every ``step``-th row, or with ``pool`` each 2x2 window's
four elements (top left, top right, bottom left, bottom right) for each output. It offers
them as a stream of accumulator block addresses with the column within the block.
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .logic import ge_const, lt_const

__all__ = ["PostScan", "scan_layout"]


def scan_layout(cfg):
    """An element of the scan: accumulator block ``addr``, column ``sub`` in it, and its place
    in its output's group (``first``, ``last``) and output row (``rowend``)."""
    return data.StructLayout({
        "addr": range(max(2, cfg.acc_blocks)), "sub": range(cfg.L),
        "first": 1, "last": 1, "rowend": 1})


class PostScan(wiring.Component):
    """The element addresses of a lane's band, for an :class:`AcceleratorConfig` ``cfg``.

    Ports
    -----
    cmd : In(:func:`~ffacc.hw.post.post_command_layout`)
        The ``POST`` (its ``ny``, ``wout``, ``pool``, ``step``, ``sblk``/``ssub`` (the step
        as blocks and columns), ``wob``, ``rowstep``, ``acc0``), held while the band runs.
    start : In(1)
        Begin the band at block ``acc0``: the first element is offered from the next clock.
        A pooled band less than 2 columns wide has no element.
    o : Out(stream of :func:`scan_layout`)
        The elements in order; ``valid`` falls after the last is taken (the band is done).
        ``o.payload.addr`` is driven also while ``valid`` is low (the block the counters
        point at, perhaps past the band): a read of it is harmless.
    """

    def __init__(self, cfg, cmd_layout):
        self.cfg = cfg
        super().__init__({
            "cmd": In(cmd_layout),
            "start": In(1),
            "o": Out(stream.Signature(scan_layout(cfg))),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, c, L = self.cfg, self.cmd, self.cfg.L
        y = Signal(range(cfg.acc_blocks + 256 + 1))
        # a row's first accumulator block; it and the row step need only hold what a valid row
        # reaches (< acc_blocks): the next row's base is exact whenever that row exists
        rowbase = Signal(range(cfg.acc_blocks + 1))
        xblk = Signal(range(cfg.acc_blocks + 256 + 1))
        xsub = Signal(range(L))
        x = Signal(range(L * cfg.acc_blocks + 256 + 1))
        sub = Signal(2)                     # the element within a pooled window
        done = Signal(init=1)

        pool = c.pool
        last_sub = ~pool | (sub == 3)
        dx, dy = sub[0] & pool, sub[1] & pool
        xsub1 = Mux(xsub == L - 1, 0, xsub + 1)
        xblk1 = Mux(xsub == L - 1, xblk + 1, xblk)
        nx = x + c.step
        row_end = Mux(pool, nx + 1 >= c.wout, nx >= c.wout)
        o = self.o.payload
        m.d.comb += [
            self.o.valid.eq(~done),
            o.addr.eq(rowbase + Mux(dy, c.wob, 0) + Mux(dx, xblk1, xblk)),
            o.sub.eq(Mux(dx, xsub1, xsub)),
            o.first.eq(~pool | (sub == 0)),
            o.last.eq(last_sub),
            o.rowend.eq(last_sub & row_end),
        ]

        with m.If(self.start):
            m.d.sync += [y.eq(0), rowbase.eq(c.acc0), xblk.eq(0), xsub.eq(0), x.eq(0),
                         sub.eq(0), done.eq(pool & lt_const(c.wout, 2))]
        with m.Elif(self.o.valid & self.o.ready):
            with m.If(pool & (sub != 3)):
                m.d.sync += sub.eq(sub + 1)
            with m.Else():
                # the next output: x += step; at the row end, y += step
                nsub = xsub + c.ssub
                carry = ge_const(nsub, L)
                m.d.sync += sub.eq(0)
                with m.If(row_end):
                    ny_next = y + c.step
                    m.d.sync += [x.eq(0), xblk.eq(0), xsub.eq(0), y.eq(ny_next),
                                 rowbase.eq(rowbase + c.rowstep)]
                    with m.If(Mux(pool, ny_next + 1 >= c.ny, ny_next >= c.ny)):
                        m.d.sync += done.eq(1)
                with m.Else():
                    m.d.sync += [x.eq(nx), xsub.eq(Mux(carry, nsub - L, nsub)),
                                 xblk.eq(xblk + c.sblk + carry)]
        return m
