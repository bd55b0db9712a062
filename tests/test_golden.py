"""The integer golden model: unit properties and agreement with onnxruntime."""

import json

import numpy as np
import pytest

from ffacc.sim import golden
from ffacc.sim.ort_check import run_checks


@pytest.fixture(scope="module")
def ort_results():
    return run_checks(seed=0)


def test_exact_ops_match_onnxruntime_exactly(ort_results):
    exact = [r for r in ort_results if r.exact_required]
    assert {r.op for r in exact} == {"ConvInteger", "MatMulInteger", "MaxPool"}
    bad = [r.as_dict() for r in exact if r.mismatches]
    assert not bad, bad


def test_requantized_ops_within_one_lsb(ort_results, record_property):
    rows = [r.as_dict() for r in ort_results if not r.exact_required]
    assert {r["op"] for r in rows} >= {"QLinearConv", "DQ-Conv-Q", "QLinearAveragePool",
                                       "QLinearAdd", "QLinearMatMul"}
    total = sum(r["outputs"] for r in rows)
    mism = sum(r["mismatches"] for r in rows)
    record_property("onnxruntime", json.dumps({"outputs": total, "mismatches": mism}))
    assert max(r["max_lsb"] for r in rows) <= 1, rows
    assert mism / total < 0.01, (mism, total)
    # QLinearConv (every kernel 1..12, strides, groups, int8/uint8) reproduces exactly
    assert all(r["mismatches"] == 0 for r in rows if r["op"] == "QLinearConv")


def test_quantize_multiplier_is_normalized_and_accurate():
    rng = np.random.default_rng(0)
    for scale in np.exp(rng.uniform(np.log(1e-6), np.log(0.99), 200)):
        M, s = golden.quantize_multiplier(scale)
        assert 1 << 30 <= M < 1 << 31
        assert abs(M / 2.0 ** s - scale) <= scale * 2.0 ** -30
    with pytest.raises(ValueError, match="positive"):
        golden.quantize_multiplier(0.0)
    with pytest.raises(ValueError, match="range"):
        golden.quantize_multiplier(1e30)


def test_requantize_rounds_half_up_and_clamps():
    M, s = 1 << 30, 31          # exactly 0.5
    acc = np.array([[1, 2, 3, -1, -3, 1000, -1000]])
    out = golden.requantize(acc, M, s, 10, 0, 255)
    assert out.tolist() == [[11, 11, 12, 10, 9, 255, 0]]


def test_requantize_refuses_int32_overflow():
    with pytest.raises(OverflowError, match="int32"):
        golden.requantize(np.array([1 << 31]), 1 << 30, 31, 0, 0, 255)


def test_conv_padding_with_zero_point_is_real_zero():
    x = np.full((1, 1, 3, 3), 7)
    w = np.ones((1, 1, 3, 3), dtype=np.int64)
    acc = golden.conv2d(x, w, x_zp=7, pads=1)
    assert np.array_equal(acc, np.zeros((1, 1, 3, 3)))


def test_grouped_conv_equals_per_group_convs():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (2, 4, 7, 6))
    w = rng.integers(-128, 128, (6, 2, 3, 3))
    acc = golden.conv2d(x, w, x_zp=5, groups=2, pads=(0, 1, 2, 1), stride=(1, 2))
    a0 = golden.conv2d(x[:, :2], w[:3], x_zp=5, pads=(0, 1, 2, 1), stride=(1, 2))
    a1 = golden.conv2d(x[:, 2:], w[3:], x_zp=5, pads=(0, 1, 2, 1), stride=(1, 2))
    assert np.array_equal(acc, np.concatenate([a0, a1], axis=1))


def test_conv_against_explicit_loops():
    rng = np.random.default_rng(4)
    x = rng.integers(-128, 128, (1, 2, 6, 7))
    w = rng.integers(-128, 128, (3, 2, 2, 3))
    b = rng.integers(-1000, 1000, 3)
    acc = golden.conv2d(x, w, b, x_zp=-3, w_zp=np.array([0, 1, -2]), stride=2, pads=1)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-3) + 3
    ref = np.zeros_like(acc)
    for o in range(3):
        for y in range(acc.shape[2]):
            for c in range(acc.shape[3]):
                win = xp[0, :, 2 * y:2 * y + 2, 2 * c:2 * c + 3]
                ref[0, o, y, c] = b[o] + (win * (w[o] - [0, 1, -2][o])).sum()
    assert np.array_equal(acc, ref)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="groups"):
        golden.conv2d(np.zeros((1, 3, 4, 4)), np.zeros((2, 2, 3, 3)), groups=2)
    with pytest.raises(ValueError, match="does not fit"):
        golden.conv2d(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)))
    with pytest.raises(ValueError, match="fully_connected"):
        golden.fully_connected(np.zeros((2, 3)), np.zeros((4, 5)))
