"""8N1 UART receiver and transmitter at any rate the clock makes: ``clock Hz ÷ baud`` clocks a
bit, a whole number or not.

A bit lasts ``den / num`` clocks, the fraction ``clock_hz / baud`` in lowest terms. A phase
accumulator adds ``num`` each clock and ticks when it reaches ``den``, so bits are one whole
number of clocks or the next (16 or 17 for 3 Mbaud from 50 MHz), and the rate is exact on
average: no error accumulates over a frame. With ``num = 1`` it is a plain counter of ``den``
clocks.
"""

from fractions import Fraction

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx", "bit_clocks"]

#: clocks a bit a whole-number rate needs at least (the receiver samples mid-bit)
MIN_CLOCKS = 4
#: ... and a fractional one: its bits are a clock shorter or longer than the mean, and the
#: receiver's mid-bit sample may sit a clock off it besides
MIN_CLOCKS_FRACTIONAL = 8


def _enough(d, where):
    """``d`` clocks a bit (a :class:`~fractions.Fraction`), or a :class:`ValueError` that
    names ``where`` when they are too few: at least ``MIN_CLOCKS`` for a whole number,
    ``MIN_CLOCKS_FRACTIONAL`` for a fraction."""
    least = MIN_CLOCKS if d.denominator == 1 else MIN_CLOCKS_FRACTIONAL
    if d < least:
        kind = "" if d.denominator == 1 else " a fractional rate needs"
        raise ValueError(f"{where}: {float(d):.2f} clocks a bit;{kind} at least {least} (the "
                         f"clock must be at least {least}x the baud rate)")
    return d


def bit_clocks(clock_hz, baud):
    """Clocks a bit, ``clock_hz / baud`` as a :class:`~fractions.Fraction`; a
    :class:`ValueError` names the rate the clock is too slow for."""
    if not isinstance(clock_hz, int) or not isinstance(baud, int) or clock_hz <= 0 or baud <= 0:
        raise ValueError(f"UART: clock {clock_hz!r} Hz and baud {baud!r} must be positive "
                         f"whole numbers")
    return _enough(Fraction(clock_hz, baud),
                   f"UART at {baud} baud from a {clock_hz / 1e6:g} MHz clock")


class _Uart(wiring.Component):
    """A UART side at ``clocks`` clocks a bit (an int or a :class:`~fractions.Fraction`)."""

    def __init__(self, clocks):
        self.clocks = d = _enough(Fraction(clocks), "UART")
        self.num, self.den = d.denominator, d.numerator     # +num a clock, a bit at den
        super().__init__()

    def _phase(self, m, name):
        """The phase accumulator: ``(phase, tick)``; ``tick`` is high in a bit's last clock
        (:meth:`_restart` starts a bit)."""
        phase = Signal(range(self.den), name=name)
        tick = Signal(name=f"{name}_tick")
        m.d.comb += tick.eq(phase >= self.den - self.num)
        with m.If(tick):
            m.d.sync += phase.eq(phase + self.num - self.den)
        with m.Else():
            m.d.sync += phase.eq(phase + self.num)
        return phase, tick

    def _restart(self, m, phase, half=False):
        """Begin a bit in the next clock: ``tick`` comes ``ceil(den / num)`` clocks from now,
        or with ``half`` after half of that, rounded down to whole clocks."""
        half_clocks = self.den // 2 // self.num
        m.d.sync += phase.eq(self.den - half_clocks * self.num if half else 0)


class UartRx(_Uart):
    """The receiving side.

    Ports
    -----
    rx : In(1)
        The line (idle high); synchronized here.
    data : Out(8)
        The last byte received, valid in the clock ``valid`` pulses.
    valid : Out(1)
        Pulses for a clock when a byte with a high stop bit has arrived.
    frame_error : Out(1)
        Pulses instead when the stop bit is low (the byte is dropped).

    The start bit's falling edge starts the bit clock half a bit early, so each bit is sampled
    in its middle (within a clock); a start bit that is high again at its middle is a glitch.
    """

    rx: In(1, init=1)
    data: Out(8)
    valid: Out(1)
    frame_error: Out(1)

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        phase, tick = self._phase(m, "rx_phase")
        bit = Signal(range(9))
        shreg = Signal(8)
        m.d.comb += self.data.eq(shreg)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    self._restart(m, phase, half=True)
                    m.next = "START"
            with m.State("START"):
                with m.If(tick):
                    m.d.sync += bit.eq(0)
                    m.next = "DATA"
                    with m.If(rx):              # a glitch, not a start bit
                        m.next = "IDLE"
            with m.State("DATA"):
                with m.If(tick):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(tick):
                    m.d.comb += [self.valid.eq(rx), self.frame_error.eq(~rx)]
                    m.next = "IDLE"
        return m


class UartTx(_Uart):
    """The sending side.

    Ports
    -----
    data : In(8)
        The byte to send, taken when ``valid`` and ``ready`` are both high.
    valid : In(1)
    ready : Out(1)
        High while the line is idle (no frame in flight).
    tx : Out(1)
        The line: a start bit, ``data`` from its lowest bit, a stop bit.
    """

    data: In(8)
    valid: In(1)
    ready: Out(1)
    tx: Out(1, init=1)

    def elaborate(self, platform):
        m = Module()
        phase, tick = self._phase(m, "tx_phase")
        shreg = Signal(10, init=0x3FF)
        left = Signal(range(11))
        m.d.comb += [self.ready.eq(left == 0), self.tx.eq(shreg[0])]
        with m.If(left == 0):
            with m.If(self.valid):
                m.d.sync += [shreg.eq(Cat(0, self.data, 1)), left.eq(10)]
                self._restart(m, phase)
        with m.Elif(tick):
            m.d.sync += [shreg.eq(Cat(shreg[1:], 1)), left.eq(left - 1)]
        return m
