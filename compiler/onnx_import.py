"""ONNX (QDQ or QOperator, as onnxruntime's quantizer writes them) -> the integer IR.

QDQ: every float operator sits between ``DequantizeLinear`` nodes on its inputs (activations
and int8/int32 initializers) and a ``QuantizeLinear`` on its output; ``Relu``/``Clip`` between
the operator and its ``QuantizeLinear`` fold into the requantization clamp. QOperator:
``QLinearConv``, ``QLinearMatMul``, ``QGemm``, ``QLinearAdd``, ``QLinearAveragePool``,
``QLinearGlobalAveragePool`` and ``MaxPool``/``Flatten``/``Reshape`` on quantized tensors.
A BatchNormalization left in float by the quantizer (``quantize_static`` without
pre-processing leaves it after a quantized Conv, between a DequantizeLinear and a
QuantizeLinear) becomes a per-channel affine map (:class:`~ffacc.compiler.ir.ChannelAffine`,
an ``ADD`` of each channel with itself on the accelerator): folded into the Conv's
requantization it would round once where onnxruntime rounds twice (``ffacc quantize`` folds it
before quantizing, with onnxruntime's pre-processing). Any other operator becomes a
:class:`~ffacc.compiler.ir.HostFloat` node (run by onnxruntime on the host); an operator that
cannot be expressed at all raises :class:`ImportError_` naming the node, op and reason.

What the quantizer left in float runs on the host in float: an operator reading a float value
(a float host operator's output, the float graph input), adding a constant, or whose output
reaches no QuantizeLinear. Float values pass between such operators as float32 tensors of the
IR, and a run of them joined by float values becomes one
:class:`~ffacc.compiler.ir.HostGraph` (one onnxruntime graph, one host segment).

Before that the graph is brought into the form a PyTorch export quantized by onnxruntime really
has: a model older than opset 13 is brought to 13 by onnx's version converter (legacy forms
such as Pad-2 or Upsample become current ones; onnxruntime's quantizer writes per-channel
``axis`` attributes even at opsets that lack them), a dynamic batch dimension of the inputs
is pinned to 1 (and noted in ``Graph.notes``), inference no-ops (``Identity``, ``Dropout``,
one-input ``Sum``/``Max``/``Min``/``Mean``) are removed, a ``DequantizeLinear`` /
``QuantizeLinear`` pair left around them becomes a plain alias (or a host requantization),
and every node whose inputs are all constants -- ``Shape`` of a
tensor of known shape counting as a constant -- is evaluated at import time, so that
``x.view(x.size(0), -1)`` (``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``) is a plain
reshape. A two-input ``Sum`` is an ``Add``.
"""

from math import floor

import numpy as np
import onnx
from onnx import numpy_helper, helper

from .ir import (Add, Alias, AvgPool, ChannelAffine, Concat, Conv, Gemm, Graph, HostFloat,
                 HostGraph, HostQuant, Transpose,
                 MaxPool, QTensor, quantize)

__all__ = ["import_onnx", "pin_batch", "to_opset13", "ImportError_", "UnsupportedModel"]


class ImportError_(ValueError):
    """A model that cannot be compiled (the message names the node, op and reason)."""


UnsupportedModel = ImportError_

_DTYPES = {onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT8: "int8"}


def _label(node):
    """A node's name for reports and errors: its ONNX name, else its own (first) output's."""
    return node.name or node.output[0]


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pads(attrs, nd=2):
    p = list(attrs.get("pads", [0] * (2 * nd)))
    return (p[0], p[1], p[2], p[3])


def _conv_out(h, k, s, p0, p1, d=1):
    return floor((h + p0 + p1 - d * (k - 1) - 1) / s) + 1


# nodes never evaluated at import time: weights stay integer behind their DequantizeLinear,
# random operators are not constants, control flow has subgraphs
_NO_FOLD = {"DequantizeLinear", "RandomNormal", "RandomUniform", "RandomNormalLike",
            "RandomUniformLike", "Multinomial", "Bernoulli", "If", "Loop", "Scan"}
# QDQ operators with an accelerator (or integer) handler: each runs in float on the host
# instead when the quantizer left it in float (_Importer.runs_in_float)
_QDQ_OPS = {"Conv", "Gemm", "MatMul", "Add", "Sum", "BatchNormalization", "Concat", "MaxPool",
            "AveragePool", "Transpose",
            "GlobalAveragePool", "Reshape", "Flatten", "Squeeze", "Unsqueeze"}
# The integer add (golden.add_params, 14-bit input multipliers) is off by up to
# 255 * 0.5 * max(sa, sb) / (2**14 * sy) LSB: an add whose larger input scale is more than
# 64x its output's (a degenerate calibration, say) runs in float on the host instead.
ADD_MAX_SCALE_RATIO = 64
# where a QOperator node's inputs give its output's scale and zero point
_QOUT = {"QLinearConv": (6, 7), "QLinearMatMul": (6, 7), "QLinearAdd": (6, 7),
         "QLinearMul": (6, 7), "QLinearAveragePool": (3, 4), "QLinearGlobalAveragePool": (3, 4),
         "QLinearConcat": (0, 1), "QGemm": (7, 8), "QLinearSigmoid": (3, 4),
         "QLinearLeakyRelu": (3, 4), "QLinearSoftmax": (3, 4)}
# pure data movement: applied to the integers of a per-tensor DequantizeLinear'd initializer
_MOVES = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Slice", "Gather",
          "Expand", "Tile"}


def _dim_label(d):
    if d.HasField("dim_param"):
        return repr(d.dim_param)
    return str(d.dim_value) if d.HasField("dim_value") else "unknown"


def _static(d):
    return d.HasField("dim_value") and d.dim_value > 0


def pin_batch(model, batch):
    """A copy of ``model`` whose inputs' (and outputs') dynamic batch dimension is ``batch``;
    returns ``(model, notes)``. Any other dynamic input dimension is an :class:`ImportError_`."""
    if batch != 1:
        raise ImportError_(f"batch={batch!r} is not supported: the accelerator runs one image "
                           f"at a time (Conv/Gemm are lowered for batch 1); run the images "
                           f"of a batch one by one")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {i.name for i in m.graph.initializer}
    notes = []
    for vi in m.graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            raise ImportError_(f"input {vi.name!r} has no shape; export the model with a "
                               f"fixed input shape")
        dims = tt.shape.dim
        shape = "x".join(str(d.dim_value) if _static(d) else (d.dim_param or "?") for d in dims)
        for i, d in enumerate(dims):
            if i == 0 and len(dims) >= 2:
                if not _static(d):
                    notes.append(f"input {vi.name!r}: dynamic batch dimension {_dim_label(d)} "
                                 f"pinned to {batch}")
                    d.dim_value = batch
                elif d.dim_value != batch:
                    raise ImportError_(f"input {vi.name!r} has batch {d.dim_value} (shape "
                                       f"{shape}); only batch 1 is supported (the accelerator "
                                       f"runs one image at a time): export with batch 1 or a "
                                       f"dynamic batch")
            elif not _static(d):
                raise ImportError_(f"input {vi.name!r}: dimension {i} is {_dim_label(d)} (shape "
                                   f"{shape}); only the batch dimension (dimension 0 of an input "
                                   f"of rank 2 or more) may be dynamic: export the model with "
                                   f"a fixed input size")
    for vi in m.graph.output:
        dims = vi.type.tensor_type.shape.dim if vi.type.HasField("tensor_type") else []
        for i, d in enumerate(dims):
            if not _static(d):
                if i == 0 and len(dims) >= 2:
                    d.dim_value = batch
                else:
                    d.Clear()           # unknown: shape inference fills it in
    del m.graph.value_info[:]           # stale (dynamic) shapes; inferred again
    return m, notes


