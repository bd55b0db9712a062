"""QONNX models (Brevitas' and FINN's format) as the QDQ ONNX the importer and onnxruntime read.

A QONNX ``Quant(x, scale, zeropt, bitwidth)`` with attributes ``signed``, ``narrow`` and
``rounding_mode`` fake-quantizes its input::

    q = round(clamp(x / scale + zeropt, qmin, qmax))        y = (q - zeropt) * scale

where ``qmin``/``qmax`` follow from ``bitwidth``, ``signed`` and ``narrow``
(:func:`qlimits`). :func:`from_qonnx` rewrites each one into standard ONNX of the same
value:

* **On a constant** (weights, biases): the integers are computed here, with the node's own
  rounding mode and in float32 as QONNX's executor does, and stored as an ``int8``/``uint8``
  initializer (``int32`` beyond 8 bits) behind a ``DequantizeLinear``, per tensor or per
  channel (the one axis along which the scale varies). A 4-bit weight is an int8 in -8..7.
* **On an activation** (2 to 8 bits, one scale): ``QuantizeLinear`` -> ``DequantizeLinear``
  in 8 bits, preceded by a ``Clip`` to ``[(qmin - zeropt) * scale, (qmax - zeropt) * scale]``
  where ``qmin..qmax`` is narrower than the 8-bit type. The importer folds that ``Clip`` into
  the producing operator's requantization clamp (as it folds a ``Relu``), so a 4-bit
  activation is an 8-bit one whose requantizer saturates at 4 bits: the accelerator's
  datapath is unchanged, and onnxruntime runs the rewritten model with QONNX's values.

Only where ``x / scale`` falls exactly halfway between two integers and ``zeropt`` is odd do
the two differ: ``QuantizeLinear`` rounds before it adds the zero point, ``Quant`` after
(half to even either way); Brevitas' activations have a zero point of 0.

Refused with an :class:`~ffacc.compiler.onnx_import.ImportError_` naming the node: other
QONNX operators (``BipolarQuant``, ``Trunc``, ``MultiThreshold``, ...), an activation of more
than 8 bits or with a scale per channel, an activation rounding mode other than
``ROUND``/``HALF_EVEN`` (the requantizer rounds to nearest), a non-constant scale, zero point
or bit width, and a zero point that is not an integer.
"""

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .onnx_import import ImportError_, _attrs, _copy_fields, _label

__all__ = ["QONNX_DOMAINS", "is_qonnx", "from_qonnx", "qlimits", "uniform_qonnx"]

QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas",
                 "finn")
_ROUND = {"ROUND": np.round, "HALF_EVEN": np.round, "CEIL": np.ceil, "FLOOR": np.floor,
          "UP": lambda v: np.sign(v) * np.ceil(np.abs(v)), "DOWN": np.fix,
          "HALF_UP": lambda v: np.sign(v) * np.floor(np.abs(v) + 0.5),
          "HALF_DOWN": lambda v: np.sign(v) * np.ceil(np.abs(v) - 0.5)}


def qlimits(signed, narrow, bits):
    """``(qmin, qmax)`` of a ``bits``-bit QONNX ``Quant``."""
    if signed:
        return -(1 << (bits - 1)) + bool(narrow), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1 - bool(narrow)


def is_qonnx(model):
    """Whether ``model`` (a ModelProto) has a node of a QONNX domain."""
    return any(n.domain in QONNX_DOMAINS for n in model.graph.node)


def _err(node, why):
    return ImportError_(f"node {_label(node)!r} ({node.op_type}): {why}")


def _channel_axis(node, x_shape, scale):
    """The one axis along which a constant's scale varies (None: one scale)."""
    if scale.size == 1:
        return None
    s = scale.reshape((1,) * (len(x_shape) - scale.ndim) + scale.shape)
    axes = [a for a, d in enumerate(s.shape) if d != 1]
    if len(axes) != 1 or s.shape[axes[0]] != x_shape[axes[0]]:
        raise _err(node, f"scale of shape {scale.shape} on a constant of shape {x_shape}: "
                         f"only one scale or one per channel of a single axis is supported")
    return axes[0]


