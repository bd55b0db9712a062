"""Bring your own model: what onnxruntime's quantizer writes by default compiles onto the
accelerator; inputs and outputs are checked and converted at the model's boundary; boards'
memory is checked; the Python API; ``ffacc quantize``."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import ffacc
from ffacc.cli import main
from ffacc.compiler.compile import CompileError
from ffacc.compiler.driver import compile_model, verify_model
from ffacc.compiler.quantize import quantize_static_with
from ffacc.compiler.zoo import Builder, quantize_model, torch_export_cnn
from ffacc.hw.config import ACCEL_PRESETS
from ffacc.sim.runner import InputError

TINY = ACCEL_PRESETS["tiny"]
RNG = np.random.default_rng(7)
CALIB = RNG.normal(0, 1, (6, 3, 16, 16)).astype(np.float32)


def _ort(path, x):
    """onnxruntime's outputs of the model as its definition (verify's reference: its fused
    uint8 x int8 kernels saturate on CPUs without VNNI, see ffacc.compiler.driver)."""
    from ffacc.compiler.driver import _ort_session
    sess = _ort_session(path)
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"input": x})))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The torch-export-shaped CNN quantized four ways with onnxruntime's quantize_static,
    without preprocess: its defaults (QDQ, int8 activations, per-tensor weights), QOperator
    int8, and QDQ/QOperator uint8 per channel."""
    d = tmp_path_factory.mktemp("byom")
    src = d / "model.onnx"
    onnx.save(torch_export_cnn(size=16), src)
    feeds = [{"input": CALIB[i:i + 1]} for i in range(len(CALIB))]
    out = {}
    for name, fmt, act, pc in [("default", "qdq", "int8", False), ("qop_int8", "qop", "int8", True),
                               ("qdq_uint8", "qdq", "uint8", True),
                               ("qop_uint8", "qop", "uint8", False)]:
        out[name] = d / f"{name}.onnx"
        quantize_static_with(src, out[name], feeds, fmt, pc, act)
    out["float"] = src
    return out


@pytest.mark.parametrize("name", ["default", "qop_int8", "qdq_uint8", "qop_uint8"])
def test_quantizer_outputs_run_on_the_accelerator(models, name):
    g, c, _ = compile_model(models[name], TINY)
    placed = {li["name"]: li["where"] for li in c.layers if li["op"].split("+")[0] in
              ("Conv", "Gemm")}
    assert len(placed) == 3 and set(placed.values()) == {"accel"}, placed
    assert any("pinned to 1" in n for n in c.image.meta["notes"])
    res = verify_model(models[name], TINY)
    assert res["bit_exact"] and res["max_lsb_vs_onnxruntime"] <= 1 and res["ok"]


def test_int8_activations_are_stored_as_uint8_with_the_same_real_values(models):
    g, c, _ = compile_model(models["default"], TINY)
    t_in = c.image.tensor("input")
    assert (t_in.dtype, t_in.model_dtype, t_in.model_float) == ("uint8", "int8", True)
    m = ffacc.compile(models["default"], TINY)
    x = RNG.normal(0, 1, (1, 3, 16, 16)).astype(np.float32)
    y = m.run(x)["logits"]
    ref = _ort(models["default"], x)["logits"]
    step = c.image.tensor("output").scale
    assert y.dtype == np.float32 and y.shape == ref.shape
    assert np.max(np.abs(y - ref)) <= step * 1.001          # within 1 LSB of onnxruntime
    # the model's own integers (int8) are accepted and give the same outputs
    q = np.clip(np.rint(x / t_in.scale) + t_in.zero_point - 128, -128, 127).astype(np.int8)
    assert np.array_equal(m.run(q)["logits"], y)
    raw = m.run(x, raw=True)["logits"]
    assert raw.dtype == np.int8


@pytest.mark.parametrize("x, msg", [
    (np.zeros((1, 16, 16, 3), np.float32), "looks like NHWC"),
    (np.zeros((4, 3, 16, 16), np.float32), "batch of 1"),
    (np.zeros((3, 16, 16), np.float32), "add the batch dimension"),
    (np.zeros((1, 3, 16, 16), np.int32), "is int32; the model takes float32 values"),
    (np.zeros((1, 3, 16, 16), np.uint8), "is uint8; the model takes float32 values"),
    (np.full((1, 3, 16, 16), np.nan, np.float32), "not finite"),
    ({"image": np.zeros((1, 3, 16, 16), np.float32)}, "unknown input 'image'"),
])
def test_bad_inputs_are_clear_errors(models, x, msg):
    m = ffacc.compile(models["default"], TINY)
    with pytest.raises(InputError, match=msg.replace("(", r"\(")):
        m.run(x)


