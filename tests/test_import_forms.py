"""The importer takes the graph forms of a PyTorch export quantized by onnxruntime's
``quantize_static``: a dynamic batch dimension, constant shape chains (``x.view(x.size(0), -1)``),
inference no-ops (Dropout, Identity), n-ary Sum, a Reshape with a constant shape -- in QDQ and
QOperator form, bit-exact on the ISS and within 1 LSB of onnxruntime, every Conv/Gemm on the
accelerator."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ffacc.compiler.driver import compile_model, verify_model
from ffacc.compiler.ir import Alias, HostFloat
from ffacc.compiler.onnx_import import ImportError_, import_onnx
from ffacc.compiler.zoo import Builder, quantize_model
from ffacc.hw.config import ACCEL_PRESETS

TINY = ACCEL_PRESETS["tiny"]
FMTS = ["qdq", "qoperator"]


# -- float models in the forms a PyTorch export has ------------------------------------------
def _const(b, name, value, dtype=np.int64):
    b.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
    return name


def _node(b, op, inputs, shape, n_out=1, **attrs):
    y = b._name(op.lower())
    outs = [y] + [f"{y}_out{i}" for i in range(1, n_out)]
    b.nodes.append(helper.make_node(op, list(inputs), outs, name=y, **attrs))
    b.shape[y] = tuple(shape)
    return y


def _torch_view_flatten(b, x):
    """``x.view(x.size(0), -1)`` as torch exports it: Shape -> Gather -> Unsqueeze -> Concat
    -> Reshape."""
    N, *rest = b.shape[x]
    sh = _node(b, "Shape", [x], (4,))
    n = _node(b, "Gather", [sh, _const(b, b._name("zero"), 0)], (), axis=0)
    n1 = _node(b, "Unsqueeze", [n, _const(b, b._name("axes"), [0])], (1,))
    target = _node(b, "Concat", [n1, _const(b, b._name("minus1"), [-1])], (2,), axis=0)
    return _node(b, "Reshape", [x, target], (N, int(np.prod(rest))))


def _flatten_net():
    """conv-relu-conv-relu-maxpool, ``view(size(0), -1)``, fc-relu-fc; dynamic batch."""
    b = Builder(("N", 3, 8, 8), seed=11, name="flatten")
    y = b.relu(b.conv("x", 4, 3))
    y = b.pool("MaxPool", b.relu(b.conv(y, 6, 3)), 2)
    y = b.relu(b.fc(_torch_view_flatten(b, y), 12))
    return b.model(b.fc(y, 5))


def _noop_net(opset):
    """Dropout (with an unread mask) and Identity between convolutions, an Identity that writes
    the graph output."""
    b = Builder((1, 3, 7, 7), seed=12, name="noops")
    y = b.relu(b.conv("x", 4, 3))
    if opset < 12:
        d = _node(b, "Dropout", [y], b.shape[y], n_out=2, ratio=0.3)
    else:
        d = _node(b, "Dropout", [y, _const(b, "ratio", 0.3, np.float32)], b.shape[y], n_out=2)
    y = _node(b, "Identity", [d], b.shape[d])
    y = b.relu(b.conv(y, 5, 3))
    y = _node(b, "Dropout", [y], b.shape[y])
    y = b.fc(b.flatten(y), 6)
    m = b.model(_node(b, "Identity", [y], b.shape[y]))
    m.opset_import[0].version = opset
    return m


def _sum_net():
    """Two-input Sum of two branches, twice: once before a Relu and a conv, once before a Relu
    and ``view(size(0), -1)`` (onnxruntime leaves Sum, its Relu and the view unquantized)."""
    b = Builder(("N", 3, 6, 6), seed=13, name="sums")
    y = b.relu(b.conv("x", 4, 3))
    y = b.relu(_node(b, "Sum", [b.conv(y, 4, 3), b.conv(y, 4, 1)], b.shape[y]))
    y = b.relu(b.conv(y, 4, 3))
    y = b.relu(_node(b, "Sum", [b.conv(y, 4, 3), b.conv(y, 4, 1)], b.shape[y]))
    return b.model(b.fc(_torch_view_flatten(b, y), 5))


def _host_nary_net():
    """Three-input Sum (then Relu) and two-input Max, which run on the host."""
    b = Builder((1, 3, 6, 6), seed=14, name="nary")
    y = b.relu(b.conv("x", 4, 3))
    y = b.relu(_node(b, "Sum", [b.conv(y, 4, 3), b.conv(y, 4, 1), b.conv(y, 4, 3)], b.shape[y]))
    y = _node(b, "Max", [b.conv(y, 4, 3), b.conv(y, 4, 1)], b.shape[y])
    return b.model(b.conv(y, 3, 3))


def _reshape_const_net():
    """Reshapes whose shape is a constant (an int64 initializer, a Constant node), Unsqueeze
    and Squeeze with constant axes."""
    b = Builder((1, 2, 6, 6), seed=15, name="reshape_const")
    y = b.relu(b.conv("x", 4, 3))
    y = _node(b, "Reshape", [y, _const(b, "shape_init", [1, 8, 3, 6])], (1, 8, 3, 6))
    y = b.relu(b.conv(y, 4, 3))
    b.nodes.append(helper.make_node("Constant", [], ["shape_const"],
                                    value=numpy_helper.from_array(np.array([1, -1], np.int64))))
    y = _node(b, "Reshape", [y, "shape_const"], (1, 72))
    y = _node(b, "Unsqueeze", [y, _const(b, "axes23", [2, 3])], (1, 72, 1, 1))
    y = b.relu(b.conv(y, 5, 1))
    return b.model(_node(b, "Squeeze", [y, "axes23"], (1, 5)))


def _shared_weights_net():
    """One 1x1 weight and bias read by two unnamed convolutions with different input scales:
    onnxruntime quantizes the bias for the second one and hands it to both."""
    b = Builder((1, 3, 6, 6), seed=16, name="shared")
    y = b.conv("x", 4, 3)
    a = b.conv(y, 4, 3)
    c = b.conv(y, 4, 1)
    w, bias = b.nodes[-1].input[1:3]
    y = _node(b, "Sum", [a, c], b.shape[y])
    m = b.model(_node(b, "Conv", [y, w, bias], b.shape[y], kernel_shape=[1, 1]))
    for n in m.graph.node:
        n.name = ""
    return m


def _calib(model, n=6, seed=0):
    shape = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(seed)
    return [rng.uniform(0, 1, shape).astype(np.float32) for _ in range(n)]


def _quantize(model, path, fmt):
    # quantize_model reads the input shape from the graph: a dynamic batch needs our own data
    # (below opset 13 onnxruntime writes per-channel axes the opset lacks: the importer
    # brings such a model to 13)
    if not path.exists():
        quantize_model(model, path, fmt=fmt, calib=_calib(model), per_channel=True)
    return path


def _check(path):
    """Bit-exact on the ISS, within 1 LSB of onnxruntime, every Conv/Gemm on the accelerator;
    returns the imported graph and the compiled model."""
    g, c, _ = compile_model(path, TINY)
    convs = [l for l in c.layers if l["op"].split("+")[0] in ("Conv", "Gemm")]
    assert convs and all(l["where"] == "accel" for l in convs), c.layers
    res = verify_model(path, TINY, engine="iss", seed=3)
    assert res["bit_exact"], res
    assert res["max_lsb_vs_onnxruntime"] <= 1, res
    return g, c


@pytest.fixture(scope="module")
def qdir(tmp_path_factory):
    return tmp_path_factory.mktemp("forms")


# -- dynamic batch and the torch flatten -------------------------------------------------------
@pytest.mark.parametrize("fmt", FMTS)
def test_dynamic_batch_and_torch_view_flatten(qdir, fmt):
    m = _flatten_net()
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert "Shape" in [n.op_type for n in m.graph.node]
    path = _quantize(m, qdir / f"flatten_{fmt}.onnx", fmt)
    g, c = _check(path)
    assert g.tensors[g.inputs[0]].shape == (1, 3, 8, 8)
    assert [g.tensors[o].shape for o in g.outputs] == [(1, 5)]
    assert g.notes == ["input 'x': dynamic batch dimension 'N' pinned to 1"]
    assert not c.host_ops, c.host_ops                 # the shape chain left nothing behind


@pytest.mark.parametrize("dim", ["batch_size", 0, None])
def test_other_forms_of_a_dynamic_batch(qdir, dim):
    """A ``batch_size`` name, ``dim_value: 0`` and an unset dimension are pinned the same way
    (onnxruntime cannot run a 0 batch, so the model is compared with the 'N' one)."""
    path = _quantize(_flatten_net(), qdir / "flatten_qdq.onnx", "qdq")
    m = onnx.load(path)
    d = m.graph.input[0].type.tensor_type.shape.dim[0]
    d.Clear()
    if dim is not None:
        setattr(d, "dim_param" if isinstance(dim, str) else "dim_value", dim)
    g = import_onnx(m)
    label = {None: "unknown", 0: "0"}.get(dim, repr(dim))
    assert g.notes == [f"input 'x': dynamic batch dimension {label} pinned to 1"]
    ref = import_onnx(str(path))
    assert [(op.kind, [g.tensors[o].shape for o in op.outputs]) for op in g.ops] == \
        [(op.kind, [ref.tensors[o].shape for o in op.outputs]) for op in ref.ops]


def test_symbolic_non_batch_dim_is_refused():
    b = Builder(("N", 3, 8, 8), seed=1)
    m = b.model(b.relu(b.conv("x", 4, 3)))
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    with pytest.raises(ImportError_, match=r"input 'x': dimension 2 is 'H'.*only the batch"):
        import_onnx(m)


def test_batch_other_than_one_is_refused(qdir):
    path = _quantize(_flatten_net(), qdir / "flatten_qdq.onnx", "qdq")
    with pytest.raises(ImportError_, match=r"batch=2 is not supported.*one image at a time"):
        import_onnx(str(path), batch=2)
    b = Builder((2, 3, 6, 6), seed=1)            # a static batch of 2 the lowering would ignore
    m = b.model(b.relu(b.conv("x", 4, 3)))
    with pytest.raises(ImportError_, match=r"input 'x' has batch 2.*only batch 1"):
        import_onnx(m)


# -- inference no-ops ------------------------------------------------------------------------
@pytest.mark.parametrize("fmt,opset", [("qdq", 13), ("qoperator", 13), ("qdq", 11)])
def test_dropout_and_identity_are_removed(qdir, fmt, opset):
    m = _noop_net(opset)
    path = _quantize(m, qdir / f"noops_{fmt}_{opset}.onnx", fmt)
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"Dropout", "Identity"} <= ops             # onnxruntime kept them
    g, c = _check(path)
    assert not c.host_ops, c.host_ops
    assert not [op for op in g.ops if isinstance(op, HostFloat)]


def test_requantizing_pair_left_by_a_noop_runs_on_the_host(qdir):
    """DequantizeLinear -> Dropout -> Identity -> QuantizeLinear with another scale is a
    requantization (and the next conv's bias, quantized for the old scale, is rescaled)."""
    src = _quantize(_noop_net(13), qdir / "noops_qdq_13.onnx", "qdq")
    m = onnx.load(src)
    drop = next(n for n in m.graph.node if n.op_type == "Dropout")
    ident = next(n for n in m.graph.node if n.op_type == "Identity" and
                 n.input[0] == drop.output[0])
    q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear" and
             n.input[0] == ident.output[0])
    init = next(i for i in m.graph.initializer if i.name == q.input[1])
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(1.5),
                                          init.name))
    path = qdir / "noops_requant.onnx"
    onnx.save(m, path)
    g, c = _check(path)
    assert [h["op"] for h in c.host_ops] == ["Identity"], c.host_ops
    g0 = import_onnx(str(src))                        # same scale: an alias, no host op
    assert not [op for op in g0.ops if isinstance(op, HostFloat)]
    assert [op for op in g0.ops if isinstance(op, Alias)]


