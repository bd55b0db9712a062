"""MAC mode with and without ``mac_pairs``: ``python benchmarks/mac_pairs.py``.

In MAC mode (1×1 convolutions) a 3-parallel row engine uses 3 of its 6 multipliers; with
``fcu.mac_pairs`` the other 3 compute a second output channel from the same activations. For
classic zoo CNNs (random weights, quantized by onnxruntime's quantize_static, cached in
``build/``) compiled for a preset and for the same preset with ``mac_pairs = false`` (the
hardware before it): the accelerator's cycles (the ISS cycle model, per layer), those of the
1×1 layers, and the multipliers' utilization on them. Prints a table, then JSON.
"""

import json
from dataclasses import replace

from zoo_args import zoo_benchmark_args


def measure(path, cfg):
    """Total and 1×1-layer cycles and MACs of the model at ``path`` compiled for ``cfg``."""
    from ffacc.compiler.driver import compile_model, layer_report

    _, c, _ = compile_model(path, cfg)
    rows, tot = layer_report(c.image)
    ones = [r for r in rows if list(r.get("kernel") or ()) == [1, 1]]
    cyc1 = sum(r["cycles"] for r in ones)
    macs1 = sum(r["macs"] for r in ones)
    return {"cycles": tot["cycles"], "layers_1x1": len(ones), "cycles_1x1": cyc1,
            "macs_1x1": macs1,
            "util_1x1": round(macs1 / (cyc1 * cfg.multipliers), 4) if cyc1 else None}


def main(argv=None):
    args, cfg, models, say = zoo_benchmark_args(__doc__, argv)
    from ffacc.cli import _table
    if not cfg.fcu.mac_pairs:
        raise SystemExit(f"--config {args.config}: mac_pairs is off in this preset")
    single = cfg.with_(fcu=replace(cfg.fcu, mac_pairs=False))
    rows = []
    for name, path in models:
        say(f"{name}: compiling for {args.config} without and with mac_pairs")
        before, after = measure(path, single), measure(path, cfg)
        rows.append({"model": name, "without": before, "with": after,
                     "speedup": round(before["cycles"] / after["cycles"], 3),
                     "speedup_1x1": round(before["cycles_1x1"] / after["cycles_1x1"], 3)
                     if after["cycles_1x1"] else None})
    print(_table(["model", "1x1 layers", "1x1 cycles before", "after", "1x1 util before",
                  "after", "cycles before", "after", "speedup"],
                 [[r["model"], r["with"]["layers_1x1"], f"{r['without']['cycles_1x1']:,}",
                   f"{r['with']['cycles_1x1']:,}", f"{r['without']['util_1x1']:.1%}",
                   f"{r['with']['util_1x1']:.1%}", f"{r['without']['cycles']:,}",
                   f"{r['with']['cycles']:,}", f"{r['speedup']:.3f}x"] for r in rows]))
    print(json.dumps({"config": args.config, "size": args.size, "rows": rows}))


if __name__ == "__main__":
    main()