def test_cli_run_errors_and_outputs(models, tmp_path, capsys):
    img = tmp_path / "m.ffw"
    assert main(["compile", str(models["default"]), "-o", str(img), "--config", "tiny"]) == 0
    assert "pinned to 1" in capsys.readouterr().out
    np.save(tmp_path / "nhwc.npy", np.zeros((1, 16, 16, 3), np.float32))
    assert main(["run", str(img), "--input", str(tmp_path / "nhwc.npy"), "-o",
                 str(tmp_path / "y.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ffacc: error:") and "NHWC" in err and "Traceback" not in err
    assert not (tmp_path / "y.npz").exists()
    x = RNG.normal(0, 1, (1, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(img), "--input", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npz")]) == 0
    with np.load(tmp_path / "y.npz") as y:
        assert y.files == ["logits"]
        assert np.array_equal(y["logits"], ffacc.load(img).run(x)["logits"])


def _two_outputs(path):
    b = Builder((1, 2, 8, 8), seed=11, name="two")
    a = b.relu(b.conv("x", 3, 3))
    c = b.relu(b.conv(a, 4, 1))
    m = b.model(c)
    m.graph.output.insert(0, helper.make_tensor_value_info(a, TensorProto.FLOAT, [1, 3, 8, 8]))
    from ffacc.compiler.zoo import quantize_model
    return quantize_model(m, path)


def test_every_output_is_saved(tmp_path, capsys):
    q = _two_outputs(tmp_path / "two.onnx")
    img = tmp_path / "two.ffw"
    assert main(["compile", str(q), "-o", str(img), "--config", "tiny"]) == 0
    np.save(tmp_path / "x.npy", RNG.uniform(0, 1, (1, 2, 8, 8)).astype(np.float32))
    assert main(["run", str(img), "--input", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npy")]) == 2
    assert "has 2 outputs" in capsys.readouterr().err
    assert main(["run", str(img), "--input", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "y.npz")]) == 0
    x = np.load(tmp_path / "x.npy")
    ref = _ort_named(q, x)
    with np.load(tmp_path / "y.npz") as y:
        assert sorted(y.files) == sorted(ref) and len(ref) == 2
        for k in ref:
            assert y[k].shape == ref[k].shape and y[k].dtype == np.float32


def _ort_named(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()],
                    sess.run(None, {sess.get_inputs()[0].name: x})))


def test_board_fit_is_checked_before_anything_is_written(tmp_path, capsys):
    b = Builder((1, 8, 96, 96), seed=2, name="big")
    q = tmp_path / "big.onnx"
    from ffacc.compiler.zoo import quantize_model
    quantize_model(b.model(b.relu(b.conv("x", 8, 3))), q, samples=2)
    out = tmp_path / "big.ffw"
    # (the Arty's SoC has 64 KiB of block RAM; the ULX3S's 32 MB of SDRAM holds it)
    assert main(["compile", str(q), "-o", str(out), "--board", "arty-a7-35"]) == 2
    err = capsys.readouterr().err
    assert "needs" in err and "arty-a7-35 SoC has 65,536" in err and "Traceback" not in err
    assert not out.exists()
    assert main(["compile", str(q), "-o", str(out), "--config", "ulx3s", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["memory_bytes"] > 65536
    assert {r["board"]: r["fits"] for r in info["boards"]} == {"ulx3s-85f": True,
                                                               "arty-a7-35": False}
    # run --board refuses it before opening a port
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 96, 96), np.float32))
    assert main(["run", str(out), "--board", "arty-a7-35", "--port", str(tmp_path / "none"),
                 "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npz")]) == 2
    assert "needs" in capsys.readouterr().err


def test_nothing_on_the_accelerator_is_an_error(tmp_path):
    b = Builder((1, 2, 8, 8), seed=1, name="add_only")
    from ffacc.compiler.zoo import quantize_model
    q = quantize_model(b.model(b.add("x", "x")), tmp_path / "a.onnx")
    assert compile_model(q, TINY)[1].layers[0]["where"] == "accel"
    with pytest.raises(CompileError, match="nothing in the model runs on the accelerator.*"
                                           "no ADD unit"):
        compile_model(q, TINY.with_(add_unit=False))


def _bn_model():
    b = Builder((1, 3, 16, 16), seed=5, name="bn")
    y = b.conv("x", 6, 3)
    rng = np.random.default_rng(3)
    for n, v in [("s", rng.uniform(0.5, 1.5, 6)), ("b", rng.normal(0, 0.1, 6)),
                 ("m", rng.normal(0, 0.1, 6)), ("v", rng.uniform(0.5, 1.5, 6))]:
        b._init(f"bn_{n}", v)
    b.nodes.append(helper.make_node("BatchNormalization", [y, "bn_s", "bn_b", "bn_m", "bn_v"],
                                    ["bn"], name="bn"))
    b.shape["bn"] = b.shape[y]
    return b.model(b.relu("bn"))


def test_ffacc_quantize_folds_batchnorm_and_places_everything(tmp_path, capsys):
    src = tmp_path / "bn.onnx"
    onnx.save(_bn_model(), src)
    np.save(tmp_path / "calib.npy", CALIB)
    out = tmp_path / "bn_int8.onnx"
    assert main(["quantize", str(src), "--calib", str(tmp_path / "calib.npy"), "-o",
                 str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["samples"] == len(CALIB) and info["per_channel"]
    ops = {n.op_type for n in onnx.load(out).graph.node}
    assert "BatchNormalization" not in ops
    g, c, _ = compile_model(out, TINY)
    assert [li["where"] for li in c.layers] == ["accel"]
    assert verify_model(out, TINY)["ok"]


def test_a_batchnorm_the_quantizer_left_in_float_runs_on_the_accelerator(tmp_path):
    """quantize_static without pre-processing leaves the BatchNormalization in float after the
    quantized conv: it becomes a per-channel affine map on the accelerator, inside the conv's
    POST (tests/test_channel_affine.py), within 1 LSB of onnxruntime."""
    path = tmp_path / "bn_ort.onnx"
    quantize_model(_bn_model(), path, samples=2)
    assert "BatchNormalization" in {n.op_type for n in onnx.load(path).graph.node}
    g, c, _ = compile_model(path, TINY)
    assert [li["op"] for li in c.layers] == ["Conv+Affine"]
    assert [li["where"] for li in c.layers] == ["accel"], c.layers
    r = verify_model(path, TINY)
    assert r["bit_exact"] and r["ok"], r


def test_ffacc_quantize_refuses_bad_input(tmp_path, capsys, models):
    np.save(tmp_path / "nhwc.npy", CALIB.transpose(0, 2, 3, 1))
    assert main(["quantize", str(models["float"]), "--calib", str(tmp_path / "nhwc.npy"),
                 "-o", str(tmp_path / "q.onnx")]) == 2
    assert "NHWC" in capsys.readouterr().err
    assert not (tmp_path / "q.onnx").exists()
    np.save(tmp_path / "calib.npy", CALIB)
    assert main(["quantize", str(models["default"]), "--calib", str(tmp_path / "calib.npy"),
                 "-o", str(tmp_path / "q.onnx")]) == 2
    assert "already quantized" in capsys.readouterr().err


def test_python_api(models, tmp_path):
    m = ffacc.compile(onnx.load(models["qdq_uint8"]), config="tiny")
    assert m.inputs == {"input": ((1, 3, 16, 16), "float32")}
    assert m.outputs == {"logits": ((1, 10), "float32")}
    x = RNG.normal(0, 1, (1, 3, 16, 16)).astype(np.float32)
    y, st = m.run(x, stats=True)
    assert st["cycles"] > 0 and set(y) == {"logits"}
    v = m.verify(x)
    assert v["ok"] and v["bit_exact"]
    rep = m.report()
    assert rep["totals"]["cycles"] == st["cycles"]
    assert rep["totals"]["microseconds"] == pytest.approx(st["cycles"] / TINY.target_mhz,
                                                          abs=1e-3)
    assert [r["name"] for r in rep["layers"]] == ["/c1/Conv", "/c2/Conv", "/fc/Gemm"]
    assert m.memory_bytes == m.image.mem_size > 0
    p = m.save(tmp_path / "m.ffw")
    m2 = ffacc.load(p)
    assert np.array_equal(m2.run(x)["logits"], y["logits"])
    with pytest.raises(ValueError, match="verify needs the ONNX model"):
        m2.verify()
    with pytest.raises(ValueError, match="not a preset"):
        ffacc.compile(models["qdq_uint8"], config="huge")
    acc = ffacc.Accelerator("tiny")
    acc._MustUse__silence = True        # not elaborated here (test_integration_docs does)
    assert acc.config == TINY
    from ffacc.hw.accel import Accelerator
    assert isinstance(acc, Accelerator)
    assert "ffacc" in repr(m) and "3 of 3 operators" in repr(m)