# -- Sum, Max -------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FMTS)
def test_two_input_sum_is_an_accelerator_add(qdir, fmt):
    path = _quantize(_sum_net(), qdir / f"sum_{fmt}.onnx", fmt)
    assert [n.op_type for n in onnx.load(path).graph.node].count("Sum") == 2
    g, c = _check(path)
    adds = [l for l in c.layers if l["op"] == "Add"]
    assert len(adds) == 2 and all(l["where"] == "accel" for l in adds), c.layers
    assert not c.host_ops, c.host_ops


@pytest.mark.parametrize("fmt", FMTS)
def test_nary_sum_and_max_run_on_the_host(qdir, fmt):
    path = _quantize(_host_nary_net(), qdir / f"nary_{fmt}.onnx", fmt)
    g, c = _check(path)
    assert [h["op"] for h in c.host_ops] == ["Sum", "Clip", "Max"], c.host_ops


# -- constants -------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", FMTS)
def test_reshape_with_a_constant_shape(qdir, fmt):
    path = _quantize(_reshape_const_net(), qdir / f"reshape_{fmt}.onnx", fmt)
    g, c = _check(path)
    assert not c.host_ops, c.host_ops
    shapes = [g.tensors[op.outputs[0]].shape for op in g.ops if isinstance(op, Alias)]
    assert shapes == [(1, 8, 3, 6), (1, 72), (1, 72, 1, 1), (1, 5)]


