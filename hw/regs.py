"""The parameter registers that ``SET`` and ``INC`` write and the commands read.

"Cold" registers (:data:`COLD`: each read in one place, a base address, a stride, the first
row) live only in a small RAM that every write goes to; the others (*hot*) are also
flip-flops, read wherever and as often as needed. A cold register is read by presenting its
index (``r_addr``); its value is on ``r_data`` the clock after (from a flip-flop behind
distributed RAM, or from a block RAM on the iCE40). With hardware loops the RAM holds every
register at full width, so ``INC`` reads its register there.
"""

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.vendor import LatticeICE40Platform

from ffacc.firmware.isa import Reg, reg_bits
from .logic import reset_less_copy

__all__ = ["ParamRegs", "COLD", "WRITE_LAYOUT", "hot_layout", "ram_bits"]

# a write: register index and value (a SET's immediate, or INC's sum)
WRITE_LAYOUT = data.StructLayout({"reg": range(len(Reg)), "value": 34})

COLD = (Reg.A_SRC, Reg.W_SRC, Reg.Q_SRC, Reg.O_DST, Reg.O_CSTRIDE, Reg.O_ROW0, Reg.C_Y0)


def hot_layout(cfg):
    """The hot registers (every one not in :data:`COLD`) as a struct, by lower-case name."""
    rb = reg_bits(cfg)
    return data.StructLayout({r.name.lower(): unsigned(rb[r]) for r in Reg if r not in COLD})


def ram_bits(cfg):
    """The register RAM's width: the cold registers', or every one's with hardware loops
    (``INC`` reads its register there)."""
    rb = reg_bits(cfg)
    return max(rb[r] for r in (Reg if cfg.loop_depth else COLD))


class ParamRegs(wiring.Component):
    """The registers of :class:`~ffacc.firmware.isa.Reg` for an :class:`AcceleratorConfig`
    ``cfg`` (widths: :func:`~ffacc.firmware.isa.reg_bits`). ``lutram``: the RAM in
    distributed LUTs behind a flip-flop (True) or a block RAM (False); None: distributed
    except on the iCE40, which has none. Either gives the same values at the same clocks.

    Ports
    -----
    w : In(stream of {reg, value}), always ready
        Write ``value`` (its low bits: the register's width) into register ``reg`` (a valid
        index: the controller refuses others).
    r_addr : In, r_data : Out
        The RAM's read port: the register ``r_addr`` names, the clock after (cold registers,
        and with ``loop_depth`` every register, for ``INC``). With ``loop_depth`` a read sees
        a write in its clock (an ``INC`` decoded right after a write to its register, which
        it reads in that clock); otherwise the value before it.
    hot : Out(struct of the hot registers, by lower-case name)
        The flip-flop copies.
    chk_reg, chk_value : In, chk_wide : Out(1)
        Whether ``chk_value`` (a ``SET``'s immediate) has a bit set above register
        ``chk_reg``'s width.
    """

    def __init__(self, cfg, lutram=None):
        self.lutram = lutram
        self.transparent = bool(cfg.loop_depth)
        self.bits = reg_bits(cfg)
        self.hot_regs = [r for r in Reg if r not in COLD]
        self.ram_bits = ram_bits(cfg)
        super().__init__({
            "w": In(stream.Signature(WRITE_LAYOUT, always_ready=True)),
            "r_addr": In(range(len(Reg))), "r_data": Out(self.ram_bits),
            "hot": Out(hot_layout(cfg)),
            "chk_reg": In(8), "chk_value": In(32), "chk_wide": Out(1),
        })

    def cold(self, r):
        """Register ``r``'s value on ``r_data`` (presented on ``r_addr`` the clock before)."""
        return self.r_data[:self.bits[r]]

    def elaborate(self, platform):
        m = Module()
        rb = self.bits
        lutram = self.lutram
        if lutram is None:      # the iCE40 has no distributed RAM: a block RAM there
            lutram = not isinstance(platform, LatticeICE40Platform)
        ram = m.submodules.ram = Memory(
            shape=unsigned(self.ram_bits), depth=len(Reg), init=[],
            attrs={"ram_style": "distributed"} if lutram else None)
        wp = ram.write_port()
        w = self.w.payload
        m.d.comb += [wp.addr.eq(w.reg), wp.data.eq(w.value), wp.en.eq(self.w.valid)]
        if lutram:
            # an asynchronous read port and a flip-flop behind it: the value leaves from that
            # flip-flop. As a block RAM (a synchronous read port) its clock-to-output (5.6 ns
            # on the ECP5) began the ULX3S's critical path (a cold address through a loader
            # into the read DMA's bounds check). The flip-flop takes the RAM's content
            # before this clock's write, as the block RAM's port does.
            #
            # Transparent (with loops: a read sees a write in its clock), the flip-flop is in
            # front instead: the address is
            # registered and the RAM read as it is now, which has the write of the clock
            # before. The values are the same; the paths are not: the address comes straight
            # from the controller's next instruction (``INC``'s register, on the ULX3S the
            # critical path), and now ends at a flip-flop.
            rp = ram.read_port(domain="comb")
            if self.transparent:
                r_a = Signal.like(self.r_addr)
                m.d.sync += r_a.eq(self.r_addr)
                m.d.comb += [rp.addr.eq(r_a), self.r_data.eq(rp.data)]
            else:
                r_q = Signal(self.ram_bits, reset_less=True)
                m.d.comb += [rp.addr.eq(self.r_addr), self.r_data.eq(r_q)]
                m.d.sync += r_q.eq(rp.data)
        else:
            rp = ram.read_port(transparent_for=(wp,) if self.transparent else ())
            m.d.comb += [rp.addr.eq(self.r_addr), self.r_data.eq(rp.data)]
        # the hot copies have no reset: a reset does not clear the RAM either, and a program
        # SETs what it reads (at power-up both hold 0)
        hot = reset_less_copy(m, self.hot, name="hot_q")
        with m.If(self.w.valid):
            with m.Switch(w.reg):
                for r in self.hot_regs:
                    with m.Case(r):
                        m.d.sync += hot[r.name.lower()].eq(w.value)
        with m.Switch(self.chk_reg):
            for r in Reg:
                if rb[r] < 32:
                    with m.Case(r):
                        m.d.comb += self.chk_wide.eq(self.chk_value[rb[r]:].any())
        return m