def _is_noop(node, used, inits):
    """Identity, Dropout whose mask is not read (inference), one-input Sum/Max/Min/Mean."""
    if node.domain not in ("", "ai.onnx") or not node.input or not node.input[0]:
        return False
    if node.op_type == "Identity":
        return True
    if node.op_type in ("Sum", "Max", "Min", "Mean"):
        return len(node.input) == 1
    if node.op_type == "Dropout":
        if len(node.output) > 1 and node.output[1] and node.output[1] in used:
            return False
        if len(node.input) > 2 and node.input[2]:          # training_mode
            tm = inits.get(node.input[2])
            return tm is not None and not bool(np.asarray(tm).reshape(-1)[0])
        return True
    return False


def _remove_noops(nodes, inits, graph_inputs, graph_outputs):
    """``nodes`` without inference no-ops, their readers rewired to the no-op's input (a no-op
    that writes a graph output instead renames its input to that output)."""
    used = {i for n in nodes for i in n.input} | set(graph_outputs)
    sub, rename, kept = {}, {}, []
    for n in nodes:
        for k, i in enumerate(n.input):
            if i in sub:
                n.input[k] = sub[i]
        if _is_noop(n, used, inits):
            src, dst = n.input[0], n.output[0]
            if dst not in graph_outputs:
                sub[dst] = src
                continue
            if not (src in inits or src in graph_inputs or src in graph_outputs or
                    src in rename):
                rename[src] = dst
                continue
        kept.append(n)
    for n in kept:
        for seq in (n.input, n.output):
            for k, i in enumerate(seq):
                if i in rename:
                    seq[k] = rename[i]
    return kept


def _quantize_before_reshape(nodes, inits, graph_outputs):
    """``op -> Reshape -> QuantizeLinear`` (onnxruntime leaves an operator it does not quantize,
    such as ``Sum``, unquantized up to the reshape) becomes ``op -> QuantizeLinear -> Reshape``:
    per-tensor quantization commutes with moving elements, and the operator's output is then
    quantized where the operator writes it."""
    producer = {o: n for n in nodes for o in n.output}
    consumers = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    swap = {}
    for r in nodes:
        if r.op_type not in ("Reshape", "Flatten", "Squeeze", "Unsqueeze") or \
                r.domain not in ("", "ai.onnx") or r.output[0] in graph_outputs:
            continue
        src = producer.get(r.input[0])
        cons = consumers.get(r.output[0], [])
        if src is None or src.op_type == "DequantizeLinear" or len(cons) != 1:
            continue
        q = cons[0]
        if q.op_type != "QuantizeLinear" or q.input[0] != r.output[0] or \
                np.size(inits.get(q.input[1], [0, 0])) != 1:
            continue
        mid = q.output[0] + "__before_" + r.op_type.lower()
        new_q, new_r = onnx.NodeProto(), onnx.NodeProto()
        new_q.CopyFrom(q)
        new_q.input[0], new_q.output[0] = r.input[0], mid
        new_r.CopyFrom(r)
        new_r.input[0], new_r.output[0] = mid, q.output[0]
        swap[id(r)], swap[id(q)] = new_q, new_r
    return [swap.get(id(n), n) for n in nodes]


def _merge_float_regions(ops, tensors, graph_outputs):
    """Consecutive float host operators joined by float values (what the quantizer left in
    float: ``LRN -> MaxPool``, ``Sum -> Relu -> AveragePool -> Reshape``) become one
    :class:`HostGraph`: one onnxruntime graph, one host segment, and the float values between
    its nodes are neither stored nor passed through the accelerator's memory."""
    groups = []
    for op in ops:
        prev = groups[-1] if groups else None
        if isinstance(op, HostFloat) and prev and isinstance(prev[-1], HostFloat) and \
                any(not tensors[n].quantized for o in prev for n in o.outputs
                    if n in op.inputs):
            prev.append(op)
        else:
            groups.append([op])
    out = []
    for k, grp in enumerate(groups):
        if len(grp) == 1:
            out.append(grp[0])
            continue
        made = {n for o in grp for n in o.outputs}
        later = {n for g2 in groups[k + 1:] for o in g2 for n in o.inputs} | graph_outputs
        ins = list(dict.fromkeys(n for o in grp for n in o.inputs if n not in made))
        outs = [n for o in grp for n in o.outputs if n in later]
        for o in grp:
            for n in o.outputs:
                if n not in later:
                    tensors.pop(n, None)        # lives only inside the region
        nodes, inits = [], {}
        for o in grp:
            node = onnx.NodeProto()
            node.ParseFromString(o.node_proto)
            nodes.append(node)
            inits.update(o.initializers)
        graph = helper.make_graph(nodes, grp[0].name, [], [])
        out.append(HostGraph(grp[0].name, ins, outs, graph_proto=graph.SerializeToString(),
                             op_type="+".join(o.op_type for o in grp), initializers=inits))
    return out


def to_opset13(model):
    """``model`` brought to opset 13 by onnx's version converter if its default-domain opset
    is older, and the note saying so (none if it was 13 or newer). Legacy forms (``Pad`` with
    attributes, ``Upsample``, ``Squeeze`` axes as attributes...) become their current ones,
    and a model onnxruntime's quantizer wrote at opset 10-12 with per-channel weights, whose
    ``DequantizeLinear`` carries an ``axis`` that opset does not have, becomes valid."""
    v = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if v is None or v >= 13:
        return model, []
    from onnx import version_converter
    try:
        return version_converter.convert_version(model, 13), \
            [f"opset {v} brought to 13 by onnx's version converter"]
    except Exception as e:            # noqa: BLE001 - the converter raises several types
        raise ImportError_(f"the model's opset {v} is older than 13 and onnx's version "
                           f"converter cannot bring it to 13: {e}") from e


def _copy_fields(src, dst, skip):
    """Copy the set fields of protobuf message ``src`` into ``dst``, except those in ``skip``."""
    for fd, value in src.ListFields():
        if fd.name in skip:
            continue
        repeated = fd.is_repeated if hasattr(fd, "is_repeated") else \
            fd.label == fd.LABEL_REPEATED              # protobuf < 5.28
        if repeated:
            getattr(dst, fd.name).extend(value)
        elif fd.message_type is not None:
            getattr(dst, fd.name).CopyFrom(value)
        else:
            setattr(dst, fd.name, value)
    return dst


def _skeleton(model, limit=4096):
    """``model`` with each initializer of more than ``limit`` elements turned into a graph
    input of its type and shape: all the checker and shape inference need, without copying
    and serializing the weights (over a second of VGG-16's compile). The weights' contents are
    checked where they are read (``numpy_helper.to_array``)."""
    g = model.graph
    big = [t for t in g.initializer if int(np.prod(t.dims)) > limit]
    if not big:
        return model
    graph = _copy_fields(g, onnx.GraphProto(), {"initializer"})
    graph.initializer.extend(t for t in g.initializer if int(np.prod(t.dims)) <= limit)
    inputs = {i.name for i in g.input}
    graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                       for t in big if t.name not in inputs)
    m = _copy_fields(model, onnx.ModelProto(), {"graph"})
    m.graph.CopyFrom(graph)
    return m


