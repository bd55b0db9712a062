"""Non-uniform activation quantization (compiler/codes.py): codebook calibration, the golden
semantics, the compiler's errors, and a coded model bit-exact on ISS ≡ golden and on the RTL
(Verilator and Icarus)."""

import numpy as np
import pytest

from ffacc.compiler.codes import (CodesError, calibrate_levels, equal_distance_levels,
                                  kmeans_levels, levels_of, parse_codes)
from ffacc.compiler.compile import CompileError
from ffacc.compiler.driver import compile_model
from ffacc.compiler.ir import quantize, reference_run
from ffacc.demo import load_split
from ffacc.firmware.isa import Op, Reg, decode_program
from ffacc.hw.config import ACCEL_PRESETS
from ffacc.models import path
from ffacc.sim import golden
from ffacc.sim.runner import run_image
from modelrun import rtl_equals_iss_and_golden

TINY = ACCEL_PRESETS["tiny"]
MODEL = path("digits/digits_int8.onnx")


@pytest.fixture(scope="module")
def digits():
    xtr, xte, _, yte = load_split()
    return xtr, xte, yte


@pytest.fixture(scope="module")
def coded(digits):
    """The digits model with 4-bit K-means levels, compiled for tiny."""
    g, c, _ = compile_model(MODEL, TINY, act_codes="kmeans:4", calib=digits[0][:60])
    return g, c


@pytest.fixture(scope="module")
def coded6(digits):
    """The digits model with 6-bit K-means levels (up to 64 a layer), compiled for tiny."""
    g, c, _ = compile_model(MODEL, TINY, act_codes="kmeans:6", calib=digits[0][:60])
    return g, c


def test_parse_codes_names_what_is_wrong():
    assert parse_codes("kmeans:4") == ("kmeans", 4) and parse_codes("ed:2") == ("ed", 2)
    for bad in ("kmeans", "kmeans:x", "median:4", ":4", "ed:"):
        with pytest.raises(CodesError, match="METHOD:BITS"):
            parse_codes(bad)
    assert parse_codes("kmeans:6") == ("kmeans", 6)
    for bits in ("1", "7", "8"):
        with pytest.raises(CodesError, match="at most 64 levels"):
            parse_codes(f"ed:{bits}")


def test_equal_distance_levels_are_evenly_spaced_from_the_smallest_value():
    rng = np.random.default_rng(0)
    v = np.concatenate([np.zeros(500, int), rng.integers(0, 101, 2000)])
    lv = equal_distance_levels(v, 8)
    assert len(lv) == 8 and lv[0] == 0
    steps = np.diff(lv)
    assert steps.max() - steps.min() <= 1          # rounded to integers
    assert 80 <= lv[-1] <= 100                     # the top level of least squared error
    # a long thin tail above: the top level stays with the bulk, the tail saturates
    tail = np.concatenate([v, [255] * 3])
    assert equal_distance_levels(tail, 8)[-1] < 150


def test_kmeans_finds_the_clusters():
    rng = np.random.default_rng(1)
    centers = [0, 40, 90, 200]
    v = np.concatenate([np.clip(rng.normal(c, 2, 3000).round(), 0, 255) for c in centers])
    lv = kmeans_levels(v.astype(int), 4)
    assert len(lv) == 4 and all(abs(a - b) <= 1 for a, b in zip(lv, centers)), lv
    # fewer distinct values than levels: those values
    assert kmeans_levels(np.array([3, 3, 9]), 16) == (3, 9)


def test_levels_round_to_the_nearest_ties_down():
    lv = (0, 10, 30)
    th = golden.level_thresholds(lv)
    assert list(th) == [6, 21]
    v = np.array([0, 4, 5, 6, 19, 20, 21, 255])
    assert list(golden.to_levels(v, th, lv)) == [0, 0, 0, 10, 10, 10, 30, 30]


