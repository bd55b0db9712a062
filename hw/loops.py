"""The loop stack of the hardware loops (``LOOP n`` … ``ENDLOOP``).

A frame holds the address of the loop body's first instruction and the iterations still to
run after the current one. ``LOOP n`` pushes ``(pc + 8, n - 1)``; ``ENDLOOP`` either counts
the top frame down and jumps back to its body (``jump``, ``target``) or pops it. The
controller checks ``full`` and ``empty`` before it pushes or ends (``Err.LOOP``) and restarts
the fetch unit at ``target`` on a jump.
"""

from amaranth.hdl import Array, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ffacc.firmware.isa import LOOP_BITS

__all__ = ["LoopStack"]


class LoopStack(wiring.Component):
    """``depth`` loop frames.

    Ports
    -----
    clear : In(1)
        Drop every frame (a run starts).
    push : In(1)
        ``LOOP``: push ``(push_pc, push_left)``. Ignored when ``full``.
    push_pc : In(addr_bits)
        The body's first instruction.
    push_left : In(LOOP_BITS)
        Iterations after the first (count - 1).
    end : In(1)
        ``ENDLOOP``: count the top frame down (when ``jump``) or pop it. Ignored when
        ``empty``.
    jump : Out(1)
        The top frame has iterations left: an ``ENDLOOP`` now jumps to ``target``.
    target : Out(addr_bits)
        The top frame's body.
    full, empty : Out(1)
        ``depth`` frames; no frame.
    """

    def __init__(self, *, depth, addr_bits):
        if not isinstance(depth, int) or not 1 <= depth <= 8:
            raise ValueError(f"depth must be 1..8 frames, not {depth!r}")
        self.depth, self.aw = depth, addr_bits
        super().__init__({
            "clear": In(1), "push": In(1), "push_pc": In(addr_bits), "push_left": In(LOOP_BITS),
            "end": In(1), "jump": Out(1), "target": Out(addr_bits),
            "full": Out(1), "empty": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        D = self.depth
        pcs = Array(Signal(self.aw, name=f"pc{i}", reset_less=True) for i in range(D))
        lefts = Array(Signal(LOOP_BITS, name=f"left{i}", reset_less=True) for i in range(D))
        sp = Signal(range(D + 1))                   # frames in use
        top = Signal(range(D))
        # the top frame is also in flip-flops of its own, so that jump and target (which
        # restart the fetch unit) do not go through sp's decrement and the frames' mux (it
        # was the ULX3S's critical path, into the read DMA); a pop reloads them
        top_pc = Signal(self.aw, reset_less=True)
        top_left = Signal(LOOP_BITS, reset_less=True)
        below = Signal(range(D))                    # the frame under the top
        m.d.comb += [top.eq(sp - 1), below.eq(sp - 2), self.full.eq(sp == D),
                     self.empty.eq(sp == 0), self.target.eq(top_pc),
                     self.jump.eq(~self.empty & (top_left != 0))]
        with m.If(self.clear):
            m.d.sync += sp.eq(0)
        with m.Elif(self.push & ~self.full):
            m.d.sync += [pcs[sp].eq(self.push_pc), lefts[sp].eq(self.push_left), sp.eq(sp + 1),
                         top_pc.eq(self.push_pc), top_left.eq(self.push_left)]
        with m.Elif(self.end & ~self.empty):
            with m.If(self.jump):
                m.d.sync += [lefts[top].eq(top_left - 1), top_left.eq(top_left - 1)]
            with m.Else():
                m.d.sync += [sp.eq(sp - 1), top_pc.eq(pcs[below]), top_left.eq(lefts[below])]
        return m