def test_reshaped_quantized_weight(qdir):
    """DequantizeLinear(int8 initializer) -> Reshape -> a Conv's weight: the Reshape moves the
    integers (it is not folded into a float weight)."""
    b = Builder((1, 3, 6, 6), seed=17, name="wreshape")
    m = b.model(b.relu(b.conv("x", 4, 3)))
    m = onnx.load(quantize_model(m, qdir / "wreshape_src.onnx", per_channel=False,
                                 calib=_calib(m)))
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    dq = next(n for n in m.graph.node if n.output[0] == conv.input[1])
    w = next(i for i in m.graph.initializer if i.name == dq.input[0])
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w).reshape(4, -1), w.name))
    m.graph.initializer.append(numpy_helper.from_array(np.array([4, 3, 3, 3], np.int64), "wsh"))
    conv.input[1] = "w_reshaped"
    m.graph.node.insert(list(m.graph.node).index(conv),
                        helper.make_node("Reshape", [dq.output[0], "wsh"], ["w_reshaped"]))
    path = qdir / "wreshape.onnx"
    onnx.save(m, path)
    _check(path)


def test_bias_shared_by_two_convolutions(qdir):
    path = _quantize(_shared_weights_net(), qdir / "shared_qdq.onnx", "qdq")
    convs = [n for n in onnx.load(path).graph.node if n.op_type == "Conv"]
    assert len(convs) == 4 and len({n.input[1] for n in convs}) == 3
    _check(path)


