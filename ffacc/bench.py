"""``ffacc bench``: the performance table.

Two workloads on one configuration:

* the bundled digits CNN, run on the RTL (Verilator) with per-instruction profiling: every
  layer's cycles and stall cycles are measured; the ISS cycle model runs the same image, and
  its per-layer deviation from the RTL is reported (the calibration check);
* a VGG-16-shaped network (13 conv layers + 3 FC, random weights, reduced input size so it
  runs in minutes) on the ISS cycle model alone.

Per layer: cycles, ideal cycles (MACs ÷ (multipliers × FFA gain)), utilization (ideal ÷
cycles), stall cycles (waiting for the bus). Totals add ``ops_per_multiplier_cycle``
= 2 × MACs ÷ (cycles × multipliers), the frequency-free figure that compares FFA against direct
convolution (≤ 2 without FFA) and against published accelerators.
"""

import json
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["run_bench", "write_chart"]


def _digits(cfg, simulator, progress):
    from ffacc.compiler.driver import (compile_model, layer_table, per_pc, totals,
                                       traffic_per_pc, traffic_sum)
    from ffacc.compiler.ir import quantize
    from ffacc.demo import load_split
    from ffacc.models import path
    from ffacc.sim.cocotb_run import AccelBench
    from ffacc.sim.runner import run_image

    g, c, _ = compile_model(path("digits/digits_int8.onnx"), cfg)
    _, xte, _, _ = load_split()
    qin = g.inputs[0]
    x = {qin: quantize(xte[0][None], g.tensors[qin])}
    progress("digits: ISS cycle model")
    iss_out, iss_st = run_image(c.image, x, engine="iss")
    progress(f"digits: building the RTL model ({simulator})")
    bench = AccelBench(cfg, simulator, quiet=True)
    t = time.time()
    bench.build()
    progress(f"digits: RTL run with per-instruction profile (built in {time.time() - t:.0f} s)")
    rtl_out, rtl_st = bench.run_model(c.image, x, name="bench", profile=True)
    if not all(np.array_equal(rtl_out[k], iss_out[k]) for k in iss_out):
        raise AssertionError("digits: RTL output differs from the ISS")
    pcs = per_pc(rtl_st["segments"])
    if (sum(v[0] for v in pcs.values()), sum(v[1] for v in pcs.values())) != \
            (rtl_st["cycles"], rtl_st["stall"]):
        raise AssertionError("digits: the RTL profile does not add up to the cycle counters")
    traffic = traffic_per_pc(iss_st["segments"])
    moved = traffic_sum(traffic.values())
    if rtl_st["bus_written_bytes"] != moved["act_bytes_written"]:
        raise AssertionError(f"digits: the RTL wrote {rtl_st['bus_written_bytes']} bytes, the "
                             f"ISS {moved['act_bytes_written']}")
    rtl_rows = layer_table(c.image, pcs, "rtl", traffic)
    iss_rows = layer_table(c.image, per_pc(iss_st["segments"]), "iss")
    deviation = []
    for r, i in zip(rtl_rows, iss_rows):
        if r["source"] == "rtl" and r["cycles"]:
            r["iss_cycles"] = i["cycles"]
            r["iss_stall_cycles"] = i["stall_cycles"]
            r["iss_deviation"] = round((i["cycles"] - r["cycles"]) / r["cycles"], 4)
            deviation.append({"model": "digits", "layer": r["name"], "rtl_cycles": r["cycles"],
                              "iss_cycles": i["cycles"], "deviation": r["iss_deviation"]})
    tot = totals(c.image, rtl_rows, rtl_st["cycles"])
    tot["iss_cycles"] = iss_st["cycles"]
    tot["iss_deviation"] = round((iss_st["cycles"] - rtl_st["cycles"]) / rtl_st["cycles"], 4)
    tot["rtl_counter_stall_cycles"] = rtl_st["stall"]
    # bytes over the bus: the commands' own (ISS) and the RTL's bus (reads in whole beats)
    tot.update(moved)
    tot["rtl_bus_read_bytes"] = rtl_st["bus_read_bytes"]
    tot["rtl_bus_written_bytes"] = rtl_st["bus_written_bytes"]
    tot["fusion"] = _fusion_totals(c.image)
    return rtl_rows, tot, deviation


