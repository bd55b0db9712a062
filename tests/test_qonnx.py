"""QONNX models (Brevitas, FINN): ``Quant`` nodes of 4-bit weights and activations compile
onto the accelerator's 8-bit datapath. The rewritten model computes what QONNX's own executor
computes; golden ≡ ISS ≡ RTL bit for bit; bad QONNX gets an error naming the node."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ffacc.compiler.driver import compile_model, verify_compiled
from ffacc.compiler.ir import reference_run
from ffacc.compiler.onnx_import import ImportError_
from ffacc.compiler.qonnx import from_qonnx, qlimits, uniform_qonnx
from ffacc.hw.config import ACCEL_PRESETS
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_shapes import InferShapes


TINY = ACCEL_PRESETS["tiny"]
DOM = "qonnx.custom_op.general"
ACTS = ("a1", "a2", "y")            # the activation Quant outputs of qonnx_cnn


def qonnx_cnn(bits=4, scales=None, seed=0, quant=None):
    """A small CNN as Brevitas exports it to QONNX: an 8-bit input; ``bits``-bit weights
    (narrow, per channel for conv1 and the classifier, per tensor for conv2) and activations
    (unsigned, after each ReLU); MaxPool and Flatten straight on a quantized activation;
    conv2's bias a 32-bit Quant at the accumulator's scale; an 8-bit signed output.
    ``quant(name, attrs)`` may change a Quant node's attributes (for the error tests)."""
    rng = np.random.default_rng(seed)
    scales = scales or {}
    nodes, inits = [], []

    def const(name, v):
        inits.append(numpy_helper.from_array(np.asarray(v, dtype=np.float32), name))
        return name

    def q(x, y, scale, b, signed, narrow=0, zp=0.0):
        attrs = dict(signed=signed, narrow=narrow, rounding_mode="ROUND")
        if quant:
            quant(y, attrs)
        nodes.append(helper.make_node("Quant", [x, const(y + "_s", scale), const(y + "_z", zp),
                                                const(y + "_b", b)], [y], name=y, domain=DOM,
                                      **attrs))
        return y

    def wq(name, w, per_channel):
        axes = tuple(range(1, w.ndim))
        top = np.abs(w).max(axis=axes, keepdims=True) if per_channel else np.abs(w).max()
        return q(const(name, w), name + "_q", top / (2 ** (bits - 1) - 1), bits, 1, narrow=1)

    w2 = rng.normal(0, 0.3, (8, 6, 3, 3))
    q(const("b2", rng.normal(0, 0.1, 8)), "b2_q",
      scales.get("a1", 0.1) * np.abs(w2).max() / (2 ** (bits - 1) - 1), 32, 1)
    x = q("x", "xq", 1 / 255, 8, 0)
    nodes.append(helper.make_node("Conv", [x, wq("w1", rng.normal(0, 0.5, (6, 1, 3, 3)), True),
                                           const("b1", rng.normal(0, 0.1, 6))], ["c1"],
                                  pads=[1, 1, 1, 1]))
    nodes.append(helper.make_node("Relu", ["c1"], ["r1"]))
    q("r1", "a1", scales.get("a1", 0.1), bits, 0)
    nodes.append(helper.make_node("MaxPool", ["a1"], ["p1"], kernel_shape=[2, 2],
                                  strides=[2, 2]))
    nodes.append(helper.make_node("Conv", ["p1", wq("w2", w2, False), "b2_q"], ["c2"]))
    nodes.append(helper.make_node("Relu", ["c2"], ["r2"]))
    q("r2", "a2", scales.get("a2", 0.1), bits, 0)
    nodes.append(helper.make_node("Flatten", ["a2"], ["f"]))
    nodes.append(helper.make_node("Gemm", ["f", wq("w3", rng.normal(0, 0.3, (10, 128)), True),
                                           const("b3", rng.normal(0, 0.1, 10))], ["g"],
                                  transB=1))
    q("g", "y", scales.get("y", 0.05), 8, 1)
    graph = helper.make_graph(nodes, "qcnn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                             [1, 1, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                   helper.make_opsetid(DOM, 1)])


def qonnx_run(model, x):
    """QONNX's own executor: every tensor of the run."""
    return execute_onnx(ModelWrapper(model).transform(InferShapes()), {"x": x},
                        return_full_exec_context=True)


def grid_input(seed):
    """An input on the 8-bit input's grid (k / 255), so the two references' input
    quantizations cannot round a tie apart."""
    k = np.random.default_rng(seed).integers(0, 256, (1, 1, 12, 12))
    return (k / 255).astype(np.float32)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """qonnx_cnn with scales set from a QONNX run so that about a third of the 4-bit range's
    top is saturated (the 4-bit clamp matters)."""
    ctx = qonnx_run(qonnx_cnn(), grid_input(100))
    sc = {"a1": 0.7 * float(ctx["r1"].max()) / 15, "a2": 0.7 * float(ctx["r2"].max()) / 15,
          "y": float(np.abs(ctx["g"]).max()) / 127}
    path = tmp_path_factory.mktemp("qonnx") / "cnn4.onnx"
    onnx.save(qonnx_cnn(scales=sc), path)
    return path


def _ort_values(model, x, names):
    m, _ = from_qonnx(model)
    m.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                          for n in names if n != "y")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"x": x})))


