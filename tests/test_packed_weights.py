"""4-bit weights stored packed, two a byte (``LOADW``'s ``PACK4``, ``packed_weights``): the
format, the compiler's choice, a 4-bit QONNX model bit-exact on ISS ≡ golden with half the
weight bytes, and on the RTL (Verilator and Icarus)."""

import numpy as np
import onnx
import pytest

from ffacc.compiler.driver import compile_model, traffic_per_pc, traffic_sum
from ffacc.compiler.ir import quantize, reference_run
from ffacc.compiler.qonnx import uniform_qonnx
from ffacc.demo import load_split
from ffacc.firmware.isa import LoadWFlag, Op, decode_program
from ffacc.hw.config import ACCEL_PRESETS
from ffacc.hw.weights import fits4, pack4, unpack4
from ffacc.models import path
from ffacc.sim.runner import run_image
from modelrun import rtl_equals_iss_and_golden

TINY = ACCEL_PRESETS["tiny"]


def test_pack4_puts_the_even_tap_low_and_round_trips():
    assert pack4([1, -1, -8, 7, 3]) == bytes([0xF1, 0x78, 0x03])
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 64):
        t = rng.integers(-8, 8, n)
        b = pack4(t)
        assert len(b) == (n + 1) // 2 and np.array_equal(unpack4(b, n), t)
    assert fits4([-8, 7]) and not fits4([-9, 0]) and not fits4([0, 8]) and fits4([])
    with pytest.raises(ValueError, match=r"4-bit taps must be in -8\.\.7, not -9\.\.2"):
        pack4([-9, 2])
    with pytest.raises(ValueError, match="2 bytes hold 4 4-bit taps, not 5"):
        unpack4(b"\x00\x00", 5)


@pytest.fixture(scope="module")
def four_bit():
    """The bundled digits CNN quantized to 4-bit weights and activations (QONNX), compiled
    for tiny with and without packed weights."""
    xtr, xte, _, yte = load_split()
    q = uniform_qonnx(onnx.load(path("digits/digits_float.onnx")), xtr[:100], bits=4)
    packed = compile_model(q, TINY)
    plain = compile_model(q, TINY.with_(packed_weights=False))
    return packed, plain, xte


def _program(c):
    return decode_program(next(s for s in c.image.sections if s.kind == 1).data)


def test_every_loadw_of_a_4bit_model_reads_packed_weights(four_bit):
    """Every LOADW has PACK4, and the conv and Gemm layers' memory (weights and their
    quantization records) takes about half the bytes of the int8 layout; the int8 model's
    weights do not fit 4 bits and stay bytes."""
    (g, c, _), (_, c8, _), _ = four_bit
    loadw = [i for i in _program(c) if i.op == Op.LOADW]
    assert loadw and all(i.flags & LoadWFlag.PACK4 for i in loadw)
    assert not any(i.flags & LoadWFlag.PACK4 for i in _program(c8) if i.op == Op.LOADW)
    wb = [(a["weight_bytes"], b["weight_bytes"]) for a, b in zip(c.layers, c8.layers)
          if a.get("weight_bytes")]
    assert len(wb) == 3
    packed, plain = map(sum, zip(*wb))
    assert packed <= 0.62 * plain, (packed, plain)
    c_int8 = compile_model(path("digits/digits_int8.onnx"), TINY)[1]
    assert not any(i.flags & LoadWFlag.PACK4 for i in _program(c_int8) if i.op == Op.LOADW)


def test_packed_weights_give_the_same_results_iss_equals_golden(four_bit):
    (g, c, _), (g8, c8, _), xte = four_bit
    qin, out = g.inputs[0], g.outputs[0]
    for x in xte[:4]:
        xq = quantize(x[None], g.tensors[qin])
        want = reference_run(g, {qin: xq})[out]
        got, st = run_image(c.image, {qin: xq}, engine="iss")
        got8, st8 = run_image(c8.image, {qin: xq}, engine="iss")
        assert np.array_equal(got[out], want) and np.array_equal(got8[out], want)


@pytest.mark.parametrize("simulator", ["verilator",
                                       pytest.param("icarus", marks=pytest.mark.icarus)])
def test_packed_weights_rtl_equals_iss(four_bit, simulator):
    (g, c, _), _, xte = four_bit
    items, stats = rtl_equals_iss_and_golden(TINY, simulator, g, c, xte[:2], "packed")
    for item, st in zip(items, stats):
        # the RTL's bus read what the ISS's LOADWs, LOADAs and fetches did, each read in
        # whole bus words: the packed bytes (int8 weights would add about their own count)
        read = traffic_sum(traffic_per_pc(st["segments"]).values())
        need = read["code_bytes"] + read["weight_bytes_read"] + read["act_bytes_read"]
        assert need <= item["bus_read_bytes"] < need + read["weight_bytes_read"] // 2
