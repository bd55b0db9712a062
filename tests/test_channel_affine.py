"""A BatchNormalization the quantizer left in float (``quantize_static`` without
pre-processing) runs on the accelerator as a per-channel affine map: an ``ADD`` of each
channel with itself (:func:`ffacc.sim.golden.affine_params`), int16 ``ka``/``kb`` so a negative
scale works too."""

import numpy as np
import onnx
import pytest
from hypothesis import given, settings, strategies as st
from onnx import helper

from ffacc.compiler.driver import compile_model, verify_model
from ffacc.compiler.ir import ChannelAffine, op_from_dict, op_to_dict
from ffacc.compiler.zoo import Builder, quantize_model
from ffacc.hw.config import ACCEL_PRESETS
from ffacc.sim import golden

TINY = ACCEL_PRESETS["tiny"]


def _ideal(scale, offset, x_zp, x):
    return scale[None, :, None] * (x - x_zp) + offset[None, :, None]


def _integer(params, x_zp, x):
    ka, kb, zb, M, s = (p[None, :, None] for p in params)
    acc = (x - x_zp) * ka + (x - zb) * kb
    return acc, acc.astype(np.float64) * M / np.exp2(s.astype(np.float64))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-40, 40), st.floats(-600, 600)), min_size=1, max_size=8),
       st.integers(0, 255), st.booleans())
def test_affine_params_are_the_map_to_a_small_fraction_of_a_step(chans, zp, signed):
    """Every channel's integer form is its affine map within 1/64 of an output step over the
    whole input range, with int16 multipliers and ``zb`` an activation value."""
    lo, hi = (-128, 127) if signed else (0, 255)
    x_zp = zp + lo
    scale = np.array([c[0] for c in chans])
    offset = np.array([c[1] for c in chans])
    params = golden.affine_params(scale, offset, x_zp, (lo, hi))
    ka, kb, zb, M, s = params
    assert ((-(1 << 15) <= ka) & (ka < 1 << 15) & (-(1 << 15) <= kb) & (kb < 1 << 15)).all()
    assert ((lo <= zb) & (zb <= hi)).all() and ((1 <= s) & (s <= 62)).all()
    x = np.arange(lo, hi + 1).reshape(1, 1, -1)
    acc, real = _integer(params, x_zp, x)
    assert np.abs(acc).max() < 1 << 26                  # ADD's products are 27-bit
    # the map itself, except where it saturates the output anyway
    ideal = _ideal(scale, offset, x_zp, x)
    err = np.where(np.abs(ideal) < 512, np.abs(real - ideal), 0)
    assert err.max() < 1 / 64, (err.max(), params)


def test_affine_params_edge_scales():
    """A zero scale, a negligible one, a negative one, an offset far beyond the int16 range of
    one step: each is its map to within 1/64 of a step (the requantized output is the
    rounded map)."""
    scale = np.array([0.0, 1e-9, -2.5, 3e-3, 1.0])
    offset = np.array([7.3, -100.2, 40.0, 300.0, -0.5])
    params = golden.affine_params(scale, offset, 3, (0, 255))
    assert params[0][2] + params[1][2] < 0              # K = ka + kb < 0: a negative scale
    x = np.arange(256).reshape(1, 1, -1)
    _, real = _integer(params, 3, x)
    assert np.abs(real - _ideal(scale, offset, 3, x)).max() < 1 / 64
    y = golden.channel_affine(x.repeat(5, 1), x_zp=3, ka=params[0], kb=params[1], zb=params[2],
                              multiplier=params[3], shift=params[4], y_zp=0, qmin=-1000,
                              qmax=1000)
    assert np.abs(y - _ideal(scale, offset, 3, x)).max() <= 0.5 + 1 / 64
    with pytest.raises(ValueError, match="channel 1: .*finite"):
        golden.affine_params([1.0, np.nan], [0.0, 0.0], 0, (0, 255))


def _bn_model(gamma, name="bn", size=8, channels=4):
    """conv -> BatchNormalization (scales ``gamma``) -> relu -> conv."""
    b = Builder((1, 3, size, size), seed=5, name=name)
    y = b.conv("x", channels, 3)
    rng = np.random.default_rng(3)
    for n, v in [("s", np.asarray(gamma, float)), ("b", rng.normal(0, 0.3, channels)),
                 ("m", rng.normal(0, 0.3, channels)), ("v", rng.uniform(0.3, 1.5, channels))]:
        b._init(f"bn_{n}", v)
    b.nodes.append(helper.make_node("BatchNormalization", [y, "bn_s", "bn_b", "bn_m", "bn_v"],
                                    ["bn"], name="bn", epsilon=1e-3))
    b.shape["bn"] = b.shape[y]
    return b.model(b.conv(b.relu("bn"), 4, 3))


