"""The compiler's entry points used by the CLI: compile, verify against golden and onnxruntime,
per-layer reports."""

import time
from pathlib import Path

import numpy as np

from .compile import CompileError, compile_graph
from .ir import dequantize, reference_run
from .onnx_import import ImportError_, import_onnx, to_opset13
from .qonnx import from_qonnx

__all__ = ["compile_model", "verify_model", "verify_compiled", "memory_use", "layer_report",
           "layer_table", "per_pc", "traffic_per_pc", "traffic_sum",
           "totals", "CompileError", "ImportError_"]


def compile_model(model, cfg, name=None, batch=1, polyphase=True, act_codes=None, calib=None,
                  narrow_codes=True, move_pools=True):
    """Import and compile ``model`` (a path, ONNX bytes or an ``onnx.ModelProto``); returns
    ``(graph, Compiled, seconds)``, the graph as compiled (see :func:`compile_graph`).
    A dynamic batch dimension is pinned to ``batch``; ``polyphase=False``: no strided conv on
    the host's input is split into its phases (compiler/polyphase.py). ``act_codes``
    (``"kmeans:4"``, ``"ed:3"``, or a ``(method, bits)`` pair): non-uniform activation levels
    for every convolution and Gemm output on the accelerator (compiler/codes.py), calibrated
    on ``calib`` (float samples stacked on the batch axis, or a list of input dicts).
    ``narrow_codes=False``: uniform 2- to 4-bit activations are stored a byte each, not as
    4-bit codes, and ``move_pools=False`` no max-pool moves before a Concat (see
    :func:`~ffacc.compiler.compile.compile_graph`)."""
    t = time.time()
    g = import_onnx(str(model) if isinstance(model, Path) else model, batch=batch)
    if name is None:
        name = Path(model).stem if isinstance(model, (str, Path)) else (g.name or "model")
    if act_codes is not None:
        g = code_activations(g, cfg, act_codes, calib)
    c = compile_graph(g, cfg, model_name=name, polyphase=polyphase, narrow_codes=narrow_codes,
                      move_pools=move_pools)
    return c.graph, c, time.time() - t


def code_activations(g, cfg, act_codes, calib):
    """Graph ``g`` with codebooks (compiler/codes.py) on the outputs of its convolutions and
    Gemms that run on the accelerator, calibrated on ``calib``."""
    from .codes import CodesError, calibrate_levels, parse_codes
    from .compile import _accel_reason
    from .ir import quantize

    method, bits = parse_codes(act_codes) if isinstance(act_codes, str) else act_codes
    if not cfg.act_codes:
        raise CodesError("act codes need a configuration with act_codes = true (the "
                         "accelerator's POST then maps values to levels)")
    if calib is None or len(calib) == 0:
        raise CodesError("act codes need calibration samples (--calib)")
    if not isinstance(calib, (list, tuple)) or not isinstance(calib[0], dict):
        if len(g.inputs) != 1:
            raise CodesError(f"the model has {len(g.inputs)} inputs: give the calibration "
                             f"samples as a list of dicts by input name")
        t = g.tensors[g.inputs[0]]
        arr = np.asarray(calib)
        per = int(np.prod(t.shape))
        if arr.size % per:
            raise CodesError(f"calibration samples of shape {arr.shape} do not split into "
                             f"inputs of shape {tuple(t.shape)}")
        arr = arr.reshape((-1,) + tuple(t.shape))
        if arr.dtype.kind == "f" and t.quantized:
            calib = [{t.name: quantize(a, t)} for a in arr]
        else:
            calib = [{t.name: a} for a in arr]
    g2, _ = calibrate_levels(g, calib, method, bits,
                             eligible=lambda op: _accel_reason(op, g, cfg) is None)
    return g2


# onnxruntime runs the QDQ model as written (DequantizeLinear -> float operator ->
# QuantizeLinear), not its fused integer kernels: on x86 CPUs without VNNI those multiply
# uint8 by int8 with VPMADDUBSW, whose int16 pair sums saturate (onnxruntime's quantization
# guide says so). Measured: DenseNet-121's first 7x7 conv off by up to 14 LSB on 15 % of its
# outputs under the default optimizations, while ffacc's result equals float64 arithmetic.
# The same holds for the QOperator QLinearConv/QLinearMatMul kernels at every optimization
# level (measured with onnxruntime 1.32: a 1x1 QLinearConv 44 LSB off exact arithmetic), so
# the reference runs them as their definition: DequantizeLinear -> Conv/MatMul ->
# QuantizeLinear in float.
# QOperator node -> (its float operator, bias input, output-scale input); the output zero
# point follows the scale, the inputs are (x, scale, zero point) and (w, scale, zero point)
_QLINEAR_DEF = {"QLinearConv": ("Conv", 8, 6), "QLinearMatMul": ("MatMul", None, 6),
                "QGemm": ("Gemm", 6, 7)}


