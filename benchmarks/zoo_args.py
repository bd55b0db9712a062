"""The command line the zoo benchmarks share: a preset, an input size, a list of classic zoo
models (cached in ``build/``, built on first use)."""

import argparse
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