def test_the_rewritten_model_computes_what_qonnx_computes(model):
    """onnxruntime on the QDQ rewrite against QONNX's executor on the original, every
    activation Quant's output in LSBs: at most 1, on at most 2 % of the values (the two run
    the float convolutions in different orders); the 4-bit activations saturate at 15."""
    m = onnx.load(model)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    diff, n, top = 0, 0, 0
    for seed in range(8):
        x = grid_input(seed)
        ref, got = qonnx_run(m, x), _ort_values(m, x, ACTS)
        for a in ACTS:
            lsb = np.abs(got[a] - ref[a]) / inits[a + "_s"]
            assert lsb.max() < 1.01, (a, seed, lsb.max())
            diff += int((lsb > 0.5).sum())
            n += lsb.size
        top += int(np.isclose(ref["a1"] / inits["a1_s"], 15).sum())
    assert diff <= 0.02 * n, (diff, n)
    assert top > 0.02 * 8 * 6 * 144, top      # the clamp at 15 is exercised


def test_the_4bit_model_compiles_and_is_bit_exact_on_the_iss(model):
    """Everything runs on the accelerator; golden ≡ ISS bit for bit; within an LSB of
    onnxruntime (per layer too) and of QONNX's executor; the 4-bit activations stay in 0..15
    and reach 15."""
    g, c, _ = compile_model(model, TINY)
    assert c.host_ops == [] and any("QONNX: 4 constant and 4 activation" in n
                                    for n in g.notes), (c.host_ops, g.notes)
    m = onnx.load(model)
    worst = 0
    for seed in range(3):
        x = grid_input(seed)
        res = verify_compiled(model, g, c, engine="iss", x=x)
        assert res["bit_exact"] and res["layers_ok"], res
        assert res["max_lsb_vs_onnxruntime"] <= 1 and res["layers_checked_vs_onnxruntime"] == 5
        # against QONNX's executor, on the output's integers
        qin = g.inputs[0]
        xq = np.rint(x / g.tensors[qin].scale).astype(g.tensors[qin].np_dtype)
        vals = reference_run(g, {qin: xq})
        t = g.tensors[g.outputs[0]]
        want = np.rint(qonnx_run(m, x)["y"] / t.scale) + t.zero_point
        worst = max(worst, np.abs(vals[g.outputs[0]].astype(np.int64) - want).max())
        for name in ("a1__q", "a2__q"):
            v = vals[name].astype(np.int64) - g.tensors[name].zero_point
            assert v.min() >= 0 and v.max() == 15, (name, v.min(), v.max())
    assert worst <= 1