class _Importer:
    def __init__(self, model, batch=1):
        from .qonnx import from_qonnx
        model, qonnx_notes = from_qonnx(model)
        model, upgraded = to_opset13(model)
        try:
            onnx.checker.check_model(_skeleton(model))
        except Exception as e:        # noqa: BLE001 - onnx raises several types
            raise ImportError_(f"invalid ONNX model: {e}") from e
        model, self.notes = pin_batch(model, batch)
        self.notes[:0] = qonnx_notes + upgraded
        self.model = model
        g = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                          onnx.defs.onnx_opset_version())
        self.float_shapes = {}
        try:                          # on the pinned model, before no-ops are rewired
            inferred = onnx.shape_inference.infer_shapes(_skeleton(model))
            for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + \
                    list(inferred.graph.output):
                dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
                if dims and all(d > 0 for d in dims):
                    self.float_shapes[vi.name] = tuple(dims)
        except Exception:             # noqa: BLE001 - shapes are a convenience here
            pass
        self.inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        for n in g.node:
            if n.op_type == "Constant":
                a = _attrs(n)
                self.inits[n.output[0]] = (numpy_helper.to_array(a["value"]) if "value" in a
                                           else np.asarray(self._evaluate(n, {})[0]))
        self.nodes = _remove_noops([n for n in g.node if n.op_type != "Constant"], self.inits,
                                   {i.name for i in g.input}, {o.name for o in g.output})
        self.nodes = _quantize_before_reshape(self.nodes, self.inits,
                                              {o.name for o in g.output})
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.tensors = {}
        self.ops = []
        self.float_inputs, self.float_outputs = {}, {}
        self.graph_outputs = [o.name for o in g.output]
        self.graph_inputs = [i.name for i in g.input]
        self.alias = {}               # float tensor name -> quantized tensor name
        self.float_of = {}            # float output of an operator -> its quantized tensor

    # -- helpers ------------------------------------------------------------------------
    def err(self, node, why):
        return ImportError_(f"node {_label(node)!r} ({node.op_type}): {why}")

    def const(self, name, node):
        if name not in self.inits:
            raise self.err(node, f"input {name!r} must be a constant initializer")
        return self.inits[name]

    def int_weights(self, a, name, node):
        """Integer weights in the type the model stores them in (int8 or uint8 from the
        quantizer; at 8 bytes a weight VGG-16's would take 1.1 GB). Every consumer widens
        before it computes."""
        if a.dtype.kind not in "iu":
            raise self.err(node, f"weight {name!r} is {a.dtype}, not an integer type")
        return a if a.dtype.itemsize <= 2 else a.astype(np.int64)

    def scalar(self, name, node):
        return self.const(name, node).reshape(-1)

    def qtensor(self, name, shape, scale, zp, node):
        zp_arr = self.const(zp, node) if isinstance(zp, str) else zp
        dtype = _DTYPES.get(onnx.helper.np_dtype_to_tensor_dtype(np.asarray(zp_arr).dtype))
        if dtype is None:
            raise self.err(node, f"zero point of {name!r} is {np.asarray(zp_arr).dtype}; only "
                                 f"8-bit activations are supported")
        sc = self.const(scale, node) if isinstance(scale, str) else scale
        if np.size(sc) != 1:
            raise self.err(node, f"activation {name!r} must be quantized per tensor")
        t = QTensor(name, tuple(int(d) for d in shape), dtype, float(np.asarray(sc).reshape(-1)[0]),
                    int(np.asarray(zp_arr).reshape(-1)[0]))
        self.tensors[name] = t
        return t

    def dq_source(self, name):
        """For a float tensor produced by DequantizeLinear: (quantized input name, node)."""
        n = self.producer.get(name)
        if n is not None and n.op_type == "DequantizeLinear":
            return n.input[0], n
        return None, None

    def act(self, float_name, node):
        """The quantized tensor behind a float activation input of a QDQ operator."""
        if float_name in self.alias:
            return self.alias[float_name]
        q, dq = self.dq_source(float_name)
        if q is None or q in self.inits:
            raise self.err(node, f"input {float_name!r} is not a dequantized activation; "
                                 f"quantize the model (QDQ) first")
        if q not in self.tensors:
            raise self.err(node, f"activation {q!r} has no known quantization")
        return q

    def weight(self, float_name, node):
        """int weights, per-channel scale and zero point of a DequantizeLinear'd initializer."""
        q, dq = self.dq_source(float_name)
        if q is None or q not in self.inits:
            if float_name in self.inits:
                raise self.err(node, f"weight {float_name!r} is float; the model is not quantized")
            raise self.err(node, f"weight {float_name!r} must be a constant")
        w = self.int_weights(self.inits[q], q, node)
        scale = self.scalar(dq.input[1], dq).astype(np.float64)
        zp = (self.scalar(dq.input[2], dq).astype(np.int64) if len(dq.input) > 2
              else np.zeros(1, dtype=np.int64))
        return w, scale, zp

    def bias(self, name, node, x_scale, w_scale, n_out):
        if not name:
            return np.zeros(n_out, dtype=np.int64)
        q, dq = self.dq_source(name)
        if q is not None and q in self.inits:
            bq = np.broadcast_to(self.inits[q].astype(np.int64).reshape(-1), (n_out,))
            bs = np.broadcast_to(self.scalar(dq.input[1], dq).astype(np.float64), (n_out,))
            bz = self.scalar(dq.input[2], dq).astype(np.int64) if len(dq.input) > 2 else 0
            acc_scale = np.float64(x_scale) * np.broadcast_to(w_scale, (n_out,))
            if np.all(bz == 0) and np.allclose(bs, acc_scale, rtol=1e-6, atol=0):
                return bq.copy()
            # quantized with another scale (a bias shared by two operators): rescale
            return np.rint((bq - bz) * bs / acc_scale).astype(np.int64)
        if name in self.inits:          # float bias: quantize with x_scale * w_scale
            return np.rint(self.inits[name].astype(np.float64) /
                           (x_scale * np.broadcast_to(w_scale, (n_out,)))).astype(np.int64)
        raise self.err(node, f"bias {name!r} must be a constant")

    def dequantized_const(self, dq):
        """The float32 values of a ``DequantizeLinear`` of an initializer (per tensor, or per
        channel along its ``axis``, 1 by default)."""
        q = self.inits[dq.input[0]].astype(np.float32)
        scale = self.scalar(dq.input[1], dq).astype(np.float32)
        zp = (self.scalar(dq.input[2], dq).astype(np.float32) if len(dq.input) > 2
              else np.zeros(1, np.float32))
        if scale.size > 1 or zp.size > 1:
            axis = int(_attrs(dq).get("axis", 1)) % max(q.ndim, 1)
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        return ((q - zp) * scale).astype(np.float32)

    def out_q(self, float_out, node):
        """Follow a QDQ operator's float output through Relu/Clip to its QuantizeLinear."""
        lo = hi = None
        cur = float_out
        seen = []
        while True:
            seen.append(cur)
            # a Shape reader only needs the (static) shape: it is folded when it is reached
            cons = [c for c in self.consumers.get(cur, []) if c.op_type != "Shape"]
            if len(cons) != 1:
                raise self.err(node, f"output {cur!r} must feed exactly one QuantizeLinear "
                                     f"(it feeds {len(cons)} nodes)")
            c = cons[0]
            if c.op_type == "QuantizeLinear":
                self.done.add(id(c))
                self.float_of.update((f, c.output[0]) for f in seen)
                return c, lo, hi
            if c.op_type == "Relu":
                lo = max(lo, 0.0) if lo is not None else 0.0
            elif c.op_type == "Clip":
                a = _attrs(c)
                mn = float(self.scalar(c.input[1], c)[0]) if len(c.input) > 1 and c.input[1] \
                    else a.get("min", -np.inf)
                mx = float(self.scalar(c.input[2], c)[0]) if len(c.input) > 2 and c.input[2] \
                    else a.get("max", np.inf)
                lo = mn if lo is None else max(lo, mn)
                hi = mx if hi is None else min(hi, mx)
            else:
                raise self.err(node, f"output {cur!r} feeds {c.op_type}, not QuantizeLinear")
            self.done.add(id(c))
            cur = c.output[0]

    def clamp(self, t, lo, hi):
        if lo is None and hi is None:
            return None
        qlo, qhi = t.qrange
        if lo is not None:
            qlo = max(qlo, int(quantize(np.float32(lo), t)))
        if hi is not None and np.isfinite(hi):
            qhi = min(qhi, int(quantize(np.float32(hi), t)))
        return (qlo, qhi)

    # -- main ---------------------------------------------------------------------------
    def run(self):
        g = self.model.graph
        self.done = set()
        for node in self.nodes:
            if id(node) in self.done or self.fold(node):
                continue
            handler = getattr(self, f"op_{node.op_type}", None)
            if node.domain not in ("", "ai.onnx", "com.microsoft"):
                raise self.err(node, f"operator domain {node.domain!r} is not supported")
            if handler is None or self.runs_in_float(node):
                self.op_host(node)
            else:
                handler(node)
        outs = []
        for o in self.graph_outputs:
            q = self.alias.get(o, o)
            if q not in self.tensors:
                raise ImportError_(f"graph output {o!r} is not produced by a supported path")
            outs.append(q)
            self.float_outputs[q] = o
        if not any(t.quantized for t in self.tensors.values()):
            raise ImportError_("no tensor of the model is quantized (no QuantizeLinear, "
                               "DequantizeLinear or QLinear operator reaches one), so nothing "
                               "can run on the accelerator: quantize it first, with ffacc "
                               "quantize or onnxruntime's quantize_static, or the model has "
                               "no operator the quantizer quantizes")
        self.ops = _merge_float_regions(self.ops, self.tensors, set(outs))
        ins = list(self.float_inputs)
        return Graph(g.name or "model", self.tensors, self.ops, ins, outs,
                     dict(self.float_inputs), dict(self.float_outputs), list(self.notes))

    def float_tensor(self, name, shape):
        """A float tensor of the IR: a value the quantizer left in float, passed between host
        operators (stored as float32; never read by the accelerator)."""
        t = QTensor(name, tuple(int(d) for d in shape), "float32", 1.0, 0)
        self.tensors[name] = t
        return t

    def is_float(self, name):
        """Whether ``name`` is a float value the quantizer left unquantized: a float tensor of
        the IR already, or a graph input read without a QuantizeLinear."""
        if name in self.tensors:
            return not self.tensors[name].quantized
        return name in self.graph_inputs and name not in self.inits

    def is_const(self, name):
        return name in self.inits or self.dq_source(name)[0] in self.inits

    def runs_in_float(self, node):
        """A QDQ operator the quantizer left in float, which therefore runs on the host: it
        reads a float value (a host operator's float output, the float graph input), adds a
        constant (a per-channel bias the quantizer treats as an activation), or its output
        reaches no QuantizeLinear (a float region up to the next one, or a float graph
        output). QOperator forms on quantized tensors keep their handlers."""
        if node.op_type not in _QDQ_OPS or node.domain not in ("", "ai.onnx"):
            return False
        ins = [i for i in node.input if i]
        if any(self.is_float(i) for i in ins):
            return True
        if node.op_type in ("Add", "Sum") and any(self.is_const(i) for i in ins):
            return True
        if ins and ins[0] in self.tensors:        # QOperator: on a quantized tensor
            return False
        return not all(self._quantized_through(o) is not None for o in node.output[:1])

    # -- import-time evaluation -----------------------------------------------------------
    def _evaluate(self, node, values):
        """Run one node on constant ``values`` (name -> array) with onnx's reference runtime."""
        from onnx.reference import ReferenceEvaluator
        try:
            return ReferenceEvaluator(node, opsets={"": self.opset}).run(None, values)
        except Exception as e:        # noqa: BLE001 - the reference runtime raises many types
            raise self.err(node, f"all its inputs are constants but it cannot be evaluated "
                                 f"at import time: {e}") from e

    def static_shape(self, name):
        """The shape of ``name`` if it is known and static, else None."""
        if name in self.inits:
            return tuple(np.shape(self.inits[name]))
        try:
            shape = self.shape_of(name)
        except ImportError_:
            return None
        return tuple(shape) if all(int(d) > 0 for d in shape) else None

    def fold(self, node):
        """Evaluate ``node`` now if its inputs are constants (``Shape`` of a tensor of known
        shape is one); its outputs become constants. A data-movement node (Reshape, ...) on a
        per-tensor dequantized initializer moves its integers instead. True if done."""
        if node.domain not in ("", "ai.onnx") or node.op_type in _NO_FOLD:
            return False
        if node.op_type == "Shape":
            shape = self.static_shape(node.input[0])
            if shape is None:
                raise self.err(node, f"the shape of {node.input[0]!r} is not known at import "
                                     f"time (only a static shape can be evaluated)")
            a = _attrs(node)
            self.inits[node.output[0]] = np.array(shape[a.get("start", 0):a.get("end")],
                                                  dtype=np.int64)
            return True
        ins = [i for i in node.input if i]
        if not ins:
            return False
        q, dq = self.dq_source(node.input[0])
        if node.op_type in _MOVES and q in self.inits and \
                np.size(self.inits[dq.input[1]]) == 1 and all(i in self.inits for i in ins[1:]):
            vals = {i: self.inits[i] for i in ins[1:]}
            vals[node.input[0]] = self.inits[q]
            moved = node.output[0] + "__moved"
            self.inits[moved] = np.asarray(self._evaluate(node, vals)[0])
            self.producer[node.output[0]] = helper.make_node(
                "DequantizeLinear", [moved] + list(dq.input[1:]), [node.output[0]],
                name=_label(node))
            return True
        # constants, also behind a DequantizeLinear (onnxruntime quantizes float shape
        # arithmetic too); the DequantizeLinear stays for the readers that want its integers
        dqs = {i: self.dq_source(i)[1] for i in ins if i not in self.inits}
        if not all(dq is not None and all(j in self.inits for j in dq.input if j)
                   for dq in dqs.values()):
            return False
        vals = {i: self.inits[i] if i not in dqs else
                self._evaluate(dqs[i], {j: self.inits[j] for j in dqs[i].input if j})[0]
                for i in ins}
        for o, v in zip(node.output, self._evaluate(node, vals)):
            if o:
                self.inits[o] = np.asarray(v)
        return True

    def shape_of(self, name):
        if name in self.tensors:
            return self.tensors[name].shape
        if name in self.alias:
            return self.tensors[self.alias[name]].shape
        if self.float_of.get(name) in self.tensors:
            return self.tensors[self.float_of[name]].shape
        if name in self.float_shapes:
            return self.float_shapes[name]
        for vi in self.model.graph.input:
            if vi.name == name:
                return tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
        raise ImportError_(f"unknown shape of tensor {name!r}")

    # -- Q / DQ ---------------------------------------------------------------------------
    def op_QuantizeLinear(self, node):
        src = node.input[0]
        if src in self.alias:            # DequantizeLinear -> QuantizeLinear (a removed no-op)
            x = self.tensors[self.alias[src]]
            y = self.qtensor(node.output[0], x.shape, node.input[1],
                             node.input[2] if len(node.input) > 2 else np.uint8(0), node)
            name = _label(node)
            if (y.dtype, y.scale, y.zero_point) == (x.dtype, x.scale, x.zero_point):
                self.ops.append(Alias(name, [x.name], [y.name]))    # the same bytes
            else:                        # requantization: dequantize, quantize on the host
                self.host_requantize(name, x.name, y.name, "Identity")
            return
        if src in self.tensors and not self.tensors[src].quantized:
            # a float value of a host region quantized: on the host, as onnxruntime does
            x = self.tensors[src]
            y = self.qtensor(node.output[0], x.shape, node.input[1],
                             node.input[2] if len(node.input) > 2 else np.uint8(0), node)
            self.host_requantize(_label(node), x.name, y.name, "QuantizeLinear")
            return
        if src in self.graph_inputs:
            t = self.qtensor(node.output[0], self.shape_of(src), node.input[1],
                             node.input[2] if len(node.input) > 2 else np.uint8(0), node)
            self.float_inputs[t.name] = src
            return
        raise self.err(node, f"quantizes {src!r}, which no supported operator produces")

    def host_requantize(self, name, x, y, op_type):
        """``y`` from ``x`` on the host as onnxruntime does: dequantize ``x`` (or take its
        float values), quantize with ``y``'s parameters."""
        ident = helper.make_node("Identity", [x], [y], name=name)
        self.ops.append(HostFloat(name, [x], [y], node_proto=ident.SerializeToString(),
                                  op_type=op_type, initializers={}))

    def add_beyond_integer(self, node, a, b, y_scale, instead):
        """Whether the integer add cannot compute ``a + b`` into ``y_scale`` within an LSB
        (see ADD_MAX_SCALE_RATIO); if so, the graph's notes say so and what runs ``instead``."""
        if max(self.tensors[a].scale, self.tensors[b].scale) / y_scale <= ADD_MAX_SCALE_RATIO:
            return False
        self.notes.append(f"{_label(node)} ({node.op_type}): an input scale is more than "
                          f"{ADD_MAX_SCALE_RATIO}x the output's, beyond the 14-bit integer "
                          f"add: {instead}")
        return True

    def op_DequantizeLinear(self, node):
        q = node.input[0]
        if q in self.inits:
            return                       # a weight or bias: read by its consumer
        if q not in self.tensors:
            raise self.err(node, f"dequantizes {q!r}, which has no known quantization")
        self.alias[node.output[0]] = q

    # -- QDQ float operators ------------------------------------------------------------
    def _conv_common(self, node, x, w, w_scale, w_zp, bias_int, yq_name, clamp_lohi, yscale, yzp):
        a = _attrs(node)
        xs = self.tensors[x]
        k = tuple(a.get("kernel_shape", w.shape[2:]))
        if len(k) != 2:
            raise self.err(node, f"only 2-D convolutions are supported (kernel {k})")
        pads = _pads(a)
        strides = tuple(a.get("strides", [1, 1]))
        dil = tuple(a.get("dilations", [1, 1]))
        group = int(a.get("group", 1))
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise self.err(node, "auto_pad is not supported; export with explicit pads")
        N, C, H, W = xs.shape
        O = w.shape[0]
        Ho = _conv_out(H, k[0], strides[0], pads[0], pads[2], dil[0])
        Wo = _conv_out(W, k[1], strides[1], pads[1], pads[3], dil[1])
        y = self.qtensor(yq_name, (N, O, Ho, Wo), yscale, yzp, node)
        op = Conv(_label(node), [x], [y.name], w=w,
                  w_scale=np.broadcast_to(w_scale, (O,)).astype(np.float64),
                  w_zp=np.broadcast_to(w_zp, (O,)).astype(np.int64), bias=bias_int,
                  pads=pads, strides=strides, group=group, dilations=dil,
                  clamp=self.clamp(y, *clamp_lohi))
        self.ops.append(op)

    def op_Conv(self, node):
        x = self.act(node.input[0], node)
        w, ws, wz = self.weight(node.input[1], node)
        xs = self.tensors[x]
        b = self.bias(node.input[2] if len(node.input) > 2 else "", node, xs.scale, ws, w.shape[0])
        q, lo, hi = self.out_q(node.output[0], node)
        self._conv_common(node, x, w, ws, wz, b, q.output[0], (lo, hi), q.input[1],
                          q.input[2] if len(q.input) > 2 else np.uint8(0))

    def _gemm(self, node, x, w, ws, wz, b, qname, lohi, yscale, yzp):
        xs = self.tensors[x]
        K = int(np.prod(xs.shape[1:]))
        if w.shape[1] != K:
            raise self.err(node, f"weight {w.shape} does not match input features {K}")
        y = self.qtensor(qname, (xs.shape[0], w.shape[0]), yscale, yzp, node)
        self.ops.append(Gemm(_label(node), [x], [y.name], w=w,
                             w_scale=np.broadcast_to(ws, (w.shape[0],)).astype(np.float64),
                             w_zp=np.broadcast_to(wz, (w.shape[0],)).astype(np.int64),
                             bias=b, clamp=self.clamp(y, *lohi)))

    def op_Gemm(self, node):
        a = _attrs(node)
        if a.get("transA", 0) or float(a.get("alpha", 1.0)) != 1.0 or \
                float(a.get("beta", 1.0)) != 1.0:
            raise self.err(node, "only Gemm with transA=0, alpha=beta=1 is supported")
        x = self.act(node.input[0], node)
        w, ws, wz = self.weight(node.input[1], node)
        if not a.get("transB", 0):
            w = w.T
            if ws.size > 1:
                raise self.err(node, "per-channel weights need transB=1")
        xs = self.tensors[x]
        b = self.bias(node.input[2] if len(node.input) > 2 else "", node, xs.scale, ws, w.shape[0])
        q, lo, hi = self.out_q(node.output[0], node)
        self._gemm(node, x, w, ws, wz, b, q.output[0], (lo, hi), q.input[1],
                   q.input[2] if len(q.input) > 2 else np.uint8(0))

    def op_MatMul(self, node):
        x = self.act(node.input[0], node)
        w, ws, wz = self.weight(node.input[1], node)
        xs = self.tensors[x]
        if len(xs.shape) != 2:
            raise self.err(node, f"MatMul on a {len(xs.shape)}-D input is not supported")
        q, lo, hi = self.out_q(node.output[0], node)
        w = w.T
        b = np.zeros(w.shape[0], dtype=np.int64)
        self._gemm(node, x, w, ws, wz, b, q.output[0], (lo, hi), q.input[1],
                   q.input[2] if len(q.input) > 2 else np.uint8(0))

    def op_Add(self, node):
        a = self.act(node.input[0], node)
        b = self.act(node.input[1], node)
        if self.tensors[a].shape != self.tensors[b].shape:
            return self.op_host(node)
        q, lo, hi = self.out_q(node.output[0], node)
        if self.add_beyond_integer(node, a, b, float(self.scalar(q.input[1], q)[0]),
                                   "it runs in float on the host"):
            return self.op_host(node)
        y = self.qtensor(q.output[0], self.tensors[a].shape, q.input[1],
                         q.input[2] if len(q.input) > 2 else np.uint8(0), node)
        self.ops.append(Add(_label(node), [a, b], [y.name], clamp=self.clamp(y, lo, hi)))

    def _float_const(self, name):
        """The float32 value of a constant input (an initializer, or a DequantizeLinear of
        one); None if it is not constant."""
        if name in self.inits:
            return np.asarray(self.inits[name], dtype=np.float32)
        q, dq = self.dq_source(name)
        if q is not None and q in self.inits:
            return self.dequantized_const(dq)
        return None

    def op_BatchNormalization(self, node):
        """Inference BatchNormalization between a dequantized activation and a QuantizeLinear
        (what ``quantize_static`` without pre-processing leaves after a Conv): the affine map
        ``scale[c] (x - zx) + offset[c]`` in output steps, as onnxruntime computes it in float
        (``g / sqrt(var + eps)``, ``b - mean g / sqrt(var + eps)``), a
        :class:`~ffacc.compiler.ir.ChannelAffine`. Anything else runs on the host."""
        a = _attrs(node)
        params = [self._float_const(n) for n in node.input[1:5]] if len(node.input) >= 5 \
            else [None]
        xs = self.tensors.get(self.alias.get(node.input[0], ""))
        if a.get("training_mode", 0) or len([o for o in node.output if o]) != 1 or \
                any(p is None for p in params) or xs is None or len(xs.shape) < 2 or \
                any(p.size != xs.shape[1] for p in params):
            return self.op_host(node)
        gamma, beta, mean, var = (p.reshape(-1) for p in params)
        eps = np.float32(a.get("epsilon", 1e-5))
        k = (gamma / np.sqrt(var + eps)).astype(np.float64)       # float32, as onnxruntime
        b = beta.astype(np.float64) - mean.astype(np.float64) * k
        if not (np.isfinite(k).all() and np.isfinite(b).all()):
            return self.op_host(node)           # a variance of -epsilon, say: onnxruntime's
        q, lo, hi = self.out_q(node.output[0], node)
        y = self.qtensor(q.output[0], xs.shape, q.input[1],
                         q.input[2] if len(q.input) > 2 else np.uint8(0), node)
        self.ops.append(ChannelAffine(_label(node), [xs.name], [y.name],
                                      scale=k * xs.scale / y.scale, offset=b / y.scale,
                                      clamp=self.clamp(y, lo, hi)))

    def op_Concat(self, node):
        """Concat of dequantized activations along the channel axis into a QuantizeLinear: a
        :class:`~ffacc.compiler.ir.Concat` (each input requantized to the output's scale, as
        onnxruntime's float concat between them rounds it). Other axes run on the host."""
        ins = [i for i in node.input if i]
        xs = [self.alias.get(i) for i in ins]
        if not ins or any(x is None or not self.tensors[x].quantized for x in xs):
            return self.op_host(node)
        shapes = [self.tensors[x].shape for x in xs]
        nd = len(shapes[0])
        axis = int(_attrs(node).get("axis", 1))
        axis = axis + nd if axis < 0 else axis
        rest = [s[:1] + s[2:] for s in shapes]
        if nd < 2 or axis != 1 or any(len(s) != nd for s in shapes) or \
                any(r != rest[0] for r in rest):
            return self.op_host(node)
        q, lo, hi = self.out_q(node.output[0], node)
        shape = (shapes[0][0], sum(s[1] for s in shapes), *shapes[0][2:])
        y = self.qtensor(q.output[0], shape, q.input[1],
                         q.input[2] if len(q.input) > 2 else np.uint8(0), node)
        self.ops.append(Concat(_label(node), xs, [y.name], axis=1, clamp=self.clamp(y, lo, hi)))

    def op_Transpose(self, node):
        """Transpose of a dequantized activation into a QuantizeLinear that keeps the last two
        axes (rows, columns) and the first in place (a channel shuffle): a
        :class:`~ffacc.compiler.ir.Transpose`. Any other runs on the host."""
        x = self.alias.get(node.input[0])
        if x is None or not self.tensors[x].quantized:
            return self.op_host(node)
        shape = self.tensors[x].shape
        nd = len(shape)
        perm = [int(p) for p in _attrs(node).get("perm", range(nd - 1, -1, -1))]
        if nd < 3 or sorted(perm) != list(range(nd)) or perm[0] != 0 or \
                perm[-2:] != [nd - 2, nd - 1]:
            return self.op_host(node)
        q, lo, hi = self.out_q(node.output[0], node)
        y = self.qtensor(q.output[0], tuple(shape[p] for p in perm), q.input[1],
                         q.input[2] if len(q.input) > 2 else np.uint8(0), node)
        self.ops.append(Transpose(_label(node), [x], [y.name], perm=tuple(perm),
                                  clamp=self.clamp(y, lo, hi)))

    def op_Sum(self, node):
        """Two inputs: an Add. More: one float sum on the host, as onnxruntime computes it (a
        chain of Adds would round and saturate at every step)."""
        if len([i for i in node.input if i]) == 2:
            return self.op_Add(node)
        return self.op_host(node)

    def _pool_shape(self, xs, k, s, pads):
        N, C, H, W = xs.shape
        return (N, C, _conv_out(H, k[0], s[0], pads[0], pads[2]),
                _conv_out(W, k[1], s[1], pads[1], pads[3]))

    def op_MaxPool(self, node):
        a = _attrs(node)
        if a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1, 1])):
            return self.op_host(node)
        src = node.input[0]
        quant_in = src in self.tensors     # QOperator: MaxPool directly on a quantized tensor
        x = src if quant_in else self.act(src, node)
        xs = self.tensors[x]
        k = tuple(a["kernel_shape"])
        s = tuple(a.get("strides", [1, 1]))
        pads = _pads(a)
        shape = self._pool_shape(xs, k, s, pads)
        if quant_in:
            y = QTensor(node.output[0], shape, xs.dtype, xs.scale, xs.zero_point)
            self.tensors[y.name] = y
        else:
            q, lo, hi = self.out_q(node.output[0], node)
            y = self.qtensor(q.output[0], shape, q.input[1],
                             q.input[2] if len(q.input) > 2 else np.uint8(0), node)
            if (y.scale, y.zero_point) != (xs.scale, xs.zero_point) or lo is not None:
                self.tensors.pop(y.name)
                return self.op_host(node)
        self.ops.append(MaxPool(_label(node), [x], [y.name], kernel=k, strides=s,
                                pads=pads))

    def _avgpool(self, node, x, yname, yscale, yzp, k, s, pads, incl):
        xs = self.tensors[x]
        shape = self._pool_shape(xs, k, s, pads) if k else xs.shape[:2] + (1, 1)
        y = self.qtensor(yname, shape, yscale, yzp, node)
        self.ops.append(AvgPool(_label(node), [x], [y.name], kernel=k, strides=s,
                                pads=pads, count_include_pad=incl))

    def op_AveragePool(self, node):
        a = _attrs(node)
        if a.get("ceil_mode", 0):
            return self.op_host(node)
        x = self.act(node.input[0], node)
        q, lo, hi = self.out_q(node.output[0], node)
        k = tuple(a["kernel_shape"])
        self._avgpool(node, x, q.output[0], q.input[1], q.input[2], k,
                      tuple(a.get("strides", [1, 1])), _pads(a),
                      bool(a.get("count_include_pad", 0)))

    def op_GlobalAveragePool(self, node):
        x = self.act(node.input[0], node)
        q, lo, hi = self.out_q(node.output[0], node)
        self._avgpool(node, x, q.output[0], q.input[1], q.input[2], None, None, (0, 0, 0, 0),
                      False)

    def _alias(self, node, x_name, out_name, shape):
        xs = self.tensors[x_name]
        y = QTensor(out_name, tuple(int(d) for d in shape), xs.dtype, xs.scale, xs.zero_point)
        self.tensors[y.name] = y
        self.ops.append(Alias(_label(node), [x_name], [y.name]))
        return y

    def _reshape_target(self, node, xs):
        if node.op_type == "Flatten":
            axis = _attrs(node).get("axis", 1)
            return (int(np.prod(xs.shape[:axis])), int(np.prod(xs.shape[axis:])))
        if node.op_type in ("Squeeze", "Unsqueeze"):
            axes = _attrs(node).get("axes")
            if axes is None and len(node.input) > 1 and node.input[1]:
                axes = self.const(node.input[1], node).reshape(-1).tolist()
            shape = list(xs.shape)
            if node.op_type == "Squeeze":
                if axes is None:
                    return tuple(d for d in shape if d != 1)
                axes = {int(a) % len(shape) for a in axes}
                return tuple(d for i, d in enumerate(shape) if i not in axes)
            for a in sorted(int(a) % (len(shape) + len(axes)) for a in axes):
                shape.insert(a, 1)
            return tuple(shape)
        if node.input[1] not in self.inits:
            raise self.err(node, f"its shape {node.input[1]!r} is not a constant (it depends "
                                 f"on a tensor whose shape is not known at import time)")
        target = [int(d) for d in self.inits[node.input[1]].reshape(-1)]
        for i, d in enumerate(target):
            if d == 0:
                target[i] = xs.shape[i]
        if -1 in target:
            known = int(np.prod([d for d in target if d != -1]))
            target[target.index(-1)] = int(np.prod(xs.shape)) // known
        return tuple(target)

    def op_Reshape(self, node):
        src = node.input[0]
        if src in self.tensors:           # QOperator: on a quantized tensor
            self._alias(node, src, node.output[0], self._reshape_target(node, self.tensors[src]))
            return
        x = self.act(src, node)
        q, lo, hi = self.out_q(node.output[0], node)
        xs = self.tensors[x]
        if lo is not None or hi is not None:
            raise self.err(node, "a Relu/Clip between a reshape and its QuantizeLinear is "
                                 "not supported")
        shape = self._reshape_target(node, xs)
        y = self.qtensor(q.output[0], shape, q.input[1],
                         q.input[2] if len(q.input) > 2 else np.uint8(0), node)
        if (y.dtype, y.scale, y.zero_point) == (xs.dtype, xs.scale, xs.zero_point):
            self._alias(node, x, y.name, shape)          # the same bytes, another shape
            return
        # quantized again with other parameters: move the bytes, then requantize on the
        # host as onnxruntime does (dequantize, quantize)
        moved = self._alias(node, x, y.name + "__reshaped", shape)
        self.tensors[y.name] = y
        self.host_requantize(_label(node) + "/requantize", moved.name, y.name,
                             "QuantizeLinear")

    op_Flatten = op_Reshape
    op_Squeeze = op_Reshape
    op_Unsqueeze = op_Reshape

    # -- QOperator ----------------------------------------------------------------------
    def op_QLinearConv(self, node):
        i = node.input
        x = i[0]
        if x not in self.tensors:
            raise self.err(node, f"input {x!r} has no known quantization")
        w = self.int_weights(self.const(i[3], node), i[3], node)
        ws = self.scalar(i[4], node).astype(np.float64)
        wz = self.scalar(i[5], node).astype(np.int64)
        b = self.const(i[8], node).astype(np.int64) if len(i) > 8 and i[8] else \
            np.zeros(w.shape[0], dtype=np.int64)
        self._conv_common(node, x, w, ws, wz, b, node.output[0], (None, None), i[6], i[7])

    def op_QLinearMatMul(self, node):
        i = node.input
        x = i[0]
        w = self.int_weights(self.const(i[3], node), i[3], node).T
        ws = self.scalar(i[4], node).astype(np.float64)
        wz = self.scalar(i[5], node).astype(np.int64)
        self._gemm(node, x, w, ws, wz, np.zeros(w.shape[0], dtype=np.int64), node.output[0],
                   (None, None), i[6], i[7])

    def op_QGemm(self, node):
        i = node.input
        a = _attrs(node)
        if a.get("transA", 0) or float(a.get("alpha", 1.0)) != 1.0:
            raise self.err(node, "only QGemm with transA=0, alpha=1 is supported")
        if len(i) < 9:
            raise self.err(node, "QGemm with a float output is not supported")
        x = i[0]
        w = self.int_weights(self.const(i[3], node), i[3], node)
        if not a.get("transB", 0):
            w = w.T
        ws = self.scalar(i[4], node).astype(np.float64)
        wz = self.scalar(i[5], node).astype(np.int64)
        b = self.const(i[6], node).astype(np.int64) if i[6] else \
            np.zeros(w.shape[0], dtype=np.int64)
        self._gemm(node, x, w, ws, wz, b, node.output[0], (None, None), i[7], i[8])

    def op_QLinearAdd(self, node):
        i = node.input
        a, b = i[0], i[3]
        if a not in self.tensors or b not in self.tensors or \
                self.tensors[a].shape != self.tensors[b].shape:
            # a constant operand (a quantized per-channel offset), or broadcasting:
            # onnxruntime on the host
            return self.op_host_quant(node)
        if self.add_beyond_integer(node, a, b, float(self.scalar(i[6], node)[0]),
                                   "onnxruntime runs it on the host"):
            return self.op_host_quant(node)
        y = self.qtensor(node.output[0], self.tensors[a].shape, i[6], i[7], node)
        self.ops.append(Add(_label(node), [a, b], [y.name]))

    def op_QLinearAveragePool(self, node):
        a = _attrs(node)
        i = node.input
        self._avgpool(node, i[0], node.output[0], i[3], i[4], tuple(a["kernel_shape"]),
                      tuple(a.get("strides", [1, 1])), _pads(a),
                      bool(a.get("count_include_pad", 0)))

    def op_QLinearGlobalAveragePool(self, node):
        i = node.input
        self._avgpool(node, i[0], node.output[0], i[3], i[4], None, None, (0, 0, 0, 0), False)

    def op_ConvInteger(self, node):
        raise self.err(node, "ConvInteger (dynamic quantization) is not supported; quantize "
                             "the model statically (quantize_static)")

    op_MatMulInteger = op_ConvInteger

    # -- host fallback --------------------------------------------------------------------
    def op_host_quant(self, node):
        """A QOperator node on quantized tensors: run it as-is on the host (onnxruntime)."""
        ins, inits = [], {}
        for n in node.input:
            if not n:
                continue
            if n in self.inits:
                inits[n] = self.inits[n]
            elif n in self.tensors:
                ins.append(n)
            else:
                raise self.err(node, f"input {n!r} comes from an unsupported path")
        outs = []
        for o in node.output:
            scale = zp = None
            pos = _QOUT.get(node.op_type)
            if pos is not None and o == node.output[0] and len(node.input) > pos[1] and \
                    node.input[pos[0]] in self.inits:
                scale, zp = node.input[pos[0]], node.input[pos[1]]
            for c in ([] if scale is not None else self.consumers.get(o, [])):
                if c.input[0] == o and len(c.input) >= 3 and c.input[1] in self.inits:
                    scale, zp = c.input[1], c.input[2]
                    break
            if scale is None:
                raise self.err(node, f"cannot tell the quantization of its output {o!r}")
            shape = self._host_shape(node, ins, inits, o, quantized=True)
            outs.append(self.qtensor(o, shape, scale, zp, node).name)
        self.ops.append(HostQuant(_label(node), ins, outs,
                                  node_proto=node.SerializeToString(), op_type=node.op_type,
                                  initializers=inits))

    def _const_affine(self, node):
        """A Mul, Add or Sub of a dequantized activation and a constant that is one value per
        channel (or one in all), into a QuantizeLinear: a
        :class:`~ffacc.compiler.ir.ChannelAffine` (a BatchNormalization written as ``x * s +
        b``, as Caffe2's converted models have it, or an input's normalization). Returns
        whether it was one."""
        if node.op_type not in ("Mul", "Add", "Sub") or len(node.input) != 2 or \
                len(node.output) != 1:
            return False
        (a, b), (xa, xb) = node.input, (self.alias.get(n) for n in node.input)
        if xa is not None and xb is None:
            x, c = xa, self._float_const(b)
        elif xb is not None and xa is None and node.op_type != "Sub":
            x, c = xb, self._float_const(a)
        else:
            return False
        xs, qy = self.tensors[x], self._quantized_through(node.output[0])
        if c is None or not xs.quantized or len(xs.shape) < 2 or c.ndim > len(xs.shape) or \
                qy is None:
            return False
        C = xs.shape[1]
        full = (1,) * (len(xs.shape) - c.ndim) + c.shape      # broadcast against x
        if any(d != 1 for i, d in enumerate(full) if i != 1) or full[1] not in (1, C):
            return False
        v = np.broadcast_to(c.astype(np.float64).reshape(-1), (C,))
        y_scale = float(self.scalar(qy.input[1], qy)[0])
        if node.op_type == "Mul":
            scale, offset = v * xs.scale / y_scale, np.zeros(C)
        else:
            scale = np.full(C, xs.scale / y_scale)
            offset = (v if node.op_type == "Add" else -v) / y_scale
        try:
            from ffacc.sim.golden import affine_params
            affine_params(scale, offset, xs.zero_point, xs.qrange)
        except ValueError:              # not finite, or beyond the integer form: onnxruntime's
            return False
        q, lo, hi = self.out_q(node.output[0], node)
        y = self.qtensor(q.output[0], xs.shape, q.input[1],
                         q.input[2] if len(q.input) > 2 else np.uint8(0), node)
        self.ops.append(ChannelAffine(_label(node), [x], [y.name], scale=scale, offset=offset,
                                      clamp=self.clamp(y, lo, hi)))
        return True

    def op_host(self, node):
        """Run the float node on the host between dequantized inputs and quantized outputs
        (a Mul, Add or Sub by a per-channel constant runs on the accelerator instead:
        :meth:`_const_affine`)."""
        if self._const_affine(node):
            return
        if any(n in self.tensors and self.tensors[n].quantized for n in node.input if n):
            return self.op_host_quant(node)
        ins, inits = [], {}
        for n in node.input:
            if not n:
                continue
            if n in self.inits:
                inits[n] = self.inits[n]
                continue
            q = self.alias.get(n)
            if q is None and self.is_float(n):
                if n not in self.tensors:         # the graph's float input, read as it is
                    self.float_tensor(n, self.shape_of(n))
                    self.float_inputs[n] = n
                q = n
            if q is None:
                q2, dq = self.dq_source(n)
                if q2 is not None and q2 in self.inits:
                    inits[n] = self.dequantized_const(dq)
                    continue
                raise self.err(node, f"input {n!r} comes from an unsupported path")
            ins.append(q)
        float_node = onnx.NodeProto()
        float_node.CopyFrom(node)
        del float_node.input[:]
        for n in node.input:
            float_node.input.append(self.alias.get(n, n) if n not in inits else n)
        outs, clamps = [], []
        for o in node.output:
            if self._quantized_through(o) is not None:
                q, lo, hi = self.out_q(o, node)
                shape = self._host_shape(float_node, ins, inits, o)
                zp = q.input[2] if len(q.input) > 2 else np.uint8(0)
                t = self.qtensor(q.output[0], shape, q.input[1], zp, node)
                if lo is not None or hi is not None:
                    # a Relu/Clip before the QuantizeLinear: quantization is monotonic, so
                    # clipping the quantized result is the same; a second host node does it
                    clamps.append((t.name, lo, hi))
                    t = self.qtensor(q.output[0] + "__unclipped", shape, q.input[1], zp, node)
                float_node.output[list(node.output).index(o)] = t.name
            else:       # a float graph output, or a float value for the next host operator
                t = self.float_tensor(o, self._host_shape(float_node, ins, inits, o))
            outs.append(t.name)
        self.ops.append(HostFloat(_label(node), ins, outs,
                                  node_proto=float_node.SerializeToString(),
                                  op_type=node.op_type, initializers=inits))
        for y, lo, hi in clamps:
            x = y + "__unclipped"
            bounds = {x + "__min": np.float32(-np.inf if lo is None else lo),
                      x + "__max": np.float32(np.inf if hi is None else hi)}
            clip = helper.make_node("Clip", [x, *bounds], [y], name=f"{node.name or y}/clip")
            self.ops.append(HostFloat(clip.name, [x], [y], node_proto=clip.SerializeToString(),
                                      op_type="Clip", initializers=bounds))

    def _quantized_through(self, name):
        """The QuantizeLinear ``name`` reaches through Relu/Clip only (see out_q), or None."""
        while True:
            cons = [c for c in self.consumers.get(name, []) if c.op_type != "Shape"]
            if len(cons) != 1:
                return None
            if cons[0].op_type == "QuantizeLinear":
                return cons[0]
            if cons[0].op_type not in ("Relu", "Clip"):
                return None
            name = cons[0].output[0]

    def _host_shape(self, node, ins, inits, out, quantized=False):
        """Output shape of a host node: from shape inference, else by running it once."""
        if not quantized and out in self.float_shapes:
            return self.float_shapes[out]
        from .ir import Graph as _G, _run_host_float, _run_host_quant
        cls, run = (HostQuant, _run_host_quant) if quantized else (HostFloat, _run_host_float)
        probe = cls("probe", ins, list(node.output), node.SerializeToString(), node.op_type,
                    inits)
        tmp = dict(self.tensors)
        if not quantized:
            for o in node.output:
                tmp[o] = QTensor(o, (), "float32", 1.0, 0)
        vals = {n: np.full(self.tensors[n].shape, self.tensors[n].zero_point) for n in ins}
        try:
            res = run(probe, _G("p", tmp, [], [], []), vals)
        except Exception as e:        # noqa: BLE001 - onnxruntime raises several types
            raise self.err(node, f"onnxruntime cannot run it on the host: {e}") from e
        return tuple(np.asarray(res[list(node.output).index(out)]).shape)


def import_onnx(model, batch=1):
    """Import a quantized ONNX model (path, bytes or ModelProto) into a :class:`Graph`.

    Parameters
    ----------
    model : str, path-like, bytes or onnx.ModelProto
    batch : int
        The size a dynamic batch dimension of the inputs is pinned to (``Graph.notes`` says
        so). Only 1 is supported: the accelerator runs one image at a time.
    """
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        try:
            model = onnx.load(model) if not isinstance(model, bytes) else \
                onnx.load_from_string(model)
        except Exception as e:        # noqa: BLE001 - protobuf raises DecodeError and others
            raise ImportError_(f"cannot read ONNX model: {e}") from e
    return _Importer(model, batch).run()
