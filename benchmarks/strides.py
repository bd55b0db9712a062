"""Strided convolutions: every k×k conv (k = 1…12) at strides 1, 2 and 4, as quantized ONNX
models through the compiler, verified and timed.

Each model is one conv (C→O channels on an H×W input, 'same'-style padding, ReLU), quantized by
onnxruntime's ``quantize_static``; compiled for ``--config``; run on the ISS (the cycle model)
and checked bit for bit against the integer golden model and within 1 LSB of onnxruntime. A
stride-s layer runs as compiled by default (its input comes from the host, so the compiler
splits it into its stride phases where the cycle model finds that cheaper,
compiler/polyphase.py) and, for comparison, kept strided (``polyphase=False``). ``--rtl K,…``
also runs those kernels at every stride on the RTL (Verilator), which must equal the ISS.

``--inner`` puts a 1×1 conv (C→C, ReLU) before each conv, so the strided conv's input is
written by the accelerator, as inside a network: the compiler then runs it over its input's
stride phases, which its LOADAs take from the map with a column step (``strided_loads``),
where the cycle model finds that cheaper, and the comparison ("strided") is the configuration
without ``strided_loads``. The cycles are then the strided conv layer's own (the ISS's
per-layer attribution, ``ffacc report``'s).

Per row: cycles, the layer's MACs, the array's work (computed MACs ÷ MACs) and the cycles as
a fraction of the stride-1 twin's (ideal 1/s²).

Usage: python benchmarks/strides.py [--config ulx3s] [--C 16 --O 16 --size 48]
       [--kernels 1-12] [--inner] [--rtl 3,11|all] [--json OUT.json]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from ffacc.compiler.driver import compile_model, layer_report, verify_compiled
from ffacc.compiler.zoo import Builder, quantize_model, single_conv
from ffacc.hw.config import ACCEL_PRESETS


def _kernels(text):
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def _run(path, compiled, engine):
    """Verify ``compiled`` (``compile_model``'s graph and image of ``path``) on ``engine``."""
    g, c, _ = compiled
    r = verify_compiled(path, g, c, engine=engine, seed=1)
    if not (r["bit_exact"] and r["max_lsb_vs_onnxruntime"] <= 1 and r["ok"]):
        raise AssertionError(f"{path.name} ({engine}) is not exact: {r}")
    return r


def inner_conv(k, stride, C, O, size, seed):
    """A 1×1 conv C→C (ReLU), then the k×k conv (ReLU) whose input it writes."""
    b = Builder((1, C, size, size), seed=seed, name=f"inner{k}")
    y = b.relu(b.conv("x", C, 1))
    return b.model(b.relu(b.conv(y, O, k, stride=stride)))


def _layer(compiled, inner):
    """The k×k conv's layer-table entry (the last accelerator layer)."""
    return [li for li in compiled[1].layers if li["where"] == "accel"][-1 if inner else 0]


def _cycles(compiled, r, inner):
    """The model's cycles, or (``inner``) the k×k conv layer's own."""
    if not inner:
        return r["cycles"]
    rows, _ = layer_report(compiled[1].image)
    return [row for row in rows if row["where"] == "accel"][-1]["cycles"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="ulx3s")
    ap.add_argument("--C", type=int, default=16)
    ap.add_argument("--O", type=int, default=16)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--kernels", type=_kernels, default=_kernels("1-12"))
    ap.add_argument("--rtl", type=lambda t: list(range(1, 13)) if t == "all" else
                    [int(k) for k in t.split(",") if k], default=[],
                    help="kernels also run on the RTL (comma-separated, or all)")
    ap.add_argument("--inner", action="store_true",
                    help="the conv's input comes from a 1x1 conv on the accelerator")
    ap.add_argument("--json", metavar="OUT.json")
    args = ap.parse_args(argv)
    cfg = ACCEL_PRESETS[args.config]
    inner = args.inner
    rows = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.kernels:
            twin = None
            for s in (1, 2, 4):
                print(f"[{time.time() - t0:5.0f} s] {k}x{k} stride {s}", file=sys.stderr)
                path = Path(tmp) / f"k{k}s{s}.onnx"
                model = (inner_conv(k, s, args.C, args.O, args.size, k) if inner else
                         single_conv(k, stride=s, C=args.C, O=args.O, H=args.size,
                                     W=args.size, seed=k))
                quantize_model(model, path, samples=2)
                split = compile_model(path, cfg)
                r = _run(path, split, "iss")
                conv = _layer(split, inner)
                row = {"k": k, "stride": s, "cycles": _cycles(split, r, inner),
                       "split": ([h["op"] for h in r["host_ops"]] == ["PhaseSplit"]
                                 or conv["op"] == "Conv+Phases")}
                ph = conv.get("polyphase") or conv.get("phase_loads") or {}
                row.update(macs=conv["macs"],
                           work=round(conv["computed_macs"] / conv["macs"], 3),
                           kernel_run=ph.get("split_kernel", [k, k]))
                if s > 1:
                    strided = (compile_model(path, cfg.with_(strided_loads=False)) if inner
                               else compile_model(path, cfg, polyphase=False))
                    row["strided_cycles"] = _cycles(strided, _run(path, strided, "iss"),
                                                    inner)
                if k in args.rtl:       # the whole model's cycles
                    rtl = _run(path, split, "rtl")
                    row["rtl_cycles"] = rtl["cycles"]
                    row["iss_vs_rtl"] = round((r["cycles"] - rtl["cycles"]) / rtl["cycles"], 4)
                if s == 1:
                    twin = row
                row["of_stride1"] = round(row["cycles"] / twin["cycles"], 4)
                if s > 1:
                    row["strided_of_stride1"] = round(row["strided_cycles"] / twin["cycles"], 4)
                row["ideal_of_stride1"] = round(1 / s ** 2, 4)
                rows.append(row)
    res = {"config": args.config, "layer": f"conv {args.C}->{args.O} on {args.size}x"
                                           f"{args.size}", "inner": inner, "rows": rows}
    hdr = ("k", "s", "kernel run", "work", "cycles", "of stride 1", "ideal", "strided",
           "strided of s1", "RTL", "ISS vs RTL")
    print(" ".join(f"{h:>13}" for h in hdr))
    for r in rows:
        cells = (r["k"], r["stride"], "x".join(map(str, r["kernel_run"])), r["work"],
                 f"{r['cycles']:,}", f"{100 * r['of_stride1']:.1f}%",
                 f"{100 * r['ideal_of_stride1']:.2f}%",
                 f"{r['strided_cycles']:,}" if "strided_cycles" in r else "-",
                 f"{100 * r['strided_of_stride1']:.1f}%" if "strided_of_stride1" in r else "-",
                 f"{r['rtl_cycles']:,}" if "rtl_cycles" in r else "-",
                 f"{100 * r['iss_vs_rtl']:+.2f}%" if "iss_vs_rtl" in r else "-")
        print(" ".join(f"{str(c):>13}" for c in cells))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
        print(f"JSON: {args.json}")
    return res


if __name__ == "__main__":
    main()
