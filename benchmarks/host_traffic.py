"""What of a network stays on the host: ``python benchmarks/host_traffic.py``.

For classic zoo CNNs (random weights, quantized by onnxruntime's quantize_static without
pre-processing, as a user would, and cached in ``build/``) compiled for a configuration: the
operators and regions (runs of operators between accelerator code) left on the host, the
bytes those operators read and write per image (what a board's host link carries, at most),
the accelerator's cycles (the ISS cycle model) and the instruction count. Prints a table, then
JSON with every host region.
"""

import json

from zoo_args import zoo_benchmark_args


def main(argv=None):
    args, cfg, models, say = zoo_benchmark_args(__doc__, argv)
    from ffacc.cli import _table
    from ffacc.compiler.compile import host_regions
    from ffacc.compiler.driver import compile_model, layer_report
    rows = []
    for name, path in models:
        say(f"{name}: compiling for {args.config}")
        _, c, _ = compile_model(path, cfg)
        regions = host_regions(c.layers)
        _, tot = layer_report(c.image)
        rows.append({"model": name, "host_operators": len(c.host_ops),
                     "host_regions": len(regions["regions"]),
                     "host_bytes": regions["host_bytes"], "cycles": tot["cycles"],
                     "instructions": sum(li.get("pc_count", 0) for li in c.layers),
                     "regions": regions["regions"]})
    heads = ["model", "host_operators", "host_regions", "host_bytes", "cycles", "instructions"]
    print(_table(heads, [[r["model"]] + [f"{r[h]:,}" for h in heads[1:]] for r in rows]))
    print(json.dumps({"config": args.config, "size": args.size, "rows": rows}))


if __name__ == "__main__":
    main()
