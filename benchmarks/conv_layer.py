"""One conv layer on the RTL (Verilator) and the ISS: cycles, ideal cycles, utilization.

Usage: python benchmarks/conv_layer.py [--config ulx3s] [--C 64 --O 64 --H 56 --W 56 --k 3]
       [--json] [--iss-only]

Ideal cycles = MACs / (FCU multipliers x FFA gain), the FFA gain being the direct MACs one
multiplication of a row engine stands for (L^2/M for one-sub-tap engines: 1.5 for 3-parallel).
Utilization = ideal / RTL cycles.
"""

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from ffacc.hw.config import ACCEL_PRESETS
from ffacc.sim.programs import conv_case, run_iss


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="ulx3s")
    for name, default in (("C", 64), ("O", 64), ("H", 56), ("W", 56), ("k", 3)):
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--iss-only", action="store_true")
    args = ap.parse_args(argv)
    cfg = ACCEL_PRESETS[args.config]
    case = conv_case(cfg, args.C, args.O, args.H, args.W, args.k, seed=1)
    t = time.time()
    blobs, iss = run_iss(case, cfg)
    by_op = Counter()
    for _, op, cyc, _ in iss.per_instruction:
        by_op[op] += cyc
    macs = args.C * args.O * args.H * args.W * args.k * args.k
    ideal = macs / (cfg.multipliers * cfg.ffa_gain)
    out = {"config": args.config, "layer": f"{args.k}x{args.k} conv {args.C}->{args.O} on "
                                            f"{args.H}x{args.W}",
           "macs": macs, "multipliers": cfg.multipliers, "ffa_gain": cfg.ffa_gain,
           "ideal_cycles": round(ideal), "iss_cycles": iss.cycles,
           "iss_bit_exact": case.check(blobs), "iss_cycles_by_command": dict(by_op),
           "instructions": iss.instructions, "image_bytes": len(case.image.to_bytes()),
           "iss_seconds": round(time.time() - t, 1)}
    if not args.iss_only:
        from ffacc.sim.cocotb_run import AccelBench
        print("building and running the RTL on Verilator (minutes) ...", file=sys.stderr)
        t = time.time()
        bench = AccelBench(cfg, "verilator", quiet=True).build()
        with tempfile.TemporaryDirectory() as tmp:
            path = case.image.save(Path(tmp) / "layer.ffw")
            rtl = bench.run_image(path, case.readback, name="conv_layer",
                                  max_cycles=50_000_000)
        out.update({"rtl_cycles": rtl["cycles"], "rtl_busy_cycles": rtl["busy"],
                    "rtl_stall_cycles": rtl["stall"], "rtl_mult_slots": rtl["mult_slots"],
                    "rtl_bit_exact": case.check(rtl["readback"]),
                    "rtl_equals_iss": rtl["readback"] == blobs,
                    "utilization": round(ideal / rtl["cycles"], 4),
                    "slot_utilization": round(rtl["mult_slots"] / (rtl["cycles"]
                                                                   * cfg.multipliers), 4),
                    "iss_vs_rtl": round((iss.cycles - rtl["cycles"]) / rtl["cycles"], 4),
                    "rtl_seconds": round(time.time() - t, 1)})
    else:
        out["utilization_iss"] = round(ideal / iss.cycles, 4)
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:24s} {v}")


if __name__ == "__main__":
    main()
