"""RunStatus (hw/runstatus.py): a run's busy, done and error, and the error a stopping run
reports once the background work is done."""

from amaranth.sim import Simulator

from ffacc.firmware.isa import Err
from ffacc.hw.runstatus import RunStatus


def run(steps):
    """``steps``: per clock a dict of inputs (others 0); returns the outputs after each."""
    dut = RunStatus(16)
    out = []

    async def bench(ctx):
        for s in steps:
            for name in ("start", "end", "fail", "fail_code", "fail_pc", "bg_busy",
                         "late_err", "late_pc"):
                ctx.set(getattr(dut, name), s.get(name, 0))
            await ctx.tick()
            out.append({n: ctx.get(getattr(dut, n))
                        for n in ("busy", "done", "error", "err_code", "err_pc")})

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return out


def test_a_run_starts_and_ends():
    out = run([{"start": 1}, {}, {"end": 1}, {}])
    assert out[0]["busy"] and not out[0]["done"] and not out[1]["done"]
    assert not out[2]["busy"] and out[2]["done"] and not out[2]["error"]


def test_a_failure_waits_for_the_background_and_its_late_error_wins():
    """A failure with background work left: busy until it ends, then the error; a late
    (background POST's) error replaces the run's own, else the own stays."""
    out = run([{"start": 1}, {"fail": 1, "fail_code": Err.PARAM, "fail_pc": 0x40,
                              "bg_busy": 1}, {"bg_busy": 1}, {"bg_busy": 0}])
    assert out[1]["busy"] and out[2]["busy"] and not out[2]["error"]
    assert not out[3]["busy"] and out[3]["error"]
    assert (out[3]["err_code"], out[3]["err_pc"]) == (Err.PARAM, 0x40)
    out = run([{"start": 1}, {"fail": 1, "fail_code": Err.PARAM, "fail_pc": 0x40,
                              "bg_busy": 1}, {"bg_busy": 0, "late_err": Err.BUS,
                                              "late_pc": 0x18}])
    assert out[2]["error"] and (out[2]["err_code"], out[2]["err_pc"]) == (Err.BUS, 0x18)
    # no background work: it ends at once; a new run clears the error
    out = run([{"start": 1}, {"fail": 1, "fail_code": Err.LOOP, "fail_pc": 8}, {"start": 1}])
    assert out[1]["error"] and not out[1]["busy"] and out[1]["err_code"] == Err.LOOP
    assert out[2]["busy"] and not out[2]["error"] and out[2]["err_code"] == 0
