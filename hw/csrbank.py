"""The accelerator's control slave: the registers of :class:`ffacc.firmware.csr.CSR` on AXI4-Lite,
and the run's profiling counters."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ffacc.firmware.csr import CSR
from ffacc.firmware.isa import Err
from .axi import axil_slave_ports

__all__ = ["CsrBank"]


class CsrBank(wiring.Component):
    """The control/status registers (offsets, access and meaning: :class:`~ffacc.firmware.csr.CSR`)
    behind an AXI4-Lite slave that takes one write and one read at a time.

    Parameters
    ----------
    addr_bits : int
        The accelerator addresses ``2**addr_bits`` bytes: ``PROG_BASE`` and ``MEM_SIZE`` hold
        ``addr_bits`` bits plus an overflow bit. A value written at or above ``2**addr_bits``
        is held as ``2**addr_bits`` (outside every memory: a run from there stops with
        ``ADDRESS``), and such a value reads back as ``0xFFFFFFFF`` when 32 bits cannot hold it.
    ident, info : int
        The values of ``ID`` (the configuration's fingerprint) and ``INFO``.
    perf_counters : bool
        Whether ``BUSY``, ``STALL``, ``MULT_SLOTS`` and ``INSTRUCTIONS`` count (else they read
        0). ``CYCLES`` always counts.

    Ports
    -----
    s_axil_* : the AXI4-Lite slave (8-bit addresses, 32-bit data)
    start : Out(1)
        A write of ``CTRL`` with bit 0 set while not ``busy``: the run starts (a pulse). The
        counters clear with it.
    prog_base, mem_size : Out(addr_bits + 1)
        ``PROG_BASE`` and ``MEM_SIZE`` (reset: ``2**addr_bits``).
    busy, done, error : In(1)
        The run's state, read in ``STATUS``; ``CYCLES`` counts the clocks ``busy``.
    err_code, err_pc : In
        ``ERROR`` and ``ERROR_PC``.
    stall : In(1)
        A clock the run waits for the bus. ``STALL`` counts it a clock later: it comes late in
        the clock, out of the DMA engines' request logic, and the ULX3S's critical path once
        ran from POST's write through the writer's range check into this counter.
    streaming, slots : In(1), In(32)
        A clock the FCU array takes a beat (``BUSY``), and the multiplier slots the beat uses
        (``MULT_SLOTS`` adds them while ``streaming``).
    decoded : In(1)
        An instruction decoded (``INSTRUCTIONS``).
    cycles, stall_cycles : Out(32)
        ``CYCLES`` and ``STALL`` (a profiler follows them per instruction).
    """

    def __init__(self, *, addr_bits, ident, info, perf_counters=True):
        self.A, self.ident, self.info, self.perf = addr_bits, ident, info, perf_counters
        aw = addr_bits + 1
        ports = dict(axil_slave_ports("s_axil"))
        ports.update({
            "start": Out(1), "prog_base": Out(aw), "mem_size": Out(aw, init=1 << addr_bits),
            "busy": In(1), "done": In(1), "error": In(1), "err_code": In(range(max(Err) + 1)),
            "err_pc": In(aw), "stall": In(1), "streaming": In(1), "slots": In(32),
            "decoded": In(1), "cycles": Out(32), "stall_cycles": Out(32),
        })
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        A, LIM = self.A, 1 << self.A

        def clamp(v):
            """A written value as addr_bits bits plus overflow: LIM when it is LIM or more."""
            return Mux(v[A:].any(), LIM, v[:A]) if len(v) > A else v

        def read32(v):
            """An address-like register through a 32-bit read."""
            return Mux(v[32:].any(), 0xFFFFFFFF, v[:32]) if len(v) > 32 else v

        cycles, stall_cycles = self.cycles, self.stall_cycles
        busy_cycles = Signal(32)
        mult_slots = Signal(64)
        n_instr = Signal(32)

        # writes: address and data in the same clock, answered the clock after
        bvalid = Signal()
        take_w = Signal()
        m.d.comb += [self.s_axil_bvalid.eq(bvalid), self.s_axil_bresp.eq(0),
                     take_w.eq(self.s_axil_awvalid & self.s_axil_wvalid & ~bvalid),
                     self.s_axil_awready.eq(take_w), self.s_axil_wready.eq(take_w)]
        with m.If(take_w):
            m.d.sync += bvalid.eq(1)
            with m.Switch(self.s_axil_awaddr[2:8]):
                with m.Case(CSR.CTRL >> 2):
                    m.d.comb += self.start.eq(self.s_axil_wdata[0] & ~self.busy)
                with m.Case(CSR.PROG_BASE >> 2):
                    m.d.sync += self.prog_base.eq(clamp(self.s_axil_wdata))
                with m.Case(CSR.MEM_SIZE >> 2):
                    m.d.sync += self.mem_size.eq(clamp(self.s_axil_wdata))
        with m.If(bvalid & self.s_axil_bready):
            m.d.sync += bvalid.eq(0)

        # reads: the register the clock after the address
        rvalid = Signal()
        rdata = Signal(32)
        take_r = Signal()
        m.d.comb += [self.s_axil_rvalid.eq(rvalid), self.s_axil_rresp.eq(0),
                     self.s_axil_rdata.eq(rdata),
                     take_r.eq(self.s_axil_arvalid & ~rvalid), self.s_axil_arready.eq(take_r)]
        with m.If(take_r):
            m.d.sync += rvalid.eq(1)
            with m.Switch(self.s_axil_araddr[2:8]):
                for off, val in ((CSR.STATUS, Cat(self.busy, self.done, self.error)),
                                 (CSR.ERROR, self.err_code), (CSR.ERROR_PC, read32(self.err_pc)),
                                 (CSR.PROG_BASE, read32(self.prog_base)),
                                 (CSR.MEM_SIZE, read32(self.mem_size)), (CSR.ID, self.ident),
                                 (CSR.INFO, self.info), (CSR.CYCLES, cycles),
                                 (CSR.BUSY, busy_cycles), (CSR.STALL, stall_cycles),
                                 (CSR.MULT_SLOTS, mult_slots[:32]),
                                 (CSR.MULT_SLOTS_HI, mult_slots[32:]),
                                 (CSR.INSTRUCTIONS, n_instr)):
                    with m.Case(off >> 2):
                        m.d.sync += rdata.eq(val)
                with m.Default():
                    m.d.sync += rdata.eq(0)
        with m.If(rvalid & self.s_axil_rready):
            m.d.sync += rvalid.eq(0)

        # counters: a run's start clears them (the run is not busy yet in that clock)
        stall_q = Signal()
        m.d.sync += stall_q.eq(self.stall)
        with m.If(self.start):
            m.d.sync += cycles.eq(0)
        with m.Elif(self.busy):
            m.d.sync += cycles.eq(cycles + 1)
        if self.perf:
            with m.If(self.start):
                m.d.sync += [busy_cycles.eq(0), stall_cycles.eq(0), mult_slots.eq(0),
                             n_instr.eq(0)]
            with m.Else():
                with m.If(self.busy & stall_q):
                    m.d.sync += stall_cycles.eq(stall_cycles + 1)
                with m.If(self.streaming):
                    m.d.sync += [busy_cycles.eq(busy_cycles + 1),
                                 mult_slots.eq(mult_slots + self.slots)]
                with m.If(self.decoded):
                    m.d.sync += n_instr.eq(n_instr + 1)
        return m
