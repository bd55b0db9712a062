"""Speed of the tools on real networks: ``python benchmarks/tool_speed.py``.

For VGG-16 and ResNet-50 at 224x224 (random weights, quantized once by onnxruntime's
quantize_static and cached in ``build/``): the wall time of ``ffacc compile`` (import +
compile, per configuration), of one functional ISS run of the compiled image (every
instruction executed, host segments on onnxruntime), and of onnxruntime's own int8 CPU run of
the same quantized model (default optimizations, median of 5). Prints a table and JSON.
"""

import argparse
import json
import logging
import statistics
import sys
import time
import warnings


def _ort_seconds(path, runs=5):
    import numpy as np
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    i = sess.get_inputs()[0]
    x = np.random.default_rng(0).uniform(0, 1, [d if isinstance(d, int) else 1
                                                for d in i.shape]).astype(np.float32)
    sess.run(None, {i.name: x})                 # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {i.name: x})
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="ulx3s,large")
    ap.add_argument("--models", default="vgg16,resnet50")
    ap.add_argument("--no-iss", action="store_true", help="skip the functional ISS runs")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import numpy as np
    from ffacc.compiler.driver import compile_model
    from ffacc.compiler.zoo import classic_int8, vgg16_int8
    from ffacc.hw.config import ACCEL_PRESETS
    from ffacc.sim.runner import run_image
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    paths = {"vgg16": lambda: vgg16_int8("build", 224, progress=say),
             "resnet50": lambda: classic_int8("build", "resnet50", 224, progress=say)}
    rows = []
    for name in args.models.split(","):
        path = paths[name]()
        ort_s = _ort_seconds(path)
        for cfg in args.configs.split(","):
            say(f"{name}: compiling for {cfg}")
            g, c, secs = compile_model(path, ACCEL_PRESETS[cfg])
            row = {"model": name, "config": cfg, "compile_s": round(secs, 2),
                   "instructions": sum(li.get("pc_count", 0) for li in c.layers),
                   "iss_s": None, "iss_cycles": None, "onnxruntime_s": round(ort_s, 4)}
            if not args.no_iss and cfg == args.configs.split(",")[-1]:
                say(f"{name}: one functional ISS run ({cfg})")
                t = g.tensors[g.inputs[0]]
                x = np.full(t.shape, t.zero_point, dtype=t.np_dtype)
                t0 = time.perf_counter()
                _, st = run_image(c.image, {t.name: x})
                row["iss_s"] = round(time.perf_counter() - t0, 1)
                row["iss_cycles"] = st["cycles"]
            rows.append(row)
    heads = ["model", "config", "compile_s", "instructions", "iss_s", "iss_cycles",
             "onnxruntime_s"]
    cols = [[h] + [str(r[h]) for r in rows] for h in heads]
    w = [max(map(len, c)) for c in cols]
    for i in range(len(rows) + 1):
        print("  ".join(c[i].rjust(wi) for c, wi in zip(cols, w)))
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
