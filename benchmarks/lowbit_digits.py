"""Accuracy, activation and weight bytes of the bundled digits CNNs quantized every way ffacc
runs: float, int8, uniform 8/6/5/4/3/2-bit (QONNX) and non-uniform equal-distance and K-means
levels at 6/5/4/3/2 bits.

Usage: python benchmarks/lowbit_digits.py [--models digits,digits_wide] [--bits 8,6,5,4,3,2]
                                          [--codes 6,5,4,3,2] [--calib 200] [--iss 20] [--json]

* **models** (``--models``): ``digits`` (``models/digits``: two convs and an FC layer, 2.2k
  weights) and ``digits_wide`` (``models/digits_wide``: three convs and two FC layers, 24k
  weights), both trained on the same split.
* **uniform** (``--bits``): the float model quantized after training by
  :func:`ffacc.compiler.qonnx.uniform_qonnx` (weights signed, narrow, per output channel;
  activations after each ReLU unsigned; 8-bit input and logits; scales of least squared error
  on ``--calib`` training images) and written as QONNX, the form Brevitas exports. A layer
  whose weights fit 4 bits is stored two a byte (``LOADW``'s ``PACK4``), and a 2- to 4-bit
  activation map that only convolutions read as 4-bit codes (its values as levels).
* **equal-distance / K-means** (``--codes``): the bundled int8 model with per-layer levels
  (:mod:`ffacc.compiler.codes`, calibrated on the same ``--calib`` images) on every conv and
  Gemm output but the logits; maps of at most 16 levels that only convolutions read are
  stored as 4-bit codes, two a byte; 5- and 6-bit codebooks (up to 64 levels) a level a byte.

Each model is compiled for ``tiny`` (``ulx3s`` has no ``act_codes``). Its accuracy on the
360 held-out digits is the integer golden model's, which the first ``--iss`` images check bit
for bit against the ISS; onnxruntime's accuracy on the QDQ models is given beside it.
``act B written`` is what the accelerator writes per image (its POSTs: every activation map
but the input), measured on the ISS, and its share of the int8 model's; ``weight B`` the
weights and quantization records stored in the image.
"""

import argparse
import json
import sys
import time

import numpy as np


