"""A Transpose that keeps the rows and columns in place (ShuffleNet's channel shuffle:
Reshape -> Transpose -> Reshape) runs on the accelerator: whole ``H x W`` maps move, an
``ADD`` of each run of consecutive maps with itself, requantized where the quantizer gave the
output a scale of its own."""

import numpy as np
import pytest
from onnx import helper, numpy_helper

from ffacc.compiler.driver import compile_model, verify_model
from ffacc.compiler.ir import ImageError, Transpose
from ffacc.compiler.zoo import Builder, quantize_model
from ffacc.hw.config import ACCEL_PRESETS

TINY = ACCEL_PRESETS["tiny"]


def _shuffle_model(groups=2, channels=6, perm=(0, 2, 1, 3, 4), grouped=False, stride=1,
                   size=6):
    """conv -> channel shuffle (``groups``) -> conv; ``grouped``: ShuffleNet's unit, a conv,
    a 1x1 conv of ``groups`` groups at ``stride`` with a BatchNormalization and a ReLU, the
    shuffle, a depthwise 3x3 and a 1x1 conv."""
    b = Builder((1, 3, size, size), seed=13, name="shuffle")
    y = b.conv("x", channels, 3)
    if grouped:
        y = b.relu(b.bn(b.conv(b.relu(y), channels, 1, stride=stride, group=groups)))
    N, C, H, W = b.shape[y]
    b.inits += [numpy_helper.from_array(np.array([N, groups, C // groups, H, W]), "s5"),
                numpy_helper.from_array(np.array([N, C, H, W]), "s4")]
    five = (N, groups, C // groups, H, W)
    b.nodes += [helper.make_node("Reshape", [y, "s5"], ["r5"], name="r5"),
                helper.make_node("Transpose", ["r5"], ["t5"], name="shuffle", perm=list(perm)),
                helper.make_node("Reshape", ["t5", "s4"], ["r4"], name="r4")]
    b.shape["r5"] = five
    b.shape["t5"] = tuple(five[p] for p in perm)
    b.shape["r4"] = (N, C, H, W)
    if grouped:
        return b.model(b.conv(b.conv("r4", channels, 3, group=channels), 4, 1))
    return b.model(b.conv("r4", 4, 3))


@pytest.fixture(scope="module")
def shuffle(tmp_path_factory):
    path = tmp_path_factory.mktemp("shuffle") / "shuffle_int8.onnx"
    quantize_model(_shuffle_model(), path, samples=4)
    return path


def test_a_channel_shuffle_runs_on_the_accelerator(shuffle):
    g, c, _ = compile_model(shuffle, TINY)
    (t,) = [op for op in g.ops if isinstance(op, Transpose)]
    assert tuple(t.perm) == (0, 2, 1, 3, 4)
    assert not c.host_ops and all(li["where"] == "accel" for li in c.layers)
    r = verify_model(shuffle, TINY)
    assert r["bit_exact"] and r["ok"] and r["layer_max_lsb_vs_onnxruntime"] <= 1, r


@pytest.fixture(scope="module", params=[1, 2], ids=["stride1", "stride2"])
def grouped_shuffle(tmp_path_factory, request):
    path = tmp_path_factory.mktemp("shuffle") / f"grouped_shuffle_s{request.param}.onnx"
    quantize_model(_shuffle_model(groups=2, channels=8, grouped=True, stride=request.param,
                                  size=6 * request.param), path, samples=4)
    return path


def test_a_shuffle_after_a_grouped_conv_is_its_post_writes(grouped_shuffle):
    """ShuffleNet's unit: the 1x1 conv of 2 groups (and its BatchNormalization) writes each
    group's outputs to every second map (O_CSTRIDE), so the shuffle is no pass of its own,
    also where the conv runs at stride 2 over its input's phases; bit-exact, within 1 LSB of
    onnxruntime."""
    _, c, _ = compile_model(grouped_shuffle, TINY)
    ops = [li["op"] for li in c.layers]
    assert ("Conv+Phases+Affine+Shuffle" if "s2" in grouped_shuffle.name
            else "Conv+Affine+Shuffle") in ops, ops
    assert "Transpose" not in ops and not c.host_ops, ops
    r = verify_model(grouped_shuffle, TINY)
    assert r["bit_exact"] and r["ok"] and r["layer_max_lsb_vs_onnxruntime"] <= 1, r


def test_a_grouped_conv_shuffle_on_the_rtl(grouped_shuffle):
    r = verify_model(grouped_shuffle, TINY, engine="rtl")
    assert r["bit_exact"] and r["ok"], r


def test_a_transpose_that_moves_rows_stays_on_the_host(tmp_path):
    path = tmp_path / "t.onnx"
    quantize_model(_shuffle_model(perm=(0, 1, 2, 4, 3)), path, samples=2)
    g, c, _ = compile_model(path, TINY)
    assert not any(isinstance(op, Transpose) for op in g.ops)
    assert [h["op"] for h in c.host_ops] == ["Transpose"]
    assert verify_model(path, TINY)["bit_exact"]


def test_without_an_add_unit_the_shuffle_runs_on_the_host(shuffle):
    cfg = TINY.with_(add_unit=False)
    g, c, _ = compile_model(shuffle, cfg)
    assert [h["op"] for h in c.host_ops] == ["Transpose"] and "no ADD unit" in \
        c.host_ops[0]["reason"]
    assert verify_model(shuffle, cfg)["bit_exact"]


def test_a_host_transpose_with_a_wrong_perm_is_refused():
    t = Transpose("t", ["x"], ["y"], perm=(0, 1, 3, 2))
    with pytest.raises(ImageError, match="perm .* keeping its last two axes"):
        t.check((1, 2, 3, 4), (1, 2, 4, 3))


@pytest.mark.slow
def test_a_channel_shuffle_on_the_rtl(shuffle):
    r = verify_model(shuffle, TINY, engine="rtl")
    assert r["bit_exact"] and r["ok"], r
