"""The bundled digits CNN: committed models, accuracy and the demo path."""

import json

import numpy as np
import pytest

from ffacc.cli import main
from ffacc.compiler.driver import compile_model
from ffacc.compiler.ir import quantize
from ffacc.demo import load_split
from ffacc.hw.config import ACCEL_PRESETS
from ffacc.models import path
from ffacc.sim.runner import run_image


def test_bundled_model_runs_wholly_on_the_accelerator_with_onnxruntime_accuracy():
    cfg = ACCEL_PRESETS["ulx3s"]
    g, c, _ = compile_model(path("digits/digits_int8.onnx"), cfg)
    assert c.host_ops == [] and [l["op"] for l in c.layers] == [
        "Conv+MaxPool", "Conv+MaxPool", "Gemm"]
    _, xte, _, yte = load_split()
    qin, qout = g.inputs[0], g.outputs[0]
    pred = [run_image(c.image, {qin: quantize(x[None], g.tensors[qin])})[0][qout].argmax()
            for x in xte[:120]]
    assert np.mean(np.array(pred) == yte[:120]) > 0.93


def test_demo_on_a_few_images(tmp_path, capsys):
    assert main(["demo", "--config", "tiny", "--images", "4", "--out", str(tmp_path),
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    for key in ("accuracy", "iss_accuracy", "onnxruntime_int8_accuracy", "float_accuracy",
                "bit_exact", "images", "cycles_per_image"):
        assert key in res
    assert res["bit_exact"] and res["images"] == 4
    assert abs(res["iss_accuracy"] - res["onnxruntime_int8_accuracy"]) <= 0.01
    assert (tmp_path / "digits.ffw").is_file() and (tmp_path / "ffacc_accel.v").is_file()


@pytest.mark.slow
def test_demo_fifty_images_on_ulx3s(tmp_path, capsys):
    assert main(["demo", "--images", "50", "--out", str(tmp_path), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["bit_exact"] and res["images"] == 50
    assert abs(res["iss_accuracy"] - res["onnxruntime_int8_accuracy"]) <= 0.01