@pytest.fixture(scope="module")
def bn_path(tmp_path_factory):
    """quantize_static without pre-processing: the BatchNormalization stays in float between
    a DequantizeLinear and a QuantizeLinear; two of its four scales are negative."""
    path = tmp_path_factory.mktemp("bn") / "bn_int8.onnx"
    quantize_model(_bn_model([1.3, -0.7, 0.05, -2.0]), path, samples=4)
    assert "BatchNormalization" in {n.op_type for n in onnx.load(path).graph.node}
    return path


@pytest.mark.parametrize("fused", [True, False])
def test_batchnorm_left_in_float_runs_on_the_accelerator(bn_path, fused):
    """Inside the conv's POST (flag AFFINE: its second record), or, without post_affine, as
    ADDs over the conv's output."""
    cfg = TINY if fused else TINY.with_(post_affine=False)
    g, c, _ = compile_model(bn_path, cfg)
    (bn,) = [op for op in g.ops if isinstance(op, ChannelAffine)]
    assert (bn.scale < 0).sum() == 2
    assert [(li["op"], li["where"]) for li in c.layers] == (
        [("Conv+Affine", "accel"), ("Conv", "accel")] if fused else
        [("Conv", "accel"), ("ChannelAffine", "accel"), ("Conv", "accel")]) and not c.host_ops
    r = verify_model(bn_path, cfg)
    assert r["bit_exact"] and r["ok"] and r["layer_max_lsb_vs_onnxruntime"] <= 1, r


def test_batchnorm_without_an_add_unit_runs_on_the_host_with_the_reason(bn_path):
    """The same operator as a host segment (its fields as data in the image): the run is the
    same integer result."""
    cfg = TINY.with_(add_unit=False)
    g, c, _ = compile_model(bn_path, cfg)
    host = [li for li in c.layers if li["where"] == "host"]
    assert [li["op"] for li in host] == ["ChannelAffine"] and "no ADD unit" in host[0]["reason"]
    (op,) = [op for op in g.ops if isinstance(op, ChannelAffine)]
    back = op_from_dict(op_to_dict(op))
    assert np.array_equal(back.scale, op.scale) and np.array_equal(back.offset, op.offset)
    r = verify_model(bn_path, cfg)
    assert r["bit_exact"] and r["ok"], r


@pytest.mark.slow
def test_batchnorm_on_the_rtl(bn_path):
    """The per-channel ADDs with negative multipliers on the generated Verilog (Verilator,
    ``tiny``): bit-exact with the golden model."""
    r = verify_model(bn_path, TINY, engine="rtl")
    assert r["bit_exact"] and r["ok"], r


def _mul_add_model(const_shape, op="Add"):
    """conv -> Mul by a constant -> Add (or Sub) of a constant -> relu -> conv (a
    BatchNormalization as Caffe2's converted models write it when ``const_shape`` is
    ``(C, 1, 1)``)."""
    b = Builder((1, 3, 8, 8), seed=7, name="muladd")
    y = b.conv("x", 4, 3)
    rng = np.random.default_rng(4)
    b._init("s", rng.uniform(-1.5, 1.5, const_shape))
    b._init("t", rng.normal(0, 0.5, const_shape))
    b.nodes += [helper.make_node("Mul", [y, "s"], ["m"], name="mul"),
                helper.make_node(op, ["t", "m"] if op == "Add" else ["m", "t"], ["a"],
                                 name="add")]
    b.shape["m"] = b.shape["a"] = b.shape[y]
    return b.model(b.conv(b.relu("a"), 4, 3))


@pytest.mark.parametrize("shape, op", [((4, 1, 1), "Add"), ((1, 4, 1, 1), "Sub"),
                                       ((1,), "Add")])
def test_mul_and_add_by_per_channel_constants_run_on_the_accelerator(tmp_path, shape, op):
    path = tmp_path / "muladd.onnx"
    quantize_model(_mul_add_model(shape, op), path, samples=4)
    g, c, _ = compile_model(path, TINY)
    assert [op.name for op in g.ops if isinstance(op, ChannelAffine)] == ["mul", "add"]
    assert all(li["where"] == "accel" for li in c.layers) and not c.host_ops
    r = verify_model(path, TINY)
    assert r["bit_exact"] and r["ok"] and r["layer_max_lsb_vs_onnxruntime"] <= 1, r


def test_a_mul_by_a_map_sized_constant_stays_on_the_host(tmp_path):
    """A constant that varies over rows and columns is no per-channel affine map."""
    path = tmp_path / "muladd.onnx"
    quantize_model(_mul_add_model((4, 8, 8)), path, samples=4)
    g, c, _ = compile_model(path, TINY)
    assert not any(isinstance(op, ChannelAffine) for op in g.ops)
    assert sorted(h["op"] for h in c.host_ops) == ["Add", "Mul"]
    assert verify_model(path, TINY)["bit_exact"]