def _fusion_totals(image):
    """The compiler's depth-first plans (compiler/fusion.py), by objective: their totals."""
    return {obj: p["totals"] for obj, p in image.meta.get("fusion", {}).items()}


def _vgg(cfg, size, fc, progress, build_dir):
    from ffacc.compiler.driver import compile_model, layer_report
    from ffacc.compiler.zoo import vgg16_int8

    model = vgg16_int8(build_dir, size, fc, progress=lambda msg: progress("vgg16: " + msg))
    progress(f"vgg16: compiling ({size}x{size})")
    _, c, secs = compile_model(model, cfg)
    progress("vgg16: ISS cycle model")
    rows, tot = layer_report(c.image)
    tot["compile_seconds"] = round(secs, 1)
    tot["fusion"] = _fusion_totals(c.image)
    return rows, tot


def _kernels(cfg, C, O, size, rtl, simulator, progress):
    """One k×k conv ``C``→``O`` on ``size``×``size`` ('same' padding, random int8 data) per
    k = 1..max_kernel on the ISS (bit-exact against the golden model, or an error), and on the
    RTL for the kernels in ``rtl`` (whose cycles the ISS's are compared with). Per kernel: the
    multiplications per output of direct convolution, of the best FFA and of this unit
    (``ffacc ffa``), the unit's compute bound (outputs × its multiplications per output ÷
    multipliers), cycles, the fraction of that bound reached, utilization against the
    configuration's FFA gain, and ops per multiplier per cycle."""
    from ffacc.cli import ffa_table
    from ffacc.sim.programs import conv_case, run_iss

    unit = {r["k"]: r for r in ffa_table(cfg.fcu)}
    rows, bench = [], None
    for k in range(1, cfg.max_kernel + 1):
        progress(f"kernels: {k}x{k} conv {C}->{O} on {size}x{size} (ISS)")
        case = conv_case(cfg, C, O, size, size, k, seed=k)
        blobs, iss = run_iss(case, cfg)
        if not case.check(blobs):
            raise AssertionError(f"kernels: the {k}x{k} layer is not bit-exact on the ISS")
        macs = C * O * size * size * k * k
        u = unit[k]
        bound = C * O * size * size * u["unit"] / cfg.multipliers
        row = {"k": k, "macs": macs, "direct": u["direct"], "best_ffa": u["best_ffa"],
               "unit": u["unit"], "unit_over_best": round(u["unit"] / u["best_ffa"], 3),
               "compute_bound": round(bound), "iss_cycles": iss.cycles,
               "cycles": iss.cycles, "source": "iss"}
        if k in rtl:
            if bench is None:
                from ffacc.sim.cocotb_run import AccelBench
                progress(f"kernels: building the RTL model ({simulator})")
                bench = AccelBench(cfg, simulator, quiet=True).build()
            progress(f"kernels: {k}x{k} on the RTL")
            with tempfile.TemporaryDirectory() as tmp:
                path = case.image.save(Path(tmp) / f"k{k}.ffw")
                rtl_res = bench.run_image(path, case.readback, name=f"kernel{k}",
                                          max_cycles=20 * iss.cycles + 100_000)
            if rtl_res["readback"] != blobs:
                raise AssertionError(f"kernels: the {k}x{k} layer's RTL output differs from "
                                     f"the ISS")
            row.update(cycles=rtl_res["cycles"], source="rtl",
                       iss_deviation=round((iss.cycles - rtl_res["cycles"])
                                           / rtl_res["cycles"], 4))
        cyc = row["cycles"]
        row.update(of_bound=round(bound / cyc, 4),
                   utilization=round(macs / (cfg.multipliers * cfg.ffa_gain) / cyc, 4),
                   ops_per_multiplier_cycle=round(2 * macs / (cyc * cfg.multipliers), 4))
        rows.append(row)
    return rows