def _qlinear_as_float(n, inits, extra):
    """A QLinearConv, QLinearMatMul or (com.microsoft) QGemm node as its definition:
    DequantizeLinear -> Conv/MatMul/Gemm -> QuantizeLinear (QGemm without an output scale
    gives floats). None if its bias needs scales that are not constants."""
    from onnx import helper, numpy_helper
    fop, bpos, ypos = _QLINEAR_DEF[n.op_type]
    i = list(n.input) + [""] * (9 - len(n.input))
    a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
    w_axis = 0 if n.op_type == "QLinearConv" or a.get("transB", 0) else 1
    t = (n.name or n.output[0]) + "__def"
    out = [helper.make_node("DequantizeLinear", i[0:3], [t + "_x"]),
           helper.make_node("DequantizeLinear", i[3:6], [t + "_w"], axis=w_axis)]
    ins = [t + "_x", t + "_w"]
    if bpos is not None and i[bpos]:
        if i[1] not in inits or i[4] not in inits:
            return None
        bs = (np.float32(inits[i[1]]) * inits[i[4]].astype(np.float32)).reshape(-1)
        extra.append(numpy_helper.from_array(bs.astype(np.float32), t + "_bs"))
        out.append(helper.make_node("DequantizeLinear", [i[bpos], t + "_bs"], [t + "_b"],
                                    axis=0))
        ins.append(t + "_b")
    y = t + "_y" if i[ypos] else n.output[0]
    out.append(helper.make_node(fop, ins, [y], **a))
    if i[ypos]:
        out.append(helper.make_node("QuantizeLinear", [y, i[ypos], i[ypos + 1]],
                                    [n.output[0]]))
    return out


def _as_float_ops(m):
    """``m`` with its QLinearConv, QLinearMatMul and QGemm nodes written as their definition
    (:func:`_qlinear_as_float`); ``m`` itself where there are none, or where a bias scale is
    computed at run time."""
    import onnx
    from onnx import numpy_helper
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    nodes, extra, changed = [], [], False
    for n in m.graph.node:
        domain = "com.microsoft" if n.op_type == "QGemm" else ("", "ai.onnx")
        if n.op_type not in _QLINEAR_DEF or n.domain not in domain:
            nodes.append(n)
            continue
        q = _qlinear_as_float(n, inits, extra)
        if q is None:
            return m
        nodes += q
        changed = True
    if not changed:
        return m
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    del m2.graph.node[:]
    m2.graph.node.extend(nodes)
    m2.graph.initializer.extend(extra)
    return m2


