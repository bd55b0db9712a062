"""A run's status: started, ended at ``END``, or stopped by a failure once no background work
is left."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ffacc.firmware.isa import Err

__all__ = ["RunStatus"]


class RunStatus(wiring.Component):
    """The status registers of the controller's runs (``addr_bits`` wide pcs).

    Ports
    -----
    start : In(1)
        A run starts (busy; the last run's status is cleared).
    end : In(1)
        The run ends at its ``END`` (done).
    fail, fail_code, fail_pc : In
        The run fails with ``fail_code`` at ``fail_pc`` (a one-clock pulse). It stays busy
        while ``bg_busy`` (the next run's fetch would take a background read's beats, a
        background ``POST`` still writes), then ends with the error, or with ``late_err``
        at ``late_pc`` when that is non-zero (a background ``POST``'s, which came first).
    bg_busy, late_err, late_pc : In
    busy, done, error, err_code, err_pc : Out
        The run's status.
    """

    def __init__(self, addr_bits):
        err = range(max(Err) + 1)
        super().__init__({
            "start": In(1), "end": In(1),
            "fail": In(1), "fail_code": In(err), "fail_pc": In(addr_bits),
            "bg_busy": In(1), "late_err": In(err), "late_pc": In(addr_bits),
            "busy": Out(1), "done": Out(1), "error": Out(1),
            "err_code": Out(err), "err_pc": Out(addr_bits),
        })

    def elaborate(self, platform):
        m = Module()
        with m.If(self.start):
            m.d.sync += [self.busy.eq(1), self.done.eq(0), self.error.eq(0),
                         self.err_code.eq(0), self.err_pc.eq(0)]
        with m.If(self.end):
            m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        with m.If(self.fail):
            m.d.sync += [self.err_code.eq(self.fail_code), self.err_pc.eq(self.fail_pc)]
        halting = Signal()
        with m.If(self.fail & self.bg_busy):
            m.d.sync += halting.eq(1)
        with m.Elif((self.fail | halting) & ~self.bg_busy):
            m.d.sync += [self.busy.eq(0), self.error.eq(1), halting.eq(0)]
            with m.If(self.late_err != 0):
                m.d.sync += [self.err_code.eq(self.late_err), self.err_pc.eq(self.late_pc)]
        return m
