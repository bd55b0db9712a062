"""Integer golden model of the quantized operators the accelerator runs.

Written from the operator definitions (ONNX QLinearConv / ConvInteger / MaxPool /
QLinearAveragePool / QLinearAdd / QLinearMatMul), independently of the hardware and of the FFA
algebra: convolution here is the direct sum over the kernel window. Everything is integer; the
only real-valued step is :func:`quantize_multiplier`, which the compiler runs once to turn a real
scale into the integer multiplier and shift the hardware applies.

Conventions
-----------
* Tensors are NCHW numpy integer arrays; activations hold uint8 or int8 values, weights int8
  ``(O, C / groups, kh, kw)``, bias int32 ``(O,)``.
* Accumulators are returned as int64 so that a caller can *check* that they fit the hardware's
  int32 accumulator (:func:`check_int32`) instead of silently wrapping.
* Requantization is ``clamp(((acc * M + 2**(s-1)) >> s) + zp, qmin, qmax)`` with a per-channel
  31-bit normalized multiplier ``M`` in ``[2**30, 2**31)`` and shift ``s``: round half up.
"""

import math

import numpy as np

__all__ = [
    "quantize_multiplier", "requantize", "check_int32", "pad2d", "conv2d", "requantized_conv2d",
    "maxpool2d", "avgpool2d", "add_params", "add", "affine_params", "channel_affine",
    "fully_connected", "qrange", "phase_split",
    "level_thresholds", "to_levels", "to_codes",
]

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def qrange(dtype):
    """``(qmin, qmax)`` of an 8-bit activation type (``"uint8"``/``"int8"`` or numpy dtype)."""
    info = np.iinfo(np.dtype(dtype))
    return int(info.min), int(info.max)


def quantize_multiplier(scale):
    """Integer ``(M, s)`` with ``M / 2**s ≈ scale``, ``M`` a 31-bit normalized multiplier.

    Parameters
    ----------
    scale : float or array_like of float
        Positive real scale(s), e.g. ``s_x * s_w / s_y``.

    Returns
    -------
    (M, s) : tuple of int64 arrays (or ints for a scalar input)
        ``2**30 <= M < 2**31`` and ``1 <= s <= 62``.
    """
    scalar = np.ndim(scale) == 0
    scales = np.atleast_1d(np.asarray(scale, dtype=np.float64))
    Ms, ss = [], []
    for sc in scales:
        if not (sc > 0 and math.isfinite(sc)):
            raise ValueError(f"requantization scale must be positive and finite, got {sc!r}")
        mant, exp = math.frexp(sc)                    # sc = mant * 2**exp, mant in [0.5, 1)
        M = round(mant * (1 << 31))
        if M == 1 << 31:
            M //= 2
            exp += 1
        s = 31 - exp
        if not 1 <= s <= 62:
            raise ValueError(f"requantization scale {sc!r} is out of the supported range "
                             f"(shift {s} not in 1..62)")
        Ms.append(M)
        ss.append(s)
    if scalar:
        return Ms[0], ss[0]
    return np.array(Ms, dtype=np.int64), np.array(ss, dtype=np.int64)


def _channel(v, ndim):
    """Broadcast a per-channel vector along axis 1 of an ``ndim``-dimensional tensor."""
    v = np.asarray(v, dtype=np.int64)
    if v.ndim == 0:
        return v
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def requantize(acc, multiplier, shift, zp, qmin, qmax):
    """``clamp(((acc * M + 2**(s-1)) >> s) + zp, qmin, qmax)``, per channel along axis 1.

    Exact integer arithmetic (Python ints through numpy object arrays would be slow; ``acc * M``
    fits int64 only for int32 ``acc``, so this splits the product).
    """
    acc = np.asarray(acc, dtype=np.int64)
    M = _channel(multiplier, acc.ndim)
    s = _channel(shift, acc.ndim)
    check_int32(acc, "requantize input")
    # acc * M needs up to 62 bits plus sign: fits int64 exactly for |acc| < 2**31, M < 2**31.
    prod = acc * M
    rounded = (prod + (np.int64(1) << (s - 1))) >> s
    out = rounded + _channel(zp, acc.ndim)
    return np.clip(out, qmin, qmax).astype(np.int64)


