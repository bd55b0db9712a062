"""The compiler's entry points used by the CLI: compile, verify against golden and onnxruntime,
per-layer reports."""

import time
from pathlib import Path

import numpy as np

from .compile import CompileError, compile_graph
from .ir import dequantize, reference_run
from .onnx_import import ImportError_, import_onnx

__all__ = ["compile_model", "verify_model", "verify_compiled", "memory_use", "layer_report", "layer_table", "per_pc", "totals",
           "CompileError", "ImportError_"]


def compile_model(model, cfg, name=None, batch=1):
    """Import and compile ``model`` (a path, ONNX bytes or an ``onnx.ModelProto``); returns
    ``(graph, Compiled, seconds)``, the graph as compiled (see :func:`compile_graph`).
    A dynamic batch dimension is pinned to ``batch``."""
    t = time.time()
    g = import_onnx(str(model) if isinstance(model, Path) else model, batch=batch)
    if name is None:
        name = Path(model).stem if isinstance(model, (str, Path)) else (g.name or "model")
    c = compile_graph(g, cfg, model_name=name)
    return c.graph, c, time.time() - t


def _ort_outputs(model, g, xq):
    """onnxruntime's outputs of ``model`` for the stored input ``xq``, in the stored types
    of ``g`` (quantized with the output's parameters where the model gives floats)."""
    import onnxruntime as ort
    from .retype import to_model, to_storage
    so = ort.SessionOptions()
    so.log_severity_level = 3
    src = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    sess = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    qin = g.inputs[0]
    t_in = g.tensors[qin]
    if qin in g.float_inputs:
        feed = {g.float_inputs[qin]: dequantize(xq, t_in)}
    else:
        feed = {qin: to_model(xq, t_in).astype(t_in.model_type)}
    res = sess.run([g.float_outputs.get(q, q) for q in g.outputs], feed)
    out = {}
    for q, r in zip(g.outputs, res):
        t = g.tensors[q]
        if not t.quantized:
            out[q] = np.asarray(r, dtype=np.float32)
        elif g.float_outputs.get(q, q) != q:       # the model dequantizes: quantize it back
            out[q] = np.rint(np.asarray(r, dtype=np.float64) / t.scale) + t.zero_point
        else:
            out[q] = to_storage(r, t)
    return out


def verify_model(path, cfg, engine="iss", x=None, simulator="verilator", seed=0, batch=1):
    """Compile, run on ``engine``, compare with the integer golden model and onnxruntime."""
    g, c, secs = compile_model(path, cfg, batch=batch)
    res = verify_compiled(path, g, c, engine=engine, x=x, simulator=simulator, seed=seed)
    res["compile_seconds"] = round(secs, 3)
    return res


def verify_compiled(model, g, c, engine="iss", x=None, simulator="verilator", seed=0):
    """Run compiled ``c`` (of ONNX ``model``, imported as ``g``) on ``engine`` and compare
    with the integer golden model (bit for bit) and onnxruntime (LSBs counted): on ``x``
    (float or the model's integers) or a random input drawn with ``seed``."""
    from ffacc.sim.runner import model_inputs, run_image

    qin = g.inputs[0]
    t_in = g.tensors[qin]
    if x is None:
        rng = np.random.default_rng(seed)
        lo, hi = t_in.qrange
        xq = rng.integers(lo, hi + 1, t_in.shape).astype(t_in.np_dtype)
    else:
        xq = model_inputs(c.image, x)[qin]
    ref = reference_run(g, {qin: xq})
    outs, st = run_image(c.image, {qin: xq}, engine=engine, simulator=simulator)
    ortq = _ort_outputs(model, g, xq)
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
    return {"model": str(model) if not hasattr(model, "SerializeToString") else g.name,
            "engine": engine, "bit_exact": bool(bit_exact),
            "max_lsb_vs_onnxruntime": int(max_lsb),
            "mismatch_fraction_vs_onnxruntime": (mism / total) if total else 0.0,
            "cycles": int(st.get("cycles", 0)), "host_ops": c.host_ops,
            "notes": c.image.meta.get("notes", []),
            "image_bytes": len(c.image.to_bytes()),
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
    ``pcs`` (see :func:`per_pc`); ideal cycles = MACs ÷ (multipliers × FFA gain). The
    roofline: ``compute_bound`` = MACs ÷ (multipliers × the gain of the mode the layer runs
    in, :meth:`~ffacc.hw.config.AcceleratorConfig.mode_gain`), ``traffic_bound`` = bytes that
    must cross the bus (inputs, output, int8 weights, quantization records) ÷ bus bytes per
    clock; ``of_bound`` = the larger ÷ cycles."""
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
            cb, tb = li.get("compute_bound", 0), li.get("traffic_bound", 0)
            row.update(instructions=li["pc_count"], cycles=cyc, stall_cycles=stall,
                       microseconds=round(cyc / cfg.target_mhz, 3), ideal_cycles=round(ideal),
                       utilization=round(ideal / cyc, 4) if cyc and ideal else 0.0,
                       compute_bound=cb, traffic_bound=tb,
                       bound="compute" if cb >= tb else "traffic",
                       of_bound=round(max(cb, tb) / cyc, 4) if cyc else 0.0,
                       source=source)
        else:
            row.update(instructions=0, cycles=0, stall_cycles=0, microseconds=0.0,
                       ideal_cycles=0,
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
    tot["clock_mhz"] = cfg.target_mhz
    tot["microseconds"] = round(cycles / cfg.target_mhz, 3)
    tot["images_per_second"] = round(cfg.target_mhz * 1e6 / cycles, 1) if cycles else None
    tot["memory"] = memory_use(image)
    tot["ops_per_multiplier_cycle"] = (round(2 * tot["macs"] / (cycles * cfg.multipliers), 4)
                                       if cycles else 0.0)
    return tot


def memory_use(image):
    """Bytes of accelerator memory by use: ``activations`` (inputs, outputs and the arena
    below the first loaded section), ``weights`` (weights, parameters, data), ``code``, and
    ``total`` (the image's memory size, rounded up to 4 KiB)."""
    from ffacc.firmware.image import LOADED, Kind
    loaded = [s for s in image.sections if s.kind in LOADED]
    first = min((s.addr for s in loaded), default=image.mem_size)
    return {"activations": first,
            "weights": sum(len(s.data) for s in loaded if s.kind != Kind.CODE),
            "code": sum(len(s.data) for s in loaded if s.kind == Kind.CODE),
            "total": image.mem_size}


def layer_report(image):
    """Per-layer figures from the image's layer table and the ISS cycle model."""
    from ffacc.sim.runner import run_image
    zeros = {t.name: np.full(t.shape, t.zero_point, dtype=t.dtype)
             for t in image.tensors if t.role == "input"}
    _, st = run_image(image, zeros, engine="iss", timing_only=True)
    rows = layer_table(image, per_pc(st["segments"]), "iss")
    return rows, totals(image, rows, st["cycles"])
