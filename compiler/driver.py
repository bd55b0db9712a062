"""The compiler's entry points used by the CLI: compile, verify against golden and onnxruntime,
per-layer reports."""

import time
from pathlib import Path

import numpy as np

from .compile import CompileError, compile_graph
from .ir import dequantize, quantize, reference_run
from .onnx_import import ImportError_, import_onnx

__all__ = ["compile_model", "verify_model", "layer_report", "layer_table", "per_pc", "totals",
           "quantize_input", "CompileError", "ImportError_"]


def compile_model(path, cfg):
    """Import and compile; returns ``(graph, Compiled, seconds)``."""
    t = time.time()
    g = import_onnx(str(path))
    c = compile_graph(g, cfg, model_name=Path(str(path)).stem)
    return g, c, time.time() - t


def quantize_input(image_or_graph, x):
    """A float input quantized with the model's input parameters (integer inputs pass)."""
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.integer):
        return x
    if hasattr(image_or_graph, "tensors") and isinstance(image_or_graph.tensors, dict):
        t = image_or_graph.tensors[image_or_graph.inputs[0]]
    else:
        from .ir import QTensor
        d = [t for t in image_or_graph.tensors if t.role == "input"][0]
        t = QTensor(d.name, tuple(d.shape), d.dtype, d.scale, d.zero_point)
    return quantize(x.reshape(t.shape), t)


def _ort_outputs(path, g, xq):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    qin = g.inputs[0]
    feed = {g.float_inputs[qin]: dequantize(xq, g.tensors[qin])}
    res = sess.run(None, feed)
    out = {}
    for q, r in zip(g.outputs, res):
        t = g.tensors[q]
        out[q] = (np.rint(np.asarray(r, dtype=np.float64) / t.scale) + t.zero_point
                  if t.quantized else np.asarray(r, dtype=np.float32))
    return out


def verify_model(path, cfg, engine="iss", x=None, simulator="verilator", seed=0):
    """Compile, run on ``engine``, compare with the integer golden model and onnxruntime."""
    from ffacc.sim.runner import run_image

    g, c, secs = compile_model(path, cfg)
    qin = g.inputs[0]
    t_in = g.tensors[qin]
    if x is None:
        rng = np.random.default_rng(seed)
        lo, hi = t_in.qrange
        xq = rng.integers(lo, hi + 1, t_in.shape).astype(t_in.np_dtype)
    else:
        xq = quantize_input(g, x)
    ref = reference_run(g, {qin: xq})
    outs, st = run_image(c.image, {qin: xq}, engine=engine, simulator=simulator)
    ortq = _ort_outputs(path, g, xq)
    bit_exact = all(np.array_equal(np.asarray(outs[o]).astype(np.float64),
                                   np.asarray(ref[o]).astype(np.float64)) for o in g.outputs)
    max_lsb, mism, total = 0.0, 0, 0
    for o in g.outputs:
        d = np.abs(np.asarray(outs[o], dtype=np.float64) - np.asarray(ortq[o], dtype=np.float64))
        if g.tensors[o].quantized:
            max_lsb = max(max_lsb, float(d.max()))
            mism += int((d != 0).sum())
            total += d.size
        else:
            max_lsb = max(max_lsb, float(d.max() / max(1e-12, np.abs(ortq[o]).max()) > 1e-3))
    return {"model": str(path), "engine": engine, "bit_exact": bool(bit_exact),
            "max_lsb_vs_onnxruntime": int(max_lsb),
            "mismatch_fraction_vs_onnxruntime": (mism / total) if total else 0.0,
            "cycles": int(st.get("cycles", 0)), "host_ops": c.host_ops,
            "compile_seconds": round(secs, 3), "image_bytes": len(c.image.to_bytes()),
            "ok": bool(bit_exact and max_lsb <= 1)}


def per_pc(segments):
    """``{pc: [cycles, stall_cycles]}`` summed over the ``per_instruction`` records of run
    segments (ISS: ``(pc, op, cycles, stall)``; RTL profile: ``[pc, cycles, stall]``)."""
    acc = {}
    for seg in segments:
        for rec in seg.get("per_instruction", []):
            pc, cyc, stall = (rec[0], rec[2], rec[3]) if len(rec) == 4 else rec
            a = acc.setdefault(pc, [0, 0])
            a[0] += cyc
            a[1] += stall
    return acc


def layer_table(image, pcs, source="iss"):
    """Per-layer rows of ``image``'s layer table with cycles and stalls attributed from
    ``pcs`` (see :func:`per_pc`); ideal cycles = MACs ÷ (multipliers × FFA gain)."""
    from ffacc.sim.runner import config_of
    cfg = config_of(image)
    rows = []
    for li in image.meta.get("layers", []):
        row = {k: li.get(k) for k in ("name", "op", "in_shape", "out_shape", "kernel", "macs",
                                      "weight_bytes", "act_bytes", "where")}
        if li.get("where") == "accel":
            got = [pcs.get(li["pc"] + 8 * i, (0, 0)) for i in range(li["pc_count"])]
            cyc, stall = sum(g[0] for g in got), sum(g[1] for g in got)
            ideal = li["macs"] / (cfg.multipliers * cfg.ffa_gain) if li["macs"] else 0
            row.update(instructions=li["pc_count"], cycles=cyc, stall_cycles=stall,
                       ideal_cycles=round(ideal),
                       utilization=round(ideal / cyc, 4) if cyc and ideal else 0.0,
                       source=source)
        else:
            row.update(instructions=0, cycles=0, stall_cycles=0, ideal_cycles=0,
                       utilization=0.0, reason=li.get("reason"), source="host")
        rows.append(row)
    return rows


def totals(image, rows, cycles):
    """Whole-model figures for :func:`layer_table` rows; ``cycles`` is the run's total."""
    from ffacc.sim.runner import config_of
    cfg = config_of(image)
    tot = {"macs": sum(r["macs"] or 0 for r in rows),
           "cycles": cycles, "ideal_cycles": sum(r["ideal_cycles"] for r in rows),
           "stall_cycles": sum(r["stall_cycles"] for r in rows),
           "instructions": sum(r["instructions"] for r in rows),
           "weight_bytes": sum(r["weight_bytes"] or 0 for r in rows),
           "act_bytes": sum(r["act_bytes"] or 0 for r in rows),
           "host_layers": sum(r["where"] == "host" for r in rows),
           "multipliers": cfg.multipliers, "image_bytes": len(image.to_bytes())}
    tot["utilization"] = round(tot["ideal_cycles"] / cycles, 4) if cycles else 0.0
    tot["ops_per_multiplier_cycle"] = (round(2 * tot["macs"] / (cycles * cfg.multipliers), 4)
                                       if cycles else 0.0)
    return tot


def layer_report(image):
    """Per-layer figures from the image's layer table and the ISS cycle model."""
    from ffacc.sim.runner import run_image
    zeros = {t.name: np.full(t.shape, t.zero_point, dtype=t.dtype)
             for t in image.tensors if t.role == "input"}
    _, st = run_image(image, zeros, engine="iss", timing_only=True)
    rows = layer_table(image, per_pc(st["segments"]), "iss")
    return rows, totals(image, rows, st["cycles"])