def level_thresholds(levels):
    """The thresholds of ascending integer ``levels``: ``t[j] = floor((l[j] + l[j+1]) / 2) + 1``,
    so :func:`to_levels` gives every value its nearest level (a tie goes to the lower)."""
    lv = np.asarray(levels, dtype=np.int64)
    return (lv[:-1] + lv[1:]) // 2 + 1


def to_codes(v, thresholds):
    """The code of each value ``v``: the number of ``thresholds`` at or below it."""
    v = np.asarray(v, dtype=np.int64)
    t = np.asarray(thresholds, dtype=np.int64)
    return (v[..., None] >= t).sum(axis=-1) if t.size else np.zeros(v.shape, dtype=np.int64)


def to_levels(v, thresholds, levels):
    """Non-uniform activation levels (``POST`` with ``O_NLEV``): each value ``v`` becomes
    ``levels[c]``, ``c`` its code (:func:`to_codes`). The accelerator stores the level (a
    byte) or, with flag ``CODES``, the code (4 bits)."""
    return np.asarray(levels, dtype=np.int64)[to_codes(v, thresholds)]


def check_int32(acc, what="accumulator"):
    """Raise ``OverflowError`` if any element of ``acc`` does not fit int32."""
    acc = np.asarray(acc)
    if acc.size and (acc.min() < INT32_MIN or acc.max() > INT32_MAX):
        raise OverflowError(f"{what} exceeds int32: range [{acc.min()}, {acc.max()}]")
    return acc


def _pads4(pads):
    """Normalize padding to ``(top, left, bottom, right)`` (ONNX order: begins then ends)."""
    if np.ndim(pads) == 0:
        p = int(pads)
        return p, p, p, p
    pads = tuple(int(p) for p in pads)
    if len(pads) == 2:
        return pads[0], pads[1], pads[0], pads[1]
    if len(pads) == 4:
        return pads
    raise ValueError(f"pads must be an int, (ph, pw) or (top, left, bottom, right), got {pads}")


def _pair(v, name):
    if np.ndim(v) == 0:
        return int(v), int(v)
    v = tuple(int(e) for e in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v}")
    return v


def pad2d(x, pads, value):
    """Pad the two spatial axes of an NCHW tensor with ``value`` (int64 result)."""
    t, l, b, r = _pads4(pads)
    x = np.asarray(x, dtype=np.int64)
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=value)


def _windows(xp, kh, kw, sh, sw, dh=1, dw=1):
    """Yield ``(i, j, view)`` where view[n, c, y, x] = xp[n, c, y*sh + i*dh, x*sw + j*dw]."""
    H, W = xp.shape[2:]
    oh = (H - (kh - 1) * dh - 1) // sh + 1
    ow = (W - (kw - 1) * dw - 1) // sw + 1
    if oh <= 0 or ow <= 0:
        raise ValueError(f"kernel {kh}x{kw} does not fit the padded input {H}x{W}")
    for i in range(kh):
        for j in range(kw):
            y0, x0 = i * dh, j * dw
            yield i, j, xp[:, :, y0:y0 + (oh - 1) * sh + 1:sh, x0:x0 + (ow - 1) * sw + 1:sw]