def test_constant_subgraph_is_evaluated_at_import(qdir):
    """Shape -> Slice -> Cast -> Mul -> Cast, ConstantOfShape, Concat -> Reshape: constants."""
    b = Builder((1, 2, 4, 4), seed=2, name="consts")
    y = b.relu(b.conv("x", 4, 3))
    sh = _node(b, "Shape", [y], (4,))
    hw = _node(b, "Slice", [sh, _const(b, "s0", [2]), _const(b, "s1", [4])], (2,))
    f = _node(b, "Cast", [hw], (2,), to=TensorProto.FLOAT)
    f = _node(b, "Mul", [f, _const(b, "half", [0.5, 0.5], np.float32)], (2,))
    hw2 = _node(b, "Cast", [f], (2,), to=TensorProto.INT64)            # [2, 2]
    ones = _node(b, "ConstantOfShape", [_const(b, "one_d", [1])], (1,),
                 value=numpy_helper.from_array(np.array([1], np.int64)))
    target = _node(b, "Concat", [ones, _const(b, "c16", [16]), hw2], (4,), axis=0)
    y = _node(b, "Reshape", [y, target], (1, 16, 2, 2))
    path = _quantize(b.model(b.relu(b.conv(y, 3, 1))), qdir / "consts.onnx", "qdq")
    g, c = _check(path)
    assert [op.kind for op in g.ops] == ["Conv", "Reshape", "Conv"]
    assert g.tensors[g.ops[1].outputs[0]].shape == (1, 16, 2, 2)


