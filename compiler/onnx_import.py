"""ONNX (QDQ or QOperator, as onnxruntime's quantizer writes them) -> the integer IR.

QDQ: every float operator sits between ``DequantizeLinear`` nodes on its inputs (activations
and int8/int32 initializers) and a ``QuantizeLinear`` on its output; ``Relu``/``Clip`` between
the operator and its ``QuantizeLinear`` fold into the requantization clamp. QOperator:
``QLinearConv``, ``QLinearMatMul``, ``QGemm``, ``QLinearAdd``, ``QLinearAveragePool``,
``QLinearGlobalAveragePool`` and ``MaxPool``/``Flatten``/``Reshape`` on quantized tensors.
BatchNormalization following a float Conv is folded into it. Any other operator becomes a
:class:`~ffacc.compiler.ir.HostFloat` node (run by onnxruntime on the host); an operator that
cannot be expressed at all raises :class:`ImportError_` naming the node, op and reason.
"""

from math import floor

import numpy as np
import onnx
from onnx import numpy_helper, helper

from .ir import (Add, Alias, AvgPool, Concat, Conv, Gemm, Graph, HostFloat, HostQuant, MaxPool,
                 QTensor, quantize)

__all__ = ["import_onnx", "ImportError_", "UnsupportedModel"]


class ImportError_(ValueError):
    """A model that cannot be compiled (the message names the node, op and reason)."""


UnsupportedModel = ImportError_

_DTYPES = {onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT8: "int8"}


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pads(attrs, nd=2):
    p = list(attrs.get("pads", [0] * (2 * nd)))
    return (p[0], p[1], p[2], p[3])


def _conv_out(h, k, s, p0, p1, d=1):
    return floor((h + p0 + p1 - d * (k - 1) - 1) / s) + 1


