"""cocotb: the unit's generated Verilog on Verilator and Icarus, every kernel 1..12, vs golden."""

import pytest

from ffacc.hw.fcu import FCUConfig, PRESETS
from ffacc.sim.cocotb_run import FCUTestbench, available_simulators

SIMS = available_simulators()
_benches = {}


def bench(config, simulator):
    if simulator not in SIMS:
        pytest.skip(f"{simulator} is not installed")
    key = (config, simulator)
    if key not in _benches:
        _benches[key] = FCUTestbench(config, simulator).build()
    return _benches[key]


@pytest.mark.parametrize("simulator", ["verilator", pytest.param("icarus", marks=pytest.mark.icarus)])
@pytest.mark.parametrize("k", range(1, 13))
def test_every_kernel_random_and_extreme(simulator, k):
    tb = bench(PRESETS["tiny"], simulator)
    st = tb.run(k, seed=k, channels=2, data="random")
    assert st["outputs"] > 0 and st["runs"][0]["stream_cycles"] >= st["beats"]
    tb.run(k, seed=50 + k, channels=1, data="extreme", pad=2)


@pytest.mark.parametrize("preset, ks", [
    ("default", [1, 3, 5, 7, 11]),
    ("p2", [2, 4, 6, 12]),
    ("p3t2", [3, 6, 9, 10]),
])
def test_other_configurations_on_verilator(preset, ks):
    tb = bench(PRESETS[preset], "verilator")
    for k in ks:
        tb.run(k, seed=k, channels=2, data="random")
        tb.run(k, seed=k, channels=1, data="extreme")


@pytest.mark.parametrize("cfg", [
    FCUConfig(rows=3, act_signed=True),
    FCUConfig(parallel=(2, 2), rows=2, act_bits=4, weight_bits=4),
    FCUConfig(parallel=(3, 2), rows=1, act_bits=6, weight_bits=5),
], ids=["int8-act", "4par-4bit", "6par-6x5bit"])
def test_bit_width_variants(cfg):
    tb = bench(cfg, "verilator")
    for k in (1, 4, 8, 12):
        tb.run(k, seed=k, channels=1, data="extreme")
        tb.run(k, seed=k + 1, channels=2, data="random")


def test_mismatch_is_reported(monkeypatch):
    """The bench must fail when the RTL disagrees: feed it weights for a different config."""
    tb = bench(PRESETS["tiny"], "verilator")
    monkeypatch.setattr(tb, "config", FCUConfig(parallel=(3,), rows=2, weight_bits=7))
    with pytest.raises((AssertionError, SystemExit)):
        tb.run(3, seed=1, channels=1, data="extreme")