def test_the_4bit_model_on_rtl(model):
    """The compiled 4-bit model on the generated Verilog (Verilator): RTL ≡ golden."""
    g, c, _ = compile_model(model, TINY)
    res = verify_compiled(model, g, c, engine="rtl", x=grid_input(5))
    assert res["bit_exact"] and res["ok"], res


def test_models_without_qonnx_nodes_pass_through_and_the_callers_model_is_kept(model):
    plain = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]))
    assert from_qonnx(plain) == (plain, [])
    m = onnx.load(model)
    before = m.SerializeToString()
    out, notes = from_qonnx(m)
    assert m.SerializeToString() == before
    assert not any(n.domain == DOM for n in out.graph.node) and notes
    onnx.checker.check_model(out)


def test_qlimits():
    assert qlimits(True, False, 4) == (-8, 7) and qlimits(True, True, 4) == (-7, 7)
    assert qlimits(False, False, 4) == (0, 15) and qlimits(False, True, 8) == (0, 254)


def _set(name, **kw):
    def edit(y, attrs):
        if y == name:
            attrs.update(kw)
    return edit


@pytest.mark.parametrize("build, message", [
    (lambda: qonnx_cnn(quant=_set("a1", rounding_mode="FLOOR")),
     "'a1' (Quant): rounding mode FLOOR on an activation"),
    (lambda: qonnx_cnn(bits=9), "'a1' (Quant): a 9-bit activation"),
    (lambda: qonnx_cnn(scales={"a2": -0.1}), "'a2' (Quant): scale [-0.1"),
    (lambda: _edit(qonnx_cnn(), "y_z", 0.5), "'y' (Quant): zero point [0.5] is not an integer"),
    (lambda: _edit(qonnx_cnn(), "a1_s", [0.1, 0.2]), "'a1' (Quant): an activation must be "
                                                    "quantized per tensor"),
    (lambda: _edit(qonnx_cnn(), "w1_q_b", 1.0), "'w1_q' (Quant): bit width [1.0] is not one "
                                               "integer of 2 to 32"),
    (lambda: _op(qonnx_cnn(), "a2", "BipolarQuant"), "'a2' (BipolarQuant): QONNX BipolarQuant "
                                                     "is not supported"),
    (lambda: _unconst(qonnx_cnn(), "a1_b"), "'a1' (Quant): bitwidth 'a1_b' must be a constant"),
])
def test_bad_qonnx_gets_an_error_naming_the_node(build, message, tmp_path):
    path = tmp_path / "bad.onnx"
    onnx.save(build(), path)
    with pytest.raises(ImportError_) as e:
        compile_model(path, TINY)
    assert message in str(e.value), str(e.value)


def _edit(m, name, value):
    for i, t in enumerate(m.graph.initializer):
        if t.name == name:
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(
                np.asarray(value, dtype=np.float32), name))
    return m


def _op(m, name, op_type):
    n = next(n for n in m.graph.node if n.name == name)
    n.op_type = op_type
    return m


def _unconst(m, name):
    t = next(t for t in m.graph.initializer if t.name == name)
    m.graph.initializer.remove(t)
    m.graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, []))
    return m


def test_uniform_4bit_digits_keeps_its_accuracy_on_the_accelerator():
    """The bundled digits CNN quantized after training to 4-bit weights and activations
    (uniform_qonnx, written as QONNX): every layer on the accelerator, ISS ≡ golden, and on the
    360 held-out digits within a point of the int8 model's 97.5 % (measured: 97.2 %)."""
    from ffacc.demo import load_split
    from ffacc.models import path
    from modelrun import accuracy_iss_exact

    xtr, xte, _, yte = load_split()
    q = uniform_qonnx(onnx.load(path("digits/digits_float.onnx")), xtr[:100], bits=4)
    assert sum(n.op_type == "Quant" for n in q.graph.node) == 7     # in, 3 weights, 2 acts, out
    g, c, _ = compile_model(q, TINY)
    assert c.host_ops == []
    acc = accuracy_iss_exact(g, c, xte, yte, iss_images=3)
    assert acc >= 0.965, acc