def test_calibration_codes_conv_outputs_but_not_the_models_output(digits, coded):
    g, _ = coded
    lv = levels_of(g)
    convs = [op for op in g.ops if op.kind in ("Conv", "Gemm")]
    assert len(lv) == len(convs) - 1 and g.outputs[0] not in lv
    for name, levels in lv.items():
        assert 2 <= len(levels) <= 16 and list(levels) == sorted(set(levels))
        lo, hi = g.tensors[name].qrange
        assert lo <= levels[0] and levels[-1] <= hi
    # the golden model gives coded tensors only their levels
    qin = g.inputs[0]
    vals = reference_run(g, {qin: quantize(digits[1][:1], g.tensors[qin])})
    for name, levels in lv.items():
        assert set(np.unique(vals[name])) <= set(levels), name


def _nlev_at_posts(c):
    """The O_NLEV each accelerator layer's POSTs run with (layer by layer, those with POSTs):
    the last SET before each POST (a register keeps its value across layers; the compiler
    leaves out a SET of the value it holds, compiler/known_sets.py); None if unset."""
    code = decode_program(next(s for s in c.image.sections if s.kind == 1).data)
    at, v = {}, None
    for k, i in enumerate(code):
        if i.op == Op.SET and i.reg == Reg.O_NLEV:
            v = i.imm
        elif i.op == Op.POST:
            at[k] = v
        elif i.op == Op.END:
            v = None
    out = []
    for li in c.image.meta["layers"]:
        if li["where"] == "accel":
            vals = {v for k, v in at.items()
                    if li["pc_first"] <= k < li["pc_first"] + li["pc_count"]}
            if vals:
                out.append(vals)
    return out


def test_each_layer_sets_its_levels(coded):
    """Every layer's POST runs with its own O_NLEV: the coded layers' level counts, 0 for
    the last (a register keeps its value across layers and runs)."""
    g, c = coded
    want = [len(v) for v in levels_of(g).values()]
    assert _nlev_at_posts(c) == [{n} for n in want + [0]]
    # a model without levels sets O_NLEV = 0 once, before its first POST
    _, plain = compile_model(MODEL, TINY)[:2]
    code = decode_program(next(s for s in plain.image.sections if s.kind == 1).data)
    sets = [k for k, i in enumerate(code) if i.op == Op.SET and i.reg == Reg.O_NLEV]
    posts = [k for k, i in enumerate(code) if i.op == Op.POST]
    assert len(sets) == 1 and code[sets[0]].imm == 0 and sets[0] < posts[0]


def test_maps_only_convolutions_read_are_stored_as_codes(coded):
    """The pooled maps that only a conv (and, through the flatten, the FC layer) read are
    stored as 4-bit codes: half the bytes; POSTs write them with CODES and LOADAs read them
    with DECODE, and the FC layer reads rows of an even number of codes."""
    from ffacc.firmware.isa import LoadAFlag, PostFlag
    g, c = coded
    stored = {n: t for n, t in g.tensors.items() if t.codes}
    assert {"p1_QuantizeLinear_Output", "p2_QuantizeLinear_Output",
            "f_QuantizeLinear_Output"} == set(stored)
    for t in stored.values():
        assert 2 * t.nbytes == int(np.prod(t.shape))
    code = decode_program(next(s for s in c.image.sections if s.kind == 1).data)
    assert sum(bool(i.flags & PostFlag.CODES) for i in code if i.op == Op.POST) >= 2
    assert sum(bool(i.flags & LoadAFlag.DECODE) for i in code if i.op == Op.LOADA) >= 2
    fc = [i.imm for i in code if i.op == Op.SET and i.reg == Reg.A_W]
    assert all(w % 2 == 0 for w in fc[-1:])


