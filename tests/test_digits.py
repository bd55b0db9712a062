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


def _int8_weights():
    """The bundled model's int8 weight elements (its int8 initializers of rank 2 and up)."""
    import onnx
    from onnx import numpy_helper
    from ffacc.models import path
    m = onnx.load(str(path("digits/digits_int8.onnx")))
    return sum(a.size for a in map(numpy_helper.to_array, m.graph.initializer)
               if a.dtype.itemsize == 1 and a.ndim >= 2)


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
    # the DRAM traffic per image: the RTL's bus writes exactly the ISS's bytes, and reads them
    # in whole beats; every int8 weight is read at least once
    d = res["dram_per_image"]
    assert d["rtl_writes_equal_iss"] and d["rtl_reads_same_every_image"]
    assert d["rtl_bus_written_bytes"] == d["written_bytes"] == d["act_bytes_written"] > 0
    assert d["read_bytes"] <= d["rtl_bus_read_bytes"] < 2 * d["read_bytes"]
    assert d["weight_bytes_read"] >= _int8_weights(), d


@pytest.mark.slow
@pytest.mark.parametrize("config", [None, "ulx3s-120"])
def test_demo_fifty_images_on_ulx3s(tmp_path, capsys, config):
    """The demo as a user runs it (the default preset), and on the board-filling preset: 120
    multipliers in 20 engines of 5 lanes, RTL = ISS = golden on every image."""
    extra = ["--config", config] if config else []
    assert main(["demo", "--images", "50", "--out", str(tmp_path), "--json", *extra]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["bit_exact"] and res["images"] == 50
    assert res["config"]["lanes"] == ACCEL_PRESETS[config or "ulx3s"].lanes
    assert abs(res["iss_accuracy"] - res["onnxruntime_int8_accuracy"]) <= 0.01


def test_bench_profiles_the_rtl_per_layer_and_checks_the_cycle_model(tmp_path):
    from ffacc.bench import run_bench

    cfg = ACCEL_PRESETS["tiny"]
    res = run_bench(cfg, vgg_size=32, vgg_fc=(64, 64), out_dir=tmp_path, progress=lambda *a: 0,
                    kernels=dict(C=4, O=4, size=12, rtl=(3,)), stem_size=40)
    digits = [l for l in res["layers"] if l["model"] == "digits"]
    vgg = [l for l in res["layers"] if l["model"] != "digits"]
    assert [l["source"] for l in digits] == ["rtl"] * 3 and len(vgg) == 16
    assert all(l["source"] == "iss" for l in vgg)
    for l in res["layers"]:
        assert 0 < l["ideal_cycles"] < l["cycles"] and 0 < l["utilization"] < 1
        assert 0 < l["stall_cycles"] < l["cycles"]
    # the RTL profile accounts for every counted cycle; the calibrated model stays close
    tot = res["models"]["digits"]
    # (run_bench checks the profile sums to the RTL counters; outside the layers: END)
    assert 0 <= tot["rtl_counter_stall_cycles"] - tot["stall_cycles"] <= 2
    assert 0 < tot["cycles"] - sum(l["cycles"] for l in digits) < 30
    assert res["iss_vs_rtl"]["max_abs_layer_deviation"] < 0.05
    # bytes over the bus: the RTL writes exactly what the ISS counts (run_bench checks it);
    # it reads whole beats, so at least the commands' bytes and less than twice as many
    read = tot["code_bytes"] + tot["weight_bytes_read"] + tot["act_bytes_read"]
    assert tot["rtl_bus_written_bytes"] == tot["act_bytes_written"] > 0
    assert read <= tot["rtl_bus_read_bytes"] < 2 * read, (read, tot["rtl_bus_read_bytes"])
    assert sum(l["act_bytes_written"] for l in digits) == tot["act_bytes_written"]
    t = res["totals"]
    assert t["multipliers"] == cfg.multipliers
    assert t["ops_per_multiplier_cycle"] == round(2 * t["macs"] / (t["cycles"] * cfg.multipliers),
                                                  4)
    assert json.loads((tmp_path / "bench.json").read_text())["totals"] == t
    # the per-kernel table: every k on the ISS, k = 3 also on the RTL (within 5 %); the unit's
    # multiplications per output are at least the best FFA's, and no layer beats its bound
    ks = res["kernels"]["rows"]
    assert [r["k"] for r in ks] == list(range(1, cfg.max_kernel + 1))
    assert [r["source"] for r in ks].count("rtl") == 1 and ks[2]["source"] == "rtl"
    assert abs(ks[2]["iss_deviation"]) < 0.05
    for r in ks:
        assert r["unit"] >= r["best_ffa"] - 1e-9 and 0 < r["of_bound"] <= 1, r
        assert r["macs"] == 4 * 4 * 12 * 12 * r["k"] ** 2
    st = res["stem"]
    # split into its stride phases it runs at under twice the ideal 1/16 of its stride-1
    # twin, strided (no split) at 63 % of it on this 40x40 input
    assert 1 / 16 < st["cycles_vs_stride1"] < 1 / 8 < st["strided_vs_stride1"] < 1
    assert st["stride4"]["host_ops"] == ["PhaseSplit"] and st["strided"]["host_ops"] == []
    assert st["stride4"]["kernel_run"] == [3, 3] and st["strided"]["kernel_run"] == [11, 11]
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the depth-first plans of both models: a plan moves no more activation bytes than layer
    # by layer, and the chart is written
    for model, plans in res["fusion"].items():
        assert set(plans) == {"bytes", "activations"}, model
        for t in plans.values():
            assert 0 < t["act_read"] + t["act_written"] <= (t["act_read_layer_by_layer"]
                                                            + t["act_written_layer_by_layer"])
    assert (tmp_path / "fusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_cli_prints_the_table(tmp_path, capsys, monkeypatch):
    import ffacc.bench

    real = ffacc.bench.run_bench

    def small(cfg, **kw):       # the CLI on a real run with a narrow VGG head
        return real(cfg, vgg_fc=(64, 64), kernels=dict(C=2, O=2, size=9, rtl=()),
                    stem_size=None, **kw)
    monkeypatch.setattr(ffacc.bench, "run_bench", small)
    assert main(["bench", "--config", "tiny", "--out", str(tmp_path), "--no-chart"]) == 0
    out = capsys.readouterr().out
    assert "ops/mult/cycle" in out and "ISS cycle model vs RTL" in out and "conv1" in out
    assert "per kernel size: one k×k conv 2->2 on 9x9" in out
    assert "depth-first plans" in out and "act saved" in out
