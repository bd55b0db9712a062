"""Compile a VGG-16-shaped int8 model (random weights, 224x224) and report it per preset.

Usage: python benchmarks/vgg16.py [--size 224] [--configs ulx3s,large] [--json]
The float model is built with onnx.helper, quantized by onnxruntime quantize_static (QDQ,
per-channel, random calibration images) and cached in build/vgg16_<size>.onnx.
"""

import argparse
import json
import sys
import time


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--configs", default="ulx3s,large")
    ap.add_argument("--calib", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from ffacc.compiler.driver import compile_model, layer_report
    from ffacc.compiler.zoo import vgg16_int8
    from ffacc.hw.config import ACCEL_PRESETS

    built = []
    t = time.time()
    path = vgg16_int8("build", args.size, samples=args.calib,
                      progress=lambda msg: (built.append(msg), print(msg, file=sys.stderr)))
    out = {"model": str(path), "size": args.size}
    if built:
        out["quantize_seconds"] = round(time.time() - t, 1)
    out["configs"] = {}
    for name in args.configs.split(","):
        cfg = ACCEL_PRESETS[name]
        print(f"compiling for {name} ...", file=sys.stderr)
        g, c, secs = compile_model(path, cfg)
        raw = c.image.to_bytes()
        t = time.time()
        rows, tot = layer_report(c.image)
        out["configs"][name] = {"compile_seconds": round(secs, 1), "image_bytes": len(raw),
                                "report_seconds": round(time.time() - t, 1), "totals": tot,
                                "host_ops": c.host_ops, "layers": rows}
    if args.json:
        print(json.dumps(out))
    else:
        for name, r in out["configs"].items():
            t = r["totals"]
            print(f"{name}: compile {r['compile_seconds']} s, image {r['image_bytes'] / 1e6:.1f} MB,"
                  f" {t['macs'] / 1e9:.2f} GMAC, {t['cycles']} cycles (ideal {t['ideal_cycles']},"
                  f" utilization {t['utilization']:.1%}), {t['instructions']} instructions, "
                  f"host layers {t['host_layers']}")


if __name__ == "__main__":
    main()