def test_coded_model_iss_equals_golden(digits, coded):
    g, c = coded
    qin, out = g.inputs[0], g.outputs[0]
    differ = 0
    plain, _ = compile_model(MODEL, TINY)[:2]
    for x in digits[1][:6]:
        xq = quantize(x[None], g.tensors[qin])
        want = reference_run(g, {qin: xq})[out]
        got, _ = run_image(c.image, {qin: xq}, engine="iss")
        assert np.array_equal(got[out], want)
        differ += not np.array_equal(want, reference_run(plain, {qin: xq})[out])
    assert differ, "the levels changed no logits"


def test_six_bit_codes_are_stored_a_level_a_byte(digits, coded6):
    """kmeans:6: layers of more than 16 levels (a 4-bit code cannot name them) map to their
    levels in POST, which writes them as bytes (no CODES; nor does a LOADA DECODE them); the
    ISS equals the golden model, and the 64 levels round differently from the 16."""
    from ffacc.firmware.isa import LoadAFlag, PostFlag
    g, c = coded6
    lv = levels_of(g)
    assert len(lv) == 2 and all(17 <= len(v) <= 64 for v in lv.values())
    assert not any(t.codes for t in g.tensors.values())
    code = decode_program(next(s for s in c.image.sections if s.kind == 1).data)
    assert _nlev_at_posts(c) == [{len(v)} for v in lv.values()] + [{0}]
    assert not any(i.flags & PostFlag.CODES for i in code if i.op == Op.POST)
    assert not any(i.flags & LoadAFlag.DECODE for i in code if i.op == Op.LOADA)
    qin, out = g.inputs[0], g.outputs[0]
    for x in digits[1][:4]:
        xq = quantize(x[None], g.tensors[qin])
        want = reference_run(g, {qin: xq})[out]
        got, _ = run_image(c.image, {qin: xq}, engine="iss")
        assert np.array_equal(got[out], want)


@pytest.mark.parametrize("simulator", ["verilator",
                                       pytest.param("icarus", marks=pytest.mark.icarus)])
def test_six_bit_coded_model_rtl_equals_iss(digits, coded6, simulator):
    g, c = coded6
    rtl_equals_iss_and_golden(TINY, simulator, g, c, digits[1][:1], "coded6")


def test_a_uniform_4bit_models_maps_are_stored_as_codes(digits):
    """A 4-bit QONNX model's activations (clamped to 0..15) that only convolutions read are
    stored as 4-bit codes with their 16 values as levels: the same logits as stored a byte
    each (narrow_codes=False), ISS = golden, and about half the activation bytes written; a
    configuration without act_codes and an 8-bit model store bytes."""
    import onnx

    from ffacc.compiler.driver import traffic_per_pc, traffic_sum
    from ffacc.compiler.qonnx import uniform_qonnx
    xtr, xte = digits[0], digits[1]
    float_model = onnx.load(path("digits/digits_float.onnx"))
    q4 = uniform_qonnx(float_model, xtr[:100], bits=4)
    g, c, _ = compile_model(q4, TINY)
    gb, cb, _ = compile_model(q4, TINY, narrow_codes=False)
    coded = {n for n, t in g.tensors.items() if t.codes}
    assert len(coded) == 3 and not any(t.codes for t in gb.tensors.values())
    lv = levels_of(g)
    assert len(lv) == 2 and all(v == tuple(range(16)) for v in lv.values())
    qin, out = g.inputs[0], g.outputs[0]
    written = []
    for x in xte[:4]:
        xq = quantize(x[None], g.tensors[qin])
        want = reference_run(gb, {qin: xq})[out]
        assert np.array_equal(reference_run(g, {qin: xq})[out], want)
        for img in (c.image, cb.image):
            got, st = run_image(img, {qin: xq}, engine="iss")
            assert np.array_equal(got[out], want)
            written.append(traffic_sum(traffic_per_pc(st["segments"]).values())
                           ["act_bytes_written"])
    assert written[0] <= 0.55 * written[1], written
    g_off = compile_model(q4, ACCEL_PRESETS["ulx3s"])[0]
    g8 = compile_model(uniform_qonnx(float_model, xtr[:100], bits=8), TINY)[0]
    assert not any(t.codes for t in g_off.tensors.values())
    assert not any(t.codes or t.levels for t in g8.tensors.values())


