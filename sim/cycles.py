"""Cycle model of the accelerator's commands (used by the ISS and the compiler's reports).

The RTL controller runs one command at a time; each command's cost is its memory traffic at
the bus width plus its compute, with the per-transaction overheads of the AXI master. The
constants are calibrated against RTL runs (``tests/test_accel_cocotb.py`` records both).
"""

from math import ceil

__all__ = ["CycleModel"]


class CycleModel:
    """Estimated cycles per command for one configuration and memory latency."""

    def __init__(self, cfg, mem_latency=3):
        self.cfg = cfg
        self.lat = mem_latency
        self.bus = cfg.bus_bytes

    def _read(self, nbytes, start=0):
        """Cycles of a DMA read of ``nbytes`` delivered one byte per cycle."""
        if nbytes <= 0:
            return 0
        beats = ceil((start % self.bus + nbytes) / self.bus)
        bursts = ceil(beats / self.cfg.burst_beats)
        return nbytes + bursts * (self.lat + 2)

    @property
    def fetch(self):
        return self._read(8) + 2

    def loada(self, nch, nrows, width):
        return nch * nrows * (self._read(width) + 1)

    def loadw(self, nsets):
        return self._read(nsets * self.cfg.weight_words * self.cfg.lanes * 2)

    def loadq(self, n):
        return self._read(n * 12)

    def conv(self, g, ny, passes):
        c = self.cfg
        setup = c.weight_words + c.rows + 4
        stream = ny * g.bk + c.fcu.latency + 3
        return passes * (setup + stream)

    def post(self, lanes, ny, wout, written, pool):
        reads = lanes * ny * wout
        return reads + 6 * max(1, written // max(1, wout)) + written // self.bus * 3 + 8

    def add(self, n):
        return 2 * self._read(n) + n * 2 + 8
