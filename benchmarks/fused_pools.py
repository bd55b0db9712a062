"""Max-pools inside their convs' POST: ``python benchmarks/fused_pools.py``.

A max-pool that no conv runs in its ``POST`` is a pass of its own: an identity conv of its
map whose ``POST`` pools each output's ``k x k`` values, a clock each, and which reads and
writes the map again. Two patterns of the classic zoo CNNs left pools so:

* a padded pool after a conv (ResNet's and ShuffleNet's 3x3/2 after their first conv):
  ``pool_pads`` lets ``POST``'s windows reach past the band into padding that holds no
  value (``O_POOLPAD``);
* a pool after a Concat of conv outputs (SqueezeNet's fire modules): the compiler moves it
  before the Concat, a pool on each input (``move_pools``), where each conv's ``POST`` runs it.

For classic zoo CNNs (random weights, cached in ``build/``) compiled for a preset without
both (``pool_pads`` off, ``move_pools=False``) and with them: the accelerator's cycles (the
ISS cycle model), the pool passes left and their cycles, the convs that pool, and the bytes
the run moves over the bus per image. Prints a table, then JSON.
"""

from zoo_args import bus_bytes, compare, print_comparison, zoo_benchmark_args


def measure(path, cfg, move_pools):
    """Cycles, pool passes, pooling convs and bus bytes per image of a compile."""
    from ffacc.compiler.driver import compile_model, layer_report

    _, c, _ = compile_model(path, cfg, move_pools=move_pools)
    rows, tot = layer_report(c.image)
    passes = [r for r in rows if r["op"] == "MaxPool" and r["where"] == "accel"]
    return {"cycles": tot["cycles"], "pool_passes": len(passes),
            "pool_cycles": sum(r["cycles"] for r in passes),
            "fused": sum(r["op"].endswith("+MaxPool") for r in rows), "bus_bytes": bus_bytes(tot)}


def main(argv=None):
    args, cfg, models, say = zoo_benchmark_args(__doc__, argv)
    if not cfg.pool_pads:
        raise SystemExit(f"--config {args.config}: pool_pads is off in this preset")
    rows = compare(models, say, f"for {args.config} without padded pools and moved pools, "
                   f"then with", lambda p: measure(p, cfg.with_(pool_pads=False), False),
                   lambda p: measure(p, cfg, True))
    print_comparison(args, rows, ["pool passes before", "after", "their cycles before",
                                  "after", "pooling convs before", "after"],
                     lambda r: [r["before"]["pool_passes"], r["after"]["pool_passes"],
                                f"{r['before']['pool_cycles']:,}",
                                f"{r['after']['pool_cycles']:,}", r["before"]["fused"],
                                r["after"]["fused"]])


if __name__ == "__main__":
    main()
