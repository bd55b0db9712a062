"""The SoC's UART (boards/uart.py) in amaranth.sim: bit timing of the sender at whole and
fractional clocks a bit, the receiver against senders a little fast or slow, framing errors,
glitches, and the rates the clock cannot make."""

from fractions import Fraction
from math import ceil

import numpy as np
import pytest

from ffacc.boards.soc import SoC
from ffacc.boards.uart import UartRx, UartTx, bit_clocks
from ffacc.hw.config import ACCEL_PRESETS

from amsim import simulate

TINY = ACCEL_PRESETS["tiny"]
# 2 Mbaud and 3 Mbaud from 50 MHz, 1 Mbaud from 12 MHz, and a fraction that is not a
# multiple of a half (50 MHz / 2.9 Mbaud)
RATES = [Fraction(25), Fraction(50, 3), Fraction(12), Fraction(500, 29)]


def _frame_bits(byte, stop=1):
    return [0] + [(byte >> k) & 1 for k in range(8)] + [stop]


def _send_line(dut, bytes_, gap=0):
    """The sender's line, a sample a clock, and the clock each byte's start bit begins: the
    bench hands it each byte as soon as it is ready (after ``gap`` idle clocks)."""
    line, starts = [], []

    async def bench(ctx):
        for b in bytes_:
            while not ctx.get(dut.ready):
                line.append(ctx.get(dut.tx))
                await ctx.tick()
            for _ in range(gap):
                line.append(ctx.get(dut.tx))
                await ctx.tick()
            ctx.set(dut.data, b)
            ctx.set(dut.valid, 1)
            line.append(ctx.get(dut.tx))
            await ctx.tick()
            starts.append(len(line))
            ctx.set(dut.valid, 0)
        while not ctx.get(dut.ready):
            line.append(ctx.get(dut.tx))
            await ctx.tick()
        line.append(ctx.get(dut.tx))

    simulate(dut, bench)
    return np.array(line), starts


@pytest.mark.parametrize("clocks", RATES, ids=str)
@pytest.mark.parametrize("gap", [0, 3])
def test_the_sender_keeps_the_rate_and_every_bit_within_a_clock(clocks, gap):
    rng = np.random.default_rng(int(clocks * 7) + gap)
    data = [int(b) for b in rng.integers(0, 256, 12)] + [0x00, 0xFF]
    line, starts = _send_line(UartTx(clocks), data, gap)
    assert line[:starts[0]].all() and len(starts) == len(data)
    ideal = [round(float(clocks * k)) for k in range(11)]
    for start, nxt, byte in zip(starts, starts[1:] + [len(line)], data):
        frame = line[start:nxt]
        # each bit from within a clock of its ideal start to within a clock of its end
        for k, bit in enumerate(_frame_bits(byte)):
            assert (frame[ideal[k] + 1:ideal[k + 1] - 1] == bit).all(), (byte, k, frame)
        # the frame's ten bits take the whole clocks that hold 10 bits' time, then the line
        # idles for the clock the next byte is handed over in and the bench's gap
        last = nxt == len(line)
        assert len(frame) == ceil(10 * clocks) + 1 + (0 if last else gap), (len(frame), gap)
        assert (frame[ideal[9] + 1:] == 1).all()
        # whole clocks a bit: each bit lasts exactly that
        if clocks.denominator == 1:
            bits = np.repeat(_frame_bits(byte), int(clocks))
            assert np.array_equal(frame[:len(bits)], bits)


def _line(clocks, frames, skew=0.0, gaps=None, rng=None):
    """The receiver's line, a sample a clock: ``frames`` (lists of bits) sent at
    ``clocks * (1 + skew)`` clocks a bit, ``gaps[i]`` idle clocks before frame i, each frame
    starting at a random point between two clocks."""
    rng = rng or np.random.default_rng(0)
    gaps = gaps or [0] * len(frames)
    line = [1] * 5
    period = float(clocks) * (1 + skew)
    for bits, gap in zip(frames, gaps):
        t = len(line) + gap + rng.random()
        line += [1] * (int(np.ceil(t)) - len(line))
        for k, bit in enumerate(bits):
            line += [bit] * (int(np.ceil(t + (k + 1) * period)) - len(line))
    return line + [1] * (3 * int(np.ceil(float(clocks))))