def _ort_session(model, extra_outputs=()):
    import onnx
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    m = onnx.load(str(model)) if not hasattr(model, "SerializeToString") else model
    m2 = _as_float_ops(to_opset13(from_qonnx(m)[0])[0])     # as the importer reads it
    if extra_outputs:
        if m2 is m:
            m2 = onnx.ModelProto()
            m2.CopyFrom(m)
        have = {o.name for o in m2.graph.output}
        for name, elem in extra_outputs:
            if name not in have:
                m2.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
    return ort.InferenceSession(m2.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _ort_feed(g, xq):
    from .retype import to_model
    qin = g.inputs[0]
    t_in = g.tensors[qin]
    if qin in g.float_inputs:
        return {g.float_inputs[qin]: dequantize(xq, t_in)}
    return {qin: to_model(xq, t_in).astype(t_in.model_type)}


def _ort_run(model, g, xq):
    """onnxruntime on the stored input ``xq``, once: ``(outputs, values)``. ``outputs`` are
    the graph's outputs in the stored types of ``g`` (quantized with the output's parameters
    where the model gives floats); ``values`` every tensor of ``g`` onnxruntime also computes
    (stored integers as int64, floats as float32), with ``xq`` as the input."""
    import onnx
    from .retype import to_storage
    m = onnx.load(str(model)) if not hasattr(model, "SerializeToString") else model
    m = from_qonnx(m)[0]                        # QONNX: the QDQ model it is read as
    made = {o for n in m.graph.node for o in n.output}
    feed = _ort_feed(g, xq)
    outs = [g.float_outputs.get(q, q) for q in g.outputs]
    inner = [n for n in g.tensors if n in made and n not in feed and n not in outs]
    elem = [onnx.helper.np_dtype_to_tensor_dtype(np.dtype(
        g.tensors[n].model_type if g.tensors[n].quantized else np.float32)) for n in inner]
    sess = _ort_session(m, list(zip(inner, elem)))
    res = sess.run(outs + inner, feed)
    got = dict(zip(outs + inner, res))
    out = {}
    for q, r in zip(g.outputs, res):
        t = g.tensors[q]
        if not t.quantized:
            out[q] = np.asarray(r, dtype=np.float32)
        elif g.float_outputs.get(q, q) != q:       # the model dequantizes: quantize it back
            out[q] = np.rint(np.asarray(r, dtype=np.float64) / t.scale) + t.zero_point
        else:
            out[q] = to_storage(r, t)
    values = {g.inputs[0]: np.asarray(xq)}
    for n in g.tensors:
        if n in got and n not in values:
            t = g.tensors[n]
            values[n] = to_storage(got[n], t).astype(np.int64) if t.quantized else \
                np.asarray(got[n], dtype=np.float32)
    return out, values


# per-layer bounds against onnxruntime (on onnxruntime's own inputs of the layer): float
# rounding of the requantization moves a value across a rounding boundary now and then
# (measured: at most 0.015 % of a Conv's outputs on the classic zoo). An average of k values
# lands exactly on half an LSB for up to 1/k of its outputs, where float32 rounding decides
# the side (measured: 4.4 % of a 2x2 average pool's outputs in DenseNet-121). The integer
# Add rescales its inputs with 14-bit multipliers (measured: 1.9 % of a fuzz case's outputs);
# an Add's and an average pool's check is exact: each output that differs is a tie (`ties`).
REFERENCE_NOTE = ("bit-exact is against ffacc's golden model, which runs the same imported "
                  "IR (and host operators) as the compiler, so an import error shows only in "
                  "the onnxruntime comparison; that comparison runs the ONNX model as written "
                  "(per layer on onnxruntime's own inputs: <= 1 LSB)")
LAYER_MAX_LSB = 1
LAYER_MAX_MISMATCH = {"AvgPool": 0.25, None: 0.01}
FLOAT_REL_TOL = 1e-4


def layer_check(g, vals):
    """Every IR operator whose inputs and outputs onnxruntime also computes (``vals``, from
    :func:`_ort_run`), run by the golden semantics on onnxruntime's own input values and
    compared with onnxruntime's output: LSBs per layer, so an error is pinned to its layer and
    not confused with 1-LSB differences that earlier layers pass on (and a later layer may
    amplify). Returns a list of rows."""
    from .ir import Add, AvgPoolConv, PhaseSplit, run_op
    rows = []
    vals = dict(vals)
    for op in g.ops:
        if isinstance(op, PhaseSplit) and all(n in vals for n in op.inputs):
            # a copy in another layout (compiler/polyphase.py): the conv after it is checked
            # on onnxruntime's input, split
            vals.update(zip(op.outputs, run_op(op, g, vals)))
            continue
        if not all(n in vals for n in op.inputs + op.outputs):
            continue
        outs = run_op(op, g, {n: vals[n] for n in op.inputs})
        for n, v in zip(op.outputs, outs):
            t, ref = g.tensors[n], vals[n]
            d = np.abs(np.asarray(v, dtype=np.float64) - np.asarray(ref, dtype=np.float64))
            row = {"layer": op.name, "op": getattr(op, "op_type", "") or op.kind,
                   "outputs": int(d.size)}
            if t.quantized:
                row.update(max_lsb=int(d.max()) if d.size else 0, differ=int((d != 0).sum()),
                           mismatch_fraction=float((d != 0).mean()) if d.size else 0.0)
                bound = LAYER_MAX_MISMATCH.get(op.kind, LAYER_MAX_MISMATCH[None])
                # a layer of a few dozen outputs may have one tie: at least 2 are allowed
                row["ok"] = row["max_lsb"] <= LAYER_MAX_LSB and \
                    int((d != 0).sum()) <= max(2, bound * d.size)
                # an Add (its integer form's 14-bit factors and float32 round a sum near a
                # half either way) and an average pool on the accelerator (an exact average
                # halfway between two steps): the outputs that differ are ties, every one
                ties = None
                if isinstance(op, Add):
                    ties = op.ties(*(vals[n] for n in op.inputs),
                                   *(g.tensors[n] for n in op.inputs), t)
                elif isinstance(op, AvgPoolConv):
                    ties = op.ties(vals[op.inputs[0]], g.tensors[op.inputs[0]], t)
                if ties is not None:
                    row["ties"] = int(ties.sum())
                    row["ok"] = row["max_lsb"] <= LAYER_MAX_LSB and \
                        not np.any((d != 0) & ~ties)
            else:
                scale = max(float(np.abs(ref).max()) if d.size else 0.0, 1e-12)
                row["float_rel_error"] = float(d.max() / scale) if d.size else 0.0
                row["ok"] = row["float_rel_error"] <= FLOAT_REL_TOL
            rows.append(row)
    return rows


def verify_model(path, cfg, engine="iss", x=None, simulator="verilator", seed=0, batch=1,
                 polyphase=True):
    """Compile, run on ``engine``, compare with the integer golden model and onnxruntime."""
    g, c, secs = compile_model(path, cfg, batch=batch, polyphase=polyphase)
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
        if t_in.quantized:
            lo, hi = t_in.qrange
            xq = rng.integers(lo, hi + 1, t_in.shape).astype(t_in.np_dtype)
        else:                   # a float input the host reads first (a float prefix)
            xq = rng.uniform(0, 1, t_in.shape).astype(np.float32)
    else:
        xq = model_inputs(c.image, x)[qin]
    ref = reference_run(g, {qin: xq})
    outs, st = run_image(c.image, {qin: xq}, engine=engine, simulator=simulator)
    ortq, ort_vals = _ort_run(model, g, xq)
    layers = layer_check(g, ort_vals)
    bit_exact = all(np.array_equal(np.asarray(outs[o]).astype(np.float64),
                                   np.asarray(ref[o]).astype(np.float64)) for o in g.outputs)
    max_lsb, mism, total, float_rel = 0.0, 0, 0, 0.0
    for o in g.outputs:
        d = np.abs(np.asarray(outs[o], dtype=np.float64) - np.asarray(ortq[o], dtype=np.float64))
        if g.tensors[o].quantized:
            max_lsb = max(max_lsb, float(d.max()))
            mism += int((d != 0).sum())
            total += d.size
        else:
            float_rel = max(float_rel, float(d.max() / max(1e-12, np.abs(ortq[o]).max())))
    worst = max(layers, key=lambda r: (not r["ok"], r.get("max_lsb", 0),
                                        r.get("mismatch_fraction", 0.0)), default=None)
    layers_ok = bool(layers) and all(r["ok"] for r in layers)
    by_op = {}                  # per operator kind: outputs that differ from onnxruntime's
    for r in layers:
        if "differ" in r:
            t = by_op.setdefault(r["op"], {"layers": 0, "outputs": 0, "differ": 0, "max_lsb": 0})
            t["layers"] += 1
            t["outputs"] += r["outputs"]
            t["differ"] += r["differ"]
            t["max_lsb"] = max(t["max_lsb"], r["max_lsb"])
            if "ties" in r:
                t["ties"] = t.get("ties", 0) + r["ties"]
    return {"model": str(model) if not hasattr(model, "SerializeToString") else g.name,
            "engine": engine, "bit_exact": bool(bit_exact),
            "max_lsb_vs_onnxruntime": int(max_lsb),
            "mismatch_fraction_vs_onnxruntime": (mism / total) if total else 0.0,
            "float_output_rel_error_vs_onnxruntime": float_rel,
            "layers_checked_vs_onnxruntime": len(layers),
            "layer_max_lsb_vs_onnxruntime": max((r.get("max_lsb", 0) for r in layers),
                                                default=0),
            "worst_layer_vs_onnxruntime": worst,
            "layers_vs_onnxruntime_by_op": by_op,
            "layers_ok": layers_ok,
            "reference_note": REFERENCE_NOTE,
            "cycles": int(st.get("cycles", 0)), "host_ops": c.host_ops,
            "notes": c.image.meta.get("notes", []),
            "image_bytes": len(c.image.to_bytes()),
            "ok": bool(bit_exact and layers_ok)}


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


TRAFFIC = ("code_bytes", "weight_bytes_read", "act_bytes_read", "act_bytes_written")


def traffic_per_pc(segments):
    """``{pc: [code, weights and parameters, activations read, activations written]}``: the
    bytes the ISS's run ``segments`` moved over the bus per instruction (``traffic``)."""
    acc = {}
    for seg in segments:
        for pc, t in seg.get("traffic", {}).items():
            a = acc.setdefault(pc, [0, 0, 0, 0])
            for k in range(4):
                a[k] += t[k]
    return acc


def traffic_sum(records):
    """``{TRAFFIC name: bytes}`` summed over traffic records (see :func:`traffic_per_pc`)."""
    records = list(records)
    return {k: sum(t[j] for t in records) for j, k in enumerate(TRAFFIC)}


def layer_table(image, pcs, source="iss", traffic=None):
    """Per-layer rows of ``image``'s layer table with cycles and stalls attributed from
    ``pcs`` (see :func:`per_pc`). ``macs`` are the layer's own (its outputs at its stride);
    ``computed_macs`` those the FCU array computes (a strided layer at stride 1, of which POST
    keeps every stride-th output). Ideal cycles = MACs ÷ (multipliers × FFA gain). The
    roofline: ``compute_bound`` = MACs ÷ (multipliers × the gain of the mode the layer runs
    in, :meth:`~ffacc.hw.config.AcceleratorConfig.mode_gain`), ``traffic_bound`` = bytes that
    must cross the bus (inputs, output, int8 weights, quantization records) ÷ bus bytes per
    clock; ``of_bound`` = the larger ÷ cycles. ``post_bound``: the clocks the post-processor
    takes at least, a requantization (or an ``ADD``'s element) a clock, a pooled output's k²
    (``post_share``: of the cycles): a layer near 100 % is bound by it."""
    from ffacc.sim.runner import config_of
    cfg = config_of(image)
    rows = []
    for li in image.meta.get("layers", []):
        row = {k: li.get(k) for k in ("name", "op", "in_shape", "out_shape", "kernel", "mode",
                                      "macs", "computed_macs", "weight_bytes", "act_bytes",
                                      "where", "op_type")}
        if li.get("where") == "accel":
            got = [pcs.get(li["pc"] + 8 * i, (0, 0)) for i in range(li["pc_count"])]
            cyc, stall = sum(g[0] for g in got), sum(g[1] for g in got)
            ideal = li["macs"] / (cfg.multipliers * cfg.ffa_gain) if li["macs"] else 0
            cb, tb = li.get("compute_bound", 0), li.get("traffic_bound", 0)
            pb = li.get("post_bound", 0)
            if traffic is not None:
                row.update(traffic_sum(traffic.get(li["pc"] + 8 * i, (0, 0, 0, 0))
                                       for i in range(li["pc_count"])))
            row.update(instructions=li["pc_count"], cycles=cyc, stall_cycles=stall,
                       microseconds=round(cyc / cfg.target_mhz, 3), ideal_cycles=round(ideal),
                       utilization=round(ideal / cyc, 4) if cyc and ideal else 0.0,
                       compute_bound=cb, traffic_bound=tb,
                       bound="compute" if cb >= tb else "traffic",
                       of_bound=round(max(cb, tb) / cyc, 4) if cyc else 0.0,
                       post_bound=pb, post_share=round(pb / cyc, 4) if cyc else 0.0,
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
    accel = [r for r in rows if r["where"] == "accel"]
    tot = {"macs": sum(r["macs"] or 0 for r in accel),
           "computed_macs": sum(r.get("computed_macs") or 0 for r in accel),
           "host_macs": sum(r["macs"] or 0 for r in rows if r["where"] == "host"),
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
    traffic = traffic_per_pc(st["segments"])
    rows = layer_table(image, per_pc(st["segments"]), "iss", traffic)
    tot = totals(image, rows, st["cycles"])
    # the run's bytes over the bus (layers, and the instructions between them: END)
    tot.update(traffic_sum(traffic.values()))
    return rows, tot