def conv2d(x, w, bias=None, *, x_zp=0, w_zp=0, stride=1, pads=0, groups=1, dilation=1):
    """Integer 2-D convolution (cross-correlation, as ONNX Conv), int64 accumulators.

    ``acc[n, o, y, x] = bias[o] + sum_{c, i, j} (xp[n, c, y*sh + i, x*sw + j] - x_zp)
    * (w[o, c, i, j] - w_zp[o])`` where ``xp`` is ``x`` padded with ``x_zp`` (padding with the
    zero point is padding with real zero).

    Parameters
    ----------
    x : ndarray (N, C, H, W)
    w : ndarray (O, C // groups, kh, kw)
    bias : ndarray (O,), optional
    x_zp : int
        Input zero point.
    w_zp : int or ndarray (O,)
        Weight zero point(s); 0 for symmetric weights.
    stride, dilation : int or (int, int)
    pads : int, (ph, pw) or (top, left, bottom, right)
    groups : int
    """
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d needs NCHW input and OIHW weights, got {x.shape} and {w.shape}")
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    if C % groups or O % groups or C // groups != Cg:
        raise ValueError(f"groups={groups} inconsistent with input channels {C}, weight {w.shape}")
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
    w = w - np.asarray(w_zp, dtype=np.int64).reshape(-1, 1, 1, 1)
    xp = pad2d(x, pads, x_zp) - int(x_zp)
    Og = O // groups
    acc = None
    for i, j, view in _windows(xp, kh, kw, sh, sw, dh, dw):
        # view (N, C, oh, ow) -> per group contraction over the group's channels
        v = view.reshape(N, groups, Cg, *view.shape[2:])
        wij = w[:, :, i, j].reshape(groups, Og, Cg)
        term = np.einsum("ngchw,goc->ngohw", v, wij).reshape(N, O, *view.shape[2:])
        acc = term if acc is None else acc + term
    if bias is not None:
        acc = acc + _channel(bias, 4)
    return acc


def phase_split(x, stride, pads, phases, out_hw, value):
    """Space-to-depth of a padded NCHW map into its stride phases (the polyphase form of a
    stride-``s`` convolution's input).

    ``y[n, c * P + i, a, b] = xp[n, c, s*a + p_i, s*b + q_i]`` for the ``P`` phases
    ``(p_i, q_i)`` of ``phases`` (each in ``[0, s)``), ``a < out_hw[0]``, ``b < out_hw[1]``,
    where ``xp`` is ``x`` padded by ``pads`` (top, left, bottom, right) with ``value``;
    positions beyond the padded map hold ``value`` too. Then a stride-``s`` correlation of
    ``xp`` with ``w`` equals the stride-1 correlation of ``y`` with the kernel whose channel
    ``c * P + i`` holds ``w[:, c, s*a' + p_i, s*b' + q_i]`` (0 past the kernel).
    """
    s = int(stride)
    ho, wo = (int(v) for v in out_hw)
    phases = [(int(p), int(q)) for p, q in np.asarray(phases).reshape(-1, 2)]
    if s < 1 or ho < 1 or wo < 1 or not phases or \
            any(not (0 <= p < s and 0 <= q < s) for p, q in phases):
        raise ValueError(f"phase_split: stride {s}, output {ho}x{wo} and phases {phases} "
                         f"are inconsistent")
    xp = pad2d(x, pads, value)
    N, C, H, W = xp.shape
    full = np.full((N, C, s * ho, s * wo), value, dtype=np.int64)
    h, w = min(H, s * ho), min(W, s * wo)
    full[:, :, :h, :w] = xp[:, :, :h, :w]
    v = full.reshape(N, C, ho, s, wo, s)
    y = np.stack([v[:, :, :, p, :, q] for p, q in phases], axis=2)    # (N, C, P, ho, wo)
    return y.reshape(N, C * len(phases), ho, wo)


def requantized_conv2d(x, w, bias, multiplier, shift, y_zp, qmin, qmax, **conv_args):
    """:func:`conv2d` followed by :func:`requantize` (the whole QLinearConv)."""
    acc = conv2d(x, w, bias, **conv_args)
    return requantize(acc, multiplier, shift, y_zp, qmin, qmax)


