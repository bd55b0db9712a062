"""BackgroundHolds (hw/holds.py): which instruction waits for a background LOADW or POST, for
the controller's fetch (hold) and its chained decode (peek_hold)."""

from dataclasses import replace

import pytest
from amaranth.sim import Simulator

from ffacc.firmware.isa import WAITS_FOR_LOADER, WAITS_FOR_POST, Op
from ffacc.hw.config import ACCEL_PRESETS
from ffacc.hw.holds import BackgroundHolds

CFG = ACCEL_PRESETS["tiny"]


def expect(cfg, op, lw, po, recs, peek):
    held = bool(cfg.weight_prefetch and lw and op in WAITS_FOR_LOADER)
    if cfg.post_overlap and po:
        held |= op in WAITS_FOR_POST or (op == Op.LOADQ and (recs or peek))
    return held


@pytest.mark.parametrize("cfg", [CFG, replace(CFG, post_overlap=False),
                                 replace(CFG, weight_prefetch=False)],
                         ids=["both", "no post_overlap", "no weight_prefetch"])
def test_holds_follow_the_tables(cfg):
    """Every opcode against every background state: hold and peek_hold as the ISA's tables
    say; a LOADQ is held only for a POST that reads its records, but never chained while a
    POST runs."""
    dut = BackgroundHolds(cfg)
    seen = set()

    async def bench(ctx):
        ctx.set(dut.q_lo, 4)
        ctx.set(dut.q_hi, 8)
        for op in Op:
            for lw in (0, 1):
                for po in (0, 1):
                    for qdst, recs in ((0, False), (2, True), (7, True), (8, False)):
                        ctx.set(dut.next_op, op)
                        ctx.set(dut.peek_op, op)
                        ctx.set(dut.lw_busy, lw)
                        ctx.set(dut.po_busy, po)
                        ctx.set(dut.q_dst, qdst)
                        ctx.set(dut.q_count, 3)
                        await ctx.delay(1e-9)
                        h, p = ctx.get(dut.hold), ctx.get(dut.peek_hold)
                        assert h == expect(cfg, op, lw, po, recs, False), (op, lw, po, qdst)
                        assert p == expect(cfg, op, lw, po, recs, True), (op, lw, po, qdst)
                        seen.add((h, p))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert (1, 1) in seen and (0, 0) in seen
    if cfg.post_overlap:
        assert (0, 1) in seen           # a LOADQ beside a POST of other records