def _stem(cfg, progress, size=224):
    """The AlexNet-style stem (11×11, stride 4, pads 2, 3→64, ReLU) as a quantized ONNX model
    through the compiler onto the ISS: as the strided conv (``--no-polyphase``: POST keeps
    every 4th stride-1 column), split into its stride phases on the host
    (compiler/polyphase.py), and its stride-1 twin; each bit-exact to the golden model.
    The strided layer's cycles as a fraction of the twin's (ideal 1/s² = 1/16)."""
    from ffacc.compiler.driver import compile_model
    from ffacc.compiler.ir import reference_run
    from ffacc.compiler.zoo import quantize_model, single_conv
    from ffacc.sim.runner import run_image

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, s, poly in (("strided", 4, False), ("stride4", 4, True), ("stride1", 1, True)):
            progress(f"stem: 11x11 stride {s} 3->64 on {size}x{size}"
                     f"{'' if poly else ' (no polyphase)'} (ISS)")
            path = Path(tmp) / f"stem{s}.onnx"
            if not path.exists():
                quantize_model(single_conv(11, stride=s, C=3, O=64, H=size, W=size,
                                           pads=(2, 2, 2, 2), seed=11), path, samples=2)
            g, c, _ = compile_model(path, cfg, polyphase=poly)
            qin = g.inputs[0]
            lo, hi = g.tensors[qin].qrange
            x = np.random.default_rng(11).integers(lo, hi + 1, g.tensors[qin].shape)
            ref = reference_run(g, {qin: x})
            res, st = run_image(c.image, {qin: x}, engine="iss")
            if not all(np.array_equal(res[o], ref[o]) for o in g.outputs):
                raise AssertionError(f"stem: stride {s} is not bit-exact on the ISS")
            layer = next(li for li in c.layers if li["where"] == "accel")
            out[key] = {"cycles": int(st["cycles"]), "macs": layer["macs"],
                        "computed_macs": layer["computed_macs"],
                        "kernel_run": layer.get("polyphase", {}).get("split_kernel",
                                                                      layer["kernel"]),
                        "host_ops": [h["op"] for h in c.host_ops]}
    for key in ("strided", "stride4"):
        out[f"{key}_vs_stride1"] = round(out[key]["cycles"] / out["stride1"]["cycles"], 4)
    out["cycles_vs_stride1"] = out["stride4_vs_stride1"]
    out["ideal_vs_stride1"] = round(1 / 16, 4)
    return out


