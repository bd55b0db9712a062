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

from zoo_args import bus_bytes, compare, print_comparison, zoo_benchmark_args


def measure(path, cfg):
    """Cycles, affine maps as ADDs and fused, and bus bytes per image of a compile."""
    from ffacc.compiler.driver import compile_model, layer_report

    _, c, _ = compile_model(path, cfg)
    rows, tot = layer_report(c.image)
    passes = [r for r in rows if r["op"].startswith("ChannelAffine") and r["where"] == "accel"]
    return {"cycles": tot["cycles"],
            "affine_adds": len(passes),
            "paired": sum(r["op"] == "ChannelAffine+Affine" for r in passes),
            "affine_cycles": sum(r["cycles"] for r in passes),
            "fused": sum("+Affine" in r["op"] and not r["op"].startswith("ChannelAffine")
                         for r in rows),
            "bus_bytes": bus_bytes(tot)}


def main(argv=None):
    args, cfg, models, say = zoo_benchmark_args(__doc__, argv)
    rows = compare(models, say, f"for {args.config} with post_affine off, then on",
                   lambda p: measure(p, cfg.with_(post_affine=False)),
                   lambda p: measure(p, cfg))
    print_comparison(args, rows, ["ADD passes before", "after", "of two maps",
                                  "their cycles before", "after", "fused convs"],
                     lambda r: [r["before"]["affine_adds"], r["after"]["affine_adds"],
                                r["after"]["paired"], f"{r['before']['affine_cycles']:,}",
                                f"{r['after']['affine_cycles']:,}", r["after"]["fused"]])


if __name__ == "__main__":
    main()
