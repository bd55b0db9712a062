"""Lowering of single quantized layers to accelerator commands.

The unit of work is a *layer on tensors in memory*: the caller (the graph compiler, or a test
assembling a program by hand) decides where tensors live; this module cuts the layer into
bands, channel groups and output-lane groups that fit the configuration's buffers, pre-adds the
weights with the shared FFA algebra, and emits ``SET``/command sequences through
:class:`ffacc.firmware.isa.Program`.
"""

from dataclasses import dataclass, replace
from math import ceil

import numpy as np

from ffacc.firmware.isa import (ConvFlag, LoadAFlag, LoadWFlag, Op, PostFlag, Program, Reg,
                                decode,
                                pack_affine, pack_levels, pack_load_levels, pack_qparam)
from ffacc.hw.loada import max_cshift
from ffacc.hw.weights import fits4, pack4, raw_set
from ffacc.sim import golden
from ffacc.sim.cycles import LOADA_FIXED, CycleModel

from .emit import Nest
from .ir import bounds, requant_params

__all__ = ["ConvLayer", "ir_conv_layer", "LoweringError", "layer_weights", "lower_conv",
           "conv_plan_cycles", "lower_add", "lower_adds", "lower_channel_affine", "Blob",
           "maxpool_layers", "maxpool_refusal",
           "build_image", "MemoryPlan"]


class LoweringError(ValueError):
    """A layer that cannot run on this configuration (the message says which limit)."""


@dataclass
class Blob:
    """Bytes the program needs in memory at ``addr``."""
    name: str
    addr: int
    data: bytes


