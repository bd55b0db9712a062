"""The integer IR: quantized tensors and the operators the compiler lowers or runs on the host.

Every tensor carries its quantization (``scale``, ``zero_point``, 8-bit ``dtype``); every
operator has exact integer semantics given by :func:`reference_run`, which uses only
:mod:`ffacc.sim.golden` (independent of the lowering) — that is the golden model ``ffacc
verify`` compares the accelerator against. Host operators without integer semantics
(``HostFloat``) dequantize, run the float ONNX node in onnxruntime, and quantize.
"""

import base64
import binascii
import io
from dataclasses import dataclass, field, fields
from functools import lru_cache
from math import prod

import numpy as np

from ffacc.firmware.image import ImageError

__all__ = ["HostQuant", "bounds", "QTensor", "Op", "Conv", "Gemm", "Add", "ChannelAffine",
           "Transpose", "MaxPool", "AvgPool", "AvgPoolConv",
           "Alias", "Concat", "HostFloat", "HostGraph", "PhaseSplit", "Graph", "reference_run",
           "requant_params", "affine_to", "quantize", "dequantize", "HOST_OPS", "op_to_dict",
           "op_from_dict"]


@dataclass
class QTensor:
    name: str
    shape: tuple
    dtype: str                  # "uint8" or "int8"
    scale: float
    zero_point: int
    model_dtype: str = None     # the ONNX model's type where it is stored as the other 8-bit
                                # type (see compiler/retype.py); None: the same as dtype
    levels: tuple = None        # non-uniform activation levels (ascending ints of dtype's
                                # range, 2..64; compiler/codes.py): the producing Conv or Gemm
                                # rounds its every output to the nearest; None: uniform
    codes: bool = False         # stored as the levels' 4-bit codes, two a byte (a row from a
                                # byte): the compiler's choice (compile.py), not the model's

    @property
    def nbytes(self):
        if self.codes:                          # (N, C, H, W): rows of ceil(W / 2) bytes
            return int(prod(self.shape[:-1])) * -(-int(self.shape[-1]) // 2)
        return int(prod(self.shape)) * self.np_dtype.itemsize

    @property
    def model_type(self):
        """The ONNX model's type of this tensor (``dtype`` unless it was retyped)."""
        return self.model_dtype or self.dtype

    @property
    def quantized(self):
        return self.dtype in ("uint8", "int8")

    @property
    def qrange(self):
        return (0, 255) if self.dtype == "uint8" else (-128, 127)

    @property
    def np_dtype(self):
        return np.dtype(self.dtype)


def quantize(x, t):
    """Float -> quantized (round half to even, saturate), as ONNX QuantizeLinear."""
    if not t.quantized:
        return np.asarray(x, dtype=np.float32)
    q = np.rint(np.asarray(x, dtype=np.float32) / np.float32(t.scale)) + t.zero_point
    lo, hi = t.qrange
    return np.clip(q, lo, hi).astype(t.np_dtype)


def dequantize(q, t):
    if not t.quantized:
        return np.asarray(q, dtype=np.float32)
    return (np.asarray(q, dtype=np.float32) - t.zero_point) * np.float32(t.scale)


@dataclass
class Op:
    name: str
    inputs: list                # input tensor names
    outputs: list               # output tensor names

    kind = "op"


@dataclass
class Conv(Op):
    w: np.ndarray = None        # int8 (O, C/g, kh, kw)
    w_scale: np.ndarray = None  # (O,)
    w_zp: np.ndarray = None     # (O,)
    bias: np.ndarray = None     # int32 (O,), scale x_scale * w_scale
    clamp: tuple = None         # (lo, hi) quantized bounds of a fused Relu/Clip
    pads: tuple = (0, 0, 0, 0)  # top, left, bottom, right
    strides: tuple = (1, 1)
    group: int = 1
    dilations: tuple = (1, 1)
    kind = "Conv"


def _near_half(exact, tol):
    """Where values ``exact`` (in output steps) lie within ``tol`` of halfway between two
    steps: the ties :meth:`AvgPoolConv.ties` and :meth:`Add.ties` find."""
    return np.abs(exact - np.floor(exact) - 0.5) <= tol


@dataclass
class AvgPoolConv(Conv):
    """An average pool the accelerator runs: the depthwise conv of all-one weights whose
    requantization divides each window's sum by the window's count of values. That count is
    ``kh kw`` where the window lies in the map or counts its padding
    (``count_include_pad``), and else the values of the map it holds: then each of
    :meth:`regions` (a border's rows and columns, the interior) has its own count, and the
    accelerator runs each region as a conv of its own requantization, ``s_x / (count s_y)``
    (``w_scale`` is ``1 / (kh kw)``, the interior's). Its results are these fixed-point
    ones, within 1 LSB of onnxruntime's float average. Never a host operator (an AvgPool the
    accelerator cannot run stays an :class:`AvgPool`).

    ``view``: ``(T, h, w)`` for a global pool wider than a conv's kernel (``max_kernel``):
    the accelerator reads each channel's ``H x W`` map as ``T`` maps of ``h x w`` (the same
    bytes, ``T h w = H W``), a group of ``T`` input channels whose sums the conv adds
    (:meth:`view_conv`); None: it reads the map as it is. The result is the same."""
    count_include_pad: bool = True
    view: tuple = None
    kind = "AvgPool"

    def view_conv(self):
        """``(w, in_shape)``: the all-one weights ``(C, T, h, w)`` and the input's shape
        ``(C T, h, w)`` the accelerator runs for :attr:`view` (``w`` and None without one)."""
        if self.view is None:
            return self.w, None
        T, h, w = self.view
        C = self.w.shape[0]
        return np.ones((C, T, h, w), np.int8), (C * T, h, w)

    def regions(self, H, W):
        """``[(rows, cols, count)]``: the output rows and columns (ranges) of an ``H`` x ``W``
        input whose windows hold ``count`` values each (one region, ``kh kw``, when the
        pool counts its padding)."""
        kh, kw = self.w.shape[2:]
        pt, pl, pb, pr = self.pads
        s = self.strides[0]
        Ho, Wo = (H + pt + pb - kh) // s + 1, (W + pl + pr - kw) // s + 1
        if self.count_include_pad:
            return [(range(Ho), range(Wo), kh * kw)]

        def runs(n, size, k, p):
            out = []
            for i in range(n):
                a = i * s - p
                c = min(size, a + k) - max(0, a)
                if out and out[-1][1] == c:
                    out[-1][0].append(i)
                else:
                    out.append(([i], c))
            return [(range(r[0], r[-1] + 1), c) for r, c in out]
        return [(r, q, rc * cc) for r, rc in runs(Ho, H, kh, pt) for q, cc in runs(Wo, W, kw, pl)]

    def requant(self, count, x, y):
        """Each channel's ``(M, shift)`` for windows of ``count`` values from input ``x`` to
        output ``y``: ``s_x / (count s_y)`` (the golden model's and the lowering's)."""
        return requant_params(x.scale, np.full(len(self.w_scale), 1.0 / count), y.scale)

    def ties(self, v, x, y):
        """Where the exact average of input values ``v`` (tensor ``x``) in output ``y``'s
        steps lies so close to halfway between two steps that onnxruntime's float32 average
        may round it either way: a boolean array of the output's shape. The QDQ form rounds
        an exact half to even, and a float32 sum of ``n`` terms is off by up to
        ``n · 2^-24`` of the sum of their sizes (its steps can land on either side of a
        half), so the window is that bound, and at least 1e-6 of a step."""
        from ffacc.sim import golden
        conv = dict(w_zp=self.w_zp, stride=self.strides, pads=self.pads, groups=self.group)
        zero = np.zeros(self.w.shape[0], np.int64)
        acc = golden.conv2d(v, self.w, zero, x_zp=x.zero_point, **conv)
        size = golden.conv2d(np.abs(np.asarray(v, np.int64) - x.zero_point), self.w, zero,
                             x_zp=0, **conv)
        out = np.zeros(acc.shape, dtype=bool)
        for rows, cols, count in self.regions(*x.shape[2:]):
            sl = np.s_[:, :, rows.start:rows.stop, cols.start:cols.stop]
            step = float(x.scale) / (count * float(y.scale))
            exact = acc[sl] * step
            tol = np.maximum(1e-6, (count + 2) * 2.0 ** -24 * size[sl] * step)
            out[sl] = _near_half(exact, tol)
        return out


@dataclass
class Gemm(Op):
    w: np.ndarray = None        # int8 (O, K)
    w_scale: np.ndarray = None
    w_zp: np.ndarray = None
    bias: np.ndarray = None
    clamp: tuple = None
    kind = "Gemm"


@dataclass
class Add(Op):
    clamp: tuple = None
    kind = "Add"

    def ties(self, a, b, ta, tb, ty):
        """Where the exact sum of inputs ``a`` (tensor ``ta``) and ``b`` (``tb``) in output
        ``ty``'s steps lies so close to halfway between two steps that the integer form
        (:func:`~ffacc.sim.golden.add_params`' 14-bit ``ka``, ``kb`` and multiplier, rounding
        a half up) and onnxruntime's float32 (rounding a half to even) may round it to either
        side: a boolean array of the output's shape. The window is the integer form's own
        error at those inputs plus four float32 roundings of the terms' sizes, and at least
        1e-6 of a step."""
        from ffacc.sim import golden
        ka, kb, M, s = golden.add_params(ta.scale, tb.scale, ty.scale, input_bits=14)
        sa, sb, sy = float(ta.scale), float(tb.scale), float(ty.scale)
        da = np.asarray(a, np.float64) - ta.zero_point
        db = np.asarray(b, np.float64) - tb.zero_point
        exact = (sa * da + sb * db) / sy
        unit = M / 2.0 ** s
        err = np.abs(da * (ka * unit - sa / sy) + db * (kb * unit - sb / sy))
        f32 = 4 * 2.0 ** -24 * (np.abs(sa * da) + np.abs(sb * db)) / sy
        return _near_half(exact, np.maximum(1e-6, err + f32))


@dataclass
class ChannelAffine(Op):
    """``y = scale[c] (x - x_zp) + offset[c]`` per channel (axis 1), requantized and clamped:
    a BatchNormalization the quantizer left in float between a DequantizeLinear and a
    QuantizeLinear. ``offset`` is in output steps (the output's zero point not included).
    Its integer form is :func:`ffacc.sim.golden.affine_params`: an ``ADD`` of each channel
    with itself."""
    scale: np.ndarray = None    # (C,) float64
    offset: np.ndarray = None   # (C,) float64
    clamp: tuple = None
    kind = "ChannelAffine"

    def params(self, x):
        """``(ka, kb, zb, M, s)`` per channel for input tensor ``x``."""
        C = x.shape[1] if len(x.shape) > 1 else 0
        if np.shape(self.scale) != (C,) or np.shape(self.offset) != (C,):
            raise ValueError(f"ChannelAffine {self.name!r}: scale {np.shape(self.scale)} and "
                             f"offset {np.shape(self.offset)} must have one entry per channel "
                             f"of input {tuple(x.shape)}")
        return _affine_params(self.scale, self.offset, x)


def _affine_params(scale, offset, x):
    """:func:`ffacc.sim.golden.affine_params` for input tensor ``x``, computed once per
    distinct map: a compile asks for an operator's parameters at every placement decision,
    its lowering and its reference run (read-only arrays)."""
    scale = np.ascontiguousarray(scale, dtype=np.float64)
    offset = np.ascontiguousarray(offset, dtype=np.float64)
    return _affine_params_of(scale.tobytes(), offset.tobytes(), int(x.zero_point),
                             tuple(x.qrange))


@lru_cache(maxsize=512)
def _affine_params_of(scale, offset, x_zp, x_range):
    from ffacc.sim.golden import affine_params
    out = affine_params(np.frombuffer(scale), np.frombuffer(offset), x_zp, x_range)
    for a in out:
        a.setflags(write=False)
    return out


def affine_to(x, y):
    """The per-channel affine map ``(s_x / s_y) (x - z_x)`` that stores input tensor ``x`` as
    output ``y`` (:func:`ffacc.sim.golden.affine_params`; a copy when they are stored alike)."""
    C = x.shape[1] if len(x.shape) > 1 else 1
    return _affine_params(np.full(C, x.scale / y.scale), np.zeros(C), x)


def _run_affine(op, v, p, x, y):
    """Values ``v`` of ``x`` through the affine map ``p`` (:func:`affine_params`' arrays) into
    ``op``'s output ``y``, clamped as ``op`` clamps."""
    from ffacc.sim.golden import channel_affine
    lo, hi = bounds(op, y)
    return channel_affine(v, x_zp=x.zero_point, ka=p[0], kb=p[1], zb=p[2], multiplier=p[3],
                          shift=p[4], y_zp=y.zero_point, qmin=lo, qmax=hi)


@dataclass
class MaxPool(Op):
    kernel: tuple = (2, 2)
    strides: tuple = (2, 2)
    pads: tuple = (0, 0, 0, 0)
    kind = "MaxPool"

    @property
    def window(self):
        """``(k, s)``: the window's side and the stride along the rows (the accelerator's
        windows and strides are square)."""
        return self.kernel[0], self.strides[0]


@dataclass
class AvgPool(Op):
    kernel: tuple = None        # None: global
    strides: tuple = None
    pads: tuple = (0, 0, 0, 0)
    count_include_pad: bool = False
    kind = "AvgPool"


@dataclass
class Alias(Op):
    """Reshape/Flatten/Squeeze: the same bytes under another shape."""
    kind = "Reshape"


@dataclass
class Concat(Op):
    """Concatenation along ``axis`` into a tensor of its own quantization (onnxruntime's
    quantizer gives each input its own scale): an input quantized otherwise, or every input
    when a Relu/Clip follows (``clamp``), is requantized to the output's scale and zero point
    first, as the per-channel affine map ``(s_in / s_out) (x - z_in)`` (:meth:`requant`)."""
    axis: int = 1
    clamp: tuple = None
    kind = "Concat"

    def requant(self, x, y):
        """``None`` if input tensor ``x`` is stored as output ``y`` (same type, scale and zero
        point, no clamp), else its :func:`ffacc.sim.golden.affine_params`, per channel."""
        return _requant(self.clamp, x, y)


def _requant(clamp, x, y):
    """:func:`affine_to` for input ``x`` and output ``y``, or ``None`` where the bytes are the
    same already (stored alike, no clamp, or a clamp that is the output's whole range)."""
    if (clamp is None or tuple(clamp) == y.qrange) and \
            (x.dtype, x.scale, x.zero_point) == (y.dtype, y.scale, y.zero_point):
        return None
    return affine_to(x, y)


@dataclass
class Transpose(Op):
    """A permutation of the leading axes that keeps the last two (rows and columns) in place,
    such as ShuffleNet's channel shuffle: whole ``H x W`` maps move. The input is requantized
    to the output's scale and zero point if they differ (:meth:`requant`)."""
    perm: tuple = ()
    clamp: tuple = None
    kind = "Transpose"

    def requant(self, x, y):
        """As :meth:`Concat.requant`: the same map for every channel of ``x``, or ``None``."""
        return _requant(self.clamp, x, y)

    def check(self, in_shape, out_shape):
        """:class:`ImageError` unless ``perm`` permutes the axes of ``in_shape`` into
        ``out_shape`` and keeps the last two in place."""
        p = [int(v) for v in np.asarray(self.perm).reshape(-1)]
        nd = len(in_shape)
        if sorted(p) != list(range(nd)) or nd < 3 or p[-2:] != [nd - 2, nd - 1] or \
                [in_shape[i] for i in p] != list(out_shape):
            raise ImageError(f"Transpose {self.name!r}: perm {p} does not take "
                             f"{tuple(in_shape)} to {tuple(out_shape)} keeping its last two "
                             f"axes")


@dataclass
class HostFloat(Op):
    """A float ONNX node run by onnxruntime between dequantized inputs and quantized outputs."""
    node_proto: bytes = b""     # serialized onnx NodeProto
    op_type: str = ""
    initializers: dict = field(default_factory=dict)   # name -> float array
    kind = "HostFloat"


@dataclass
class HostGraph(Op):
    """Several float ONNX nodes (a region the quantizer left in float) run by onnxruntime as
    one graph between dequantized inputs and quantized (or float graph) outputs; the values
    between its nodes never leave the host."""
    graph_proto: bytes = b""    # serialized onnx GraphProto holding the nodes, in order
    op_type: str = ""           # the nodes' op types, "+"-joined
    initializers: dict = field(default_factory=dict)
    kind = "HostGraph"


@dataclass
class HostQuant(Op):
    """A quantized (QOperator) ONNX node run as-is by onnxruntime on integer tensors."""
    node_proto: bytes = b""
    op_type: str = ""
    initializers: dict = field(default_factory=dict)
    kind = "HostQuant"


@dataclass
class PhaseSplit(Op):
    """The host's space-to-depth of a stride-``s`` convolution's input into its stride phases
    (:func:`ffacc.sim.golden.phase_split`), so the accelerator runs that convolution at stride
    1 on ``s``-times smaller maps (compiler/polyphase.py)."""
    stride: int = 1
    pads: tuple = (0, 0, 0, 0)      # the convolution's, filled with ``value``
    phases: np.ndarray = None       # (P, 2) int: the (row, column) phases kept, in order
    out_hw: tuple = (1, 1)
    value: int = 0                  # the input's zero point
    kind = "PhaseSplit"

    def check(self, in_shape, out_shape):
        """:class:`ImageError` unless the fields fit an NCHW input of ``in_shape`` and the
        output ``out_shape`` (a firmware image's host segment is checked before it runs)."""
        ph = np.asarray(self.phases)
        s = self.stride
        ok = (len(in_shape) == 4 and len(out_shape) == 4 and s >= 2 and ph.ndim == 2
              and ph.shape[1] == 2 and 1 <= len(ph) <= s * s
              and ((ph >= 0) & (ph < s)).all() and len({tuple(r) for r in ph.tolist()}) == len(ph)
              and all(0 <= p < 256 for p in self.pads)
              and tuple(out_shape) == (in_shape[0], in_shape[1] * len(ph), *self.out_hw)
              and min(self.out_hw) >= 1
              and all(s * o <= n + p1 + p2 + s for o, n, p1, p2 in zip(
                  self.out_hw, in_shape[2:], self.pads[:2], self.pads[2:])))
        if not ok:
            raise ImageError(f"PhaseSplit {self.name!r}: stride {s}, pads {tuple(self.pads)}, "
                             f"{len(ph)} phases and output {tuple(self.out_hw)} do not fit "
                             f"input {tuple(in_shape)} -> output {tuple(out_shape)}")


# --- an operator as data: the host segments of a firmware image -----------------------------
# A firmware image is data, never code: a host segment names its operator's class from this
# allow-list and gives every field as JSON, arrays as base64 ``.npy`` (never a pickle).
# class name -> (class, inputs, outputs (None: any number), {field: kind}); kinds: "array"
# (numeric), "ints<n>" (n integers), "int", "bool", "str", "bytes", "arrays" (name -> array);
# a trailing "?" also allows null.
_ONNX_NODE = {"node_proto": "bytes", "op_type": "str", "initializers": "arrays"}
HOST_OPS = {
    "Conv": (Conv, 1, 1, {"w": "array", "w_scale": "array", "w_zp": "array", "bias": "array?",
                          "clamp": "ints2?", "pads": "ints4", "strides": "ints2", "group": "int",
                          "dilations": "ints2"}),
    "Gemm": (Gemm, 1, 1, {"w": "array", "w_scale": "array", "w_zp": "array", "bias": "array?",
                          "clamp": "ints2?"}),
    "Add": (Add, 2, 1, {"clamp": "ints2?"}),
    "ChannelAffine": (ChannelAffine, 1, 1, {"scale": "array", "offset": "array",
                                            "clamp": "ints2?"}),
    "MaxPool": (MaxPool, 1, 1, {"kernel": "ints2", "strides": "ints2", "pads": "ints4"}),
    "AvgPool": (AvgPool, 1, 1, {"kernel": "ints2?", "strides": "ints2?", "pads": "ints4",
                                "count_include_pad": "bool"}),
    "Concat": (Concat, None, 1, {"axis": "int", "clamp": "ints2?"}),
    "Transpose": (Transpose, 1, 1, {"perm": "array", "clamp": "ints2?"}),
    "HostFloat": (HostFloat, None, None, _ONNX_NODE),
    "HostGraph": (HostGraph, None, None, {"graph_proto": "bytes", "op_type": "str",
                                          "initializers": "arrays"}),
    "HostQuant": (HostQuant, None, None, _ONNX_NODE),
    "PhaseSplit": (PhaseSplit, 1, 1, {"stride": "int", "pads": "ints4", "phases": "array",
                                      "out_hw": "ints2", "value": "int"}),
}
_OP_FIELDS = ("name", "inputs", "outputs")


def _npy(a):
    buf = io.BytesIO()
    np.save(buf, np.asarray(a), allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode()


def _jtype(v):
    return {dict: "an object", list: "a list", str: "a string", int: "an integer",
            float: "a number", bool: "a boolean", type(None): "null"}.get(type(v), type(v).__name__)


def _from_b64(v, what):
    if not isinstance(v, str):
        raise ImageError(f"{what} is {_jtype(v)}, expected a base64 string")
    try:
        return base64.b64decode(v, validate=True)
    except binascii.Error as e:
        raise ImageError(f"{what} is not base64 ({e})") from None


def _load_npy(v, what):
    raw = _from_b64(v, what)
    try:
        a = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ImageError(f"{what} is not a .npy array ({e})") from None
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "biuf":
        raise ImageError(f"{what} is not a numeric .npy array")
    return a


def _encode(kind, v):
    if v is None and kind.endswith("?"):
        return None
    kind = kind.rstrip("?")
    if kind == "array":
        return _npy(v)
    if kind == "arrays":
        return {str(k): _npy(a) for k, a in v.items()}
    if kind == "bytes":
        return base64.b64encode(bytes(v)).decode()
    if kind.startswith("ints"):
        return [int(x) for x in v]
    return {"int": int, "bool": bool, "str": str}[kind](v)


def _decode(kind, v, what):
    if v is None and kind.endswith("?"):
        return None
    kind = kind.rstrip("?")
    if kind == "array":
        return _load_npy(v, what)
    if kind == "arrays":
        if not isinstance(v, dict):
            raise ImageError(f"{what} is {_jtype(v)}, expected an object of arrays")
        return {k: _load_npy(a, f"{what}[{k!r}]") for k, a in v.items()}
    if kind == "bytes":
        return _from_b64(v, what)
    if kind.startswith("ints"):
        n = int(kind[4:])
        if not (isinstance(v, list) and len(v) == n and all(type(x) is int for x in v)):
            raise ImageError(f"{what} is {v!r:.60}, expected a list of {n} integers")
        return tuple(v)
    if type(v) is not {"int": int, "bool": bool, "str": str}[kind]:
        raise ImageError(f"{what} is {_jtype(v)}, expected {'an' if kind == 'int' else 'a'} "
                         f"{dict(int='integer', bool='boolean', str='string')[kind]}")
    return v


def _check_keys(d, expected, what):
    if not isinstance(d, dict):
        raise ImageError(f"{what} is {_jtype(d)}, expected an object")
    unknown = sorted(set(d) - set(expected))
    missing = [k for k in expected if k not in d]
    if unknown:
        raise ImageError(f"{what}: unknown field(s) {', '.join(map(repr, unknown))}")
    if missing:
        raise ImageError(f"{what}: missing field(s) {', '.join(map(repr, missing))}")


def _names(v, n, what):
    if not (isinstance(v, list) and v and all(isinstance(x, str) for x in v)):
        raise ImageError(f"{what} is {v!r:.60}, expected a list of tensor names")
    if n is not None and len(v) != n:
        raise ImageError(f"{what}: {len(v)} tensor(s), the operator takes {n}")
    return list(v)


def op_to_dict(op):
    """A host operator as JSON data for a firmware image.

    Returns ``{"op": class name, "name", "inputs", "outputs", "attrs": {field: value}}``:
    the class is one of :data:`HOST_OPS`, arrays are base64 ``.npy`` (written with
    ``allow_pickle=False``), tuples are lists, bytes are base64. :func:`op_from_dict` reads
    it back.
    """
    kind = type(op).__name__
    if kind not in HOST_OPS or HOST_OPS[kind][0] is not type(op):
        raise TypeError(f"{kind} cannot be written to a firmware image; host operators are "
                        f"{', '.join(HOST_OPS)}")
    spec = HOST_OPS[kind][3]
    attrs = {}
    for f in fields(op):
        if f.name in _OP_FIELDS:
            continue
        if f.name not in spec:
            raise TypeError(f"{kind}.{f.name} has no image encoding (add it to HOST_OPS)")
        attrs[f.name] = _encode(spec[f.name], getattr(op, f.name))
    return {"op": kind, "name": op.name, "inputs": list(op.inputs), "outputs": list(op.outputs),
            "attrs": attrs}


def op_from_dict(d):
    """The operator :func:`op_to_dict` described, every field checked.

    Raises
    ------
    ImageError
        The class is not in :data:`HOST_OPS`, a field is missing, unknown or of the wrong
        type, or an array does not load as a numeric ``.npy`` (pickles are refused).
    """
    _check_keys(d, ("op",) + _OP_FIELDS + ("attrs",), "operator description")
    kind = d["op"]
    if not isinstance(kind, str) or kind not in HOST_OPS:
        raise ImageError(f"unknown host operator {kind!r:.60}; known: {', '.join(HOST_OPS)}")
    cls, n_in, n_out, spec = HOST_OPS[kind]
    name = _decode("str", d["name"], f"{kind} name")
    what = f"{kind} {name!r}"
    ins = _names(d["inputs"], n_in, f"{what} inputs")
    outs = _names(d["outputs"], n_out, f"{what} outputs")
    _check_keys(d["attrs"], spec, f"{what} attrs")
    return cls(name, ins, outs, **{k: _decode(t, d["attrs"][k], f"{what} field {k!r}")
                                   for k, t in spec.items()})


@dataclass
class Graph:
    name: str
    tensors: dict               # name -> QTensor
    ops: list                   # topological order
    inputs: list                # graph input tensor names (quantized)
    outputs: list               # graph output tensor names (quantized)
    float_inputs: dict = field(default_factory=dict)    # quantized name -> float input name
    float_outputs: dict = field(default_factory=dict)   # quantized name -> float output name
    notes: list = field(default_factory=list)           # what the importer changed (str each)

    def consumers(self, name):
        return [op for op in self.ops if name in op.inputs]

    def producer(self, name):
        for op in self.ops:
            if name in op.outputs:
                return op
        return None


def requant_params(in_scale, w_scale, out_scale):
    """Per-channel integer (M, shift) for ``in_scale * w_scale / out_scale``."""
    from ffacc.sim.golden import quantize_multiplier
    real = np.float64(in_scale) * np.asarray(w_scale, dtype=np.float64) / np.float64(out_scale)
    return quantize_multiplier(real)


def _run_host_quant(op, g, vals):
    from .retype import to_model, to_storage
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    node = onnx.NodeProto()
    node.ParseFromString(op.node_proto)
    feeds, ins = {}, []
    for n in node.input:
        if not n or n in op.initializers:
            continue
        t = g.tensors[n]
        mt = np.dtype(t.model_type)                   # onnxruntime runs the model's types
        feeds[n] = to_model(vals[n], t).astype(mt)
        ins.append(helper.make_tensor_value_info(
            n, helper.np_dtype_to_tensor_dtype(mt), list(t.shape)))
    outs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(
        np.dtype(g.tensors[n].model_type)) if n in g.tensors else 2,
        None) for n in node.output]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in op.initializers.items()]
    model = helper.make_model(helper.make_graph([node], "host", ins, outs, inits),
                              opset_imports=[helper.make_opsetid("", 17),
                                             helper.make_opsetid("com.microsoft", 1)],
                              ir_version=8)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    res = sess.run(None, feeds)
    return [to_storage(r, g.tensors[n])
            if n in g.tensors else r for r, n in zip(res, node.output)]


