"""8N1 UART receiver and transmitter with a fixed clock divisor (clock Hz ÷ baud)."""

from amaranth.hdl import Module, Signal, Cat
from amaranth.lib import wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx"]


class _Uart(wiring.Component):
    """A UART side at ``divisor`` clocks per bit (at least 4: the receiver samples mid-bit)."""

    def __init__(self, divisor):
        if divisor < 4:
            raise ValueError(f"UART divisor {divisor} (clock Hz / baud): the clock must be at "
                             f"least 4x the baud rate")
        self.divisor = divisor
        super().__init__()


class UartRx(_Uart):
    """Samples each bit in its middle; ``valid`` pulses for one cycle with ``data``.
    ``frame_error`` pulses instead when the stop bit is low (the byte is dropped)."""

    rx: In(1, init=1)
    data: Out(8)
    valid: Out(1)
    frame_error: Out(1)

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        cnt = Signal(range(d))
        bit = Signal(range(9))
        shreg = Signal(8)
        m.d.comb += self.data.eq(shreg)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += cnt.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.sync += cnt.eq(cnt - 1)
                with m.If(cnt == 0):
                    m.d.sync += [cnt.eq(d - 1), bit.eq(0)]
                    m.next = "DATA"
                    with m.If(rx):              # a glitch, not a start bit
                        m.next = "IDLE"
            with m.State("DATA"):
                m.d.sync += cnt.eq(cnt - 1)
                with m.If(cnt == 0):
                    m.d.sync += [cnt.eq(d - 1), shreg.eq(Cat(shreg[1:], rx)), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += cnt.eq(cnt - 1)
                with m.If(cnt == 0):
                    m.d.comb += [self.valid.eq(rx), self.frame_error.eq(~rx)]
                    m.next = "IDLE"
        return m


class UartTx(_Uart):
    """Sends ``data`` when ``valid`` and ``ready`` are both high."""

    data: In(8)
    valid: In(1)
    ready: Out(1)
    tx: Out(1, init=1)

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        cnt = Signal(range(d))
        shreg = Signal(10, init=0x3FF)
        left = Signal(range(11))
        m.d.comb += [self.ready.eq(left == 0), self.tx.eq(shreg[0])]
        with m.If(left == 0):
            with m.If(self.valid):
                m.d.sync += [shreg.eq(Cat(0, self.data, 1)), left.eq(10), cnt.eq(d - 1)]
        with m.Else():
            m.d.sync += cnt.eq(cnt - 1)
            with m.If(cnt == 0):
                m.d.sync += [shreg.eq(Cat(shreg[1:], 1)), left.eq(left - 1), cnt.eq(d - 1)]
        return m
