"""Non-uniform activation quantization: per-layer codebooks of ``2**b`` levels (b = 2..6).

A quantized model's activations use all 256 values of their 8-bit type. Two published
intra-layer schemes keep fewer, each layer its own:

* **equal-distance** (``"ed"``): ``n`` evenly spaced levels from the layer's smallest value to
  a top level chosen to minimize the squared error over the calibration data; values above
  the top level saturate to it;
* **K-means** (``"kmeans"``): ``n`` centroids of the layer's calibration values (Lloyd's
  algorithm, in one dimension, on their histogram).

Levels are integers of the tensor's own 8-bit type (its scale and zero point are unchanged),
so the convolutions that read a coded tensor run as before. The convolution (or Gemm) that
writes it rounds every output to the nearest level (:func:`ffacc.sim.golden.to_levels`; a tie
goes to the lower): the accelerator's ``POST`` does it with the thresholds between the levels
(:mod:`ffacc.hw.levels`). Where the compiler can, a map of at most 16 levels is stored as
4-bit codes, two a byte; one of more levels (b = 5, 6) is stored a level a byte, so its
activation bytes are int8's and only its accuracy differs.

:func:`calibrate_levels` runs the integer reference over calibration inputs layer by layer,
each layer seeing the earlier layers' levels, and gives every eligible tensor its codebook:
the outputs of the convolutions and Gemms the accelerator runs, but not the model's outputs.
"""

from dataclasses import replace

import numpy as np

from .ir import Conv, Gemm, run_op

__all__ = ["METHODS", "CodesError", "parse_codes", "equal_distance_levels", "kmeans_levels",
           "calibrate_levels", "levels_of"]

METHODS = ("ed", "kmeans")
MIN_BITS, MAX_BITS = 2, 6


class CodesError(ValueError):
    """A bad codebook request: method, bit width or calibration data."""


def parse_codes(spec):
    """``"kmeans:4"`` or ``"ed:3"`` -> ``(method, bits)``; a clear error for anything else."""
    method, sep, bits = str(spec).partition(":")
    if not sep or method not in METHODS or not bits.isdigit():
        raise CodesError(f"act codes {spec!r}: write METHOD:BITS with METHOD one of "
                         f"{', '.join(METHODS)} (equal-distance, K-means) and BITS "
                         f"{MIN_BITS}..{MAX_BITS}, e.g. kmeans:4")
    return method, _bits(int(bits))


def _bits(bits):
    if not MIN_BITS <= bits <= MAX_BITS:
        raise CodesError(f"act codes of {bits} bits: the accelerator's POST has at most "
                         f"{1 << MAX_BITS} levels, so BITS is {MIN_BITS}..{MAX_BITS}")
    return bits


def _histogram(values):
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if v.size == 0:
        raise CodesError("no calibration values")
    lo = int(v.min())
    counts = np.bincount(v - lo)
    vals = np.flatnonzero(counts) + lo
    return vals, counts[vals - lo].astype(np.float64)


def _sq_error(vals, w, levels):
    from ffacc.sim.golden import level_thresholds, to_levels
    q = to_levels(vals, level_thresholds(levels), levels)
    return float(np.sum(w * (vals - q) ** 2))


def _finish(levels, vals):
    """Rounded, distinct, ascending (a constant tensor: its one value; the caller adds a
    second level within the tensor's range)."""
    return tuple(sorted({int(round(x)) for x in levels}))


def equal_distance_levels(values, n):
    """``n`` evenly spaced integer levels from the smallest of ``values`` to the top level of
    least squared error (tried at every value seen from the median up)."""
    vals, w = _histogram(values)
    lo = int(vals[0])
    cand = vals[vals > lo]
    if cand.size == 0:
        return _finish([lo], vals)
    cum = np.cumsum(w) / w.sum()
    cand = cand[cum[np.searchsorted(vals, cand)] >= 0.5] if cand.size > 1 else cand
    best = None
    for hi in cand:
        lv = _finish(np.linspace(lo, int(hi), n), vals)
        e = _sq_error(vals, w, lv)
        if best is None or e < best[0]:
            best = (e, lv)
    return best[1]


