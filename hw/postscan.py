"""The post-processor's scan of a band: which accumulator word each output element reads.

:class:`PostScan` walks one lane's band of a ``POST`` in output order: row by row, every
``step``-th accumulator column of every ``step``-th row, or with ``pool`` for each output
the ``poolk`` x ``poolk`` elements of its window (row by row) at those rows and columns, for
the windows that lie within the band (with ``pool_pads``, the band padded by ``pt``, ``pl``,
``pb``, ``pr`` rows and columns: an element there is marked ``pad``, and holds no value). It
offers them as a stream of accumulator block addresses with the column within the block.
"""

from amaranth.hdl import Array, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .logic import ge_const

__all__ = ["PostScan", "scan_layout"]


def scan_layout(cfg):
    """An element of the scan: accumulator block ``addr``, column ``sub`` in it, its place
    in its output's group (``first``, ``last``) and output row (``rowend``), and (``pad``)
    whether it lies in the padding (``addr`` and ``sub`` are then any element's)."""
    return data.StructLayout({
        "addr": range(max(2, cfg.acc_blocks)), "sub": range(cfg.L),
        "first": 1, "last": 1, "rowend": 1, "pad": 1})


def pad_start(L, pl):
    """The block (negative) and column of column ``-pl``: where a row's first window starts
    with ``pl`` columns of padding."""
    return (-pl) // L, (-pl) % L


class PostScan(wiring.Component):
    """The element addresses of a lane's band, for an :class:`AcceleratorConfig` ``cfg``.

    Ports
    -----
    cmd : In(:func:`~ffacc.hw.post.post_command_layout`)
        The ``POST`` (its ``ny``, ``wout``, ``pool``, ``poolk``, ``step``, ``sblk``/``ssub``
        (the step as blocks and columns), ``wob``, ``rowstep``, ``acc0``), held while the
        band runs.
    start : In(1)
        Begin the band at block ``acc0``: the first element is offered from the next clock.
        A pooled band fewer than ``poolk`` columns wide or rows high (with its padding) has
        no element.
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
        done = Signal(init=1)
        pool = c.pool
        kmax = cfg.max_pool
        kmin = 2 if kmax == 2 else c.poolk         # the window's side
        if kmax == 2:
            # 2x2 windows only (the smallest parts): the element's offsets (dx, dy) are the
            # two bits of its place in the window, its address a choice of the cursor's
            dx, dy = Signal(), Signal()
            k1 = 1
            win_row_end = dx
            last_sub = ~pool | (dx & dy)
            xsub1 = Mux(xsub == L - 1, 0, xsub + 1)
            xblk1 = Mux(xsub == L - 1, xblk + 1, xblk)
            addr = rowbase + Mux(dy, c.wob, 0) + Mux(dx, xblk1, xblk)
            sub = Mux(dx, xsub1, xsub)
        else:
            # the element of the output's window the scan is at: window row dy (its first
            # block wrow) and column dx (block wblk, column wsub)
            dx, dy = Signal(range(kmax)), Signal(range(kmax))
            wrow = Signal(range(kmax * cfg.acc_blocks + 1))
            wblk = Signal(range(cfg.acc_blocks + 256 + kmax + 1))
            wsub = Signal(range(L))
            k1 = c.poolk - 1
            win_row_end = dx == k1
            last_sub = ~pool | (win_row_end & (dy == k1))
            addr = Mux(pool, wrow + wblk, rowbase + xblk)
            sub = Mux(pool, wsub, xsub)
        # the band's first element: its first window's, at row -pt and column -pl (pool_pads;
        # block and row addresses modulo their widths: those before the band are read, never
        # used), else row 0, column 0
        row0, blk0, sub0 = c.acc0, Const(0), Const(0)
        wext, hext = c.wout, c.ny           # the (padded) band's columns and rows
        is_pad = Const(0)
        if cfg.pool_pads:
            pt, pl, pb, pr = (c.pads[4 * i:4 * i + 4] for i in range(4))
            wx = len(xblk)
            blk0 = Mux(pool, Array(Const(pad_start(L, p)[0] % (1 << wx), wx)
                                   for p in range(kmax))[pl], 0)
            sub0 = Mux(pool, Array(pad_start(L, p)[1] for p in range(kmax))[pl], 0)
            ptwob = sum(Mux(pt[b], c.wob << b, 0) for b in range(max(1, (kmax - 1).bit_length())))
            row0 = Signal.like(rowbase)
            m.d.comb += row0.eq(c.acc0 - Mux(pool, ptwob, 0))
            wext = c.wout + Mux(pool, pl + pr, 0)
            hext = c.ny + Mux(pool, pt + pb, 0)
            # the element's row and column in the padded band
            xx, yy = x + dx, y + dy
            is_pad = pool & ((xx < pl) | (xx >= c.wout + pl) | (yy < pt) | (yy >= c.ny + pt))
        nx = x + c.step
        # the next output's window (or element) would reach past the row or the band
        row_end = nx + Mux(pool, k1, 0) >= wext
        o = self.o.payload
        m.d.comb += [
            self.o.valid.eq(~done),
            o.addr.eq(addr),
            o.sub.eq(sub),
            o.first.eq(~pool | ((dx == 0) & (dy == 0))),
            o.last.eq(last_sub),
            o.rowend.eq(last_sub & row_end),
            o.pad.eq(is_pad),
        ]

        def cursor(blk, sb, base):
            """The window cursors to an output's first element (windows of more than 2)."""
            return [] if kmax == 2 else [wrow.eq(base), wblk.eq(blk), wsub.eq(sb)]

        with m.If(self.start):
            m.d.sync += [y.eq(0), rowbase.eq(row0), xblk.eq(blk0), xsub.eq(sub0), x.eq(0),
                         dx.eq(0), dy.eq(0), *cursor(blk0, sub0, row0),
                         done.eq(pool & ((wext < kmin) | (hext < kmin)))]
        with m.Elif(self.o.valid & self.o.ready):
            with m.If(pool & ~last_sub):
                # the window's next element: along its row, then the next row's first
                with m.If(win_row_end):
                    m.d.sync += [dx.eq(0), dy.eq(dy + 1)]
                    if kmax > 2:
                        m.d.sync += [wrow.eq(wrow + c.wob), wblk.eq(xblk), wsub.eq(xsub)]
                with m.Else():
                    m.d.sync += dx.eq(dx + 1)
                    if kmax > 2:
                        m.d.sync += [wsub.eq(Mux(wsub == L - 1, 0, wsub + 1)),
                                     wblk.eq(Mux(wsub == L - 1, wblk + 1, wblk))]
            with m.Else():
                # the next output: x += step; at the row end, y += step
                nsub = xsub + c.ssub
                carry = ge_const(nsub, L)
                m.d.sync += [dx.eq(0), dy.eq(0)]
                with m.If(row_end):
                    ny_next = y + c.step
                    m.d.sync += [x.eq(0), xblk.eq(blk0), xsub.eq(sub0), y.eq(ny_next),
                                 rowbase.eq(rowbase + c.rowstep),
                                 *cursor(blk0, sub0, rowbase + c.rowstep)]
                    with m.If(ny_next + Mux(pool, k1, 0) >= hext):
                        m.d.sync += done.eq(1)
                with m.Else():
                    nblk = xblk + c.sblk + carry
                    nsub_w = Mux(carry, nsub - L, nsub)
                    m.d.sync += [x.eq(nx), xsub.eq(nsub_w), xblk.eq(nblk),
                                 *cursor(nblk, nsub_w, rowbase)]
        return m