def test_reshape_quantized_again_is_requantized(tmp_path):
    """A Reshape whose QuantizeLinear has other parameters than its input's (onnxruntime
    calibrates them apart when an operator it does not quantize, such as Dropout, sits
    between; GoogLeNet's classifier input) is the bytes moved, then requantized: not a plain
    alias (which was 51 LSB off on GoogLeNet at 224x224)."""
    from onnx import TensorProto
    s1, s2 = np.float32(0.05), np.float32(0.02)
    rng = np.random.default_rng(3)
    w = rng.integers(-60, 61, (4, 12)).astype(np.int8)
    inits = [numpy_helper.from_array(np.array(s1), "s1"),
             numpy_helper.from_array(np.array(s2), "s2"),
             numpy_helper.from_array(np.array(0, np.uint8), "z"),
             numpy_helper.from_array(np.array(0.01, np.float32), "sy"),
             numpy_helper.from_array(w, "w"),
             numpy_helper.from_array(np.array(0.02, np.float32), "sw"),
             numpy_helper.from_array(np.array(0, np.int8), "zw"),
             numpy_helper.from_array(np.array([1, -1], np.int64), "shape")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s1", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s1", "z"], ["xd"]),
             helper.make_node("Reshape", ["xd", "shape"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "s2", "z"], ["rq"]),
             helper.make_node("DequantizeLinear", ["rq", "s2", "z"], ["rd"]),
             helper.make_node("DequantizeLinear", ["w", "sw", "zw"], ["wd"]),
             helper.make_node("Gemm", ["rd", "wd"], ["y"], transB=1),
             helper.make_node("QuantizeLinear", ["y", "sy", "z"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "sy", "z"], ["out"])]
    g = helper.make_graph(nodes, "reshape_requant",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])], inits)
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8),
              path)
    r = verify_model(path, TINY)
    assert r["bit_exact"] and r["layers_ok"] and r["ok"], r["worst_layer_vs_onnxruntime"]
    gi = import_onnx(str(path))
    assert any(isinstance(op, HostFloat) and op.op_type == "QuantizeLinear" for op in gi.ops)


