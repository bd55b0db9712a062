"""Per-channel affine maps inside their conv's POST: ``python benchmarks/fused_affine.py``.

Caffe2's converted zoo models keep each BatchNormalization as a ``Mul`` and an ``Add`` by
per-channel constants, which onnxruntime's ``quantize_static`` (without pre-processing)
quantizes on their own: per-channel affine maps (``ChannelAffine``). Run as ``ADD``s they read
and write the whole map again at an element a clock; with ``post_affine`` a map that follows a
conv runs inside that conv's ``POST`` (flag ``AFFINE``, a second record a channel:
``compiler/compile.py`` ``_fuse_affines``), and two maps in turn that no conv runs are one
``ADD`` pass (its flag ``AFFINE``: ``_pair_affines``). For classic zoo CNNs (random weights,
cached in ``build/``) compiled for a preset with ``post_affine`` off and on: the
accelerator's cycles (the ISS cycle model), the ``ADD`` passes of affine maps (and how many
of them apply two) with their cycles, the convs that apply one, and the bytes the run moves
over the bus per image. Prints a table, then JSON.
"""

import json

from zoo_args import zoo_benchmark_args


def measure(path, cfg):
    """Cycles, affine maps as ADDs and fused, and bus bytes per image of a compile."""
    from ffacc.compiler.driver import compile_model, layer_report

    _, c, _ = compile_model(path, cfg)
    rows, tot = layer_report(c.image)
    moved = sum(tot[k] for k in ("code_bytes", "weight_bytes_read", "act_bytes_read",
                                 "act_bytes_written"))
    passes = [r for r in rows if r["op"].startswith("ChannelAffine") and r["where"] == "accel"]
    return {"cycles": tot["cycles"],
            "affine_adds": len(passes),
            "paired": sum(r["op"] == "ChannelAffine+Affine" for r in passes),
            "affine_cycles": sum(r["cycles"] for r in passes),
            "fused": sum("+Affine" in r["op"] and not r["op"].startswith("ChannelAffine")
                         for r in rows),
            "bus_bytes": moved}


def main(argv=None):
    args, cfg, models, say = zoo_benchmark_args(__doc__, argv)
    from ffacc.cli import _table

    rows = []
    for name, path in models:
        say(f"{name}: compiling for {args.config} with post_affine off, then on")
        before = measure(path, cfg.with_(post_affine=False))
        after = measure(path, cfg)
        rows.append({"model": name, "before": before, "after": after,
                     "speedup": round(before["cycles"] / after["cycles"], 3)})
    print(_table(["model", "ADD passes before", "after", "of two maps", "their cycles before",
                  "after", "fused convs", "cycles before", "after", "speedup",
                  "bus bytes before", "after"],
                 [[r["model"], r["before"]["affine_adds"], r["after"]["affine_adds"],
                   r["after"]["paired"], f"{r['before']['affine_cycles']:,}",
                   f"{r['after']['affine_cycles']:,}", r["after"]["fused"],
                   f"{r['before']['cycles']:,}", f"{r['after']['cycles']:,}",
                   f"{r['speedup']:.3f}x", f"{r['before']['bus_bytes']:,}",
                   f"{r['after']['bus_bytes']:,}"] for r in rows]))
    print(json.dumps({"config": args.config, "size": args.size, "rows": rows}))


if __name__ == "__main__":
    main()
