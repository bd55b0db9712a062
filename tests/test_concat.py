"""A channel Concat runs on the accelerator, in place: an input stored as the output (same
scale and zero point) is written into its slice of the output by its producer; the others
(onnxruntime's quantizer gives each input its own scale) are requantized into theirs by
``ADD``s, as the per-tensor affine map ``(s_in / s_out) (x - z_in)``."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ffacc.compiler.driver import compile_model, verify_model
from ffacc.compiler.ir import Concat
from ffacc.compiler.zoo import Builder, quantize_model
from ffacc.firmware.image import Kind
from ffacc.firmware.isa import Op, decode_program
from ffacc.hw.config import ACCEL_PRESETS

TINY = ACCEL_PRESETS["tiny"]


def _concat_model(size=8):
    """Two convolutions of the input (3 and 5 channels, the second with a relu) and the
    input's own conv, concatenated on the channel axis, then a conv."""
    b = Builder((1, 3, size, size), seed=11, name="concat")
    p = b.conv("x", 3, 3)
    q = b.relu(b.conv("x", 5, 1))
    r = b.conv("x", 2, 3)
    return b.model(b.conv(b.concat([p, q, r]), 4, 3))


def _equalize(src, dst):
    """``src`` with every Concat input quantized as the Concat's output (one scale and zero
    point for them all, their producers' QuantizeLinear too), saved as ``dst``."""
    m = onnx.load(src)
    inits = {i.name: i for i in m.graph.initializer}
    prod = {o: n for n in m.graph.node for o in n.output}
    cons = {}
    for n in m.graph.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    for cat in [n for n in m.graph.node if n.op_type == "Concat"]:
        (q,) = cons[cat.output[0]]
        dqs = [prod[i] for i in cat.input]
        names = [(d.input[1], d.input[2]) for d in dqs] + [(q.input[1], q.input[2])]
        names += [(prod[d.input[0]].input[1], prod[d.input[0]].input[2]) for d in dqs]
        scale = max(float(numpy_helper.to_array(inits[s])) for s, _ in names)
        for s, z in names:
            inits[s].CopyFrom(numpy_helper.from_array(np.array(scale, np.float32), s))
            inits[z].CopyFrom(numpy_helper.from_array(np.array(0, np.uint8), z))
    onnx.save(m, dst)
    return dst


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    """The model as quantize_static writes it, and the same with every Concat input
    quantized as its output."""
    d = tmp_path_factory.mktemp("concat")
    ort = d / "concat_int8.onnx"
    quantize_model(_concat_model(), ort, samples=4)
    return {"ort": ort, "same": _equalize(ort, d / "concat_same.onnx")}


def _adds(c):
    """The ``ADD`` instructions of a compiled model."""
    code = b"".join(s.data for s in c.image.sections if s.kind == Kind.CODE)
    return sum(ins.op == Op.ADD for ins in decode_program(code))


def test_a_concat_of_differently_scaled_inputs_runs_on_the_accelerator(paths):
    g, c, _ = compile_model(paths["ort"], TINY)
    (cat,) = [op for op in g.ops if isinstance(op, Concat)]
    y = g.tensors[cat.outputs[0]]
    assert all(cat.requant(g.tensors[n], y) is not None for n in cat.inputs)
    li = [x for x in c.layers if x["op"] == "Concat"][0]
    assert li["where"] == "accel" and li["inputs_in_place"] == 0 and not c.host_ops
    assert _adds(c) == 3                # one per input: a per-tensor scale, one ADD each
    r = verify_model(paths["ort"], TINY)
    assert r["bit_exact"] and r["ok"] and r["layer_max_lsb_vs_onnxruntime"] <= 1, r


def test_inputs_stored_as_the_output_are_written_in_place(paths):
    """Every input has the output's quantization: the producers write into the output, and
    the Concat is no instruction at all."""
    g, c, _ = compile_model(paths["same"], TINY)
    li = [x for x in c.layers if x["op"] == "Concat"][0]
    assert li["where"] == "accel" and li["inputs_in_place"] == 3 and _adds(c) == 0
    # the layers' code ranges tile the program: the next conv's first weight load, moved
    # into the code before it, is the conv's before the Concat, which has none
    acc = [x for x in c.layers if x["where"] == "accel"]
    assert li["pc_count"] == 0
    assert all(a["pc_first"] + a["pc_count"] == b["pc_first"] for a, b in zip(acc, acc[1:]))
    r = verify_model(paths["same"], TINY)
    assert r["bit_exact"] and r["ok"], r


def test_without_an_add_unit_a_concat_runs_on_the_host(paths):
    cfg = TINY.with_(add_unit=False)
    g, c, _ = compile_model(paths["ort"], cfg)
    assert [h["op"] for h in c.host_ops] == ["Concat"]
    assert "no ADD unit" in c.host_ops[0]["reason"]
    assert verify_model(paths["ort"], cfg)["bit_exact"]


def test_slices_that_are_graph_outputs_host_results_and_reshaped(tmp_path):
    """A slice written in place that is also a graph output, one a host operator writes (a
    3x3 average pool with ceil_mode, which the accelerator does not run), and the Concat's
    output read through a Flatten: the memory plan keeps each where its readers look,
    bit-exact."""
    b = Builder((1, 3, 6, 6), seed=17, name="slices")
    p = b.conv("x", 3, 3)
    q = b.pool("AveragePool", b.relu(b.conv("x", 5, 1)), 3, 1, pads=(1, 1, 1, 1),
               ceil_mode=1)
    y = b.fc(b.flatten(b.concat([p, q])), 4)
    m = b.model(y)
    m.graph.output.append(helper.make_tensor_value_info(p, TensorProto.FLOAT, [1, 3, 6, 6]))
    src = tmp_path / "slices_int8.onnx"
    quantize_model(m, src, samples=4)
    path = _equalize(src, tmp_path / "slices_same.onnx")
    g, c, _ = compile_model(path, TINY)
    li = [x for x in c.layers if x["op"] == "Concat"][0]
    assert li["where"] == "accel" and li["inputs_in_place"] == 2, li
    assert [h["op"] for h in c.host_ops] == ["AveragePool"]
    assert len(g.outputs) == 2
    r = verify_model(path, TINY)
    assert r["bit_exact"] and r["ok"], r


@pytest.mark.slow
@pytest.mark.parametrize("which", ["ort", "same"])
def test_concat_on_the_rtl(paths, which):
    r = verify_model(paths[which], TINY, engine="rtl")
    assert r["bit_exact"] and r["ok"], r