def _run(g, c, xte, yte, iss_images):
    """Golden accuracy, ISS ≡ golden on the first images, activation bytes written per
    image (ISS)."""
    from ffacc.compiler.driver import traffic_per_pc, traffic_sum
    from ffacc.compiler.ir import quantize, reference_run
    from ffacc.sim.runner import run_image
    qin, out = g.inputs[0], g.outputs[0]
    golden, exact, written = [], True, None
    for i in range(len(yte)):
        xq = quantize(xte[i:i + 1], g.tensors[qin])
        y = reference_run(g, {qin: xq})[out]
        golden.append(int(np.argmax(y)))
        if i < max(1, iss_images):
            got, st = run_image(c.image, {qin: xq}, engine="iss")
            exact &= bool(np.array_equal(got[out], y))
            written = traffic_sum(traffic_per_pc(st["segments"]).values())["act_bytes_written"]
    return float(np.mean(np.array(golden) == yte)), exact, written


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits,digits_wide",
                    help="bundled models (models/NAME: NAME_float.onnx, NAME_int8.onnx)")
    ap.add_argument("--bits", default="8,6,5,4,3,2", help="uniform QONNX widths")
    ap.add_argument("--codes", default="6,5,4,3,2", help="bits of the non-uniform codebooks")
    ap.add_argument("--calib", type=int, default=200)
    ap.add_argument("--iss", type=int, default=20, help="images also run on the ISS")
    ap.add_argument("--json", action="store_true", help="only the JSON")
    args = ap.parse_args(argv)
    import onnxruntime as ort

    from ffacc.demo import load_split
    from ffacc.hw.config import ACCEL_PRESETS
    from ffacc.models import path

    say = (lambda *a: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    xtr, xte, _, yte = load_split()
    cfg = ACCEL_PRESETS["tiny"]         # act_codes (the ulx3s preset leaves it off)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    rows = []
    for name in [m for m in args.models.split(",") if m]:
        float_path = path(f"{name}/{name}_float.onnx")
        if not float_path.is_file():
            ap.error(f"--models: no bundled model {name!r} (models/{name}/{name}_float.onnx)")
        rows += _model_rows(args, name, float_path, path(f"{name}/{name}_int8.onnx"), cfg,
                            xtr, xte, yte, so, say)
    res = {"dataset": f"scikit-learn digits, {len(yte)} held-out images", "config": "tiny",
           "calibration_images": args.calib, "rows": rows,
           "note": "a layer whose weights all fit 4 bits is stored two a byte (PACK4), "
                   "others a byte each; a non-uniform map of at most 16 levels is stored as 4-bit "
                   "codes where only convolutions read it (so is a uniform map of at most 16 "
                   "values), else a level a byte; the model's input and logits "
                   "stay int8"}
    if args.json:
        print(json.dumps(res))
        return 0 if all(r.get("iss_bit_exact", True) for r in rows) else 1
    print(f"{'model':14} {'quantization':42} {'accuracy':>8} {'onnxruntime':>11} "
          f"{'ISS ≡ golden':>13} {'act B written':>13} {'vs int8':>7} {'weight B':>8}")
    for r in rows:
        ex = "-" if "iss_bit_exact" not in r else \
            f"{'yes' if r['iss_bit_exact'] else 'NO'} ({r['iss_bit_exact_images']})"
        ortc = f"{r['onnxruntime_accuracy']:.2%}" if "onnxruntime_accuracy" in r else "-"
        vs = f"{r['act_written_vs_int8']:.0%}" if "act_written_vs_int8" in r else "-"
        print(f"{r['model']:14} {r['quantization']:42} {r['accuracy']:>8.2%} {ortc:>11} "
              f"{ex:>13} {r.get('act_bytes_written', '-'):>13} {vs:>7} "
              f"{r.get('weight_bytes_stored', '-'):>8}")
    print(res["note"])
    print(json.dumps(res))
    return 0 if all(r.get("iss_bit_exact", True) for r in rows) else 1


def _model_rows(args, model_name, float_path, int8, cfg, xtr, xte, yte, so, say):
    """The table's rows of one bundled model."""
    import onnx
    import onnxruntime as ort

    from ffacc.compiler.driver import compile_model, memory_use
    from ffacc.compiler.qonnx import from_qonnx, uniform_qonnx
    from ffacc.demo import _ort_accuracy
    float_model = onnx.load(float_path)

    def row(label, kind, bits, g, c, t0, **extra):
        acc, exact, written = _run(g, c, xte, yte, args.iss)
        mem = memory_use(c.image)
        return {"model": model_name, "quantization": label, "method": kind, "bits": bits,
                "accuracy": acc,
                "iss_bit_exact_images": max(1, args.iss), "iss_bit_exact": exact,
                "act_bytes_written": written, "activation_bytes_stored": mem["activations"],
                "weight_bytes_stored": mem["weights"], "seconds": round(time.time() - t0, 1),
                **extra}

    rows = [{"model": model_name, "quantization": "float", "method": "float", "bits": 32,
             "accuracy": _ort_accuracy(float_path, xte, yte)}]
    say(f"{model_name}: int8 (bundled): compiling, running ...")
    t0 = time.time()
    g, c, _ = compile_model(int8, cfg)
    rows.append(row("int8 (bundled, quantize_static)", "int8", 8, g, c, t0,
                    onnxruntime_accuracy=_ort_accuracy(int8, xte, yte)))
    for b in [int(v) for v in args.bits.split(",") if v]:
        t0 = time.time()
        say(f"{model_name}: uniform {b}-bit: quantizing on {args.calib} training images, "
            f"compiling, running {len(yte)} images ...")
        q = uniform_qonnx(float_model, xtr[:args.calib], bits=b)
        g, c, _ = compile_model(q, cfg)
        sess = ort.InferenceSession(from_qonnx(q)[0].SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        ort_acc = float(np.mean([sess.run(None, {name: xi[None]})[0].argmax() == yi
                                 for xi, yi in zip(xte, yte)]))
        rows.append(row(f"uniform {b}-bit QONNX", "uniform", b, g, c, t0,
                        onnxruntime_accuracy=ort_acc, host_ops=len(c.host_ops)))
    for b in [int(v) for v in args.codes.split(",") if v]:
        for method, label in (("ed", "equal-distance"), ("kmeans", "K-means")):
            t0 = time.time()
            say(f"{model_name}: {label} {b}-bit: levels on {args.calib} training images, "
                f"compiling, running {len(yte)} images ...")
            g, c, _ = compile_model(int8, cfg, act_codes=(method, b), calib=xtr[:args.calib])
            coded = {n: len(t.levels) for n, t in g.tensors.items() if t.levels is not None}
            rows.append(row(f"{label} {b}-bit (int8 model + levels)", method, b, g, c, t0,
                            levels=coded,
                            maps_stored_as_codes=sorted(n for n, t in g.tensors.items()
                                                        if t.codes)))
    base = rows[1]["act_bytes_written"]
    for r in rows[1:]:
        r["act_written_vs_int8"] = round(r["act_bytes_written"] / base, 4)
    return rows


if __name__ == "__main__":
    sys.exit(main())