# -- models older than opset 13 ------------------------------------------------------------------
def _legacy_net():
    """An opset-9 model with legacy forms: ``Pad`` with its pads as an attribute (Pad-2) and
    ``Upsample`` (deprecated since opset 10)."""
    rng = np.random.default_rng(4)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("w", rng.normal(0, .3, (4, 3, 3, 3))), ("b", np.zeros(4)),
        ("scales", np.array([1, 1, 2, 2])), ("w2", rng.normal(0, .2, (4, 4, 3, 3))),
        ("b2", np.zeros(4)), ("wf", rng.normal(0, .1, (5, 4 * 16 * 16))), ("bf", np.zeros(5))]]
    nodes = [
        helper.make_node("Pad", ["x"], ["p"], mode="constant", pads=[0, 0, 1, 1, 0, 0, 1, 1]),
        helper.make_node("Conv", ["p", "w", "b"], ["c"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Upsample", ["r", "scales"], ["u"], mode="nearest"),
        helper.make_node("Conv", ["u", "w2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Flatten", ["c2"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "legacy",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)], ir_version=4)


def test_legacy_opset_is_brought_to_13_before_quantizing(qdir):
    """``ffacc quantize`` converts an opset-9 model to opset 13 first (onnxruntime's quantizer
    writes an invalid model from it: Pad-2's pads as a float tensor), and the result verifies
    (the Upsample, now a Resize, on the host)."""
    from ffacc.compiler.quantize import quantize_onnx
    m = _legacy_net()
    onnx.checker.check_model(m)
    calib = np.random.default_rng(0).uniform(0, 1, (4, 3, 8, 8)).astype(np.float32)
    info = quantize_onnx(m, qdir / "legacy.onnx", calib)
    assert info["notes"][0] == "opset 9 brought to 13 by onnx's version converter"
    q = onnx.load(qdir / "legacy.onnx")
    assert q.opset_import[0].version >= 13 and "Upsample" not in {n.op_type for n in q.graph.node}
    g, c = _check(qdir / "legacy.onnx")
    assert [h["op"] for h in c.host_ops] == ["Resize"], c.host_ops


def test_per_channel_model_quantized_at_opset_11_imports(qdir):
    """onnxruntime's quantizer writes per-channel ``DequantizeLinear``s with an ``axis`` even at
    opset 11, which has none (the onnx checker refuses the model); the importer brings such a
    model to opset 13 and notes it."""
    b = Builder((1, 3, 8, 8), seed=2)
    m = b.model(b.fc(b.flatten(b.relu(b.conv("x", 4, 3))), 5))
    m.opset_import[0].version = 11
    path = quantize_model(m, qdir / "opset11.onnx", per_channel=True)
    with pytest.raises(onnx.checker.ValidationError, match="axis"):
        onnx.checker.check_model(onnx.load(path))
    g, _ = _check(path)
    assert "opset 11 brought to 13 by onnx's version converter" in g.notes


def test_per_channel_weights_of_a_host_gemm(tmp_path):
    """A float Gemm (it reads the float graph input, so it runs on the host) with int8 weights
    per output channel (``DequantizeLinear`` axis 0 of a 2-D weight): the host dequantizes them
    along that axis (it broadcast a per-channel scale along the last axis and failed), and the
    model is within an LSB of onnxruntime."""
    rng = np.random.default_rng(0)

    def c(name, v):
        return numpy_helper.from_array(v, name)
    inits = [c("wq", rng.integers(-127, 128, (10, 16)).astype(np.int8)),
             c("ws", rng.uniform(0.01, 0.05, 10).astype(np.float32)),
             c("wz", np.zeros(10, np.int8)), c("ys", np.float32(0.05)), c("yz", np.int8(0)),
             c("w2q", rng.integers(-127, 128, (4, 10)).astype(np.int8)),
             c("w2s", np.float32(0.01)), c("w2z", np.int8(0)),
             c("zs", np.float32(0.1)), c("zz", np.int8(0))]
    nodes = [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
             helper.make_node("Gemm", ["x", "w"], ["g"], transB=1),
             helper.make_node("QuantizeLinear", ["g", "ys", "yz"], ["gq"]),
             helper.make_node("DequantizeLinear", ["gq", "ys", "yz"], ["gd"]),
             helper.make_node("DequantizeLinear", ["w2q", "w2s", "w2z"], ["w2"]),
             helper.make_node("Gemm", ["gd", "w2"], ["h"], transB=1),
             helper.make_node("QuantizeLinear", ["h", "zs", "zz"], ["hq"]),
             helper.make_node("DequantizeLinear", ["hq", "zs", "zz"], ["y"])]
    path = tmp_path / "host_gemm.onnx"
    onnx.save(helper.make_model(helper.make_graph(
        nodes, "h", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits),
        opset_imports=[helper.make_opsetid("", 13)]), path)
    res = verify_model(path, TINY, engine="iss", x=rng.normal(0, 1, (1, 16)).astype(np.float32))
    assert res["host_ops"] == [{"name": "g", "op": "Gemm",
                                "reason": "Gemm has no accelerator lowering"}], res["host_ops"]
    assert res["ok"] and res["max_lsb_vs_onnxruntime"] <= 1, res
