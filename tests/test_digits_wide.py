"""The bundled wide digits CNN (``models/digits_wide``), the larger model of the quantization
table: its int8 model and a 4-bit QONNX one (packed weights) and one with K-means levels
compile with every layer on the accelerator, keep their measured accuracy on the golden
model, and run bit-exact on the ISS."""

import onnx
import pytest

from ffacc.compiler.driver import compile_model
from ffacc.compiler.qonnx import uniform_qonnx
from ffacc.demo import load_split
from ffacc.firmware.isa import LoadWFlag, Op, decode_program
from ffacc.hw.config import ACCEL_PRESETS
from ffacc.models import path
from modelrun import accuracy_iss_exact

TINY = ACCEL_PRESETS["tiny"]
INT8 = path("digits_wide/digits_wide_int8.onnx")


@pytest.fixture(scope="module")
def split():
    return load_split()


def test_the_int8_model_is_larger_and_keeps_its_accuracy(split):
    """Five layers (three convs, two FC) on the accelerator; 99.72 % measured."""
    xtr, xte, _, yte = split
    g, c, _ = compile_model(INT8, TINY)
    assert c.host_ops == [] and sum(op.kind in ("Conv", "Gemm") for op in g.ops) == 5
    weights = sum(op.w.size for op in g.ops if op.kind in ("Conv", "Gemm"))
    assert weights == 22_800
    assert accuracy_iss_exact(g, c, xte, yte) >= 0.99


def test_4bit_qonnx_of_the_wide_model_is_packed_and_keeps_its_accuracy(split):
    """Uniform 4-bit weights and activations: every LOADW packed; 99.72 % measured."""
    xtr, xte, _, yte = split
    q = uniform_qonnx(onnx.load(path("digits_wide/digits_wide_float.onnx")), xtr[:100], bits=4)
    g, c, _ = compile_model(q, TINY)
    code = decode_program(next(s for s in c.image.sections if s.kind == 1).data)
    loadw = [i for i in code if i.op == Op.LOADW]
    assert loadw and all(i.flags & LoadWFlag.PACK4 for i in loadw)
    assert accuracy_iss_exact(g, c, xte, yte) >= 0.985


def test_kmeans_4bit_levels_on_the_wide_model_keep_its_accuracy(split):
    """K-means levels (4 bits) on every conv and FC output but the logits: 99.44 %
    measured, within a point of int8's 99.72 %."""
    xtr, xte, _, yte = split
    g, c, _ = compile_model(INT8, TINY, act_codes="kmeans:4", calib=xtr[:60])
    assert sum(t.levels is not None for t in g.tensors.values()) >= 4
    assert accuracy_iss_exact(g, c, xte, yte) >= 0.987
