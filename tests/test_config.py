"""Every range check of AcceleratorConfig gives a ConfigError naming the field, its value and
what it must be (each check broken once: the value just outside its range)."""

import dataclasses

import pytest

from ffacc.hw.config import ACCEL_PRESETS, AcceleratorConfig, ConfigError

BASE = dataclasses.asdict(ACCEL_PRESETS["tiny"])
RANGES = {"lanes": (1, 64), "lb_rows": (1, 1 << 16), "lb_width": (1, 4096),
          "wb_sets": (1, 1 << 14), "acc_blocks": (1, 1 << 16), "qb_entries": (1, 1 << 14),
          "max_kernel": (1, 12), "max_pool": (2, 12), "burst_beats": (1, 256), "target_mhz": (1, 1000),
          "addr_bits": (12, 32), "dsp_bits": (16, 18), "fetch_block": (0, 64),
          "loop_depth": (0, 8)}
FLAGS = ("add_unit", "perf_counters", "wide_loads", "back_to_back", "weight_prefetch",
         "post_overlap", "act_codes", "packed_weights")


def _cfg(**kw):
    d = dict(BASE)
    d.update(kw)
    return AcceleratorConfig.from_dict(d)


def test_every_integer_field_has_a_range():
    ints = {f.name for f in dataclasses.fields(AcceleratorConfig) if f.type in (int, "int")}
    assert ints - {"bus_bytes"} == set(RANGES)


@pytest.mark.parametrize("name", sorted(RANGES))
def test_range(name):
    lo, hi = RANGES[name]
    for bad in (lo - 1, hi + 1, 2.5, True, "4"):
        with pytest.raises(ConfigError, match=rf"^{name}=.*must be an integer in {lo}\.\.{hi}"):
            _cfg(**{name: bad})


@pytest.mark.parametrize("name", FLAGS)
def test_flags(name):
    with pytest.raises(ConfigError, match=rf"^{name}=1: must be true or false"):
        _cfg(**{name: 1})


@pytest.mark.parametrize("kw, msg", [
    ({"bus_bytes": 2}, "bus_bytes=2: must be 4 or 8"),
    ({"burst_beats": 12}, "burst_beats=12: must be a power of two"),
    ({"lb_rows": BASE["lb_rows"] + 1}, "must be a multiple of the"),
    ({"loop_depth": 2, "fetch_block": 0}, "hardware loops need the fetch unit"),
    ({"loop_depth": 0, "weight_prefetch": False, "fetch_block": 0},
     "post_overlap: a background POST needs the fetch unit"),
    ({"wide_loads": False, "weight_prefetch": False, "act_codes": False,
      "strided_loads": False},
     "packed_weights: 4-bit weights are unpacked from whole bus beats"),
    ({"wide_loads": False, "weight_prefetch": False, "packed_weights": False,
      "strided_loads": False},
     "act_codes: coded activations are unpacked from whole bus beats"),
    ({"wide_loads": False, "weight_prefetch": False, "packed_weights": False,
      "act_codes": False},
     "strided_loads: the column step decimates whole bus beats"),
    ({"fcu": {**BASE["fcu"], "act_bits": 6}}, "fcu.act_bits"),
    ({"bogus": 1}, "unknown accelerator config key"),
])
def test_other_checks(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        _cfg(**kw)
