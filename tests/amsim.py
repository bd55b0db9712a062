"""A helper the amaranth.sim tests share: run one testbench against a component."""

from amaranth.sim import Simulator


def simulate(dut, bench, period=1e-6):
    """Run the async testbench ``bench`` on ``dut`` with a clock of ``period`` seconds."""
    sim = Simulator(dut)
    sim.add_clock(period)
    sim.add_testbench(bench)
    sim.run()
