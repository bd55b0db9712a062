"""Accuracy of the bundled digits CNN at 8, 4, 3 and 2 bits, as QONNX, on the accelerator.

Usage: python benchmarks/lowbit_digits.py [--bits 8,4,3,2] [--calib 200] [--iss 20] [--json]

The float model (``models/digits``) is quantized after training by
:func:`ffacc.compiler.qonnx.uniform_qonnx` (uniform; weights signed, narrow, per output
channel; activations after each ReLU unsigned; 8-bit input and logits; scales of least squared
error on ``--calib`` training images) and written as QONNX, the form Brevitas exports. Each
model is compiled for ``ulx3s``; its accuracy on the 360 held-out digits is the integer
golden model's, which the first ``--iss`` images check bit for bit against the ISS, and
onnxruntime's on the rewritten QDQ model is given beside it. The bytes are the image's: its
activation arena and its weights and parameters. Activations and weights are stored a byte
each at every width (neither is packed yet), so they do not shrink below 8 bits.
"""

import argparse
import json
import sys
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", default="8,4,3,2")
    ap.add_argument("--calib", type=int, default=200)
    ap.add_argument("--iss", type=int, default=20, help="images also run on the ISS")
    ap.add_argument("--json", action="store_true", help="only the JSON")
    args = ap.parse_args(argv)
    import onnx
    import onnxruntime as ort

    from ffacc.compiler.driver import compile_model, memory_use
    from ffacc.compiler.ir import quantize, reference_run
    from ffacc.compiler.qonnx import from_qonnx, uniform_qonnx
    from ffacc.demo import _ort_accuracy, load_split
    from ffacc.hw.config import ACCEL_PRESETS
    from ffacc.models import path
    from ffacc.sim.runner import run_image

    say = (lambda *a: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    xtr, xte, _, yte = load_split()
    float_model = onnx.load(path("digits/digits_float.onnx"))
    rows = [{"model": "float", "bits": 32,
             "accuracy": _ort_accuracy(path("digits/digits_float.onnx"), xte, yte)},
            {"model": "int8 (bundled, quantize_static)", "bits": 8,
             "accuracy": _ort_accuracy(path("digits/digits_int8.onnx"), xte, yte)}]
    cfg = ACCEL_PRESETS["ulx3s"]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    for b in [int(v) for v in args.bits.split(",")]:
        t0 = time.time()
        say(f"{b}-bit: quantizing on {args.calib} training images, compiling, running "
            f"{len(yte)} images ...")
        q = uniform_qonnx(float_model, xtr[:args.calib], bits=b)
        g, c, _ = compile_model(q, cfg)
        qin, out = g.inputs[0], g.outputs[0]
        golden, exact = [], True
        for i in range(len(yte)):
            xq = quantize(xte[i:i + 1], g.tensors[qin])
            y = reference_run(g, {qin: xq})[out]
            golden.append(int(np.argmax(y)))
            if i < args.iss:
                got, _ = run_image(c.image, {qin: xq}, engine="iss")
                exact &= bool(np.array_equal(got[out], y))
        sess = ort.InferenceSession(from_qonnx(q)[0].SerializeToString(), so,
                                    providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        ort_acc = float(np.mean([sess.run(None, {name: xi[None]})[0].argmax() == yi
                                 for xi, yi in zip(xte, yte)]))
        mem = memory_use(c.image)
        rows.append({"model": f"uniform {b}-bit QONNX", "bits": b,
                     "accuracy": float(np.mean(np.array(golden) == yte)),
                     "onnxruntime_accuracy": ort_acc, "iss_bit_exact_images": args.iss,
                     "iss_bit_exact": exact, "host_ops": len(c.host_ops),
                     "activation_bytes_stored": mem["activations"],
                     "weight_bytes_stored": mem["weights"],
                     "seconds": round(time.time() - t0, 1)})
    res = {"dataset": f"scikit-learn digits, {len(yte)} held-out images", "config": "ulx3s",
           "calibration_images": args.calib, "rows": rows,
           "note": "activations and weights are stored a byte each at every width"}
    if args.json:
        print(json.dumps(res))
        return 0 if all(r.get("iss_bit_exact", True) for r in rows) else 1
    print(f"{'model':34} {'accuracy':>8} {'onnxruntime':>11} {'ISS ≡ golden':>13} "
          f"{'act B':>6} {'weights B':>9}")
    for r in rows:
        ex = "-" if "iss_bit_exact" not in r else \
            f"{'yes' if r['iss_bit_exact'] else 'NO'} ({r['iss_bit_exact_images']})"
        ortc = f"{r['onnxruntime_accuracy']:.2%}" if "onnxruntime_accuracy" in r else "-"
        print(f"{r['model']:34} {r['accuracy']:>8.2%} {ortc:>11} {ex:>13} "
              f"{r.get('activation_bytes_stored', '-'):>6} {r.get('weight_bytes_stored', '-'):>9}")
    print(res["note"])
    print(json.dumps(res))
    return 0 if all(r.get("iss_bit_exact", True) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