def maxpool2d(x, kernel, stride=None, pads=0):
    """Max-pool over spatial windows; padded positions never win (ONNX MaxPool)."""
    x = np.asarray(x, dtype=np.int64)
    kh, kw = _pair(kernel, "kernel")
    sh, sw = _pair(kernel if stride is None else stride, "stride")
    xp = pad2d(x, pads, np.iinfo(np.int64).min)
    out = None
    for _, _, view in _windows(xp, kh, kw, sh, sw):
        out = view.copy() if out is None else np.maximum(out, view)
    return out


def avgpool2d(x, kernel, stride=None, pads=0, *, x_zp, scale, y_zp, qmin, qmax,
              count_include_pad=False):
    """Quantized average pool (QLinearAveragePool).

    ``y = clamp(round(sum(x - x_zp) * scale / count) + y_zp)`` with ``scale = s_x / s_y``; the
    division by the window's element count is folded into an integer multiplier per distinct
    count, so the whole operation is integer sum + :func:`requantize`.
    """
    x = np.asarray(x, dtype=np.int64)
    kh, kw = _pair(kernel, "kernel")
    sh, sw = _pair(kernel if stride is None else stride, "stride")
    xp = pad2d(x - int(x_zp), pads, 0)
    ones = pad2d(np.ones((1, 1) + x.shape[2:], dtype=np.int64), pads, 1 if count_include_pad else 0)
    acc = cnt = None
    for (_, _, v), (_, _, c) in zip(_windows(xp, kh, kw, sh, sw), _windows(ones, kh, kw, sh, sw)):
        acc = v.copy() if acc is None else acc + v
        cnt = c.copy() if cnt is None else cnt + c
    out = np.empty(acc.shape, dtype=np.int64)
    cnt = np.broadcast_to(cnt, acc.shape)
    for count in np.unique(cnt):
        M, s = quantize_multiplier(scale / int(count))
        sel = cnt == count
        out[sel] = requantize(acc[sel], M, s, y_zp, qmin, qmax)
    return out


def add_params(a_scale, b_scale, y_scale, input_bits=16):
    """Integer parameters of a quantized add: ``(ka, kb, M, s)``.

    ``y = (sa (a - za) + sb (b - zb)) / sy`` is computed as
    ``requantize((a - za) ka + (b - zb) kb, M, s)`` with ``ka / kb = sa / sb`` to
    ``input_bits`` bits of precision and ``M / 2**s = max(sa, sb) / (2**input_bits sy)``.
    """
    big = max(a_scale, b_scale)
    ka = round(a_scale / big * (1 << input_bits))
    kb = round(b_scale / big * (1 << input_bits))
    M, s = quantize_multiplier(big / ((1 << input_bits) * y_scale))
    return ka, kb, M, s


def add(a, b, *, a_zp, b_zp, ka, kb, multiplier, shift, y_zp, qmin, qmax):
    """Quantized elementwise add with the integer parameters of :func:`add_params`."""
    acc = (np.asarray(a, np.int64) - int(a_zp)) * ka + (np.asarray(b, np.int64) - int(b_zp)) * kb
    return requantize(acc, multiplier, shift, y_zp, qmin, qmax)