def test_compile_cli_act_bytes_keeps_a_4bit_models_maps_in_bytes(digits, tmp_path, capsys):
    import json

    import onnx

    from ffacc.cli import main
    from ffacc.compiler.qonnx import uniform_qonnx
    model = tmp_path / "q4.onnx"
    onnx.save(uniform_qonnx(onnx.load(path("digits/digits_float.onnx")), digits[0][:100],
                            bits=4), str(model))
    got = []
    for extra in ([], ["--act-bytes"]):
        assert main(["compile", str(model), "-o", str(tmp_path / "m.ffw"), "--config", "tiny",
                     "--json", *extra]) == 0
        got.append(json.loads(capsys.readouterr().out)["act_maps_as_codes"])
    assert len(got[0]) == 3 and got[1] == []


def test_a_configuration_without_act_codes_refuses_them(digits):
    with pytest.raises(CodesError, match="act_codes = true"):
        compile_model(MODEL, ACCEL_PRESETS["icebreaker"], act_codes="ed:4",
                      calib=digits[0][:4])
    with pytest.raises(CodesError, match="calibration samples"):
        compile_model(MODEL, TINY, act_codes="ed:4", calib=None)


def test_a_coded_tensor_on_the_host_is_refused(digits):
    """Levels on an operator the accelerator does not run: the compiler names it."""
    from dataclasses import replace
    from ffacc.compiler.compile import compile_graph
    from ffacc.compiler.onnx_import import import_onnx
    g = import_onnx(str(MODEL))
    g2, _ = calibrate_levels(g, [{g.inputs[0]: quantize(digits[0][:1], g.tensors[g.inputs[0]])}],
                             "ed", 2)
    with pytest.raises(CompileError, match="act_codes = true"):
        compile_graph(g2, ACCEL_PRESETS["icebreaker"])
    # operators that are not convolutions: a max-pool (fused into its conv) and a reshape
    for name in ("pool1", "flatten"):
        op = next(op for op in g.ops if op.name == name)
        t = g.tensors[op.outputs[0]]
        g3 = replace(g2, tensors={**g2.tensors, t.name: replace(t, levels=(0, 9))})
        with pytest.raises(CompileError, match=f"{name}.*only a convolution or Gemm"):
            compile_graph(g3, TINY)


@pytest.mark.parametrize("simulator", ["verilator",
                                       pytest.param("icarus", marks=pytest.mark.icarus)])
def test_coded_model_rtl_equals_iss(digits, coded, simulator):
    g, c = coded
    rtl_equals_iss_and_golden(TINY, simulator, g, c, digits[1][:2], "coded")


def test_compile_cli_takes_act_codes_and_names_bad_ones(digits, tmp_path, capsys):
    from ffacc.cli import main
    calib = tmp_path / "calib.npy"
    np.save(calib, digits[0][:40])
    out = tmp_path / "m.ffw"
    assert main(["compile", str(MODEL), "-o", str(out), "--config", "tiny",
                 "--act-codes", "ed:3", "--calib", str(calib), "--json"]) == 0
    import json
    info = json.loads(capsys.readouterr().out)
    assert len(info["act_levels"]) == 2 and all(len(v) <= 8 for v in info["act_levels"].values())
    assert "p1_QuantizeLinear_Output" in info["act_maps_as_codes"] and out.is_file()
    for args, msg in ((["--act-codes", "ed:7", "--calib", str(calib)], "at most 64 levels"),
                      (["--act-codes", "ed:4"], "needs --calib"),
                      (["--calib", str(calib)], "--calib is for --act-codes")):
        assert main(["compile", str(MODEL), "-o", str(tmp_path / "bad.ffw"), "--config",
                     "tiny", *args]) != 0
        assert msg in capsys.readouterr().err
        assert not (tmp_path / "bad.ffw").exists()