class _Importer:
    def __init__(self, model):
        try:
            onnx.checker.check_model(model)
        except Exception as e:        # noqa: BLE001 - onnx raises several types
            raise ImportError_(f"invalid ONNX model: {e}") from e
        self.model = model
        g = model.graph
        self.inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        for n in g.node:
            if n.op_type == "Constant":
                self.inits[n.output[0]] = numpy_helper.to_array(_attrs(n)["value"])
        self.nodes = [n for n in g.node if n.op_type != "Constant"]
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers = {}
        for n in self.nodes:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.tensors = {}
        self.ops = []
        self.float_inputs, self.float_outputs = {}, {}
        self.graph_outputs = [o.name for o in g.output]
        self.float_shapes = {}
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
            for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + \
                    list(inferred.graph.output):
                dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
                if dims and all(d > 0 for d in dims):
                    self.float_shapes[vi.name] = tuple(dims)
        except Exception:             # noqa: BLE001 - shapes are a convenience here
            pass
        self.alias = {}               # float tensor name -> quantized tensor name

    # -- helpers ------------------------------------------------------------------------
    def err(self, node, why):
        return ImportError_(f"node {node.name or node.output[0]!r} ({node.op_type}): {why}")

    def const(self, name, node):
        if name not in self.inits:
            raise self.err(node, f"input {name!r} must be a constant initializer")
        return self.inits[name]

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
        w = self.inits[q].astype(np.int64)
        scale = self.scalar(dq.input[1], dq).astype(np.float64)
        zp = (self.scalar(dq.input[2], dq).astype(np.int64) if len(dq.input) > 2
              else np.zeros(1, dtype=np.int64))
        return w, scale, zp

    def bias(self, name, node, x_scale, w_scale, n_out):
        if not name:
            return np.zeros(n_out, dtype=np.int64)
        q, dq = self.dq_source(name)
        if q is not None and q in self.inits:
            return self.inits[q].astype(np.int64).reshape(-1)
        if name in self.inits:          # float bias: quantize with x_scale * w_scale
            return np.rint(self.inits[name].astype(np.float64) /
                           (x_scale * np.broadcast_to(w_scale, (n_out,)))).astype(np.int64)
        raise self.err(node, f"bias {name!r} must be a constant")

    def out_q(self, float_out, node):
        """Follow a QDQ operator's float output through Relu/Clip to its QuantizeLinear."""
        lo = hi = None
        cur = float_out
        while True:
            cons = self.consumers.get(cur, [])
            if len(cons) != 1:
                raise self.err(node, f"output {cur!r} must feed exactly one QuantizeLinear "
                                     f"(it feeds {len(cons)} nodes)")
            c = cons[0]
            if c.op_type == "QuantizeLinear":
                self.done.add(id(c))
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
            if id(node) in self.done:
                continue
            handler = getattr(self, f"op_{node.op_type}", None)
            if node.domain not in ("", "ai.onnx", "com.microsoft"):
                raise self.err(node, f"operator domain {node.domain!r} is not supported")
            if handler is None:
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
        ins = list(self.float_inputs)
        return Graph(g.name or "model", self.tensors, self.ops, ins, outs,
                     dict(self.float_inputs), dict(self.float_outputs))

    def shape_of(self, name):
        if name in self.tensors:
            return self.tensors[name].shape
        if name in self.alias:
            return self.tensors[self.alias[name]].shape
        if name in self.float_shapes:
            return self.float_shapes[name]
        for vi in self.model.graph.input:
            if vi.name == name:
                return tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
        raise ImportError_(f"unknown shape of tensor {name!r}")

    # -- Q / DQ ---------------------------------------------------------------------------
    def op_QuantizeLinear(self, node):
        src = node.input[0]
        if src in self.alias:            # requantization of an already quantized tensor
            raise self.err(node, "requantizing a quantized tensor is not supported")
        if src in [i.name for i in self.model.graph.input]:
            t = self.qtensor(node.output[0], self.shape_of(src), node.input[1],
                             node.input[2] if len(node.input) > 2 else np.uint8(0), node)
            self.float_inputs[t.name] = src
            return
        raise self.err(node, f"quantizes {src!r}, which no supported operator produces")

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
        op = Conv(node.name or yq_name, [x], [y.name], w=w,
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
        self.ops.append(Gemm(node.name or qname, [x], [y.name], w=w,
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
        y = self.qtensor(q.output[0], self.tensors[a].shape, q.input[1],
                         q.input[2] if len(q.input) > 2 else np.uint8(0), node)
        self.ops.append(Add(node.name or y.name, [a, b], [y.name], clamp=self.clamp(y, lo, hi)))

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
        self.ops.append(MaxPool(node.name or y.name, [x], [y.name], kernel=k, strides=s,
                                pads=pads))

    def _avgpool(self, node, x, yname, yscale, yzp, k, s, pads, incl):
        xs = self.tensors[x]
        shape = self._pool_shape(xs, k, s, pads) if k else xs.shape[:2] + (1, 1)
        y = self.qtensor(yname, shape, yscale, yzp, node)
        self.ops.append(AvgPool(node.name or yname, [x], [y.name], kernel=k, strides=s,
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
        self.ops.append(Alias(node.name or y.name, [x_name], [y.name]))
        return y

    def _reshape_target(self, node, xs):
        if node.op_type == "Flatten":
            axis = _attrs(node).get("axis", 1)
            return (int(np.prod(xs.shape[:axis])), int(np.prod(xs.shape[axis:])))
        if node.op_type in ("Squeeze", "Unsqueeze"):
            return self.shape_of(node.output[0])
        target = list(self.const(node.input[1], node))
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
        self._alias(node, x, q.output[0], self._reshape_target(node, xs))

    op_Flatten = op_Reshape
    op_Squeeze = op_Reshape

    # -- QOperator ----------------------------------------------------------------------
    def op_QLinearConv(self, node):
        i = node.input
        x = i[0]
        if x not in self.tensors:
            raise self.err(node, f"input {x!r} has no known quantization")
        w = self.const(i[3], node).astype(np.int64)
        ws = self.scalar(i[4], node).astype(np.float64)
        wz = self.scalar(i[5], node).astype(np.int64)
        b = self.const(i[8], node).astype(np.int64) if len(i) > 8 and i[8] else \
            np.zeros(w.shape[0], dtype=np.int64)
        self._conv_common(node, x, w, ws, wz, b, node.output[0], (None, None), i[6], i[7])

    def op_QLinearMatMul(self, node):
        i = node.input
        x = i[0]
        w = self.const(i[3], node).astype(np.int64).T
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
        w = self.const(i[3], node).astype(np.int64)
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
        if self.tensors[a].shape != self.tensors[b].shape:
            raise self.err(node, "broadcasting QLinearAdd is not supported")
        y = self.qtensor(node.output[0], self.tensors[a].shape, i[6], i[7], node)
        self.ops.append(Add(node.name or y.name, [a, b], [y.name]))

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
            for c in self.consumers.get(o, []):
                if c.input[0] == o and len(c.input) >= 3 and c.input[1] in self.inits:
                    scale, zp = c.input[1], c.input[2]
                    break
            if scale is None:
                raise self.err(node, f"cannot tell the quantization of its output {o!r}")
            shape = self._host_shape(node, ins, inits, o, quantized=True)
            outs.append(self.qtensor(o, shape, scale, zp, node).name)
        self.ops.append(HostQuant(node.name or outs[0], ins, outs,
                                  node_proto=node.SerializeToString(), op_type=node.op_type,
                                  initializers=inits))

    def op_host(self, node):
        """Run the float node on the host between dequantized inputs and quantized outputs."""
        if any(n in self.tensors for n in node.input if n):
            return self.op_host_quant(node)
        ins, inits = [], {}
        for n in node.input:
            if not n:
                continue
            if n in self.inits:
                inits[n] = self.inits[n]
                continue
            q = self.alias.get(n)
            if q is None:
                q2, dq = self.dq_source(n)
                if q2 is not None and q2 in self.inits:
                    dqa = [self.inits[dq.input[0]], self.scalar(dq.input[1], dq)]
                    inits[n] = ((dqa[0].astype(np.float32) - (self.scalar(dq.input[2], dq)
                                 if len(dq.input) > 2 else 0)) * dqa[1]).astype(np.float32)
                    continue
                raise self.err(node, f"input {n!r} comes from an unsupported path")
            ins.append(q)
        float_node = onnx.NodeProto()
        float_node.CopyFrom(node)
        del float_node.input[:]
        for n in node.input:
            float_node.input.append(self.alias.get(n, n) if n not in inits else n)
        outs = []
        for o in node.output:
            cons = self.consumers.get(o, [])
            if len(cons) == 1 and cons[0].op_type == "QuantizeLinear":
                q = cons[0]
                self.done.add(id(q))
                shape = self._host_shape(float_node, ins, inits, o)
                t = self.qtensor(q.output[0], shape, q.input[1],
                                 q.input[2] if len(q.input) > 2 else np.uint8(0), node)
                float_node.output[list(node.output).index(o)] = t.name
            elif o in self.graph_outputs:
                shape = self._host_shape(float_node, ins, inits, o)
                t = QTensor(o, shape, "float32", 1.0, 0)
                self.tensors[o] = t
            else:
                raise self.err(node, f"output {o!r} is neither quantized nor a graph output; "
                                     f"no host path for {node.op_type}")
            outs.append(t.name)
        self.ops.append(HostFloat(node.name or outs[0], ins, outs,
                                  node_proto=float_node.SerializeToString(),
                                  op_type=node.op_type, initializers=inits))

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


def import_onnx(model):
    """Import a quantized ONNX model (path, bytes or ModelProto) into a :class:`Graph`."""
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        try:
            model = onnx.load(model) if not isinstance(model, bytes) else \
                onnx.load_from_string(model)
        except Exception as e:        # noqa: BLE001 - protobuf raises DecodeError and others
            raise ImportError_(f"cannot read ONNX model: {e}") from e
    return _Importer(model).run()