def kmeans_levels(values, n, iters=100):
    """``n`` integer levels: Lloyd's K-means on ``values`` (weighted by their counts), its
    centroids rounded. It starts twice, at the values' quantiles and evenly over their range
    (a cluster left empty takes the value farthest from its level), and keeps the levels of
    least squared error."""
    vals, w = _histogram(values)
    if vals.size <= n:
        return _finish(vals, vals)
    cum = np.cumsum(w) / w.sum()
    starts = [vals[np.minimum(np.searchsorted(cum, (np.arange(n) + 0.5) / n), vals.size - 1)],
              np.linspace(vals[0], vals[-1], n)]
    best = None
    for c in starts:
        c = np.sort(np.asarray(c, dtype=np.float64))
        for _ in range(iters):
            mid = (c[:-1] + c[1:]) / 2
            k = np.searchsorted(mid, vals, side="left")      # a tie goes to the lower
            new = c.copy()
            for j in range(n):
                sel = k == j
                if np.any(sel):
                    new[j] = np.average(vals[sel], weights=w[sel])
                else:                   # empty: the value worst served by its level
                    new[j] = vals[np.argmax(w * (vals - c[k]) ** 2)]
            new = np.sort(new)
            if np.allclose(new, c):
                break
            c = new
        lv = _finish(c, vals)
        e = _sq_error(vals, w, lv)
        if best is None or e < best[0]:
            best = (e, lv)
    return best[1]


LEVELS = {"ed": equal_distance_levels, "kmeans": kmeans_levels}


def calibrate_levels(g, inputs, method, bits, eligible=None):
    """A copy of graph ``g`` with codebooks on its eligible tensors.

    ``inputs``: calibration inputs, a list of ``{input name: array}`` as
    :func:`~ffacc.compiler.ir.reference_run` takes them. ``eligible(op)``: whether a Conv or
    Gemm's output may be coded (the compiler passes "runs on the accelerator"); the model's
    outputs never are. Layers are calibrated in order, each on values computed with the
    earlier layers' levels. Returns ``(graph, {tensor: levels})``.
    """
    if method not in LEVELS:
        raise CodesError(f"act codes method {method!r}: one of {', '.join(METHODS)}")
    n = 1 << _bits(bits)
    if not inputs:
        raise CodesError("act codes need calibration inputs (none given)")
    vals = [{k: np.asarray(v).astype(np.int64 if k not in g.tensors or g.tensors[k].quantized
                                       else np.float32) for k, v in x.items()} for x in inputs]
    tensors = dict(g.tensors)
    g2 = replace(g, tensors=tensors)
    chosen = {}
    for op in g.ops:
        outs = [run_op(op, g2, v) for v in vals]
        name = op.outputs[0]
        t = tensors[name]
        if (isinstance(op, (Conv, Gemm)) and t.quantized and name not in g.outputs
                and (eligible is None or eligible(op))):
            lv = LEVELS[method](np.concatenate([o[0].reshape(-1) for o in outs]), n)
            lo, hi = t.qrange
            lv = tuple(sorted({min(max(x, lo), hi) for x in lv}))
            if len(lv) < 2:
                lv = (lv[0], lv[0] + 1) if lv[0] < hi else (lv[0] - 1, lv[0])
            tensors[name] = replace(t, levels=lv)
            chosen[name] = lv
            from ffacc.sim.golden import level_thresholds, to_levels
            outs = [[to_levels(o[0], level_thresholds(lv), lv)] for o in outs]
        for v, o in zip(vals, outs):
            for nm, x in zip(op.outputs, o):
                tt = tensors[nm]
                x = np.asarray(x).reshape(tt.shape)
                v[nm] = x.astype(np.int64) if tt.quantized else x.astype(np.float32)
    if not chosen:
        raise CodesError("act codes: no tensor to code (the model has no convolution or Gemm "
                         "on the accelerator whose output is not a model output)")
    return g2, chosen


def levels_of(g):
    """``{tensor: levels}`` of graph ``g``'s coded tensors."""
    return {n: t.levels for n, t in g.tensors.items() if t.levels is not None}
