"""Which instruction waits for a background unit: the controller's ``hold`` (for the
instruction it fetches) and ``peek_hold`` (for the one after it, which it may decode at once).
"""

from amaranth.hdl import Const, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ffacc.firmware.isa import WAITS_FOR_LOADER, WAITS_FOR_POST, Op, Reg, reg_bits

__all__ = ["BackgroundHolds"]


class BackgroundHolds(wiring.Component):
    """For an :class:`~ffacc.hw.config.AcceleratorConfig` ``cfg``: with ``weight_prefetch``, a
    command that reads memory (and ``END``) waits for a background ``LOADW``
    (:data:`~ffacc.firmware.isa.WAITS_FOR_LOADER`); with ``post_overlap``, those that need the
    post-processor (:data:`~ffacc.firmware.isa.WAITS_FOR_POST`) wait for a background
    ``POST``, and a ``LOADQ`` for one that reads the records it writes. (Combinational.)

    Ports
    -----
    next_op, peek_op : In(8)
        The opcodes of the instruction the fetch unit has next and of the one after it.
    lw_busy, po_busy : In(1)
        A background ``LOADW`` runs; a ``POST`` is given or runs.
    q_dst, q_count : In
        ``Q_DST`` and ``Q_COUNT`` (the records a ``LOADQ`` writes).
    q_lo, q_hi : In
        The records the post-processor reads.
    hold : Out(1)
        ``next_op`` must wait.
    peek_hold : Out(1)
        ``peek_op`` must not be decoded at once (it may have to wait; a ``LOADQ`` whenever a
        ``POST`` runs, since ``Q_DST`` and ``Q_COUNT`` may be written in that clock).
    """

    def __init__(self, cfg):
        self.cfg = cfg
        rb = reg_bits(cfg)
        super().__init__({
            "next_op": In(8), "peek_op": In(8), "lw_busy": In(1), "po_busy": In(1),
            "q_dst": In(rb[Reg.Q_DST]), "q_count": In(rb[Reg.Q_COUNT]),
            "q_lo": In(rb[Reg.Q_DST] + 1), "q_hi": In(rb[Reg.Q_DST] + 2),
            "hold": Out(1), "peek_hold": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        hold = peek = Const(0, 1)
        nop, pop = self.next_op, self.peek_op
        if cfg.weight_prefetch:
            hold = self.lw_busy & nop.matches(*WAITS_FOR_LOADER)
            peek = self.lw_busy & pop.matches(*WAITS_FOR_LOADER)
        if cfg.post_overlap:
            recs = (self.q_dst < self.q_hi) & (self.q_lo < self.q_dst + self.q_count)
            hold = hold | (self.po_busy & (nop.matches(*WAITS_FOR_POST)
                                           | ((nop == Op.LOADQ) & recs)))
            peek = peek | (self.po_busy & pop.matches(*WAITS_FOR_POST, Op.LOADQ))
        m.d.comb += [self.hold.eq(hold), self.peek_hold.eq(peek)]
        return m
