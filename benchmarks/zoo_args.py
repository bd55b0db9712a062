"""The command line the zoo benchmarks share: a preset, an input size, a list of classic zoo
models (cached in ``build/``, built on first use)."""

import argparse
import json
import logging
import sys
import warnings


def zoo_benchmark_args(doc, argv=None):
    """Parse ``--config --size --models`` for a benchmark whose docstring is ``doc``. Returns
    ``(args, the preset's AcceleratorConfig, [(model name, its int8 ONNX path)], say)``, where
    ``say`` prints progress to stderr; a bad preset or model name is a usage error."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--config", default="ulx3s")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--models", default="resnet50,inception_v2,shufflenet,squeezenet")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from ffacc.compiler.zoo import CLASSIC, classic_int8
    from ffacc.hw.config import ACCEL_PRESETS

    def say(msg):
        print(msg, file=sys.stderr, flush=True)

    if args.config not in ACCEL_PRESETS:
        ap.error(f"--config {args.config!r}: not a preset ({', '.join(ACCEL_PRESETS)})")
    names = args.models.split(",")
    for name in names:
        if name not in CLASSIC:
            ap.error(f"--models: {name!r} is not a classic zoo model ({', '.join(CLASSIC)})")
    models = [(name, classic_int8("build", name, args.size, progress=say)) for name in names]
    return args, ACCEL_PRESETS[args.config], models, say


def bus_bytes(totals):
    """The bytes a run moves over the bus per image, of :func:`layer_report`'s totals."""
    return sum(totals[k] for k in ("code_bytes", "weight_bytes_read", "act_bytes_read",
                                   "act_bytes_written"))


def compare(models, say, what, before, after):
    """Each model of ``models`` measured as it was (``before(path)``) and with a feature
    (``after(path)``), ``what`` naming the two for the progress line: rows of ``model``,
    ``before``, ``after`` (dicts with ``cycles``) and ``speedup``."""
    rows = []
    for name, path in models:
        say(f"{name}: compiling {what}")
        b, a = before(path), after(path)
        rows.append({"model": name, "before": b, "after": a,
                     "speedup": round(b["cycles"] / a["cycles"], 3)})
    return rows


def print_comparison(args, rows, head, cells):
    """The table of :func:`compare`'s ``rows``: the model, ``head``'s columns with each
    row's ``cells(row)``, then the cycles, the speedup and the bus bytes before and after;
    then the JSON of it all."""
    from ffacc.cli import _table

    print(_table(["model", *head, "cycles before", "after", "speedup", "bus bytes before",
                  "after"],
                 [[r["model"], *cells(r), f"{r['before']['cycles']:,}",
                   f"{r['after']['cycles']:,}", f"{r['speedup']:.3f}x",
                   f"{r['before']['bus_bytes']:,}", f"{r['after']['bus_bytes']:,}"]
                  for r in rows]))
    print(json.dumps({"config": args.config, "size": args.size, "rows": rows}))