# operators that move values (or pick one of them): on a quantized activation their output
# is a value of the same quantization
_MOVES = ("MaxPool", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Transpose")


def _requantize_moves(nodes, qparams, quant_heads):
    """QONNX lets a ``MaxPool`` or a ``Flatten`` on a quantized activation feed the next
    operator as it is; the QDQ form quantizes every operator's output. Each such output that
    no ``Quant`` reads is quantized again with its input's parameters (exactly: it is one of
    the input's values) by a ``QuantizeLinear`` -> ``DequantizeLinear`` pair.
    ``quant_heads``: the ids of the first node of each rewritten activation ``Quant``."""
    consumers = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    out = []
    for n in nodes:
        out.append(n)
        if n.op_type not in _MOVES or not n.input or n.input[0] not in qparams or \
                len(n.output) != 1:
            continue
        y = n.output[0]
        qparams[y] = qparams[n.input[0]]
        readers = consumers.get(y, [])
        if readers and all(id(r) in quant_heads for r in readers):
            continue            # a Quant's QuantizeLinear (or its Clip) reads it
        raw = f"{y}__moved"
        moved = onnx.NodeProto()
        moved.CopyFrom(n)               # the caller's model stays as it was
        moved.output[0] = raw
        out[-1] = moved
        s, z = qparams[y]
        out.append(helper.make_node("QuantizeLinear", [raw, s, z], [f"{y}__q"],
                                    name=f"{_label(n)}__requant_q"))
        out.append(helper.make_node("DequantizeLinear", [f"{y}__q", s, z], [y],
                                    name=f"{_label(n)}__requant_dq"))
    return out


def from_qonnx(model):
    """``(model, notes)``: ``model`` (a ModelProto) with every QONNX ``Quant`` rewritten into
    standard ONNX (see the module's description); a model without QONNX nodes is returned as
    it is, with no notes."""
    if not is_qonnx(model):
        return model, []
    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for n in g.node:
        if n.op_type == "Constant" and "value" in _attrs(n):
            consts[n.output[0]] = numpy_helper.to_array(_attrs(n)["value"])
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    nodes, inits = [], []
    qparams = {}                # activation -> (scale, zero point) names of its quantization
    quant_heads = set()         # the first node of each activation Quant's rewrite
    n_weights = n_acts = n_narrow = 0
    for node in g.node:
        if node.domain not in QONNX_DOMAINS:
            nodes.append(node)
            continue
        if node.op_type != "Quant":
            raise _err(node, f"QONNX {node.op_type} is not supported: ffacc reads Quant nodes "
                             f"(2-8-bit activations, 2-32-bit constants)")
        if len(node.input) != 4 or len(node.output) != 1:
            raise _err(node, "Quant takes x, scale, zeropt and bitwidth and gives one output")
        x, s_name, z_name, b_name = node.input
        for what, name in (("scale", s_name), ("zeropt", z_name), ("bitwidth", b_name)):
            if name not in consts:
                raise _err(node, f"{what} {name!r} must be a constant")
        scale = consts[s_name].astype(np.float32)
        zp = consts[z_name].astype(np.float32)
        bw = consts[b_name].reshape(-1)
        if bw.size != 1 or bw[0] != np.round(bw[0]) or not 2 <= bw[0] <= 32:
            raise _err(node, f"bit width {bw.tolist()} is not one integer of 2 to 32 (1-bit "
                             f"models are not supported)")
        bits = int(bw[0])
        if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise _err(node, f"scale {scale.reshape(-1)[:4].tolist()} is not positive")
        if not np.array_equal(zp, np.round(zp)):
            raise _err(node, f"zero point {zp.reshape(-1)[:4].tolist()} is not an integer")
        a = _attrs(node)
        signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
        mode = a.get("rounding_mode", b"ROUND")
        mode = (mode.decode() if isinstance(mode, bytes) else str(mode)).upper()
        if mode not in _ROUND:
            raise _err(node, f"rounding mode {mode!r} is not a QONNX rounding mode")
        qmin, qmax = qlimits(signed, narrow, bits)
        if zp.size and not (np.all(zp >= qmin) and np.all(zp <= qmax)):
            raise _err(node, f"zero point outside {qmin}..{qmax}")
        y = node.output[0]
        if x in consts:
            # a constant: its integers now, as QONNX's executor computes them (in float32)
            xv = consts[x].astype(np.float32)
            axis = _channel_axis(node, xv.shape, scale)
            q = _ROUND[mode](np.clip(xv / scale + zp, qmin, qmax))
            dtype = np.int32 if bits > 8 or qmax > 255 else np.int8 if signed else np.uint8
            if bits > 8 and (qmin < -2 ** 31 or qmax >= 2 ** 31):
                raise _err(node, f"{bits}-bit constant does not fit int32")
            s1 = scale.reshape(-1) if axis is not None else scale.reshape(())
            z1 = np.broadcast_to(zp.reshape(-1) if zp.size > 1 else zp.reshape(()),
                                 s1.shape).astype(dtype)
            names = (f"{y}__int", f"{y}__scale", f"{y}__zp")
            inits += [numpy_helper.from_array(q.astype(dtype), names[0]),
                      numpy_helper.from_array(s1, names[1]),
                      numpy_helper.from_array(z1, names[2])]
            kw = {"axis": axis} if axis is not None else {}
            nodes.append(helper.make_node("DequantizeLinear", list(names), [y],
                                          name=f"{_label(node)}__dq", **kw))
            n_weights += 1
            continue
        # an activation
        if bits > 8:
            raise _err(node, f"a {bits}-bit activation: the accelerator computes activations "
                             f"of at most 8 bits")
        if scale.size != 1 or zp.size != 1:
            raise _err(node, "an activation must be quantized per tensor (one scale and zero "
                             "point)")
        if mode not in ("ROUND", "HALF_EVEN"):
            raise _err(node, f"rounding mode {mode} on an activation: the requantizer rounds "
                             f"to nearest (ROUND)")
        dtype = np.int8 if signed else np.uint8
        info = np.iinfo(dtype)
        s0, z0 = scale.reshape(()), zp.reshape(()).astype(dtype)
        src = x
        if (qmin, qmax) != (info.min, info.max):
            lo = np.float32((qmin - float(z0)) * s0)
            hi = np.float32((qmax - float(z0)) * s0)
            src = f"{y}__clip"
            if opset >= 11:
                inits += [numpy_helper.from_array(lo, f"{y}__lo"),
                          numpy_helper.from_array(hi, f"{y}__hi")]
                nodes.append(helper.make_node("Clip", [x, f"{y}__lo", f"{y}__hi"], [src],
                                              name=f"{_label(node)}__clip"))
            else:
                nodes.append(helper.make_node("Clip", [x], [src], name=f"{_label(node)}__clip",
                                              min=float(lo), max=float(hi)))
            n_narrow += 1
        inits += [numpy_helper.from_array(s0, f"{y}__scale"),
                  numpy_helper.from_array(np.asarray(z0, dtype=dtype), f"{y}__zp")]
        qn = f"{y}__q"
        nodes.append(helper.make_node("QuantizeLinear", [src, f"{y}__scale", f"{y}__zp"], [qn],
                                      name=f"{_label(node)}__q"))
        # the rewrite's first node, which reads x: the Clip where there is one
        quant_heads.add(id(nodes[-2] if src != x else nodes[-1]))
        nodes.append(helper.make_node("DequantizeLinear", [qn, f"{y}__scale", f"{y}__zp"], [y],
                                      name=f"{_label(node)}__dq"))
        qparams[y] = (f"{y}__scale", f"{y}__zp")
        n_acts += 1
    nodes = _requantize_moves(nodes, qparams, quant_heads)
    used = {i for n in nodes for i in n.input} | {o.name for o in g.output}
    # copied without its nodes and initializers (the weights are copied once)
    out = _copy_fields(model, onnx.ModelProto(), {"graph", "opset_import"})
    _copy_fields(g, out.graph, {"node", "initializer"})
    out.graph.node.extend(nodes)
    # the float constants the Quant nodes read are gone with them
    out.graph.initializer.extend(i for i in list(g.initializer) + inits if i.name in used)
    keep = [o for o in model.opset_import if o.domain not in QONNX_DOMAINS]
    out.opset_import.extend(keep)
    if not any(o.domain in ("", "ai.onnx") for o in keep):
        out.opset_import.append(helper.make_opsetid("", 13))
    # value_info of the QONNX graph may carry FINN datatype annotations: they stay valid
    note = (f"QONNX: {n_weights} constant and {n_acts} activation Quant node(s) as "
            f"DequantizeLinear / QuantizeLinear")
    if n_narrow:
        note += f" ({n_narrow} activation(s) of fewer than 8 bits clamped by a Clip)"
    return out, [note]


def _mse_scale(v, qmin, qmax, axis=None):
    """The scale (per tensor, or per slice along ``axis``) among fractions of the largest
    magnitude whose fake quantization of ``v`` has the least squared error."""
    v = np.asarray(v, dtype=np.float64)
    red = None if axis is None else tuple(a for a in range(v.ndim) if a != axis)
    top = np.abs(v).max(axis=red, keepdims=axis is not None)
    top = np.where(top > 0, top, 1.0)
    best, best_err = None, None
    for f in np.linspace(0.2, 1.0, 33):
        s = top * f / max(qmax, -qmin)
        err = ((np.clip(np.round(v / s), qmin, qmax) * s - v) ** 2).mean(axis=red,
                                                                          keepdims=axis is not None)
        if best is None:
            best, best_err = s, err
        else:
            better = err < best_err
            best, best_err = np.where(better, s, best), np.where(better, err, best_err)
    return best


def uniform_qonnx(model, calib, bits=4, act_bits=None, out_bits=8, in_bits=8):
    """A float model quantized after training to ``bits``-bit weights and ``act_bits``-bit
    activations (``bits`` if None), written as QONNX ``Quant`` nodes -- the model Brevitas
    would export for the same quantization, without Brevitas.

    Weights of ``Conv``/``Gemm`` (``transB=1``) are signed, narrow and per output channel;
    the graph input is ``in_bits``, each ``Relu`` output unsigned ``act_bits``, and an
    operator output no ``Relu`` reads (the logits) signed ``out_bits``. Scales are the
    fractions of the largest magnitude with the least squared error, from onnxruntime's float
    run on ``calib`` (N images). Biases stay float (the compiler quantizes them at the
    accumulator's scale)."""
    import onnxruntime as ort

    act_bits = act_bits or bits
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in g.output}
    probe.graph.output.extend(helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None)
                              for n in g.node for o in n.output if o not in have)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    xin = g.input[0].name
    runs = [dict(zip(names, sess.run(None, {xin: calib[i:i + 1]}))) for i in range(len(calib))]
    vals = {n: np.concatenate([r[n] for r in runs]) for n in names}
    vals[xin] = np.asarray(calib, dtype=np.float32)

    consts, nodes = [], []

    def const(name, v):
        consts.append(numpy_helper.from_array(np.asarray(v, dtype=np.float32), name))
        return name

    def quant(x, y, scale, b, signed, narrow=0):
        nodes.append(helper.make_node(
            "Quant", [x, const(y + "_scale", scale), const(y + "_zeropt", 0.0),
                      const(y + "_bitwidth", b)], [y], name=y, domain=QONNX_DOMAINS[0],
            signed=int(signed), narrow=int(narrow), rounding_mode="ROUND"))
        return y

    graph_outs = {o.name for o in g.output}

    def act_quant(x, b, signed, node=None):
        """A Quant of value ``x`` (``node``'s output): named ``x`` if ``x`` is a graph output
        (``node`` then writes ``x_float``), else ``x_q``."""
        qmin, qmax = qlimits(signed, False, b)
        scale = float(_mse_scale(vals[x], qmin, qmax))
        if node is not None and x in graph_outs:
            node.output[0] = f"{x}_float"
            return quant(f"{x}_float", x, scale, b, signed)
        return quant(x, f"{x}_q", scale, b, signed)

    rename = {}
    relu_in = {n.input[0] for n in g.node if n.op_type == "Relu"}
    rename[xin] = act_quant(xin, in_bits, bool(vals[xin].min() < 0))
    for n in g.node:
        node = onnx.NodeProto()
        node.CopyFrom(n)
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)
        if n.op_type in ("Conv", "Gemm"):
            if n.op_type == "Gemm" and not any(a.name == "transB" and a.i for a in n.attribute):
                raise ImportError_(f"node {_label(n)!r} (Gemm): per-channel weights need "
                                   f"transB=1")
            w = inits[n.input[1]]
            qmin, qmax = qlimits(True, True, bits)
            s = _mse_scale(w, qmin, qmax, axis=0)
            node.input[1] = quant(const(f"{n.input[1]}_float", w), f"{n.input[1]}_q", s, bits,
                                  True, narrow=True)
        nodes.append(node)
        if n.op_type == "Relu":
            rename[n.output[0]] = act_quant(n.output[0], act_bits, False, node)
        elif n.op_type in ("Conv", "Gemm") and n.output[0] not in relu_in:
            rename[n.output[0]] = act_quant(n.output[0], out_bits, True, node)
    outs = list(g.output)
    used = {i for n in nodes for i in n.input}
    keep = [t for t in g.initializer if t.name in used] + consts
    graph = helper.make_graph(nodes, g.name or "model", list(g.input), outs, keep)
    opset = [o for o in model.opset_import if o.domain in ("", "ai.onnx")] or \
        [helper.make_opsetid("", 13)]
    return helper.make_model(graph, opset_imports=opset + [helper.make_opsetid(
        QONNX_DOMAINS[0], 1)])