def _run_host_float(op, g, vals):
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper, TensorProto

    if isinstance(op, HostGraph):
        graph = onnx.GraphProto()
        graph.ParseFromString(op.graph_proto)
        nodes = list(graph.node)
    else:
        node = onnx.NodeProto()
        node.ParseFromString(op.node_proto)
        nodes = [node]
    feeds = {}
    ins = []
    for n in op.inputs:
        t = g.tensors[n]
        feeds[n] = dequantize(vals[n], t)
        ins.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, list(t.shape)))
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in op.outputs]
    inits = [numpy_helper.from_array(np.asarray(v, dtype=np.float32), k)
             for k, v in op.initializers.items()]
    model = helper.make_model(helper.make_graph(nodes, "host", ins, outs, inits),
                              opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    res = sess.run(None, feeds)
    return [quantize(r, g.tensors[n]) for r, n in zip(res, op.outputs)]


def bounds(op, y):
    """Clamp bounds of a requantizing op: the output type's range narrowed by Relu/Clip."""
    lo, hi = y.qrange
    if getattr(op, "clamp", None):
        lo, hi = max(lo, op.clamp[0]), min(hi, op.clamp[1])
    return lo, hi


def _leveled(v, t):
    """``v`` rounded to tensor ``t``'s non-uniform levels, if it has them."""
    if t.levels is None:
        return v
    from ffacc.sim import golden
    return golden.to_levels(v, golden.level_thresholds(t.levels), t.levels)


def run_op(op, g, vals):
    """Integer semantics of one IR operator; returns its output arrays."""
    from ffacc.sim import golden

    T = g.tensors
    if isinstance(op, Conv):
        x, y = T[op.inputs[0]], T[op.outputs[0]]
        M, s = requant_params(x.scale, op.w_scale, y.scale)
        acc = golden.conv2d(vals[op.inputs[0]], op.w, op.bias, x_zp=x.zero_point,
                            w_zp=op.w_zp, stride=op.strides, pads=op.pads, groups=op.group,
                            dilation=op.dilations)
        if isinstance(op, AvgPoolConv):
            # each region's windows divided by their own count
            out = np.empty(acc.shape, dtype=y.np_dtype)
            for rows, cols, count in op.regions(*x.shape[2:]):
                M, s = op.requant(count, x, y)
                sl = np.s_[:, :, rows.start:rows.stop, cols.start:cols.stop]
                out[sl] = golden.requantize(acc[sl], M, s, y.zero_point, *bounds(op, y))
            return [out]
        return [_leveled(golden.requantize(acc, M, s, y.zero_point, *bounds(op, y)), y)]
    if isinstance(op, Gemm):
        x, y = T[op.inputs[0]], T[op.outputs[0]]
        M, s = requant_params(x.scale, op.w_scale, y.scale)
        xin = vals[op.inputs[0]].reshape(1, -1)
        acc = golden.fully_connected(xin, op.w, op.bias, x_zp=x.zero_point, w_zp=op.w_zp)
        return [_leveled(golden.requantize(acc, M, s, y.zero_point, *bounds(op, y)),
                         y).reshape(y.shape)]
    if isinstance(op, Add):
        a, b, y = T[op.inputs[0]], T[op.inputs[1]], T[op.outputs[0]]
        ka, kb, M, s = golden.add_params(a.scale, b.scale, y.scale, input_bits=14)
        return [golden.add(vals[op.inputs[0]], vals[op.inputs[1]], a_zp=a.zero_point,
                           b_zp=b.zero_point, ka=ka, kb=kb, multiplier=M, shift=s,
                           y_zp=y.zero_point, qmin=bounds(op, y)[0], qmax=bounds(op, y)[1])]
    if isinstance(op, ChannelAffine):
        x, y = T[op.inputs[0]], T[op.outputs[0]]
        return [_run_affine(op, vals[op.inputs[0]], op.params(x), x, y)]
    if isinstance(op, MaxPool):
        return [golden.maxpool2d(vals[op.inputs[0]], op.kernel, op.strides, op.pads)]
    if isinstance(op, AvgPool):
        # averaging runs on the host; its semantics are onnxruntime's float path (dequantize,
        # average in float32, quantize half-to-even) so it agrees with QDQ and QLinear models
        from onnx import helper
        x = T[op.inputs[0]]
        if op.kernel is None:
            node = helper.make_node("GlobalAveragePool", [x.name], [op.outputs[0]])
        else:
            node = helper.make_node("AveragePool", [x.name], [op.outputs[0]],
                                    kernel_shape=list(op.kernel),
                                    strides=list(op.strides or op.kernel), pads=list(op.pads),
                                    count_include_pad=int(op.count_include_pad))
        host = HostFloat(op.name, op.inputs, op.outputs, node.SerializeToString(),
                         node.op_type, {})
        return _run_host_float(host, g, vals)
    if isinstance(op, Alias):
        return [vals[op.inputs[0]].reshape(T[op.outputs[0]].shape)]
    if isinstance(op, Transpose):
        x, y = T[op.inputs[0]], T[op.outputs[0]]
        op.check(x.shape, y.shape)
        p, v = op.requant(x, y), vals[op.inputs[0]]
        if p is not None:
            v = _run_affine(op, v, p, x, y)
        return [np.transpose(v, [int(a) for a in np.asarray(op.perm).reshape(-1)])]
    if isinstance(op, Concat):
        y = T[op.outputs[0]]
        parts = []
        for n in op.inputs:
            x, p = T[n], op.requant(T[n], y)
            parts.append(vals[n] if p is None else _run_affine(op, vals[n], p, x, y))
        return [np.concatenate(parts, axis=op.axis)]
    if isinstance(op, (HostFloat, HostGraph)):
        return _run_host_float(op, g, vals)
    if isinstance(op, HostQuant):
        return _run_host_quant(op, g, vals)
    if isinstance(op, PhaseSplit):
        return [golden.phase_split(vals[op.inputs[0]], op.stride, op.pads, op.phases,
                                   op.out_hw, op.value)]
    raise TypeError(f"no semantics for {type(op).__name__}")


def reference_run(g, inputs):
    """Run the whole IR on ``inputs`` (name -> int array, or float where the graph's input is
    a float tensor read by the host); returns all values."""
    vals = {k: np.asarray(v).astype(np.int64 if k not in g.tensors or g.tensors[k].quantized
                                    else np.float32) for k, v in inputs.items()}
    for op in g.ops:
        for n, v in zip(op.outputs, run_op(op, g, vals)):
            t = g.tensors[n]
            v = np.asarray(v).reshape(t.shape)
            vals[n] = v.astype(np.int64) if t.quantized else v.astype(np.float32)
    return vals
