"""The classic CNN topologies of the ONNX model zoo (AlexNet, ZFNet, GoogLeNet, Inception v2,
DenseNet-121, ResNet-50, ShuffleNet, SqueezeNet, VGG-19) with random weights, quantized by
onnxruntime's ``quantize_static`` as a user would (QDQ, per channel, no pre-processing, so
BatchNormalization, LRN, Softmax and the float regions between them stay as the quantizer
leaves them; a BatchNormalization then runs on the accelerator as a per-channel affine map, a
Concat in place):
each compiles, runs on the ISS bit-exact with the golden model, and every layer
onnxruntime also computes is within 1 LSB of it (on onnxruntime's own inputs of the layer).

The graphs are onnx's "light" zoo models (shipped in its wheel, weights as shapes only;
:func:`ffacc.compiler.zoo.classic`). The default suite runs each at a small input (and
256-wide hidden FC layers); ``-m slow`` compiles each at 224x224 for ``large`` and ``ulx3s``.
"""

import numpy as np
import pytest

from ffacc.compiler.compile import host_regions
from ffacc.compiler.driver import compile_model, verify_model
from ffacc.compiler.zoo import CLASSIC, classic, classic_int8
from ffacc.hw.config import ACCEL_PRESETS

LARGE = ACCEL_PRESETS["large"]
# the smallest input each topology takes (AlexNet's 11x11/4 stem and GoogLeNet's global
# 7x7 pool need 64)
SMALL = {"bvlc_alexnet": 64, "zfnet512": 64, "inception_v1": 64, "inception_v2": 32,
         "densenet121": 32, "resnet50": 32, "shufflenet": 32, "squeezenet": 32, "vgg19": 32}
# what the quantizer leaves in float in each, so it must run on the host
HOST_OPS = {"bvlc_alexnet": {"LRN", "Softmax"}, "zfnet512": {"LRN", "Softmax"},
            "inception_v1": {"LRN", "Softmax"}, "inception_v2": {"Softmax"},
            "densenet121": set(), "resnet50": {"Sum", "Softmax"},
            "shufflenet": {"Softmax"}, "squeezenet": {"Softmax"},
            "vgg19": {"Softmax"}}


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("zoo")


def test_classic_models_are_the_zoo_graphs():
    """The float models are the real topologies with random weights, and run at 224x224."""
    import onnxruntime as ort
    m = classic("squeezenet", 224)
    ops = {n.op_type for n in m.graph.node}
    assert {"Conv", "Concat", "MaxPool", "GlobalAveragePool", "Softmax"} <= ops
    assert "ConstantOfShape" not in ops and m.opset_import[0].version == 13
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"data_0": np.random.default_rng(0).uniform(
        0, 1, (1, 3, 224, 224)).astype(np.float32)})[0]
    assert y.shape == (1, 1000, 1, 1) and np.isclose(y.sum(), 1.0, atol=1e-3)
    with pytest.raises(ValueError, match="unknown classic model 'lenet'"):
        classic("lenet")


@pytest.mark.parametrize("name", CLASSIC)
def test_small_classic_model_verifies_on_iss(name, zoo_dir):
    path = classic_int8(zoo_dir, name, SMALL[name], fc=256)
    r = verify_model(path, LARGE)
    assert r["bit_exact"], r
    # every layer onnxruntime also computes is checked, on its own inputs
    assert r["layers_checked_vs_onnxruntime"] >= 10 and r["layers_ok"], \
        r["worst_layer_vs_onnxruntime"]
    assert r["layer_max_lsb_vs_onnxruntime"] <= 1 and r["ok"]
    ops = {t for h in r["host_ops"] for t in h["op"].split("+")}
    assert HOST_OPS[name] <= ops, ops
    # a BatchNormalization left in float runs on the accelerator (a per-channel affine map),
    # as does one written as Mul and Add by constants (Inception v2), a channel Concat (in
    # place) and a channel shuffle (Transpose)
    assert not {"BatchNormalization", "Mul", "Concat", "Transpose"} & ops, ops
    # ... and so does every max-pool but those after an LRN, in a float region
    if "LRN" not in HOST_OPS[name]:
        assert "MaxPool" not in ops, ops
    _, c, _ = compile_model(path, LARGE)
    regions = host_regions(c.layers)
    # the host's share is at most Inception's classifier (asymmetric weights: 1.1 % of its
    # MACs at this size, counting each strided layer's own MACs)
    assert regions["accel_mac_share"] > 0.985, regions
    if name in ("bvlc_alexnet", "zfnet512", "resnet50"):
        # a float region (LRN -> MaxPool, Sum -> Relu -> AveragePool) is one host segment
        assert any(op.kind == "HostGraph" for op in c.graph.ops)


@pytest.mark.slow
@pytest.mark.parametrize("name", CLASSIC)
def test_full_size_classic_model_compiles(name, zoo_dir):
    """At 224x224 for ``large`` and ``ulx3s``: the host regions and the accelerator's share
    of MACs are reported, and the report's cycles come from the ISS cycle model."""
    from ffacc.compiler.driver import layer_report
    path = classic_int8(zoo_dir, name, 224)
    for cfg in ("large", "ulx3s"):
        _, c, _ = compile_model(path, ACCEL_PRESETS[cfg])
        regions = host_regions(c.layers)
        assert regions["accel_mac_share"] > 0.99 and regions["regions"], regions
        assert HOST_OPS[name] <= {t for h in c.host_ops for t in h["op"].split("+")}
    rows, tot = layer_report(c.image)
    assert tot["cycles"] > 0 and tot["macs"] == regions["accel_macs"]


@pytest.mark.slow
def test_full_size_resnet50_verifies_on_iss(zoo_dir):
    """ResNet-50 at 224x224 runs on the ISS bit-exact with the golden model, every layer
    within 1 LSB of onnxruntime (about 30 s)."""
    r = verify_model(classic_int8(zoo_dir, "resnet50", 224), LARGE)
    assert r["bit_exact"] and r["layers_checked_vs_onnxruntime"] > 100 and r["ok"], \
        r["worst_layer_vs_onnxruntime"]


@pytest.mark.slow
@pytest.mark.parametrize("name, size", [("squeezenet", 32), ("shufflenet", 32)])
def test_small_classic_model_on_rtl(name, size, zoo_dir):
    """Whole networks on the generated Verilog (Verilator, ``tiny``): SqueezeNet (2.7 M
    cycles, about 2.5 min) and ShuffleNet (5.5 M cycles, channel shuffles and float regions on
    the host) bit-exact with the golden model and within the per-layer bounds."""
    r = verify_model(classic_int8(zoo_dir, name, size, fc=256), ACCEL_PRESETS["tiny"],
                     engine="rtl")
    assert r["bit_exact"] and r["ok"], r["worst_layer_vs_onnxruntime"]