class MemoryPlan:
    """A bump allocator for tensors, weights and parameters (aligned to ``align`` bytes).
    Constant data placed twice (:meth:`place`: the same weights of an average pool's regions,
    say) is stored once."""

    def __init__(self, base=0, align=8):
        self.next = base
        self.align = align
        self.blobs = []
        self._placed = {}               # bytes -> address

    def alloc(self, name, nbytes, data=None):
        addr = -(-self.next // self.align) * self.align
        self.next = addr + nbytes
        if data is not None:
            data = bytes(data)
            assert len(data) == nbytes, (name, len(data), nbytes)
            self.blobs.append(Blob(name, addr, data))
        return addr

    def place(self, name, data):
        """The address of constant ``data`` (read only), placed unless it is already."""
        data = bytes(data)
        if data not in self._placed:
            self._placed[data] = self.alloc(name, len(data), data)
        return self._placed[data]


@dataclass
class ConvLayer:
    """A quantized convolution on one image (NCHW, batch 1).

    ``w`` (O, C, kh, kw) int8; ``bias`` int32 (O,) with the input zero point already folded
    (``bias - x_zp * sum(w)``: the hardware pads with ``x_zp`` and multiplies raw activations);
    ``multiplier``/``shift`` per output channel; ``y_zp``, ``qmin``, ``qmax`` the output
    zero point and clamp (ReLU folded in).
    """
    w: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    x_zp: int
    y_zp: int
    qmin: int
    qmax: int
    in_shape: tuple                 # (C, H, W)
    pads: tuple = (0, 0, 0, 0)      # top, left, bottom, right
    stride: int = 1
    pool2: bool = False             # 2x2 max-pool (stride 2) after requantization: pool (2, 2)
    levels: tuple = None            # non-uniform output levels (ascending), or None
    y_codes: bool = False           # the output is stored as the levels' 4-bit codes
    x_levels: tuple = None          # the input is stored as codes of these levels, or None
    levels_set: bool = True         # set the output-level registers (False: they hold these)
    pool: tuple = None              # (k, s): max-pool of k x k windows at stride s after
                                    # requantization (the windows in the map, padded by
                                    # pool_pads); given as (k, s, pads), it sets pool_pads
    pool_pads: tuple = (0, 0, 0, 0)  # the pool's padding (top, left, bottom, right; each
                                    # below k: no value, POST's O_POOLPAD, pool_pads)
    lane_inputs: bool = False       # each lane group of output channels reads its own
                                    # in_shape[0] input channels, lane group i's from input
                                    # channel i * in_shape[0] on (groups packed a lane group
                                    # at a time: w holds each one's block-diagonal weights)
    out_shuffle: tuple = None       # (G, n): output channel o is map (o % n) G + o // n of
                                    # the output (a fused channel shuffle; O_CSTRIDE G maps)
    affine: tuple = None            # a fused per-channel affine map after the requantization
                                    # (and the pool): (ka, kb, zb, M, s) per output channel
                                    # (golden.affine_params) and the output's (zp, qmin,
                                    # qmax); POST's flag AFFINE, a second record a channel

    def __post_init__(self):
        if self.pool2 and self.pool is None:
            self.pool = (2, 2)
        if self.pool is not None:
            if len(self.pool) == 3:
                self.pool, self.pool_pads = self.pool[:2], self.pool[2]
            self.pool = tuple(int(v) for v in self.pool)
            self.pool_pads = tuple(int(v) for v in self.pool_pads)
            self.pool2 = self.pool == (2, 2) and not any(self.pool_pads)

    @property
    def kernel(self):
        return self.w.shape[2], self.w.shape[3]

    @property
    def conv_out(self):
        C, H, W = self.in_shape
        kh, kw = self.kernel
        t, l, b, r = self.pads
        return H + t + b - kh + 1, W + l + r - kw + 1

    @property
    def out_shape(self):
        ho, wo = self.conv_out
        O = self.w.shape[0]
        if self.pool:
            (k, s), (t, l, b, r) = self.pool, self.pool_pads
            return O, max(0, (ho + t + b - k) // s + 1), max(0, (wo + l + r - k) // s + 1)
        s = self.stride
        return O, ceil(ho / s), ceil(wo / s)


def _group_sets(cfg, w):
    """The int8 weight sets of lane groups, as ``LOADW`` reads them: ``(raw, mac)``.

    ``w`` is ``(groups, lanes, C, kh, kw)`` int8 (unused lanes zero). Sets are ordered
    piece-major, then passes of ``rows`` consecutive (channel, kernel-row) pairs, exactly as
    ``CONV`` consumes them. ``raw`` is ``(groups, nsets, rows, N, lanes)``
    (:func:`ffacc.hw.weights.raw_set`), or ``(groups, nsets, rows, lanes)`` for a 1-wide
    kernel (``mac``: the MAC-mode sets, one weight per engine and output channel; ``lanes``
    is then :meth:`~ffacc.hw.config.AcceleratorConfig.group_lanes`). The hardware
    pre-adds them as they load.
    """
    from ffacc.sim.iss import conv_geometry

    n, P, C, kh, kw = w.shape
    R, N = cfg.rows, cfg.fcu.piece_taps
    npairs = C * kh
    g = conv_geometry(cfg, kh, kw, 1, npairs)
    nsets = g.passes_per_piece
    rows = w.reshape(n, P, npairs, kw).transpose(0, 2, 1, 3)   # [group, pair c kh + i, lane, tap]
    if g.mac:
        out = np.zeros((n, nsets * R, P), dtype=np.int8)
        out[:, :npairs] = rows[..., 0]
        return out.reshape(n, nsets, R, P), True
    out = np.zeros((n, g.pieces, nsets * R, N, P), dtype=np.int8)   # rows past the last: 0
    for piece in range(g.pieces):
        raw_set(cfg.fcu, rows[..., piece * N:(piece + 1) * N], out=out[:, piece, :npairs])
    return out.reshape(n, g.pieces * nsets, R, N, P), False


def ir_conv_layer(op, x, y, w, in_shape, pads, stride, pool=None, out=slice(None)):
    """The :class:`ConvLayer` of the IR Conv or Gemm ``op`` (input tensor ``x``, output ``y``)
    for its output channels ``out``, with weights ``w`` (O, C, kh, kw) of those channels: the
    requantization from the scales, the input zero point folded into the bias; ``pool``: a
    fused max-pool's ``(k, s)``."""
    M, sh = requant_params(x.scale, op.w_scale, y.scale)
    lo, hi = bounds(op, y)
    bias = op.bias[out] - x.zero_point * w.sum(axis=(1, 2, 3))
    return ConvLayer(w, bias, M[out], sh[out], x.zero_point, y.zero_point, lo, hi, in_shape,
                     tuple(pads), stride, pool=pool)


def pack_groups(cfg, groups, group_out, kw):
    """How many of a grouped conv's ``groups`` (each of ``group_out`` output channels, a
    kernel ``kw`` wide) one ``CONV`` runs: as many as fill the output channels it computes
    (:meth:`~ffacc.hw.config.AcceleratorConfig.group_lanes`), at least one."""
    if groups < 1 or group_out < 1:
        raise ValueError(f"{groups} groups of {group_out} output channels")
    return max(1, min(groups, cfg.group_lanes(kw) // group_out))


def block_diagonal(w, n):
    """The weights of ``n`` consecutive groups of a grouped conv, ``w`` (n Og, Cg, kh, kw), as
    one conv's (n Og, n Cg, kh, kw): group ``i``'s outputs read its own ``Cg`` inputs, with
    zero weights for the other groups'."""
    O, Cg = w.shape[:2]
    if O % n:
        raise ValueError(f"{O} output channels are not {n} groups")
    Og = O // n
    out = np.zeros((O, n * Cg) + w.shape[2:], dtype=w.dtype)
    for i in range(n):
        out[i * Og:(i + 1) * Og, i * Cg:(i + 1) * Cg] = w[i * Og:(i + 1) * Og]
    return out


def layer_weights(cfg, w, cg, packed=False):
    """A layer's weights as ``LOADW`` reads them: one block per lane group of
    :meth:`~ffacc.hw.config.AcceleratorConfig.group_lanes` output channels (``lanes``; twice
    that for a 1-wide kernel with ``mac_pairs``; the last padded with zero weights), each the
    sets of its channel groups of ``cg`` channels in order, each padded to 8 bytes (``LOADW``
    reads whole bus words).
    ``packed``: 4-bit weights, two a byte (:func:`~ffacc.hw.weights.pack4`, ``PACK4``).

    Returns ``(bytes, block bytes, [(c0, channels, offset in the block, sets)])``: lane group
    ``i``'s sets of a channel group are at ``i * block + offset``.
    """
    O, C = w.shape[:2]
    P = cfg.group_lanes(w.shape[3])
    n = -(-O // P)
    wp = np.zeros((n * P,) + w.shape[1:], dtype=np.int8)       # int8 weights, as stored
    wp[:O] = w
    wp = wp.reshape((n, P) + w.shape[1:])
    sets = [_group_sets(cfg, wp[:, :, c0:c0 + cg])[0] for c0 in range(0, C, cg)]
    stored = [(raw[0].size + 1) // 2 if packed else raw[0].size for raw in sets]
    sizes = [b + (-b % 8) for b in stored]
    out = np.zeros((n, sum(sizes)), dtype=np.uint8)     # one copy into the image's layout
    groups, off = [], 0
    for c0, raw, b, size in zip(range(0, C, cg), sets, stored, sizes):
        for i in range(n):
            out[i, off:off + b] = np.frombuffer(pack4(raw[i]) if packed
                                                else raw[i].tobytes(), np.uint8)
        groups.append((c0, min(cg, C - c0), off, raw.shape[1]))
        off += size
    return out.tobytes(), off, groups


def row_bytes(width, codes):
    """Bytes of a map's row of ``width`` activations: 4-bit codes take two a byte."""
    return -(-width // 2) if codes else width


def level_regs(cfg, layer):
    """The ``SET`` values of a layer's levels: its output's (``O_NLEV``, ``O_TH*``, ``O_LV*``)
    and, for an input of codes, their levels (``A_LV*``). None without ``act_codes``;
    ``O_NLEV = 0`` for a layer without levels (a register keeps its value from the layer
    before, and from the run before); the output's none when ``layer.levels_set`` is false
    (the registers hold them already)."""
    if (layer.levels is not None or layer.x_levels is not None) and not cfg.act_codes:
        raise LoweringError("the layer has non-uniform levels, which need a configuration "
                            "with act_codes")
    if layer.x_levels is not None:
        regs = {r.name: v for r, v in pack_load_levels(layer.x_levels).items()}
    else:
        regs = {}
    if layer.levels is None and layer.y_codes:
        raise LoweringError("codes without levels")
    if not cfg.act_codes or not layer.levels_set:
        return regs
    if layer.levels is None:
        return {"O_NLEV": 0, **regs}
    th = golden.level_thresholds(layer.levels)
    return {**regs, **{r.name: v for r, v in pack_levels(layer.levels, th).items()}}


def _pitch_for(cfg, kh, rows_needed):
    """Smallest line-buffer pitch ≥ ``rows_needed`` that is ≡ kh (mod banks)."""
    B = cfg.lb_banks
    p = rows_needed + ((kh - rows_needed) % B)
    return p


def phase_layer(cfg, layer):
    """``layer`` (stride ``s > 1``) as a stride-1 convolution over its input's stride phases,
    which ``LOADA`` takes from the input map itself with a column step (``strided_loads``):
    ``(layer', load)``, or None where that does not apply.

    Phase ``(r, q)`` of the map ``x`` is the plane ``x[r::s, q::s]``; with the padding
    ``t`` before a dimension, tap ``a`` of the kernel reads row ``s·i + a - t`` for output
    ``i``, that is row ``i + u`` of phase ``r`` where ``a - t = s·u + r``. So ``layer'`` reads
    the phases with taps (phase-major: channel ``p·C + c`` is phase ``p`` of channel ``c``)
    with the kernel ``w'[o, p·C + c, u - u0, v - v0] = w[o, c, s·u + r + t, s·v + q + l]``
    (0 where that is past ``w``), and pads ``-u0 = ceil(t / s)`` before and what its outputs
    read past the plane after. Every product is one of the layer's (or a zero tap), so results
    are the same. ``load``: ``{"s", "C", "H", "W", "phases"}`` (the input's channels and
    size, the phases' ``(r, q)``). It needs the map's size to be a multiple of ``s`` (each
    phase then is a map ``H/s × W/s`` whose channels are ``H·W`` bytes apart, as LOADA steps
    them), ``s`` a power of two up to the bus width, and no codes or pooling.
    """
    s = layer.stride
    C, H, W = layer.in_shape
    if (not cfg.strided_loads or s < 2 or s & (s - 1) or s > 1 << max_cshift(cfg)
            or H % s or W % s or layer.pool or layer.x_levels is not None):
        return None
    kh, kw = layer.kernel
    pt, pl, pb, pr = layer.pads
    _, ho, wo = layer.out_shape

    def dim(k, before, outs, size):
        """The split kernel along a dimension: its padding before (``-u0``), its taps (``u``
        from ``u0`` to ``u1``), its padding after (the rows its outputs read past the
        phase's ``size / s``) and the phases with taps."""
        pad, u1 = -(-before // s), (k - 1 - before) // s
        used = sorted({(a - before) % s for a in range(k)})
        return pad, u1 + pad + 1, outs + u1 - size // s, used

    u0, kh2, pb2, rows = dim(kh, pt, ho, H)         # u0, v0: the paddings before
    v0, kw2, pr2, cols = dim(kw, pl, wo, W)
    if pb2 < 0 or pr2 < 0:          # the outputs read less than the phase: no such padding
        return None
    phases = [(r, q) for r in rows for q in cols]
    O = layer.w.shape[0]
    w2 = np.zeros((O, len(phases), C, kh2, kw2), dtype=layer.w.dtype)
    for i, (r, q) in enumerate(phases):
        for u in range(kh2):
            a = s * (u - u0) + r + pt
            for v in range(kw2):
                b = s * (v - v0) + q + pl
                if 0 <= a < kh and 0 <= b < kw:
                    w2[:, i, :, u, v] = layer.w[:, :, a, b]
    # (the rest as the layer's: each lane group its own channels' phases, a fused affine map
    # or channel shuffle; no pool, which a strided layer never has)
    out = replace(layer, w=w2.reshape(O, len(phases) * C, kh2, kw2),
                  in_shape=(len(phases) * C, H // s, W // s), pads=(u0, v0, pb2, pr2),
                  stride=1, x_levels=None)
    assert out.out_shape == layer.out_shape, (out.out_shape, layer.out_shape)
    return out, {"s": s, "C": C, "H": H, "W": W, "phases": phases}


def flat_shapes(cfg, layer, most=3):
    """Other shapes of a pointwise layer's map: a 1x1 conv at stride 1 without padding, a
    pool or 4-bit codes computes each pixel alone, so its H x W plane (dense, row after row,
    in and out) may be read as any ``H2 x W2`` of the same pixels. The beats of a row hold
    ``ceil(W / L)`` blocks of ``L`` outputs: a 7x7 map fills 7 of every 9 columns, as 1x49
    49 of 51. The candidates: widths ``W2`` dividing ``H * W`` that fit a line-buffer row and
    fill more of their blocks than ``W`` (the ``most`` fullest, the widest first among equals);
    none for any other layer."""
    C, H, W = layer.in_shape
    if (layer.kernel != (1, 1) or layer.stride != 1 or any(layer.pads) or layer.pool
            or layer.y_codes or layer.x_levels is not None or H == 1):
        return []
    L, n = cfg.L, H * W

    def fill(w):
        return w / (L * -(-w // L))
    cands = [(n // w, w) for w in range(1, min(n, cfg.lb_width) + 1)
             if n % w == 0 and w != W and fill(w) > fill(W)]
    cands.sort(key=lambda hw: (-fill(hw[1]), -hw[1]))
    return cands[:most]


def lower_conv(cfg, layer, prog, mem, x_addr, y_addr, name="conv", plan_only=False,
               records_half=0, chain=None, info=None, loads_zero=False, phases=None,
               region=None, flat=None):
    """Emit one conv layer. ``x_addr``/``y_addr``: input and output maps (dense NCHW bytes).
    ``plan_only``: emit nothing and return the cycle model's estimate of the layer (its plan's
    cycles for every column tile), which :func:`conv_plan_cycles` gives. ``records_half``
    (0 or 1): the half of the record buffer the layer's records go to where they fit one, so
    with ``post_overlap`` its ``LOADQ`` runs beside the previous layer's last ``POST``, which
    reads the other half (consecutive layers alternate).

    ``chain`` (a dict, or None) links consecutive layers' weight loads (weight_prefetch): a
    layer whose weights load in the background leaves in it where its last ``CONV`` is
    (outside any loop) and which half of the weight buffer that ``CONV`` reads; the next
    layer, if nothing was emitted in between, loads its first weights into the other half
    with ``LOADW ASYNC`` put right before that ``CONV``, so they load while it runs instead
    of before the layer's first ``CONV``. ``chain["moved"]`` then says where and how many
    instructions went into the code before the layer's own.

    A strided layer runs as a stride-1 convolution over its input's stride phases
    (:func:`phase_layer`, ``LOADA``'s column step) where the cycle model finds that cheaper;
    ``info`` (a dict), if given, then gets ``info["phase_loads"]``: the stride, the phases,
    the split kernel and both plans' model cycles. ``loads_zero``: ``A_CSHIFT`` and ``A_LB0``
    hold 0 already (the program's layers before this one ran no phases), so a layer that
    loads whole rows need not set them. ``phases``: internal (the plan to lower: None
    decides, False keeps the layer strided, else :func:`phase_layer`'s ``load``).
    ``region``: ``(rows, cols)``, ranges of output rows and columns: only those outputs are
    computed and written (bands and column tiles of that part of the map; never over stride
    phases); None: the whole map.

    A pointwise layer runs over its map read as another shape (:func:`flat_shapes`) where the
    cycle model finds that cheaper (not over stride phases: their rows are not dense);
    ``info`` then gets ``info["flat"]``: the shape, and both plans' model cycles. ``flat``:
    internal (False keeps the map's shape).

    Returns the conv outputs per output channel that the FCU array computes: every stride-1
    column (POST keeps every ``stride``-th), and of a strided layer's rows either all of a
    band's or only those POST keeps (one CONV each, where the cycle model finds it cheaper, and
    always when a band holds fewer rows than the stride); of a layer run over its phases, its
    outputs (of the split kernel: ``info["phase_loads"]``).
    """
    from ffacc.sim.iss import conv_geometry

    if region is not None and (layer.pool or layer.y_codes or layer.x_levels is not None):
        raise LoweringError(f"{name}: a region of a pooled layer or of maps stored as codes")
    if phases is None and layer.stride > 1 and region is None:
        split = phase_layer(cfg, layer)
        if (split is not None and layer.lane_inputs
                and cfg.group_lanes(split[0].kernel[1]) != cfg.group_lanes(layer.kernel[1])):
            split = None            # (its lane groups would hold other packs: MAC mode's)
        if split is not None:
            def plan(lay, ph):
                try:
                    return lower_conv(cfg, lay, None, None, 0, 0, name=name, plan_only=True,
                                      phases=ph)
                except LoweringError:
                    return None
            strided, phased = plan(layer, False), plan(*split)
            # where the model finds the phases at least 3 % faster: its estimates of small
            # layers are off by a few percent (a depthwise 3x3 stride-2 group on 56x56 on
            # ulx3s: 5,329 against 5,431 strided, the ISS 4,752 against 4,661)
            use = phased is not None and (strided is None or phased < 0.97 * strided)
            if plan_only and (use or strided is not None):     # planned already
                return phased if use else strided
            if use:
                lay, ph = split
                if info is not None:
                    info["phase_loads"] = {
                        "stride": ph["s"], "phases": len(ph["phases"]),
                        "split_kernel": [int(d) for d in lay.kernel],
                        "channels": int(lay.in_shape[0]),
                        "model_cycles": [int(strided) if strided is not None else None,
                                         int(phased)]}
                return lower_conv(cfg, lay, prog, mem, x_addr, y_addr, name, plan_only,
                                  records_half, chain, info, loads_zero, ph)

    if flat is None and region is None and not phases:
        shapes = flat_shapes(cfg, layer)
        if shapes:
            def plan_flat(lay):
                try:
                    return lower_conv(cfg, lay, None, None, 0, 0, name=name, plan_only=True,
                                      flat=False)
                except LoweringError:
                    return None
            as_is = plan_flat(layer)
            best = None
            for hw in shapes:
                lay = replace(layer, in_shape=(layer.in_shape[0],) + hw)
                cost = plan_flat(lay)
                if cost is not None and (best is None or cost < best[0]):
                    best = (cost, lay)
            # (at least 3 % faster, as for the phases: the model's small-layer error)
            if best is not None and (as_is is None or best[0] < 0.97 * as_is):
                if plan_only:
                    return best[0]
                if info is not None:
                    info["flat"] = {"shape": [int(v) for v in best[1].in_shape[1:]],
                                    "model_cycles": [None if as_is is None else int(as_is),
                                                     int(best[0])]}
                return lower_conv(cfg, best[1], prog, mem, x_addr, y_addr, name, plan_only,
                                  records_half, chain, info, loads_zero, phases, region,
                                  flat=False)
            if plan_only and as_is is not None:
                return as_is

    ph = phases or None                 # the input's stride phases this layer reads
    C, H, W = layer.in_shape
    O, Ho, Wo = layer.out_shape
    kh, kw = layer.kernel
    pt, pl, pb, pr = layer.pads
    hconv, wconv = layer.conv_out
    if kh > cfg.max_kernel or kw > cfg.max_kernel:
        raise LoweringError(f"{name}: kernel {kh}x{kw} exceeds max_kernel {cfg.max_kernel}")
    if hconv < 1 or wconv < 1:
        raise LoweringError(f"{name}: kernel larger than the padded input")
    if layer.w.size and (layer.w.min() < -128 or layer.w.max() > 127):
        raise LoweringError(f"{name}: weights {layer.w.min()}..{layer.w.max()} are not int8")
    if layer.pool and layer.stride != 1:
        raise LoweringError(f"{name}: pooling with a strided conv is not supported")
    # a fused max-pool: k x k windows at stride s (POST's POOL); its bands and column tiles
    # hold whole windows, and overlap by k - s rows and columns where windows do
    kp, step = layer.pool if layer.pool else (1, layer.stride)
    if layer.pool and not 2 <= kp <= cfg.max_pool:
        raise LoweringError(f"{name}: a {kp}x{kp} pool: POST's windows are 2..max_pool "
                            f"({cfg.max_pool})")
    # the pool's padding: its bands and column tiles are of the padded map, each band's and
    # tile's POST told the rows and columns of it that it holds (O_POOLPAD)
    ppt, ppl, ppb, ppr = layer.pool_pads if layer.pool else (0, 0, 0, 0)
    padded = any((ppt, ppl, ppb, ppr))
    if padded:
        if not cfg.pool_pads:
            raise LoweringError(f"{name}: a padded {kp}x{kp} pool needs a configuration with "
                                f"pool_pads")
        if max(ppt, ppl, ppb, ppr) >= kp:
            raise LoweringError(f"{name}: pool padding {layer.pool_pads} is not below its "
                                f"{kp}x{kp} window")

    def round_rows(n):
        """The most rows up to ``n`` a band may have: whole windows of a pool (0 if not
        one), else a multiple of the stride (or ``n``, fewer)."""
        if layer.pool:
            return step * ((n - kp) // step) + kp if n >= kp else 0
        return n - n % step if n >= step else n

    def pool_bands(nyc, total=None):
        """A pooled layer's bands of up to ``nyc`` of its ``total`` rows (``hconv``; or
        columns, for column tiles): ``(first row, rows)``, each ``round_rows``; each next one
        from the first window its predecessor does not hold."""
        total = hconv + ppt + ppb if total is None else total
        out, y0 = [], 0
        while y0 + kp <= total:
            nyb = round_rows(min(nyc, total - y0))
            out.append((y0, nyb))
            y0 += step * ((nyb - kp) // step + 1)
        return out
    # maps stored as 4-bit codes: rows of ceil(width / 2) bytes, whole rows only
    dec = layer.x_levels is not None
    xb, ob = row_bytes(W, dec), row_bytes(Wo, layer.y_codes)
    if (dec or layer.y_codes) and W > cfg.lb_width:
        raise LoweringError(f"{name}: a map of 4-bit codes cannot be cut into column tiles "
                            f"(its input is {W} wide, the line buffer {cfg.lb_width})")
    # the conv rows and columns computed: the region's (every step-th is an output), or all
    if region is not None:
        rows, cols = region
        if not (0 <= rows.start < rows.stop <= layer.out_shape[1]
                and 0 <= cols.start < cols.stop <= layer.out_shape[2]):
            raise LoweringError(f"{name}: region rows {rows} and columns {cols} are not in "
                                f"its {layer.out_shape[1]}x{layer.out_shape[2]} output")
        cy0, cy1 = rows.start * step, (rows.stop - 1) * step + 1
        cx0, cx1 = cols.start * step, (cols.stop - 1) * step + 1
    else:
        cy0, cy1, cx0, cx1 = 0, hconv, 0, wconv
    # column tiles: the input columns of a tile must fit a line-buffer row (a padded pool's
    # tiles are of its padded map)
    wt = wconv + ppl + ppr
    if W > cfg.lb_width:
        wt = cfg.lb_width - kw + 1
        unit = step * cfg.L
        if layer.pool:
            wt = round_rows(wt)
        else:
            wt = wt // unit * unit if wt >= unit else wt // step * step
        if wt < 1:
            raise LoweringError(f"{name}: a {kw}-wide kernel does not fit the line buffer "
                                f"width {cfg.lb_width}")
    wt = min(wt, cx1 - cx0 + ppl + ppr)
    def geometry(tw, npairs):
        """A CONV's geometry over ``tw`` output columns; one that covers the whole map
        knows the map's width and padding, so its rows may stream as a chain (chain_rows;
        a column tile's are costed unchained, which never undercounts)."""
        return conv_geometry(cfg, kh, kw, tw, npairs, *((W, pl) if tw == wconv else ()))

    g = geometry(wt, kh)
    P = cfg.group_lanes(kw)             # output channels a CONV computes (mac_pairs: 2 a unit)
    Wt = min(W, wt + kw - 1)            # input columns of the widest tile
    # output rows per band: accumulator limit, a multiple of the pool/stride step
    ny = round_rows(min(hconv + ppt + ppb, cfg.acc_blocks // g.wob))
    if ny < kp:
        raise LoweringError(f"{name}: an output row of {wt} does not fit the accumulator "
                            f"({cfg.acc_blocks} blocks of {cfg.L})")
    # channel group size and band height: every candidate that fits the line buffer and the
    # weight buffer, scored by the bytes it moves and the passes it runs
    def fits(ch, rows):
        pitch = _pitch_for(cfg, kh, rows)
        return (ch - 1) * pitch + rows <= cfg.lb_rows

    def sets(ch):
        return conv_geometry(cfg, kh, kw, wt, ch * kh).passes_per_piece * g.pieces

    n_og = ceil(O / P)

    def shares(cg, nyc):
        """With channel groups, the band heights (up to ``nyc``) at which several lane groups'
        bands fit the accumulator together (C_ACC), each with the most lane groups:
        ``{ny: lane groups}``; every channel group then loads once for all of them."""
        out = {nyc: 1}
        if ceil(C / cg) == 1:
            return out
        for lg in range(2, n_og + 1):
            nyg = round_rows(min(nyc, cfg.acc_blocks // (lg * g.wob)))
            if nyg < kp:
                break
            out[nyg] = lg
        return out

    own = layer.lane_inputs
    if own and layer.pool:
        raise LoweringError(f"{name}: lane groups of their own inputs with a pool")
    cm = CycleModel(cfg)
    per_ins = 3                         # fetch and decode of an instruction, about
    # weight_prefetch: with a channel group's sets in half the weight buffer, each CONV's
    # weights load in the background while the CONV before it runs (the halves alternate;
    # W_DST and C_WSET count modulo the buffer, compiler/emit.py)
    half = cfg.wb_sets // 2
    can_prefetch = (cfg.weight_prefetch and half and cfg.wb_sets & (cfg.wb_sets - 1) == 0)

    def prefetch(cg):
        return can_prefetch and sets(cg) <= half

    def plan_cycles(cg, nyc, share, ovl=False, tw=None):
        """Cycles of one column tile (``tw`` output columns, the widest by default) cut into
        channel groups of ``cg``, bands of ``nyc`` rows, ``share`` lane groups per
        channel-group load (``ovl``: POST in the background, lane groups in alternate
        accumulator halves), from the ISS's cycle model."""
        if layer.pool:
            return sum(band_cycles(cg, nyb, share, ovl, tw) for _, nyb in pool_bands(nyc))
        full, rest = divmod(hconv, nyc)
        return (full * band_cycles(cg, nyc, share, ovl, tw)
                + (band_cycles(cg, rest, share, ovl, tw) if rest else 0))

    def conv_cycles(gc, nyc, skip=None):
        """A band's CONV: its rows in one command, or (``skip``, for a strided layer) one
        command per row that POST keeps; ``skip=None``: the cheaper of the two."""
        passes = gc.pieces * gc.passes_per_piece
        dense = cm.conv(gc, nyc, passes)
        if layer.pool or step == 1 or nyc <= 1 or skip is False:
            return dense
        kept = -(-nyc // step)
        # per row its CONV, two INCs and the ENDLOOP; around the rows' loop, C_NY and C_Y0
        # set for the row and back for POST, and the LOOP
        rows = kept * (cm.conv(gc, 1, passes) + 3 * per_ins) + 4 * per_ins
        return rows if skip else min(dense, rows)

    def band_cycles(cg, nyc, share, ovl=False, tw=None):
        tw = tw or wt
        n_cg = ceil(C / cg)
        gc = geometry(tw, cg * kh)
        nr = min(H, nyc + kh - 1)
        Wtt = min(W, tw + kw - 1)                   # the tile's input columns
        # a channel's rows: one read, or a read a row where the map is cut into column tiles
        # (its rows are wider than a tile's: A_PITCH)
        if ph:                                      # a read a row, every s-th byte
            s = ph["s"]
            one = cm.loada([0] * nr, (Wtt - 1) * s + 1, Wtt, step=s)
            spans = min(len(ph["phases"]), cg)      # LOADAs of a channel group, about
            loada = spans * (LOADA_FIXED + 3 * per_ins) + cg * (one - LOADA_FIXED)
        else:
            one = (cm.loada([0] * nr, Wtt, Wtt) if wt < wconv
                   else cm.loada([0], nr * row_bytes(Wtt, dec), Wtt, dec))
            loada = LOADA_FIXED + cg * (one - LOADA_FIXED) + 2 * per_ins
        if prefetch(cg):
            issue, _, end = cm.loadw_async(sets(cg), mac=g.mac)
            conv = max(conv_cycles(gc, nyc), end) + issue + 5 * per_ins
        else:
            conv = conv_cycles(gc, nyc) + cm.loadw(sets(cg), mac=g.mac) + 5 * per_ins
        if layer.pool:                                  # outputs per lane
            outs = max(0, (nyc - kp) // step + 1) * max(0, (tw - kp) // step + 1)
        else:
            outs = -(-nyc // step) * -(-tw // step)
        # one output column: each byte its own word, every clock (unpooled)
        waits = P * outs if -(-tw // step) == 1 and not layer.pool else 0
        waits = (waits, waits)
        subs = outs * kp * kp
        if ovl:
            # each lane group's POST runs beside the next one's CONV; the band's last is
            # waited for (the next LOADA reads memory)
            run = cm.post_run(P, subs, waits, layer.affine is not None)
            issue = cm.post_issue(gc.wob, step) + 3 * per_ins
            return (loada * (n_og if own else 1) + n_og * (conv + issue)
                    + (n_og - 1) * max(0, run - conv) + run)
        post = cm.post(P, subs, gc.wob, step, waits,
                       affine=layer.affine is not None) + 3 * per_ins
        loads = n_og if own else ceil(n_og / share) if n_cg > 1 else 1
        return loads * n_cg * loada + n_og * (n_cg * conv + post)

    # post_overlap: with one channel group, lane groups can alternate the accumulator's
    # halves (C_ACC counts modulo it, compiler/emit.py: lane group i's is i * half, which is
    # affine), each POST running beside the next lane group's CONV; the band then holds half
    # the rows
    acc_half = cfg.acc_blocks // 2
    ny_half = round_rows(min(hconv, acc_half // g.wob))
    # (not where each lane group loads its own inputs: a LOADA waits for the POST before it)
    can_overlap = (cfg.post_overlap and n_og > 1 and cfg.acc_blocks & (cfg.acc_blocks - 1) == 0
                   and ny_half >= kp and not own)
    best = None
    for cg in sorted({C} | {ceil(C / n) for n in range(2, C + 1)}, reverse=True):
        if sets(cg) > cfg.wb_sets:
            continue
        fit = ny                        # the band height the line buffer holds
        while fit >= max(step, kp) and not fits(cg, min(H, fit + kh - 1)):
            fit = round_rows(fit - 1) if layer.pool else fit - step
        if fit < kp or not fits(cg, min(H, fit + kh - 1)):
            continue
        n_cg = ceil(C / cg)
        # (a lane group that reads its own inputs reads each channel group for itself)
        for nyc, share in ({fit: 1} if own else shares(cg, fit)).items():
            cost = plan_cycles(cg, nyc, share)
            if best is None or cost < best[0]:
                best = (cost, cg, nyc, share, False)
        if n_cg == 1 and can_overlap:
            nyc = min(fit, ny_half)
            cost = plan_cycles(cg, nyc, 1, True)
            if cost < best[0]:
                best = (cost, cg, nyc, 1, True)
    if best is None:
        raise LoweringError(f"{name}: {kh} input rows of width {Wt} or one channel's weights do "
                            f"not fit the buffers (line buffer {cfg.lb_rows} rows, weight "
                            f"buffer {cfg.wb_sets} sets)")
    _, cg, ny, share, overlap = best
    # the column tiles' first columns; a pooled layer's tiles hold whole windows, each next one
    # from the first window its predecessor does not hold
    tile_x0 = ([x0 for x0, _ in pool_bands(wt, wconv + ppl + ppr)] if layer.pool
               else range(cx0, cx1, wt))
    if plan_only:                       # every column tile at its own width
        return sum(plan_cycles(cg, ny, share, overlap, min(wt, wconv + ppl + ppr - x0))
                   for x0 in tile_x0)
    # a strided layer: one CONV per output row POST keeps (the rows between are not computed)
    # where the cycle model finds that cheaper than computing the band's every row
    gbest = geometry(wt, cg * kh)
    row_skip = conv_cycles(gbest, ny, skip=True) < conv_cycles(gbest, ny, skip=False)
    # the post-processing records: all channels' at once when they fit the buffer, else
    # those of a run of up to q_chunk lane groups at a time, before the run's first CONV
    # (lane groups that each POST after their CONV) or before its first POST (lane groups
    # that POST together after their CONVs)
    # (a fused affine map: two records a channel, POST's flag AFFINE)
    rpc = 2 if layer.affine is not None else 1
    q_chunk = max(1, cfg.qb_entries // (rpc * P)) if rpc * O > cfg.qb_entries else 0
    q_base = records_half * (cfg.qb_entries // 2) \
        if cfg.post_overlap and rpc * O <= cfg.qb_entries // 2 else 0

    # parameters and weights in memory
    q = []
    for o in range(O):
        q += pack_qparam(layer.bias[o], layer.multiplier[o], layer.shift[o], layer.y_zp,
                         layer.qmin, layer.qmax)
        if layer.affine is not None:
            ka, kb, zb, M, sh = (a[o] for a in layer.affine[:5])
            q += pack_affine(ka, kb, zb, layer.y_zp, M, sh, *layer.affine[5:])
    q_addr = mem.place(f"{name}.qparams", np.array(q, dtype="<u4").tobytes())
    # weights of at most 4 bits (a 4-bit QONNX model's) are stored packed, two a byte
    packed = cfg.packed_weights and fits4(layer.w)
    blob, block, cgs = layer_weights(cfg, layer.w, cg, packed)
    # lane groups of the same weights (an average pool's all-one blocks) read one copy
    shared = len(blob) > block and blob == blob[:block] * (len(blob) // block)
    w_addr = mem.place(f"{name}.w", blob[:block] if shared else blob)

    # the program: bands x column tiles x lane groups x channel groups, as loops over the
    # runs of each that step uniformly (compiler/emit.py; unrolled without hardware loops);
    # with channel groups, `share` lane groups keep their bands in the accumulator at once
    # (C_ACC) and each channel group loads once for them all
    nest = Nest(cfg)
    if rpc * O <= cfg.qb_entries:
        nest.cmd(Op.LOADQ, Q_SRC=q_addr, Q_COUNT=rpc * O, Q_DST=q_base)
    # a layer over its input's stride phases (``ph``): its LOADAs take every s-th column
    # of every s-th row of the input map (A_CSHIFT, A_PITCH), a phase's channels at A_LB0
    strided_regs = {}
    if cfg.strided_loads and (ph or not loads_zero):
        strided_regs = dict(A_CSHIFT=(ph["s"].bit_length() - 1) if ph else 0, A_LB0=0)
    nest.set(A_H=H, C_KH=kh, C_KW=kw, C_PT=pt, C_ZX=layer.x_zp & 0xFF, O_W=ob,
             O_CSTRIDE=Ho * ob * (layer.out_shuffle[0] if layer.out_shuffle else 1),
             O_STRIDE=step,
             **(dict(O_POOLK=kp) if layer.pool else {}),
             # (a pool without padding: none, whatever a layer before left; a padded one's
             # is each tile's)
             **(dict(O_POOLPAD=0) if layer.pool and cfg.pool_pads and not padded else {}),
             A_PITCH=ph["s"] * ph["W"] if ph else W if wt < wconv else 0,
             **strided_regs, **level_regs(cfg, layer))
    post_flags = ((PostFlag.POOL if layer.pool else 0)
                  | (PostFlag.ASYNC if overlap else 0)
                  | (PostFlag.CODES if layer.y_codes else 0)
                  | (PostFlag.AFFINE if layer.affine is not None else 0))
    loada_flags = LoadAFlag.DECODE if dec else 0
    loadw_flags = (LoadWFlag.MAC if g.mac else 0) | (LoadWFlag.PACK4 if packed else 0)
    tiles = []
    for x0 in tile_x0:
        # a pooled tile's first window is at x0 of the padded map: its conv columns are
        # those of the map in it, its padding (pool_pads) those left and right of them
        ox = x0 // step                 # its first output column
        wx = min(wt, cx1 + ppl + ppr - x0)   # (the last may have columns past the last window)
        tl, tr = max(0, ppl - x0), max(0, x0 + wx - ppl - wconv)
        x0, wx = x0 - ppl + tl, wx - tl - tr
        cin0 = max(0, x0 - pl)
        cin1 = min(W, x0 + wx - pl + kw - 1)
        tiles.append(dict(x0=x0, wx=wx, cin0=cin0, win=cin1 - cin0, tpl=pl - x0 + cin0, ox=ox,
                          ppad=tl << 4 | tr << 12))
    # bands start on a multiple of the step, so each band's first row is one POST keeps; when
    # the accumulator holds fewer rows than the step (ny < stride), a band is the one conv row
    # POST keeps and the rows between are not computed
    bands, band_pads = [], []
    for y0, nyb in (pool_bands(ny) if layer.pool else
                    ((y0, min(ny if ny >= step else 1, cy1 - y0))
                     for y0 in range(cy0, cy1, ny if ny >= step else step))):
        orow = y0 // step
        # (a padded pool's band: its rows of the map, and the padding above and below them)
        bt, bb = max(0, ppt - y0), max(0, y0 + nyb - ppt - hconv)
        y0, nyb = y0 - ppt + bt, nyb - bt - bb
        hb0 = max(0, y0 - pt)
        hend = min(H, y0 + nyb - 1 - pt + kh)
        nr = max(1, hend - hb0)
        bands.append(dict(C_Y0=y0, C_NY=nyb, A_HB0=hb0, A_NR=nr,
                          LB_PITCH=_pitch_for(cfg, kh, nr), O_ROW0=orow))
        band_pads.append(bt | bb << 8)
    # lane groups and their channel groups: the weights of a lane group are its channel
    # groups' sets in order, and every lane group's block has the same layout
    n_cg = len(cgs)
    cgroups = [dict(c0=c0, ch=ch, woff=off, nsets=nsets, first=c0 == 0)
               for c0, ch, off, nsets in cgs]
    # (a lane group that loads its own inputs: from input channel c0 of the map; over stride
    # phases, its channels' phases)
    lgroups = [dict(o0=o0, lanes=min(P, O - o0),
                    wbase=w_addr + (0 if shared else i * block),
                    c0=i * (ph["C"] if ph else C),
                    acc=i * acc_half if overlap else i % share * ny * g.wob)
               for i, o0 in enumerate(range(0, O, P))]
    supers = [dict(first=i, n=min(share, len(lgroups) - i))
              for i in range(0, len(lgroups), share)]

    def out_map(o):
        """The output map of output channel ``o`` (a fused channel shuffle's, or ``o``)."""
        if not layer.out_shuffle:
            return o
        G, n = layer.out_shuffle
        return o % n * G + o // n
    if layer.out_shuffle and any(lg["o0"] // layer.out_shuffle[1] !=
                                 (lg["o0"] + lg["lanes"] - 1) // layer.out_shuffle[1]
                                 for lg in lgroups):
        raise LoweringError(f"{name}: a lane group of {P} outputs spans two of the shuffle's "
                            f"groups of {layer.out_shuffle[1]}")

    copies = {}

    def records_at(o0, count):
        """The address of records ``o0``.. (``count``): in the layer's records where that is
        on a bus word (LOADQ reads whole words), else in a copy of them placed on one."""
        addr = q_addr + 12 * rpc * o0
        if addr % cfg.bus_bytes == 0 or not cfg.wide_loads:
            return addr
        if (o0, count) not in copies:
            copies[o0, count] = mem.place(
                f"{name}.qparams{o0}", np.array(q[3 * rpc * o0:3 * rpc * (o0 + count)],
                                                dtype="<u4"))
        return copies[o0, count]

    def runs(first, n):
        """Lane groups ``first``.. (``n``) in runs that share their records' load."""
        per = q_chunk or n
        return [dict(first=i, n=min(per, first + n - i), o0=lgroups[i]["o0"])
                for i in range(first, first + n, per)]

    # the CONVs in program order, each by (band, tile, lane group, channel group): with
    # prefetch, CONV k reads half k % 2 while CONV k + 1's weights load into the other
    order = []
    for bi in range(len(bands)):
        for ti in range(len(tiles)):
            if n_cg == 1 or own:
                order += [(bi, ti, li, ci) for li in range(len(lgroups)) for ci in range(n_cg)]
                continue
            for sg in supers:
                order += [(bi, ti, li, ci) for ci in range(n_cg)
                          for li in range(sg["first"], sg["first"] + sg["n"])]
    seq = {key: k for k, key in enumerate(order)}
    ident = {id(d): i for lst in (bands, tiles, lgroups, cgroups) for i, d in enumerate(lst)}
    pf = prefetch(cg)

    def weights(key):
        _, _, li, ci = key
        return dict(W_SRC=lgroups[li]["wbase"] + cgroups[ci]["woff"],
                    W_COUNT=cgroups[ci]["nsets"])

    cur = {}

    def band(b):
        cur.update(b)
        cur["bi"] = ident[id(b)]
        nest.set(**b)
        nest.each(tiles, tile)

    def tile(t):
        cur["ti"] = ident[id(t)]
        cur["wob"] = -(-t["wx"] // cfg.L)          # the tile's accumulator blocks per row
        nest.set(A_W=t["win"], C_PL=t["tpl"], C_WOUT=t["wx"],
                 **(dict(O_POOLPAD=band_pads[cur["bi"]] | t["ppad"]) if padded else {}))
        if n_cg == 1 or own:
            if not own:                 # (else each lane group loads its own)
                loads(0, C, t["cin0"])
            nest.each(runs(0, len(lgroups)), lambda run: records(run, lambda lg: lane_group(
                t, lg)))
        else:
            nest.each(supers, lambda sg: super_group(t, sg))

    def records(run, body):
        """The records of a run of lane groups (if not all loaded at once), then ``body`` of
        each of its lane groups."""
        first, n = run["first"], run["n"]
        cur["q0"] = run["o0"] if q_chunk else 0
        if q_chunk:
            count = sum(lg["lanes"] for lg in lgroups[first:first + n])
            nest.cmd(Op.LOADQ, Q_SRC=records_at(run["o0"], count), Q_DST=0,
                     Q_COUNT=rpc * count)
        nest.each(lgroups[first:first + n], body)

    def lane_group(t, lg):
        if own:                         # its channel groups, each loaded for it
            nest.each(cgroups, lambda cgr: (loads(cgr["c0"], cgr["ch"], t["cin0"],
                                                  base=lg["c0"]), conv(lg, cgr)))
        else:
            conv(lg, cgroups[0])
        post(t, lg)

    def super_group(t, sg):
        lgs = lgroups[sg["first"]:sg["first"] + sg["n"]]
        nest.each(cgroups, lambda cgr: channel_group(t, lgs, cgr))
        nest.each(runs(sg["first"], sg["n"]), lambda run: records(run, lambda lg: post(t, lg)))

    def channel_group(t, lgs, cgr):
        loads(cgr["c0"], cgr["ch"], t["cin0"])
        nest.each(lgs, lambda lg: conv(lg, cgr))

    def loads(v0, n, cin0, base=0):
        """The LOADA of channels ``v0``.. (``n``) from the tile's input column ``cin0``; over
        stride phases, a LOADA per phase they span, its channels from line-buffer row
        ``A_LB0`` on. ``base``: the first of the map's channels the layer's channels are."""
        if not ph:
            nest.cmd(Op.LOADA, loada_flags, A_SRC=x_addr + (base + v0) * H * xb + cin0, A_CH=n)
            return
        x0 = x_addr + base * ph["H"] * ph["W"]
        s, Cx, Wx = ph["s"], ph["C"], ph["W"]
        for i, (r, q) in enumerate(ph["phases"]):
            lo, hi = max(v0, i * Cx), min(v0 + n, (i + 1) * Cx)
            if lo < hi:
                nest.cmd(Op.LOADA, loada_flags,
                         A_SRC=x0 + (lo - i * Cx) * ph["H"] * Wx + r * Wx + q + s * cin0,
                         A_CH=hi - lo, A_LB0=(lo - v0) * cur["LB_PITCH"])
        nest.set(A_CH=n)                # the CONVs read all of them

    # the halves alternate from the one the layer's first weights go to: the other one than
    # the layer before's last CONV reads, when those load beside that CONV
    link = chain if chain is not None and chain.get("end") == len(prog) else None
    first = 1 - link["half"] if pf and link else 0

    def conv(lg, cgr):
        wset = 0
        if pf:
            k = seq[(cur["bi"], cur["ti"], ident[id(lg)], ident[id(cgr)])] + first
            wset = half * k
            if k + 1 - first < len(order):
                nest.cmd(Op.LOADW, loadw_flags | LoadWFlag.ASYNC, W_DST=half * (k + 1),
                         **weights(order[k + 1 - first]))
        else:
            nest.cmd(Op.LOADW, loadw_flags, W_SRC=lg["wbase"] + cgr["woff"],
                     W_COUNT=cgr["nsets"], W_DST=0)
        flags = 0 if cgr["first"] else ConvFlag.ACCUMULATE
        y0, nyb, wob = cur["C_Y0"], cur["C_NY"], cur["wob"]
        if row_skip and nyb > 1:
            # conv row y0 + r into the band's accumulator row r, where POST reads it
            nest.each([dict(r=r) for r in range(0, nyb, step)], lambda rr: nest.cmd(
                Op.CONV, flags, C_WSET=wset, C_LANES=lg["lanes"], C_NY=1, C_Y0=y0 + rr["r"],
                C_ACC=lg["acc"] + rr["r"] * wob))
            nest.set(C_Y0=y0, C_NY=nyb)
        else:
            nest.cmd(Op.CONV, flags, C_WSET=wset, C_LANES=lg["lanes"], C_ACC=lg["acc"])

    def post(t, lg):
        o0 = lg["o0"]
        nest.cmd(Op.POST, post_flags, O_DST=y_addr + out_map(o0) * Ho * ob + t["ox"],
                 O_Q=q_base + rpc * (o0 - cur["q0"]), C_ACC=lg["acc"], C_LANES=lg["lanes"])

    known = {}
    if pf and link:                     # the first CONV's weights, beside the last before
        known = dict(W_DST=half * first, **weights(order[0]))
        early = Program().set(**known)
        prog.insert(link["at"], early.op(Op.LOADW, loadw_flags | LoadWFlag.ASYNC))
        chain.setdefault("moved", []).append((link["at"], len(early)))
        # the layer's code starts with them in the registers (nothing between writes them)
        known = {Reg[k]: v for k, v in known.items()}
    elif pf:                            # ... or before it
        nest.cmd(Op.LOADW, loadw_flags, W_DST=0, **weights(order[0]))
    start = len(prog)
    nest.each(bands, band)
    nest.assemble(prog, known)
    if chain is not None:
        chain.pop("end", None)          # no link unless this layer leaves one
        last = _last_outside_loops(prog, start, Op.CONV)
        if pf and last is not None:
            chain.update(at=last, half=(len(order) - 1 + first) % 2, end=len(prog))
    return sum(-(-b["C_NY"] // step) if row_skip else b["C_NY"] for b in bands) * (cx1 - cx0)


def _last_outside_loops(prog, start, op):
    """The index of the last instruction ``op`` from ``start`` on that is in no loop's body,
    or None."""
    depth, last = 0, None
    for i in range(start, len(prog)):
        o = decode(prog.words[i]).op
        depth += (o == Op.LOOP) - (o == Op.ENDLOOP)
        if o == op and depth == 0:
            last = i
    return last


def maxpool_refusal(cfg, kernel, stride, pads):
    """Why a max-pool ``kernel`` x ``kernel`` at ``stride`` with ``pads`` cannot run as
    :func:`maxpool_layers`, or ``None``: POST's windows are 2..``max_pool``, its stride fits
    ``O_STRIDE`` (8 bits), and each padding is below the window (so every window holds a
    value of the map) and below ``max_kernel`` (the identity conv's ``C_PT``/``C_PL``)."""
    k, s = kernel, stride
    if not 2 <= k <= cfg.max_pool:
        return (f"a {k}x{k} window (POST's are 2..max_pool, {cfg.max_pool}; a "
                f"configuration with max_pool = {k} takes it)")
    if any(not 0 <= p < min(k, cfg.max_kernel) for p in pads):
        return (f"padding {tuple(pads)} of a {k}x{k} window (below the window and "
                f"max_kernel, {cfg.max_kernel})")
    if not 1 <= s <= 255:
        return f"stride {s} (POST's is 1..255)"
    return None


def maxpool_layers(cfg, C, H, W, kernel, stride, pads):
    """A max-pool ``kernel`` x ``kernel`` at ``stride`` with ``pads`` (top, left, bottom,
    right; each below the kernel) of a ``C`` x ``H`` x ``W`` map as the accelerator runs it:
    ``[(c0, ConvLayer)]``, one per lane group of MAC mode's output channels. Each is an
    identity 1x1 conv of its channels, padded with the activation minimum (which never wins a
    window that holds one of the map's values), whose requantization keeps every value
    (``(v 2**30 + 2**29) >> 30 = v``), and POST pools its output's windows (``POOL``). The
    channels of a group are the conv's only inputs: the work is ``lanes`` MACs a value."""
    k, s = kernel, stride
    why = maxpool_refusal(cfg, k, s, pads)
    if why is not None:
        raise LoweringError(f"max-pool: {why}")
    lo, hi = (-128, 127) if cfg.fcu.act_signed else (0, 255)
    P = cfg.group_lanes(1)
    out = []
    for c0 in range(0, C, P):
        n = min(P, C - c0)
        w = np.eye(n, dtype=np.int64).reshape(n, n, 1, 1)
        out.append((c0, ConvLayer(w, np.zeros(n, np.int64), np.full(n, 1 << 30, np.int64),
                                  np.full(n, 30, np.int64), lo, 0, lo, hi, (n, H, W),
                                  tuple(int(p) for p in pads), 1, pool=(k, s))))
    return out


def conv_plan_cycles(cfg, layer, name="conv"):
    """The cycle model's estimate of ``layer`` as :func:`lower_conv` would plan it (nothing is
    emitted); :class:`LoweringError` where it cannot be lowered."""
    return lower_conv(cfg, layer, None, None, 0, 0, name=name, plan_only=True)


def _add_registers(a_addr, b_addr, y_addr, n, *, ka, kb, multiplier, shift, a_zp, b_zp, y_zp,
                   qmin, qmax):
    """The parameter registers of an ``ADD`` (``D_KAB``'s halves are int16)."""
    if not (-(1 << 15) <= ka < 1 << 15 and -(1 << 15) <= kb < 1 << 15):
        raise LoweringError(f"add: input weights ka={ka}, kb={kb} exceed 16 bits (signed)")
    u8 = lambda v: int(v) & 0xFF      # noqa: E731
    return {"A_SRC": a_addr, "D_SRC2": b_addr, "O_DST": y_addr, "D_N": n,
            "D_KAB": (int(ka) & 0xFFFF) | (int(kb) & 0xFFFF) << 16, "D_M": int(multiplier),
            "D_SZ": u8(shift) | u8(a_zp) << 8 | u8(b_zp) << 16 | u8(y_zp) << 24,
            "D_CLAMP": u8(qmin) | u8(qmax) << 8}


def lower_add(prog, a_addr, b_addr, y_addr, n, **params):
    """Emit a quantized elementwise add of ``n`` activations (``params``: ``ka``, ``kb``,
    ``multiplier``, ``shift``, ``a_zp``, ``b_zp``, ``y_zp``, ``qmin``, ``qmax``)."""
    prog.set(**_add_registers(a_addr, b_addr, y_addr, n, **params))
    return prog.op(Op.ADD)


def lower_adds(prog, items, *, x_zp, y_zp, qmin, qmax):
    """Emit an ``ADD`` of an operand with itself for each ``(src, dst, n, params[, q])`` of
    ``items`` (``params``: one channel's ``(ka, kb, zb, M, s)`` of
    :func:`ffacc.sim.golden.affine_params`): ``n`` activations from ``src`` mapped to ``dst``;
    with ``q``, each result mapped again by record ``q`` (flag ``AFFINE``). Only the
    registers that differ from the ``ADD`` before's are set."""
    prev = {}
    for src, dst, n, (ka, kb, zb, M, s), *q in items:
        regs = _add_registers(src, src, dst, n, ka=int(ka), kb=int(kb), multiplier=int(M),
                              shift=int(s), a_zp=x_zp, b_zp=int(zb), y_zp=y_zp, qmin=qmin,
                              qmax=qmax)
        if q:
            regs["O_Q"] = int(q[0])
        changed = {k: v for k, v in regs.items() if prev.get(k) != v}
        if changed:
            prog.set(**changed)
        prog.op(Op.ADD, PostFlag.AFFINE if q else 0)
        prev = regs
    return prog


def lower_channel_affine(prog, x_addr, y_addr, channels, n, params, *, x_zp, y_zp, qmin, qmax,
                         then=None, mem=None, name="affine"):
    """Emit a per-channel affine map (:func:`ffacc.sim.golden.affine_params`) of ``channels``
    maps of ``n`` activations each, stored one after the other: an ``ADD`` of each run of
    channels with the same parameters with itself (one for a per-tensor map). ``then``: a
    second map of the first's output, ``(ka, kb, zb, M, s)`` per channel and its output's
    ``(zp, qmin, qmax)``, whose records (``pack_affine``, placed in ``mem``) the ``ADD``s
    apply (flag ``AFFINE``): loaded from record 0 on, a record a channel."""
    ka, kb, zb, M, s = (np.asarray(p).reshape(-1) for p in params)
    if not all(len(p) == channels for p in (ka, kb, zb, M, s)):
        raise LoweringError(f"channel affine: {channels} channels but parameters for "
                            f"{len(ka)}")
    rows = key = np.stack([ka, kb, zb, M, s], axis=1)
    if then is not None:
        second = np.stack([np.asarray(p).reshape(-1) for p in then[:5]], axis=1)
        # (the second map's input is the first's output: its zero point y_zp)
        words = [w for c in range(channels)
                 for w in pack_affine(*second[c, :3], y_zp, *second[c, 3:], *then[5:])]
        prog.set(Q_SRC=mem.place(f"{name}.qparams", np.array(words, dtype="<u4").tobytes()),
                 Q_COUNT=channels, Q_DST=0)
        prog.op(Op.LOADQ)
        key = np.concatenate([rows, second], axis=1)
    # an ADD a run of channels with the same maps (with a second map: its record, the run's
    # first channel's)
    starts = [c for c in range(channels) if c == 0 or (key[c] != key[c - 1]).any()]
    return lower_adds(prog, [(x_addr + c * n, y_addr + c * n, (end - c) * n, rows[c])
                             + ((c,) if then is not None else ())
                             for c, end in zip(starts, starts[1:] + [channels])],
                      x_zp=x_zp, y_zp=y_zp, qmin=qmin, qmax=qmax)


def build_image(cfg, prog, mem, tensors=(), meta=None, mem_size=None, code_addr=None):
    """A firmware image of a program and its memory plan.

    The code goes at ``code_addr`` or, by default, right after the data (programs never
    refer to their own addresses); the memory size covers both, rounded to 4 KiB.
    """
    from ffacc.firmware.image import Image, Kind, Section

    code = bytes(prog)
    if code_addr is None:
        code_addr = -(-mem.next // 64) * 64
    elif any(code_addr < b.addr + len(b.data) and b.addr < code_addr + len(code)
             for b in mem.blobs):
        raise LoweringError(f"code at 0x{code_addr:x} ({len(code)} bytes) overlaps the data")
    size = mem_size or -(-max(mem.next, code_addr + len(code)) // 4096) * 4096
    if size > 1 << cfg.addr_bits:
        raise LoweringError(f"the program needs {size} bytes of memory; the configuration "
                            f"addresses {1 << cfg.addr_bits} (addr_bits={cfg.addr_bits})")
    kinds = {"qparams": Kind.QPARAMS, "w": Kind.WEIGHTS}
    sections = [Section(Kind.CODE, code_addr, code)]
    # blobs of one kind that follow each other (up to the plan's alignment) are one section:
    # a layer's weight blocks, one per lane and channel group, would otherwise cost a table
    # entry each (a million for VGG-16 at 224x224)
    run = None                          # [kind, addr, parts, end]
    for b in sorted(mem.blobs, key=lambda b: b.addr):
        kind = kinds.get(b.name.split(".")[1] if "." in b.name else "", Kind.DATA)
        if run and run[0] == kind and 0 <= b.addr - run[3] < mem.align:
            run[2] += [bytes(b.addr - run[3]), b.data]
            run[3] = b.addr + len(b.data)
            continue
        if run:
            sections.append(Section(run[0], run[1], b"".join(run[2])))
        run = [kind, b.addr, [b.data], b.addr + len(b.data)]
    if run:
        sections.append(Section(run[0], run[1], b"".join(run[2])))
    return Image(cfg.fingerprint(), code_addr, size, sections, list(tensors), meta or {})
