"""1×1 convs over their maps read as other shapes: ``python benchmarks/pointwise_shapes.py``.

A 1×1 conv at stride 1 without padding computes each pixel alone, so the compiler may read its
H×W map as any other shape of the same pixels (``compiler/lower.py`` ``flat_shapes``). A row's
beats hold ``ceil(W / L)`` blocks of ``L`` outputs: on the 3-parallel unit a 7×7 map fills 7 of
every 9 columns, read as 1×49 49 of 51. For classic zoo CNNs (random weights, quantized by
onnxruntime's quantize_static, cached in ``build/``) compiled for a preset with every map kept
as it is (``flat_shapes`` finding no other shape: the compiler before it) and as the compiler
now plans them: the accelerator's cycles (the ISS cycle model, per layer), those of the 1×1
layers and the share of them whose maps are read as another shape, and the 1×1 layers'
fraction of their compute bound. Prints a table, then JSON.
"""

import json
from unittest import mock

from zoo_args import zoo_benchmark_args


def bound_fraction(path, cfg):
    """Cycles, and of the 1×1 layers: cycles, compute bound, how many read another shape."""
    from ffacc.compiler.driver import compile_model, layer_report

    _, c, _ = compile_model(path, cfg)
    rows, tot = layer_report(c.image)
    ones = [r for r in rows if list(r.get("kernel") or ()) == [1, 1]
            and r["where"] == "accel" and r["op"] in ("Conv", "Conv+Affine")]
    flat = {li["name"] for li in c.image.meta["layers"] if "flat" in li}
    cyc = sum(r["cycles"] for r in ones)
    bound = sum(r["compute_bound"] for r in ones)
    return {"cycles": tot["cycles"], "layers_1x1": len(ones), "cycles_1x1": cyc,
            "of_bound_1x1": round(bound / cyc, 4) if cyc else None,
            "reshaped": sum(r["name"] in flat for r in ones)}


def main(argv=None):
    args, cfg, models, say = zoo_benchmark_args(__doc__, argv)
    from ffacc.cli import _table
    from ffacc.compiler import lower

    rows = []
    for name, path in models:
        say(f"{name}: compiling for {args.config} with every map as it is, then as planned")
        with mock.patch.object(lower, "flat_shapes", lambda cfg, layer, most=3: []):
            before = bound_fraction(path, cfg)
        after = bound_fraction(path, cfg)
        rows.append({"model": name, "before": before, "after": after,
                     "speedup": round(before["cycles"] / after["cycles"], 3)})
    print(_table(["model", "1x1 convs", "reshaped", "1x1 cycles before", "after",
                  "of bound before", "after", "cycles before", "after", "speedup"],
                 [[r["model"], r["after"]["layers_1x1"], r["after"]["reshaped"],
                   f"{r['before']['cycles_1x1']:,}", f"{r['after']['cycles_1x1']:,}",
                   f"{r['before']['of_bound_1x1']:.1%}", f"{r['after']['of_bound_1x1']:.1%}",
                   f"{r['before']['cycles']:,}", f"{r['after']['cycles']:,}",
                   f"{r['speedup']:.3f}x"] for r in rows]))
    print(json.dumps({"config": args.config, "size": args.size, "rows": rows}))


if __name__ == "__main__":
    main()