def _receive(dut, line):
    """Run the receiver over ``line``: the bytes it gave out and the frame errors it
    flagged."""
    got, errors = [], 0

    async def bench(ctx):
        nonlocal errors
        for v in line:
            ctx.set(dut.rx, v)
            await ctx.tick()
            if ctx.get(dut.valid):
                got.append(ctx.get(dut.data))
            errors += ctx.get(dut.frame_error)

    simulate(dut, bench)
    return got, errors


@pytest.mark.parametrize("clocks", RATES, ids=str)
# the receiver samples up to two clocks after a bit's middle (its line's synchronizer and
# start edge, and the phase's whole clocks), so it takes a slower sender further off
@pytest.mark.parametrize("skew", [-0.03, 0.0, 0.05])
def test_the_receiver_takes_senders_three_percent_fast_or_five_percent_slow(clocks, skew):
    rng = np.random.default_rng(abs(hash((str(clocks), skew))) % 2**32)
    data = [int(b) for b in rng.integers(0, 256, 10)] + [0x55, 0xAA, 0x00, 0xFF]
    frames = [_frame_bits(b) for b in data]
    gaps = [0 if k % 3 else int(rng.integers(0, 40)) for k in range(len(data))]
    got, errors = _receive(UartRx(clocks), _line(clocks, frames, skew, gaps, rng))
    assert got == data and errors == 0


@pytest.mark.parametrize("clocks", [Fraction(25), Fraction(50, 3)], ids=str)
def test_a_low_stop_bit_is_a_frame_error_and_a_short_low_pulse_is_no_byte(clocks):
    rx = lambda line: _receive(UartRx(clocks), line)            # noqa: E731
    # a good byte, then one whose stop bit is low: dropped, and flagged
    assert rx(_line(clocks, [_frame_bits(0x3C), _frame_bits(0x81, stop=0)])) == ([0x3C], 1)
    # the line low for a third of a bit is no start bit; the frame after it is received
    glitch = [1] * 5 + [0] * int(clocks / 3) + [1] * int(2 * clocks)
    assert rx(glitch + _line(clocks, [_frame_bits(0x7E)])) == ([0x7E], 0)
    # a break (the line held low) is a byte 0 with a low stop bit: one error, no byte
    assert rx(_line(clocks, [[0] * 12])) == ([], 1)


def test_rates_the_clock_cannot_make_are_refused_naming_the_clocks_a_bit():
    assert bit_clocks(50_000_000, 3_000_000) == Fraction(50, 3)
    assert bit_clocks(12_000_000, 3_000_000) == 4
    with pytest.raises(ValueError, match=r"7.14 clocks a bit; a fractional rate needs at "
                                         r"least 8"):
        bit_clocks(50_000_000, 7_000_000)
    with pytest.raises(ValueError, match=r"3.00 clocks a bit; at least 4"):
        bit_clocks(12_000_000, 4_000_000)
    with pytest.raises(ValueError, match="must be positive whole numbers"):
        bit_clocks(50_000_000, 0)
    with pytest.raises(ValueError, match="at least 8"):
        UartRx(Fraction(15, 2))
    # the SoC takes the rate exactly (3 Mbaud from 50 MHz: 16 or 17 clocks a bit)
    soc = SoC(TINY, clock_hz=50_000_000, baud=3_000_000)
    assert soc.bit_clocks == Fraction(50, 3) and soc.divisor == 17
    with pytest.raises(ValueError, match="7000000 baud from a 50 MHz clock"):
        SoC(TINY, clock_hz=50_000_000, baud=7_000_000)