def affine_params(scale, offset, x_zp, x_range, input_bits=14):
    """Integer parameters of the per-channel affine map ``y = scale[c] (x - x_zp) + offset[c]``
    (a BatchNormalization between quantized tensors: ``offset`` in output steps, before the
    output's zero point) as a quantized add of ``x`` with itself (:func:`channel_affine`)::

        acc = (x - x_zp) ka + (x - zb) kb = K (x - x_zp) + kb (x_zp - zb),   K = ka + kb = ±2**k
        y   = requantize(acc, M, s),   M / 2**s = |scale| / 2**k

    so ``kb (x_zp - zb)`` is ``offset`` in units of ``2**-k`` input steps, rounded. ``ka``
    and ``kb`` are int16 and ``zb`` an activation value in ``x_range``; ``k`` is the largest
    ``<= input_bits`` for which the offset fits them, and of those ``(kb, zb)`` the one nearest
    the offset. A scale for which no ``k`` fits (its effect over the whole input range is then
    below ``1/60`` of an output step where the offset is inside the output range) or which
    moves the output by less than ``2**-12`` of a step over the input range is taken as 0:
    ``K = 0`` and ``M / 2**s = 2**-k``, the largest ``k`` the offset fits.

    Returns ``(ka, kb, zb, M, s)``, int64 arrays of one entry per channel.
    """
    scale = np.atleast_1d(np.asarray(scale, dtype=np.float64))
    offset = np.broadcast_to(np.asarray(offset, dtype=np.float64), scale.shape)
    lo, hi = int(x_range[0]), int(x_range[1])
    zbs = np.array([z for z in range(lo, hi + 1) if z != int(x_zp)], dtype=np.int64)
    d = int(x_zp) - zbs                               # x_zp - zb for every allowed zb
    i16 = (-(1 << 15), (1 << 15) - 1)
    out = np.zeros((5, scale.size), dtype=np.int64)
    for c, (a, b) in enumerate(zip(scale.tolist(), offset.tolist())):
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError(f"channel {c}: scale {a!r} and offset {b!r} must be finite")
        best = None
        for zero in ((False, True) if abs(a) * (hi - lo) >= 2.0 ** -12 else (True,)):
            for k in range(input_bits, -1, -1):
                # the unit of acc: |scale| / 2**k, or 2**-k with the scale taken as 0
                K, unit = (0, 2.0 ** -k) if zero else \
                    ((1 << k) if a > 0 else -(1 << k), abs(a) / (1 << k))
                if not 2.0 ** -32 <= unit < 2.0 ** 30:    # quantize_multiplier's shifts
                    continue
                t = b / unit
                kb = np.rint(t / d)
                ok = (kb >= i16[0]) & (kb <= i16[1]) & (K - kb >= i16[0]) & (K - kb <= i16[1])
                if ok.any():
                    j = int(np.argmin(np.where(ok, np.abs(kb * d - t), np.inf)))
                    best = (K, int(kb[j]), int(zbs[j]), unit)
                    break
            if best is not None:
                break
        if best is None:
            raise ValueError(f"channel {c}: offset {b!r} is beyond the integer form's range")
        K, kb, zb, unit = best
        M, s = quantize_multiplier(unit)
        out[:, c] = (K - kb, kb, zb, M, s)
    return tuple(out)


def channel_affine(x, *, x_zp, ka, kb, zb, multiplier, shift, y_zp, qmin, qmax):
    """The per-channel affine map of :func:`affine_params` on NCHW (or NC...) ``x``:
    ``requantize((x - x_zp) ka[c] + (x - zb[c]) kb[c], M[c], s[c])`` along axis 1."""
    x = np.asarray(x, np.int64)
    acc = (x - int(x_zp)) * _channel(ka, x.ndim) + (x - _channel(zb, x.ndim)) * _channel(kb, x.ndim)
    return requantize(acc, multiplier, shift, y_zp, qmin, qmax)


def fully_connected(x, w, bias=None, *, x_zp=0, w_zp=0):
    """Integer fully-connected layer: ``acc[n, o] = bias[o] + sum_k (x[n,k]-x_zp)(w[o,k]-w_zp[o])``."""
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"fully_connected needs x (N, K) and w (O, K), got {x.shape}, {w.shape}")
    wz = np.asarray(w_zp, dtype=np.int64).reshape(-1, 1) if np.ndim(w_zp) else int(w_zp)
    acc = (x - int(x_zp)) @ (w - wz).T
    if bias is not None:
        acc = acc + np.asarray(bias, dtype=np.int64)
    return acc
