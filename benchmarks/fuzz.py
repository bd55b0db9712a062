"""Differential fuzzing of the compiler: ``python benchmarks/fuzz.py --cases 2000``.

Random small CNNs (:mod:`ffacc.compiler.fuzz`) quantized by onnxruntime, compiled for a random
preset and run on the ISS; prints the tally of outcomes (ok, refused, mismatch, traceback) as a
table and as JSON, and every case that is not ok or a clear refusal with its seed, so
``--seed S --cases 1`` reruns it. Exit status 1 if any case mismatched or raised.
"""

import argparse
import collections
import json
import sys
import time
import warnings

from ffacc.compiler.fuzz import CONFIGS, FORMATS, check, random_model, rng_picker


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0, help="first case's seed")
    ap.add_argument("--json", action="store_true", help="only the JSON summary")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import logging
    logging.disable(logging.WARNING)          # onnxruntime's quantizer advises pre-processing
    import onnxruntime
    onnxruntime.set_default_logger_severity(3)
    tally, bad, t0 = collections.Counter(), [], time.time()
    for i in range(args.cases):
        seed = args.seed + i
        pick = rng_picker(seed)
        model, desc = random_model(pick, seed)
        cfg = pick("config", list(CONFIGS))
        fmt = pick("format", list(FORMATS))
        r = check(model, cfg, seed, fmt)
        out = r["outcome"] if r["outcome"] != "refused" or r["clear"] else "unclear refusal"
        tally[out] += 1
        if out not in ("ok", "refused"):
            bad.append({"seed": seed, "config": cfg, "format": fmt, "model": desc, **r})
            if not args.json:
                print(f"seed {seed} ({cfg}, {fmt}: {desc}): {out}: {r.get('error') or r}",
                      file=sys.stderr)
        if not args.json and (i + 1) % 50 == 0:
            print(f"  {i + 1}/{args.cases} cases, {dict(tally)}", file=sys.stderr)
    secs = time.time() - t0
    summary = {"cases": args.cases, "first_seed": args.seed, "tally": dict(tally),
               "mismatches": tally["mismatch"], "tracebacks": tally["traceback"],
               "unclear_refusals": tally["unclear refusal"], "seconds": round(secs, 1),
               "failures": bad}
    if not args.json:
        width = max(len(k) for k in ["outcome"] + list(tally))
        print(f"{'outcome':<{width}}  cases")
        for k, v in sorted(tally.items(), key=lambda kv: -kv[1]):
            print(f"{k:<{width}}  {v:5d}")
        print(f"{args.cases} cases in {secs:.0f} s ({secs / max(1, args.cases):.2f} s each)")
    print(json.dumps(summary))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