def run_bench(cfg, vgg_size=32, simulator="verilator", out_dir="out", progress=print,
              chart=True, vgg_fc=(4096, 4096), kernels=None, stem_size=224):
    """Run the workloads; returns the report (also written to ``out_dir/bench.json``, with the
    chart in ``out_dir/bench.png``). ``vgg_fc``: the hidden FC widths of the VGG head;
    ``kernels``: ``dict(C=, O=, size=, rtl=(k, ...))`` of the per-kernel table (default: 64→64
    on 24×24, RTL for k = 3 and 5); ``stem_size``: the stem's input (None: no stem)."""
    from ffacc.compiler.driver import TRAFFIC

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t = time.time()
    d_rows, d_tot, deviation = _digits(cfg, simulator, progress)
    v_rows, v_tot = _vgg(cfg, vgg_size, vgg_fc, progress, out)
    kw = dict(C=64, O=64, size=24, rtl=(3, 5))
    kw.update(kernels or {})
    k_rows = _kernels(cfg, simulator=simulator, progress=progress, **kw)
    stem = _stem(cfg, progress, stem_size) if stem_size else None
    layers = []
    for model, rows in (("digits", d_rows), (f"vgg16_{vgg_size}", v_rows)):
        for r in rows:
            if r["where"] != "accel":
                continue
            layers.append({"model": model, **{k: r.get(k) for k in (
                "name", "op", "kernel", "in_shape", "out_shape", "macs", "cycles",
                "ideal_cycles", "utilization", "compute_bound", "traffic_bound", "bound",
                "of_bound", "stall_cycles", "source", "iss_cycles", "iss_deviation")},
                **{k: r[k] for k in TRAFFIC if k in r}})
    mult = cfg.multipliers
    cyc = d_tot["cycles"] + v_tot["cycles"]
    macs = d_tot["macs"] + v_tot["macs"]
    ideal = d_tot["ideal_cycles"] + v_tot["ideal_cycles"]
    devs = [abs(d["deviation"]) for d in deviation]
    res = {
        "config": cfg.to_dict(), "multipliers": mult, "ffa_gain": cfg.ffa_gain,
        "target_mhz": cfg.target_mhz, "layers": layers,
        "models": {"digits": d_tot, f"vgg16_{vgg_size}": v_tot},
        "totals": {"cycles": cyc, "ideal_cycles": ideal, "macs": macs,
                   "utilization": round(ideal / cyc, 4),
                   "stall_cycles": d_tot["stall_cycles"] + v_tot["stall_cycles"],
                   "multipliers": mult,
                   "ops_per_multiplier_cycle": round(2 * macs / (cyc * mult), 4)},
        "iss_vs_rtl": {"layers": deviation,
                       "max_abs_layer_deviation": max(devs) if devs else None,
                       "mean_abs_layer_deviation": round(float(np.mean(devs)), 4) if devs else None,
                       "model_deviation": d_tot["iss_deviation"]},
        "kernels": {"layer": f"{kw['C']}->{kw['O']} on {kw['size']}x{kw['size']}",
                    "rows": k_rows},
        "stem": stem,
        "fusion": {"digits": d_tot["fusion"], f"vgg16_{vgg_size}": v_tot["fusion"]},
        "seconds": round(time.time() - t, 1),
    }
    jpath = out / "bench.json"
    jpath.write_text(json.dumps(res, indent=1))
    res["json"] = str(jpath)
    if chart:
        res["chart"] = str(write_chart(res, out / "bench.png"))
        res["fusion_chart"] = str(write_fusion_chart(res["fusion"], out / "fusion.png"))
    return res


def write_fusion_chart(fusion, path):
    """Per model: activation and weight bytes per image, layer by layer and for the two
    depth-first plans (log scale), as a grouped bar chart."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(fusion)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, what in zip(axes, ("activation", "weight")):
        width = 0.27
        for k, (label, key) in enumerate((("layer by layer", None), ("plan 'bytes'", "bytes"),
                                          ("plan 'activations'", "activations"))):
            vals = []
            for mdl in models:
                t = fusion[mdl][key or "bytes"]
                if what == "activation":
                    v = (t["act_read_layer_by_layer"] + t["act_written_layer_by_layer"]
                         if key is None else t["act_read"] + t["act_written"])
                else:
                    v = t["weight_bytes"] if key is None else t["weight_traffic"]
                vals.append(max(v, 1))
            ax.bar([i + (k - 1) * width for i in range(len(models))], vals, width, label=label)
        ax.set_yscale("log")
        ax.set_xticks(range(len(models)), models, fontsize=8)
        ax.set_ylabel(f"{what} bytes per image")
        ax.set_title(f"{what} traffic", fontsize=9)
    axes[0].legend(fontsize=7)
    fig.suptitle("depth-first plans (compiler/fusion.py) against layer by layer", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_chart(res, path):
    """Per-layer utilization as a bar chart (one colour per source: RTL-measured, ISS model)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = res["layers"]
    names = [f"{l['model'].split('_')[0]}:{l['name']}" for l in layers]
    util = [100 * l["utilization"] for l in layers]
    colours = ["tab:orange" if l["source"] == "rtl" else "tab:blue" for l in layers]
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(layers) + 2), 4.5))
    ax.bar(range(len(layers)), util, color=colours)
    ax.set_xticks(range(len(layers)), names, rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("multiplier utilization (%)")
    t = res["totals"]
    ax.set_title(f"ffacc per-layer utilization — {res['multipliers']} multipliers, "
                 f"total {100 * t['utilization']:.1f} %, "
                 f"{t['ops_per_multiplier_cycle']:.3f} ops/multiplier/cycle", fontsize=9)
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color="tab:orange", label="RTL (measured)"),
                       Patch(color="tab:blue", label="ISS cycle model")], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
